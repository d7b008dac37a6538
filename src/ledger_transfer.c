/*-------------------------------------------------------------------------
 *
 * ledger_transfer.c
 *	  SQL-callable money movements between nodes: transfer, transfer_batch,
 *	  refund, grant_barter, and clawback_repay (a payee repaying $clawbacks)
 *	  (accounts and deposits: ledger_accounts.c).
 *
 * Each checks that the caller may act for the node it takes money from
 * (NodeRequire).
 *
 * Each function checks its arguments, claims its idempotency key, builds
 * one LedgerBatch (lock, post, flush) and records its result, all inside
 * one SPI connection and the caller's transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "ledger.h"
#include "node_roles.h"
#include "shard.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_transfer);
PG_FUNCTION_INFO_V1(compay_clearing_credit);
PG_FUNCTION_INFO_V1(compay_transfer_batch);
PG_FUNCTION_INFO_V1(compay_refund);
PG_FUNCTION_INFO_V1(compay_grant_barter);
PG_FUNCTION_INFO_V1(compay_clawback_repay);

static SpiStatement barter_lock_stmt = {
	.sql = "SELECT amount FROM compay.barter_credits "
	"WHERE holder_account = $1 AND counterparty_account = $2 FOR UPDATE",
	.nargs = 2,
	.argtypes = {INT8OID, INT8OID}
};

static SpiStatement barter_add_stmt = {
	.sql = "INSERT INTO compay.barter_credits AS b (holder_account, counterparty_account, amount, updated_at) "
	"VALUES ($1, $2, $3, $4) ON CONFLICT (holder_account, counterparty_account) "
	"DO UPDATE SET amount = b.amount + excluded.amount, updated_at = excluded.updated_at",
	.nargs = 4,
	.argtypes = {INT8OID, INT8OID, SPI_ARG_CREDIT, TIMESTAMPTZOID}
};

static SpiStatement barter_spend_stmt = {
	.sql = "UPDATE compay.barter_credits SET amount = amount - $3, updated_at = $4 "
	"WHERE holder_account = $1 AND counterparty_account = $2",
	.nargs = 4,
	.argtypes = {INT8OID, INT8OID, SPI_ARG_CREDIT, TIMESTAMPTZOID}
};

static SpiStatement original_stmt = {
	.sql = "SELECT t.kind::text, f.node_id, p.node_id, t.amount, t.barter_amount, t.currency "
	"FROM compay.transfers t JOIN compay.accounts f ON f.id = t.from_account "
	"JOIN compay.accounts p ON p.id = t.to_account WHERE t.id = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SpiStatement refunded_stmt = {
	.sql = "SELECT compay.sum(amount) FROM compay.transfers WHERE refund_of = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

/*
 * The barter credits from may spend with to, locked; 0 when it holds none.
 * Only CREDIT accounts carry barter credits.
 */
static Credit
LockBarter(LedgerBatch *batch, LedgerAccount *from, LedgerAccount *to)
{
	Datum		args[2];
	bool		isnull;

	if (!(from->flags & ACCOUNT_FLAG_BARTER) || strcmp(batch->currency, "CREDIT") != 0)
		return 0;
	args[0] = Int64GetDatum(from->id);
	args[1] = Int64GetDatum(to->id);
	if (SpiRun(&barter_lock_stmt, args, NULL, false, 1) == 0)
		return 0;
	return DatumGetCredit(SpiGetDatum(0, 1, &isnull));
}

/* Adds to (grant) or takes from (spend) what holder holds with counterparty. */
static void
ChangeBarter(LedgerBatch *batch, LedgerAccount *holder, LedgerAccount *counterparty,
			 Credit amount, bool grant)
{
	Datum		args[4];

	Assert(amount > 0);
	args[0] = Int64GetDatum(holder->id);
	args[1] = Int64GetDatum(counterparty->id);
	args[2] = CreditGetDatum(amount);
	args[3] = TimestampTzGetDatum(batch->now);
	if (SpiRun(grant ? &barter_add_stmt : &barter_spend_stmt, args, NULL, false, 0) != 1)
		elog(ERROR, "barter credits of account " INT64_FORMAT " vanished", holder->id);
}

/*
 * One transfer between two locked accounts: barter credits the payer holds
 * with the payee are spent first, the rest moves from balance to balance.
 */
static int64
PostTransfer(LedgerBatch *batch, LedgerAccount *from, LedgerAccount *to,
			 Credit amount, const char *reference, const char *key)
{
	Credit		barter = Min(LockBarter(batch, from, to), amount);
	Credit		money = amount - barter;
	LedgerTransfer *t;
	int64		id;

	if (from->id == to->id)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot transfer from node \"%s\" to itself", from->node_id)));
	if (money > 0)
		LedgerCheckAvailable(from, money, batch->currency);

	t = LedgerAddTransfer(batch, TRANSFER_TRANSFER, from, to, amount);
	t->barter_amount = barter;
	t->reference = reference;
	t->idempotency_key = key;
	id = t->id;
	if (barter > 0)
	{
		LedgerPost(batch, from, ENTRY_BARTER, -barter, id, 0, to->id);
		LedgerPost(batch, to, ENTRY_BARTER, barter, id, 0, from->id);
		ChangeBarter(batch, from, to, barter, false);
	}
	if (money > 0)
		LedgerMove(batch, t, from, to, money, ENTRY_DEBIT, ENTRY_CREDIT);
	from->score_change = 1;
	return id;
}

static char *
TransferRequest(const char *from, const char *to, Credit amount,
				const char *reference, const char *currency)
{
	return psprintf("%s|%s|%s|%s|%s", from, to, CreditText(amount),
					reference ? reference : "", currency);
}

Datum
compay_transfer(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"from_node", "to_node", "amount"};
	const char *nodes[2];
	Credit		amount;
	char	   *reference = TextArgOrNull(fcinfo, 3);
	char	   *key = TextArgOrNull(fcinfo, 4);
	int64		result;
	LedgerBatch batch;
	const char *payee;
	int			remote_shard;

	LedgerRequireArgs(fcinfo, 3, names);
	if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("currency must not be NULL")));
	nodes[0] = LedgerCheckNode(TextArgOrNull(fcinfo, 0));
	nodes[1] = LedgerCheckNode(TextArgOrNull(fcinfo, 1));
	amount = PG_GETARG_CREDIT(2);
	LedgerCheckAmount(amount, "a transfer amount");
	LedgerCheckReference(reference, "reference");
	LedgerBegin(&batch, LedgerCheckCurrency(TextArgOrNull(fcinfo, 5)));
	if (strcmp(nodes[0], nodes[1]) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot transfer from node \"%s\" to itself",
						CompayEchoInput(nodes[0]))));
	NodeRequire(nodes[0], true);

	SPI_connect();
	if (key && IdempotencyClaim(key, "transfer",
								TransferRequest(nodes[0], nodes[1], amount, reference,
												batch.currency), &result))
	{
		SPI_finish();
		PG_RETURN_INT64(result);
	}
	/* A payee on another shard: its shard's clearing account, then PgQ. */
	ShardRequireLocal(nodes[0], "payer");
	payee = nodes[1];
	nodes[1] = ShardPayee(payee, &remote_shard);
	LedgerLockAccounts(&batch, nodes, 2, 1, LedgerAutoCreate());
	result = PostTransfer(&batch, LedgerFindAccount(&batch, nodes[0]),
						  LedgerFindAccount(&batch, nodes[1]), amount, reference, key);
	if (remote_shard >= 0)
		ShardQueueCredit(remote_shard, result, payee, amount, batch.currency, reference);
	LedgerFinish(&batch, key, result);
	PG_RETURN_INT64(result);
}

/*
 * compay.clearing_credit(from_shard, payee, amount, currency, reference):
 * the payee's half of a cross-shard payment, from '$clearing:<from_shard>'
 * to payee (shard.sql's compay.clearing_apply, which makes it happen once
 * per event).  Not granted to any role.
 */
Datum
compay_clearing_credit(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"from_shard", "payee", "amount", "currency"};
	const char *nodes[2];
	Credit		amount;
	char	   *reference = TextArgOrNull(fcinfo, 4);
	int64		result;
	LedgerBatch batch;

	LedgerRequireArgs(fcinfo, 4, names);
	nodes[0] = ShardClearingAccount(PG_GETARG_INT32(0));
	nodes[1] = LedgerCheckNode(TextArgOrNull(fcinfo, 1));
	ShardRequireLocal(nodes[1], "payee");
	amount = PG_GETARG_CREDIT(2);
	LedgerCheckAmount(amount, "a clearing credit");
	LedgerCheckReference(reference, "reference");
	LedgerBegin(&batch, LedgerCheckCurrency(TextArgOrNull(fcinfo, 3)));

	SPI_connect();
	LedgerLockAccounts(&batch, nodes, 2, 1, true);
	result = PostTransfer(&batch, LedgerFindAccount(&batch, nodes[0]),
						  LedgerFindAccount(&batch, nodes[1]), amount, reference, NULL);
	LedgerFinish(&batch, NULL, result);
	PG_RETURN_INT64(result);
}

/* The elements of a one-dimensional array argument; NULL argument: none. */
static int
ArrayArg(FunctionCallInfo fcinfo, int n, Oid elemtype, Datum **values, bool **nulls)
{
	ArrayType  *a;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			count;

	*values = NULL;
	*nulls = NULL;
	if (PG_ARGISNULL(n))
		return -1;
	a = PG_GETARG_ARRAYTYPE_P(n);
	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("transfer_batch takes one-dimensional arrays")));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(a, elemtype, typlen, typbyval, typalign, values, nulls, &count);
	return count;
}

typedef struct BatchArgs
{
	int			n;
	Datum	   *from;
	Datum	   *to;
	Datum	   *amounts;
	Datum	   *refs;
	Datum	   *keys;
	bool	   *from_nulls;
	bool	   *to_nulls;
	bool	   *amount_nulls;
	bool	   *ref_nulls;
	bool	   *key_nulls;
} BatchArgs;

static const char *
BatchText(Datum *values, bool *nulls, int i)
{
	return (values == NULL || nulls[i]) ? NULL : TextDatumGetCString(values[i]);
}

static void
ReadBatchArgs(FunctionCallInfo fcinfo, BatchArgs *b)
{
	Oid			credit_oid = CompayTypeOid("credit");
	int			nfrom = ArrayArg(fcinfo, 0, TEXTOID, &b->from, &b->from_nulls);
	int			nto = ArrayArg(fcinfo, 1, TEXTOID, &b->to, &b->to_nulls);
	int			namounts = ArrayArg(fcinfo, 2, credit_oid, &b->amounts, &b->amount_nulls);
	int			nrefs = ArrayArg(fcinfo, 3, TEXTOID, &b->refs, &b->ref_nulls);
	int			nkeys = ArrayArg(fcinfo, 4, TEXTOID, &b->keys, &b->key_nulls);

	b->n = nfrom;
	if (nfrom < 0 || nto < 0 || namounts < 0)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("from_nodes, to_nodes and amounts must not be NULL")));
	if (nto != nfrom || namounts != nfrom || (nrefs >= 0 && nrefs != nfrom) ||
		(nkeys >= 0 && nkeys != nfrom))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("transfer_batch arrays must have the same length"),
				 errdetail("from_nodes has %d elements, to_nodes %d, amounts %d.",
						   nfrom, nto, namounts)));
	if (nfrom > LEDGER_BATCH_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a batch holds at most %d transfers, not %d",
						LEDGER_BATCH_MAX, nfrom)));
	for (int i = 0; i < nfrom; i++)
	{
		if (b->from_nulls[i] || b->to_nulls[i] || b->amount_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("transfer %d of the batch has a NULL node or amount", i + 1)));
		LedgerCheckNode(TextDatumGetCString(b->from[i]));
		LedgerCheckNode(TextDatumGetCString(b->to[i]));
		LedgerCheckAmount(DatumGetCredit(b->amounts[i]), "a transfer amount");
		LedgerCheckReference(BatchText(b->refs, b->ref_nulls, i), "reference");
		NodeRequire(TextDatumGetCString(b->from[i]), true);
	}
}

/* A keyed element of a batch, for claiming keys in key order. */
typedef struct BatchKey
{
	const char *key;
	char	   *request;
	int			index;
} BatchKey;

static int
CompareBatchKey(const void *a, const void *b)
{
	const BatchKey *x = (const BatchKey *) a;
	const BatchKey *y = (const BatchKey *) b;
	int			cmp = strcmp(x->key, y->key);

	return cmp != 0 ? cmp : x->index - y->index;
}

/*
 * Claims the batch's idempotency keys in key order, so that two batches
 * with the same keys in another order cannot deadlock on them.  Elements
 * already done get done[i] and their first result; an element repeating an
 * earlier element's key and request gets alias_of[i], and is done once.
 */
static void
ClaimBatchKeys(BatchArgs *b, const char *currency, int64 *results, bool *done,
			   int *alias_of)
{
	BatchKey   *keys = palloc(sizeof(BatchKey) * Max(b->n, 1));
	int			nkeys = 0;

	for (int i = 0; i < b->n; i++)
	{
		alias_of[i] = -1;
		if (BatchText(b->keys, b->key_nulls, i) == NULL)
			continue;
		keys[nkeys].key = BatchText(b->keys, b->key_nulls, i);
		keys[nkeys].request = TransferRequest(TextDatumGetCString(b->from[i]),
											  TextDatumGetCString(b->to[i]),
											  DatumGetCredit(b->amounts[i]),
											  BatchText(b->refs, b->ref_nulls, i),
											  currency);
		keys[nkeys].index = i;
		nkeys++;
	}
	qsort(keys, nkeys, sizeof(BatchKey), CompareBatchKey);
	for (int k = 0; k < nkeys; k++)
	{
		int			i = keys[k].index;

		if (k > 0 && strcmp(keys[k - 1].key, keys[k].key) == 0)
		{
			if (strcmp(keys[k - 1].request, keys[k].request) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_COMPAY_IDEMPOTENCY_CONFLICT),
						 errmsg("idempotency key \"%s\" is given twice in the batch for different transfers",
								CompayEchoInput(keys[k].key))));
			alias_of[i] = alias_of[keys[k - 1].index] >= 0 ?
				alias_of[keys[k - 1].index] : keys[k - 1].index;
			done[i] = true;
			continue;
		}
		done[i] = IdempotencyClaim(keys[k].key, "transfer", keys[k].request, &results[i]);
	}
}

Datum
compay_transfer_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BatchArgs	b;
	LedgerBatch batch;
	int64	   *results;
	bool	   *done;
	int		   *alias_of;
	const char **nodes;
	int			nnodes = 0;
	int			npayers;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("currency must not be NULL")));
	LedgerBegin(&batch, LedgerCheckCurrency(TextArgOrNull(fcinfo, 5)));
	ReadBatchArgs(fcinfo, &b);
	results = palloc0(sizeof(int64) * Max(b.n, 1));
	done = palloc0(sizeof(bool) * Max(b.n, 1));
	alias_of = palloc(sizeof(int) * Max(b.n, 1));
	nodes = palloc(sizeof(char *) * Max(2 * b.n, 1));

	SPI_connect();
	ClaimBatchKeys(&b, batch.currency, results, done, alias_of);
	/* The payers first: LedgerLockAccounts opens none of them. */
	for (int i = 0; i < b.n; i++)
		if (!done[i])
		{
			/* A batch moves money within this shard only. */
			ShardRequireLocal(TextDatumGetCString(b.from[i]), "payer");
			ShardRequireLocal(TextDatumGetCString(b.to[i]), "payee");
			nodes[nnodes++] = TextDatumGetCString(b.from[i]);
		}
	npayers = nnodes;
	for (int i = 0; i < b.n; i++)
		if (!done[i])
			nodes[nnodes++] = TextDatumGetCString(b.to[i]);
	if (nnodes > 0)
		LedgerLockAccounts(&batch, nodes, nnodes, npayers, LedgerAutoCreate());
	for (int i = 0; i < b.n; i++)
	{
		if (done[i])
			continue;
		results[i] = PostTransfer(&batch,
								  LedgerFindAccount(&batch, TextDatumGetCString(b.from[i])),
								  LedgerFindAccount(&batch, TextDatumGetCString(b.to[i])),
								  DatumGetCredit(b.amounts[i]),
								  BatchText(b.refs, b.ref_nulls, i),
								  BatchText(b.keys, b.key_nulls, i));
	}
	LedgerFlush(&batch);
	for (int i = 0; i < b.n; i++)
	{
		const char *key = BatchText(b.keys, b.key_nulls, i);

		if (alias_of[i] >= 0)
			results[i] = results[alias_of[i]];
		else if (key && !done[i])
			IdempotencyRecord(key, results[i]);
	}
	SPI_finish();

	for (int i = 0; i < b.n; i++)
	{
		Datum		value = Int64GetDatum(results[i]);
		bool		isnull = false;

		Assert(results[i] > 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}

/* Locks the accounts of an original transfer's two sides. */
typedef struct Original
{
	char	   *kind;
	char	   *payer;
	char	   *payee;
	Credit		amount;
	Credit		barter;
	char	   *currency;
} Original;

static void
ReadOriginal(int64 id, Original *o)
{
	Datum		arg = Int64GetDatum(id);
	bool		isnull;

	if (SpiRun(&original_stmt, &arg, NULL, false, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_UNKNOWN_TRANSFER),
				 errmsg("transfer " INT64_FORMAT " does not exist", id)));
	o->kind = SpiGetText(0, 1);
	o->payer = SpiGetText(0, 2);
	o->payee = SpiGetText(0, 3);
	o->amount = DatumGetCredit(SpiGetDatum(0, 4, &isnull));
	o->barter = DatumGetCredit(SpiGetDatum(0, 5, &isnull));
	o->currency = SpiGetText(0, 6);
	if (strcmp(o->kind, "transfer") != 0 && strcmp(o->kind, "capture") != 0 &&
		strcmp(o->kind, "deposit") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a %s cannot be refunded", o->kind),
				 errdetail("Only deposits, transfers and captures can be refunded.")));
	ShardRefuseRefund(id, o->payer, o->payee);
}

static Credit
AlreadyRefunded(int64 id)
{
	Datum		arg = Int64GetDatum(id);
	bool		isnull;
	Datum		sum;

	SpiRun(&refunded_stmt, &arg, NULL, false, 1);
	sum = SpiGetDatum(0, 1, &isnull);
	return isnull ? 0 : DatumGetCredit(sum);
}

Datum
compay_refund(PG_FUNCTION_ARGS)
{
	int64		original_id;
	char	   *reason = TextArgOrNull(fcinfo, 2);
	char	   *key = TextArgOrNull(fcinfo, 3);
	Original	o;
	Credit		refundable;
	Credit		amount;
	int64		result;
	const char *nodes[2];
	LedgerBatch batch;
	LedgerAccount *payer;
	LedgerAccount *payee;
	LedgerTransfer *t;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("transfer_id must not be NULL")));
	original_id = PG_GETARG_INT64(0);
	if (!PG_ARGISNULL(1))
		LedgerCheckAmount(PG_GETARG_CREDIT(1), "a refund amount");
	LedgerCheckReference(reason, "reason");
	NodeRequire(NULL, true);	/* takes money back from a payee */

	SPI_connect();
	if (key && IdempotencyClaim(key, "refund",
								psprintf(INT64_FORMAT "|%s|%s", original_id,
										 PG_ARGISNULL(1) ? "" : CreditText(PG_GETARG_CREDIT(1)),
										 reason ? reason : ""), &result))
	{
		SPI_finish();
		PG_RETURN_INT64(result);
	}
	ReadOriginal(original_id, &o);
	LedgerBegin(&batch, o.currency);
	nodes[0] = o.payer;
	nodes[1] = o.payee;
	LedgerLockAccounts(&batch, nodes, 2, 0, false);

	/* Read after the locks: a concurrent refund of the same transfer is seen. */
	refundable = o.amount - o.barter - AlreadyRefunded(original_id);
	amount = PG_ARGISNULL(1) ? refundable : PG_GETARG_CREDIT(1);
	if (refundable <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_REFUND_EXCEEDS),
				 errmsg("transfer " INT64_FORMAT " is already fully refunded", original_id),
				 errdetail("All %s it moved has been refunded.",
						   CreditText(o.amount - o.barter))));
	if (amount > refundable)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_REFUND_EXCEEDS),
				 errmsg("refund of %s exceeds what transfer " INT64_FORMAT " has left",
						CreditText(amount), original_id),
				 errdetail("At most %s of the %s moved can still be refunded.",
						   CreditText(Max(refundable, 0)), CreditText(o.amount - o.barter))));

	payer = LedgerFindAccount(&batch, o.payer);
	payee = LedgerFindAccount(&batch, o.payee);
	LedgerCheckAvailable(payee, amount, batch.currency);
	t = LedgerAddTransfer(&batch, TRANSFER_REFUND, payee, payer, amount);
	t->refund_of = original_id;
	t->reference = reason;
	t->idempotency_key = key;
	result = t->id;
	LedgerMove(&batch, t, payee, payer, amount, ENTRY_REFUND, ENTRY_REFUND);
	payee->score_change = -1;
	LedgerFinish(&batch, key, result);
	PG_RETURN_INT64(result);
}

Datum
compay_grant_barter(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"holder", "counterparty", "amount"};
	const char *nodes[2];
	Credit		amount;
	char	   *reference = TextArgOrNull(fcinfo, 3);
	char	   *key = TextArgOrNull(fcinfo, 4);
	int64		result;
	LedgerBatch batch;
	LedgerAccount *holder;
	LedgerAccount *counterparty;
	LedgerTransfer *t;

	LedgerRequireArgs(fcinfo, 3, names);
	nodes[0] = LedgerCheckNode(TextArgOrNull(fcinfo, 0));
	nodes[1] = LedgerCheckNode(TextArgOrNull(fcinfo, 1));
	amount = PG_GETARG_CREDIT(2);
	LedgerCheckAmount(amount, "a barter grant");
	LedgerCheckReference(reference, "reference");
	if (strcmp(nodes[0], nodes[1]) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("node \"%s\" cannot hold barter credits with itself",
						CompayEchoInput(nodes[0]))));
	NodeRequire(nodes[1], true);	/* the counterparty grants them */
	ShardRequireLocal(nodes[0], "holder");	/* barter is between nodes of one shard */
	ShardRequireLocal(nodes[1], "counterparty");
	LedgerBegin(&batch, "CREDIT");

	SPI_connect();
	if (key && IdempotencyClaim(key, "grant_barter",
								TransferRequest(nodes[0], nodes[1], amount, reference,
												batch.currency), &result))
	{
		SPI_finish();
		PG_RETURN_INT64(result);
	}
	/* The counterparty gives the credits: the paying side, listed first. */
	LedgerLockAccounts(&batch, (const char *[]) {nodes[1], nodes[0]}, 2, 1,
					   LedgerAutoCreate());
	holder = LedgerFindAccount(&batch, nodes[0]);
	counterparty = LedgerFindAccount(&batch, nodes[1]);
	t = LedgerAddTransfer(&batch, TRANSFER_BARTER, counterparty, holder, amount);
	t->barter_amount = amount;
	t->reference = reference;
	t->idempotency_key = key;
	result = t->id;
	LedgerPost(&batch, holder, ENTRY_BARTER, amount, result, 0, counterparty->id);
	LedgerPost(&batch, counterparty, ENTRY_BARTER, -amount, result, 0, holder->id);
	holder->flags |= ACCOUNT_FLAG_BARTER;
	ChangeBarter(&batch, holder, counterparty, amount, true);
	LedgerFinish(&batch, key, result);
	PG_RETURN_INT64(result);
}

/*
 * compay.clawback_repay(node_id, amount, currency, reference): the node
 * pays amount of what it owes back to $clawbacks from its available
 * balance (PY001 when it cannot), for compay.process_settlement().  Not
 * granted to any role.  Returns the transfer id.
 */
Datum
compay_clawback_repay(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"node_id", "amount", "currency"};
	const char *nodes[2];
	char	   *reference = TextArgOrNull(fcinfo, 3);
	Credit		amount;
	int64		result;
	LedgerBatch batch;

	LedgerRequireArgs(fcinfo, 3, names);
	nodes[0] = LedgerCheckNode(TextArgOrNull(fcinfo, 0));
	nodes[1] = "$clawbacks";
	amount = PG_GETARG_CREDIT(1);
	LedgerCheckAmount(amount, "a repayment");
	LedgerCheckReference(reference, "reference");
	LedgerBegin(&batch, LedgerCheckCurrency(TextArgOrNull(fcinfo, 2)));
	NodeRequire(NULL, true);

	SPI_connect();
	LedgerLockAccounts(&batch, nodes, 2, 1, false);
	result = PostTransfer(&batch, LedgerFindAccount(&batch, nodes[0]),
						  LedgerFindAccount(&batch, nodes[1]), amount, reference, NULL);
	LedgerFinish(&batch, NULL, 0);
	PG_RETURN_INT64(result);
}
