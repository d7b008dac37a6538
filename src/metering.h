/*-------------------------------------------------------------------------
 *
 * metering.h
 *	  The writes of a usage sample through the table access method
 *	  (src/metering_heap.c), shared by compay.record_usage() (metering.c)
 *	  and compay.record_usage_batch() (metering_batch.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_METERING_H
#define COMPAY_METERING_H

#include "access/htup.h"
#include "executor/tuptable.h"
#include "storage/itemptr.h"

#define METER_ID_LEN_MAX		200	/* task and sample ids, in characters */
#define METER_BATCH_MAX			10000
#define METER_NUM_METRICS		7	/* compay.resource_metrics */

/* A task's job row, found by task id and then locked FOR UPDATE. */
typedef struct MeterJob
{
	const char *task_id;
	int64		id;
	ItemPointerData tid;
	char	   *status;
	char	   *provider;		/* NULL: none assigned */
	char	   *task_type;
	int			first;			/* index of its first sample in a batch */
} MeterJob;

/* A task's running totals (compay.usage_totals), byte counts numeric. */
typedef struct MeterSums
{
	Datum		cpu;
	Datum		mem;
	Datum		sto;
	Datum		nin;
	Datum		nout;
	Datum		gpu;
	Datum		custom;			/* jsonb, '{}' when none */
} MeterSums;

/* The fields of one compay.resource_metrics value. */
typedef struct MeterMetrics
{
	Datum		values[METER_NUM_METRICS];
	bool		nulls[METER_NUM_METRICS];
} MeterMetrics;

/* The tables a sample writes, open for one call. */
typedef struct MeterState MeterState;

extern MeterState *MeterBegin(void);
extern void MeterEnd(MeterState *m);

/* Finds the job of each task (id 0: none); returns how many exist. */
extern int	MeterFindJobs(MeterState *m, MeterJob *jobs, int n);

/* Locks the found jobs FOR UPDATE in ascending id order, reading each. */
extern void MeterLockJobs(MeterState *m, MeterJob *jobs, int n);

/* Whether the sample id was recorded for the (locked) job. */
extern bool MeterSampleExists(MeterState *m, int64 job_id, Datum sample_id);

/* A slot to fill for one sample; MeterInsertSamples writes n of them. */
extern TupleTableSlot *MeterSampleSlot(MeterState *m, int64 job_id, Datum sample_id,
									   Datum node_id, Datum sampled_at,
									   const MeterMetrics *metrics);
extern void MeterInsertSamples(MeterState *m, TupleTableSlot **slots, int n);

/* Zero sums; adds a sample's metrics (NULL fields as zero) to sums. */
extern void MeterSumsZero(MeterSums *s);
extern void MeterSumsAdd(MeterSums *s, const MeterMetrics *metrics);

/* Reads a compay.resource_metrics value's fields. */
extern void MeterReadMetrics(MeterState *m, HeapTupleHeader metrics, MeterMetrics *out);

/*
 * Adds sums to the job's totals row (made if none) and returns the new
 * totals in *out.
 */
extern void MeterAddTotals(MeterState *m, int64 job_id, const MeterSums *sums,
						   MeterSums *out);

/* Whether both byte counts of totals fit a bigint. */
extern bool MeterBytesFit(const MeterSums *t);

/* 22023 unless the totals' price is within the credit range, as price() sees it. */
extern void MeterCheckPrice(const MeterSums *t, const char *task_type);

/* Whether a job type (compute_reward()) prices tasks of task_type. */
extern bool MeterHasJobType(const char *task_type);

/* The status and provider checks of a locked job (errors as record_usage's). */
extern void MeterCheckJob(const MeterJob *j, const char *node_id);

/* left(id, 64), as the messages echo ids. */
extern char *MeterLeft64(const char *id);

#endif							/* COMPAY_METERING_H */
