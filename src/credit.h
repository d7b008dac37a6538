/*-------------------------------------------------------------------------
 *
 * credit.h
 *	  The compay.credit type: a signed count of atomic units (1e-12, one
 *	  piconero) held in a fixed-length 16-byte int128.
 *
 * The range is symmetric, +/-(2^127 - 1) atomic units: -2^127 is never a
 * valid credit, so negation and abs() cannot overflow.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_CREDIT_H
#define COMPAY_CREDIT_H

#include "fmgr.h"
#include "utils/guc.h"
#include "utils/numeric.h"

typedef int128 Credit;

#define CREDIT_SCALE		12
#define CREDIT_UNIT			((Credit) INT64CONST(1000000000000))
#define CREDIT_MAX			((Credit) (((uint128) 1 << 127) - 1))
#define CREDIT_MIN			(-CREDIT_MAX)

/* Longest text form: sign, 27 integer digits, point, 12 digits, NUL. */
#define CREDIT_TEXT_LEN_MAX 48

typedef enum CreditRounding
{
	CREDIT_ROUND_EXACT,			/* any dropped non-zero digit is an error */
	CREDIT_ROUND_HALF_EVEN,
	CREDIT_ROUND_HALF_UP,		/* ties away from zero */
	CREDIT_ROUND_DOWN,			/* toward zero */
	CREDIT_ROUND_FLOOR,
	CREDIT_ROUND_CEILING
} CreditRounding;

/* Outcome of a conversion; callers turn it into an ereport. */
typedef enum CreditStatus
{
	CREDIT_OK,
	CREDIT_SYNTAX,				/* not a decimal number */
	CREDIT_TOO_PRECISE,			/* digits beyond the scale, rounding EXACT */
	CREDIT_OUT_OF_RANGE,
	CREDIT_DIVISION_BY_ZERO
} CreditStatus;

/*
 * Credits are passed by reference and may sit at an 8-byte boundary in a
 * tuple, so they are copied out rather than dereferenced as int128.
 */
static inline Credit
DatumGetCredit(Datum d)
{
	Credit		v;

	memcpy(&v, DatumGetPointer(d), sizeof(Credit));
	return v;
}

static inline Datum
CreditGetDatum(Credit v)
{
	Credit	   *p = (Credit *) palloc(sizeof(Credit));

	Assert(v >= CREDIT_MIN && v <= CREDIT_MAX);
	memcpy(p, &v, sizeof(Credit));
	return PointerGetDatum(p);
}

#define PG_GETARG_CREDIT(n)		DatumGetCredit(PG_GETARG_DATUM(n))
#define PG_RETURN_CREDIT(v)		return CreditGetDatum(v)

static inline bool
CreditInRange(int128 v)
{
	return v >= CREDIT_MIN && v <= CREDIT_MAX;
}

/* credit.c */
extern CreditStatus CreditParseDecimal(const char *str, int scale,
									   CreditRounding rounding, bool strict,
									   Credit *result);
extern int	CreditFormat(Credit v, int scale, bool fixed, char *buf);
extern char *CreditText(Credit v);
extern Numeric CreditToNumeric(Credit v, int scale);
extern Credit CreditFromNumeric(Numeric num, int scale, CreditRounding rounding,
								const char *what);
extern CreditRounding CreditRoundingFromName(const char *name);
extern void CreditReportOverflow(void) pg_attribute_noreturn();
extern bool CreditCheckSetting(const char *text, Credit lo, Credit hi, const char *detail);
extern bool CreditCheckAmountSetting(char **newval, void **extra, GucSource source);

/* rational.c: exact products and quotients, rounded once */
extern CreditStatus RationalMulDecimal(Credit a, const char *decimal,
									   bool divide, CreditRounding rounding,
									   Credit *result);
extern CreditStatus RationalMulMany(Credit a, const char *const *factors, int n,
									CreditRounding rounding, Credit *result);

/* One priced quantity: price per unit times quantity ("12.5" or "a/b"). */
typedef struct RationalTerm
{
	Credit		price;
	const char *quantity;
} RationalTerm;

extern CreditStatus RationalPriceSteps(const RationalTerm *terms, int nterms,
									   const char *const *factors, int nfactors,
									   const Credit *min, const Credit *max,
									   CreditRounding rounding, Credit *steps,
									   Credit *price);

#endif							/* COMPAY_CREDIT_H */
