/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The settlement worker: a background worker that, each round, expires
 *	  due holds, times out jobs, runs settlements when they are due and
 *	  retries failed ones.  Also the settings of settlement, the shared
 *	  status behind compay.worker_status, and compay.wake_worker().
 *
 * Every step of a round is its own transaction, so a failed step is
 * recorded and the round goes on; everything the worker does is a call of
 * the SQL functions that pg_cron users call themselves, so the two ways of
 * scheduling cannot disagree, and both may run at once (run_settlement
 * takes a transaction-level advisory lock).  A crash loses nothing: a step
 * either committed or did not happen, and the postmaster restarts the
 * worker, which simply runs the next round.
 *
 * Events (src/events.sql): a transaction that emitted one wakes the worker
 * at its commit (compay.event_wake()); the worker then only publishes them
 * (a few milliseconds), unless its round is due anyway.  Each round
 * publishes too, and so does the wallet wait hook between ledger steps.
 *
 * The payout round and the deposit poll are the code CALL
 * compay.run_payouts() and compay.poll_deposits() run (src/payout_run.c,
 * with this worker's transaction driver): they take the same advisory
 * try-lock, so the worker and pg_cron jobs never run one at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "payout.h"
#include "payout_run.h"
#include "wallet_rpc.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(compay_wake_worker);
PG_FUNCTION_INFO_V1(compay_worker_status);

PGDLLEXPORT void compay_worker_main(Datum arg);

#define WORKER_STATE_LEN 32
#define WORKER_ERROR_LEN 512

/* What the worker shows of itself; every field under mutex. */
typedef struct WorkerShared
{
	slock_t		mutex;
	pid_t		pid;			/* 0: not running */
	Latch	   *latch;
	char		state[WORKER_STATE_LEN];
	TimestampTz last_round_start;
	TimestampTz last_round_end;
	TimestampTz last_settlement;
	TimestampTz next_settlement_due;
	int64		rounds;
	int64		holds_expired;	/* in the last round */
	int64		jobs_expired;
	int64		settlements_processed;
	bool		settle_requested;	/* by compay.wake_worker() */
	bool		events_requested;	/* by compay.event_wake() */
	char		last_error[WORKER_ERROR_LEN];
	TimestampTz last_error_at;
} WorkerShared;

static WorkerShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static char *worker_database = NULL;
static bool worker_enabled = true;
static int	worker_naptime_s = 10;
static int	settlement_interval_s = 3600;
static int	settlement_period = 0;
static int	settlement_max_attempts = 5;

static const struct config_enum_entry period_options[] = {
	{"hourly", 0, false},
	{"daily", 1, false},
	{"weekly", 2, false},
	{"monthly", 3, false},
	{NULL, 0, false}
};

/* Set by compay.wake_worker() and compay.event_wake(); acted on at commit. */
static bool wake_at_commit = false;
static bool events_at_commit = false;

/* The most publish_events() calls of one wake-up (each up to its batch). */
#define EVENT_PUBLISH_CALLS_MAX 20
#define EVENT_PUBLISH_BATCH 1000

static void
WorkerShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
}

static void
WorkerShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("compay worker", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(WorkerShared));
		SpinLockInit(&shared->mutex);
		strlcpy(shared->state, "not started", WORKER_STATE_LEN);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
WakeWorkerAtCommit(XactEvent event, void *arg pg_attribute_unused())
{
	Latch	   *latch = NULL;

	/*
	 * XACT_EVENT_COMMIT comes after the commit is visible to every new
	 * snapshot (ProcArrayEndTransaction): the worker woken here sees what
	 * this transaction wrote.
	 */
	if (event == XACT_EVENT_COMMIT && (wake_at_commit || events_at_commit) &&
		shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		if (wake_at_commit)
			shared->settle_requested = true;
		if (events_at_commit)
			shared->events_requested = true;
		if (shared->pid != 0)
			latch = shared->latch;
		SpinLockRelease(&shared->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_at_commit = events_at_commit = false;
}

/* compay.event_wake() (src/events.c): publish once this transaction commits. */
void
WorkerWakeForEvents(void)
{
	events_at_commit = true;
}

static void
DefineWorkerSettings(void)
{
	/*
	 * A PGC_POSTMASTER setting can only be defined while the postmaster
	 * loads the library: without the preload there is no worker to
	 * configure, and defining it later is a FATAL error.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("compay.database",
								   "Database the settlement worker connects to.",
								   "compay must be installed there; the worker skips its rounds until it is.",
								   &worker_database, "postgres", PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
	DefineCustomBoolVariable("compay.worker_enabled",
							 "Whether the settlement worker runs its rounds.",
							 NULL, &worker_enabled, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("compay.worker_naptime",
							"Time between two rounds of the settlement worker.",
							NULL, &worker_naptime_s, 10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.settlement_interval",
							"Time between two settlement runs of the worker.",
							NULL, &settlement_interval_s, 3600, 1, 31 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomEnumVariable("compay.settlement_period",
							 "Period the worker settles payments by.",
							 NULL, &settlement_period, 0, period_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.settlement_max_attempts",
							"Automatic attempts of a failed settlement before it waits for an operator.",
							NULL, &settlement_max_attempts, 5, 1, 100,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

void
WorkerInit(void)
{
	BackgroundWorker worker;

	DefineWorkerSettings();
	RegisterXactCallback(WakeWorkerAtCommit, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = WorkerShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = WorkerShmemStartup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Not on a standby: started once recovery is over (after a promotion too). */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "compay", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "compay_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "compay settlement worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "compay settlement worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
SetState(const char *state)
{
	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->state, state, WORKER_STATE_LEN);
	SpinLockRelease(&shared->mutex);
}

static void
RecordError(const char *step, const char *message)
{
	SpinLockAcquire(&shared->mutex);
	snprintf(shared->last_error, WORKER_ERROR_LEN, "%s: %s", step, message);
	shared->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
}

/*
 * In a step's PG_CATCH: logs and records the error, and rolls back the
 * step's transaction (nothing to do if none is open).
 */
static void
StepFailed(const char *step, MemoryContext context)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	/* The abort leaves TopMemoryContext current: back to the round's. */
	MemoryContextSwitchTo(context);
	ereport(LOG, (errmsg("compay worker: %s failed: %s", step, edata->message)));
	RecordError(step, edata->message);
	FreeErrorData(edata);
}

/*
 * Runs one statement in a transaction of its own and returns its first
 * column as a count (0 if none); a failure is logged and recorded, its
 * transaction rolled back, and -1 returned.
 */
static int64
RunStep(const char *step, const char *sql)
{
	MemoryContext context = CurrentMemoryContext;
	volatile int64 count = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/*
	 * Each step is written for READ COMMITTED (run_settlement refuses any
	 * other level), whatever default_transaction_isolation the database has.
	 */
	XactIsoLevel = XACT_READ_COMMITTED;
	PG_TRY();
	{
		bool		isnull;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, sql);
		if (SPI_execute(sql, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "compay worker: \"%s\" did not return rows", sql);
		if (SPI_processed > 0)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull);

			count = isnull ? 0 : DatumGetInt64(d);
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		/* The commit leaves TopMemoryContext current: back to the round's. */
		MemoryContextSwitchTo(context);
	}
	PG_CATCH();
	{
		StepFailed(step, context);
		count = -1;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return count;
}

/*
 * The payout round and the deposit poll (src/payout.c), each under the
 * runners' lock (src/payout_run.c): while CALL compay.run_payouts() or
 * compay.poll_deposits() holds it, the worker skips that part of its
 * round.  Caught like a step.
 */
static int64
RunPayoutKind(PayoutRunKind kind, const char *step)
{
	MemoryContext context = CurrentMemoryContext;
	volatile int64 moved = 0;

	PG_TRY();
	{
		int64		n = 0;

		if (!PayoutRunLocked(kind, &n))
			ereport(DEBUG1,
					(errmsg("compay worker: %s skipped: another runner holds its lock", step)));
		moved = n;
		MemoryContextSwitchTo(context);
	}
	PG_CATCH();
	{
		StepFailed(step, context);
		moved = -1;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return moved;
}

/*
 * Payouts, then deposits, then, at most every
 * compay.wallet_health_interval, the wallet health recorded in
 * compay.runner_status (row worker).  Only after a round that called the
 * wallet: with nothing to pay and no deposit address the worker makes no
 * wallet call at all.
 */
static void
RunPayouts(void)
{
	MemoryContext context = CurrentMemoryContext;
	uint64		calls = WalletRpcCallCount();
	int64		payouts = RunPayoutKind(PAYOUT_RUN_PAYOUTS, "payouts");
	int64		deposits = RunPayoutKind(PAYOUT_RUN_DEPOSITS, "deposits");

	if (WalletRpcCallCount() == calls || !PayoutRunHealthDue())
		return;
	PG_TRY();
	{
		PayoutRunRecordHealth("worker", payouts < 0 || deposits < 0 ? "failed" : "done",
							  Max(payouts, 0) + Max(deposits, 0), NULL);
		MemoryContextSwitchTo(context);
	}
	PG_CATCH();
	{
		StepFailed("wallet health", context);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Publishes the events that are waiting (src/events.sql), in batches, up
 * to a bound: what is left waits for the next wake-up or round.  Skipped
 * where the installed extension has no events yet (0.1 not upgraded).
 */
static void
PublishEvents(void)
{
	int64		n;

	SpinLockAcquire(&shared->mutex);
	shared->events_requested = false;
	SpinLockRelease(&shared->mutex);
	if (RunStep("events check",
				"SELECT count(*) FROM pg_catalog.pg_proc WHERE oid = "
				"pg_catalog.to_regprocedure('compay.publish_events(integer)')") != 1)
		return;
	for (int i = 0; i < EVENT_PUBLISH_CALLS_MAX; i++)
	{
		n = RunStep("publish events",
					psprintf("SELECT compay.publish_events(%d)", EVENT_PUBLISH_BATCH));
		if (n < EVENT_PUBLISH_BATCH)
			break;
	}
}

static bool
EventsRequested(void)
{
	bool		requested;

	SpinLockAcquire(&shared->mutex);
	requested = shared->events_requested;
	SpinLockRelease(&shared->mutex);
	return requested;
}

static const char *
PeriodName(void)
{
	return period_options[settlement_period].name;
}

static TimestampTz
SettlementDue(TimestampTz last)
{
	return last == 0 ? 0 : TimestampTzPlusMilliseconds(last, (int64) settlement_interval_s * 1000);
}

/* What the ledger steps did in the current round, added up. */
static int64 round_holds;
static int64 round_jobs;
static int64 round_settled;
static TimestampTz last_ledger_steps = 0;

/*
 * The ledger steps: expire due holds, time out jobs, settle when due (at
 * once after a start) or asked to by compay.wake_worker(), else retry what
 * failed.  Each its own transaction; none calls the wallet.
 */
static void
LedgerSteps(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz last;
	bool		requested;
	int64		n;

	last_ledger_steps = now;
	SpinLockAcquire(&shared->mutex);
	last = shared->last_settlement;
	requested = shared->settle_requested;
	shared->settle_requested = false;
	SpinLockRelease(&shared->mutex);

	round_holds += Max(RunStep("expire holds", "SELECT compay.expire_holds()::bigint"), 0);
	round_jobs += Max(RunStep("expire jobs", "SELECT compay.expire_jobs()::bigint"), 0);
	if (requested || now >= SettlementDue(last))
	{
		n = RunStep("settlement",
					psprintf("SELECT count(*) FROM compay.run_settlement('%s')", PeriodName()));
		if (n >= 0)
			last = now;
	}
	else
		n = RunStep("retry settlements", "SELECT count(*) FROM compay.process_due_settlements()");
	round_settled += Max(n, 0);

	SpinLockAcquire(&shared->mutex);
	shared->last_settlement = last;
	shared->next_settlement_due = SettlementDue(last);
	SpinLockRelease(&shared->mutex);
}

/*
 * The wallet's wait hook (src/wallet_rpc.c), set while the worker runs its
 * payout round: while a wallet call waits, the ledger steps still run
 * every compay.worker_naptime, so a slow or hung wallet never holds back
 * hold expiry, job timeouts or settlement.  Wallet calls of the worker are
 * made outside any transaction (src/payout.c); the steps run in their own.
 */
static void
LedgerStepsWhileWaiting(void)
{
	MemoryContext context = CurrentMemoryContext;

	if (IsTransactionState())
		return;
	if (EventsRequested())
	{
		PublishEvents();
		MemoryContextSwitchTo(context);
	}
	if (GetCurrentTimestamp() < TimestampTzPlusMilliseconds(last_ledger_steps,
															(int64) worker_naptime_s * 1000))
		return;
	LedgerSteps();
	MemoryContextSwitchTo(context);
	pgstat_report_activity(STATE_RUNNING, "compay worker: waiting for the wallet");
}

/*
 * One round: the ledger steps first, then the payout round (wallet calls),
 * during which the ledger steps go on at their pace; each step its own
 * transaction; a failed step does not stop the others.
 */
static void
WorkerRound(void)
{
	SpinLockAcquire(&shared->mutex);
	shared->last_round_start = GetCurrentTimestamp();
	strlcpy(shared->state, "running", WORKER_STATE_LEN);
	SpinLockRelease(&shared->mutex);

	if (RunStep("extension check",
				"SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'compay'") != 1)
	{
		SetState("waiting for extension");
		return;
	}
	round_holds = round_jobs = round_settled = 0;
	PublishEvents();
	LedgerSteps();

	WalletRpcSetWaitHook(LedgerStepsWhileWaiting);
	PG_TRY();
	{
		RunPayouts();
	}
	PG_FINALLY();
	{
		WalletRpcSetWaitHook(NULL);
	}
	PG_END_TRY();
	PublishEvents();

	SpinLockAcquire(&shared->mutex);
	shared->last_round_end = GetCurrentTimestamp();
	shared->rounds++;
	shared->holds_expired = round_holds;
	shared->jobs_expired = round_jobs;
	shared->settlements_processed = round_settled;
	strlcpy(shared->state, "idle", WORKER_STATE_LEN);
	SpinLockRelease(&shared->mutex);
	pgstat_report_stat(true);
}

static void
WorkerDetach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	SpinLockAcquire(&shared->mutex);
	shared->pid = 0;
	shared->latch = NULL;
	strlcpy(shared->state, "stopped", WORKER_STATE_LEN);
	SpinLockRelease(&shared->mutex);
}

/* When the next round is due: compay.worker_naptime after the last one. */
static TimestampTz next_round_at = 0;

/* Milliseconds until the next round is due (0: now). */
static long
NextRoundInMs(void)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), next_round_at, &secs, &usecs);
	return Min(secs * 1000L + usecs / 1000, (long) worker_naptime_s * 1000L);
}

/*
 * A full round when its time has come or compay.wake_worker() asked for
 * one; a wake-up for events alone only publishes them.  Events emitted
 * during a round set the latch again: that must not start another round
 * at once, or a busy network would keep the worker in back-to-back rounds
 * (and wallet calls).
 */
static bool
RoundDue(void)
{
	bool		settle;

	SpinLockAcquire(&shared->mutex);
	settle = shared->settle_requested;
	SpinLockRelease(&shared->mutex);
	return settle || NextRoundInMs() == 0;
}

void
compay_worker_main(Datum arg pg_attribute_unused())
{
	MemoryContext round_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(worker_database, NULL, 0);
	pgstat_report_appname("compay settlement worker");
	/*
	 * The worker runs as the bootstrap superuser: its queries resolve names
	 * in pg_catalog only, never in a schema other roles can create in.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->latch = MyLatch;
	strlcpy(shared->state, "starting", WORKER_STATE_LEN);
	/* A restart settles at once: the run is idempotent, and work may be waiting. */
	shared->last_settlement = 0;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(WorkerDetach, (Datum) 0);
	ereport(LOG, (errmsg("compay settlement worker started on database \"%s\"",
						 worker_database)));

	/*
	 * Everything a round allocates (wallet replies, query results) lives
	 * in this context, emptied after each round: the worker's memory stays
	 * flat however many rounds it runs.
	 */
	round_context = AllocSetContextCreate(TopMemoryContext, "compay worker round",
										  ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		wait_ms;
		bool		full = true;
		bool		reloaded = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			reloaded = true;	/* a new configuration: a round at once */
		}
		if (RecoveryInProgress())
			SetState("standby");
		else if (!worker_enabled)
			SetState("disabled");
		else
		{
			full = reloaded || RoundDue();
			MemoryContextSwitchTo(round_context);
			if (full)
				WorkerRound();
			else
				PublishEvents();
			MemoryContextSwitchTo(TopMemoryContext);
			MemoryContextReset(round_context);
		}
		if (full)
			next_round_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														(int64) worker_naptime_s * 1000);
		wait_ms = NextRoundInMs();
		if (wait_ms > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * compay.wake_worker(): once this transaction commits, the worker runs a
 * round at once, settlement included.
 */
Datum
compay_wake_worker(PG_FUNCTION_ARGS pg_attribute_unused())
{
	wake_at_commit = true;
	PG_RETURN_VOID();
}

/* compay.worker_status(): the shared status, or 'not loaded'. */
Datum
compay_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[11];
	bool		nulls[11];
	WorkerShared copy;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "compay_worker_status: return type must be a row type");
	memset(nulls, true, sizeof(nulls));
	if (shared == NULL)
	{
		values[0] = CStringGetTextDatum("not loaded");
		nulls[0] = false;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
	}
	SpinLockAcquire(&shared->mutex);
	copy = *shared;
	SpinLockRelease(&shared->mutex);

	memset(nulls, false, sizeof(nulls));
	values[0] = CStringGetTextDatum(copy.state);
	values[1] = Int32GetDatum(copy.pid);
	nulls[1] = copy.pid == 0;
	values[2] = TimestampTzGetDatum(copy.last_round_start);
	nulls[2] = copy.last_round_start == 0;
	values[3] = TimestampTzGetDatum(copy.last_round_end);
	nulls[3] = copy.last_round_end == 0;
	values[4] = TimestampTzGetDatum(copy.next_settlement_due);
	nulls[4] = copy.next_settlement_due == 0;
	values[5] = Int64GetDatum(copy.rounds);
	values[6] = Int64GetDatum(copy.holds_expired);
	values[7] = Int64GetDatum(copy.jobs_expired);
	values[8] = Int64GetDatum(copy.settlements_processed);
	values[9] = CStringGetTextDatum(copy.last_error);
	nulls[9] = copy.last_error[0] == '\0';
	values[10] = TimestampTzGetDatum(copy.last_error_at);
	nulls[10] = copy.last_error_at == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
