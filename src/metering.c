/*-------------------------------------------------------------------------
 *
 * metering.c
 *	  compay.record_usage(): one usage sample of a task, pushed by the
 *	  node that runs it.
 *
 * Samples are the highest-volume input of the network (every node, every
 * few seconds), so the function runs one prepared statement (one
 * executor run) and nothing else: the job row FOR UPDATE (with whether a
 * job type prices it), the sample's INSERT ... ON CONFLICT DO NOTHING (a
 * sample id seen before is a retry: false), and the upsert of the task's
 * running totals, whose result is then checked here (bytes within bigint,
 * a price within the credit range).  The checks are those of the PL/pgSQL function it
 * replaces, with the same errors; an error after the statement rolls
 * back what it wrote.  compay.record_usage_batch()
 * (src/metering.sql) is the bulk path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "ledger.h"
#include "node_roles.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_record_usage);

/* In src/pricing.c. */
extern Datum compay_check_metrics(PG_FUNCTION_ARGS);
extern Datum compay_check_price(PG_FUNCTION_ARGS);

#define SAMPLE_ID_LEN_MAX	200
#define TASK_ID_LEN_MAX		200
#define NUM_METRICS			7	/* compay.resource_metrics */

/*
 * The whole of a sample in one statement, one executor run: the job row
 * locked FOR UPDATE, the sample inserted unless its id was recorded before
 * (a retry) or the job does not take it (the caller then reports why),
 * and the task's running totals upserted with it.  Custom metrics are
 * summed per name only when the sample has some.  The totals come back
 * with the byte counts as numeric, and as metrics only when those fit a
 * bigint; no totals row: nothing was inserted.
 */
static SpiStatement record_stmt = {
	.sql = "WITH j AS ("
	" SELECT j.id, j.status::text AS status, j.provider, j.task_type,"
	" EXISTS (SELECT 1 FROM compay.job_types t WHERE t.job_type = j.task_type) AS has_job_type"
	" FROM compay.jobs j WHERE j.task_id = $1 FOR UPDATE OF j),"
	" ins AS ("
	" INSERT INTO compay.usage_samples (job_id, sample_id, node_id, sampled_at,"
	" cpu_seconds, memory_byte_hours, storage_byte_hours, network_bytes_in,"
	" network_bytes_out, gpu_seconds, custom)"
	" SELECT j.id, $2, $3, $4, coalesce($5, 0), coalesce($6, 0), coalesce($7, 0),"
	" coalesce($8, 0), coalesce($9, 0), coalesce($10, 0), nullif($11, '{}') FROM j"
	" WHERE j.status NOT IN ('paid', 'failed', 'timed_out') AND j.provider = $3"
	" ON CONFLICT (job_id, sample_id) DO NOTHING RETURNING job_id),"
	" tot AS ("
	" INSERT INTO compay.usage_totals AS t"
	" SELECT ins.job_id, coalesce($5, 0), coalesce($6, 0), coalesce($7, 0),"
	" coalesce($8, 0)::numeric, coalesce($9, 0)::numeric, coalesce($10, 0),"
	" coalesce($11, '{}') FROM ins"
	" ON CONFLICT (job_id) DO UPDATE SET"
	" cpu_seconds = t.cpu_seconds + EXCLUDED.cpu_seconds,"
	" memory_byte_hours = t.memory_byte_hours + EXCLUDED.memory_byte_hours,"
	" storage_byte_hours = t.storage_byte_hours + EXCLUDED.storage_byte_hours,"
	" network_bytes_in = t.network_bytes_in + EXCLUDED.network_bytes_in,"
	" network_bytes_out = t.network_bytes_out + EXCLUDED.network_bytes_out,"
	" gpu_seconds = t.gpu_seconds + EXCLUDED.gpu_seconds,"
	" custom = CASE WHEN EXCLUDED.custom = '{}' THEN t.custom"
	" ELSE compay.add_custom_metrics(t.custom, EXCLUDED.custom) END"
	" RETURNING t.network_bytes_in::text AS bytes_in, t.network_bytes_out::text AS bytes_out,"
	" CASE WHEN greatest(t.network_bytes_in, t.network_bytes_out) <= 9223372036854775807"
	" THEN ROW(t.cpu_seconds, t.memory_byte_hours, t.storage_byte_hours,"
	" t.network_bytes_in, t.network_bytes_out, t.gpu_seconds, t.custom)::compay.resource_metrics"
	" END AS totals)"
	" SELECT j.id, j.status, j.provider, j.task_type, j.has_job_type,"
	" tot.bytes_in IS NOT NULL, tot.bytes_in, tot.bytes_out, tot.totals"
	" FROM j LEFT JOIN tot ON true",
	.nargs = 11,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, NUMERICOID, NUMERICOID,
	NUMERICOID, INT8OID, INT8OID, NUMERICOID, JSONBOID}
};

/* SQL's left(id, 64): the ids echoed in the messages. */
static char *
Left64(const char *id)
{
	int			len = strlen(id);

	return pnstrdup(id, pg_mbcharcliplen(id, len, 64));
}

static char *
UsageEcho(text *id)
{
	return Left64(text_to_cstring(id));
}

/* The job row as record_usage needs it. */
typedef struct UsageJob
{
	int64		id;
	char	   *status;
	char	   *provider;
	char	   *task_type;		/* NULL: the default pricing model */
	bool		has_job_type;	/* priced by compute_reward(), not usage */
	bool		recorded;		/* false: a retry, or refused by CheckJob */
} UsageJob;

static void
CheckArguments(FunctionCallInfo fcinfo)
{
	text	   *sample_id;
	int			len;

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("task_id, node_id, sample_id, sampled_at and metrics must not be NULL")));
	LedgerCheckNode(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	sample_id = PG_GETARG_TEXT_PP(2);
	len = pg_mbstrlen_with_len(VARDATA_ANY(sample_id), VARSIZE_ANY_EXHDR(sample_id));
	if (len < 1 || len > SAMPLE_ID_LEN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a sample id has 1 to 200 characters")));
	if (TIMESTAMP_NOT_FINITE(PG_GETARG_TIMESTAMPTZ(3)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sampled_at must be a finite time")));
}

/*
 * Runs the statement: the job row (PY010 if none), and whether the sample
 * was inserted.
 */
static UsageJob
RecordSample(FunctionCallInfo fcinfo, HeapTupleHeader metrics)
{
	text	   *task_id = PG_GETARG_TEXT_PP(0);
	int			len = pg_mbstrlen_with_len(VARDATA_ANY(task_id), VARSIZE_ANY_EXHDR(task_id));
	Datum		values[11];
	char		nulls[11];
	bool		isnull;
	UsageJob	j;

	if (len < 1 || len > TASK_ID_LEN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a task id has 1 to 200 characters")));
	memset(nulls, ' ', sizeof(nulls));
	values[0] = PointerGetDatum(task_id);
	values[1] = PG_GETARG_DATUM(2);
	values[2] = PG_GETARG_DATUM(1);
	values[3] = PG_GETARG_DATUM(3);
	for (int att = 1; att <= NUM_METRICS; att++)
	{
		values[3 + att] = GetAttributeByNum(metrics, att, &isnull);
		nulls[3 + att] = isnull ? 'n' : ' ';
	}
	if (SpiRun(&record_stmt, values, nulls, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_UNKNOWN_TASK),
				 errmsg("task \"%s\" does not exist", UsageEcho(task_id)),
				 errhint("Submit it first with compay.submit_job() or compay.submit_task().")));
	Assert(SPI_processed == 1);
	j.id = SpiGetInt64(0, 1);
	j.status = SpiGetText(0, 2);
	j.provider = SpiGetText(0, 3);
	j.task_type = SpiGetText(0, 4);
	j.has_job_type = DatumGetBool(SpiGetDatum(0, 5, &isnull));
	j.recorded = DatumGetBool(SpiGetDatum(0, 6, &isnull));
	return j;
}

/* The task must be open and run by node_id. */
static void
CheckJob(const UsageJob *j, const char *task_id, const char *node_id)
{
	if (strcmp(j->status, "paid") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task \"%s\" is already paid", Left64(task_id)),
				 errdetail("Usage of a paid task can no longer change what it cost.")));
	if (strcmp(j->status, "failed") == 0 || strcmp(j->status, "timed_out") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task \"%s\" is closed: it is %s", Left64(task_id), j->status)));
	if (j->provider == NULL || strcmp(j->provider, node_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("node \"%s\" does not run task \"%s\"", Left64(node_id),
						Left64(task_id)),
				 errdetail("Only the task's provider reports its usage.")));
}

/*
 * compay.check_price(metrics, task_type): a NULL task type (the default
 * model) is an argument too, so not through DirectFunctionCall2.
 */
static void
CheckPrice(Datum metrics, const char *task_type)
{
	LOCAL_FCINFO(fc, 2);

	InitFunctionCallInfoData(*fc, NULL, 2, InvalidOid, NULL, NULL);
	fc->args[0].value = metrics;
	fc->args[0].isnull = false;
	fc->args[1].value = task_type ? CStringGetTextDatum(task_type) : (Datum) 0;
	fc->args[1].isnull = task_type == NULL;
	(void) compay_check_price(fc);
}

/*
 * Checks the task's totals with the sample as payment at quorum will use
 * them: bytes within bigint, and unless a job type prices the task, a
 * price within the credit range.
 */
static void
CheckTotals(const UsageJob *j, const char *task_id)
{
	bool		isnull;
	Datum		totals = SpiGetDatum(0, 9, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("usage of task \"%s\" would exceed 2^63 - 1 network bytes",
						Left64(task_id)),
				 errdetail("With this sample the task would total %s bytes in and %s out.",
						   SpiGetText(0, 7), SpiGetText(0, 8))));
	if (!j->has_job_type)
		CheckPrice(totals, j->task_type);
}

/*
 * compay.record_usage(task_id, node_id, sample_id, sampled_at, metrics):
 * true if the sample was recorded, false if it had been (a retry).
 */
Datum
compay_record_usage(PG_FUNCTION_ARGS)
{
	char	   *node_id;
	char	   *task_id;
	HeapTupleHeader metrics;
	UsageJob	j;

	CheckArguments(fcinfo);
	node_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	NodeRequire(node_id, true); /* and below: the task's provider */
	DirectFunctionCall1(compay_check_metrics, PG_GETARG_DATUM(4));
	metrics = PG_GETARG_HEAPTUPLEHEADER(4);
	task_id = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * The row locked FOR UPDATE: samples of one task go in one at a time,
	 * each checked against the sum of those before it, and not while the
	 * task is being paid.  An error below rolls back what the statement
	 * wrote.
	 */
	j = RecordSample(fcinfo, metrics);
	CheckJob(&j, task_id, node_id);
	if (j.recorded)
		CheckTotals(&j, task_id);
	SPI_finish();
	PG_RETURN_BOOL(j.recorded);
}
