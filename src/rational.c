/*-------------------------------------------------------------------------
 *
 * rational.c
 *	  Exact rational arithmetic with GMP, rounded once at the end.  The one
 *	  file that includes <gmp.h>.
 *
 * GMP values live only inside one function here: initialised, computed,
 * exported, cleared; only RationalPriceSteps keeps its scratch values for
 * the backend's life (initialised once, never cleared), so that a price
 * allocates nothing.  Nothing in this file raises a PostgreSQL error, so no
 * longjmp can skip a clear and leak GMP's memory; results come back as a
 * CreditStatus for the caller to report.  We never call
 * mp_set_memory_functions: it is process-global and other libraries loaded
 * into the backend use GMP too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include <gmp.h>

#include "credit.h"

/* Sets z to the int128 v. */
static void
MpzSetInt128(mpz_t z, int128 v)
{
	uint128		mag = v < 0 ? (uint128) (-v) : (uint128) v;

	if (v >= LONG_MIN && v <= LONG_MAX)
	{
		mpz_set_si(z, (long) v);
		return;
	}

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

/* 10^k for k = 0 .. 9: a chunk of digits fits an unsigned long anywhere. */
static const unsigned long pow10_chunk[] = {
	1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000
};

#define DIGITS_PER_CHUNK 9

/*
 * Reads the decimal s[0 .. len) (optional sign, digits, optional point and
 * digits, as numeric_out prints it) into num / den: num the digits with
 * the sign, den 10^(digits after the point), nine digits at a time.
 * Returns false on anything else.  Raises no PostgreSQL error.
 */
static bool
MpzSetDecimal(mpz_t num, mpz_t den, const char *s, size_t len)
{
	bool		neg = false;
	bool		point = false;
	bool		any = false;
	unsigned long chunk = 0;
	int			chunk_digits = 0;
	unsigned long scale = 0;
	size_t		i = 0;

	mpz_set_ui(num, 0);
	if (i < len && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	for (; i < len; i++)
	{
		if (s[i] == '.' && !point)
		{
			point = true;
			continue;
		}
		if (s[i] < '0' || s[i] > '9')
			return false;
		any = true;
		chunk = chunk * 10 + (unsigned long) (s[i] - '0');
		scale += point;
		if (++chunk_digits == DIGITS_PER_CHUNK)
		{
			mpz_mul_ui(num, num, pow10_chunk[DIGITS_PER_CHUNK]);
			mpz_add_ui(num, num, chunk);
			chunk = 0;
			chunk_digits = 0;
		}
	}
	mpz_mul_ui(num, num, pow10_chunk[chunk_digits]);
	mpz_add_ui(num, num, chunk);
	if (neg)
		mpz_neg(num, num);
	mpz_ui_pow_ui(den, 10, scale);
	return any;
}

/*
 * Sets q to a factor: decimal text, or "a/b" with decimals a and b >= 0
 * (b = 0: a division by zero), inverted when invert.  The denominator is
 * made positive; q is reduced only when canonical (the sums and products
 * of RationalPriceSteps's price alone do without).  a and b are scratch.
 */
static CreditStatus
TextToMpq(mpq_t q, const char *text, bool invert, bool canonical, mpz_t a, mpz_t b)
{
	const char *slash = strchr(text, '/');
	mpz_ptr		num = mpq_numref(q);
	mpz_ptr		den = mpq_denref(q);

	if (!MpzSetDecimal(num, den, text, slash ? (size_t) (slash - text) : strlen(text)))
		return CREDIT_SYNTAX;
	if (slash != NULL)
	{
		if (slash[1] == '-' || !MpzSetDecimal(a, b, slash + 1, strlen(slash + 1)))
			return CREDIT_SYNTAX;
		mpz_mul(num, num, b);	/* (n / d) / (a / b) = n b / (d a) */
		mpz_mul(den, den, a);
	}
	if (invert)
		mpz_swap(num, den);
	if (mpz_sgn(den) == 0)
		return CREDIT_DIVISION_BY_ZERO;
	if (mpz_sgn(den) < 0)
	{
		mpz_neg(num, num);
		mpz_neg(den, den);
	}
	if (canonical)
		mpq_canonicalize(q);
	return CREDIT_OK;
}

/*
 * x += f without reducing either: equal denominators add numerators,
 * others cross-multiply (scratch is overwritten).
 */
static void
MpqAddUnreduced(mpq_t x, const mpq_t f, mpz_t scratch)
{
	if (mpz_cmp(mpq_denref(x), mpq_denref(f)) == 0)
	{
		mpz_add(mpq_numref(x), mpq_numref(x), mpq_numref(f));
		return;
	}
	mpz_mul(mpq_numref(x), mpq_numref(x), mpq_denref(f));
	mpz_mul(scratch, mpq_numref(f), mpq_denref(x));
	mpz_add(mpq_numref(x), mpq_numref(x), scratch);
	mpz_mul(mpq_denref(x), mpq_denref(x), mpq_denref(f));
}

/*
 * x = bound when x is below it (lower) or above it (upper); x need not be
 * reduced, its denominator is positive.  scratch is overwritten.
 */
static void
MpqClamp(mpq_t x, Credit bound, bool lower, mpz_t scratch)
{
	int			cmp;

	MpzSetInt128(scratch, bound);
	mpz_mul(scratch, scratch, mpq_denref(x));
	cmp = mpz_cmp(mpq_numref(x), scratch);
	if (lower ? cmp < 0 : cmp > 0)
	{
		MpzSetInt128(mpq_numref(x), bound);
		mpz_set_ui(mpq_denref(x), 1);
	}
}

/* Rounds x once into *out (x need not be reduced). */
static CreditStatus
MpqToCredit(const mpq_t x, CreditRounding rounding, mpz_t z, Credit *out)
{
	MpqRound(z, x, rounding);
	return MpzGetCredit(z, out) ? CREDIT_OK : CREDIT_OUT_OF_RANGE;
}

/*
 * *result = a * (product of the factors, the first inverted when
 * invert_first), exact, then rounded once to an integer count of atomic
 * units.
 */
static CreditStatus
MulFactors(Credit a, const char *const *factors, int n, bool invert_first,
		   CreditRounding rounding, Credit *result)
{
	mpq_t		x;
	mpq_t		f;
	mpz_t		z;
	mpz_t		z2;
	CreditStatus status = CREDIT_OK;

	mpq_init(x);
	mpq_init(f);
	mpz_init(z);
	mpz_init(z2);
	MpzSetInt128(mpq_numref(x), a);
	for (int i = 0; i < n && status == CREDIT_OK; i++)
	{
		status = TextToMpq(f, factors[i], i == 0 && invert_first, true, z, z2);
		if (status == CREDIT_OK)
			mpq_mul(x, x, f);
	}
	if (status == CREDIT_OK)
		status = MpqToCredit(x, rounding, z, result);
	mpz_clear(z2);
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
	return MulFactors(a, &dec, 1, divide, rounding, result);
}

/*
 * *result = a * factors[0] * ... * factors[n - 1], each factor decimal text
 * or "a/b" with decimals a and b, exact, rounded once.
 */
CreditStatus
RationalMulMany(Credit a, const char *const *factors, int n,
				CreditRounding rounding, Credit *result)
{
	return MulFactors(a, factors, n, false, rounding, result);
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
 * With steps NULL only the price is computed, into *price, without the
 * roundings of the steps (the same exact value, the same one rounding).
 * The terms are added over their product denominator without reducing
 * (no gcd per term): the quantities' denominators are powers of ten and
 * 2^30, small, and one reduction at the rounding is all the value needs.
 */
CreditStatus
RationalPriceSteps(const RationalTerm *terms, int nterms,
				   const char *const *factors, int nfactors,
				   const Credit *min, const Credit *max,
				   CreditRounding rounding, Credit *steps, Credit *price)
{
	bool		with_steps = steps != NULL;
	CreditStatus status = CREDIT_OK;
	int			k;

	/* Scratch kept for the backend's life: a price allocates nothing. */
	static bool ready = false;
	static mpq_t x;
	static mpq_t f;
	static mpz_t z;
	static mpz_t z2;

	if (!ready)
	{
		mpq_init(x);
		mpq_init(f);
		mpz_init(z);
		mpz_init(z2);
		ready = true;
	}
	mpq_set_ui(x, 0, 1);
	for (k = 0; k < nterms + nfactors && status == CREDIT_OK; k++)
	{
		status = TextToMpq(f, k < nterms ? terms[k].quantity : factors[k - nterms], false,
						   with_steps, z, z2);
		if (status != CREDIT_OK)
			break;
		if (k < nterms)
		{
			MpzSetInt128(z, terms[k].price);
			mpz_mul(mpq_numref(f), mpq_numref(f), z);
			if (with_steps)
			{
				mpq_canonicalize(f);
				mpq_add(x, x, f);
			}
			else
				MpqAddUnreduced(x, f, z);
		}
		else if (with_steps)
			mpq_mul(x, x, f);
		else
		{
			mpz_mul(mpq_numref(x), mpq_numref(x), mpq_numref(f));
			mpz_mul(mpq_denref(x), mpq_denref(x), mpq_denref(f));
		}
		if (with_steps)
			status = MpqToCredit(x, rounding, z, &steps[k]);
	}
	if (status == CREDIT_OK)
	{
		if (min != NULL)
			MpqClamp(x, *min, true, z);
		if (max != NULL)
			MpqClamp(x, *max, false, z);
		status = MpqToCredit(x, rounding, z, with_steps ? &steps[k] : price);
	}
	return status;
}
