/*-------------------------------------------------------------------------
 *
 * ledger_chain_heads.c
 *	  The chain head of each account (the seq and hash of its newest journal
 *	  entry) as the transaction that wrote it left it, in shared memory, so
 *	  that the next transfer of the account, in any session, does not read
 *	  the journal to find it.
 *
 * Every journal entry is written with an update of its account's row
 * (LedgerFlush), and a transfer locks that row before it reads the head.
 * So when the row version a lock takes is the very version written along
 * with a head (same TID, same xmin, same heap), no entry of the account
 * was written since, and that head is the account's head.  Any other
 * writer of the row makes a newer version; a rolled-back write leaves the
 * older version the newest: each misses, and the head is read from the
 * journal (src/ledger_heap.c).  (A frozen version keeps its xmin, and is
 * still the version written with the head.)  A head is kept as soon as its
 * row version is written, before the writer commits: no other transaction
 * can lock that version until the writer has committed, and if it aborts
 * the version is never the newest again.
 *
 * A TID and an xmin name one version only within one heap and one xid
 * epoch: each slot also keeps the database, the table and its
 * relfilenode, and the xmin as a full transaction id, which must be within
 * 2^31 of the reader's own.  A miss leaves a seq the chain had reached,
 * from which the journal lookup starts (a backward index scan reads every
 * entry of the account on the leaf page it lands on).
 *
 * The table is direct-mapped (a slot per account, the newest writer
 * winning a collision), compay.chain_head_cache slots in shared memory
 * under a few LWLocks; without compay in shared_preload_libraries, or with
 * the setting at 0, each backend keeps a small table of its own, which
 * knows only the heads it wrote.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "ledger.h"

/* One account's head, and the row version it was written with. */
typedef struct ChainHead
{
	Oid			dbid;
	Oid			relid;
	Oid			relfilenode;
	int64		account_id;
	int64		seq;
	FullTransactionId xmin;		/* invalid: a seq only, no version */
	ItemPointerData tid;
	uint8		hash[LEDGER_HASH_LEN];
} ChainHead;

/* Locks of the shared table: slot i is under lock i % CHAIN_HEAD_LOCKS. */
#define CHAIN_HEAD_LOCKS 64

/* Slots of a backend's own table. */
#define CHAIN_HEADS_LOCAL 4096

static int	chain_head_cache = 65536;	/* compay.chain_head_cache */

static ChainHead *heads = NULL;
static int	nheads = 0;
static LWLockPadded *locks = NULL;	/* NULL: a backend's own table */

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
SharedSize(void)
{
	return mul_size(sizeof(ChainHead), chain_head_cache);
}

static void
ChainHeadsShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	if (chain_head_cache == 0)
		return;
	RequestAddinShmemSpace(MAXALIGN(SharedSize()));
	RequestNamedLWLockTranche("compay chain heads", CHAIN_HEAD_LOCKS);
}

static void
ChainHeadsShmemStartup(void)
{
	bool		found;
	ChainHead  *shared;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	if (chain_head_cache == 0)
		return;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("compay chain heads", SharedSize(), &found);
	if (!found)
		memset(shared, 0, SharedSize());
	heads = shared;
	nheads = chain_head_cache;
	locks = GetNamedLWLockTranche("compay chain heads");
	LWLockRelease(AddinShmemInitLock);
}

void
LedgerChainHeadsInit(void)
{
	/*
	 * PostgreSQL defines a server-start setting only while it preloads
	 * libraries; loaded later, the library has no shared table, and the
	 * setting reads 0.
	 */
	bool		preload = process_shared_preload_libraries_in_progress;

	DefineCustomIntVariable("compay.chain_head_cache",
							"Accounts whose chain head the server keeps in shared memory.",
							"A transfer of an account whose head is kept does not read the "
							"journal to find it.  0 keeps each backend's own heads only.",
							&chain_head_cache, preload ? 65536 : 0, 0, 16 * 1024 * 1024,
							preload ? PGC_POSTMASTER : PGC_INTERNAL, 0, NULL, NULL, NULL);
	if (!preload)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ChainHeadsShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ChainHeadsShmemStartup;
}

/* The table, made the first time a backend without the shared one needs it. */
static void
EnsureTable(void)
{
	if (heads != NULL)
		return;
	heads = MemoryContextAllocZero(TopMemoryContext, sizeof(ChainHead) * CHAIN_HEADS_LOCAL);
	nheads = CHAIN_HEADS_LOCAL;
}

static uint32
SlotOf(int64 account_id)
{
	uint32		h = hash_combine(murmurhash32(MyDatabaseId),
								 hash_bytes_uint32((uint32) account_id) ^
								 (uint32) ((uint64) account_id >> 32));

	return h % (uint32) nheads;
}

static void
Lock(uint32 slot, LWLockMode mode)
{
	if (locks)
		LWLockAcquire(&locks[slot % CHAIN_HEAD_LOCKS].lock, mode);
}

static void
Unlock(uint32 slot)
{
	if (locks)
		LWLockRelease(&locks[slot % CHAIN_HEAD_LOCKS].lock);
}

/* Whether slot holds account_id of this heap of compay.accounts. */
static bool
Holds(const ChainHead *h, Relation accounts, int64 account_id)
{
	return h->account_id == account_id && h->dbid == MyDatabaseId &&
		h->relid == RelationGetRelid(accounts) &&
		h->relfilenode == accounts->rd_node.relNode;
}

/* A copy of the slot of account_id; false when it holds another account. */
static bool
Read(Relation accounts, int64 account_id, ChainHead *out)
{
	uint32		slot;
	bool		held;

	EnsureTable();
	slot = SlotOf(account_id);
	Lock(slot, LW_SHARED);
	held = Holds(&heads[slot], accounts, account_id);
	if (held)
		*out = heads[slot];
	Unlock(slot);
	return held;
}

static void
Write(const ChainHead *h)
{
	uint32		slot;

	EnsureTable();
	slot = SlotOf(h->account_id);
	Lock(slot, LW_EXCLUSIVE);
	heads[slot] = *h;
	Unlock(slot);
}

static void
Key(ChainHead *h, Relation accounts, int64 account_id)
{
	memset(h, 0, sizeof(*h));
	h->dbid = MyDatabaseId;
	h->relid = RelationGetRelid(accounts);
	h->relfilenode = accounts->rd_node.relNode;
	h->account_id = account_id;
}

/*
 * Keeps a's head, just written with the row version at tid by the current
 * transaction or subtransaction.
 */
void
LedgerChainHeadWritten(Relation accounts, const LedgerAccount *a, ItemPointer tid)
{
	ChainHead	h;

	Key(&h, accounts, a->id);
	h.seq = a->seq;
	h.xmin = GetCurrentFullTransactionId();
	ItemPointerCopy(tid, &h.tid);
	memcpy(h.hash, a->hash, LEDGER_HASH_LEN);
	Write(&h);
}

/*
 * Sets a's head when its locked version (a->tid, a->xmin) is the one kept
 * with it.  The lock has given the transaction an xid: a kept xmin within
 * 2^31 of it is the version's, not one of another epoch.  *from is a seq
 * the chain had reached (0: none known), where a journal lookup can start.
 */
bool
LedgerChainHeadTake(Relation accounts, LedgerAccount *a, int64 *from)
{
	ChainHead	h;
	FullTransactionId now = GetCurrentFullTransactionIdIfAny();
	int64		distance;

	/* A row this transaction had locked gives a subtransaction no xid. */
	if (!FullTransactionIdIsValid(now))
		now = GetTopFullTransactionIdIfAny();
	*from = 0;
	if (!Read(accounts, a->id, &h))
		return false;
	*from = h.seq;
	if (!FullTransactionIdIsValid(h.xmin) ||
		XidFromFullTransactionId(h.xmin) != a->xmin ||
		!ItemPointerEquals(&h.tid, &a->tid) || !FullTransactionIdIsValid(now))
		return false;
	distance = (int64) (U64FromFullTransactionId(now) - U64FromFullTransactionId(h.xmin));
	if (distance >= (INT64CONST(1) << 31) || distance <= -(INT64CONST(1) << 31))
		return false;
	a->seq = h.seq;
	memcpy(a->hash, h.hash, LEDGER_HASH_LEN);
	elog(DEBUG2, "compay: chain head of account " INT64_FORMAT
		 " taken from the version written with it", a->id);
	return true;
}

/* Keeps the seq a journal lookup found, to start the next one there. */
void
LedgerChainHeadRead(Relation accounts, int64 account_id, int64 seq)
{
	ChainHead	h;

	Key(&h, accounts, account_id);
	h.seq = seq;
	h.xmin = InvalidFullTransactionId;
	Write(&h);
}
