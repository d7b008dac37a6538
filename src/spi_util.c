/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  Prepared SPI statements kept for the life of the backend, checked
 *	  execution and small helpers to read results.
 *
 * Plans are prepared once per backend and kept.  PostgreSQL's plan cache
 * replans them when a table they use changes, and every statement names its
 * objects with their schema, so a kept plan never resolves differently.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "spi_util.h"

static void
SpiPrepare(SpiStatement *stmt, Oid credit_oid)
{
	Oid			argtypes[SPI_ARGS_MAX];
	SPIPlanPtr	plan;

	Assert(stmt->nargs <= SPI_ARGS_MAX);
	for (int i = 0; i < stmt->nargs; i++)
	{
		if (stmt->argtypes[i] == SPI_ARG_CREDIT)
			argtypes[i] = credit_oid;
		else
			argtypes[i] = stmt->argtypes[i];
	}
	if (stmt->plan != NULL)
	{
		SPI_freeplan(stmt->plan);
		stmt->plan = NULL;
	}
	/*
	 * A generic plan: the statements are short and their parameters (often
	 * arrays) tell the planner nothing worth a new plan per call, and a
	 * custom plan per call would cost more than running the statement.
	 */
	plan = SPI_prepare_cursor(stmt->sql, stmt->nargs, argtypes,
							  CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", stmt->sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	stmt->plan = plan;
	stmt->credit_oid = credit_oid;
}

uint64
SpiRun(SpiStatement *stmt, Datum *values, const char *nulls, bool read_only,
	   long count)
{
	Oid			credit_oid = CompayTypeOid("credit");
	int			rc;

	if (stmt->plan == NULL || stmt->credit_oid != credit_oid)
		SpiPrepare(stmt, credit_oid);
	rc = SPI_execute_plan(stmt->plan, values, nulls, read_only, count);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s", stmt->sql,
			 SPI_result_code_string(rc));
	return SPI_processed;
}

Datum
SpiGetDatum(uint64 row, int col, bool *isnull)
{
	Assert(row < SPI_processed);
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}

int64
SpiGetInt64(uint64 row, int col)
{
	bool		isnull;
	Datum		d = SpiGetDatum(row, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

char *
SpiGetText(uint64 row, int col)
{
	bool		isnull;
	Datum		d = SpiGetDatum(row, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

Oid
CompayTypeOid(const char *name)
{
	Oid			nsp = get_namespace_oid("compay", false);
	Oid			typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										CStringGetDatum(name),
										ObjectIdGetDatum(nsp));

	if (!OidIsValid(typid))
		elog(ERROR, "type compay.%s does not exist", name);
	return typid;
}

Oid
CompayRelationOid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("compay", false));

	if (!OidIsValid(relid))
		elog(ERROR, "relation compay.%s does not exist", name);
	return relid;
}
