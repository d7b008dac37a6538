/*-------------------------------------------------------------------------
 *
 * payout_reconcile.c
 *	  The payout round's reconciliation with the wallet itself: every
 *	  transaction a round builds is noted in the treasury wallet
 *	  (set_tx_notes, then store) before its built record commits, and
 *	  before the first build after a start, a promotion or a failed round
 *	  the wallet's outgoing transactions are listed and those that carry
 *	  this database's note but that no payout has are adopted
 *	  (src/payout_reconcile.sql).  The records of a payout can be lost
 *	  with the end of the WAL at a failover (asynchronous replication);
 *	  the wallet's transactions cannot, so what the wallet has sent is
 *	  never built again.
 *
 *	  Every wallet call is made between the round's steps, with no
 *	  transaction open (src/payout_run.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "payout.h"
#include "payout_run.h"
#include "wallet_rpc.h"

static int	payout_reconcile_blocks = 10000;

/* Most adopted payouts whose tx key one reconciliation asks for. */
#define RECONCILE_KEYS_MAX 20

void
PayoutReconcileInit(void)
{
	DefineCustomIntVariable("compay.payout_reconcile_blocks",
							"Blocks of the wallet's outgoing transfers a reconciliation reads.",
							"Before its first build after a start, a promotion or a failed round, the payout round lists the wallet's outgoing transfers mined in the last this many blocks, and all those not mined yet, and adopts compay's that no payout has.",
							&payout_reconcile_blocks, 10000, 10, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* A string or number member of an OK reply's result, as text, or NULL. */
static char *
ReplyText(WalletRpcResult *r, const char *key)
{
	JsonbValue *v;

	if (r->status != WALLET_RPC_OK || r->result == NULL)
		return NULL;
	v = getKeyJsonValueFromContainer(&r->result->root, key, strlen(key), NULL);
	if (v == NULL)
		return NULL;
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	return NULL;
}

static bool
IsTxHash(const char *s)
{
	return s != NULL && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* set_tx_notes of one transaction, then store; whether both succeeded. */
bool
PayoutSetWalletNote(const char *tx_hash, const char *note)
{
	WalletRpcResult r;
	StringInfoData params;

	Assert(IsTxHash(tx_hash) && note != NULL);
	initStringInfo(&params);
	appendStringInfo(&params, "{\"txids\":[\"%s\"],\"notes\":[", tx_hash);
	escape_json(&params, note);
	appendStringInfoString(&params, "]}");
	WalletRpcCall("set_tx_notes", params.data, &r);
	if (r.status != WALLET_RPC_OK)
		return false;
	/* Kept in the wallet file before anything about it commits. */
	WalletRpcCall("store", "{}", &r);
	return r.status == WALLET_RPC_OK;
}

/*
 * Notes a transaction just built (not relayed) for payout id in the wallet.
 * Returns the wallet's reply (text) with the note as member compay_note,
 * for compay.record_payout_noted; or NULL when the wallet did not take the
 * note (the payout is then retried: a transaction not relayed reserves
 * nothing).  A reply without a well-formed tx hash goes on unchanged, for
 * compay.record_payout_built to refuse.
 */
char *
PayoutNoteTransfer(const char *id, bool payees_pay_fee, const char *tx_hash, const char *reply)
{
	char	   *note = NULL;
	char	   *noted = NULL;

	if (!IsTxHash(tx_hash))
		return pstrdup(reply);
	PayoutQuery("SELECT compay.payout_wallet_note($1::bigint, $2::boolean)", 2, id,
				payees_pay_fee ? "true" : "false", &note, 1);
	if (note == NULL || !PayoutSetWalletNote(tx_hash, note))
		return NULL;
	PayoutQuery("SELECT ($1::jsonb || jsonb_build_object('compay_note', $2::text))::text", 2,
				reply, note, &noted, 1);
	return noted;
}

/* Asks the wallet for the tx keys of adopted payouts that have none. */
static void
RecordAdoptedKeys(void)
{
	char	   *f[2];
	int64		after = 0;

	for (int i = 0; i < RECONCILE_KEYS_MAX; i++)
	{
		WalletRpcResult r;
		char	   *key;

		if (!PayoutQuery("SELECT id::text, tx_hash FROM compay.payout_transactions "
						 "WHERE adopted_at IS NOT NULL AND tx_key IS NULL AND id > $1::bigint "
						 "ORDER BY id LIMIT 1", 1, psprintf(INT64_FORMAT, after), NULL, f, 2))
			return;
		after = pg_strtoint64(f[0]);
		WalletRpcCall("get_tx_key", psprintf("{\"txid\":\"%s\"}", f[1]), &r);
		key = ReplyText(&r, "tx_key");
		if (key != NULL)
			PayoutQuery("SELECT compay.record_payout_tx_key($1::bigint, $2)", 2, f[0], key,
						NULL, 0);
	}
}

/*
 * The reconciliation: refresh, the wallet's height, its outgoing transfers
 * since compay.payout_reconcile_blocks blocks (and every one not mined),
 * then compay.adopt_wallet_transfers in one step.  Returns false when the
 * wallet did not answer (nothing may be built until a reconciliation
 * succeeds); an adoption that cannot be matched raises PY022.
 */
bool
PayoutReconcileWallet(void)
{
	WalletRpcResult r;
	char	   *height;
	char	   *params = NULL;
	char	   *f[2] = {NULL, NULL};

	WalletRpcCall("refresh", "{}", &r);
	WalletRpcCall("get_height", "{}", &r);
	height = ReplyText(&r, "height");
	if (height == NULL || strspn(height, "0123456789") != strlen(height) || strlen(height) > 15)
	{
		ereport(LOG,
				(errmsg("compay worker: could not reconcile payouts with the wallet: no height: %s",
						WalletRpcStatusName(r.status))));
		return false;
	}
	PayoutQuery("SELECT compay.payout_reconcile_params($1::bigint)::text", 1, height, NULL,
				&params, 1);
	WalletRpcCall("get_transfers", params, &r);
	if (r.status != WALLET_RPC_OK)
	{
		ereport(LOG,
				(errmsg("compay worker: could not reconcile payouts with the wallet: %s: %s",
						WalletRpcStatusName(r.status), r.error ? r.error : "")));
		return false;
	}
	PayoutQuery("SELECT count(*)::text, string_agg(payout_id || ' (' || tx_hash || ')', ', ') "
				"FROM compay.adopt_wallet_transfers($1::jsonb)", 1,
				JsonbToCString(NULL, &r.result->root, VARSIZE(r.result)), NULL, f, 2);
	if (f[0] != NULL && strcmp(f[0], "0") != 0)
	{
		ereport(LOG,
				(errmsg("compay worker: adopted %s payout(s) from the wallet: %s", f[0], f[1]),
				 errdetail("The wallet had sent them but this database had no record of them (lost with a failover?); they are recorded, debited and not paid again.")));
		RecordAdoptedKeys();
	}
	return true;
}
