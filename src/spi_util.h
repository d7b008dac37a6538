/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *	  Prepared SPI statements kept for the life of the backend, and checked
 *	  execution.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_SPI_UTIL_H
#define COMPAY_SPI_UTIL_H

#include "executor/spi.h"

/*
 * Argument type compay.credit, whose OID is known only at run time.  This
 * small number is never the OID of a real type.
 */
#define SPI_ARG_CREDIT			((Oid) 1)

#define SPI_ARGS_MAX 24

/*
 * A statement prepared on first use and kept (SPI_keepplan).  Declare one
 * static SpiStatement per query next to the code that runs it.  The plan is
 * made again if the extension was dropped and created since: its types then
 * have new OIDs (the schema may survive DROP EXTENSION, so its OID is no
 * sign).
 */
typedef struct SpiStatement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[SPI_ARGS_MAX];
	SPIPlanPtr	plan;
	Oid			credit_oid;		/* compay.credit when prepared */
} SpiStatement;

/* Runs stmt with values (nulls as SPI wants them, or NULL); returns SPI_processed. */
extern uint64 SpiRun(SpiStatement *stmt, Datum *values, const char *nulls,
					 bool read_only, long count);

/* Column helpers on SPI_tuptable row i. */
extern Datum SpiGetDatum(uint64 row, int col, bool *isnull);
extern int64 SpiGetInt64(uint64 row, int col);
extern char *SpiGetText(uint64 row, int col);

/* Type OIDs of compay's own types, looked up by name in schema compay. */
extern Oid	CompayTypeOid(const char *name);
extern Oid	CompayRelationOid(const char *name);

#endif							/* COMPAY_SPI_UTIL_H */
