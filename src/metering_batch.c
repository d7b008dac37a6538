/*-------------------------------------------------------------------------
 *
 * metering_batch.c
 *	  compay.record_usage_batch(): the bulk path of compay.record_usage(),
 *	  the samples of one node (for one or more of its tasks) in one call.
 *
 * The same checks as record_usage, all made before anything is written
 * (the batch is recorded whole or not at all); the job rows locked FOR
 * UPDATE in id order (so concurrent batches wait for each other, never
 * deadlock); each sample id looked up in the primary key (recorded
 * before: a retry, skipped), the new samples written by multi-inserts,
 * and each task's totals updated once with the sum of its new samples,
 * then checked as record_usage checks them.  Each total only grows, so
 * checking the sum of the whole batch is checking every sample of it in
 * turn.  No SQL is planned or run (src/metering_heap.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "ledger.h"
#include "metering.h"
#include "node_roles.h"

PG_FUNCTION_INFO_V1(compay_record_usage_batch);

/* In src/pricing.c. */
extern Datum compay_check_metrics(PG_FUNCTION_ARGS);

/* The batch's arrays, one element of each per sample. */
typedef struct Batch
{
	int			n;
	Datum	   *tasks;
	bool	   *task_nulls;
	Datum	   *samples;
	bool	   *sample_nulls;
	Datum	   *times;
	bool	   *time_nulls;
	Datum	   *metrics;
	bool	   *metric_nulls;
	int		   *job;			/* sample i: its task's index in jobs */
} Batch;

static int
Deconstruct(ArrayType *a, Datum **values, bool **nulls)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;

	get_typlenbyvalalign(ARR_ELEMTYPE(a), &typlen, &typbyval, &typalign);
	deconstruct_array(a, ARR_ELEMTYPE(a), typlen, typbyval, typalign, values, nulls, &n);
	return n;
}

static void
ReadBatch(FunctionCallInfo fcinfo, Batch *b)
{
	int			nsamples;
	int			ntimes;
	int			nmetrics;

	b->n = Deconstruct(PG_GETARG_ARRAYTYPE_P(0), &b->tasks, &b->task_nulls);
	nsamples = Deconstruct(PG_GETARG_ARRAYTYPE_P(2), &b->samples, &b->sample_nulls);
	ntimes = Deconstruct(PG_GETARG_ARRAYTYPE_P(3), &b->times, &b->time_nulls);
	nmetrics = Deconstruct(PG_GETARG_ARRAYTYPE_P(4), &b->metrics, &b->metric_nulls);
	if (nsamples != b->n || ntimes != b->n || nmetrics != b->n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task_ids, sample_ids, sampled_at and metrics must have as many elements"),
				 errdetail("They have %d, %d, %d and %d.", b->n, nsamples, ntimes, nmetrics)));
	if (b->n > METER_BATCH_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a batch has at most %d samples, not %d", METER_BATCH_MAX, b->n),
				 errhint("Send the samples in several batches.")));
}

static bool
BadLength(Datum d)
{
	text	   *t = DatumGetTextPP(d);
	int			len = pg_mbstrlen_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));

	return len < 1 || len > METER_ID_LEN_MAX;
}

/* 22004/22023 for the first sample with a NULL, a bad id or an infinite time. */
static void
CheckSamples(const Batch *b)
{
	for (int i = 0; i < b->n; i++)
	{
		if (b->task_nulls[i] || b->sample_nulls[i] || b->time_nulls[i] || b->metric_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("sample %d of the batch has a NULL task id, sample id, time or metrics",
							i + 1)));
		if (BadLength(b->tasks[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a task id has 1 to 200 characters"),
					 errdetail("Sample %d of the batch.", i + 1)));
		if (BadLength(b->samples[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a sample id has 1 to 200 characters"),
					 errdetail("Sample %d of the batch.", i + 1)));
		if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(b->times[i])))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sampled_at must be a finite time"),
					 errdetail("Sample %d of the batch.", i + 1)));
	}
	for (int i = 0; i < b->n; i++)
		DirectFunctionCall1(compay_check_metrics, b->metrics[i]);
}

/* A sample's task and sample id, for sorting. */
typedef struct SampleKey
{
	char	   *task;
	char	   *sample;
	int			i;
} SampleKey;

static int
CompareKeys(const void *a, const void *b)
{
	const SampleKey *x = a;
	const SampleKey *y = b;
	int			c = strcmp(x->task, y->task);

	if (c == 0)
		c = strcmp(x->sample, y->sample);
	return c != 0 ? c : (x->i > y->i) - (x->i < y->i);
}

/*
 * The batch's distinct tasks into jobs (returns how many), each sample's
 * index among them into b->job; 22023 if a task's sample id is there
 * twice (the earliest such sample).
 */
static int
GroupTasks(Batch *b, MeterJob *jobs)
{
	SampleKey  *keys = palloc(sizeof(SampleKey) * Max(b->n, 1));
	int			njobs = 0;
	int			twice = -1;

	for (int i = 0; i < b->n; i++)
	{
		keys[i].task = TextDatumGetCString(b->tasks[i]);
		keys[i].sample = TextDatumGetCString(b->samples[i]);
		keys[i].i = i;
	}
	qsort(keys, b->n, sizeof(SampleKey), CompareKeys);
	b->job = palloc(sizeof(int) * Max(b->n, 1));
	for (int k = 0; k < b->n; k++)
	{
		bool		same_task = k > 0 && strcmp(keys[k].task, keys[k - 1].task) == 0;

		if (same_task && strcmp(keys[k].sample, keys[k - 1].sample) == 0 &&
			(twice < 0 || keys[k].i < keys[twice].i))
			twice = k;
		if (!same_task)
		{
			memset(&jobs[njobs], 0, sizeof(MeterJob));
			jobs[njobs].task_id = keys[k].task;
			jobs[njobs].first = keys[k].i;
			njobs++;
		}
		b->job[keys[k].i] = njobs - 1;
	}
	if (twice >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sample \"%s\" of task \"%s\" is twice in the batch",
						MeterLeft64(keys[twice].sample), MeterLeft64(keys[twice].task)),
				 errdetail("A sample id names one sample of a task.")));
	return njobs;
}

/*
 * Locks the tasks' job rows (jobs is then in id order; b->job follows),
 * checks each, then PY010 for the first sample whose task does not exist.
 */
static void
LockJobs(MeterState *m, Batch *b, MeterJob *jobs, int njobs, const char *node_id)
{
	int			nfound = MeterFindJobs(m, jobs, njobs);
	int		   *moved = palloc(sizeof(int) * Max(njobs, 1));
	int			missing = -1;

	MeterLockJobs(m, jobs, njobs);
	for (int k = 0; k < njobs; k++)
	{
		if (jobs[k].id != 0)
			MeterCheckJob(&jobs[k], node_id);
		else if (missing < 0 || jobs[k].first < jobs[missing].first)
			missing = k;
		/* A job's index before the sort is that of its first sample's task. */
		moved[b->job[jobs[k].first]] = k;
	}
	if (nfound < njobs)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_UNKNOWN_TASK),
				 errmsg("task \"%s\" does not exist", MeterLeft64(jobs[missing].task_id)),
				 errhint("Submit it first with compay.submit_job() or compay.submit_task().")));
	for (int i = 0; i < b->n; i++)
		b->job[i] = moved[b->job[i]];
}

/* The totals of every job with new samples: bytes first, then prices. */
static void
CheckTotals(const MeterJob *jobs, const MeterSums *totals,
			const bool *changed, int njobs)
{
	for (int k = 0; k < njobs; k++)
		if (changed[k] && !MeterBytesFit(&totals[k]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("usage of task \"%s\" would exceed 2^63 - 1 network bytes",
							MeterLeft64(jobs[k].task_id)),
					 errdetail("With this batch the task would total %s bytes in and %s out.",
							   DatumGetCString(DirectFunctionCall1(numeric_out, totals[k].nin)),
							   DatumGetCString(DirectFunctionCall1(numeric_out, totals[k].nout)))));
	/* A job type's reward (compute_reward()) does not price the usage. */
	for (int k = 0; k < njobs; k++)
		if (changed[k] && !MeterHasJobType(jobs[k].task_type))
			MeterCheckPrice(&totals[k], jobs[k].task_type);
}

/* Writes the new samples and the totals; returns how many were new. */
static int
Record(MeterState *m, const Batch *b, const MeterJob *jobs, int njobs, Datum node_id)
{
	TupleTableSlot **slots = palloc(sizeof(TupleTableSlot *) * Max(b->n, 1));
	MeterSums  *sums = palloc(sizeof(MeterSums) * Max(njobs, 1));
	MeterSums  *totals = palloc(sizeof(MeterSums) * Max(njobs, 1));
	bool	   *changed = palloc0(sizeof(bool) * Max(njobs, 1));
	int			nnew = 0;

	for (int k = 0; k < njobs; k++)
		MeterSumsZero(&sums[k]);
	for (int i = 0; i < b->n; i++)
	{
		const MeterJob *j = &jobs[b->job[i]];
		MeterMetrics metrics;

		if (MeterSampleExists(m, j->id, b->samples[i]))
			continue;
		MeterReadMetrics(m, DatumGetHeapTupleHeader(b->metrics[i]), &metrics);
		slots[nnew++] = MeterSampleSlot(m, j->id, b->samples[i], node_id, b->times[i], &metrics);
		MeterSumsAdd(&sums[b->job[i]], &metrics);
		changed[b->job[i]] = true;
	}
	MeterInsertSamples(m, slots, nnew);
	for (int i = 0; i < nnew; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	for (int k = 0; k < njobs; k++)
		if (changed[k])
			MeterAddTotals(m, jobs[k].id, &sums[k], &totals[k]);
	CheckTotals(jobs, totals, changed, njobs);
	return nnew;
}

/*
 * compay.record_usage_batch(task_ids, node_id, sample_ids, sampled_at,
 * metrics): element i of each array is one sample; returns how many were
 * new.
 */
Datum
compay_record_usage_batch(PG_FUNCTION_ARGS)
{
	char	   *node_id;
	Batch		b;
	MeterJob   *jobs;
	int			njobs;
	MeterState *m;
	int			recorded;

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("task_ids, node_id, sample_ids, sampled_at and metrics must not be NULL")));
	node_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	LedgerCheckNode(node_id);
	ReadBatch(fcinfo, &b);
	CheckSamples(&b);
	jobs = palloc(sizeof(MeterJob) * Max(b.n, 1));
	njobs = GroupTasks(&b, jobs);
	NodeRequire(node_id, true); /* and below: the tasks' provider */

	m = MeterBegin();
	LockJobs(m, &b, jobs, njobs, node_id);
	recorded = Record(m, &b, jobs, njobs, PG_GETARG_DATUM(1));
	MeterEnd(m);
	PG_RETURN_INT32(recorded);
}
