/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The ledger core.  Owns the lock order: every ordinary account a call
 *	  touches is locked by one statement, in ascending id order, then one
 *	  row of each system account it touches (ledger_stripes.c), before
 *	  anything is read for a decision or written.  Then holds, then
 *	  settlements, then payouts (each in its own module).
 *
 * Entries are posted against the locked copies in memory, which checks
 * funds and extends each account's hash chain, and LedgerFlush writes the
 * accounts, the journal and the transfers with one statement each.  The
 * table's CHECK constraint on accounts is the last guard: a posting that
 * got past the checks here still cannot leave an account past its limit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "storage/itemptr.h"

#include "compay.h"
#include "ledger.h"
#include "node_roles.h"
#include "shard.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_account_within_limit);
PG_FUNCTION_INFO_V1(compay_check_node_id);

static char *default_credit_limit_text = NULL;
static bool auto_create_accounts = true;

/* System accounts ('$...') are always created, with flag SYSTEM, limit 0. */
static SpiStatement create_stmt = {
	.sql = "INSERT INTO compay.accounts (node_id, currency, credit_limit, flags) "
	"SELECT n, $1, CASE WHEN n LIKE '$%' THEN '0'::compay.credit ELSE $3 END, "
	"CASE WHEN n LIKE '$%' THEN 1 ELSE 0 END FROM unnest($2) AS n "
	"ON CONFLICT (node_id, currency) DO NOTHING",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTARRAYOID, SPI_ARG_CREDIT}
};

/* The accounts table's CHECK: see compay.account_within_limit(). */
Datum
compay_account_within_limit(PG_FUNCTION_ARGS)
{
	Credit		balance = PG_GETARG_CREDIT(0);
	Credit		reserved = PG_GETARG_CREDIT(1);
	Credit		limit = PG_GETARG_CREDIT(2);
	int32		flags = PG_GETARG_INT32(3);

	if (reserved < 0 || limit < 0)
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL((flags & ACCOUNT_FLAG_SYSTEM) != 0 ||
				   CreditAvailable(balance, reserved, limit) >= 0);
}

void
LedgerInit(void)
{
	DefineCustomStringVariable("compay.default_credit_limit",
							   "Credit limit of a CREDIT account opened without one.",
							   "Accounts in other currencies (XMR) open with limit 0.",
							   &default_credit_limit_text, "1000000",
							   PGC_SUSET, 0,
							   CreditCheckAmountSetting, NULL, NULL);
	DefineCustomBoolVariable("compay.auto_create_accounts",
							 "Deposits, transfers and captures open a missing receiving account on first use.",
							 "The paying side of a debit, hold or transfer is never opened on first use.",
							 &auto_create_accounts, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
}

Credit
LedgerDefaultCreditLimit(const char *currency)
{
	Credit		v = 0;

	if (strcmp(currency, "CREDIT") != 0)
		return 0;
	if (CreditParseDecimal(default_credit_limit_text, CREDIT_SCALE,
						   CREDIT_ROUND_EXACT, true, &v) != CREDIT_OK)
		elog(ERROR, "compay.default_credit_limit is not a credit");
	return v;
}

/*
 * Whether the treasury wallet backs currency: its accounts hold coins the
 * wallet holds, so only the wallet's deposits (or compay_admin) credit them.
 */
bool
LedgerWalletBacked(const char *currency)
{
	return strcmp(currency, "XMR") == 0;
}

bool
LedgerAutoCreate(void)
{
	return auto_create_accounts;
}

/* Text argument n of a SQL-callable function, or NULL. */
char *
TextArgOrNull(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

void
LedgerCheckAmount(Credit amount, const char *what)
{
	if (amount <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", what)));
}

/* Unicode White_Space, which a node id may not start or end with. */
static bool
IsUnicodeSpace(pg_wchar c)
{
	return c == 0x20 || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 ||
		c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
		c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Control characters (Unicode Cc): C0, DEL and C1. */
static bool
IsControl(pg_wchar c)
{
	return c < 0x20 || (c >= 0x7F && c <= 0x9F);
}

/*
 * The characters of str that matter to a node id: the first, the last,
 * and whether any is a control character.  In a UTF-8 database every
 * character is decoded; in others only ASCII is judged (bytes above 0x7F
 * may be parts of characters).
 */
static void
ScanNodeId(const char *str, int len, pg_wchar *first, pg_wchar *last, bool *control)
{
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	int			i = 0;

	*control = false;
	while (i < len)
	{
		int			n = utf8 ? pg_utf_mblen((const unsigned char *) str + i) : 1;
		pg_wchar	c = utf8 ? utf8_to_unicode((const unsigned char *) str + i)
			: (unsigned char) str[i];

		if (!utf8 && c >= 0x80)
			c = 'x';			/* not judged */
		if (i == 0)
			*first = c;
		*last = c;
		*control = *control || IsControl(c);
		i += n;
	}
}

/*
 * A node id as users may give it: 1 to 200 characters, not starting with
 * $ (the system accounts), no control character, no white space at either
 * end (so none is blank, and " a" is not a second "a").  Every bad id is
 * 22023.
 */
const char *
LedgerCheckNode(const char *node_id)
{
	int			bytes = strlen(node_id);
	int			len = pg_mbstrlen_with_len(node_id, bytes);
	pg_wchar	first = 0;
	pg_wchar	last = 0;
	bool		control;

	if (len == 0 || len > LEDGER_NODE_ID_LEN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a node id has 1 to %d characters", LEDGER_NODE_ID_LEN_MAX),
				 errdetail("The node id given has %d characters.", len)));
	ScanNodeId(node_id, bytes, &first, &last, &control);
	if (control)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a node id cannot contain control characters"),
				 errdetail("Tabs, line breaks and other control characters are not allowed in node ids.")));
	if (IsUnicodeSpace(first) || IsUnicodeSpace(last))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("node id \"%s\" starts or ends with white space",
						CompayEchoInput(node_id)),
				 errdetail("A node id cannot be blank or carry spaces at either end.")));
	if (node_id[0] == '$')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("node id \"%s\" is reserved", CompayEchoInput(node_id)),
				 errdetail("Node ids starting with $ name the system accounts.")));
	return node_id;
}

/*
 * compay.check_node_id(node_id): LedgerCheckNode for the SQL functions,
 * so that every entry point judges node ids alike.  Returns the id.
 */
Datum
compay_check_node_id(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a node id must not be NULL")));
	LedgerCheckNode(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/*
 * A reference or reason of a money call: NULL, or at most
 * LEDGER_REFERENCE_LEN_MAX characters.  what names the argument.
 */
const char *
LedgerCheckReference(const char *reference, const char *what)
{
	int			len;

	if (reference == NULL)
		return NULL;
	len = pg_mbstrlen_with_len(reference, strlen(reference));
	if (len > LEDGER_REFERENCE_LEN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s has more than %d characters", what, LEDGER_REFERENCE_LEN_MAX),
				 errdetail("The %s given has %d characters.", what, len)));
	return reference;
}

/* A currency code: an upper-case letter, then 1 to 15 of A-Z, 0-9 and _. */
const char *
LedgerCheckCurrency(const char *currency)
{
	int			len = strlen(currency);
	bool		ok = len >= 2 && len <= 16 && currency[0] >= 'A' && currency[0] <= 'Z';

	for (int i = 1; ok && i < len; i++)
		ok = (currency[i] >= 'A' && currency[i] <= 'Z') ||
			(currency[i] >= '0' && currency[i] <= '9') || currency[i] == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid currency code \"%s\"", CompayEchoInput(currency)),
				 errhint("A currency code is upper case, such as CREDIT or XMR.")));
	return currency;
}

void
LedgerBegin(LedgerBatch *batch, const char *currency)
{
	NodeRefuseReadOnly();
	memset(batch, 0, sizeof(*batch));
	batch->currency = currency;
	batch->now = GetCurrentTransactionStartTimestamp();
}

int64
LedgerNextId(const char *sequence)
{
	int64		id = nextval_internal(CompayRelationOid(sequence), false);

	ShardCheckId(id, sequence);
	return id;
}

/* A text[] of values; NULL pointers become NULL elements. */
static Datum
TextArray(const char **values, int n)
{
	Datum	   *datums = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = values[i] == NULL;
		datums[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(values[i]);
	}
	return PointerGetDatum(construct_md_array(datums, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

static int
CompareAccountId(const void *a, const void *b)
{
	int64		x = ((const LedgerAccount *) a)->id;
	int64		y = ((const LedgerAccount *) b)->id;

	return (x > y) - (x < y);
}

static int
CompareAccountNode(const void *a, const void *b)
{
	return strcmp((*(LedgerAccount *const *) a)->node_id,
				  (*(LedgerAccount *const *) b)->node_id);
}

/*
 * Sorts the locked accounts by id and indexes them by node id; a system
 * account's stripe row is found by the account's name.
 */
static void
IndexLockedAccounts(LedgerBatch *batch)
{
	qsort(batch->accounts, batch->naccounts, sizeof(LedgerAccount), CompareAccountId);
	batch->by_node = palloc(sizeof(LedgerAccount *) * Max(batch->naccounts, 1));
	for (int i = 0; i < batch->naccounts; i++)
	{
		LedgerStripeBase(batch->accounts[i].node_id);
		batch->by_node[i] = &batch->accounts[i];
	}
	qsort(batch->by_node, batch->naccounts, sizeof(LedgerAccount *), CompareAccountNode);
}

/* Locks the ordinary accounts of nodes (distinct); returns how many exist. */
static int
LockAccountRows(LedgerBatch *batch, const char **nodes, int n)
{
	int			nfound;

	batch->naccounts = 0;
	return LedgerHeapLockAccounts(batch, nodes, n, LockWaitBlock, &nfound);
}

static int
CompareCString(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Whether nodes (sorted, distinct) has node_id. */
static bool
HasNode(const char **nodes, int n, const char *node_id)
{
	return bsearch(&node_id, nodes, n, sizeof(char *), CompareCString) != NULL;
}

/*
 * PY002 for the first node of nodes (sorted, distinct) that is not locked
 * (among locked, sorted) and is not a system account.  payer tells which
 * side it is on: a payer's account is never opened on first use, so the
 * message says so.
 */
static void
RequireAccounts(LedgerBatch *batch, const char **nodes, int n,
				const char **locked, int nlocked, bool payer)
{
	for (int i = 0; i < n; i++)
	{
		if (nodes[i][0] == '$' || HasNode(locked, nlocked, nodes[i]))
			continue;
		if (payer)
			ereport(ERROR,
					(errcode(ERRCODE_COMPAY_UNKNOWN_ACCOUNT),
					 errmsg("node \"%s\" has no %s account to pay from",
							CompayEchoInput(nodes[i]), batch->currency),
					 errdetail("Node \"%s\" has no account in currency %s, and the paying side of a debit, hold or transfer is never opened on first use.",
							   CompayEchoInput(nodes[i]), batch->currency),
					 errhint("Open it with compay.open_account() or fund it with a deposit.")));
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_UNKNOWN_ACCOUNT),
				 errmsg("node \"%s\" has no %s account", CompayEchoInput(nodes[i]),
						batch->currency),
				 errdetail("compay.auto_create_accounts is off, so receiving accounts are not opened on first use either."),
				 errhint("Open one with compay.open_account(), or turn on compay.auto_create_accounts.")));
	}
}

/*
 * The distinct node ids of nodes, sorted (a new array); a stripe row's
 * name ('$name#3', as SQL may read it from compay.accounts) counts as its
 * system account's.
 */
static const char **
SortedDistinct(const char **nodes, int n, int *ndistinct)
{
	const char **sorted = palloc(sizeof(char *) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		sorted[i] = nodes[i];
		if (nodes[i][0] == '$' && strchr(nodes[i], '#') != NULL)
		{
			char	   *base = pstrdup(nodes[i]);

			LedgerStripeBase(base);
			sorted[i] = base;
		}
	}
	qsort(sorted, n, sizeof(char *), CompareCString);
	*ndistinct = 0;
	for (int i = 0; i < n; i++)
		if (*ndistinct == 0 || strcmp(sorted[*ndistinct - 1], sorted[i]) != 0)
			sorted[(*ndistinct)++] = sorted[i];
	return sorted;
}

/* The node ids of the locked accounts, sorted. */
static const char **
LockedNodes(LedgerBatch *batch)
{
	const char **nodes = palloc(sizeof(char *) * Max(batch->naccounts, 1));

	for (int i = 0; i < batch->naccounts; i++)
		nodes[i] = batch->accounts[i].node_id;
	qsort(nodes, batch->naccounts, sizeof(char *), CompareCString);
	return nodes;
}

/* Opens the accounts of nodes that are missing (system accounts: flag 1). */
static void
CreateAccounts(LedgerBatch *batch, const char **nodes, int n)
{
	Datum		args[3];

	args[0] = CStringGetTextDatum(batch->currency);
	args[1] = TextArray(nodes, n);
	args[2] = CreditGetDatum(LedgerDefaultCreditLimit(batch->currency));
	SpiRun(&create_stmt, args, NULL, false, 0);
}

/*
 * Locks one row of the system account name (ledger_stripes.c): the first
 * of its candidate rows (stripe 0, then this backend's stripe) that no
 * other transaction holds, creating a missing one; when every candidate is
 * held, waits for the last.  So a flow through a system account waits only
 * when another holds this backend's own stripe too.
 */
static void
LockSystemAccount(LedgerBatch *batch, const char *name)
{
	const char *rows[2] = {name, LedgerStripeNode(name)};
	int			nrows = rows[1] == name ? 1 : 2;
	int			nfound;

	for (int i = 0; i < nrows; i++)
	{
		LockWaitPolicy wait = i == nrows - 1 && nrows == 1 ? LockWaitBlock : LockWaitSkip;

		if (LedgerHeapLockAccounts(batch, &rows[i], 1, wait, &nfound) == 1)
			return;
		if (nfound == 0)
		{
			CreateAccounts(batch, &rows[i], 1);
			if (LedgerHeapLockAccounts(batch, &rows[i], 1, wait, &nfound) == 1)
				return;
		}
	}
	if (LedgerHeapLockAccounts(batch, &rows[nrows - 1], 1, LockWaitBlock, &nfound) != 1)
		elog(ERROR, "system account %s could not be locked", name);
}

/*
 * Locks the accounts of node_ids in the batch's currency.  The ordinary
 * accounts are locked in ascending id order, in one statement; then each
 * system account, by name, on a row no other transaction holds if it can
 * (LockSystemAccount).  The first npayers of node_ids are the paying side
 * (debits, holds, grants of barter credits): each must have an account
 * already, else PY002, raised before anything is written, so a mistyped
 * payer never opens an account that can spend on credit.  Missing system
 * accounts are always created; the other missing accounts (the receiving
 * side) only when create_missing, with the default credit limit, as
 * compay.open_account() would; else PY002.
 */
void
LedgerLockAccounts(LedgerBatch *batch, const char **node_ids, int n,
				   int npayers, bool create_missing)
{
	const char **sorted;
	const char **payers;
	const char **locked;
	const char **ordinary;
	const char **system;
	int			ndistinct;
	int			nordinary = 0;
	int			nsystem = 0;
	int			npayers_distinct;

	Assert(npayers >= 0 && npayers <= n);
	if (n > LEDGER_ACCOUNTS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("one call may touch at most %d accounts", LEDGER_ACCOUNTS_MAX)));
	sorted = SortedDistinct(node_ids, n, &ndistinct);
	ordinary = palloc(sizeof(char *) * Max(ndistinct, 1));
	system = palloc(sizeof(char *) * Max(ndistinct, 1));
	for (int i = 0; i < ndistinct; i++)
	{
		if (sorted[i][0] == '$')
			system[nsystem++] = sorted[i];
		else
			ordinary[nordinary++] = sorted[i];
	}
	batch->accounts = palloc0(sizeof(LedgerAccount) * Max(ndistinct, 1));

	if (LockAccountRows(batch, ordinary, nordinary) != nordinary)
	{
		locked = LockedNodes(batch);
		payers = SortedDistinct(node_ids, npayers, &npayers_distinct);
		RequireAccounts(batch, payers, npayers_distinct, locked, batch->naccounts, true);
		if (!create_missing)
			RequireAccounts(batch, sorted, ndistinct, locked, batch->naccounts, false);
		/* All at once, system accounts too, so ids follow the names' order. */
		CreateAccounts(batch, sorted, ndistinct);
		if (LockAccountRows(batch, ordinary, nordinary) != nordinary)
			elog(ERROR, "accounts created for %s could not be locked", batch->currency);
	}
	for (int i = 0; i < nsystem; i++)
		LockSystemAccount(batch, system[i]);
	IndexLockedAccounts(batch);
}

/*
 * The locked account of node_id, or NULL; a binary search by node id.  A
 * stripe row's name (read from compay.accounts, as a refund of a reward
 * reads its payer) finds its system account's locked row.
 */
LedgerAccount *
LedgerFindAccount(LedgerBatch *batch, const char *node_id)
{
	int			lo = 0;
	int			hi = batch->naccounts - 1;

	if (node_id[0] == '$' && strchr(node_id, '#') != NULL)
	{
		char	   *base = pstrdup(node_id);

		LedgerStripeBase(base);
		node_id = base;
	}

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			cmp = strcmp(batch->by_node[mid]->node_id, node_id);

		if (cmp == 0)
			return batch->by_node[mid];
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/* PY001 unless account can spend amount more (system accounts always can). */
void
LedgerCheckAvailable(LedgerAccount *account, Credit amount, const char *currency)
{
	Credit		available;

	if (account->flags & ACCOUNT_FLAG_SYSTEM)
		return;
	available = CreditAvailable(account->balance, account->reserved,
								account->credit_limit);
	if (available >= amount)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_COMPAY_INSUFFICIENT_FUNDS),
			 errmsg("insufficient funds in the %s account of node \"%s\"",
					currency, account->node_id),
			 errdetail("Available is %s (balance %s, reserved %s, credit limit %s); %s is needed.",
					   CreditText(available), CreditText(account->balance),
					   CreditText(account->reserved),
					   CreditText(account->credit_limit), CreditText(amount))));
}

static Credit
AddOrOverflow(Credit a, Credit b)
{
	Credit		r;

	if (__builtin_add_overflow(a, b, &r) || !CreditInRange(r))
		CreditReportOverflow();
	return r;
}

/*
 * Posts one journal entry on account: amount changes the balance (debit,
 * credit, refund), the reserved amount (reserve, release) or neither
 * (barter, whose amount is the change of the barter position).
 */
void
LedgerPost(LedgerBatch *batch, LedgerAccount *account, EntryKind kind,
		   Credit amount, int64 transfer_id, int64 hold_id, int64 counterparty)
{
	LedgerEntry *e;

	if (kind == ENTRY_DEBIT || kind == ENTRY_CREDIT || kind == ENTRY_REFUND)
		account->balance = AddOrOverflow(account->balance, amount);
	else if (kind == ENTRY_RESERVE || kind == ENTRY_RELEASE)
		account->reserved = AddOrOverflow(account->reserved, amount);
	Assert(account->reserved >= 0);

	if (batch->nentries == batch->maxentries)
	{
		batch->maxentries = Max(8, batch->maxentries * 2);
		batch->entries = batch->entries == NULL ?
			palloc(sizeof(LedgerEntry) * batch->maxentries) :
			repalloc(batch->entries, sizeof(LedgerEntry) * batch->maxentries);
	}
	e = &batch->entries[batch->nentries++];
	e->account_id = account->id;
	e->seq = ++account->seq;
	e->kind = kind;
	e->amount = amount;
	e->balance_after = account->balance;
	e->reserved_after = account->reserved;
	e->transfer_id = transfer_id;
	e->hold_id = hold_id;
	e->counterparty = counterparty;
	if (batch->hash_ctx == NULL)
		batch->hash_ctx = pg_cryptohash_create(PG_SHA256);
	JournalEntryHash(batch->hash_ctx, account->hash, e, batch->now, e->hash);
	memcpy(account->hash, e->hash, LEDGER_HASH_LEN);
	account->dirty = true;
}

/*
 * Queues a transfer row with a fresh id.  The pointer is valid until the
 * next LedgerAddTransfer: fill in the optional fields right away.
 */
LedgerTransfer *
LedgerAddTransfer(LedgerBatch *batch, TransferKind kind, LedgerAccount *from,
				  LedgerAccount *to, Credit amount)
{
	LedgerTransfer *t;

	Assert(amount > 0 && from->id != to->id);
	if (batch->ntransfers == batch->maxtransfers)
	{
		batch->maxtransfers = Max(4, batch->maxtransfers * 2);
		batch->transfers = batch->transfers == NULL ?
			palloc(sizeof(LedgerTransfer) * batch->maxtransfers) :
			repalloc(batch->transfers, sizeof(LedgerTransfer) * batch->maxtransfers);
	}
	t = &batch->transfers[batch->ntransfers++];
	memset(t, 0, sizeof(*t));
	t->id = LedgerNextId("transfers_id_seq");
	t->kind = kind;
	t->from_account = from->id;
	t->to_account = to->id;
	t->amount = amount;
	return t;
}

/* Moves amount from one account's balance to another's: two entries. */
void
LedgerMove(LedgerBatch *batch, LedgerTransfer *transfer, LedgerAccount *from,
		   LedgerAccount *to, Credit amount, EntryKind debit_kind,
		   EntryKind credit_kind)
{
	Assert(amount > 0);
	LedgerPost(batch, from, debit_kind, -amount, transfer->id,
			   transfer->hold_id, to->id);
	LedgerPost(batch, to, credit_kind, amount, transfer->id,
			   transfer->hold_id, from->id);
}

static int
CountDirty(LedgerBatch *batch)
{
	int			n = 0;

	for (int i = 0; i < batch->naccounts; i++)
		n += batch->accounts[i].dirty ? 1 : 0;
	return n;
}

/*
 * Ends a money-moving call: writes the batch, records its result under the
 * idempotency key (if any) in the same transaction, and leaves SPI.
 */
void
LedgerFinish(LedgerBatch *batch, const char *key, int64 result)
{
	LedgerFlush(batch);
	if (key)
		IdempotencyRecord(key, result);
	SPI_finish();
}

/*
 * Writes everything the batch posted: accounts, journal, transfers, through
 * the table access method (ledger_heap.c), then makes it visible to the
 * statements that follow.
 */
void
LedgerFlush(LedgerBatch *batch)
{
	if (CountDirty(batch) > 0)
		LedgerHeapUpdateAccounts(batch);
	if (batch->nentries > 0)
		LedgerHeapInsertJournal(batch);
	if (batch->ntransfers > 0)
		LedgerHeapInsertTransfers(batch);
	CommandCounterIncrement();

	if (batch->hash_ctx != NULL)
	{
		pg_cryptohash_free(batch->hash_ctx);
		batch->hash_ctx = NULL;
	}
}
