/*-------------------------------------------------------------------------
 *
 * credit.c
 *	  The compay.credit type: text and binary input/output, casts to and
 *	  from integers and numeric, and the rounding rule.
 *
 * Text is parsed and printed here and only here.  Every other conversion
 * (numeric, atomic counts, rounding) goes through CreditParseDecimal so
 * that one routine decides what a valid amount is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "compay.h"
#include "credit.h"

PG_FUNCTION_INFO_V1(credit_in);
PG_FUNCTION_INFO_V1(credit_out);
PG_FUNCTION_INFO_V1(credit_recv);
PG_FUNCTION_INFO_V1(credit_send);
PG_FUNCTION_INFO_V1(credit_from_int8);
PG_FUNCTION_INFO_V1(credit_from_int4);
PG_FUNCTION_INFO_V1(credit_from_int2);
PG_FUNCTION_INFO_V1(credit_from_numeric);
PG_FUNCTION_INFO_V1(credit_to_numeric);
PG_FUNCTION_INFO_V1(credit_atomic);
PG_FUNCTION_INFO_V1(credit_from_atomic);
PG_FUNCTION_INFO_V1(credit_round);
PG_FUNCTION_INFO_V1(credit_xmr);

static const uint64 pow10_u64[] = {
	UINT64CONST(1), UINT64CONST(10), UINT64CONST(100), UINT64CONST(1000),
	UINT64CONST(10000), UINT64CONST(100000), UINT64CONST(1000000),
	UINT64CONST(10000000), UINT64CONST(100000000), UINT64CONST(1000000000),
	UINT64CONST(10000000000), UINT64CONST(100000000000),
	UINT64CONST(1000000000000)
};

/* What the digits dropped by a conversion look like. */
typedef struct DroppedDigits
{
	int			first;			/* first dropped digit, 0 if none */
	bool		rest_nonzero;	/* any non-zero digit after the first */
} DroppedDigits;

/*
 * Whether the kept magnitude must grow by one atomic unit.  Every rounding
 * mode of compay is decided here.
 */
static bool
RoundUpMagnitude(CreditRounding rounding, bool negative, uint128 kept,
				 DroppedDigits dropped)
{
	bool		inexact = dropped.first != 0 || dropped.rest_nonzero;

	switch (rounding)
	{
		case CREDIT_ROUND_EXACT:
		case CREDIT_ROUND_DOWN:
			return false;
		case CREDIT_ROUND_FLOOR:
			return negative && inexact;
		case CREDIT_ROUND_CEILING:
			return !negative && inexact;
		case CREDIT_ROUND_HALF_UP:
			return dropped.first >= 5;
		case CREDIT_ROUND_HALF_EVEN:
			if (dropped.first != 5)
				return dropped.first > 5;
			return dropped.rest_nonzero || (kept & 1) != 0;
	}
	pg_unreachable();
}

/* mag = mag * 10 + digit, unless that passes CREDIT_MAX. */
static inline bool
AppendDigit(uint128 *mag, int digit)
{
	if (*mag > ((uint128) CREDIT_MAX - digit) / 10)
		return false;
	*mag = *mag * 10 + digit;
	return true;
}

static inline bool
IsSpace(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
		c == '\v';
}

/*
 * Parses an optionally signed decimal number with surrounding white space
 * into a count of 10^-scale units, rounding as asked.
 *
 * With strict (text input) any digit past the scale is an error, even a
 * zero; otherwise, with CREDIT_ROUND_EXACT, only non-zero dropped digits are.  Syntax errors win over range errors, so that
 * "99...9x" is reported as bad text rather than as too large.
 */
CreditStatus
CreditParseDecimal(const char *str, int scale, CreditRounding rounding,
				   bool strict, Credit *result)
{
	const char *p = str;
	bool		negative = false;
	bool		overflow = false;
	int			ndigits = 0;
	int			nfrac = 0;
	uint128		mag = 0;
	DroppedDigits dropped = {0, false};

	Assert(scale >= 0 && scale <= CREDIT_SCALE);

	while (IsSpace(*p))
		p++;
	if (*p == '+' || *p == '-')
		negative = (*p++ == '-');

	for (; isdigit((unsigned char) *p); p++, ndigits++)
		overflow |= !AppendDigit(&mag, *p - '0');
	if (*p == '.')
	{
		for (p++; isdigit((unsigned char) *p); p++, ndigits++, nfrac++)
		{
			int			d = *p - '0';

			if (nfrac < scale)
				overflow |= !AppendDigit(&mag, d);
			else if (nfrac == scale)
				dropped.first = d;
			else if (d != 0)
				dropped.rest_nonzero = true;
		}
	}
	while (IsSpace(*p))
		p++;
	if (ndigits == 0 || *p != '\0')
		return CREDIT_SYNTAX;
	if (nfrac > scale &&
		(strict || (rounding == CREDIT_ROUND_EXACT &&
					(dropped.first != 0 || dropped.rest_nonzero))))
		return CREDIT_TOO_PRECISE;

	/* Scale up when fewer fractional digits than the scale were given. */
	for (; nfrac < scale && !overflow; nfrac++)
		overflow = !AppendDigit(&mag, 0);
	if (!overflow && RoundUpMagnitude(rounding, negative, mag, dropped))
		mag++;
	if (overflow || mag > (uint128) CREDIT_MAX)
		return CREDIT_OUT_OF_RANGE;

	*result = negative ? -(Credit) mag : (Credit) mag;
	return CREDIT_OK;
}

/* Writes the digits of v (v > 0) backwards from end; returns the start. */
static char *
FormatUnsigned(uint128 v, char *end)
{
	char	   *p = end;

	/* Most amounts fit 64 bits, where division is much cheaper. */
	while (v > PG_UINT64_MAX)
	{
		*--p = '0' + (int) (v % 10);
		v /= 10;
	}
	for (uint64 w = (uint64) v; w != 0; w /= 10)
		*--p = '0' + (int) (w % 10);
	return p;
}

/*
 * Prints v, a count of 10^-scale units, into buf (CREDIT_TEXT_LEN_MAX bytes).
 * fixed keeps all scale fractional digits; otherwise trailing zeros go and
 * the shortest exact form is printed.  Returns the length.
 */
int
CreditFormat(Credit v, int scale, bool fixed, char *buf)
{
	char		tmp[CREDIT_TEXT_LEN_MAX];
	char	   *end = tmp + sizeof(tmp);
	char	   *start;
	uint128		mag = v < 0 ? (uint128) (-v) : (uint128) v;
	uint64		unit = pow10_u64[scale];
	uint64		frac = (uint64) (mag % unit);
	uint128		whole = mag / unit;
	int			nfrac = scale;
	int			len = 0;

	Assert(scale >= 0 && scale <= CREDIT_SCALE);
	if (!fixed)
		for (; nfrac > 0 && frac % 10 == 0; nfrac--)
			frac /= 10;

	start = end;
	if (nfrac > 0)
	{
		for (int i = 0; i < nfrac; i++, frac /= 10)
			*--start = '0' + (int) (frac % 10);
		*--start = '.';
	}
	start = whole == 0 ? start - 1 : FormatUnsigned(whole, start);
	if (whole == 0)
		*start = '0';
	if (v < 0)
		*--start = '-';

	len = end - start;
	Assert(len < CREDIT_TEXT_LEN_MAX);
	memcpy(buf, start, len);
	buf[len] = '\0';
	return len;
}

/* v as palloc'd text, the shortest exact form. */
char *
CreditText(Credit v)
{
	char	   *buf = palloc(CREDIT_TEXT_LEN_MAX);

	CreditFormat(v, CREDIT_SCALE, false, buf);
	return buf;
}

void
CreditReportOverflow(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("credit out of range"),
			 errdetail("A credit holds at most 170141183460469231731687303.715884105727 in magnitude.")));
}

Datum
credit_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	Credit		v = 0;

	switch (CreditParseDecimal(str, CREDIT_SCALE, CREDIT_ROUND_EXACT, true, &v))
	{
		case CREDIT_OK:
			break;
		case CREDIT_TOO_PRECISE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type credit: \"%s\"",
							CompayEchoInput(str)),
					 errdetail("A credit has at most 12 fractional digits."),
					 errhint("Use compay.round_credit() to round a value with more digits.")));
			break;
		case CREDIT_OUT_OF_RANGE:
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value \"%s\" is out of range for type credit",
							CompayEchoInput(str))));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type credit: \"%s\"",
							CompayEchoInput(str)),
					 errdetail("A credit is written as an optional sign, digits and an optional point with up to 12 digits.")));
	}
	PG_RETURN_CREDIT(v);
}

Datum
credit_out(PG_FUNCTION_ARGS)
{
	char	   *buf = palloc(CREDIT_TEXT_LEN_MAX);

	CreditFormat(PG_GETARG_CREDIT(0), CREDIT_SCALE, false, buf);
	PG_RETURN_CSTRING(buf);
}

/* Binary form: the int128 in network byte order, high half first. */
Datum
credit_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	uint64		hi = (uint64) pq_getmsgint64(buf);
	uint64		lo = (uint64) pq_getmsgint64(buf);
	Credit		v = (Credit) (((uint128) hi << 64) | lo);

	/* The only 16-byte pattern that is not a credit is -2^127. */
	if (!CreditInRange(v))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("binary value is out of range for type credit")));
	PG_RETURN_CREDIT(v);
}

Datum
credit_send(PG_FUNCTION_ARGS)
{
	uint128		v = (uint128) PG_GETARG_CREDIT(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint64(&buf, (uint64) (v >> 64));
	pq_sendint64(&buf, (uint64) v);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Whole units always fit: 2^63 * 10^12 is far below 2^127. */
Datum
credit_from_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT((Credit) PG_GETARG_INT64(0) * CREDIT_UNIT);
}

Datum
credit_from_int4(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT((Credit) PG_GETARG_INT32(0) * CREDIT_UNIT);
}

Datum
credit_from_int2(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT((Credit) PG_GETARG_INT16(0) * CREDIT_UNIT);
}

/* v as an exact numeric, read as a count of 10^-scale units. */
Numeric
CreditToNumeric(Credit v, int scale)
{
	char		buf[CREDIT_TEXT_LEN_MAX];

	CreditFormat(v, scale, false, buf);
	return DatumGetNumeric(DirectFunctionCall3(numeric_in,
											   CStringGetDatum(buf),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/*
 * num as a count of 10^-scale units, rounded as asked.  what names the
 * conversion in error messages.
 */
Credit
CreditFromNumeric(Numeric num, int scale, CreditRounding rounding,
				  const char *what)
{
	char	   *str;
	Credit		v = 0;
	CreditStatus status;

	if (numeric_is_nan(num))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot convert NaN to credit")));
	if (numeric_is_inf(num))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("cannot convert infinity to credit")));

	str = DatumGetCString(DirectFunctionCall1(numeric_out,
											  NumericGetDatum(num)));
	status = CreditParseDecimal(str, scale, rounding, false, &v);
	if (status == CREDIT_OUT_OF_RANGE)
		CreditReportOverflow();
	if (status == CREDIT_TOO_PRECISE && scale == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s takes a whole number of atomic units, not \"%s\"",
						what, CompayEchoInput(str))));
	if (status == CREDIT_TOO_PRECISE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value \"%s\" has more than %d fractional digits",
						CompayEchoInput(str), scale),
				 errdetail("A credit has at most 12 fractional digits."),
				 errhint("Use compay.round_credit() to round it first.")));
	Assert(status == CREDIT_OK);
	pfree(str);
	return v;
}

Datum
credit_from_numeric(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CreditFromNumeric(PG_GETARG_NUMERIC(0), CREDIT_SCALE,
									   CREDIT_ROUND_EXACT, "credit"));
}

Datum
credit_to_numeric(PG_FUNCTION_ARGS)
{
	PG_RETURN_NUMERIC(CreditToNumeric(PG_GETARG_CREDIT(0), CREDIT_SCALE));
}

Datum
credit_atomic(PG_FUNCTION_ARGS)
{
	PG_RETURN_NUMERIC(CreditToNumeric(PG_GETARG_CREDIT(0), 0));
}

Datum
credit_from_atomic(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CreditFromNumeric(PG_GETARG_NUMERIC(0), 0,
									   CREDIT_ROUND_EXACT,
									   "compay.credit_from_atomic()"));
}

CreditRounding
CreditRoundingFromName(const char *name)
{
	static const struct
	{
		const char *name;
		CreditRounding rounding;
	}			modes[] = {
		{"half_even", CREDIT_ROUND_HALF_EVEN},
		{"half_up", CREDIT_ROUND_HALF_UP},
		{"down", CREDIT_ROUND_DOWN},
		{"floor", CREDIT_ROUND_FLOOR},
		{"ceiling", CREDIT_ROUND_CEILING},
	};

	for (int i = 0; i < (int) lengthof(modes); i++)
		if (strcmp(name, modes[i].name) == 0)
			return modes[i].rounding;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown rounding mode \"%s\"", CompayEchoInput(name)),
			 errhint("Use one of half_even, half_up, down, floor or ceiling.")));
}

Datum
credit_round(PG_FUNCTION_ARGS)
{
	char	   *mode = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_CREDIT(CreditFromNumeric(PG_GETARG_NUMERIC(0), CREDIT_SCALE,
									   CreditRoundingFromName(mode),
									   "compay.round_credit()"));
}

Datum
credit_xmr(PG_FUNCTION_ARGS)
{
	char		buf[CREDIT_TEXT_LEN_MAX];

	CreditFormat(PG_GETARG_CREDIT(0), CREDIT_SCALE, true, buf);
	PG_RETURN_TEXT_P(cstring_to_text(buf));
}

/*
 * The check hook of every amount, ratio and factor setting: true when the
 * new value is an exact decimal with at most 12 decimals within [lo, hi]
 * (in atomic units); else false, with detail as the error's DETAIL.
 */
bool
CreditCheckSetting(const char *text, Credit lo, Credit hi, const char *detail)
{
	Credit		v;

	if (CreditParseDecimal(text, CREDIT_SCALE, CREDIT_ROUND_EXACT, true,
						   &v) == CREDIT_OK && v >= lo && v <= hi)
		return true;
	GUC_check_errdetail("%s", detail);
	return false;
}

/*
 * The check hook of every setting that is an amount (a credit limit, a
 * stake, a payout minimum or maximum): a non-negative credit.
 */
bool
CreditCheckAmountSetting(char **newval, void **extra pg_attribute_unused(),
						 GucSource source pg_attribute_unused())
{
	return CreditCheckSetting(*newval, 0, CREDIT_MAX,
							  "An amount is a non-negative decimal with at most 12 decimals.");
}
