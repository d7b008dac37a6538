/*-------------------------------------------------------------------------
 *
 * ledger_holds.c
 *	  Two-phase holds: reserve, then capture (in full, in part, or in
 *	  several streaming parts) or release; expiry.  The escrow settlement,
 *	  payout withdrawals, and a dispute's refund from part of an earmark
 *	  hold (or from $clawbacks).
 *
 * Lock order: the accounts (by LedgerLockAccounts), then the hold row.  A
 * hold's status is read only after both locks are held, so a capture, a
 * release and an expiry of one hold are serialised and exactly one of them
 * decides.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "ledger.h"
#include "node_roles.h"
#include "shard.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_reserve);
PG_FUNCTION_INFO_V1(compay_capture);
PG_FUNCTION_INFO_V1(compay_release);
PG_FUNCTION_INFO_V1(compay_expire_holds);
PG_FUNCTION_INFO_V1(compay_settle_escrow);
PG_FUNCTION_INFO_V1(compay_settle_job);
PG_FUNCTION_INFO_V1(compay_payout_withdraw);
PG_FUNCTION_INFO_V1(compay_payout_return);
PG_FUNCTION_INFO_V1(compay_dispute_refund);

/* Most holds one expire_holds() call expires. */
#define EXPIRE_BATCH_MAX 10000

static SpiStatement payout_withdrawals_stmt = {
	.sql = "SELECT a.node_id, t.amount FROM compay.transfers t "
	"JOIN compay.accounts a ON a.id = t.from_account "
	"WHERE t.kind = 'withdrawal' AND t.reference IN ($1, $1 || ' fee') ORDER BY t.id",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

/* Both sides of a refundable transfer and what it has left to refund. */
static SpiStatement refundable_stmt = {
	.sql = "SELECT f.node_id, p.node_id, t.currency, t.amount - t.barter_amount - "
	"coalesce((SELECT compay.sum(r.amount) FROM compay.transfers r WHERE r.refund_of = t.id), "
	"'0'::compay.credit) FROM compay.transfers t "
	"JOIN compay.accounts f ON f.id = t.from_account "
	"JOIN compay.accounts p ON p.id = t.to_account "
	"WHERE t.id = $1 AND t.kind IN ('transfer', 'capture')",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SpiStatement due_holds_stmt = {
	.sql = "SELECT h.id FROM compay.holds h "
	"WHERE h.status = 'pending' AND h.expires_at <= $1 "
	"ORDER BY h.account_id, h.id LIMIT $2",
	.nargs = 2,
	.argtypes = {TIMESTAMPTZOID, INT4OID}
};

Datum
compay_reserve(PG_FUNCTION_ARGS)
{
	const char *node;
	Credit		amount;
	char	   *reference = TextArgOrNull(fcinfo, 2);
	char	   *key = TextArgOrNull(fcinfo, 4);
	Datum		expires_at = (Datum) 0;
	int64		hold_id;
	LedgerBatch batch;
	LedgerAccount *account;
	LedgerHoldRow hold = {0};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("node_id, amount and currency must not be NULL")));
	node = LedgerCheckNode(TextArgOrNull(fcinfo, 0));
	amount = PG_GETARG_CREDIT(1);
	LedgerCheckAmount(amount, "a hold amount");
	LedgerCheckReference(reference, "reference");
	LedgerBegin(&batch, LedgerCheckCurrency(TextArgOrNull(fcinfo, 5)));
	if (!PG_ARGISNULL(3))
	{
		Interval   *timeout = PG_GETARG_INTERVAL_P(3);
		Interval   *zero = palloc0(sizeof(Interval));

		if (!DatumGetBool(DirectFunctionCall2(interval_gt, IntervalPGetDatum(timeout),
											  IntervalPGetDatum(zero))))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a hold timeout must be positive")));
		expires_at = DirectFunctionCall2(timestamptz_pl_interval,
										 TimestampTzGetDatum(batch.now),
										 IntervalPGetDatum(timeout));
	}
	NodeRequire(node, true);
	ShardRequireLocal(node, "node");

	SPI_connect();
	if (key && IdempotencyClaim(key, "reserve",
								psprintf("%s|%s|%s|%s|%s", node, CreditText(amount),
										 reference ? reference : "",
										 PG_ARGISNULL(3) ? "" :
										 DatumGetCString(DirectFunctionCall1(interval_out, PG_GETARG_DATUM(3))),
										 batch.currency), &hold_id))
	{
		SPI_finish();
		PG_RETURN_INT64(hold_id);
	}
	LedgerLockAccounts(&batch, &node, 1, 1, false);
	account = LedgerFindAccount(&batch, node);
	LedgerCheckAvailable(account, amount, batch.currency);
	hold_id = LedgerNextId("holds_id_seq");
	LedgerPost(&batch, account, ENTRY_RESERVE, amount, 0, hold_id, 0);
	LedgerFlush(&batch);

	hold.id = hold_id;
	hold.account_id = account->id;
	hold.amount = amount;
	hold.reference = reference;
	hold.idempotency_key = key;
	hold.expires = !PG_ARGISNULL(3);
	hold.expires_at = hold.expires ? DatumGetTimestampTz(expires_at) : 0;
	LedgerHeapInsertHold(&hold, batch.now);
	if (key)
		IdempotencyRecord(key, hold_id);
	SPI_finish();
	PG_RETURN_INT64(hold_id);
}

typedef struct LockedHold
{
	int64		id;
	LedgerAccount *account;
	const char *status;
	Credit		remaining;
	bool		expired;		/* pending, but past expires_at */
	ItemPointerData tid;		/* the version locked, then written */
} LockedHold;

/* The holder's node and currency of a hold, read without a lock. */
static void
HoldOwner(int64 hold_id, char **node, char **currency)
{
	if (!LedgerHeapHoldOwner(hold_id, node, currency))
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_UNKNOWN_HOLD),
				 errmsg("hold " INT64_FORMAT " does not exist", hold_id)));
}

/* Locks the hold row (its account must be locked already) and reads it. */
static void
LockHold(LedgerBatch *batch, LockedHold *h)
{
	LedgerHoldRow row = {.id = h->id};

	LedgerHeapLockHold(&row);
	Assert(row.account_id == h->account->id);
	h->status = row.status;
	h->remaining = row.remaining;
	h->tid = row.tid;
	h->expired = strcmp(h->status, "pending") == 0 && row.expires &&
		row.expires_at <= batch->now;
}

static void
RequirePending(LockedHold *h, const char *action)
{
	if (strcmp(h->status, "pending") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_HOLD_NOT_PENDING),
				 errmsg("cannot %s hold " INT64_FORMAT ": it is %s", action, h->id,
						h->status)));
	if (h->expired)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_HOLD_NOT_PENDING),
				 errmsg("cannot %s hold " INT64_FORMAT ": it is expired", action, h->id),
				 errdetail("The hold passed its expiry time; compay.expire_holds() releases it.")));
}

static void
UpdateHold(LedgerBatch *batch, LockedHold *h, const char *status)
{
	LedgerHoldRow row = {.id = h->id, .remaining = h->remaining, .status = status,
	.tid = h->tid};

	LedgerHeapUpdateHold(&row, batch->now);
	h->status = status;
	h->tid = row.tid;
}

/* Releases what remains of a locked hold and gives it its final status. */
static void
ReleaseRest(LedgerBatch *batch, LockedHold *h, const char *status)
{
	if (h->remaining > 0)
		LedgerPost(batch, h->account, ENTRY_RELEASE, -h->remaining, 0, h->id, 0);
	h->remaining = 0;
	UpdateHold(batch, h, status);
}

Datum
compay_capture(PG_FUNCTION_ARGS)
{
	LockedHold	h = {0};
	const char *nodes[2];
	char	   *currency;
	char	   *key = TextArgOrNull(fcinfo, 4);
	bool		final;
	Credit		amount;
	int64		result;
	LedgerBatch batch;
	LedgerAccount *to;
	LedgerTransfer *t;
	const char *payee;
	int			remote_shard;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("hold_id, to_node and final must not be NULL")));
	h.id = PG_GETARG_INT64(0);
	nodes[1] = LedgerCheckNode(TextArgOrNull(fcinfo, 1));
	final = PG_GETARG_BOOL(3);
	if (!PG_ARGISNULL(2))
		LedgerCheckAmount(PG_GETARG_CREDIT(2), "a capture amount");

	SPI_connect();
	/* The node check first: a replay answers only a caller who may act. */
	HoldOwner(h.id, (char **) &nodes[0], &currency);
	NodeRequire(nodes[0], true);
	if (key && IdempotencyClaim(key, "capture",
								psprintf(INT64_FORMAT "|%s|%s|%d", h.id, nodes[1],
										 PG_ARGISNULL(2) ? "" : CreditText(PG_GETARG_CREDIT(2)),
										 (int) final), &result))
	{
		SPI_finish();
		PG_RETURN_INT64(result);
	}
	if (strcmp(nodes[0], nodes[1]) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot capture hold " INT64_FORMAT " to its own holder", h.id)));
	LedgerBegin(&batch, currency);
	payee = nodes[1];
	nodes[1] = ShardPayee(payee, &remote_shard);
	LedgerLockAccounts(&batch, nodes, 2, 1, LedgerAutoCreate());
	h.account = LedgerFindAccount(&batch, nodes[0]);
	to = LedgerFindAccount(&batch, nodes[1]);
	LockHold(&batch, &h);
	RequirePending(&h, "capture");

	amount = PG_ARGISNULL(2) ? h.remaining : PG_GETARG_CREDIT(2);
	if (amount > h.remaining)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("capture of %s exceeds the %s that hold " INT64_FORMAT " has left",
						CreditText(amount), CreditText(h.remaining), h.id)));

	t = LedgerAddTransfer(&batch, TRANSFER_CAPTURE, h.account, to, amount);
	t->hold_id = h.id;
	t->idempotency_key = key;
	result = t->id;
	LedgerPost(&batch, h.account, ENTRY_RELEASE, -amount, 0, h.id, 0);
	LedgerMove(&batch, t, h.account, to, amount, ENTRY_DEBIT, ENTRY_CREDIT);
	h.account->score_change = 1;
	h.remaining -= amount;
	if (final || h.remaining == 0)
		ReleaseRest(&batch, &h, "posted");
	else
		UpdateHold(&batch, &h, "pending");
	if (remote_shard >= 0)
		ShardQueueCredit(remote_shard, result, payee, amount, currency, NULL);
	LedgerFinish(&batch, key, result);
	PG_RETURN_INT64(result);
}

Datum
compay_release(PG_FUNCTION_ARGS)
{
	LockedHold	h = {0};
	const char *node;
	char	   *currency;
	char	   *key = TextArgOrNull(fcinfo, 1);
	int64		result;
	LedgerBatch batch;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("hold_id must not be NULL")));
	h.id = PG_GETARG_INT64(0);

	SPI_connect();
	/* The node check first: a replay answers only a caller who may act. */
	HoldOwner(h.id, (char **) &node, &currency);
	NodeRequire(node, true);
	if (key && IdempotencyClaim(key, "release", psprintf(INT64_FORMAT, h.id), &result))
	{
		SPI_finish();
		PG_RETURN_VOID();
	}
	LedgerBegin(&batch, currency);
	LedgerLockAccounts(&batch, &node, 1, 0, false);
	h.account = LedgerFindAccount(&batch, node);
	LockHold(&batch, &h);
	/* Releasing a hold past its expiry returns the money all the same. */
	h.expired = false;
	RequirePending(&h, "release");
	ReleaseRest(&batch, &h, "voided");
	LedgerFinish(&batch, key, h.id);
	PG_RETURN_VOID();
}

/* Expires one hold if it is still pending and due; returns whether it did. */
static bool
ExpireOne(int64 hold_id)
{
	LockedHold	h = {0};
	const char *node;
	char	   *currency;
	LedgerBatch batch;

	h.id = hold_id;
	HoldOwner(h.id, (char **) &node, &currency);
	LedgerBegin(&batch, currency);
	LedgerLockAccounts(&batch, &node, 1, 0, false);
	h.account = LedgerFindAccount(&batch, node);
	LockHold(&batch, &h);
	if (!h.expired)
		return false;			/* captured or released meanwhile */
	ReleaseRest(&batch, &h, "expired");
	LedgerFlush(&batch);
	return true;
}

/*
 * Expires pending holds past expires_at, at most EXPIRE_BATCH_MAX per call,
 * in ascending account order so that the locks it gathers follow the global
 * order.
 */
Datum
compay_expire_holds(PG_FUNCTION_ARGS)
{
	Datum		args[2];
	int64	   *ids;
	uint64		n;
	int32		expired = 0;
	MemoryContext each;

	NodeRequire(NULL, true);
	SPI_connect();
	args[0] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	args[1] = Int32GetDatum(EXPIRE_BATCH_MAX);
	n = SpiRun(&due_holds_stmt, args, NULL, false, 0);
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
		ids[i] = SpiGetInt64(i, 1);
	/* Each hold's work in a context of its own: up to EXPIRE_BATCH_MAX of them. */
	each = AllocSetContextCreate(CurrentMemoryContext, "compay expire_holds",
								 ALLOCSET_DEFAULT_SIZES);
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext caller = MemoryContextSwitchTo(each);

		expired += ExpireOne(ids[i]) ? 1 : 0;
		MemoryContextSwitchTo(caller);
		MemoryContextReset(each);
	}
	MemoryContextDelete(each);
	SPI_finish();
	PG_RETURN_INT32(expired);
}

/*
 * Pays a verified job in one ledger call: captures amount of the escrow
 * hold to the provider, releases the rest to its holder, and pays verifier
 * i rewards[i] from $rewards.  Every account is locked by the one
 * LedgerLockAccounts, so this cannot deadlock with another call; the caller
 * (compay.verify_job) has locked the job row first, so a job is settled
 * once.  An amount of 0 voids the hold: a failed job whose verifiers are
 * rewarded.
 */
static int64
SettleEscrow(int64 hold_id, const char *provider_node, Credit amount, Datum *verifiers,
			 Credit *rewards, int nverifiers, const char *reference)
{
	LockedHold	h = {0};
	const char **nodes;
	char	   *currency;
	int64		result = 0;
	LedgerBatch batch;
	LedgerAccount *provider;
	LedgerAccount *rewards_account;
	const char **payees;
	int		   *remote;

	if (amount < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("escrow amounts cannot be negative")));
	if (nverifiers > LEDGER_ACCOUNTS_MAX - 3)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many verifiers")));
	h.id = hold_id;
	nodes = palloc(sizeof(char *) * (nverifiers + 3));
	payees = palloc(sizeof(char *) * (nverifiers + 3));
	remote = palloc0(sizeof(int) * (nverifiers + 3));
	nodes[1] = LedgerCheckNode(provider_node);
	nodes[2] = "$rewards";
	for (int i = 0; i < nverifiers; i++)
	{
		if (rewards[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("escrow amounts cannot be negative")));
		nodes[3 + i] = LedgerCheckNode(TextDatumGetCString(verifiers[i]));
	}

	SPI_connect();
	HoldOwner(h.id, (char **) &nodes[0], &currency);
	/* The parties by name: payees on one other shard share its clearing account. */
	for (int i = 1; i < nverifiers + 3; i++)
	{
		payees[i] = nodes[i];
		if (i == 2)
			continue;
		/* payees[1]: nodes[1] may already be the provider's '$clearing:N'. */
		if (strcmp(nodes[i], nodes[0]) == 0 || (i > 2 && strcmp(nodes[i], payees[1]) == 0))
		{
			if (i == 1)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("cannot capture hold " INT64_FORMAT " to its own holder", h.id)));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("verifier \"%s\" is a party to the job", nodes[i])));
		}
		nodes[i] = ShardPayee(nodes[i], &remote[i]);
	}
	LedgerBegin(&batch, currency);
	LedgerLockAccounts(&batch, nodes, nverifiers + 3, 1, LedgerAutoCreate());
	h.account = LedgerFindAccount(&batch, nodes[0]);
	provider = LedgerFindAccount(&batch, nodes[1]);
	rewards_account = LedgerFindAccount(&batch, nodes[2]);
	if (provider == h.account)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot capture hold " INT64_FORMAT " to its own holder", h.id)));
	LockHold(&batch, &h);
	RequirePending(&h, "settle");
	if (amount > h.remaining)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payment of %s exceeds the %s that hold " INT64_FORMAT " has left",
						CreditText(amount), CreditText(h.remaining), h.id)));
	if (amount > 0)
	{
		LedgerTransfer *t = LedgerAddTransfer(&batch, TRANSFER_CAPTURE, h.account,
											  provider, amount);

		t->hold_id = h.id;
		t->reference = reference;
		result = t->id;
		LedgerPost(&batch, h.account, ENTRY_RELEASE, -amount, 0, h.id, 0);
		LedgerMove(&batch, t, h.account, provider, amount, ENTRY_DEBIT, ENTRY_CREDIT);
		h.account->score_change = 1;
		h.remaining -= amount;
		if (remote[1] >= 0)
			ShardQueueCredit(remote[1], result, payees[1], amount, currency, reference);
	}
	ReleaseRest(&batch, &h, amount > 0 ? "posted" : "voided");
	for (int i = 0; i < nverifiers; i++)
	{
		LedgerAccount *v = LedgerFindAccount(&batch, nodes[3 + i]);
		LedgerTransfer *t;

		if (v == h.account || (v == provider && remote[1 + 2 + i] < 0) || v == rewards_account)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("verifier \"%s\" is a party to the job", v->node_id)));
		if (rewards[i] == 0)
			continue;
		t = LedgerAddTransfer(&batch, TRANSFER_TRANSFER, rewards_account, v, rewards[i]);
		t->reference = reference;
		LedgerMove(&batch, t, rewards_account, v, rewards[i], ENTRY_DEBIT, ENTRY_CREDIT);
		if (remote[3 + i] >= 0)
			ShardQueueCredit(remote[3 + i], t->id, payees[3 + i], rewards[i], currency,
							 reference);
	}
	LedgerFinish(&batch, NULL, result);
	return result;
}

/* The text elements of array argument n, none NULL. */
static int
VerifierArg(FunctionCallInfo fcinfo, int n, Datum **verifiers)
{
	bool	   *vnulls;
	int			nverifiers;

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(n), TEXTOID, -1, false, TYPALIGN_INT,
					  verifiers, &vnulls, &nverifiers);
	for (int i = 0; i < nverifiers; i++)
		if (vnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a verifier must not be NULL")));
	return nverifiers;
}

/*
 * compay.settle_escrow(hold_id, provider, amount, verifiers, verifier_reward,
 * reference): SettleEscrow with one reward for every verifier (0.1; kept
 * for the 0.1 install script).  Not granted to any role.
 */
Datum
compay_settle_escrow(PG_FUNCTION_ARGS)
{
	Datum	   *verifiers;
	Credit	   *rewards;
	Credit		reward;
	int			nverifiers;
	int64		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) ||
		PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("hold_id, provider, amount, verifiers and verifier_reward must not be NULL")));
	reward = PG_GETARG_CREDIT(4);
	nverifiers = VerifierArg(fcinfo, 3, &verifiers);
	rewards = palloc(sizeof(Credit) * Max(nverifiers, 1));
	for (int i = 0; i < nverifiers; i++)
		rewards[i] = reward;
	result = SettleEscrow(PG_GETARG_INT64(0), TextArgOrNull(fcinfo, 1), PG_GETARG_CREDIT(2),
						  verifiers, rewards, nverifiers, TextArgOrNull(fcinfo, 5));
	if (result == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(result);
}

/*
 * compay.settle_job(hold_id, provider, amount, verifiers, rewards,
 * reference): SettleEscrow with a reward per verifier (rewards[i] to
 * verifiers[i]; 0 pays nothing).  amount 0 returns the whole escrow to the
 * requester.  Not granted to any role: compay.verify_job calls it.
 */
Datum
compay_settle_job(PG_FUNCTION_ARGS)
{
	Datum	   *verifiers;
	Datum	   *reward_datums;
	bool	   *rnulls;
	Credit	   *rewards;
	int			nverifiers;
	int			nrewards;
	ArrayType  *a;
	int64		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) ||
		PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("hold_id, provider, amount, verifiers and rewards must not be NULL")));
	nverifiers = VerifierArg(fcinfo, 3, &verifiers);
	a = PG_GETARG_ARRAYTYPE_P(4);
	deconstruct_array(a, ARR_ELEMTYPE(a), sizeof(Credit), false, TYPALIGN_DOUBLE,
					  &reward_datums, &rnulls, &nrewards);
	if (nrewards != nverifiers)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%d verifiers but %d rewards", nverifiers, nrewards)));
	rewards = palloc(sizeof(Credit) * Max(nverifiers, 1));
	for (int i = 0; i < nrewards; i++)
	{
		if (rnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a reward must not be NULL")));
		rewards[i] = DatumGetCredit(reward_datums[i]);
	}
	result = SettleEscrow(PG_GETARG_INT64(0), TextArgOrNull(fcinfo, 1), PG_GETARG_CREDIT(2),
						  verifiers, rewards, nverifiers, TextArgOrNull(fcinfo, 5));
	if (result == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(result);
}

/*
 * The amounts of a partial payout withdrawal: one positive amount per
 * hold, none NULL.
 */
static Credit *
PayoutAmounts(ArrayType *array, int nholds)
{
	Datum	   *values;
	bool	   *nulls;
	int			n;
	Credit	   *amounts;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(ARR_ELEMTYPE(array), &typlen, &typbyval, &typalign);
	deconstruct_array(array, ARR_ELEMTYPE(array), typlen, typbyval, typalign,
					  &values, &nulls, &n);
	if (ARR_NDIM(array) > 1 || n != nholds)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a payout withdraws one amount per hold")));
	amounts = palloc(sizeof(Credit) * n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a withdrawal amount must not be NULL")));
		amounts[i] = DatumGetCredit(values[i]);
		if (amounts[i] <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a withdrawal amount must be positive")));
	}
	return amounts;
}

/*
 * compay.payout_withdraw(hold_ids, amounts, fee, fee_from, reference): when
 * a payout transaction is built, amounts[i] of each earmark hold (of the
 * payees, all in XMR) is captured to $external as a withdrawal; a hold
 * with some left stays pending for the next part (a settlement paid in
 * parts under the daily cap), one captured to nothing is posted.  A NULL
 * amounts (and the 0.1 form without it) captures each hold in full.  The
 * network fee moves
 * from fee_from ('$fees') to $external (a fee of 0 moves nothing: the
 * payees paid it out of their amounts).  One ledger call, every
 * account locked at once.  Not granted to any role: the payout code calls
 * it.  Returns the number of holds withdrawn.
 */
Datum
compay_payout_withdraw(PG_FUNCTION_ARGS)
{
	Datum	   *ids;
	bool	   *idnulls;
	int			n;
	Credit	   *amounts = NULL;
	LockedHold *holds;
	const char **nodes;
	char	   *currency = NULL;
	Credit		fee;
	const char *fee_from;
	/* The 0.1 form has no amounts argument: every argument after it moves. */
	int			a = PG_NARGS() == 5 ? 1 : 0;
	char	   *reference = TextArgOrNull(fcinfo, 3 + a);
	LedgerBatch batch;
	LedgerAccount *external;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1 + a) || PG_ARGISNULL(2 + a))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("hold_ids, fee and fee_from must not be NULL")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), INT8OID, 8, true, TYPALIGN_DOUBLE,
					  &ids, &idnulls, &n);
	fee = PG_GETARG_CREDIT(1 + a);
	fee_from = TextArgOrNull(fcinfo, 2 + a);
	if (n < 1 || n > LEDGER_ACCOUNTS_MAX - 2 || fee < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a payout withdraws 1 to %d holds and a fee >= 0", LEDGER_ACCOUNTS_MAX - 2)));
	if (a == 1 && !PG_ARGISNULL(1))
		amounts = PayoutAmounts(PG_GETARG_ARRAYTYPE_P(1), n);
	holds = palloc0(sizeof(LockedHold) * n);
	nodes = palloc(sizeof(char *) * (n + 2));

	SPI_connect();
	for (int i = 0; i < n; i++)
	{
		char	   *c;

		holds[i].id = DatumGetInt64(ids[i]);
		HoldOwner(holds[i].id, (char **) &nodes[i], &c);
		if (currency != NULL && strcmp(currency, c) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_COMPAY_CURRENCY_MISMATCH),
					 errmsg("the holds of one payout must share a currency")));
		currency = c;
	}
	nodes[n] = "$external";
	nodes[n + 1] = fee_from;
	LedgerBegin(&batch, currency);
	LedgerLockAccounts(&batch, nodes, n + 2, 0, false);
	external = LedgerFindAccount(&batch, "$external");
	for (int i = 0; i < n; i++)
	{
		LedgerTransfer *t;
		Credit		amount;

		holds[i].account = LedgerFindAccount(&batch, nodes[i]);
		LockHold(&batch, &holds[i]);
		holds[i].expired = false;
		RequirePending(&holds[i], "withdraw");
		amount = amounts ? amounts[i] : holds[i].remaining;
		if (amount > holds[i].remaining)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("withdrawal of %s exceeds the %s that hold " INT64_FORMAT " has left",
							CreditText(amount), CreditText(holds[i].remaining), holds[i].id)));
		t = LedgerAddTransfer(&batch, TRANSFER_WITHDRAWAL, holds[i].account, external, amount);
		t->hold_id = holds[i].id;
		t->reference = reference;
		LedgerPost(&batch, holds[i].account, ENTRY_RELEASE, -amount, 0, holds[i].id, 0);
		LedgerMove(&batch, t, holds[i].account, external, amount, ENTRY_DEBIT, ENTRY_CREDIT);
		holds[i].remaining -= amount;
		UpdateHold(&batch, &holds[i], holds[i].remaining == 0 ? "posted" : "pending");
	}
	if (fee > 0)
	{
		LedgerAccount *payer = LedgerFindAccount(&batch, fee_from);
		LedgerTransfer *t;

		if (!(payer->flags & ACCOUNT_FLAG_SYSTEM))
			LedgerCheckAvailable(payer, fee, batch.currency);
		t = LedgerAddTransfer(&batch, TRANSFER_WITHDRAWAL, payer, external, fee);
		t->reference = psprintf("%s fee", reference ? reference : "payout");
		LedgerMove(&batch, t, payer, external, fee, ENTRY_DEBIT, ENTRY_CREDIT);
	}
	LedgerFinish(&batch, NULL, 0);
	PG_RETURN_INT32(n);
}

/*
 * compay.payout_return(payout_id): the reverse of compay.payout_withdraw,
 * for a payout that is certain never to reach the chain (its inputs were
 * spent by another transaction): every withdrawal of the payout (each
 * payee's amount and the fee, by reference) comes back from $external
 * (kind deposit).  One ledger call; the caller earmarks the settlements
 * again.  Not granted to any role.  Returns the number of transfers
 * reversed.
 */
Datum
compay_payout_return(PG_FUNCTION_ARGS)
{
	char	   *reference;
	Datum		arg;
	uint64		n;
	Credit	   *amounts;
	const char **nodes;
	LedgerBatch batch;
	LedgerAccount *external;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payout_id must not be NULL")));
	reference = psprintf("payout:" INT64_FORMAT, PG_GETARG_INT64(0));
	arg = CStringGetTextDatum(reference);

	SPI_connect();
	n = SpiRun(&payout_withdrawals_stmt, &arg, NULL, true, 0);
	if (n < 1 || n > LEDGER_ACCOUNTS_MAX - 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s has no withdrawal to return", reference)));
	nodes = palloc(sizeof(char *) * (n + 1));
	amounts = palloc(sizeof(Credit) * n);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		nodes[i] = SpiGetText(i, 1);
		amounts[i] = DatumGetCredit(SpiGetDatum(i, 2, &isnull));
	}
	nodes[n] = "$external";
	LedgerBegin(&batch, "XMR");
	LedgerLockAccounts(&batch, nodes, n + 1, 0, false);
	external = LedgerFindAccount(&batch, "$external");
	for (uint64 i = 0; i < n; i++)
	{
		LedgerAccount *to = LedgerFindAccount(&batch, nodes[i]);
		LedgerTransfer *t = LedgerAddTransfer(&batch, TRANSFER_DEPOSIT, external, to,
											  amounts[i]);

		t->reference = psprintf("%s returned", reference);
		LedgerMove(&batch, t, external, to, amounts[i], ENTRY_DEBIT, ENTRY_CREDIT);
	}
	LedgerFinish(&batch, NULL, 0);
	PG_RETURN_INT32((int32) n);
}

/*
 * The payer and payee of a transfer or capture, its currency and what is
 * left to refund of it; PY007 when there is no such transfer.
 */
static Credit
ReadRefundable(int64 transfer_id, char **payer, char **payee, char **currency)
{
	Datum		arg = Int64GetDatum(transfer_id);
	bool		isnull;

	if (SpiRun(&refundable_stmt, &arg, NULL, false, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_UNKNOWN_TRANSFER),
				 errmsg("transfer " INT64_FORMAT " is not a transfer or capture", transfer_id)));
	*payer = SpiGetText(0, 1);
	*payee = SpiGetText(0, 2);
	*currency = SpiGetText(0, 3);
	return DatumGetCredit(SpiGetDatum(0, 4, &isnull));
}

/*
 * Releases amount of a pending hold of account (locked) without capturing
 * it: the hold keeps the rest, or is voided when nothing is left.
 */
static void
ReleasePart(LedgerBatch *batch, LedgerAccount *account, int64 hold_id, Credit amount,
			const char *payee, const char *currency)
{
	LockedHold	h = {0};
	char	   *holder;
	char	   *hold_currency;

	h.id = hold_id;
	HoldOwner(h.id, &holder, &hold_currency);
	if (strcmp(holder, payee) != 0 || strcmp(hold_currency, currency) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hold " INT64_FORMAT " is not held by node \"%s\" in %s", hold_id,
						CompayEchoInput(payee), currency)));
	h.account = account;
	LockHold(batch, &h);
	RequirePending(&h, "refund from");
	if (amount > h.remaining)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refund of %s exceeds the %s that hold " INT64_FORMAT " has left",
						CreditText(amount), CreditText(h.remaining), h.id)));
	LedgerPost(batch, account, ENTRY_RELEASE, -amount, 0, h.id, 0);
	h.remaining -= amount;
	UpdateHold(batch, &h, h.remaining == 0 ? "voided" : "pending");
}

/*
 * compay.dispute_refund(transfer_id, amount, hold_id, reason): refunds
 * amount of a transfer or capture to its payer for compay.resolve_dispute(),
 * as a refund of it (refund_of), so that compay.refund() counts it.  With
 * hold_id the money is the payee's unpaid rest, released from that pending
 * hold of the payee (a settlement's earmark); without, $clawbacks fronts it
 * (the money already left on chain) and the caller records what the payee
 * owes in compay.clawbacks.  One ledger call.  Not granted to any role.
 * Returns the refund's transfer id.
 */
Datum
compay_dispute_refund(PG_FUNCTION_ARGS)
{
	int64		original_id;
	Credit		amount;
	char	   *reason = TextArgOrNull(fcinfo, 3);
	char	   *payer;
	char	   *payee;
	char	   *currency;
	Credit		refundable;
	const char *nodes[2];
	LedgerBatch batch;
	LedgerAccount *from;
	LedgerAccount *to;
	LedgerTransfer *t;
	int64		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("transfer_id and amount must not be NULL")));
	original_id = PG_GETARG_INT64(0);
	amount = PG_GETARG_CREDIT(1);
	LedgerCheckAmount(amount, "a refund amount");
	LedgerCheckReference(reason, "reason");
	NodeRequire(NULL, true);

	SPI_connect();
	ReadRefundable(original_id, &payer, &payee, &currency);
	ShardRefuseRefund(original_id, payer, payee);
	LedgerBegin(&batch, currency);
	nodes[0] = payer;
	nodes[1] = PG_ARGISNULL(2) ? "$clawbacks" : payee;
	LedgerLockAccounts(&batch, nodes, 2, 0, false);
	/* Read again under the locks: a concurrent refund is seen. */
	refundable = ReadRefundable(original_id, &payer, &payee, &currency);
	if (amount > refundable)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_REFUND_EXCEEDS),
				 errmsg("refund of %s exceeds what transfer " INT64_FORMAT " has left",
						CreditText(amount), original_id),
				 errdetail("At most %s can still be refunded.",
						   CreditText(Max(refundable, 0)))));
	to = LedgerFindAccount(&batch, payer);
	from = LedgerFindAccount(&batch, nodes[1]);
	if (!PG_ARGISNULL(2))
	{
		ReleasePart(&batch, from, PG_GETARG_INT64(2), amount, payee, currency);
		from->score_change = -1;
	}
	t = LedgerAddTransfer(&batch, TRANSFER_REFUND, from, to, amount);
	t->refund_of = original_id;
	t->reference = reason;
	result = t->id;
	LedgerMove(&batch, t, from, to, amount, ENTRY_REFUND, ENTRY_REFUND);
	LedgerFinish(&batch, NULL, 0);
	PG_RETURN_INT64(result);
}
