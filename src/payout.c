/*-------------------------------------------------------------------------
 *
 * payout.c
 *	  The payout state machine, run by the worker or by CALL
 *	  compay.run_payouts() (src/payout_run.c): queue payouts from
 *	  earmarked XMR settlements, build each transaction (not relayed),
 *	  relay it, follow its confirmations.  The states live in
 *	  compay.payout_transactions; the SQL functions that record each step
 *	  are in src/payout.sql.  Also the deposit poll (PollDeposits), run
 *	  apart, by the worker or by CALL compay.poll_deposits(), under a lock
 *	  of its own.
 *
 * Every wallet call is made outside any transaction, and its outcome is
 * recorded in a transaction of its own afterwards:
 *
 *	 queued   --transfer(do_not_relay)-->  built: tx hash, key, metadata and
 *			  key images committed, the ledger debited; nothing sent yet.
 *			  It is noted in the wallet (set_tx_notes, store) before that
 *			  commit, and before the first build after a start or a failed
 *			  round the wallet's noted transactions that no payout has are
 *			  adopted (src/payout_reconcile.c): lost records never make a
 *			  second payment.
 *			  A crash before the commit leaves a transaction nobody relayed
 *			  (it reserves nothing in the wallet): building again is safe.
 *			  The wallet refusing (an error member) means nothing was sent:
 *			  failed, and the settlements are queued again later.
 *	 built    --relay_tx(metadata)-->  relayed.  Relaying the same metadata
 *			  again sends the same transaction (same key images), so after
 *			  any crash or error the worker relays again rather than build
 *			  anew; an error is never taken as "not sent": the wallet and
 *			  the daemon (compay.daemon_rpc_url) are asked by tx hash first.
 *	 relayed  --get_transfer_by_txid-->  confirmed at
 *			  compay.payout_confirmations.  Dropped from the daemon's pool:
 *			  relayed again (the same transaction).
 *	 built or relayed --> failed (void) only when the daemon has not got
 *			  the transaction and one of its key images is spent on chain:
 *			  it can never be mined; the amounts go back to the ledger.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "credit.h"
#include "payout.h"
#include "payout_run.h"
#include "wallet_rpc.h"

static int	deposit_rescan_blocks = 10;
static char *monero_network = NULL;
static char *payout_min = NULL;
static char *payout_max_per_day = NULL;
static int	payout_interval_s = 24 * 3600;
static bool auto_payout = true;
static int	payout_batch_max = 15;
static int	payout_confirmations = 10;
static int	payout_fee_payer = 0;
static int	deposit_confirmations = 10;
static int	subaddress_lookahead = 200;
static bool payout_auto_relay = true;
static int	test_payout_pause = 0;

static const struct config_enum_entry test_pause_options[] = {
	{"off", 0, false},
	{"built", 1, false},
	{"relayed", 2, false},
	{NULL, 0, false}
};

/*
 * Whether the wallet was reconciled (src/payout_reconcile.c) since this
 * process started and since its last failed round; nothing is built
 * before.  round_done: the last round ran to its end.
 */
static bool wallet_reconciled = false;
static bool round_done = true;

static const struct config_enum_entry fee_payer_options[] = {
	{"network", 0, false},
	{"payee", 1, false},
	{NULL, 0, false}
};

/* Most payouts one round moves through each step. */
#define PAYOUT_ROUND_MAX 20

static bool
CheckNetwork(char **newval, void **extra pg_attribute_unused(),
			 GucSource source pg_attribute_unused())
{
	if (strcmp(*newval, "mainnet") == 0 || strcmp(*newval, "testnet") == 0 ||
		strcmp(*newval, "stagenet") == 0)
		return true;
	GUC_check_errdetail("The network is mainnet, testnet or stagenet (a regtest wallet uses mainnet addresses).");
	return false;
}

/*
 * The Monero network, the payout policy a node gets unless
 * compay.set_payout_policy() says otherwise, and the worker's payout and
 * deposit settings.  The SQL of payouts (payout.sql) and deposits
 * (deposit.sql) reads them with compay.setting().
 */
void
PayoutInit(void)
{
	DefineCustomStringVariable("compay.monero_network",
							   "Monero network whose addresses payouts accept.",
							   NULL, &monero_network, "mainnet", PGC_SUSET, 0,
							   CheckNetwork, NULL, NULL);
	DefineCustomBoolVariable("compay.auto_payout",
							 "Default: a node's settled XMR is paid out automatically.",
							 NULL, &auto_payout, true, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("compay.payout_min",
							   "Default smallest payout, in XMR.",
							   NULL, &payout_min, "0.01", PGC_SUSET, 0,
							   CreditCheckAmountSetting, NULL, NULL);
	DefineCustomIntVariable("compay.payout_interval",
							"Default time between two payouts of a node.",
							NULL, &payout_interval_s, 24 * 3600, 60, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.payout_batch_max",
							"Most payees one Monero transaction pays.",
							NULL, &payout_batch_max, 15, 1, 15,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.payout_confirmations",
							"Confirmations after which a payout is confirmed.",
							NULL, &payout_confirmations, 10, 1, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.deposit_confirmations",
							"Confirmations after which an XMR deposit is credited.",
							NULL, &deposit_confirmations, 10, 0, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.deposit_rescan_blocks",
							"Blocks below the scanned height the worker reads again for deposits.",
							"A reorganisation can move a deposit to another block: the worker reads the incoming transfers of the last this many scanned blocks again each round (nothing already credited is credited again).",
							&deposit_rescan_blocks, 10, 0, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.subaddress_lookahead",
							"Subaddress lookahead (minor) a restore of the treasury wallet from its seed uses.",
							"compay.diagnose() warns when the highest deposit subaddress index compay used comes within a tenth of it: a wallet restored with this lookahead would not see deposits beyond it (docs/operations.md).",
							&subaddress_lookahead, 200, 1, 100000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("compay.payout_auto_relay",
							 "Whether the worker relays payout transactions once built.",
							 "Off: payouts stop at built (recorded and debited, nothing sent) until it is on again, for a review.",
							 &payout_auto_relay, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("compay.payout_fee_payer",
							 "Who pays the network fee of a payout: the network ($fees) or the payee.",
							 NULL, &payout_fee_payer, 0, fee_payer_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("compay.payout_max_per_day",
							   "Default most XMR paid to one node in a day; the rest waits.",
							   NULL, &payout_max_per_day, "0.5", PGC_SUSET, 0,
							   CreditCheckAmountSetting, NULL, NULL);
	DefineCustomEnumVariable("compay.test_payout_pause",
							 "For failover tests only: the payout round stops after a step.",
							 "built: after a payout's built record commits; relayed: after its relay_tx and store, before relayed is recorded.  The round logs \"compay test: payout N paused after STEP\" and sleeps up to 10 minutes, so that a test can kill the server there.",
							 &test_payout_pause, 0, test_pause_options,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
}

/* The fault-injection point of compay.test_payout_pause. */
static void
TestPause(int point, const char *id)
{
	if (test_payout_pause != point)
		return;
	ereport(LOG,
			(errmsg("compay test: payout %s paused after %s", id,
					test_pause_options[point].name)));
	/* Exits with the postmaster, as a killed server's processes must. */
	for (int i = 0; i < 600; i++)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The next round reconciles with the wallet before it builds. */
void
PayoutReconcileDue(void)
{
	wallet_reconciled = false;
}

static char *
ResultText(WalletRpcResult *r)
{
	return JsonbToCString(NULL, &r->result->root, VARSIZE(r->result));
}

/* A field of an OK result, as text, or NULL. */
static char *
ResultField(WalletRpcResult *r, const char *a, const char *b)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&r->result->root, a, strlen(a), NULL);

	if (v != NULL && b != NULL && v->type == jbvBinary)
		v = getKeyJsonValueFromContainer(v->val.binary.data, b, strlen(b), NULL);
	if (v == NULL)
		return NULL;
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	return NULL;
}

/*
 * Whether the wallet answered at all (a result or an error member).  A
 * round stops a step's loop at the first call that got no answer, so a
 * wallet that hangs costs one timeout a step, not one a payout.
 */
static bool
Answered(WalletRpcResult *r)
{
	return r->status == WALLET_RPC_OK || r->status == WALLET_RPC_ERROR;
}

static char *
Describe(WalletRpcResult *r)
{
	return psprintf("%s: %s", WalletRpcStatusName(r->status), r->error ? r->error : "");
}

/* Most builds of one payout to settle the fee its payees pay. */
#define PAYOUT_FEE_TRIES 3

/*
 * Builds payout id's transaction (transfer, do_not_relay) into r.  When the
 * payees pay the fee, each destination is its amount less its share of the
 * fee, which is known only once built: it builds with the last fee seen
 * until the fee stays the same (a transaction not relayed reserves
 * nothing, so building again is free).  Returns false if the fee did not
 * settle.
 */
static bool
BuildTransfer(const char *id, bool payees_pay_fee, WalletRpcResult *r)
{
	char	   *fee = "0";

	for (int i = 0; i < PAYOUT_FEE_TRIES; i++)
	{
		char	   *params = NULL;
		char	   *built_fee;

		PayoutQuery("SELECT compay.payout_transfer_params($1::bigint, $2::compay.credit)::text",
					2, id, fee, &params, 1);
		WalletRpcCall("transfer", params, r);
		if (r->status != WALLET_RPC_OK || !payees_pay_fee)
			return true;
		built_fee = ResultField(r, "fee", NULL);
		if (built_fee == NULL)
			return true;		/* record_payout_built refuses it */
		PayoutQuery("SELECT compay.credit_from_atomic($1::numeric)::text", 1, built_fee, NULL,
					&built_fee, 1);
		if (strcmp(built_fee, fee) == 0)
			return true;
		fee = built_fee;
	}
	return false;
}

/*
 * queued -> built, failed, or left for later.  Not while another payout is
 * built and not yet relayed: a transfer with do_not_relay leaves its inputs
 * unspent in the wallet, so the next transfer would pick the same inputs
 * (the same key images), a double spend whose relay_tx can never succeed.
 * Returns whether to go on: false when none is due or the wallet did not
 * answer.
 */
static bool
BuildOne(void)
{
	char	   *f[2];
	WalletRpcResult r;
	bool		payees_pay_fee;

	if (!PayoutQuery("SELECT id::text, current_setting('compay.payout_fee_payer') = 'payee' "
					 "FROM compay.payout_transactions WHERE status = 'queued' "
					 "AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
					 "AND NOT EXISTS (SELECT 1 FROM compay.payout_transactions b "
					 "WHERE b.status = 'built') "
					 "ORDER BY id LIMIT 1", 0, NULL, NULL, f, 2))
		return false;
	/* Before the first build: what the wallet sent and we lost is adopted. */
	if (!wallet_reconciled)
		return (wallet_reconciled = PayoutReconcileWallet());
	payees_pay_fee = f[1][0] == 't';
	if (!BuildTransfer(f[0], payees_pay_fee, &r))
		PayoutQuery("SELECT compay.record_payout_retry($1::bigint, $2)", 2,
					f[0], "the fee changed at each build", NULL, 0);
	else if (r.status == WALLET_RPC_OK)
	{
		/* Marked in the wallet before anything about it commits. */
		char	   *noted = PayoutNoteTransfer(f[0], payees_pay_fee,
											   ResultField(&r, "tx_hash", NULL), ResultText(&r));

		if (noted == NULL)
			PayoutQuery("SELECT compay.record_payout_retry($1::bigint, $2)", 2, f[0],
						"the wallet did not take the payout's note (set_tx_notes, store)", NULL, 0);
		else
		{
			PayoutQuery(payees_pay_fee ?
						"SELECT compay.record_payout_built($1::bigint, $2::jsonb, true), "
						"compay.record_payout_noted($1::bigint, $2::jsonb->>'compay_note')" :
						"SELECT compay.record_payout_built($1::bigint, $2::jsonb, false), "
						"compay.record_payout_noted($1::bigint, $2::jsonb->>'compay_note')", 2,
						f[0], noted, NULL, 0);
			TestPause(1, f[0]);
		}
	}
	else if (r.status == WALLET_RPC_ERROR)
		PayoutQuery("SELECT compay.record_payout_failed($1::bigint, $2)", 2,
					f[0], Describe(&r), NULL, 0);
	else
		PayoutQuery("SELECT compay.record_payout_retry($1::bigint, $2)", 2,
					f[0], Describe(&r), NULL, 0);
	return Answered(&r);
}

/* Is the transaction known to the wallet (pending or out)? */
static bool
WalletKnows(const char *tx_hash)
{
	WalletRpcResult r;

	WalletRpcCall("get_transfer_by_txid", psprintf("{\"txid\":\"%s\"}", tx_hash), &r);
	return r.status == WALLET_RPC_OK && ResultField(&r, "transfer", "txid") != NULL;
}

/* Number of elements of the array named key in an OK daemon reply; -1 if none. */
static int
ReplyArrayLength(WalletRpcResult *r, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&r->result->root, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		return -1;
	return JsonContainerSize(v->val.binary.data);
}

typedef enum DaemonView
{
	DAEMON_UNKNOWN,				/* no daemon configured, or no clear answer */
	DAEMON_HAS,					/* in its pool or on chain */
	DAEMON_MISSES				/* neither in its pool nor on chain */
} DaemonView;

/* What the daemon knows of tx_hash (/get_transactions). */
static DaemonView
DaemonSees(const char *tx_hash)
{
	WalletRpcResult r;

	if (!DaemonRpcConfigured())
		return DAEMON_UNKNOWN;
	DaemonRpcCall("/get_transactions", psprintf("{\"txs_hashes\":[\"%s\"]}", tx_hash), &r);
	if (r.status != WALLET_RPC_OK)
		return DAEMON_UNKNOWN;
	if (ReplyArrayLength(&r, "txs") > 0)
		return DAEMON_HAS;
	if (ReplyArrayLength(&r, "missed_tx") > 0)
		return DAEMON_MISSES;
	return DAEMON_UNKNOWN;
}

/*
 * Whether one of key_images (a JSON array) is spent on chain
 * (/is_key_image_spent: 1 on chain, 2 in the pool, 0 unspent).
 */
static bool
KeyImageSpentOnChain(const char *key_images)
{
	WalletRpcResult r;
	JsonbValue *v;
	int			n;

	DaemonRpcCall("/is_key_image_spent", psprintf("{\"key_images\":%s}", key_images), &r);
	n = r.status == WALLET_RPC_OK ? ReplyArrayLength(&r, "spent_status") : -1;
	if (n <= 0)
		return false;
	v = getKeyJsonValueFromContainer(&r.result->root, "spent_status", 12, NULL);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(v->val.binary.data, i);

		if (e != NULL && e->type == jbvNumeric &&
			DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(e->val.numeric))) == 1)
			return true;
	}
	return false;
}

/* The daemon's chain height (/get_height), as text, or NULL. */
static char *
DaemonHeight(void)
{
	WalletRpcResult r;

	DaemonRpcCall("/get_height", "{}", &r);
	return r.status == WALLET_RPC_OK ? ResultField(&r, "height", NULL) : NULL;
}

/*
 * A payout whose transaction can no longer be mined: one of its key images
 * is spent on chain by another transaction.  It is voided only once that
 * conflict has lasted compay.payout_confirmations blocks since the worker
 * first saw it, so that a shallow reorganisation cannot bring the
 * transaction back after its amounts were returned.
 */
static void
VoidWhenBuried(const char *id, const char *tx_hash)
{
	char	   *height = DaemonHeight();
	char	   *buried = NULL;

	if (height == NULL)
		return;					/* asked again next round */
	PayoutQuery("SELECT compay.record_payout_conflict($1::bigint, $2::bigint)::text", 2, id,
				height, &buried, 1);
	if (buried == NULL || buried[0] != 't')
		return;
	ereport(LOG,
			(errmsg("compay worker: payout %s (%s) is void: an input is spent by another transaction",
					id, tx_hash)));
	PayoutQuery("SELECT compay.record_payout_voided($1::bigint, $2)", 2, id,
				"void: the daemon has not got the transaction and one of its key images is spent on chain",
				NULL, 0);
}

/*
 * Reconciles a built or relayed payout whose transaction is not (yet) seen
 * where it should be, by asking by hash rather than resending anything new:
 * known to the wallet or the daemon -> relayed (for a built one); missing
 * from the daemon with a key image spent on chain by another transaction
 * -> it can never be mined: voided once that is buried (the ledger and the
 * settlements get their amounts back); otherwise its own metadata is relayed (again), which
 * sends the same transaction or nothing.  Returns true when the payout is
 * (still) out there.
 */
static bool
Reconcile(const char *id, const char *tx_hash, const char *metadata, const char *key_images,
		  bool built)
{
	DaemonView seen = DaemonSees(tx_hash);
	WalletRpcResult r;
	StringInfoData params;

	if (seen == DAEMON_HAS || (!built && seen == DAEMON_UNKNOWN) ||
		(built && WalletKnows(tx_hash)))
		return true;
	if (seen == DAEMON_MISSES && KeyImageSpentOnChain(key_images))
	{
		VoidWhenBuried(id, tx_hash);
		return false;
	}
	if (!built)
		ereport(LOG,
				(errmsg("compay worker: payout %s (%s) was dropped by the daemon; relaying it again",
						id, tx_hash)));
	/* A wallet restarted since the build must catch up before relaying. */
	WalletRpcCall("refresh", "{}", &r);
	initStringInfo(&params);
	appendStringInfoString(&params, "{\"hex\":");
	escape_json(&params, metadata);
	appendStringInfoChar(&params, '}');
	WalletRpcCall("relay_tx", params.data, &r);
	if (r.status == WALLET_RPC_OK || WalletKnows(tx_hash) || DaemonSees(tx_hash) == DAEMON_HAS)
		return true;
	PayoutQuery("SELECT compay.record_payout_retry($1::bigint, $2)", 2, id, Describe(&r), NULL, 0);
	return false;
}

/* built -> relayed, failed (void), or left for later. */
static bool
RelayOne(int64 after_id)
{
	char	   *f[5];
	WalletRpcResult stored;

	if (!PayoutQuery("SELECT id::text, tx_hash, tx_metadata, to_json(key_images)::text, wallet_note "
					 "FROM compay.payout_transactions "
					 "WHERE status = 'built' AND id > $1::bigint "
					 "AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
					 "ORDER BY id LIMIT 1", 1, psprintf(INT64_FORMAT, after_id), NULL, f, 5))
		return false;
	if (Reconcile(f[0], f[1], f[2], f[3], true))
	{
		/* Noted again once relayed, in case the wallet lost it since; stores. */
		if (f[4] == NULL || !PayoutSetWalletNote(f[1], f[4]))
			WalletRpcCall("store", "{}", &stored);
		TestPause(2, f[0]);
		PayoutQuery("SELECT compay.record_payout_relayed($1::bigint)", 1, f[0], NULL, NULL, 0);
	}
	return true;
}

/*
 * relayed -> its confirmations, confirmed at the threshold.  One the
 * wallet does not show as mined is reconciled: relayed again if the
 * daemon dropped it from its pool, voided if it can never be mined.
 * Returns whether to go on, as BuildOne.
 */
static bool
ConfirmOne(int64 after_id, int64 *id)
{
	char	   *f[4];
	WalletRpcResult r;
	char	   *confirmations = NULL;

	if (!PayoutQuery("SELECT id::text, tx_hash, tx_metadata, to_json(key_images)::text "
					 "FROM compay.payout_transactions "
					 "WHERE status = 'relayed' AND id > $1::bigint ORDER BY id LIMIT 1",
					 1, psprintf(INT64_FORMAT, after_id), NULL, f, 4))
		return false;
	*id = pg_strtoint64(f[0]);
	WalletRpcCall("get_transfer_by_txid", psprintf("{\"txid\":\"%s\"}", f[1]), &r);
	if (r.status == WALLET_RPC_OK)
		confirmations = ResultField(&r, "transfer", "confirmations");
	if (confirmations != NULL)
		PayoutQuery("SELECT compay.record_payout_confirmations($1::bigint, $2::integer)", 2,
					f[0], confirmations, NULL, 0);
	else if (r.status == WALLET_RPC_OK || r.status == WALLET_RPC_ERROR)
		Reconcile(f[0], f[1], f[2], f[3], false);
	return Answered(&r);
}

/*
 * Deposits, read incrementally.  compay.deposit_scan keeps the height up
 * to which every deposit output with enough confirmations is credited.
 * Each round: the wallet's height H; get_transfers (in, filtered by
 * height) lists the incoming transfers mined after that height, less
 * compay.deposit_rescan_blocks blocks read again for reorganisations, up
 * to H - compay.deposit_confirmations: a handful of entries, usually none.
 * Only when one of them is not credited yet does the round read outputs:
 * incoming_transfers (one entry per output, with its global index) of the
 * subaddresses concerned only, credited by compay.record_deposits once
 * each, keyed by tx hash and global output index as before.  Then the
 * scanned height moves up, but never past a listed transaction that is
 * still not credited (an output the wallet did not list yet, or one whose
 * credit failed): that one is read again next round, so no deposit is
 * ever left behind.  A round with nothing new asks the wallet for a
 * refresh, its height and the few transfers of the last blocks, however
 * many outputs it has received over the years.
 */
/*
 * SELECT expr over the incoming transfers a get_transfers reply ($1) lists
 * at deposit subaddresses that are not credited yet (by tx hash and
 * subaddress).
 */
#define UNCREDITED_SQL(expr) \
	"SELECT " expr " " \
	"FROM jsonb_array_elements(coalesce($1::jsonb->'in', '[]')) e " \
	"JOIN compay.deposit_subaddresses d " \
	"  ON d.address_index::text = e->'subaddr_index'->>'minor' " \
	"WHERE e->'subaddr_index'->>'major' = '0' " \
	"  AND NOT EXISTS (SELECT 1 FROM compay.xmr_deposits x " \
	"                  WHERE x.tx_hash = e->>'txid' AND x.address_index = d.address_index)"

static int64
ScanDeposits(char **height_out)
{
	char	   *f[3] = {NULL, NULL, NULL};
	char	   *to_read = NULL;
	char	   *credited = NULL;
	char	   *first_gap = NULL;
	char	   *due = NULL;
	char	   *listed;
	char	   *height;
	int64		wallet_height;
	int64		top;
	int64		from;
	WalletRpcResult r;

	/* Adopt what a rolled-back deposit_address() left (src/deposit.sql). */
	PayoutQuery("SELECT compay.deposit_recovery_due()::text", 0, NULL, NULL, &due, 1);
	if (due != NULL)
	{
		WalletRpcCall("get_address", "{\"account_index\":0}", &r);
		if (r.status == WALLET_RPC_OK)
			PayoutQuery("SELECT compay.recover_deposit_addresses($1::jsonb, $2::bigint)", 2,
						ResultText(&r), due, NULL, 0);
		else
			ereport(LOG,
					(errmsg("compay worker: could not look for orphaned deposit addresses: %s",
							Describe(&r))));
	}
	PayoutQuery("SELECT string_agg(address_index::text, ',' ORDER BY address_index), "
				"(SELECT coalesce(max(scanned_height), 0) FROM compay.deposit_scan)::text, "
				"current_setting('compay.deposit_confirmations') "
				"FROM compay.deposit_subaddresses", 0, NULL, NULL, f, 3);
	if (f[0] == NULL)
		return 0;				/* no deposit address: no wallet call */
	WalletRpcCall("refresh", "{}", &r);
	WalletRpcCall("get_height", "{}", &r);
	height = r.status == WALLET_RPC_OK ? ResultField(&r, "height", NULL) : NULL;
	if (height == NULL || strspn(height, "0123456789") != strlen(height) || strlen(height) > 15)
	{
		ereport(LOG,
				(errmsg("compay worker: could not read deposits: %s",
						r.status == WALLET_RPC_OK ? "bad reply: no height" : Describe(&r))));
		return 0;				/* read again next round */
	}
	*height_out = height;
	wallet_height = pg_strtoint64(height);
	top = wallet_height - pg_strtoint64(f[2]);
	from = Max(pg_strtoint64(f[1]) - deposit_rescan_blocks, 0);
	if (top <= from)
		return 0;				/* no block newly confirmed enough */
	WalletRpcCall("get_transfers",
				  psprintf("{\"in\":true,\"account_index\":0,\"subaddr_indices\":[%s],"
						   "\"filter_by_height\":true,\"min_height\":" INT64_FORMAT ","
						   "\"max_height\":" INT64_FORMAT "}", f[0], from, top),
				  &r);
	if (r.status != WALLET_RPC_OK)
	{
		ereport(LOG,
				(errmsg("compay worker: could not read deposits: %s", Describe(&r))));
		return 0;
	}
	listed = ResultText(&r);
	PayoutQuery(UNCREDITED_SQL("string_agg(DISTINCT d.address_index::text, ',')"),
				1, listed, NULL, &to_read, 1);
	if (to_read != NULL)
	{
		WalletRpcResult outputs;

		WalletRpcCall("incoming_transfers",
					  psprintf("{\"transfer_type\":\"all\",\"account_index\":0,"
							   "\"subaddr_indices\":[%s]}", to_read),
					  &outputs);
		if (outputs.status != WALLET_RPC_OK)
		{
			ereport(LOG,
					(errmsg("compay worker: could not read deposits: %s", Describe(&outputs))));
			return 0;
		}
		PayoutQuery("SELECT compay.record_deposits($1::jsonb, $2::bigint)::text", 2,
					ResultText(&outputs), height, &credited, 1);
		/* Not past the lowest listed transaction still not credited. */
		PayoutQuery(UNCREDITED_SQL("(min((e->>'height')::bigint) - 1)::text"),
					1, listed, NULL, &first_gap, 1);
		if (first_gap != NULL && pg_strtoint64(first_gap) < top)
		{
			ereport(LOG,
					(errmsg("compay worker: a deposit listed by the wallet at height " INT64_FORMAT
							" is not credited yet; it is read again next round",
							pg_strtoint64(first_gap) + 1)));
			top = pg_strtoint64(first_gap);
		}
	}
	PayoutQuery("SELECT compay.record_deposit_scan($1::bigint)", 1,
				psprintf(INT64_FORMAT, top), NULL, NULL, 0);
	return credited ? pg_strtoint64(credited) : 0;
}

/*
 * Deposit requests (src/deposit_request.sql) still open, at the wallet's
 * height the scan read: one get_transfers (in and pool) of their
 * subaddresses shows what is in flight (state seen); outputs that have
 * their request's confirmations are read (incoming_transfers) and
 * credited by compay.record_deposits as any deposit, once each; then what
 * is still in flight is recorded again.  No open request: no wallet call.
 */
static int64
PollDepositRequests(const char *height)
{
	char	   *open = NULL;
	char	   *due = NULL;
	char	   *credited = NULL;
	WalletRpcResult r;
	WalletRpcResult outputs;

	PayoutQuery("SELECT string_agg(address_index::text, ',' ORDER BY address_index) "
				"FROM (SELECT address_index FROM compay.deposit_requests "
				"      WHERE state IN ('pending', 'seen', 'partial') "
				"      ORDER BY id LIMIT 10000) o", 0, NULL, NULL, &open, 1);
	if (open == NULL || height == NULL)
		return 0;
	WalletRpcCall("get_transfers",
				  psprintf("{\"in\":true,\"pool\":true,\"account_index\":0,"
						   "\"subaddr_indices\":[%s]}", open),
				  &r);
	if (r.status != WALLET_RPC_OK)
	{
		ereport(LOG,
				(errmsg("compay worker: could not read deposit requests: %s", Describe(&r))));
		return 0;
	}
	PayoutQuery("SELECT compay.record_deposit_requests($1::jsonb, $2::bigint)", 2,
				ResultText(&r), height, &due, 1);
	if (due == NULL)
		return 0;
	WalletRpcCall("incoming_transfers",
				  psprintf("{\"transfer_type\":\"all\",\"account_index\":0,"
						   "\"subaddr_indices\":[%s]}", due),
				  &outputs);
	if (outputs.status != WALLET_RPC_OK)
	{
		ereport(LOG,
				(errmsg("compay worker: could not read deposit requests: %s", Describe(&outputs))));
		return 0;
	}
	PayoutQuery("SELECT compay.record_deposits($1::jsonb, $2::bigint)::text", 2,
				ResultText(&outputs), height, &credited, 1);
	PayoutQuery("SELECT compay.record_deposit_requests($1::jsonb, $2::bigint)", 2,
				ResultText(&r), height, NULL, 0);
	return credited ? pg_strtoint64(credited) : 0;
}

/*
 * One deposit poll: the scan of every deposit subaddress, the open deposit
 * requests, then the expiry of the requests not paid in time (with no
 * wallet call, so that they expire while the wallet is away too).
 */
int64
PollDeposits(void)
{
	char	   *height = NULL;
	char	   *expired = NULL;
	int64		moved;

	moved = ScanDeposits(&height);
	moved += PollDepositRequests(height);
	PayoutQuery("SELECT compay.expire_deposit_requests()::text", 0, NULL, NULL, &expired, 1);
	return moved + (expired ? pg_strtoint64(expired) : 0);
}

/*
 * One payout round, with no transaction open, each statement a step of
 * the current driver (src/payout_run.c).  Errors propagate to the runner.
 * Deposits are polled apart (PollDeposits), under a lock of their own.
 */
int64
PayoutRound(void)
{
	char	   *queued;
	int64		moved = 0;
	int64		last = 0;

	/* A round that did not run to its end (an error) reconciles again. */
	if (!round_done)
		wallet_reconciled = false;
	round_done = false;
	PayoutQuery("SELECT compay.queue_payouts()::text", 0, NULL, NULL, &queued, 1);
	for (int i = 0; i < PAYOUT_ROUND_MAX && BuildOne(); i++)
		moved++;
	/* One relay a round: each refreshes the wallet first. */
	if (payout_auto_relay && RelayOne(0))
		moved++;
	for (int i = 0; i < PAYOUT_ROUND_MAX && ConfirmOne(last, &last); i++)
		moved++;
	round_done = true;
	return moved;
}
