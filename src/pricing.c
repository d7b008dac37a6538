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

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

#include "compay.h"
#include "credit.h"
#include "pricing.h"

PG_FUNCTION_INFO_V1(compay_price);
PG_FUNCTION_INFO_V1(compay_quote);
PG_FUNCTION_INFO_V1(compay_check_metrics);
PG_FUNCTION_INFO_V1(compay_check_price);

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
	bool		with_steps;		/* quote(): every step, and the quantities */
	int			nterms;
	int			capacity;		/* of terms, names and quantities */
	RationalTerm *terms;
	const char **names;			/* component of each term */
	Numeric    *quantities;		/* in the unit price's unit */
	const char *factors[2];		/* market factor, (100 - discount) / 100 */
	const char *market_factor;
	const char *discount_percent;
	Credit	   *steps;			/* nterms + 2 factors + 1 clamp */
	Credit		price;
} PriceSteps;

/* 22023 unless n is a finite number >= 0; returns its text. */
static char *
CheckQuantity(Numeric n, const char *what)
{
	char	   *text;

	if (numeric_is_nan(n) || numeric_is_inf(n))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite number", what)));
	text = CompayNumericText(n);
	if (text[0] == '-')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot be negative", what),
				 errdetail("The value given is %s.", text)));
	return text;
}

/* The attributes of a resource_metrics value, deformed once. */
typedef struct Metrics
{
	Datum		values[METRIC_CUSTOM];
	bool		nulls[METRIC_CUSTOM];
} Metrics;

static void
ReadMetrics(HeapTupleHeader header, Metrics *m)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(header),
											  HeapTupleHeaderGetTypMod(header));
	HeapTupleData tuple;

	if (desc->natts != METRIC_CUSTOM)
		elog(ERROR, "compay.resource_metrics has %d attributes, not %d",
			 desc->natts, METRIC_CUSTOM);
	tuple.t_len = HeapTupleHeaderGetDatumLength(header);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = header;
	heap_deform_tuple(&tuple, desc, m->values, m->nulls);
	ReleaseTupleDesc(desc);
}

/* A metric's quantity as checked text ("0" when NULL), and as numeric. */
static char *
MetricQuantity(Metrics *metrics, int attno, const char *what, Numeric *n)
{
	bool		isnull = metrics->nulls[attno - 1];

	*n = isnull ? NULL : DatumGetNumeric(metrics->values[attno - 1]);
	return isnull ? "0" : CheckQuantity(*n, what);
}

static int64
MetricBytes(Metrics *metrics, int attno, const char *what)
{
	Datum		d = metrics->values[attno - 1];

	if (metrics->nulls[attno - 1])
		return 0;
	if (DatumGetInt64(d) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot be negative", what),
				 errdetail("The value given is " INT64_FORMAT ".", DatumGetInt64(d))));
	return DatumGetInt64(d);
}

/*
 * Adds one term: price x quantity (text: a decimal, or "a/b").  quantity
 * is what quote() shows; price() needs only the text, and skips a zero
 * quantity, which adds nothing.
 */
static void
AddTerm(PriceSteps *p, const char *name, Credit price, const char *text, Numeric quantity)
{
	int			k;

	if (!p->with_steps && strcmp(text, "0") == 0)
		return;
	if (p->nterms == p->capacity)
	{
		p->capacity *= 2;
		p->terms = repalloc(p->terms, sizeof(RationalTerm) * p->capacity);
		p->names = repalloc(p->names, sizeof(char *) * p->capacity);
		if (p->with_steps)
			p->quantities = repalloc(p->quantities, sizeof(Numeric) * p->capacity);
	}
	k = p->nterms++;
	p->names[k] = name;
	p->terms[k].price = price;
	p->terms[k].quantity = text;
	if (p->with_steps)
		p->quantities[k] = quantity ? quantity : CompayNumeric(text);
}

/*
 * A quantity given in bytes (or byte-hours), priced per GB (or GB-hour):
 * the exact fraction bytes / 2^30; quote() shows it as a decimal.
 */
static void
AddGbTerm(PriceSteps *p, const char *name, Credit price, const char *bytes)
{
	Numeric		gb = NULL;

	if (p->with_steps)
		gb = DatumGetNumeric(DirectFunctionCall1(numeric_trim_scale,
												 DirectFunctionCall2(numeric_mul,
																	 NumericGetDatum(CompayNumeric(bytes)),
																	 NumericGetDatum(CompayNumeric(GB_PER_BYTE)))));
	AddTerm(p, name, price,
			strcmp(bytes, "0") == 0 ? "0" : psprintf("%s/%s", bytes, PRICING_GB_BYTES), gb);
}

static int
CompareName(const void *key, const void *name)
{
	return strcmp((const char *) key, *(char *const *) name);
}

/*
 * Steps through the custom object: returns false at its end, else sets
 * *key, *quantity and *text to the next metric, checked.
 */
static bool
NextCustomMetric(JsonbIterator **it, char **key, Numeric *quantity, char **text)
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
		*text = CheckQuantity(v.val.numeric,
							  psprintf("custom metric \"%s\"", CompayEchoInput(*key)));
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
	char	   *text;
	int			n = 0;

	while (NextCustomMetric(&it, &key, &quantity, &text))
	{
		char	  **found;

		found = bsearch(key, model->custom_names, model->ncustom, sizeof(char *), CompareName);
		if (found == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown custom metric \"%s\"", CompayEchoInput(key)),
					 errdetail("Pricing model \"%s\" has no price for it.", model->name),
					 errhint("Add the metric to custom_prices of compay.pricing_models.")));
		if (++n > CUSTOM_METRICS_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("more than %d custom metrics", CUSTOM_METRICS_MAX)));
		AddTerm(p, psprintf("custom:%s", key),
				model->custom_prices[found - model->custom_names], text, quantity);
	}
}

/*
 * Reads the arguments, looks up the model, and computes the price, and
 * with_steps every step of it (for quote()).  Without discount no volume
 * discount applies (check_price(): a discount only lowers a price).
 * Returns CREDIT_OK, or CREDIT_OUT_OF_RANGE for the caller to report.
 */
static CreditStatus
ComputePrice(FunctionCallInfo fcinfo, PriceSteps *p, bool with_steps, bool discount)
{
	Metrics		metrics;
	PricingChoice choice;
	const PricingModel *m;
	const PricingTier *tier;
	Numeric		n;
	char	   *qty;
	CreditStatus status;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("metrics must not be NULL")));
	ReadMetrics(PG_GETARG_HEAPTUPLEHEADER(0), &metrics);
	choice = PricingLookup(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	m = choice.model;

	p->with_steps = with_steps;
	p->nterms = 0;
	p->capacity = FIXED_COMPONENTS + 2;
	p->terms = palloc(sizeof(RationalTerm) * p->capacity);
	p->names = palloc(sizeof(char *) * p->capacity);
	p->quantities = with_steps ? palloc(sizeof(Numeric) * p->capacity) : NULL;
	AddTerm(p, "base", m->base_price, "1", NULL);
	qty = MetricQuantity(&metrics, METRIC_CPU_SECONDS, "cpu_seconds", &n);
	AddTerm(p, "cpu_seconds", m->cpu_price, qty, n);
	qty = MetricQuantity(&metrics, METRIC_MEMORY_BYTE_HOURS, "memory_byte_hours", &n);
	AddGbTerm(p, "memory_gb_hours", m->memory_price, qty);
	qty = MetricQuantity(&metrics, METRIC_STORAGE_BYTE_HOURS, "storage_byte_hours", &n);
	AddGbTerm(p, "storage_gb_hours", m->storage_price, qty);
	/* in + out: each below 2^63, so the sum fits a uint64 */
	AddGbTerm(p, "network_gb", m->network_price,
			  psprintf(UINT64_FORMAT,
					   (uint64) MetricBytes(&metrics, METRIC_NETWORK_BYTES_IN, "network_bytes_in") +
					   (uint64) MetricBytes(&metrics, METRIC_NETWORK_BYTES_OUT, "network_bytes_out")));
	qty = MetricQuantity(&metrics, METRIC_GPU_SECONDS, "gpu_seconds", &n);
	AddTerm(p, "gpu_seconds", m->gpu_price, qty, n);
	if (!metrics.nulls[METRIC_CUSTOM - 1])
		AddCustomTerms(p, m, DatumGetJsonbP(metrics.values[METRIC_CUSTOM - 1]));

	p->market_factor = choice.market_factor;
	/* No requester: volume 0, which may still fall in a discounted tier. */
	tier = !discount ? NULL :
		PricingTierFor(m, PG_ARGISNULL(2) ? 0 :
					   PricingRequesterVolume(text_to_cstring(PG_GETARG_TEXT_PP(2))));
	p->discount_percent = tier ? tier->discount_percent : "0";
	p->factors[0] = p->market_factor;
	p->factors[1] = tier ? tier->keep_factor : "1";
	p->steps = with_steps ? palloc(sizeof(Credit) * (p->nterms + 3)) : NULL;
	status = RationalPriceSteps(p->terms, p->nterms, p->factors, 2,
								m->has_min ? &m->min_price : NULL,
								m->has_max ? &m->max_price : NULL,
								CREDIT_ROUND_HALF_EVEN, p->steps, &p->price);
	if (status != CREDIT_OK && status != CREDIT_OUT_OF_RANGE)
		elog(ERROR, "price steps were not exact decimals");
	if (with_steps && status == CREDIT_OK)
		p->price = p->steps[p->nterms + 2];
	return status;
}

/*
 * compay.price(metrics, task_type DEFAULT NULL, requester DEFAULT NULL)
 */
Datum
compay_price(PG_FUNCTION_ARGS)
{
	PriceSteps	p;

	if (ComputePrice(fcinfo, &p, false, true) != CREDIT_OK)
		CreditReportOverflow();
	PG_RETURN_CREDIT(p.price);
}

/*
 * compay.check_price(metrics, task_type): 22023 unless price() can price
 * metrics for task_type: every custom metric known to the task type's
 * model, and the price, before any volume discount, within the credit
 * range.  record_usage() calls it with a task's usage so far.
 */
Datum
compay_check_price(PG_FUNCTION_ARGS)
{
	PriceSteps	p;

	if (ComputePrice(fcinfo, &p, false, false) != CREDIT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("usage too large to price"),
				 errdetail("At the prices of task type \"%s\" it would cost more than the largest credit.",
						   PG_ARGISNULL(1) ? "default" :
						   CompayEchoInput(text_to_cstring(PG_GETARG_TEXT_PP(1))))));
	PG_RETURN_VOID();
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

	if (ComputePrice(fcinfo, &p, true, true) != CREDIT_OK)
		CreditReportOverflow();
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
	Metrics		metrics;
	Numeric		n;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("metrics must not be NULL")));
	ReadMetrics(PG_GETARG_HEAPTUPLEHEADER(0), &metrics);
	MetricQuantity(&metrics, METRIC_CPU_SECONDS, "cpu_seconds", &n);
	MetricQuantity(&metrics, METRIC_MEMORY_BYTE_HOURS, "memory_byte_hours", &n);
	MetricQuantity(&metrics, METRIC_STORAGE_BYTE_HOURS, "storage_byte_hours", &n);
	MetricBytes(&metrics, METRIC_NETWORK_BYTES_IN, "network_bytes_in");
	MetricBytes(&metrics, METRIC_NETWORK_BYTES_OUT, "network_bytes_out");
	MetricQuantity(&metrics, METRIC_GPU_SECONDS, "gpu_seconds", &n);
	if (!metrics.nulls[METRIC_CUSTOM - 1])
	{
		JsonbIterator *it = CustomIterator(DatumGetJsonbP(metrics.values[METRIC_CUSTOM - 1]));
		char	   *key = NULL;
		char	   *text;
		int			count = 0;

		while (NextCustomMetric(&it, &key, &n, &text))
			if (++count > CUSTOM_METRICS_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("more than %d custom metrics", CUSTOM_METRICS_MAX)));
	}
	PG_RETURN_VOID();
}
