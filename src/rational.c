/*-------------------------------------------------------------------------
 *
 * rational.c
 *	  Exact rational arithmetic with GMP, rounded once at the end.  The one
 *	  file that includes <gmp.h>.
 *
 * GMP values live only inside one function here: initialised, computed,
 * exported, cleared.  Nothing in this file raises a PostgreSQL error, so no
 * longjmp can skip a clear and leak GMP's memory; results come back as a
 * CreditStatus for the caller to report.  We never call
 * mp_set_memory_functions: it is process-global and other libraries loaded
 * into the backend use GMP too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <gmp.h>

#include "credit.h"

/* Sets z to the int128 v. */
static void
MpzSetInt128(mpz_t z, int128 v)
{
	uint128		mag = v < 0 ? (uint128) (-v) : (uint128) v;

	mpz_import(z, 1, -1, sizeof(uint128), 0, 0, &mag);
	if (v < 0)
		mpz_neg(z, z);
}

/* Exports z into *out if it is a valid credit. */
static bool
MpzGetCredit(const mpz_t z, Credit *out)
{
	uint128		mag = 0;

	if (mpz_sizeinbase(z, 2) > 127)
		return false;
	mpz_export(&mag, NULL, -1, sizeof(uint128), 0, 0, z);
	if (mag > (uint128) CREDIT_MAX)
		return false;
	*out = mpz_sgn(z) < 0 ? -(Credit) mag : (Credit) mag;
	return true;
}

/*
 * Splits decimal text (as numeric_out prints it: optional sign, digits,
 * optional point and digits) into integer numerator and denominator text,
 * palloc'd before any GMP value exists.  Returns false on anything else.
 */
static bool
DecimalToFraction(const char *dec, char **num, char **den)
{
	int			len = strlen(dec);
	char	   *n = palloc(len + 1);
	char	   *d = palloc(len + 2);
	int			nn = 0;
	int			nd = 1;
	bool		point = false;
	const char *p = dec;

	if (*p == '-')
		n[nn++] = *p++;
	else if (*p == '+')
		p++;
	d[0] = '1';
	for (; *p; p++)
	{
		if (*p == '.' && !point)
			point = true;
		else if (isdigit((unsigned char) *p))
		{
			n[nn++] = *p;
			if (point)
				d[nd++] = '0';
		}
		else
			return false;
	}
	n[nn] = '\0';
	d[nd] = '\0';
	*num = n;
	*den = d;
	return nn > 0 && isdigit((unsigned char) n[nn - 1]);
}

/*
 * Rounds q to an integer by the given rule into z.  The rule for each mode
 * is documented in docs/design.md ("Rounding").
 */
static void
MpqRound(mpz_t z, const mpq_t q, CreditRounding rounding)
{
	mpz_t		r;
	mpz_t		twice_r;
	int			half;

	mpz_init(r);
	mpz_init(twice_r);
	/* z = floor(q), 0 <= r < den */
	mpz_fdiv_qr(z, r, mpq_numref(q), mpq_denref(q));
	mpz_mul_2exp(twice_r, r, 1);
	half = mpz_cmp(twice_r, mpq_denref(q));

	if (mpz_sgn(r) != 0)
	{
		bool		up = false;

		switch (rounding)
		{
			case CREDIT_ROUND_EXACT:
			case CREDIT_ROUND_FLOOR:
				break;
			case CREDIT_ROUND_CEILING:
				up = true;
				break;
			case CREDIT_ROUND_DOWN:
				up = mpz_sgn(z) < 0;
				break;
			case CREDIT_ROUND_HALF_UP:
				up = half > 0 || (half == 0 && mpz_sgn(z) >= 0);
				break;
			case CREDIT_ROUND_HALF_EVEN:
				up = half > 0 || (half == 0 && mpz_odd_p(z));
				break;
		}
		if (up)
			mpz_add_ui(z, z, 1);
	}
	mpz_clear(r);
	mpz_clear(twice_r);
}

/*
 * One factor as integer text: (num / den) / (num2 / den2).  A decimal
 * "12.5" is 125/10 over 1/1; a quotient "a/b" of decimals a and b keeps
 * each side's own denominator.
 */
typedef struct Factor
{
	char	   *num;
	char	   *den;
	char	   *num2;
	char	   *den2;
} Factor;

/*
 * Reads a factor: decimal text, or "a/b" with decimals a and b >= 0 (b = 0
 * is found by the GMP code: a division by zero).  invert swaps the two
 * sides.
 */
static bool
ParseFactor(const char *text, bool invert, Factor *f)
{
	const char *slash = strchr(text, '/');

	if (slash == NULL)
	{
		if (!DecimalToFraction(text, &f->num, &f->den))
			return false;
		f->num2 = "1";
		f->den2 = "1";
	}
	else if (!DecimalToFraction(pnstrdup(text, slash - text), &f->num, &f->den) ||
			 !DecimalToFraction(slash + 1, &f->num2, &f->den2) ||
			 f->num2[0] == '-')
		return false;
	if (invert)
	{
		Factor		t = *f;

		f->num = t.num2;
		f->den = t.den2;
		f->num2 = t.num;
		f->den2 = t.den;
	}
	return true;
}

/* Sets q to the factor f, canonical; CREDIT_OK or why not. */
static CreditStatus
FactorToMpq(mpq_t q, const Factor *f, mpz_t scratch)
{
	/* mpz_set_str does not take a leading '+'; DecimalToFraction drops it. */
	if (mpz_set_str(mpq_numref(q), f->num, 10) != 0 ||
		mpz_set_str(mpq_denref(q), f->den2, 10) != 0)
		return CREDIT_SYNTAX;
	mpz_mul(mpq_numref(q), mpq_numref(q), mpq_denref(q));	/* num * den2 */
	if (mpz_set_str(scratch, f->num2, 10) != 0 ||
		mpz_set_str(mpq_denref(q), f->den, 10) != 0)
		return CREDIT_SYNTAX;
	mpz_mul(mpq_denref(q), mpq_denref(q), scratch);	/* den * num2 */
	if (mpz_sgn(mpq_denref(q)) == 0)
		return CREDIT_DIVISION_BY_ZERO;
	mpq_canonicalize(q);
	return CREDIT_OK;
}

/* Rounds x once into *out. */
static CreditStatus
MpqToCredit(const mpq_t x, CreditRounding rounding, mpz_t z, Credit *out)
{
	MpqRound(z, x, rounding);
	return MpzGetCredit(z, out) ? CREDIT_OK : CREDIT_OUT_OF_RANGE;
}

/*
 * *result = a * (product of the factors), exact, then rounded once to an
 * integer count of atomic units.  All strings are read before the first
 * GMP value exists, so nothing below can raise an error while GMP memory is
 * live.
 */
static CreditStatus
MulFactors(Credit a, Factor *factors, int n, CreditRounding rounding,
		   Credit *result)
{
	mpq_t		x;
	mpq_t		f;
	mpz_t		z;
	CreditStatus status = CREDIT_OK;

	mpq_init(x);
	mpq_init(f);
	mpz_init(z);
	MpzSetInt128(mpq_numref(x), a);
	for (int i = 0; i < n && status == CREDIT_OK; i++)
	{
		status = FactorToMpq(f, &factors[i], z);
		if (status == CREDIT_OK)
			mpq_mul(x, x, f);
	}
	if (status == CREDIT_OK)
		status = MpqToCredit(x, rounding, z, result);
	mpz_clear(z);
	mpq_clear(f);
	mpq_clear(x);
	return status;
}

/*
 * *result = a * dec (or a / dec when divide), rounded once to an integer
 * count of atomic units.  dec is decimal text.
 */
CreditStatus
RationalMulDecimal(Credit a, const char *dec, bool divide,
				   CreditRounding rounding, Credit *result)
{
	Factor		f;

	if (!ParseFactor(dec, divide, &f))
		return CREDIT_SYNTAX;
	return MulFactors(a, &f, 1, rounding, result);
}

/*
 * *result = a * factors[0] * ... * factors[n - 1], each factor decimal text
 * or "a/b" with decimals a and b, exact, rounded once.
 */
CreditStatus
RationalMulMany(Credit a, const char *const *factors, int n,
				CreditRounding rounding, Credit *result)
{
	Factor	   *parsed = palloc(sizeof(Factor) * Max(n, 1));

	for (int i = 0; i < n; i++)
		if (!ParseFactor(factors[i], false, &parsed[i]))
			return CREDIT_SYNTAX;
	return MulFactors(a, parsed, n, rounding, result);
}

/*
 * The steps of a price, exact until each is rounded on its own:
 *
 *	 x = sum of terms[i].price * terms[i].quantity	 (steps[0 .. nterms-1]
 *													  after each term)
 *	 x = x * factors[j]								 (steps[nterms + j])
 *	 x = min(max(x, *min), *max)					 (steps[nterms + nfactors])
 *
 * steps[k] is the running value after step k rounded by the given rule;
 * the last is the price.  Every step rounds the exact running value, never
 * an earlier rounded one, so the differences of consecutive steps add up
 * to the price exactly (docs/design.md, "Rounding").  min and max may be
 * NULL; both are whole atomic units, so clamping commutes with rounding.
 */
CreditStatus
RationalPriceSteps(const RationalTerm *terms, int nterms,
				   const char *const *factors, int nfactors,
				   const Credit *min, const Credit *max,
				   CreditRounding rounding, Credit *steps)
{
	Factor	   *q = palloc(sizeof(Factor) * Max(nterms + nfactors, 1));
	mpq_t		x;
	mpq_t		f;
	mpq_t		bound;
	mpz_t		z;
	CreditStatus status = CREDIT_OK;
	int			k;

	for (k = 0; k < nterms; k++)
		if (!ParseFactor(terms[k].quantity, false, &q[k]))
			return CREDIT_SYNTAX;
	for (k = 0; k < nfactors; k++)
		if (!ParseFactor(factors[k], false, &q[nterms + k]))
			return CREDIT_SYNTAX;

	mpq_init(x);
	mpq_init(f);
	mpq_init(bound);
	mpz_init(z);
	for (k = 0; k < nterms + nfactors && status == CREDIT_OK; k++)
	{
		status = FactorToMpq(f, &q[k], z);
		if (status != CREDIT_OK)
			break;
		if (k < nterms)
		{
			MpzSetInt128(z, terms[k].price);
			mpz_mul(mpq_numref(f), mpq_numref(f), z);
			mpq_canonicalize(f);
			mpq_add(x, x, f);
		}
		else
			mpq_mul(x, x, f);
		status = MpqToCredit(x, rounding, z, &steps[k]);
	}
	if (status == CREDIT_OK)
	{
		if (min != NULL)
		{
			MpzSetInt128(z, *min);
			mpq_set_z(bound, z);
			if (mpq_cmp(x, bound) < 0)
				mpq_set(x, bound);
		}
		if (max != NULL)
		{
			MpzSetInt128(z, *max);
			mpq_set_z(bound, z);
			if (mpq_cmp(x, bound) > 0)
				mpq_set(x, bound);
		}
		status = MpqToCredit(x, rounding, z, &steps[k]);
	}
	mpz_clear(z);
	mpq_clear(bound);
	mpq_clear(f);
	mpq_clear(x);
	return status;
}
