/*-------------------------------------------------------------------------
 *
 * ledger.h
 *	  The ledger core: accounts locked in id order, entries posted in
 *	  memory, then written with one statement per table.
 *
 * A money-moving function builds one LedgerBatch: it locks every account it
 * touches with LedgerLockAccounts (one statement, ascending id; then a row
 * of each system account that no other transaction holds), posts
 * entries against the locked copies (which checks funds and extends each
 * account's hash chain), queues transfer rows, and calls LedgerFlush, which
 * writes accounts, journal and transfers with one statement each.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_LEDGER_H
#define COMPAY_LEDGER_H

#include "common/cryptohash.h"
#include "datatype/timestamp.h"
#include "nodes/lockoptions.h"
#include "storage/itemptr.h"
#include "utils/relcache.h"

#include "compay.h"
#include "credit.h"


#define LEDGER_HASH_LEN 32

/* Account flags (accounts.flags). */
#define ACCOUNT_FLAG_SYSTEM		0x1 /* may go negative */
#define ACCOUNT_FLAG_BARTER		0x2 /* holds barter credits with someone */

/* Most rows a system account is striped over (ledger_stripes.c). */
#define LEDGER_STRIPES_MAX		64

/* Most accounts one call may lock, and most transfers in one batch. */
#define LEDGER_ACCOUNTS_MAX		20000
#define LEDGER_BATCH_MAX		10000

/* Longest node id, and longest reference (or reason) of a money call, in characters. */
#define LEDGER_NODE_ID_LEN_MAX	200
#define LEDGER_REFERENCE_LEN_MAX	1000

/* Longest idempotency key as stored (compay.idempotency_keys), in characters. */
#define IDEMPOTENCY_KEY_MAX		200

typedef enum EntryKind
{
	ENTRY_DEBIT,
	ENTRY_CREDIT,
	ENTRY_RESERVE,
	ENTRY_RELEASE,
	ENTRY_REFUND,
	ENTRY_BARTER
} EntryKind;

typedef enum TransferKind
{
	TRANSFER_DEPOSIT,
	TRANSFER_TRANSFER,
	TRANSFER_CAPTURE,
	TRANSFER_REFUND,
	TRANSFER_BARTER,
	TRANSFER_WITHDRAWAL
} TransferKind;

typedef struct LedgerAccount
{
	int64		id;
	char	   *node_id;
	Credit		balance;
	Credit		reserved;
	Credit		credit_limit;
	int32		flags;
	int64		seq;
	uint8		hash[LEDGER_HASH_LEN];
	int			score_change;	/* +1 up, -1 down, 0 none */
	bool		dirty;
	ItemPointerData tid;		/* the row version this call locked, then wrote */
	TransactionId xmin;			/* the xmin of the version it locked */
} LedgerAccount;

typedef struct LedgerEntry
{
	int64		account_id;
	int64		seq;
	EntryKind	kind;
	Credit		amount;
	Credit		balance_after;
	Credit		reserved_after;
	int64		transfer_id;	/* 0: none */
	int64		hold_id;		/* 0: none */
	int64		counterparty;	/* 0: none */
	uint8		hash[LEDGER_HASH_LEN];
} LedgerEntry;

typedef struct LedgerTransfer
{
	int64		id;
	TransferKind kind;
	int64		from_account;
	int64		to_account;
	Credit		amount;
	Credit		barter_amount;
	const char *reference;
	int64		hold_id;		/* 0: none */
	int64		refund_of;		/* 0: none */
	const char *idempotency_key;
} LedgerTransfer;

/* A hold's row, as the ledger reads and writes it. */
typedef struct LedgerHoldRow
{
	int64		id;
	int64		account_id;
	Credit		amount;
	Credit		remaining;
	const char *status;			/* a compay.hold_status label */
	const char *reference;		/* NULL: none */
	const char *idempotency_key;	/* NULL: none */
	bool		expires;		/* has expires_at */
	TimestampTz expires_at;
	ItemPointerData tid;		/* the version read, locked or written */
} LedgerHoldRow;

typedef struct LedgerBatch
{
	const char *currency;
	TimestampTz now;
	LedgerAccount *accounts;	/* sorted by id */
	int			naccounts;
	LedgerAccount **by_node;	/* the same, sorted by node_id */
	LedgerEntry *entries;
	int			nentries;
	int			maxentries;
	LedgerTransfer *transfers;
	int			ntransfers;
	int			maxtransfers;
	pg_cryptohash_ctx *hash_ctx;	/* reused for every entry of the batch */
} LedgerBatch;

/*
 * balance - reserved + credit_limit, saturated at the int128 bounds: the
 * exact sum may leave the int128 range with extreme limits, and saturating
 * keeps every comparison with a credit right.
 */
static inline Credit
CreditAvailable(Credit balance, Credit reserved, Credit credit_limit)
{
	Credit		d;
	Credit		r;

	if (__builtin_sub_overflow(balance, reserved, &d))
		return -CREDIT_MAX - 1;	/* the int128 minimum */
	if (__builtin_add_overflow(d, credit_limit, &r))
		return credit_limit > 0 ? CREDIT_MAX : -CREDIT_MAX - 1;
	return r;
}

/* ledger.c */
extern void LedgerInit(void);
extern void LedgerBegin(LedgerBatch *batch, const char *currency);
extern void LedgerLockAccounts(LedgerBatch *batch, const char **node_ids,
							   int n, int npayers, bool create_missing);
extern LedgerAccount *LedgerFindAccount(LedgerBatch *batch, const char *node_id);
extern void LedgerCheckAvailable(LedgerAccount *account, Credit amount,
								 const char *currency);
extern void LedgerPost(LedgerBatch *batch, LedgerAccount *account,
					   EntryKind kind, Credit amount, int64 transfer_id,
					   int64 hold_id, int64 counterparty);
extern LedgerTransfer *LedgerAddTransfer(LedgerBatch *batch, TransferKind kind,
										 LedgerAccount *from, LedgerAccount *to,
										 Credit amount);
extern void LedgerMove(LedgerBatch *batch, LedgerTransfer *transfer,
					   LedgerAccount *from, LedgerAccount *to, Credit amount,
					   EntryKind debit_kind, EntryKind credit_kind);
extern void LedgerFlush(LedgerBatch *batch);
extern void LedgerFinish(LedgerBatch *batch, const char *key, int64 result);
extern int64 LedgerNextId(const char *sequence);

/* Argument helpers shared by the SQL-callable functions. */
extern char *TextArgOrNull(FunctionCallInfo fcinfo, int n);
extern void LedgerCheckAmount(Credit amount, const char *what);
extern const char *LedgerCheckNode(const char *node_id);
extern void LedgerRequireArgs(FunctionCallInfo fcinfo, int n, const char *const *names);
extern const char *LedgerCheckReference(const char *reference, const char *what);
extern const char *LedgerCheckCurrency(const char *currency);
extern Credit LedgerDefaultCreditLimit(const char *currency);
extern bool LedgerAutoCreate(void);
extern bool LedgerWalletBacked(const char *currency);

/* ledger_heap.c */
extern int	LedgerHeapLockAccounts(LedgerBatch *batch, const char **nodes, int n,
								   LockWaitPolicy wait, int *nfound);
extern void LedgerHeapUpdateAccounts(LedgerBatch *batch);
extern void LedgerHeapInsertJournal(LedgerBatch *batch);
extern void LedgerHeapInsertTransfers(LedgerBatch *batch);
extern bool LedgerHeapHoldOwner(int64 hold_id, char **node, char **currency);
extern void LedgerHeapLockHold(LedgerHoldRow *hold);
extern void LedgerHeapUpdateHold(LedgerHoldRow *hold, TimestampTz now);
extern void LedgerHeapInsertHold(LedgerHoldRow *hold, TimestampTz now);

/* ledger_chain_heads.c */
extern void LedgerChainHeadsInit(void);
extern void LedgerChainHeadWritten(Relation accounts, const LedgerAccount *a, ItemPointer tid);
extern bool LedgerChainHeadTake(Relation accounts, LedgerAccount *a, int64 *from);
extern void LedgerChainHeadRead(Relation accounts, int64 account_id, int64 seq);

/* ledger_stripes.c */
extern void LedgerStripesInit(void);
extern const char *LedgerStripeNode(const char *node_id);
extern void LedgerStripeBase(char *row_node_id);

/* journal_hash.c */
extern void JournalEntryHash(pg_cryptohash_ctx *ctx, const uint8 *prev,
							 const LedgerEntry *entry, TimestampTz created_at,
							 uint8 *out);
extern const char *EntryKindName(EntryKind kind);
extern const char *TransferKindName(TransferKind kind);

/* idempotency.c */
extern bool IdempotencyClaim(const char *key, const char *operation,
							 const char *request, int64 *result_id);
extern void IdempotencyRecord(const char *key, int64 result_id);

#endif							/* COMPAY_LEDGER_H */
