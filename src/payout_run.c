/*-------------------------------------------------------------------------
 *
 * payout_run.c
 *	  How a payout round and a deposit poll (src/payout.c) are run: the
 *	  two transaction drivers of their steps, the lock that keeps two
 *	  runners from working at once, the SQL entry points
 *	  CALL compay.run_payouts() and CALL compay.poll_deposits(), and the
 *	  wallet health each runner records in compay.runner_status.
 *
 * A round is a sequence of steps: one SQL statement in a transaction of
 * its own, then wallet calls made with no transaction holding anything,
 * then the next statement.  Two drivers commit the steps:
 *
 *	 worker     StartTransactionCommand / CommitTransactionCommand, as a
 *				background worker does between its own steps.
 *	 procedure  the non-atomic CALL: SPI connected with SPI_OPT_NONATOMIC,
 *				each statement in a subtransaction, then SPI_commit, which
 *				starts an empty transaction (no snapshot, no xid, no lock)
 *				in which the wallet calls wait.
 *
 * Two runners (the worker and pg_cron, two pg_cron jobs, two sessions)
 * never work at once on the same thing: each takes a session-level
 * advisory lock with a try-lock first, pg_try_advisory_lock(
 * hashtext('compay.run_payouts')) for payouts and hashtext(
 * 'compay.poll_deposits') for deposits, and the one that does not get it
 * returns at once.  The SQL of each step keeps its own guards as well.
 *
 * The library may be loaded only by the first CALL (no preload): nothing
 * here uses shared memory; what a runner did is kept in a table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "payout.h"
#include "payout_run.h"
#include "wallet_rpc.h"

PG_FUNCTION_INFO_V1(compay_run_payouts);
PG_FUNCTION_INFO_V1(compay_poll_deposits);

static PayoutDriver driver = PAYOUT_DRIVER_WORKER;

/* Set when a step's statement failed and its subtransaction was rolled back. */
static bool step_rolled_back = false;

static int	wallet_health_interval_s = 60;

void
PayoutRunInit(void)
{
	DefineCustomIntVariable("compay.wallet_health_interval",
							"Time between two wallet health checks of the worker.",
							"The worker asks the wallet and the daemon for their heights and the unlocked balance at most this often and records them in compay.runner_status; CALL compay.run_payouts() and compay.poll_deposits() check at each call.",
							&wallet_health_interval_s, 60, 1, 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

/* The worker's driver: a transaction of its own around one statement. */
static void
ExecuteInTransaction(const char *sql, int nargs, Oid *types, Datum *values)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 1) < 0)
		elog(ERROR, "compay payout: \"%s\" failed", sql);
}

static void
CommitWorkerStep(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * The procedure's driver: the statement in a subtransaction (so that a
 * failure leaves the CALL's transaction clean enough to record it), with
 * the search_path pinned as the worker pins it.
 */
static void
ExecuteInSubtransaction(const char *sql, int nargs, Oid *types, Datum *values)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 1) < 0)
			elog(ERROR, "compay payout: \"%s\" failed", sql);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		step_rolled_back = true;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

static void
CommitProcedureStep(MemoryContext caller, ResourceOwner owner)
{
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	SPI_commit();
	MemoryContextSwitchTo(caller);
}

/*
 * Runs sql with up to two text arguments as one step (a transaction of its
 * own, whichever the driver) and returns the first row's first nfields
 * columns as text (NULLs as NULL) in the caller's context; false if there
 * was no row.  Errors propagate.
 */
bool
PayoutQuery(const char *sql, int nargs, const char *arg1, const char *arg2,
			char **fields, int nfields)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		found = false;

	Assert(nargs >= 0 && nargs <= 2 && nfields >= 0);
	values[0] = arg1 ? CStringGetTextDatum(arg1) : (Datum) 0;
	values[1] = arg2 ? CStringGetTextDatum(arg2) : (Datum) 0;
	if (driver == PAYOUT_DRIVER_WORKER)
		pgstat_report_activity(STATE_RUNNING, sql);
	if (driver == PAYOUT_DRIVER_WORKER)
		ExecuteInTransaction(sql, nargs, types, values);
	else
		ExecuteInSubtransaction(sql, nargs, types, values);
	if (SPI_processed > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		for (int i = 0; i < nfields; i++)
			fields[i] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1);
		MemoryContextSwitchTo(old);
		found = true;
	}
	if (driver == PAYOUT_DRIVER_WORKER)
		CommitWorkerStep();
	else
		CommitProcedureStep(caller, owner);
	/* A commit leaves TopMemoryContext current: back to the round's. */
	MemoryContextSwitchTo(caller);
	if (driver == PAYOUT_DRIVER_WORKER)
		pgstat_report_activity(STATE_IDLE, NULL);
	return found;
}

static const char *
KindName(PayoutRunKind kind)
{
	return kind == PAYOUT_RUN_PAYOUTS ? "run_payouts" : "poll_deposits";
}

/* The advisory lock of kind: the one pg_advisory_lock(hashtext('compay.NAME')) takes. */
static void
RunLockTag(PayoutRunKind kind, LOCKTAG *tag)
{
	char	   *name = psprintf("compay.%s", KindName(kind));
	int64		key = DatumGetInt32(DirectFunctionCall1Coll(hashtext, C_COLLATION_OID,
															CStringGetTextDatum(name)));

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key, 1);
}

static bool
RunTryLock(PayoutRunKind kind)
{
	char	   *got = NULL;

	PayoutQuery(kind == PAYOUT_RUN_PAYOUTS ?
				"SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('compay.run_payouts'))::text" :
				"SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('compay.poll_deposits'))::text",
				0, NULL, NULL, &got, 1);
	return got != NULL && got[0] == 't';
}

/* Releases the session lock; needs no transaction, so it works after an error. */
static void
RunUnlock(PayoutRunKind kind)
{
	LOCKTAG		tag;

	RunLockTag(kind, &tag);
	(void) LockRelease(&tag, ExclusiveLock, true);
}

/*
 * Runs a payout round or a deposit poll under its lock, in the current
 * driver.  Returns false at once, having done nothing, when another runner
 * holds the lock; else sets *moved to what the round moved.
 */
bool
PayoutRunLocked(PayoutRunKind kind, int64 *moved)
{
	if (!RunTryLock(kind))
		return false;
	PG_TRY();
	{
		if (driver == PAYOUT_DRIVER_PROCEDURE)
			PayoutQuery("SELECT compay.record_runner_start($1)", 1, KindName(kind), NULL,
						NULL, 0);
		*moved = kind == PAYOUT_RUN_PAYOUTS ? PayoutRound() : PollDeposits();
	}
	PG_FINALLY();
	{
		RunUnlock(kind);
	}
	PG_END_TRY();
	return true;
}

/* A field of an OK reply, as the text of a non-negative integer, or NULL. */
static char *
ReplyInteger(WalletRpcResult *r, const char *key)
{
	JsonbValue *v;
	char	   *s;

	if (r->status != WALLET_RPC_OK || r->result == NULL)
		return NULL;
	v = getKeyJsonValueFromContainer(&r->result->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvNumeric)
		return NULL;
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (s[0] == '\0' || strlen(s) > 30 || strspn(s, "0123456789") != strlen(s))
		return NULL;
	return s;
}

/*
 * Asks the wallet and the daemon what the health fields show (three calls,
 * no transaction open) and records them with the runner's outcome.
 */
void
PayoutRunRecordHealth(const char *runner, const char *state, int64 moved, const char *error)
{
	WalletRpcResult r;
	char	   *wallet_height;
	char	   *daemon_height = NULL;
	char	   *unlocked;
	const char *wallet_error;
	TimestampTz wallet_error_at;
	const char *sql =
		"SELECT compay.record_runner_status($1, $2::jsonb)";
	StringInfoData health;

	WalletRpcCall("get_height", "{}", &r);
	wallet_height = ReplyInteger(&r, "height");
	WalletRpcCall("get_balance", "{\"account_index\":0}", &r);
	unlocked = ReplyInteger(&r, "unlocked_balance");
	if (DaemonRpcConfigured())
	{
		DaemonRpcCall("/get_height", "{}", &r);
		daemon_height = ReplyInteger(&r, "height");
	}
	wallet_error = WalletRpcLastError(&wallet_error_at);

	initStringInfo(&health);
	appendStringInfo(&health, "{\"state\":");
	escape_json(&health, state);
	appendStringInfo(&health, ",\"moved\":" INT64_FORMAT, moved);
	appendStringInfo(&health, ",\"wallet_height\":%s,\"daemon_height\":%s,\"unlocked_atomic\":%s",
					 wallet_height ? wallet_height : "null",
					 daemon_height ? daemon_height : "null",
					 unlocked ? unlocked : "null");
	appendStringInfoString(&health, ",\"error\":");
	if (error)
		escape_json(&health, error);
	else
		appendStringInfoString(&health, "null");
	appendStringInfoString(&health, ",\"wallet_error\":");
	if (wallet_error)
	{
		escape_json(&health, wallet_error);
		appendStringInfo(&health, ",\"wallet_error_at\":\"%s\"",
						 timestamptz_to_str(wallet_error_at));
	}
	else
		appendStringInfoString(&health, "null");
	appendStringInfoChar(&health, '}');
	PayoutQuery(sql, 2, runner, health.data, NULL, 0);
}

/* Whether the worker is due a health check (compay.wallet_health_interval). */
bool
PayoutRunHealthDue(void)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (last != 0 && now < TimestampTzPlusMilliseconds(last, (int64) wallet_health_interval_s * 1000))
		return false;
	last = now;
	return true;
}

/* Refuses a call that cannot commit: inside a transaction block, a function, a SECURITY DEFINER caller. */
static void
RequireNonAtomic(FunctionCallInfo fcinfo, const char *name)
{
	if (fcinfo->context != NULL && IsA(fcinfo->context, CallContext) &&
		!castNode(CallContext, fcinfo->context)->atomic)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
			 errmsg("compay.%s() cannot run inside a transaction block or a function", name),
			 errdetail("It commits after each step, so that no wallet call waits inside a transaction that holds locks."),
			 errhint("Run CALL compay.%s() on its own, as pg_cron does, not after BEGIN nor from a function.", name)));
}

/*
 * The body of the two procedures: the round under its lock, driven by
 * SPI_commit, its outcome and the wallet health recorded in
 * compay.runner_status (row NAME).  An error is recorded there too, then
 * raised again.
 */
static void
RunProcedure(FunctionCallInfo fcinfo, PayoutRunKind kind)
{
	const char *name = KindName(kind);
	MemoryContext context = CurrentMemoryContext;
	volatile bool ran = false;

	RequireNonAtomic(fcinfo, name);
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("compay.%s() is for superusers", name),
				 errdetail("It calls the treasury wallet, as the worker does."),
				 errhint("Schedule it with pg_cron as a superuser.")));
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	driver = PAYOUT_DRIVER_PROCEDURE;
	step_rolled_back = false;
	/* Each CALL is a start: it reconciles with the wallet before it builds. */
	PayoutReconcileDue();
	WalletRpcClearLastError();
	PG_TRY();
	{
		int64		moved = 0;

		ran = PayoutRunLocked(kind, &moved);
		if (ran)
			PayoutRunRecordHealth(name, "done", moved, NULL);
		else
			PayoutQuery("SELECT compay.record_runner_skipped($1)", 1, name, NULL, NULL, 0);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		clean = step_rolled_back && !IsSubTransaction();

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		if (!clean)
		{
			driver = PAYOUT_DRIVER_WORKER;
			PG_RE_THROW();
		}
		FlushErrorState();
		PayoutQuery("SELECT compay.record_runner_failed($1, $2)", 2, name, edata->message,
					NULL, 0);
		driver = PAYOUT_DRIVER_WORKER;
		ReThrowError(edata);
	}
	PG_END_TRY();
	driver = PAYOUT_DRIVER_WORKER;
	SPI_finish();
	if (!ran)
		ereport(NOTICE,
				(errmsg("another compay.%s is under way; this call did nothing", name),
				 errdetail("The worker or another session holds the lock of compay.%s.", name)));
}

/* CALL compay.run_payouts(): one payout round (queue, build, relay, confirm). */
Datum
compay_run_payouts(PG_FUNCTION_ARGS)
{
	RunProcedure(fcinfo, PAYOUT_RUN_PAYOUTS);
	PG_RETURN_VOID();
}

/* CALL compay.poll_deposits(): one deposit poll. */
Datum
compay_poll_deposits(PG_FUNCTION_ARGS)
{
	RunProcedure(fcinfo, PAYOUT_RUN_DEPOSITS);
	PG_RETURN_VOID();
}
