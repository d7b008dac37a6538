/*-------------------------------------------------------------------------
 *
 * metering_heap.c
 *	  The reads and writes of usage samples through the table access
 *	  method, without SPI or the executor: the job rows locked FOR UPDATE,
 *	  the sample rows inserted, the tasks' running totals updated.
 *
 * Samples are the highest-volume input of the network, and what a sample
 * writes is known exactly, so planning and starting an executor for it
 * was most of its cost (as for transfers, src/ledger_heap.c).  Every
 * writer of a task's samples and totals holds the task's job row FOR
 * UPDATE first, so under that lock the newest committed versions are the
 * only ones: the checks here read them with a dirty snapshot, as ON
 * CONFLICT would.  The foreign keys of compay.usage_samples and
 * compay.usage_totals to compay.jobs are held by that lock too (jobs are
 * never deleted), so their triggers, which would look the job row up
 * again, are not run.  The unique indexes still refuse a duplicate.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "mb/pg_wchar.h"
#include "funcapi.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "compay.h"
#include "metering.h"
#include "spi_util.h"

/* In src/pricing.c. */
extern Datum compay_check_price(PG_FUNCTION_ARGS);

/* One table open for writing, as ModifyTable would open it. */
typedef struct MeterTarget
{
	Relation	rel;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} MeterTarget;

struct MeterState
{
	EState	   *estate;
	CommandId	cid;
	MeterTarget jobs;
	MeterTarget samples;
	MeterTarget totals;
	Datum		zero;			/* numeric 0 */
	Datum		empty;			/* jsonb '{}', made when needed */
	TupleDesc	metrics_desc;	/* compay.resource_metrics, read once */
	TupleDesc	sample_desc;	/* a copy: slots of it pin nothing */
	SnapshotData dirty;			/* the newest committed versions */
	Relation	samples_pkey;	/* open on the first lookup of a sample id */
	IndexScanDesc samples_scan;
};

/* compay.usage_samples, compay.usage_totals and compay.jobs columns (1-based). */
enum
{
	S_JOB_ID = 1, S_SAMPLE_ID, S_NODE_ID, S_SAMPLED_AT, S_CPU, S_MEM, S_STO,
	S_NIN, S_NOUT, S_GPU, S_CUSTOM, S_RECORDED_AT, S_NATTS = S_RECORDED_AT
};
enum
{
	T_JOB_ID = 1, T_CPU, T_MEM, T_STO, T_NIN, T_NOUT, T_GPU, T_CUSTOM, T_NATTS = T_CUSTOM
};

static const char *const sample_columns[] = {
	"job_id", "sample_id", "node_id", "sampled_at", "cpu_seconds", "memory_byte_hours",
	"storage_byte_hours", "network_bytes_in", "network_bytes_out", "gpu_seconds", "custom",
	"recorded_at", NULL
};
static const char *const total_columns[] = {
	"job_id", "cpu_seconds", "memory_byte_hours", "storage_byte_hours", "network_bytes_in",
	"network_bytes_out", "gpu_seconds", "custom", NULL
};

/* The column numbers above are the table's, as src/jobs.sql makes it. */
static void
CheckColumns(Relation rel, const char *const *columns)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			n = 0;

	while (columns[n] != NULL)
		n++;
	if (desc->natts != n)
		elog(ERROR, "%s does not have %d columns", RelationGetRelationName(rel), n);
	for (int i = 0; i < n; i++)
		if (TupleDescAttr(desc, i)->attisdropped ||
			strcmp(NameStr(TupleDescAttr(desc, i)->attname), columns[i]) != 0)
			elog(ERROR, "column %d of %s is not %s", i + 1, RelationGetRelationName(rel),
				 columns[i]);
}

/* columns NULL: a table whose rows are only read and locked. */
static void
OpenTarget(MeterTarget *t, const char *name, int rti, const char *const *columns)
{
	/* As SELECT ... FOR UPDATE locks a table, or INSERT and UPDATE. */
	t->rel = table_open(CompayRelationOid(name), columns ? RowExclusiveLock : RowShareLock);
	if (columns)
		CheckColumns(t->rel, columns);
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, rti, NULL, 0);
	/* Job rows are only locked: their five indexes stay closed. */
	if (columns)
		ExecOpenIndices(t->rri, false);
	t->slot = table_slot_create(t->rel, NULL);
}

static void
CloseTarget(MeterTarget *t)
{
	ExecDropSingleTupleTableSlot(t->slot);
	ExecCloseIndices(t->rri);
	table_close(t->rel, NoLock);
}

static RangeTblEntry *
MeterRangeEntry(Oid relid)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT | ACL_UPDATE;
	return rte;
}

MeterState *
MeterBegin(void)
{
	MeterState *m = palloc0(sizeof(MeterState));

	m->estate = CreateExecutorState();

	/*
	 * A range table as the executor would have: the error detail of a
	 * failed constraint reads the columns a statement sets.
	 */
	ExecInitRangeTable(m->estate,
					   list_make3(MeterRangeEntry(CompayRelationOid("jobs")),
								  MeterRangeEntry(CompayRelationOid("usage_samples")),
								  MeterRangeEntry(CompayRelationOid("usage_totals"))));
	OpenTarget(&m->jobs, "jobs", 1, NULL);
	OpenTarget(&m->samples, "usage_samples", 2, sample_columns);
	OpenTarget(&m->totals, "usage_totals", 3, total_columns);
	m->cid = GetCurrentCommandId(true);
	m->zero = DirectFunctionCall1(int8_numeric, Int64GetDatum(0));
	InitDirtySnapshot(m->dirty);

	/*
	 * A batch makes a slot per sample: on the relation's own descriptor
	 * each would pin it in the resource owner, whose list of pins is
	 * searched linearly on release.
	 */
	m->sample_desc = CreateTupleDescCopy(RelationGetDescr(m->samples.rel));
	return m;
}

static void EndScan(IndexScanDesc scan, Relation index);

/* Closes the tables and makes the writes visible to what follows. */
void
MeterEnd(MeterState *m)
{
	if (m->samples_scan)
		EndScan(m->samples_scan, m->samples_pkey);
	CloseTarget(&m->jobs);
	CloseTarget(&m->samples);
	CloseTarget(&m->totals);
	FreeExecutorState(m->estate);
	CommandCounterIncrement();
}

/* An index of ours on one table, a key of one or two columns. */
static IndexScanDesc
BeginScan(Relation rel, const char *index_name, Snapshot snapshot, int nkeys, Relation *index)
{
	*index = index_open(CompayRelationOid(index_name), AccessShareLock);
	return index_beginscan(rel, *index, snapshot, nkeys, 0);
}

static void
EndScan(IndexScanDesc scan, Relation index)
{
	index_endscan(scan);
	index_close(index, NoLock);
}

/*
 * An equality key on a text column: compared with the index column's
 * collation, as the tree is ordered by it (ScanKeyInit assumes C).
 */
static void
TextKey(ScanKey key, Relation index, int attno, Datum value)
{
	ScanKeyInit(key, attno, BTEqualStrategyNumber, F_TEXTEQ, value);
	key->sk_collation = index->rd_indcollation[attno - 1];
}

int
MeterFindJobs(MeterState *m, MeterJob *jobs, int n)
{
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	Relation	index;
	IndexScanDesc scan = BeginScan(m->jobs.rel, "jobs_task_id_key", snapshot, 1, &index);
	int			nfound = 0;

	for (int i = 0; i < n; i++)
	{
		ScanKeyData key;
		bool		isnull;

		TextKey(&key, index, 1, CStringGetTextDatum(jobs[i].task_id));
		index_rescan(scan, &key, 1, NULL, 0);
		jobs[i].id = 0;
		if (!index_getnext_slot(scan, ForwardScanDirection, m->jobs.slot))
			continue;
		jobs[i].id = DatumGetInt64(slot_getattr(m->jobs.slot, 1, &isnull));
		ItemPointerCopy(&m->jobs.slot->tts_tid, &jobs[i].tid);
		nfound++;
	}
	EndScan(scan, index);
	UnregisterSnapshot(snapshot);
	return nfound;
}

static int
CompareJobs(const void *a, const void *b)
{
	int64		x = ((const MeterJob *) a)->id;
	int64		y = ((const MeterJob *) b)->id;

	return (x > y) - (x < y);
}

static char *
TextColumn(TupleTableSlot *slot, int attno)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, attno, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * Locks the newest version of each found job (id not 0) FOR UPDATE, in
 * ascending id order (jobs is sorted so), as SELECT ... ORDER BY id FOR
 * UPDATE would: waiting for a concurrent writer, and under snapshot
 * isolation failing when the row changed since the snapshot.
 */
void
MeterLockJobs(MeterState *m, MeterJob *jobs, int n)
{
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	AttrNumber	a_status = CompayColumn(m->jobs.rel, "status", false);
	AttrNumber	a_provider = CompayColumn(m->jobs.rel, "provider", false);
	AttrNumber	a_type = CompayColumn(m->jobs.rel, "task_type", false);

	qsort(jobs, n, sizeof(MeterJob), CompareJobs);
	for (int i = 0; i < n; i++)
	{
		MeterJob   *j = &jobs[i];
		bool		isnull;

		if (j->id == 0)
			continue;
		CompayLockRow(m->jobs.rel, &j->tid, snapshot, m->jobs.slot, m->cid, LockWaitBlock,
					  "job", j->id);
		j->status = DatumGetCString(DirectFunctionCall1(enum_out,
														slot_getattr(m->jobs.slot, a_status,
																	 &isnull)));
		j->provider = TextColumn(m->jobs.slot, a_provider);
		j->task_type = TextColumn(m->jobs.slot, a_type);
	}
	UnregisterSnapshot(snapshot);
}

/*
 * Under snapshot isolation a row this transaction cannot see is a
 * concurrent change, as ON CONFLICT reports it.
 */
static void
CheckVisible(MeterTarget *t, TupleTableSlot *slot)
{
	if (IsolationUsesXactSnapshot() &&
		!table_tuple_satisfies_snapshot(t->rel, slot, GetTransactionSnapshot()))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
}

/*
 * One scan of the primary key for every sample of a call, rescanned per
 * sample id.  The dirty snapshot sees what committed after the call's
 * snapshot was taken (while it waited for the job row lock).
 */
bool
MeterSampleExists(MeterState *m, int64 job_id, Datum sample_id)
{
	ScanKeyData keys[2];
	bool		found;

	if (m->samples_scan == NULL)
		m->samples_scan = BeginScan(m->samples.rel, "usage_samples_pkey", &m->dirty, 2,
									&m->samples_pkey);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(job_id));
	TextKey(&keys[1], m->samples_pkey, 2, sample_id);
	index_rescan(m->samples_scan, keys, 2, NULL, 0);
	found = index_getnext_slot(m->samples_scan, ForwardScanDirection, m->samples.slot);
	if (found)
		CheckVisible(&m->samples, m->samples.slot);
	return found;
}

static Datum
Metric(const MeterMetrics *metrics, int att, bool *isnull)
{
	*isnull = metrics->nulls[att - 1];
	return metrics->values[att - 1];
}

/*
 * A compay.resource_metrics value's fields, read at once (the row type's
 * descriptor looked up once per call, not once per field).
 */
void
MeterReadMetrics(MeterState *m, HeapTupleHeader metrics, MeterMetrics *out)
{
	HeapTupleData tuple;

	if (m->metrics_desc == NULL)
		m->metrics_desc = lookup_rowtype_tupdesc_copy(HeapTupleHeaderGetTypeId(metrics),
													  HeapTupleHeaderGetTypMod(metrics));
	if (m->metrics_desc->natts != METER_NUM_METRICS)
		elog(ERROR, "compay.resource_metrics does not have %d fields", METER_NUM_METRICS);
	tuple.t_len = HeapTupleHeaderGetDatumLength(metrics);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = metrics;
	heap_deform_tuple(&tuple, m->metrics_desc, out->values, out->nulls);
}

static Datum
MetricOr(const MeterMetrics *metrics, int att, Datum zero)
{
	bool		isnull;
	Datum		d = Metric(metrics, att, &isnull);

	return isnull ? zero : d;
}

/*
 * Whether a jsonb is '{}': its root container's header read in place (a
 * short varlena would be copied to be read as Jsonb).
 */
static bool
JsonbEmpty(Datum d)
{
	struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(d));
	uint32		header;

	memcpy(&header, VARDATA_ANY(v), sizeof(header));
	return (header & JB_FOBJECT) != 0 && (header & JB_CMASK) == 0;
}

TupleTableSlot *
MeterSampleSlot(MeterState *m, int64 job_id, Datum sample_id, Datum node_id,
				Datum sampled_at, const MeterMetrics *metrics)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(m->sample_desc, &TTSOpsVirtual);
	Datum	   *v = slot->tts_values;
	bool	   *n = slot->tts_isnull;
	bool		isnull;

	memset(n, 0, sizeof(bool) * S_NATTS);
	v[S_JOB_ID - 1] = Int64GetDatum(job_id);
	v[S_SAMPLE_ID - 1] = sample_id;
	v[S_NODE_ID - 1] = node_id;
	v[S_SAMPLED_AT - 1] = sampled_at;
	v[S_CPU - 1] = MetricOr(metrics, 1, m->zero);
	v[S_MEM - 1] = MetricOr(metrics, 2, m->zero);
	v[S_STO - 1] = MetricOr(metrics, 3, m->zero);
	v[S_NIN - 1] = MetricOr(metrics, 4, Int64GetDatum(0));
	v[S_NOUT - 1] = MetricOr(metrics, 5, Int64GetDatum(0));
	v[S_GPU - 1] = MetricOr(metrics, 6, m->zero);
	v[S_CUSTOM - 1] = Metric(metrics, 7, &isnull);
	n[S_CUSTOM - 1] = isnull || JsonbEmpty(v[S_CUSTOM - 1]);	/* nullif(custom, '{}') */
	v[S_RECORDED_AT - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	ExecStoreVirtualTuple(slot);
	return slot;
}

/* Most rows one multi-insert writes, as COPY buffers them. */
#define INSERT_CHUNK 1000

void
MeterInsertSamples(MeterState *m, TupleTableSlot **slots, int n)
{
	MeterTarget *t = &m->samples;

	for (int done = 0; done < n; done += INSERT_CHUNK)
	{
		int			k = Min(INSERT_CHUNK, n - done);

		for (int i = done; i < done + k; i++)
			CompayExecConstraints(t->rri, slots[i], m->estate);
		if (k == 1)
			table_tuple_insert(t->rel, slots[done], m->cid, 0, NULL);
		else
			table_multi_insert(t->rel, slots + done, k, m->cid, 0, NULL);
		for (int i = done; i < done + k; i++)
		{
			ExecInsertIndexTuples(t->rri, slots[i], m->estate, false, false, NULL, NIL);
			ResetPerTupleExprContext(m->estate);
		}
	}
}

void
MeterSumsZero(MeterSums *s)
{
	Datum		zero = DirectFunctionCall1(int8_numeric, Int64GetDatum(0));

	s->cpu = s->mem = s->sto = s->nin = s->nout = s->gpu = zero;
	s->custom = (Datum) 0;
}

static Datum
Add(Datum a, Datum b)
{
	return DirectFunctionCall2(numeric_add, a, b);
}

static Datum
AddBytes(Datum a, const MeterMetrics *metrics, int att)
{
	bool		isnull;
	Datum		d = Metric(metrics, att, &isnull);

	return isnull ? a : Add(a, DirectFunctionCall1(int8_numeric, d));
}

static Datum
AddQuantity(Datum a, const MeterMetrics *metrics, int att)
{
	bool		isnull;
	Datum		d = Metric(metrics, att, &isnull);

	return isnull ? a : Add(a, d);
}

/* compay.add_custom_metrics(a, b): the sum per name, as the SQL does it. */
static Datum
AddCustom(Datum a, Datum b)
{
	Oid			argtypes[2] = {JSONBOID, JSONBOID};
	Oid			fn = LookupFuncName(list_make2(makeString("compay"),
											   makeString("add_custom_metrics")),
									2, argtypes, false);

	return OidFunctionCall2(fn, a, b);
}

/* custom (Datum) 0 stands for '{}' until a sample has some. */
static Datum
AddCustomOrNone(Datum sum, Datum add)
{
	if (add == (Datum) 0 || JsonbEmpty(add))
		return sum;
	if (sum == (Datum) 0)
		return add;
	return AddCustom(sum, add);
}

void
MeterSumsAdd(MeterSums *s, const MeterMetrics *metrics)
{
	bool		isnull;
	Datum		custom;

	s->cpu = AddQuantity(s->cpu, metrics, 1);
	s->mem = AddQuantity(s->mem, metrics, 2);
	s->sto = AddQuantity(s->sto, metrics, 3);
	s->nin = AddBytes(s->nin, metrics, 4);
	s->nout = AddBytes(s->nout, metrics, 5);
	s->gpu = AddQuantity(s->gpu, metrics, 6);
	custom = Metric(metrics, 7, &isnull);
	s->custom = AddCustomOrNone(s->custom, isnull ? (Datum) 0 : custom);
}

/*
 * The job's totals row, newest version (the job row lock keeps every
 * other writer out), into the totals slot; false if it has none.
 */
static bool
FetchTotals(MeterState *m, int64 job_id)
{
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData key;
	bool		found;

	scan = BeginScan(m->totals.rel, "usage_totals_pkey", &m->dirty, 1, &index);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(job_id));
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, m->totals.slot);
	if (found)
		CheckVisible(&m->totals, m->totals.slot);
	EndScan(scan, index);
	return found;
}

static void
UpdateTotals(MeterState *m, Datum *values, bool *nulls)
{
	MeterTarget *t = &m->totals;
	TupleTableSlot *newslot = MakeSingleTupleTableSlot(RelationGetDescr(t->rel),
													   &TTSOpsHeapTuple);
	HeapTuple	newtup = heap_form_tuple(RelationGetDescr(t->rel), values, nulls);
	ItemPointerData tid = t->slot->tts_tid;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;
	TM_Result	result;

	ExecStoreHeapTuple(newtup, newslot, true);
	CompayExecConstraints(t->rri, newslot, m->estate);
	result = table_tuple_update(t->rel, &tid, newslot, m->cid, GetActiveSnapshot(),
								InvalidSnapshot, true, &tmfd, &lockmode, &update_indexes);
	if (result != TM_Ok)
		elog(ERROR, "could not update the usage totals of a locked job (%d)", (int) result);
	if (update_indexes)
		ExecInsertIndexTuples(t->rri, newslot, m->estate, false, false, NULL, NIL);
	ExecDropSingleTupleTableSlot(newslot);
	ResetPerTupleExprContext(m->estate);
}

static void
InsertTotals(MeterState *m, Datum *values, bool *nulls)
{
	MeterTarget *t = &m->totals;
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(t->rel), &TTSOpsVirtual);

	memcpy(slot->tts_values, values, sizeof(Datum) * T_NATTS);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * T_NATTS);
	ExecStoreVirtualTuple(slot);
	CompayExecConstraints(t->rri, slot, m->estate);
	table_tuple_insert(t->rel, slot, m->cid, 0, NULL);
	ExecInsertIndexTuples(t->rri, slot, m->estate, false, false, NULL, NIL);
	ExecDropSingleTupleTableSlot(slot);
	ResetPerTupleExprContext(m->estate);
}

void
MeterAddTotals(MeterState *m, int64 job_id, const MeterSums *sums, MeterSums *out)
{
	Datum		v[T_NATTS];
	bool		n[T_NATTS] = {0};
	bool		found = FetchTotals(m, job_id);
	bool		isnull;

	*out = *sums;
	if (found)
	{
		TupleTableSlot *s = m->totals.slot;

		out->cpu = Add(slot_getattr(s, T_CPU, &isnull), sums->cpu);
		out->mem = Add(slot_getattr(s, T_MEM, &isnull), sums->mem);
		out->sto = Add(slot_getattr(s, T_STO, &isnull), sums->sto);
		out->nin = Add(slot_getattr(s, T_NIN, &isnull), sums->nin);
		out->nout = Add(slot_getattr(s, T_NOUT, &isnull), sums->nout);
		out->gpu = Add(slot_getattr(s, T_GPU, &isnull), sums->gpu);
		/* Copied: *out outlives the slot's hold on the page. */
		out->custom = AddCustomOrNone(datumCopy(slot_getattr(s, T_CUSTOM, &isnull), false, -1),
									  sums->custom);
	}
	if (out->custom == (Datum) 0)
	{
		if (m->empty == (Datum) 0)
			m->empty = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
		out->custom = m->empty;
	}
	v[T_JOB_ID - 1] = Int64GetDatum(job_id);
	v[T_CPU - 1] = out->cpu;
	v[T_MEM - 1] = out->mem;
	v[T_STO - 1] = out->sto;
	v[T_NIN - 1] = out->nin;
	v[T_NOUT - 1] = out->nout;
	v[T_GPU - 1] = out->gpu;
	v[T_CUSTOM - 1] = out->custom;
	if (found)
		UpdateTotals(m, v, n);
	else
		InsertTotals(m, v, n);
}

bool
MeterBytesFit(const MeterSums *t)
{
	Datum		max = DirectFunctionCall1(int8_numeric, Int64GetDatum(PG_INT64_MAX));

	return DatumGetBool(DirectFunctionCall2(numeric_le, t->nin, max)) &&
		DatumGetBool(DirectFunctionCall2(numeric_le, t->nout, max));
}

/* The totals as compay.resource_metrics (bytes within bigint). */
static Datum
TotalsMetrics(const MeterSums *t)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(CompayTypeOid("resource_metrics"), -1);
	Datum		v[METER_NUM_METRICS];
	bool		n[METER_NUM_METRICS] = {0};
	HeapTuple	tup;

	v[0] = t->cpu;
	v[1] = t->mem;
	v[2] = t->sto;
	v[3] = DirectFunctionCall1(numeric_int8, t->nin);
	v[4] = DirectFunctionCall1(numeric_int8, t->nout);
	v[5] = t->gpu;
	v[6] = t->custom;
	tup = heap_form_tuple(desc, v, n);
	ReleaseTupleDesc(desc);
	return HeapTupleGetDatum(tup);
}

/*
 * compay.check_price(metrics, task_type): a NULL task type (the default
 * model) is an argument too, so not through DirectFunctionCall2.
 */
void
MeterCheckPrice(const MeterSums *t, const char *task_type)
{
	LOCAL_FCINFO(fc, 2);

	InitFunctionCallInfoData(*fc, NULL, 2, InvalidOid, NULL, NULL);
	fc->args[0].value = TotalsMetrics(t);
	fc->args[0].isnull = false;
	fc->args[1].value = task_type ? CStringGetTextDatum(task_type) : (Datum) 0;
	fc->args[1].isnull = task_type == NULL;
	(void) compay_check_price(fc);
}

bool
MeterHasJobType(const char *task_type)
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot;
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	bool		found;

	if (task_type == NULL)
		return false;
	rel = table_open(CompayRelationOid("job_types"), AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = BeginScan(rel, "job_types_pkey", snapshot, 1, &index);
	TextKey(&key, index, 1, CStringGetTextDatum(task_type));
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	EndScan(scan, index);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	UnregisterSnapshot(snapshot);
	return found;
}

char *
MeterLeft64(const char *id)
{
	return pnstrdup(id, pg_mbcharcliplen(id, strlen(id), 64));
}

void
MeterCheckJob(const MeterJob *j, const char *node_id)
{
	if (strcmp(j->status, "paid") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task \"%s\" is already paid", MeterLeft64(j->task_id)),
				 errdetail("Usage of a paid task can no longer change what it cost.")));
	if (strcmp(j->status, "failed") == 0 || strcmp(j->status, "timed_out") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task \"%s\" is closed: it is %s", MeterLeft64(j->task_id), j->status)));
	if (j->provider == NULL || strcmp(j->provider, node_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("node \"%s\" does not run task \"%s\"", MeterLeft64(node_id),
						MeterLeft64(j->task_id)),
				 errdetail("Only the task's provider reports its usage.")));
}
