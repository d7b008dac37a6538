/*-------------------------------------------------------------------------
 *
 * metering.c
 *	  compay.record_usage(): one usage sample of a task, pushed by the
 *	  node that runs it.
 *
 * Samples are the highest-volume input of the network (every node, every
 * few seconds), so the function plans nothing and runs no SQL: it locks
 * the job row FOR UPDATE, inserts the sample unless its id was recorded
 * before (a retry: false), and adds it to the task's running totals,
 * which it then checks (bytes within bigint, a price within the credit
 * range), all through the table access method (src/metering_heap.c).
 * The checks and errors are those of the PL/pgSQL function of 0.1; an
 * error after a write rolls it back with the statement.
 * compay.record_usage_batch() (metering_batch.c) is the bulk path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "ledger.h"
#include "metering.h"
#include "node_roles.h"

PG_FUNCTION_INFO_V1(compay_record_usage);

/* In src/pricing.c. */
extern Datum compay_check_metrics(PG_FUNCTION_ARGS);

static int
TextLength(text *t)
{
	return pg_mbstrlen_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

static void
CheckArguments(FunctionCallInfo fcinfo)
{
	int			len;

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("task_id, node_id, sample_id, sampled_at and metrics must not be NULL")));
	LedgerCheckNode(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	len = TextLength(PG_GETARG_TEXT_PP(2));
	if (len < 1 || len > METER_ID_LEN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a sample id has 1 to 200 characters")));
	if (TIMESTAMP_NOT_FINITE(PG_GETARG_TIMESTAMPTZ(3)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sampled_at must be a finite time")));
}

static char *
NumericText(Datum n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, n));
}

/* The task's job row, locked FOR UPDATE; PY010 if there is none. */
static MeterJob
LockJob(MeterState *m, text *task_id)
{
	MeterJob	j = {0};
	int			len = TextLength(task_id);

	if (len < 1 || len > METER_ID_LEN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a task id has 1 to 200 characters")));
	j.task_id = text_to_cstring(task_id);
	if (MeterFindJobs(m, &j, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_UNKNOWN_TASK),
				 errmsg("task \"%s\" does not exist", MeterLeft64(j.task_id)),
				 errhint("Submit it first with compay.submit_job() or compay.submit_task().")));
	MeterLockJobs(m, &j, 1);
	return j;
}

/*
 * The task's totals with the sample, as payment at quorum will sum them:
 * bytes within bigint, and unless a job type prices the task, a price
 * within the credit range.
 */
static void
AddToTotals(MeterState *m, const MeterJob *j, const MeterMetrics *metrics)
{
	MeterSums	sample;
	MeterSums	totals;

	MeterSumsZero(&sample);
	MeterSumsAdd(&sample, metrics);
	MeterAddTotals(m, j->id, &sample, &totals);
	if (!MeterBytesFit(&totals))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("usage of task \"%s\" would exceed 2^63 - 1 network bytes",
						MeterLeft64(j->task_id)),
				 errdetail("With this sample the task would total %s bytes in and %s out.",
						   NumericText(totals.nin), NumericText(totals.nout))));
	if (!MeterHasJobType(j->task_type))
		MeterCheckPrice(&totals, j->task_type);
}

/*
 * compay.record_usage(task_id, node_id, sample_id, sampled_at, metrics):
 * true if the sample was recorded, false if it had been (a retry).
 */
Datum
compay_record_usage(PG_FUNCTION_ARGS)
{
	char	   *node_id;
	MeterMetrics metrics;
	MeterState *m;
	MeterJob	j;
	bool		recorded;

	CheckArguments(fcinfo);
	node_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	NodeRequire(node_id, true); /* and below: the task's provider */
	DirectFunctionCall1(compay_check_metrics, PG_GETARG_DATUM(4));

	/*
	 * The row locked FOR UPDATE: samples of one task go in one at a time,
	 * each checked against the sum of those before it, and not while the
	 * task is being paid.
	 */
	m = MeterBegin();
	MeterReadMetrics(m, PG_GETARG_HEAPTUPLEHEADER(4), &metrics);
	j = LockJob(m, PG_GETARG_TEXT_PP(0));
	MeterCheckJob(&j, node_id);
	recorded = !MeterSampleExists(m, j.id, PG_GETARG_DATUM(2));
	if (recorded)
	{
		TupleTableSlot *slot = MeterSampleSlot(m, j.id, PG_GETARG_DATUM(2),
											   PG_GETARG_DATUM(1), PG_GETARG_DATUM(3),
											   &metrics);

		MeterInsertSamples(m, &slot, 1);
		ExecDropSingleTupleTableSlot(slot);
		AddToTotals(m, &j, &metrics);
	}
	MeterEnd(m);
	PG_RETURN_BOOL(recorded);
}
