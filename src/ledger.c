/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The ledger core.  Owns the lock order: every account a call touches is
 *	  locked by one statement, in ascending id order, before anything is
 *	  read for a decision or written.  Then holds, then settlements, then
 *	  payouts (each in its own module).
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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "ledger.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_account_within_limit);

static char *default_credit_limit_text = NULL;
static bool auto_create_accounts = true;

static SpiStatement lock_stmt = {
	.sql = "SELECT id, node_id, balance, reserved, credit_limit, flags, journal_seq, "
	"journal_hash FROM compay.accounts "
	"WHERE currency = $1 AND node_id = ANY ($2) ORDER BY id FOR UPDATE",
	.nargs = 2,
	.argtypes = {TEXTOID, TEXTARRAYOID}
};

/* System accounts ('$...') are always created, with flag SYSTEM, limit 0. */
static SpiStatement create_stmt = {
	.sql = "INSERT INTO compay.accounts (node_id, currency, credit_limit, flags) "
	"SELECT n, $1, CASE WHEN n LIKE '$%' THEN '0'::compay.credit ELSE $3 END, "
	"CASE WHEN n LIKE '$%' THEN 1 ELSE 0 END FROM unnest($2) AS n "
	"ON CONFLICT (node_id, currency) DO NOTHING",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTARRAYOID, SPI_ARG_CREDIT}
};

static SpiStatement update_stmt = {
	.sql = "UPDATE compay.accounts AS a SET balance = u.balance, reserved = u.reserved, "
	"journal_seq = u.seq, journal_hash = u.hash, updated_at = $7, flags = u.flags, "
	"credit_score = CASE u.score "
	"  WHEN 1 THEN round(a.credit_score + (1 - a.credit_score) * 0.01, 5) "
	"  WHEN -1 THEN round(a.credit_score * 0.95, 5) ELSE a.credit_score END "
	"FROM unnest($1, $2, $3, $4, $5, $6, $8) "
	"AS u(id, balance, reserved, seq, hash, score, flags) "
	"WHERE a.id = u.id",
	.nargs = 8,
	.argtypes = {INT8ARRAYOID, SPI_ARG_CREDIT_ARRAY, SPI_ARG_CREDIT_ARRAY, INT8ARRAYOID,
	BYTEAARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID, INT4ARRAYOID}
};

/*
 * A transfer touches two accounts and writes two entries: those flushes use
 * statements with one or two rows of parameters, which start faster than a
 * join against unnest() (that materialises its input).  Bigger flushes use
 * unnest(), one statement for any number of rows.
 */

static SpiStatement update_one_stmt = {
	.sql = "UPDATE compay.accounts SET balance = $2, reserved = $3, journal_seq = $4, "
	"journal_hash = $5, updated_at = $7, flags = $8, "
	"credit_score = CASE $6 "
	"  WHEN 1 THEN round(credit_score + (1 - credit_score) * 0.01, 5) "
	"  WHEN -1 THEN round(credit_score * 0.95, 5) ELSE credit_score END "
	"WHERE id = $1",
	.nargs = 8,
	.argtypes = {INT8OID, SPI_ARG_CREDIT, SPI_ARG_CREDIT, INT8OID, BYTEAOID, INT4OID,
	TIMESTAMPTZOID, INT4OID}
};

static SpiStatement update_two_stmt = {
	.sql = "UPDATE compay.accounts AS a SET balance = u.balance, reserved = u.reserved, "
	"journal_seq = u.seq, journal_hash = u.hash, updated_at = $15, flags = u.flags, "
	"credit_score = CASE u.score "
	"  WHEN 1 THEN round(a.credit_score + (1 - a.credit_score) * 0.01, 5) "
	"  WHEN -1 THEN round(a.credit_score * 0.95, 5) ELSE a.credit_score END "
	"FROM (VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)) "
	"AS u(id, balance, reserved, seq, hash, score, flags) WHERE a.id = u.id",
	.nargs = 15,
	.argtypes = {INT8OID, SPI_ARG_CREDIT, SPI_ARG_CREDIT, INT8OID, BYTEAOID, INT4OID, INT4OID,
		INT8OID, SPI_ARG_CREDIT, SPI_ARG_CREDIT, INT8OID, BYTEAOID, INT4OID, INT4OID,
	TIMESTAMPTZOID}
};

static SpiStatement journal_two_stmt = {
	.sql = "INSERT INTO compay.journal (account_id, seq, kind, amount, balance_after, "
	"reserved_after, transfer_id, hold_id, counterparty, created_at, hash) "
	"SELECT a, s, k::compay.entry_kind, am, ba, ra, nullif(t, 0), nullif(h, 0), "
	"nullif(c, 0), $21, hh FROM (VALUES "
	"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10), "
	"($11, $12, $13, $14, $15, $16, $17, $18, $19, $20)) "
	"AS u(a, s, k, am, ba, ra, t, h, c, hh)",
	.nargs = 21,
	.argtypes = {INT8OID, INT8OID, TEXTOID, SPI_ARG_CREDIT, SPI_ARG_CREDIT, SPI_ARG_CREDIT,
		INT8OID, INT8OID, INT8OID, BYTEAOID,
		INT8OID, INT8OID, TEXTOID, SPI_ARG_CREDIT, SPI_ARG_CREDIT, SPI_ARG_CREDIT,
	INT8OID, INT8OID, INT8OID, BYTEAOID, TIMESTAMPTZOID}
};

static SpiStatement journal_one_stmt = {
	.sql = "INSERT INTO compay.journal (account_id, seq, kind, amount, balance_after, "
	"reserved_after, transfer_id, hold_id, counterparty, created_at, hash) "
	"VALUES ($1, $2, $3::compay.entry_kind, $4, $5, $6, nullif($7, 0), nullif($8, 0), "
	"nullif($9, 0), $10, $11)",
	.nargs = 11,
	.argtypes = {INT8OID, INT8OID, TEXTOID, SPI_ARG_CREDIT, SPI_ARG_CREDIT, SPI_ARG_CREDIT,
	INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID, BYTEAOID}
};

static SpiStatement transfer_one_stmt = {
	.sql = "INSERT INTO compay.transfers (id, kind, from_account, to_account, amount, "
	"barter_amount, currency, reference, hold_id, refund_of, idempotency_key, created_at) "
	"VALUES ($1, $2::compay.transfer_kind, $3, $4, $5, $6, $7, $8, nullif($9, 0), "
	"nullif($10, 0), $12, $11)",
	.nargs = 12,
	.argtypes = {INT8OID, TEXTOID, INT8OID, INT8OID, SPI_ARG_CREDIT, SPI_ARG_CREDIT,
	TEXTOID, TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID, TEXTOID}
};

static SpiStatement journal_stmt = {
	.sql = "INSERT INTO compay.journal (account_id, seq, kind, amount, balance_after, "
	"reserved_after, transfer_id, hold_id, counterparty, created_at, hash) "
	"SELECT a, s, k::compay.entry_kind, am, ba, ra, nullif(t, 0), nullif(h, 0), "
	"nullif(c, 0), $10, hh "
	"FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $11) "
	"AS u(a, s, k, am, ba, ra, t, h, c, hh)",
	.nargs = 11,
	.argtypes = {INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, SPI_ARG_CREDIT_ARRAY,
		SPI_ARG_CREDIT_ARRAY, SPI_ARG_CREDIT_ARRAY, INT8ARRAYOID, INT8ARRAYOID,
	INT8ARRAYOID, TIMESTAMPTZOID, BYTEAARRAYOID}
};

static SpiStatement transfer_stmt = {
	.sql = "INSERT INTO compay.transfers (id, kind, from_account, to_account, amount, "
	"barter_amount, currency, reference, hold_id, refund_of, idempotency_key, "
	"created_at) "
	"SELECT i, k::compay.transfer_kind, f, t, am, ba, $7, r, nullif(h, 0), "
	"nullif(rf, 0), ik, $11 "
	"FROM unnest($1, $2, $3, $4, $5, $6, $8, $9, $10, $12) "
	"AS u(i, k, f, t, am, ba, r, h, rf, ik)",
	.nargs = 12,
	.argtypes = {INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
		SPI_ARG_CREDIT_ARRAY, SPI_ARG_CREDIT_ARRAY, TEXTOID, TEXTARRAYOID,
	INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZOID, TEXTARRAYOID}
};

static bool
CheckCreditLimitText(char **newval, void **extra pg_attribute_unused(),
					 GucSource source pg_attribute_unused())
{
	Credit		v;

	if (CreditParseDecimal(*newval, CREDIT_SCALE, CREDIT_ROUND_EXACT, true,
						   &v) != CREDIT_OK || v < 0)
	{
		GUC_check_errdetail("A credit limit is a non-negative amount with at most 12 decimals.");
		return false;
	}
	return true;
}

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
							   CheckCreditLimitText, NULL, NULL);
	DefineCustomBoolVariable("compay.auto_create_accounts",
							 "Transfers and holds open a missing account on first use.",
							 NULL, &auto_create_accounts, true,
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

/* A node id as users may give it: 1 to 200 characters, not starting with $. */
const char *
LedgerCheckNode(const char *node_id)
{
	int			len = strlen(node_id);

	if (len == 0 || len > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a node id has 1 to 200 characters")));
	if (node_id[0] == '$')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("node id \"%s\" is reserved", CompayEchoInput(node_id)),
				 errdetail("Node ids starting with $ name the system accounts.")));
	return node_id;
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
	memset(batch, 0, sizeof(*batch));
	batch->currency = currency;
	batch->now = GetCurrentTransactionStartTimestamp();
}

int64
LedgerNextId(const char *sequence)
{
	return nextval_internal(CompayRelationOid(sequence), false);
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
CompareAccountNode(const void *a, const void *b)
{
	return strcmp((*(LedgerAccount *const *) a)->node_id,
				  (*(LedgerAccount *const *) b)->node_id);
}

/* Runs the lock statement; returns the number of rows locked. */
static uint64
LockAccountRows(LedgerBatch *batch, Datum *args)
{
	uint64		n = SpiRun(&lock_stmt, args, NULL, false, 0);

	batch->accounts = palloc0(sizeof(LedgerAccount) * Max(n, 1));
	batch->naccounts = (int) n;
	for (uint64 i = 0; i < n; i++)
	{
		LedgerAccount *a = &batch->accounts[i];
		bool		isnull;
		bytea	   *hash;

		a->id = SpiGetInt64(i, 1);
		a->node_id = SpiGetText(i, 2);
		a->balance = DatumGetCredit(SpiGetDatum(i, 3, &isnull));
		a->reserved = DatumGetCredit(SpiGetDatum(i, 4, &isnull));
		a->credit_limit = DatumGetCredit(SpiGetDatum(i, 5, &isnull));
		a->flags = DatumGetInt32(SpiGetDatum(i, 6, &isnull));
		a->seq = SpiGetInt64(i, 7);
		hash = DatumGetByteaPP(SpiGetDatum(i, 8, &isnull));
		Assert(VARSIZE_ANY_EXHDR(hash) == LEDGER_HASH_LEN);
		memcpy(a->hash, VARDATA_ANY(hash), LEDGER_HASH_LEN);
		Assert(i == 0 || batch->accounts[i - 1].id < a->id);
	}
	batch->by_node = palloc(sizeof(LedgerAccount *) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
		batch->by_node[i] = &batch->accounts[i];
	qsort(batch->by_node, n, sizeof(LedgerAccount *), CompareAccountNode);
	return n;
}

static int
CompareCString(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * Locks the accounts of node_ids in the batch's currency, in ascending id
 * order, in one statement.  Missing system accounts are always created;
 * missing node accounts only when create_missing, else PY002.
 */
void
LedgerLockAccounts(LedgerBatch *batch, const char **node_ids, int n,
				   bool create_missing)
{
	const char **sorted = palloc(sizeof(char *) * Max(n, 1));
	int			ndistinct = 0;
	Datum		args[3];

	if (n > LEDGER_ACCOUNTS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("one call may touch at most %d accounts", LEDGER_ACCOUNTS_MAX)));
	memcpy(sorted, node_ids, sizeof(char *) * n);
	qsort(sorted, n, sizeof(char *), CompareCString);
	for (int i = 0; i < n; i++)
		if (ndistinct == 0 || strcmp(sorted[ndistinct - 1], sorted[i]) != 0)
			sorted[ndistinct++] = sorted[i];

	args[0] = CStringGetTextDatum(batch->currency);
	args[1] = TextArray(sorted, ndistinct);
	if (LockAccountRows(batch, args) == (uint64) ndistinct)
		return;

	for (int i = 0; i < ndistinct && !create_missing; i++)
		if (sorted[i][0] != '$' && LedgerFindAccount(batch, sorted[i]) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_COMPAY_UNKNOWN_ACCOUNT),
					 errmsg("node \"%s\" has no %s account",
							CompayEchoInput(sorted[i]), batch->currency),
					 errhint("Open one with compay.open_account(), or turn on compay.auto_create_accounts.")));

	args[2] = CreditGetDatum(LedgerDefaultCreditLimit(batch->currency));
	SpiRun(&create_stmt, args, NULL, false, 0);
	if (LockAccountRows(batch, args) != (uint64) ndistinct)
		elog(ERROR, "accounts created for %s could not be locked", batch->currency);
}

/* The locked account of node_id, or NULL; a binary search by node id. */
LedgerAccount *
LedgerFindAccount(LedgerBatch *batch, const char *node_id)
{
	int			lo = 0;
	int			hi = batch->naccounts - 1;

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

LedgerAccount *
LedgerFindAccountById(LedgerBatch *batch, int64 id)
{
	int			lo = 0;
	int			hi = batch->naccounts - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (batch->accounts[mid].id == id)
			return &batch->accounts[mid];
		if (batch->accounts[mid].id < id)
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

static Datum
CreditArray(Credit *values, int n)
{
	Datum	   *datums = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		datums[i] = PointerGetDatum(&values[i]);
	return PointerGetDatum(construct_array(datums, n, CompayTypeOid("credit"),
										   sizeof(Credit), false, TYPALIGN_DOUBLE));
}

static Datum
Int64Array(int64 *values, int n)
{
	Datum	   *datums = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		datums[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(datums, n, INT8OID, 8, true,
										   TYPALIGN_DOUBLE));
}

static Datum
HashArray(uint8 (*hashes)[LEDGER_HASH_LEN], int n)
{
	Datum	   *datums = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		bytea	   *b = palloc(VARHDRSZ + LEDGER_HASH_LEN);

		SET_VARSIZE(b, VARHDRSZ + LEDGER_HASH_LEN);
		memcpy(VARDATA(b), hashes[i], LEDGER_HASH_LEN);
		datums[i] = PointerGetDatum(b);
	}
	return PointerGetDatum(construct_array(datums, n, BYTEAOID, -1, false,
										   TYPALIGN_INT));
}

static void
FlushAccounts(LedgerBatch *batch)
{
	int			n = 0;
	int64	   *ids = palloc(sizeof(int64) * batch->naccounts);
	Credit	   *balances = palloc(sizeof(Credit) * batch->naccounts);
	Credit	   *reserved = palloc(sizeof(Credit) * batch->naccounts);
	int64	   *seqs = palloc(sizeof(int64) * batch->naccounts);
	uint8		(*hashes)[LEDGER_HASH_LEN] = palloc(LEDGER_HASH_LEN * batch->naccounts);
	Datum	   *scores = palloc(sizeof(Datum) * batch->naccounts);
	Datum	   *flags = palloc(sizeof(Datum) * batch->naccounts);
	Datum		args[8];

	for (int i = 0; i < batch->naccounts; i++)
	{
		LedgerAccount *a = &batch->accounts[i];

		if (!a->dirty)
			continue;
		ids[n] = a->id;
		balances[n] = a->balance;
		reserved[n] = a->reserved;
		seqs[n] = a->seq;
		memcpy(hashes[n], a->hash, LEDGER_HASH_LEN);
		scores[n] = Int32GetDatum((a->flags & ACCOUNT_FLAG_SYSTEM) ? 0 : a->score_change);
		flags[n] = Int32GetDatum(a->flags);
		n++;
	}
	if (n == 0)
		return;
	args[0] = Int64Array(ids, n);
	args[1] = CreditArray(balances, n);
	args[2] = CreditArray(reserved, n);
	args[3] = Int64Array(seqs, n);
	args[4] = HashArray(hashes, n);
	args[5] = PointerGetDatum(construct_array(scores, n, INT4OID, 4, true, TYPALIGN_INT));
	args[6] = TimestampTzGetDatum(batch->now);
	args[7] = PointerGetDatum(construct_array(flags, n, INT4OID, 4, true, TYPALIGN_INT));
	if (SpiRun(&update_stmt, args, NULL, false, 0) != (uint64) n)
		elog(ERROR, "ledger update touched fewer accounts than it locked");
}

static void
FlushJournal(LedgerBatch *batch)
{
	int			n = batch->nentries;
	int64	   *cols[5];
	Credit	   *credits[3];
	const char **kinds = palloc(sizeof(char *) * Max(n, 1));
	uint8		(*hashes)[LEDGER_HASH_LEN] = palloc(LEDGER_HASH_LEN * Max(n, 1));
	Datum		args[11];

	for (int c = 0; c < 5; c++)
		cols[c] = palloc(sizeof(int64) * Max(n, 1));
	for (int c = 0; c < 3; c++)
		credits[c] = palloc(sizeof(Credit) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		LedgerEntry *e = &batch->entries[i];

		cols[0][i] = e->account_id;
		cols[1][i] = e->seq;
		cols[2][i] = e->transfer_id;
		cols[3][i] = e->hold_id;
		cols[4][i] = e->counterparty;
		kinds[i] = EntryKindName(e->kind);
		credits[0][i] = e->amount;
		credits[1][i] = e->balance_after;
		credits[2][i] = e->reserved_after;
		memcpy(hashes[i], e->hash, LEDGER_HASH_LEN);
	}
	args[0] = Int64Array(cols[0], n);
	args[1] = Int64Array(cols[1], n);
	args[2] = TextArray(kinds, n);
	args[3] = CreditArray(credits[0], n);
	args[4] = CreditArray(credits[1], n);
	args[5] = CreditArray(credits[2], n);
	args[6] = Int64Array(cols[2], n);
	args[7] = Int64Array(cols[3], n);
	args[8] = Int64Array(cols[4], n);
	args[9] = TimestampTzGetDatum(batch->now);
	args[10] = HashArray(hashes, n);
	SpiRun(&journal_stmt, args, NULL, false, 0);
}

static void
FlushTransfers(LedgerBatch *batch)
{
	int			n = batch->ntransfers;
	int64	   *cols[5];
	Credit	   *amounts = palloc(sizeof(Credit) * Max(n, 1));
	Credit	   *barter = palloc(sizeof(Credit) * Max(n, 1));
	const char **kinds = palloc(sizeof(char *) * Max(n, 1));
	const char **refs = palloc(sizeof(char *) * Max(n, 1));
	const char **keys = palloc(sizeof(char *) * Max(n, 1));
	Datum		args[12];

	for (int c = 0; c < 5; c++)
		cols[c] = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		LedgerTransfer *t = &batch->transfers[i];

		cols[0][i] = t->id;
		cols[1][i] = t->from_account;
		cols[2][i] = t->to_account;
		cols[3][i] = t->hold_id;
		cols[4][i] = t->refund_of;
		kinds[i] = TransferKindName(t->kind);
		amounts[i] = t->amount;
		barter[i] = t->barter_amount;
		refs[i] = t->reference;
		keys[i] = t->idempotency_key;
	}
	args[0] = Int64Array(cols[0], n);
	args[1] = TextArray(kinds, n);
	args[2] = Int64Array(cols[1], n);
	args[3] = Int64Array(cols[2], n);
	args[4] = CreditArray(amounts, n);
	args[5] = CreditArray(barter, n);
	args[6] = CStringGetTextDatum(batch->currency);
	args[7] = TextArray(refs, n);
	args[8] = Int64Array(cols[3], n);
	args[9] = Int64Array(cols[4], n);
	args[10] = TimestampTzGetDatum(batch->now);
	args[11] = TextArray(keys, n);
	SpiRun(&transfer_stmt, args, NULL, false, 0);
}

static Datum
HashDatum(const uint8 *hash)
{
	bytea	   *b = palloc(VARHDRSZ + LEDGER_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + LEDGER_HASH_LEN);
	memcpy(VARDATA(b), hash, LEDGER_HASH_LEN);
	return PointerGetDatum(b);
}

/* The seven per-account parameters of the one- and two-row updates. */
static void
AccountArgs(LedgerAccount *a, Datum *args)
{
	args[0] = Int64GetDatum(a->id);
	args[1] = CreditGetDatum(a->balance);
	args[2] = CreditGetDatum(a->reserved);
	args[3] = Int64GetDatum(a->seq);
	args[4] = HashDatum(a->hash);
	args[5] = Int32GetDatum((a->flags & ACCOUNT_FLAG_SYSTEM) ? 0 : a->score_change);
	args[6] = Int32GetDatum(a->flags);
}

static void
FlushAccountsSmall(LedgerBatch *batch, int ndirty)
{
	LedgerAccount *dirty[2];
	Datum		args[15];
	int			n = 0;

	Assert(ndirty >= 1 && ndirty <= 2);
	for (int i = 0; i < batch->naccounts; i++)
		if (batch->accounts[i].dirty)
			dirty[n++] = &batch->accounts[i];
	Assert(n == ndirty);
	if (ndirty == 1)
	{
		AccountArgs(dirty[0], args);
		args[7] = args[6];		/* flags is $8 in the one-row statement */
		args[6] = TimestampTzGetDatum(batch->now);
		if (SpiRun(&update_one_stmt, args, NULL, false, 0) != 1)
			elog(ERROR, "ledger update missed account " INT64_FORMAT, dirty[0]->id);
		return;
	}
	AccountArgs(dirty[0], args);
	AccountArgs(dirty[1], args + 7);
	args[14] = TimestampTzGetDatum(batch->now);
	if (SpiRun(&update_two_stmt, args, NULL, false, 0) != 2)
		elog(ERROR, "ledger update missed accounts " INT64_FORMAT " and " INT64_FORMAT,
			 dirty[0]->id, dirty[1]->id);
}

/* The ten per-entry parameters of the one- and two-row inserts. */
static void
EntryArgs(LedgerEntry *e, Datum *args)
{
	args[0] = Int64GetDatum(e->account_id);
	args[1] = Int64GetDatum(e->seq);
	args[2] = CStringGetTextDatum(EntryKindName(e->kind));
	args[3] = CreditGetDatum(e->amount);
	args[4] = CreditGetDatum(e->balance_after);
	args[5] = CreditGetDatum(e->reserved_after);
	args[6] = Int64GetDatum(e->transfer_id);
	args[7] = Int64GetDatum(e->hold_id);
	args[8] = Int64GetDatum(e->counterparty);
	args[9] = HashDatum(e->hash);
}

static void
FlushJournalSmall(LedgerBatch *batch)
{
	Datum		args[21];

	Assert(batch->nentries >= 1 && batch->nentries <= 2);
	EntryArgs(&batch->entries[0], args);
	if (batch->nentries == 1)
	{
		args[10] = args[9];		/* hash is $11 in the one-row statement */
		args[9] = TimestampTzGetDatum(batch->now);
		SpiRun(&journal_one_stmt, args, NULL, false, 0);
		return;
	}
	EntryArgs(&batch->entries[1], args + 10);
	args[20] = TimestampTzGetDatum(batch->now);
	SpiRun(&journal_two_stmt, args, NULL, false, 0);
}

static void
FlushTransferOne(LedgerBatch *batch, LedgerTransfer *t)
{
	Datum		args[12];
	char		nulls[12];

	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int64GetDatum(t->id);
	args[1] = CStringGetTextDatum(TransferKindName(t->kind));
	args[2] = Int64GetDatum(t->from_account);
	args[3] = Int64GetDatum(t->to_account);
	args[4] = CreditGetDatum(t->amount);
	args[5] = CreditGetDatum(t->barter_amount);
	args[6] = CStringGetTextDatum(batch->currency);
	args[7] = t->reference ? CStringGetTextDatum(t->reference) : (Datum) 0;
	nulls[7] = t->reference ? ' ' : 'n';
	args[8] = Int64GetDatum(t->hold_id);
	args[9] = Int64GetDatum(t->refund_of);
	args[10] = TimestampTzGetDatum(batch->now);
	args[11] = t->idempotency_key ? CStringGetTextDatum(t->idempotency_key) : (Datum) 0;
	nulls[11] = t->idempotency_key ? ' ' : 'n';
	SpiRun(&transfer_one_stmt, args, nulls, false, 0);
}

static int
CountDirty(LedgerBatch *batch)
{
	int			n = 0;

	for (int i = 0; i < batch->naccounts; i++)
		n += batch->accounts[i].dirty ? 1 : 0;
	return n;
}

/* Writes everything the batch posted: accounts, journal, transfers. */
void
LedgerFlush(LedgerBatch *batch)
{
	int			ndirty = CountDirty(batch);

	if (ndirty > 2)
		FlushAccounts(batch);
	else if (ndirty > 0)
		FlushAccountsSmall(batch, ndirty);

	if (batch->nentries > 2)
		FlushJournal(batch);
	else if (batch->nentries > 0)
		FlushJournalSmall(batch);

	if (batch->ntransfers > 1)
		FlushTransfers(batch);
	else if (batch->ntransfers == 1)
		FlushTransferOne(batch, &batch->transfers[0]);

	if (batch->hash_ctx != NULL)
	{
		pg_cryptohash_free(batch->hash_ctx);
		batch->hash_ctx = NULL;
	}
}
