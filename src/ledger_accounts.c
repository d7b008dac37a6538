/*-------------------------------------------------------------------------
 *
 * ledger_accounts.c
 *	  SQL-callable account and deposit functions: open_account, deposit,
 *	  admin_deposit, deposit_from_wallet, set_credit_limit; and the journal
 *	  of what compay_admin did.
 *
 * Wallet-backed currencies (XMR) are credited only by the wallet's
 * deposits or by compay_admin with a journaled reason; a credit limit
 * other than the default is set only by compay_admin, journaled too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "compay.h"
#include "ledger.h"
#include "node_roles.h"
#include "shard.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_open_account);
PG_FUNCTION_INFO_V1(compay_deposit);
PG_FUNCTION_INFO_V1(compay_admin_deposit);
PG_FUNCTION_INFO_V1(compay_deposit_from_wallet);
PG_FUNCTION_INFO_V1(compay_set_credit_limit);

static SpiStatement open_stmt = {
	.sql = "INSERT INTO compay.accounts (node_id, currency, credit_limit) "
	"VALUES ($1, $2, $3) ON CONFLICT (node_id, currency) DO NOTHING RETURNING id",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, SPI_ARG_CREDIT}
};

static SpiStatement account_id_stmt = {
	.sql = "SELECT id FROM compay.accounts WHERE node_id = $1 AND currency = $2",
	.nargs = 2,
	.argtypes = {TEXTOID, TEXTOID}
};

static SpiStatement limit_check_stmt = {
	.sql = "SELECT compay.account_within_limit(balance, reserved, $3, flags) FROM compay.accounts "
	"WHERE node_id = $1 AND currency = $2 FOR UPDATE",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, SPI_ARG_CREDIT}
};

static SpiStatement set_limit_stmt = {
	.sql = "UPDATE compay.accounts SET credit_limit = $3, updated_at = now() "
	"WHERE node_id = $1 AND currency = $2",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, SPI_ARG_CREDIT}
};

static SpiStatement admin_journal_stmt = {
	.sql = "INSERT INTO compay.admin_journal (action, node_id, currency, amount, reason, "
	"transfer_id, role_name) VALUES ($1, $2, $3, $4, $5, $6, $7)",
	.nargs = 7,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, SPI_ARG_CREDIT, TEXTOID, INT8OID, TEXTOID}
};

/*
 * Records what compay_admin did, who did it and why (inside SPI).  A 0.1
 * database that runs this library before ALTER EXTENSION compay UPDATE has
 * no journal yet: its admin calls keep working unjournaled, as in 0.1.
 */
static void
AdminJournal(const char *action, const char *node, const char *currency,
			 Credit amount, const char *reason, int64 transfer_id)
{
	Datum		args[7];
	char		nulls[7] = "       ";

	if (!OidIsValid(get_relname_relid("admin_journal", get_namespace_oid("compay", false))))
		return;

	args[0] = CStringGetTextDatum(action);
	args[1] = CStringGetTextDatum(node);
	args[2] = CStringGetTextDatum(currency);
	args[3] = CreditGetDatum(amount);
	args[4] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[4] = reason ? ' ' : 'n';
	args[5] = Int64GetDatum(transfer_id);
	nulls[5] = transfer_id > 0 ? ' ' : 'n';
	args[6] = CStringGetTextDatum(NodeCallerName());
	SpiRun(&admin_journal_stmt, args, nulls, false, 0);
}

static SpiStatement shortfalls_owed_stmt = {
	.sql = "SELECT 1 FROM compay.shortfalls WHERE requester = $1 AND currency = $2 "
	"AND collected_at IS NULL LIMIT 1",
	.nargs = 2,
	.argtypes = {TEXTOID, TEXTOID}
};

static SpiStatement shortfalls_lock_stmt = {
	.sql = "SELECT compay.lock_shortfalls($1, $2)",
	.nargs = 2,
	.argtypes = {TEXTOID, TEXTOID}
};

static SpiStatement shortfalls_collect_stmt = {
	.sql = "SELECT compay.collect_shortfalls($1, $2, $3)",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, SPI_ARG_CREDIT}
};

/*
 * Shortfalls (src/jobs.sql): what a requester owes providers beyond the
 * escrow of its jobs, collected from its next deposits.  Before the deposit
 * locks its accounts, ShortfallsLock locks the requester's owed shortfalls
 * and then every account the collection moves money between, in ascending
 * id (the ledger's lock order); after it, ShortfallsCollect collects.  Both
 * run inside SPI.  A 0.1 database running this library before ALTER
 * EXTENSION compay UPDATE has no shortfalls: nothing to do.
 */
static bool
ShortfallsLock(const char *node, const char *currency)
{
	Datum		args[2];
	bool		isnull;

	if (!OidIsValid(get_relname_relid("shortfalls", get_namespace_oid("compay", false))))
		return false;
	args[0] = CStringGetTextDatum(node);
	args[1] = CStringGetTextDatum(currency);
	/* Most deposits owe nothing: one index probe, no PL/pgSQL call. */
	if (SpiRun(&shortfalls_owed_stmt, args, NULL, false, 1) == 0)
		return false;
	SpiRun(&shortfalls_lock_stmt, args, NULL, false, 1);
	return DatumGetBool(SpiGetDatum(0, 1, &isnull));
}

static void
ShortfallsCollect(const char *node, const char *currency, Credit amount)
{
	Datum		args[3];

	SPI_connect();
	args[0] = CStringGetTextDatum(node);
	args[1] = CStringGetTextDatum(currency);
	args[2] = CreditGetDatum(amount);
	SpiRun(&shortfalls_collect_stmt, args, NULL, false, 1);
	SPI_finish();
}

/* Raises 22004 naming the first of the first n arguments that is NULL. */
void
LedgerRequireArgs(FunctionCallInfo fcinfo, int n, const char *const *names)
{
	for (int i = 0; i < n; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be NULL", names[i])));
}

Datum
compay_open_account(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"node_id", "currency"};
	const char *node;
	const char *currency;
	Credit		limit;
	bool		custom_limit;
	Datum		args[3];
	int64		id;

	LedgerRequireArgs(fcinfo, 2, names);
	node = LedgerCheckNode(TextArgOrNull(fcinfo, 0));
	currency = LedgerCheckCurrency(TextArgOrNull(fcinfo, 1));
	limit = PG_ARGISNULL(2) ? LedgerDefaultCreditLimit(currency) : PG_GETARG_CREDIT(2);
	if (limit < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a credit limit cannot be negative")));
	NodeRequire(node, true);
	ShardRequireLocal(node, "node");
	custom_limit = limit != LedgerDefaultCreditLimit(currency);
	if (custom_limit && !NodeCallerIsAdmin())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to open an account with credit limit %s",
						CreditText(limit)),
				 errdetail("%s accounts open with the default limit %s; another limit needs compay_admin.",
						   currency, CreditText(LedgerDefaultCreditLimit(currency))),
				 errhint("Open it without a limit; a compay_admin then sets one with compay.set_credit_limit().")));

	SPI_connect();
	args[0] = CStringGetTextDatum(node);
	args[1] = CStringGetTextDatum(currency);
	args[2] = CreditGetDatum(limit);
	if (SpiRun(&open_stmt, args, NULL, false, 1) == 0)
	{
		if (SpiRun(&account_id_stmt, args, NULL, false, 1) == 0)
			elog(ERROR, "account of node \"%s\" vanished", node);
		id = SpiGetInt64(0, 1);
	}
	else
	{
		id = SpiGetInt64(0, 1);
		if (custom_limit)
			AdminJournal("credit_limit", node, currency, limit, NULL, 0);
	}
	SPI_finish();
	PG_RETURN_INT64(id);
}

/* Who credits money from outside: the application, compay_admin, the wallet. */
typedef enum DepositPath
{
	DEPOSIT_APP,
	DEPOSIT_ADMIN,
	DEPOSIT_WALLET
} DepositPath;

static void
CheckDepositPath(DepositPath path, const char *currency, const char *reason)
{
	if (path == DEPOSIT_APP)
	{
		NodeRequire(NULL, true);	/* a node never credits itself */
		if (LedgerWalletBacked(currency))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to deposit %s", currency),
					 errdetail("%s is backed by the treasury wallet: only the wallet's deposits (compay.deposit_address()) credit it.",
							   currency),
					 errhint("A compay_admin credits it with compay.admin_deposit(node_id, amount, currency, reason), which journals the reason.")));
	}
	else if (path == DEPOSIT_ADMIN)
	{
		if (reason == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("reason must not be NULL"),
					 errdetail("compay.admin_journal keeps why compay_admin credited an account.")));
		if (strspn(reason, " \t\r\n") == strlen(reason))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("reason must not be blank"),
					 errdetail("compay.admin_journal keeps why compay_admin credited an account.")));
	}
}

/*
 * Credits node with amount from $external.  Argument 3 is the transfer's
 * reference (for compay_admin: the reason, also journaled).
 */
static Datum
Deposit(FunctionCallInfo fcinfo, DepositPath path)
{
	static const char *const names[] = {"node_id", "amount", "currency"};
	const char *nodes[2];
	Credit		amount;
	char	   *reference = TextArgOrNull(fcinfo, 3);
	char	   *key = TextArgOrNull(fcinfo, 4);
	int64		result;
	bool		owes;
	LedgerBatch batch;
	LedgerTransfer *t;

	LedgerRequireArgs(fcinfo, 3, names);
	nodes[0] = LedgerCheckNode(TextArgOrNull(fcinfo, 0));
	nodes[1] = "$external";
	ShardRequireLocal(nodes[0], "node");
	amount = PG_GETARG_CREDIT(1);
	LedgerCheckAmount(amount, "a deposit");
	LedgerCheckReference(TextArgOrNull(fcinfo, 3), "reference");
	LedgerBegin(&batch, LedgerCheckCurrency(TextArgOrNull(fcinfo, 2)));
	CheckDepositPath(path, batch.currency, reference);

	SPI_connect();
	if (key && IdempotencyClaim(key, path == DEPOSIT_ADMIN ? "admin_deposit" : "deposit",
								psprintf("%s|%s|%s|%s", nodes[0], CreditText(amount),
										 batch.currency, reference ? reference : ""),
								&result))
	{
		SPI_finish();
		PG_RETURN_INT64(result);
	}
	owes = ShortfallsLock(nodes[0], batch.currency);
	LedgerLockAccounts(&batch, nodes, 2, 0, LedgerAutoCreate());
	t = LedgerAddTransfer(&batch, TRANSFER_DEPOSIT, LedgerFindAccount(&batch, nodes[1]),
						  LedgerFindAccount(&batch, nodes[0]), amount);
	t->reference = reference;
	t->idempotency_key = key;
	result = t->id;
	LedgerMove(&batch, t, LedgerFindAccount(&batch, nodes[1]),
			   LedgerFindAccount(&batch, nodes[0]), amount, ENTRY_DEBIT, ENTRY_CREDIT);
	if (path == DEPOSIT_ADMIN)
		AdminJournal("deposit", nodes[0], batch.currency, amount, reference, result);
	LedgerFinish(&batch, key, result);
	if (owes)
		ShortfallsCollect(nodes[0], batch.currency, amount);
	PG_RETURN_INT64(result);
}

/* compay.deposit(): the application's; never a wallet-backed currency. */
Datum
compay_deposit(PG_FUNCTION_ARGS)
{
	return Deposit(fcinfo, DEPOSIT_APP);
}

/* compay.admin_deposit(node_id, amount, currency, reason, idempotency_key). */
Datum
compay_admin_deposit(PG_FUNCTION_ARGS)
{
	return Deposit(fcinfo, DEPOSIT_ADMIN);
}

/* compay.deposit_from_wallet(): compay.record_deposits() only. */
Datum
compay_deposit_from_wallet(PG_FUNCTION_ARGS)
{
	return Deposit(fcinfo, DEPOSIT_WALLET);
}

Datum
compay_set_credit_limit(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"node_id", "credit_limit", "currency"};
	Datum		args[3];
	Credit		limit;
	bool		isnull;

	LedgerRequireArgs(fcinfo, 3, names);
	limit = PG_GETARG_CREDIT(1);
	if (limit < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a credit limit cannot be negative")));
	args[0] = CStringGetTextDatum(LedgerCheckNode(TextArgOrNull(fcinfo, 0)));
	args[1] = CStringGetTextDatum(LedgerCheckCurrency(TextArgOrNull(fcinfo, 2)));
	args[2] = CreditGetDatum(limit);

	SPI_connect();
	if (SpiRun(&limit_check_stmt, args, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_UNKNOWN_ACCOUNT),
				 errmsg("node \"%s\" has no %s account", TextArgOrNull(fcinfo, 0),
						TextArgOrNull(fcinfo, 2))));
	if (!DatumGetBool(SpiGetDatum(0, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_INSUFFICIENT_FUNDS),
				 errmsg("credit limit %s is below what node \"%s\" already uses",
						CreditText(limit), TextArgOrNull(fcinfo, 0)),
				 errdetail("Balance less reserved plus the limit must not fall below zero.")));
	SpiRun(&set_limit_stmt, args, NULL, false, 0);
	AdminJournal("credit_limit", TextArgOrNull(fcinfo, 0), TextArgOrNull(fcinfo, 2), limit,
				 NULL, 0);
	SPI_finish();
	PG_RETURN_VOID();
}
