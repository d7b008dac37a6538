/*-------------------------------------------------------------------------
 *
 * reward.c
 *	  The Monero compute network's reward formula:
 *	  BaseRate x Duration x UtilizationFactor x QualityFactor, per job type,
 *	  computed exactly and rounded once to the atomic unit, half to even.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "credit.h"
#include "ledger.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_compute_reward);
PG_FUNCTION_INFO_V1(compay_utilization_factor);
PG_FUNCTION_INFO_V1(compay_compute_reward_mean);

static SpiStatement job_type_stmt = {
	.sql = "SELECT base_rate, quality_multiplier::text FROM compay.job_types WHERE job_type = $1",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

/* 22023 unless lo <= value <= hi; NaN is never within. */
static void
CheckRange(Numeric value, const char *lo, const char *hi, const char *what)
{
	if (numeric_is_nan(value) ||
		CompayNumericCmp(value, CompayNumeric(lo)) < 0 ||
		CompayNumericCmp(value, CompayNumeric(hi)) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %s is outside [%s, %s]", what, CompayNumericText(value), lo, hi)));
}

/*
 * The duration in hours as the exact fraction "microseconds/3600000000".
 * Months have no fixed length, so a duration with months is refused.
 */
static char *
HoursFraction(Interval *duration)
{
	int64		usec;

	if (duration->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a duration in months has no fixed length"),
				 errhint("Give the duration in days, hours, minutes or seconds.")));
	if (pg_mul_s64_overflow(duration->day, USECS_PER_DAY, &usec) ||
		pg_add_s64_overflow(usec, duration->time, &usec))
		ereport(ERROR,
				(errcode(ERRCODE_INTERVAL_FIELD_OVERFLOW),
				 errmsg("duration out of range")));
	if (usec < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a duration cannot be negative")));
	return psprintf(INT64_FORMAT "/" INT64_FORMAT, usec, USECS_PER_HOUR);
}

/*
 * The reward: base rate x hours x utilization x quality, exact, rounded
 * once half to even.  quality is decimal text or "sum/n"; NULL takes the
 * job type's multiplier.
 */
static Credit
ComputeReward(FunctionCallInfo fcinfo, const char *quality)
{
	const char *factors[3];
	Credit		base_rate;
	Credit		reward = 0;
	CreditStatus status;
	bool		isnull;
	char	   *job_type;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_type, duration and utilization_factor must not be NULL")));
	job_type = TextArgOrNull(fcinfo, 0);
	CheckRange(PG_GETARG_NUMERIC(2), "0.5", "1.2", "utilization factor");
	factors[0] = HoursFraction(PG_GETARG_INTERVAL_P(1));
	factors[1] = CompayNumericText(PG_GETARG_NUMERIC(2));
	factors[2] = quality;

	SPI_connect();
	{
		Datum		arg = CStringGetTextDatum(job_type);

		if (SpiRun(&job_type_stmt, &arg, NULL, true, 1) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown job type \"%s\"", CompayEchoInput(job_type)),
					 errhint("The job types are the rows of compay.job_types.")));
		base_rate = DatumGetCredit(SpiGetDatum(0, 1, &isnull));
		if (quality == NULL)
			factors[2] = SpiGetText(0, 2);
		factors[2] = pstrdup(factors[2]);
	}
	status = RationalMulMany(base_rate, factors, 3, CREDIT_ROUND_HALF_EVEN, &reward);
	SPI_finish();
	if (status == CREDIT_OUT_OF_RANGE)
		CreditReportOverflow();
	if (status != CREDIT_OK)
		elog(ERROR, "reward factors were not exact decimals");
	return reward;
}

/*
 * compay.compute_reward(job_type, duration, utilization_factor,
 * quality_factor DEFAULT NULL): the job type's base rate per GPU-hour times
 * the hours times both factors (a NULL quality takes the job type's
 * multiplier), exact, rounded once half to even.
 */
Datum
compay_compute_reward(PG_FUNCTION_ARGS)
{
	const char *quality = NULL;

	if (!PG_ARGISNULL(3))
	{
		CheckRange(PG_GETARG_NUMERIC(3), "0.8", "1.5", "quality factor");
		quality = CompayNumericText(PG_GETARG_NUMERIC(3));
	}
	PG_RETURN_CREDIT(ComputeReward(fcinfo, quality));
}

/*
 * compay.compute_reward(job_type, duration, utilization_factor,
 * quality_factors numeric[]): the same with the exact mean of the non-NULL
 * factors ("sum/n", never a rounded quotient); none: the multiplier.
 */
Datum
compay_compute_reward_mean(PG_FUNCTION_ARGS)
{
	const char *quality = NULL;

	if (!PG_ARGISNULL(3))
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int			count = 0;
		Datum		sum = NumericGetDatum(CompayNumeric("0"));

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), NUMERICOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			if (nulls[i])
				continue;
			CheckRange(DatumGetNumeric(elems[i]), "0.8", "1.5", "quality factor");
			sum = DirectFunctionCall2(numeric_add, sum, elems[i]);
			count++;
		}
		if (count > 0)
			quality = psprintf("%s/%d", CompayNumericText(DatumGetNumeric(sum)), count);
	}
	PG_RETURN_CREDIT(ComputeReward(fcinfo, quality));
}

/*
 * compay.utilization_factor(gpu_utilization): utilization 0..1 mapped
 * linearly onto 0.5..1.2, exactly: 0.5 + 0.7 * u.
 */
Datum
compay_utilization_factor(PG_FUNCTION_ARGS)
{
	Numeric		u = PG_GETARG_NUMERIC(0);
	Datum		scaled;

	CheckRange(u, "0", "1", "GPU utilization");
	scaled = DirectFunctionCall2(numeric_mul, NumericGetDatum(CompayNumeric("0.7")),
								 NumericGetDatum(u));
	PG_RETURN_DATUM(DirectFunctionCall2(numeric_add,
										NumericGetDatum(CompayNumeric("0.5")), scaled));
}
