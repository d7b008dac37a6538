/*-------------------------------------------------------------------------
 *
 * pricing_config.c
 *	  The pricing configuration (models, discount tiers, task type
 *	  mappings, market adjustments), read once per backend and kept until it
 *	  changes; the GUCs of pricing; a requester's volume.
 *
 * The four configuration tables carry a statement trigger that sends a
 * relcache invalidation for the table (compay.pricing_config_changed()).
 * Every backend, the writer included, receives it (at its next command, or
 * at commit for the others) and drops its copy; the next price() reads the
 * tables again.  This is how extensions that cache their catalogue tables
 * learn about changes without polling: a table's data changes send no
 * invalidation of their own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "pricing.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_pricing_config_changed);

typedef struct TaskTypeEntry
{
	char	   *task_type;
	int			model;			/* index into models, -1: default */
	char	   *market_factor;	/* NULL: no adjustment */
} TaskTypeEntry;

typedef struct PricingCache
{
	MemoryContext context;
	Oid			relids[4];
	int			nmodels;
	PricingModel *models;
	int			default_model;	/* index of the model named 'default' */
	int			ntypes;
	TaskTypeEntry *types;		/* sorted by task_type, for bsearch */
} PricingCache;

static PricingCache cache;
static bool cache_valid = false;
/* invalidations of the four tables seen, loading or not */
static uint64 cache_invalidations = 0;

static char *market_factor_min = NULL;
static char *market_factor_max = NULL;
static int	discount_window_s = 30 * SECS_PER_DAY;

static SpiStatement models_stmt = {
	.sql = "SELECT id, name, currency, base_price, cpu_price, memory_price, storage_price, "
	"network_price, gpu_price, min_price, max_price FROM compay.pricing_models ORDER BY id",
};

static SpiStatement custom_stmt = {
	.sql = "SELECT m.id, c.key, c.value::numeric::compay.credit "
	"FROM compay.pricing_models m, pg_catalog.jsonb_each(m.custom_prices) c "
	"ORDER BY m.id, c.key COLLATE \"C\"",
};

static SpiStatement tiers_stmt = {
	.sql = "SELECT model_id, min_volume, coalesce(max_volume, -1), discount_percent::text, "
	"(100 - discount_percent)::text || '/100' "
	"FROM compay.discount_tiers ORDER BY model_id, min_volume",
};

static SpiStatement types_stmt = {
	.sql = "SELECT coalesce(t.task_type, a.task_type), t.model_id, a.factor::text "
	"FROM compay.task_type_models t FULL JOIN compay.market_adjustments a "
	"ON a.task_type = t.task_type ORDER BY coalesce(t.task_type, a.task_type) COLLATE \"C\"",
};

static SpiStatement volume_stmt = {
	.sql = "SELECT (SELECT coalesce(pg_catalog.sum(payments), 0)::bigint "
	"FROM compay.requester_volume WHERE from_node = $1 "
	"AND day > ($2 AT TIME ZONE 'UTC')::date) + "
	"(SELECT pg_catalog.count(*) FROM compay.payments WHERE from_node = $1 "
	"AND status IN ('completed', 'disputed') AND completed_at > $2 "
	"AND completed_at < (($2 AT TIME ZONE 'UTC')::date + 1)::timestamp AT TIME ZONE 'UTC')",
	.nargs = 2,
	.argtypes = {TEXTOID, TIMESTAMPTZOID}
};

static void
PricingRelcacheCallback(Datum arg pg_attribute_unused(), Oid relid)
{
	for (int i = 0; i < (int) lengthof(cache.relids); i++)
		if (relid == InvalidOid || relid == cache.relids[i])
		{
			cache_invalidations++;
			cache_valid = false;
		}
}

static bool
CheckMarketFactor(char **newval, void **extra pg_attribute_unused(),
				  GucSource source pg_attribute_unused())
{
	return CreditCheckSetting(*newval, 1, CREDIT_MAX,
							  "A market factor bound is a positive decimal with at most 12 decimals.");
}

void
PricingInit(void)
{
	DefineCustomStringVariable("compay.market_factor_min",
							   "Lowest market adjustment factor price() applies.",
							   "Factors in compay.market_adjustments below it are raised to it.",
							   &market_factor_min, "0.5", PGC_SUSET, 0,
							   CheckMarketFactor, NULL, NULL);
	DefineCustomStringVariable("compay.market_factor_max",
							   "Highest market adjustment factor price() applies.",
							   "Factors in compay.market_adjustments above it are lowered to it.",
							   &market_factor_max, "2.0", PGC_SUSET, 0,
							   CheckMarketFactor, NULL, NULL);
	DefineCustomIntVariable("compay.discount_window",
							"Window over which a requester's paid tasks count for volume discounts.",
							NULL, &discount_window_s, 30 * SECS_PER_DAY, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(PricingRelcacheCallback, (Datum) 0);
}

/* compay.pricing_config_changed(): statement trigger on the four tables. */
Datum
compay_pricing_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "compay_pricing_config_changed: not called by trigger manager");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

static Credit
GetCredit(uint64 row, int col, bool *isnull)
{
	Datum		d = SpiGetDatum(row, col, isnull);

	return *isnull ? 0 : DatumGetCredit(d);
}

static int
FindModel(int32 id)
{
	for (int i = 0; i < cache.nmodels; i++)
		if (cache.models[i].id == id)
			return i;
	return -1;
}

static void
LoadModels(MemoryContext context)
{
	uint64		n = SpiRun(&models_stmt, NULL, NULL, true, 0);
	MemoryContext old = MemoryContextSwitchTo(context);
	bool		isnull;

	cache.nmodels = n;
	cache.models = palloc0(sizeof(PricingModel) * Max(n, 1));
	cache.default_model = -1;
	for (uint64 i = 0; i < n; i++)
	{
		PricingModel *m = &cache.models[i];

		m->id = DatumGetInt32(SpiGetDatum(i, 1, &isnull));
		m->name = SpiGetText(i, 2);
		m->currency = SpiGetText(i, 3);
		m->base_price = GetCredit(i, 4, &isnull);
		m->cpu_price = GetCredit(i, 5, &isnull);
		m->memory_price = GetCredit(i, 6, &isnull);
		m->storage_price = GetCredit(i, 7, &isnull);
		m->network_price = GetCredit(i, 8, &isnull);
		m->gpu_price = GetCredit(i, 9, &isnull);
		m->min_price = GetCredit(i, 10, &isnull);
		m->has_min = !isnull;
		m->max_price = GetCredit(i, 11, &isnull);
		m->has_max = !isnull;
		if (strcmp(m->name, "default") == 0)
			cache.default_model = i;
	}
	MemoryContextSwitchTo(old);
}

static void
LoadCustomPrices(MemoryContext context)
{
	uint64		n = SpiRun(&custom_stmt, NULL, NULL, true, 0);
	MemoryContext old = MemoryContextSwitchTo(context);
	bool		isnull;

	for (uint64 i = 0; i < n; i++)
	{
		PricingModel *m = &cache.models[FindModel(DatumGetInt32(SpiGetDatum(i, 1, &isnull)))];

		if (m->custom_names == NULL)
		{
			m->custom_names = palloc(sizeof(char *) * n);
			m->custom_prices = palloc(sizeof(Credit) * n);
		}
		/* Ordered by key in "C" collation: strcmp order, as bsearch wants. */
		m->custom_names[m->ncustom] = SpiGetText(i, 2);
		m->custom_prices[m->ncustom] = GetCredit(i, 3, &isnull);
		m->ncustom++;
	}
	MemoryContextSwitchTo(old);
}

static void
LoadTiers(MemoryContext context)
{
	uint64		n = SpiRun(&tiers_stmt, NULL, NULL, true, 0);
	MemoryContext old = MemoryContextSwitchTo(context);
	bool		isnull;

	for (uint64 i = 0; i < n; i++)
	{
		PricingModel *m = &cache.models[FindModel(DatumGetInt32(SpiGetDatum(i, 1, &isnull)))];
		PricingTier *t;

		if (m->tiers == NULL)
			m->tiers = palloc(sizeof(PricingTier) * n);
		t = &m->tiers[m->ntiers++];
		t->min_volume = SpiGetInt64(i, 2);
		t->max_volume = SpiGetInt64(i, 3);
		t->discount_percent = SpiGetText(i, 4);
		t->keep_factor = SpiGetText(i, 5);
	}
	MemoryContextSwitchTo(old);
}

static void
LoadTaskTypes(MemoryContext context)
{
	uint64		n = SpiRun(&types_stmt, NULL, NULL, true, 0);
	MemoryContext old = MemoryContextSwitchTo(context);
	bool		isnull;

	cache.ntypes = n;
	cache.types = palloc0(sizeof(TaskTypeEntry) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		Datum		model = SpiGetDatum(i, 2, &isnull);

		cache.types[i].task_type = SpiGetText(i, 1);
		cache.types[i].model = isnull ? -1 : FindModel(DatumGetInt32(model));
		SpiGetDatum(i, 3, &isnull);
		cache.types[i].market_factor = isnull ? NULL : SpiGetText(i, 3);
	}
	MemoryContextSwitchTo(old);
}

/* Reads the four tables into a fresh context; SPI's memory ends at SPI_finish. */
static void
LoadCache(void)
{
	MemoryContext context;
	MemoryContext old;
	uint64		invalidations = cache_invalidations;

	if (cache.context != NULL)
		MemoryContextDelete(cache.context);
	cache.context = NULL;
	/* A child of the caller's context until loaded: an error frees it. */
	context = AllocSetContextCreate(CurrentMemoryContext, "compay pricing",
									ALLOCSET_SMALL_SIZES);
	SPI_connect();
	/*
	 * The cache outlives this transaction: read the tables as committed now
	 * (as the catalog caches do), not with a REPEATABLE READ transaction's
	 * older snapshot.  Read-only SPI uses the active snapshot.
	 */
	PushActiveSnapshot(GetLatestSnapshot());
	/* SPI leaves its own context current after each statement: switch back each time. */
	old = MemoryContextSwitchTo(context);
	cache.relids[0] = CompayRelationOid("pricing_models");
	cache.relids[1] = CompayRelationOid("discount_tiers");
	cache.relids[2] = CompayRelationOid("task_type_models");
	cache.relids[3] = CompayRelationOid("market_adjustments");
	LoadModels(context);
	LoadCustomPrices(context);
	LoadTiers(context);
	LoadTaskTypes(context);
	MemoryContextSwitchTo(old);
	PopActiveSnapshot();
	SPI_finish();
	if (cache.default_model < 0)
	{
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pricing model \"default\" does not exist"),
				 errhint("Task types without a model of their own are priced by the model named \"default\".")));
	}
	MemoryContextSetParent(context, CacheMemoryContext);
	cache.context = context;
	/* A change committed while loading: use this copy once, reload next time. */
	cache_valid = (cache_invalidations == invalidations);
}

static int
CompareTaskType(const void *key, const void *entry)
{
	return strcmp((const char *) key, ((const TaskTypeEntry *) entry)->task_type);
}

/* The last clamp: the factor and bounds it was for, and which it chose. */
#define CLAMP_MEMO_LEN 64
static char clamp_memo[3][CLAMP_MEMO_LEN];
static int	clamp_memo_choice = -1;

/*
 * The factor clamped to [compay.market_factor_min, compay.market_factor_max].
 * The last answer is kept: the same factor and bounds (as text) give the
 * same choice without parsing three numerics again.
 */
static const char *
ClampMarketFactor(const char *factor)
{
	const char *texts[3] = {factor, market_factor_min, market_factor_max};
	Numeric		f;
	Numeric		lo;
	Numeric		hi;
	int			choice = 0;

	if (clamp_memo_choice >= 0 && strcmp(clamp_memo[0], factor) == 0 &&
		strcmp(clamp_memo[1], market_factor_min) == 0 &&
		strcmp(clamp_memo[2], market_factor_max) == 0)
		return texts[clamp_memo_choice];
	f = CompayNumeric(factor);
	lo = CompayNumeric(market_factor_min);
	hi = CompayNumeric(market_factor_max);
	if (CompayNumericCmp(lo, hi) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("compay.market_factor_min %s exceeds compay.market_factor_max %s",
						market_factor_min, market_factor_max)));
	if (CompayNumericCmp(f, lo) < 0)
		choice = 1;
	else if (CompayNumericCmp(f, hi) > 0)
		choice = 2;
	clamp_memo_choice = -1;
	if (strlen(factor) < CLAMP_MEMO_LEN && strlen(market_factor_min) < CLAMP_MEMO_LEN &&
		strlen(market_factor_max) < CLAMP_MEMO_LEN)
	{
		for (int i = 0; i < 3; i++)
			strlcpy(clamp_memo[i], texts[i], CLAMP_MEMO_LEN);
		clamp_memo_choice = choice;
	}
	return texts[choice];
}

/*
 * The model and the clamped market factor of a task type (NULL: the
 * default model, no adjustment).
 */
PricingChoice
PricingLookup(const char *task_type)
{
	PricingChoice choice;
	TaskTypeEntry *entry = NULL;

	if (!cache_valid)
		LoadCache();
	if (task_type != NULL)
		entry = bsearch(task_type, cache.types, cache.ntypes,
						sizeof(TaskTypeEntry), CompareTaskType);
	choice.model = &cache.models[entry && entry->model >= 0 ? entry->model
								 : cache.default_model];
	choice.market_factor = ClampMarketFactor(entry && entry->market_factor
											 ? entry->market_factor : "1");
	return choice;
}

/* Paid tasks of the requester within compay.discount_window. */
int64
PricingRequesterVolume(const char *requester)
{
	Datum		args[2];
	int64		volume;

	SPI_connect();
	args[0] = CStringGetTextDatum(requester);
	args[1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp() -
								  (TimestampTz) discount_window_s * USECS_PER_SEC);
	SpiRun(&volume_stmt, args, NULL, true, 1);
	volume = SpiGetInt64(0, 1);
	SPI_finish();
	return volume;
}

/* The tier the volume falls in, or NULL (no discount). */
const PricingTier *
PricingTierFor(const PricingModel *model, int64 volume)
{
	for (int i = 0; i < model->ntiers; i++)
	{
		const PricingTier *t = &model->tiers[i];

		if (volume >= t->min_volume && (t->max_volume < 0 || volume < t->max_volume))
			return t;
	}
	return NULL;
}
