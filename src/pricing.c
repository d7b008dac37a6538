/*-------------------------------------------------------------------------
 *
 * pricing.c
 *	  compay.price() and compay.quote(): a task's resource metrics priced
 *	  by its model, exactly, rounded once.
 *
 *	  price = clamp((base + sum of quantity x unit price) x market factor
 *	                x (100 - discount percent) / 100, min, max)
 *
 * Quantities are used as given: fractions of a second or of a GB count
 * (GB = 2^30 bytes).  The arithmetic is rational (rational.c); the one
 * rounding, half to even, is at the end.  quote() shows the same
 * computation one step per row; each row's amount is the difference of the
 * rounded running totals, so the rows add up to price() exactly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "compay.h"
#include "credit.h"
#include "pricing.h"

PG_FUNCTION_INFO_V1(compay_price);
PG_FUNCTION_INFO_V1(compay_quote);
PG_FUNCTION_INFO_V1(compay_check_metrics);

/* The metrics type's attributes, in order. */
enum
{
	METRIC_CPU_SECONDS = 1,
	METRIC_MEMORY_BYTE_HOURS,
	METRIC_STORAGE_BYTE_HOURS,
	METRIC_NETWORK_BYTES_IN,
	METRIC_NETWORK_BYTES_OUT,
	METRIC_GPU_SECONDS,
	METRIC_CUSTOM
};

/* 1 / 2^30 as an exact decimal: a byte count times it is a GB count. */
#define GB_PER_BYTE "0.000000000931322574615478515625"

/* Fixed components: base, CPU, memory, storage, network, GPU. */
#define FIXED_COMPONENTS 6

/* Most custom metrics one call may carry. */
#define CUSTOM_METRICS_MAX 1000

/* The steps of one price, as quote() shows them. */
typedef struct PriceSteps
{
	int			nterms;
	RationalTerm *terms;
	const char **names;			/* component of each term */
	Numeric    *quantities;		/* in the unit price's unit */
	const char *factors[2];		/* market factor, (100 - discount) / 100 */
	const char *market_factor;
	const char *discount_percent;
	Credit	   *steps;			/* nterms + 2 factors + 1 clamp */
	Credit		price;
} PriceSteps;

/* 22023 unless n is a finite number >= 0. */
static void
CheckQuantity(Numeric n, const char *what)
{
	if (numeric_is_nan(n) || numeric_is_inf(n))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite number", what)));
	if (CompayNumericText(n)[0] == '-')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot be negative", what),
				 errdetail("The value given is %s.", CompayNumericText(n))));
}

static Numeric
MetricNumeric(HeapTupleHeader metrics, int attno, const char *what)
{
	bool		isnull;
	Datum		d = GetAttributeByNum(metrics, attno, &isnull);

	if (isnull)
		return CompayNumeric("0");
	CheckQuantity(DatumGetNumeric(d), what);
	return DatumGetNumeric(d);
}

static int64
MetricBytes(HeapTupleHeader metrics, int attno, const char *what)
{
	bool		isnull;
	Datum		d = GetAttributeByNum(metrics, attno, &isnull);

	if (isnull)
		return 0;
	if (DatumGetInt64(d) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot be negative", what),
				 errdetail("The value given is " INT64_FORMAT ".", DatumGetInt64(d))));
	return DatumGetInt64(d);
}

static void
AddTerm(PriceSteps *p, const char *name, Credit price, Numeric quantity)
{
	int			k = p->nterms++;

	p->names[k] = name;
	p->terms[k].price = price;
	p->terms[k].quantity = CompayNumericText(quantity);
	p->quantities[k] = quantity;
}

/* quantity given in bytes (or byte-hours), priced per GB (or GB-hour) */
static void
AddGbTerm(PriceSteps *p, const char *name, Credit price, Numeric bytes)
{
	Numeric		gb = DatumGetNumeric(DirectFunctionCall2(numeric_mul, NumericGetDatum(bytes),
														 NumericGetDatum(CompayNumeric(GB_PER_BYTE))));

	AddTerm(p, name, price, gb);
	/* the exact fraction, not the decimal: the same value, fewer digits */
	p->terms[p->nterms - 1].quantity = psprintf("%s/%s", CompayNumericText(bytes), PRICING_GB_BYTES);
	p->quantities[p->nterms - 1] =
		DatumGetNumeric(DirectFunctionCall1(numeric_trim_scale, NumericGetDatum(gb)));
}

static int
CompareName(const void *key, const void *name)
{
	return strcmp((const char *) key, *(char *const *) name);
}

/*
 * Steps through the custom object: returns false at its end, else sets
 * *key and *quantity to the next metric, checked.
 */
static bool
NextCustomMetric(JsonbIterator **it, char **key, Numeric *quantity)
{
	JsonbValue	v;
	JsonbIteratorToken token;

	while ((token = JsonbIteratorNext(it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
			*key = pnstrdup(v.val.string.val, v.val.string.len);
		if (token != WJB_VALUE)
			continue;
		if (v.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("custom metric \"%s\" is not a number", CompayEchoInput(*key))));
		CheckQuantity(v.val.numeric, psprintf("custom metric \"%s\"", CompayEchoInput(*key)));
		*quantity = v.val.numeric;
		return true;
	}
	return false;
}

static JsonbIterator *
CustomIterator(Jsonb *custom)
{
	if (!JB_ROOT_IS_OBJECT(custom) || JB_ROOT_IS_SCALAR(custom))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("custom metrics must be a JSON object of metric names and quantities")));
	return JsonbIteratorInit(&custom->root);
}

/* One term per metric of the custom object, each priced by the model. */
static void
AddCustomTerms(PriceSteps *p, const PricingModel *model, Jsonb *custom)
{
	JsonbIterator *it = CustomIterator(custom);
	char	   *key = NULL;
	Numeric		quantity;

	while (NextCustomMetric(&it, &key, &quantity))
	{
		char	  **found;

		found = bsearch(key, model->custom_names, model->ncustom, sizeof(char *), CompareName);
		if (found == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown custom metric \"%s\"", CompayEchoInput(key)),
					 errdetail("Pricing model \"%s\" has no price for it.", model->name),
					 errhint("Add the metric to custom_prices of compay.pricing_models.")));
		if (p->nterms >= FIXED_COMPONENTS + CUSTOM_METRICS_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("more than %d custom metrics", CUSTOM_METRICS_MAX)));
		AddTerm(p, psprintf("custom:%s", key),
				model->custom_prices[found - model->custom_names], quantity);
	}
}

/* Reads the arguments, looks up the model, and computes every step. */
static void
ComputePrice(FunctionCallInfo fcinfo, PriceSteps *p)
{
	HeapTupleHeader metrics;
	PricingChoice choice;
	const PricingModel *m;
	int64		bytes_in;
	int64		bytes_out;
	bool		isnull;
	Datum		custom;
	int			max_terms = FIXED_COMPONENTS + CUSTOM_METRICS_MAX;
	Numeric		keep;
	CreditStatus status;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("metrics must not be NULL")));
	metrics = PG_GETARG_HEAPTUPLEHEADER(0);
	choice = PricingLookup(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	m = choice.model;

	p->nterms = 0;
	p->terms = palloc(sizeof(RationalTerm) * max_terms);
	p->names = palloc(sizeof(char *) * max_terms);
	p->quantities = palloc(sizeof(Numeric) * max_terms);
	AddTerm(p, "base", m->base_price, CompayNumeric("1"));
	AddTerm(p, "cpu_seconds", m->cpu_price,
			MetricNumeric(metrics, METRIC_CPU_SECONDS, "cpu_seconds"));
	AddGbTerm(p, "memory_gb_hours", m->memory_price,
			  MetricNumeric(metrics, METRIC_MEMORY_BYTE_HOURS, "memory_byte_hours"));
	AddGbTerm(p, "storage_gb_hours", m->storage_price,
			  MetricNumeric(metrics, METRIC_STORAGE_BYTE_HOURS, "storage_byte_hours"));
	bytes_in = MetricBytes(metrics, METRIC_NETWORK_BYTES_IN, "network_bytes_in");
	bytes_out = MetricBytes(metrics, METRIC_NETWORK_BYTES_OUT, "network_bytes_out");
	/* in + out as numeric: two int64 values may sum past the int64 range */
	AddGbTerm(p, "network_gb", m->network_price,
			  DatumGetNumeric(DirectFunctionCall2(numeric_add,
												  NumericGetDatum(int64_to_numeric(bytes_in)),
												  NumericGetDatum(int64_to_numeric(bytes_out)))));
	AddTerm(p, "gpu_seconds", m->gpu_price,
			MetricNumeric(metrics, METRIC_GPU_SECONDS, "gpu_seconds"));
	custom = GetAttributeByNum(metrics, METRIC_CUSTOM, &isnull);
	if (!isnull)
		AddCustomTerms(p, m, DatumGetJsonbP(custom));

	p->market_factor = choice.market_factor;
	/* No requester: volume 0, which may still fall in a discounted tier. */
	p->discount_percent =
		PricingDiscountPercent(m, PG_ARGISNULL(2) ? 0 :
							   PricingRequesterVolume(text_to_cstring(PG_GETARG_TEXT_PP(2))));
	keep = DatumGetNumeric(DirectFunctionCall2(numeric_sub,
											   NumericGetDatum(CompayNumeric("100")),
											   NumericGetDatum(CompayNumeric(p->discount_percent))));
	p->factors[0] = p->market_factor;
	p->factors[1] = psprintf("%s/100", CompayNumericText(keep));
	p->steps = palloc(sizeof(Credit) * (p->nterms + 3));
	status = RationalPriceSteps(p->terms, p->nterms, p->factors, 2,
								m->has_min ? &m->min_price : NULL,
								m->has_max ? &m->max_price : NULL,
								CREDIT_ROUND_HALF_EVEN, p->steps);
	if (status == CREDIT_OUT_OF_RANGE)
		CreditReportOverflow();
	if (status != CREDIT_OK)
		elog(ERROR, "price steps were not exact decimals");
	p->price = p->steps[p->nterms + 2];
}

/*
 * compay.price(metrics, task_type DEFAULT NULL, requester DEFAULT NULL)
 */
Datum
compay_price(PG_FUNCTION_ARGS)
{
	PriceSteps	p;

	ComputePrice(fcinfo, &p);
	PG_RETURN_CREDIT(p.price);
}

static void
QuoteRow(ReturnSetInfo *rsinfo, const char *component, Numeric quantity,
		 const Credit *unit_price, Credit amount)
{
	Datum		values[4];
	bool		nulls[4] = {false, quantity == NULL, unit_price == NULL, false};

	values[0] = CStringGetTextDatum(component);
	values[1] = quantity ? NumericGetDatum(quantity) : (Datum) 0;
	values[2] = unit_price ? CreditGetDatum(*unit_price) : (Datum) 0;
	values[3] = CreditGetDatum(amount);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * compay.quote(metrics, task_type DEFAULT NULL, requester DEFAULT NULL):
 * (component, quantity, unit_price, amount) per step, then the total.
 */
Datum
compay_quote(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PriceSteps	p;
	Credit		before = 0;
	int			k;

	ComputePrice(fcinfo, &p);
	InitMaterializedSRF(fcinfo, 0);
	for (k = 0; k < p.nterms; k++)
	{
		QuoteRow(rsinfo, p.names[k], p.quantities[k], &p.terms[k].price,
				 p.steps[k] - before);
		before = p.steps[k];
	}
	QuoteRow(rsinfo, "market_adjustment", CompayNumeric(p.market_factor), NULL,
			 p.steps[k] - before);
	before = p.steps[k++];
	QuoteRow(rsinfo, "volume_discount", CompayNumeric(p.discount_percent), NULL,
			 p.steps[k] - before);
	before = p.steps[k++];
	QuoteRow(rsinfo, "price_bounds", NULL, NULL, p.steps[k] - before);
	Assert(p.steps[k] == p.price);
	QuoteRow(rsinfo, "total", NULL, NULL, p.price);
	return (Datum) 0;
}

/*
 * compay.check_metrics(metrics): the checks price() makes of its metrics,
 * without a model; record_usage() calls it before storing a sample.
 */
Datum
compay_check_metrics(PG_FUNCTION_ARGS)
{
	HeapTupleHeader metrics;
	bool		isnull;
	Datum		custom;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("metrics must not be NULL")));
	metrics = PG_GETARG_HEAPTUPLEHEADER(0);
	MetricNumeric(metrics, METRIC_CPU_SECONDS, "cpu_seconds");
	MetricNumeric(metrics, METRIC_MEMORY_BYTE_HOURS, "memory_byte_hours");
	MetricNumeric(metrics, METRIC_STORAGE_BYTE_HOURS, "storage_byte_hours");
	MetricBytes(metrics, METRIC_NETWORK_BYTES_IN, "network_bytes_in");
	MetricBytes(metrics, METRIC_NETWORK_BYTES_OUT, "network_bytes_out");
	MetricNumeric(metrics, METRIC_GPU_SECONDS, "gpu_seconds");
	custom = GetAttributeByNum(metrics, METRIC_CUSTOM, &isnull);
	if (!isnull)
	{
		JsonbIterator *it = CustomIterator(DatumGetJsonbP(custom));
		char	   *key = NULL;
		Numeric		quantity;
		int			n = 0;

		while (NextCustomMetric(&it, &key, &quantity))
			if (++n > CUSTOM_METRICS_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("more than %d custom metrics", CUSTOM_METRICS_MAX)));
	}
	PG_RETURN_VOID();
}
