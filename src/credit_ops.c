/*-------------------------------------------------------------------------
 *
 * credit_ops.c
 *	  Arithmetic, comparison, btree and hash support, and the aggregates of
 *	  compay.credit.
 *
 * Integer arithmetic is done on the int128 with overflow checked by the
 * compiler's builtins; every result is checked against the credit range,
 * so nothing ever wraps.  Products and quotients with numeric go through
 * rational.c and are rounded once, half to even.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "libpq/pqformat.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/supportnodes.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/sortsupport.h"

#include "compay.h"
#include "credit.h"

PG_FUNCTION_INFO_V1(credit_pl);
PG_FUNCTION_INFO_V1(credit_pl_support);
PG_FUNCTION_INFO_V1(credit_muladd_int8);
PG_FUNCTION_INFO_V1(credit_muladd_int4);
PG_FUNCTION_INFO_V1(credit_mi);
PG_FUNCTION_INFO_V1(credit_um);
PG_FUNCTION_INFO_V1(credit_abs);
PG_FUNCTION_INFO_V1(credit_sign);
PG_FUNCTION_INFO_V1(credit_mul_int8);
PG_FUNCTION_INFO_V1(credit_mul_int4);
PG_FUNCTION_INFO_V1(credit_mul_int2);
PG_FUNCTION_INFO_V1(int8_mul_credit);
PG_FUNCTION_INFO_V1(int4_mul_credit);
PG_FUNCTION_INFO_V1(int2_mul_credit);
PG_FUNCTION_INFO_V1(credit_div_int8);
PG_FUNCTION_INFO_V1(credit_div_int4);
PG_FUNCTION_INFO_V1(credit_div_int2);
PG_FUNCTION_INFO_V1(credit_mul_numeric);
PG_FUNCTION_INFO_V1(numeric_mul_credit);
PG_FUNCTION_INFO_V1(credit_div_numeric);
PG_FUNCTION_INFO_V1(credit_div_credit);
PG_FUNCTION_INFO_V1(credit_eq);
PG_FUNCTION_INFO_V1(credit_ne);
PG_FUNCTION_INFO_V1(credit_lt);
PG_FUNCTION_INFO_V1(credit_le);
PG_FUNCTION_INFO_V1(credit_gt);
PG_FUNCTION_INFO_V1(credit_ge);
PG_FUNCTION_INFO_V1(credit_cmp);
PG_FUNCTION_INFO_V1(credit_sortsupport);
PG_FUNCTION_INFO_V1(credit_hash);
PG_FUNCTION_INFO_V1(credit_hash_extended);
PG_FUNCTION_INFO_V1(credit_larger);
PG_FUNCTION_INFO_V1(credit_smaller);
PG_FUNCTION_INFO_V1(credit_sum_accum);
PG_FUNCTION_INFO_V1(credit_sum_combine);
PG_FUNCTION_INFO_V1(credit_sum_serialize);
PG_FUNCTION_INFO_V1(credit_sum_deserialize);
PG_FUNCTION_INFO_V1(credit_sum_final);
PG_FUNCTION_INFO_V1(credit_avg_final);
PG_FUNCTION_INFO_V1(credit_sum_atomic_final);

static inline Credit
CheckedAdd(Credit a, Credit b)
{
	Credit		r;

	if (__builtin_add_overflow(a, b, &r) || !CreditInRange(r))
		CreditReportOverflow();
	return r;
}

static inline Credit
CheckedMul(Credit a, int64 b)
{
	Credit		r;

	/*
	 * Most amounts fit 64 bits, and then the product fits the credit range
	 * (|a * b| < 2^126) with one multiply and no overflow test.
	 */
	if (a == (int64) a)
		return (Credit) (int64) a * b;
	if (__builtin_mul_overflow(a, (Credit) b, &r) || !CreditInRange(r))
		CreditReportOverflow();
	return r;
}

/* a / b rounded half to even; b is never zero here. */
static Credit
DivideHalfEven(Credit a, int64 b)
{
	Credit		q = a / b;
	Credit		r = a % b;
	uint128		twice_r = (uint128) (r < 0 ? -r : r) * 2;
	uint128		abs_b = (uint128) (b < 0 ? -(int128) b : (int128) b);

	Assert(b != 0);
	if (twice_r > abs_b || (twice_r == abs_b && (q & 1) != 0))
		q += ((a < 0) == (b < 0)) ? 1 : -1;
	Assert(CreditInRange(q));
	return q;
}

static Credit
DivideByInt(Credit a, int64 b)
{
	if (b == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DIVISION_BY_ZERO),
				 errmsg("division by zero")));
	return DivideHalfEven(a, b);
}

Datum
credit_pl(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedAdd(PG_GETARG_CREDIT(0), PG_GETARG_CREDIT(1)));
}

/* a * k + b: what the planner makes of "a * k + b" (see credit_pl_support). */
Datum
credit_muladd_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedAdd(CheckedMul(PG_GETARG_CREDIT(0), PG_GETARG_INT64(1)),
								PG_GETARG_CREDIT(2)));
}

Datum
credit_muladd_int4(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedAdd(CheckedMul(PG_GETARG_CREDIT(0), PG_GETARG_INT32(1)),
								PG_GETARG_CREDIT(2)));
}

/*
 * If node is a call of compay's credit-times-integer function (either
 * order), sets *credit and *factor and returns the integer's type.
 */
static Oid
MatchCreditTimesInt(Node *node, Node **credit, Node **factor)
{
	Oid			funcid;
	List	   *args;
	char	   *name;

	if (IsA(node, OpExpr))
	{
		funcid = ((OpExpr *) node)->opfuncid;
		args = ((OpExpr *) node)->args;
	}
	else if (IsA(node, FuncExpr))
	{
		funcid = ((FuncExpr *) node)->funcid;
		args = ((FuncExpr *) node)->args;
	}
	else
		return InvalidOid;
	if (list_length(args) != 2 ||
		get_func_namespace(funcid) != get_namespace_oid("compay", true))
		return InvalidOid;

	name = get_func_name(funcid);
	if (name == NULL)
		return InvalidOid;
	if (strcmp(name, "credit_mul_int8") == 0 || strcmp(name, "credit_mul_int4") == 0)
	{
		*credit = linitial(args);
		*factor = lsecond(args);
	}
	else if (strcmp(name, "int8_mul_credit") == 0 || strcmp(name, "int4_mul_credit") == 0)
	{
		*credit = lsecond(args);
		*factor = linitial(args);
	}
	else
		return InvalidOid;
	return exprType(*factor);
}

/*
 * Planner support for credit + credit: "a * k + b" (and "b + a * k") with
 * an integer k becomes one call, compay.credit_muladd_int4/int8(a, k, b),
 * which computes the same thing with the same overflow checks but without
 * the intermediate value.  Price arithmetic (rate * quantity + base) is
 * mostly of this shape.
 */
Datum
credit_pl_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSimplify *req;
	Node	   *left;
	Node	   *right;
	Node	   *credit = NULL;
	Node	   *factor = NULL;
	Oid			factor_type;
	Oid			argtypes[3];
	Oid			muladd;

	if (!IsA(rawreq, SupportRequestSimplify))
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestSimplify *) rawreq;
	if (list_length(req->fcall->args) != 2)
		PG_RETURN_POINTER(NULL);
	left = linitial(req->fcall->args);
	right = lsecond(req->fcall->args);

	factor_type = MatchCreditTimesInt(left, &credit, &factor);
	if (!OidIsValid(factor_type))
	{
		factor_type = MatchCreditTimesInt(right, &credit, &factor);
		right = left;
	}
	if (factor_type != INT8OID && factor_type != INT4OID)
		PG_RETURN_POINTER(NULL);

	argtypes[0] = req->fcall->funcresulttype;
	argtypes[1] = factor_type;
	argtypes[2] = req->fcall->funcresulttype;
	muladd = LookupFuncName(list_make2(makeString("compay"),
									   makeString(factor_type == INT8OID ?
												  "credit_muladd_int8" :
												  "credit_muladd_int4")),
							3, argtypes, true);
	if (!OidIsValid(muladd))
		PG_RETURN_POINTER(NULL);
	PG_RETURN_POINTER(makeFuncExpr(muladd, req->fcall->funcresulttype,
								   list_make3(credit, factor, right),
								   InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL));
}

Datum
credit_mi(PG_FUNCTION_ARGS)
{
	/* -b cannot overflow: the range is symmetric. */
	PG_RETURN_CREDIT(CheckedAdd(PG_GETARG_CREDIT(0), -PG_GETARG_CREDIT(1)));
}

Datum
credit_um(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(-PG_GETARG_CREDIT(0));
}

Datum
credit_abs(PG_FUNCTION_ARGS)
{
	Credit		v = PG_GETARG_CREDIT(0);

	PG_RETURN_CREDIT(v < 0 ? -v : v);
}

Datum
credit_sign(PG_FUNCTION_ARGS)
{
	Credit		v = PG_GETARG_CREDIT(0);

	PG_RETURN_INT32(v > 0 ? 1 : (v < 0 ? -1 : 0));
}

Datum
credit_mul_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedMul(PG_GETARG_CREDIT(0), PG_GETARG_INT64(1)));
}

Datum
credit_mul_int4(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedMul(PG_GETARG_CREDIT(0), PG_GETARG_INT32(1)));
}

Datum
credit_mul_int2(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedMul(PG_GETARG_CREDIT(0), PG_GETARG_INT16(1)));
}

Datum
int8_mul_credit(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedMul(PG_GETARG_CREDIT(1), PG_GETARG_INT64(0)));
}

Datum
int4_mul_credit(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedMul(PG_GETARG_CREDIT(1), PG_GETARG_INT32(0)));
}

Datum
int2_mul_credit(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(CheckedMul(PG_GETARG_CREDIT(1), PG_GETARG_INT16(0)));
}

Datum
credit_div_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(DivideByInt(PG_GETARG_CREDIT(0), PG_GETARG_INT64(1)));
}

Datum
credit_div_int4(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(DivideByInt(PG_GETARG_CREDIT(0), PG_GETARG_INT32(1)));
}

Datum
credit_div_int2(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(DivideByInt(PG_GETARG_CREDIT(0), PG_GETARG_INT16(1)));
}

/* a * num or a / num, exact, then rounded once half to even. */
static Credit
MulNumeric(Credit a, Numeric num, bool divide)
{
	char	   *dec;
	Credit		r = 0;
	CreditStatus status;

	if (numeric_is_nan(num) || numeric_is_inf(num))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot %s a credit by %s", divide ? "divide" : "multiply",
						numeric_is_nan(num) ? "NaN" : "infinity")));

	dec = DatumGetCString(DirectFunctionCall1(numeric_out,
											  NumericGetDatum(num)));
	status = RationalMulDecimal(a, dec, divide, CREDIT_ROUND_HALF_EVEN, &r);
	pfree(dec);
	if (status == CREDIT_DIVISION_BY_ZERO)
		ereport(ERROR,
				(errcode(ERRCODE_DIVISION_BY_ZERO),
				 errmsg("division by zero")));
	if (status == CREDIT_OUT_OF_RANGE)
		CreditReportOverflow();
	if (status != CREDIT_OK)
		elog(ERROR, "numeric_out gave text that is not a decimal");
	return r;
}

Datum
credit_mul_numeric(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(MulNumeric(PG_GETARG_CREDIT(0), PG_GETARG_NUMERIC(1),
								false));
}

Datum
numeric_mul_credit(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(MulNumeric(PG_GETARG_CREDIT(1), PG_GETARG_NUMERIC(0),
								false));
}

Datum
credit_div_numeric(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(MulNumeric(PG_GETARG_CREDIT(0), PG_GETARG_NUMERIC(1),
								true));
}

/* The ratio of two amounts, as numeric division computes it. */
Datum
credit_div_credit(PG_FUNCTION_ARGS)
{
	Credit		a = PG_GETARG_CREDIT(0);
	Credit		b = PG_GETARG_CREDIT(1);

	if (b == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DIVISION_BY_ZERO),
				 errmsg("division by zero")));
	PG_RETURN_DATUM(DirectFunctionCall2(numeric_div,
										NumericGetDatum(CreditToNumeric(a, 0)),
										NumericGetDatum(CreditToNumeric(b, 0))));
}

static inline int
CreditCmp(Credit a, Credit b)
{
	return (a > b) - (a < b);
}

#define CREDIT_CMP_ARGS CreditCmp(PG_GETARG_CREDIT(0), PG_GETARG_CREDIT(1))

Datum
credit_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CREDIT_CMP_ARGS == 0);
}

Datum
credit_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CREDIT_CMP_ARGS != 0);
}

Datum
credit_lt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CREDIT_CMP_ARGS < 0);
}

Datum
credit_le(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CREDIT_CMP_ARGS <= 0);
}

Datum
credit_gt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CREDIT_CMP_ARGS > 0);
}

Datum
credit_ge(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CREDIT_CMP_ARGS >= 0);
}

Datum
credit_cmp(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(CREDIT_CMP_ARGS);
}

static int
credit_fastcmp(Datum x, Datum y, SortSupport ssup pg_attribute_unused())
{
	return CreditCmp(DatumGetCredit(x), DatumGetCredit(y));
}

Datum
credit_sortsupport(PG_FUNCTION_ARGS)
{
	SortSupport ssup = (SortSupport) PG_GETARG_POINTER(0);

	ssup->comparator = credit_fastcmp;
	PG_RETURN_VOID();
}

/* Equal credits have equal bytes: there is one representation per value. */
Datum
credit_hash(PG_FUNCTION_ARGS)
{
	return hash_any((unsigned char *) DatumGetPointer(PG_GETARG_DATUM(0)),
					sizeof(Credit));
}

Datum
credit_hash_extended(PG_FUNCTION_ARGS)
{
	return hash_any_extended((unsigned char *) DatumGetPointer(PG_GETARG_DATUM(0)),
							 sizeof(Credit), PG_GETARG_INT64(1));
}

Datum
credit_larger(PG_FUNCTION_ARGS)
{
	return CREDIT_CMP_ARGS >= 0 ? PG_GETARG_DATUM(0) : PG_GETARG_DATUM(1);
}

Datum
credit_smaller(PG_FUNCTION_ARGS)
{
	return CREDIT_CMP_ARGS <= 0 ? PG_GETARG_DATUM(0) : PG_GETARG_DATUM(1);
}

/* 2^128, the weight of one unit of carry. */
#define TWO_TO_128 "340282366920938463463374607431768211456"

/*
 * sum(), avg() and sum_atomic() share one transition state, updated in
 * place in the aggregate's memory context so that a row costs no
 * allocation.  The running total is carry * 2^128 + sum: an addition that
 * leaves the int128 range wraps sum and moves carry, so a running total
 * never overflows (carry stays far from its bounds below 2^63 rows).  Only
 * the final result must fit: sum() raises 22003 when it does not.
 */
typedef struct CreditSumState
{
	Credit		sum;			/* the total modulo 2^128, as a signed value */
	int64		carry;			/* multiples of 2^128 */
	int64		count;
} CreditSumState;

static CreditSumState *
SumStateCreate(FunctionCallInfo fcinfo)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(ERROR, "credit aggregate called in non-aggregate context");
	return (CreditSumState *) MemoryContextAllocZero(aggcontext,
													 sizeof(CreditSumState));
}

/* Adds v to the running total; wraps into carry instead of overflowing. */
static inline void
SumStateAdd(CreditSumState *state, Credit v)
{
	Credit		r;

	if (__builtin_add_overflow(state->sum, v, &r))
		state->carry += v > 0 ? 1 : -1;
	state->sum = r;
}

Datum
credit_sum_accum(PG_FUNCTION_ARGS)
{
	CreditSumState *state;

	state = PG_ARGISNULL(0) ? SumStateCreate(fcinfo) :
		(CreditSumState *) PG_GETARG_POINTER(0);
	if (!PG_ARGISNULL(1))
	{
		SumStateAdd(state, PG_GETARG_CREDIT(1));
		state->count++;
	}
	PG_RETURN_POINTER(state);
}

Datum
credit_sum_combine(PG_FUNCTION_ARGS)
{
	CreditSumState *state;
	CreditSumState *other;

	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	other = (CreditSumState *) PG_GETARG_POINTER(1);
	state = PG_ARGISNULL(0) ? SumStateCreate(fcinfo) :
		(CreditSumState *) PG_GETARG_POINTER(0);
	SumStateAdd(state, other->sum);
	state->carry += other->carry;
	state->count += other->count;
	PG_RETURN_POINTER(state);
}

Datum
credit_sum_serialize(PG_FUNCTION_ARGS)
{
	CreditSumState *state = (CreditSumState *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint64(&buf, (int64) ((uint128) state->sum >> 64));
	pq_sendint64(&buf, (int64) (uint64) state->sum);
	pq_sendint64(&buf, state->carry);
	pq_sendint64(&buf, state->count);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

Datum
credit_sum_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	CreditSumState *state = SumStateCreate(fcinfo);
	StringInfoData buf;
	uint64		hi;
	uint64		lo;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	hi = (uint64) pq_getmsgint64(&buf);
	lo = (uint64) pq_getmsgint64(&buf);
	state->sum = (Credit) (((uint128) hi << 64) | lo);
	state->carry = pq_getmsgint64(&buf);
	state->count = pq_getmsgint64(&buf);
	pq_getmsgend(&buf);
	pfree(buf.data);
	PG_RETURN_POINTER(state);
}

Datum
credit_sum_final(PG_FUNCTION_ARGS)
{
	CreditSumState *state;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (CreditSumState *) PG_GETARG_POINTER(0);
	if (state->count == 0)
		PG_RETURN_NULL();
	/* With carry 0 the total is sum itself; any other carry is outside int128. */
	if (state->carry != 0 || !CreditInRange(state->sum))
		CreditReportOverflow();
	PG_RETURN_CREDIT(state->sum);
}

/* compay.sum_atomic(): the exact total in atomic units, never out of range. */
Datum
credit_sum_atomic_final(PG_FUNCTION_ARGS)
{
	CreditSumState *state;
	Datum		total;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (CreditSumState *) PG_GETARG_POINTER(0);
	if (state->count == 0)
		PG_RETURN_NULL();
	if (CreditInRange(state->sum))
		total = NumericGetDatum(CreditToNumeric(state->sum, 0));
	else						/* -2^127 is no credit: two halves */
		total = DirectFunctionCall2(numeric_add,
									NumericGetDatum(CreditToNumeric(state->sum / 2, 0)),
									NumericGetDatum(CreditToNumeric(state->sum - state->sum / 2, 0)));
	if (state->carry != 0)
		total = DirectFunctionCall2(numeric_add, total,
									DirectFunctionCall2(numeric_mul,
														DirectFunctionCall1(int8_numeric,
																			Int64GetDatum(state->carry)),
														NumericGetDatum(CompayNumeric(TWO_TO_128))));
	PG_RETURN_DATUM(total);
}

/*
 * The total of a state as a 192-bit magnitude (three 64-bit limbs, least
 * significant first) and its sign.
 */
static bool
SumStateMagnitude(const CreditSumState *state, uint64 limbs[3])
{
	uint128		lo = (uint128) state->sum;
	uint64		hi = (uint64) (state->carry - (state->sum < 0 ? 1 : 0));
	bool		negative = (int64) hi < 0;

	limbs[0] = (uint64) lo;
	limbs[1] = (uint64) (lo >> 64);
	limbs[2] = hi;
	if (negative)
	{
		/* two's complement negation over the three limbs */
		uint64		add = 1;

		for (int i = 0; i < 3; i++)
		{
			limbs[i] = ~limbs[i] + add;
			add = (add == 1 && limbs[i] == 0) ? 1 : 0;
		}
	}
	return negative;
}

/*
 * The mean of a total that left the int128 range (the mean itself never
 * does): long division of the 192-bit magnitude by count, rounded half
 * to even.
 */
static Credit
WideMeanHalfEven(const CreditSumState *state)
{
	uint64		limbs[3];
	bool		negative = SumStateMagnitude(state, limbs);
	uint64		d = (uint64) state->count;
	uint128		rem = 0;
	uint64		q[3];
	uint128		mean;

	for (int i = 2; i >= 0; i--)
	{
		uint128		cur = (rem << 64) | limbs[i];

		q[i] = (uint64) (cur / d);
		rem = cur % d;
	}
	Assert(q[2] == 0);
	mean = ((uint128) q[1] << 64) | q[0];
	if (rem * 2 > d || (rem * 2 == d && (mean & 1) != 0))
		mean++;
	Assert(mean <= (uint128) CREDIT_MAX);
	return negative ? -(Credit) mean : (Credit) mean;
}

/* The mean, rounded half to even to the atomic unit. */
Datum
credit_avg_final(PG_FUNCTION_ARGS)
{
	CreditSumState *state;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (CreditSumState *) PG_GETARG_POINTER(0);
	if (state->count == 0)
		PG_RETURN_NULL();
	if (state->carry != 0)
		PG_RETURN_CREDIT(WideMeanHalfEven(state));
	PG_RETURN_CREDIT(DivideHalfEven(state->sum, state->count));
}
