/*-------------------------------------------------------------------------
 *
 * ledger_heap.c
 *	  Writes a batch's account updates, journal entries and transfer rows,
 *	  and reads, locks and writes holds, through the table access method,
 *	  without SPI.
 *
 * A transfer's writes are known exactly (which rows, which columns), so
 * planning and starting an executor for each statement is pure overhead:
 * most of a transfer's time went there.  This file does what the executor
 * would do for those statements and nothing else: form the tuple, insert or
 * update it (HOT when PostgreSQL can), add index entries when needed, check
 * the table's CHECK constraints, and make the changes visible to the
 * statements that follow.  The tables have no row triggers on INSERT or
 * UPDATE, and no one but the extension writes them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "ledger.h"
#include "spi_util.h"

/* One table opened for writing, as ModifyTable would open it. */
typedef struct HeapTarget
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	CommandId	cid;
} HeapTarget;

static void
OpenTarget(HeapTarget *t, const char *name)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	t->estate = CreateExecutorState();
	t->rel = table_open(CompayRelationOid(name), RowExclusiveLock);

	/*
	 * A range table of one entry, as the executor would have: the error
	 * detail of a failed constraint reads the columns the statement sets.
	 */
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(t->rel);
	rte->relkind = t->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT | ACL_UPDATE;
	ExecInitRangeTable(t->estate, list_make1(rte));

	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	ExecOpenIndices(t->rri, false);
	t->slot = table_slot_create(t->rel, NULL);
	t->cid = GetCurrentCommandId(true);
}

static void
CloseTarget(HeapTarget *t)
{
	ExecDropSingleTupleTableSlot(t->slot);
	ExecCloseIndices(t->rri);
	table_close(t->rel, NoLock);
	FreeExecutorState(t->estate);
}

/* Index of a column of t's table in a slot's values, which must exist. */
static int
Att(HeapTarget *t, const char *column)
{
	return CompayColumn(t->rel, column, false) - 1;
}

/* The value of a column of rel, which must exist, in slot. */
static Datum
ColumnValue(TupleTableSlot *slot, Relation rel, const char *column, bool *isnull)
{
	return slot_getattr(slot, CompayColumn(rel, column, false), isnull);
}

/* Most rows one multi-insert writes, as COPY buffers them. */
#define HEAP_INSERT_CHUNK 1000

/*
 * Inserts the rows in slots (virtual, filled): checks the constraints, puts
 * the rows on pages (several at once when there are several), then adds
 * their index entries.
 */
static void
InsertSlots(HeapTarget *t, TupleTableSlot **slots, int n)
{
	for (int i = 0; i < n; i++)
	{
		ExecStoreVirtualTuple(slots[i]);
		if (t->rel->rd_att->constr)
			CompayExecConstraints(t->rri, slots[i], t->estate);
	}
	if (n == 1)
		table_tuple_insert(t->rel, slots[0], t->cid, 0, NULL);
	else
		table_multi_insert(t->rel, slots, n, t->cid, 0, NULL);
	for (int i = 0; i < n; i++)
	{
		if (t->rri->ri_NumIndices > 0)
			ExecInsertIndexTuples(t->rri, slots[i], t->estate, false, false, NULL, NIL);
		ResetPerTupleExprContext(t->estate);
	}
}

/*
 * Slots for up to HEAP_INSERT_CHUNK rows of t's table.  They share a copy
 * of the table's descriptor, which is not reference-counted: a slot of the
 * relation's own descriptor pins it in the resource owner, and a batch's
 * thousands of pins and unpins were 8 % of its time.  Constraints are
 * checked against the relation's descriptor (ExecConstraints), not this.
 */
static TupleTableSlot **
MakeSlots(HeapTarget *t, int n)
{
	TupleTableSlot **slots = palloc(sizeof(TupleTableSlot *) * n);
	TupleDesc	desc = CreateTupleDescCopy(RelationGetDescr(t->rel));

	for (int i = 0; i < n; i++)
		slots[i] = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	return slots;
}

/* Drops the slots of MakeSlots and their descriptor. */
static void
DropSlots(TupleTableSlot **slots, int n)
{
	TupleDesc	desc = slots[0]->tts_tupleDescriptor;

	Assert(n > 0 && desc->tdrefcount == -1);
	for (int i = 0; i < n; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	FreeTupleDesc(desc);
	pfree(slots);
}

static void
ClearSlot(TupleTableSlot *slot)
{
	int			natts = slot->tts_tupleDescriptor->natts;

	ExecClearTuple(slot);
	for (int i = 0; i < natts; i++)
	{
		slot->tts_values[i] = (Datum) 0;
		slot->tts_isnull[i] = true;
	}
}

static void
Put(TupleTableSlot *slot, int att, Datum value)
{
	slot->tts_values[att] = value;
	slot->tts_isnull[att] = false;
}

static void
PutId(TupleTableSlot *slot, int att, int64 id)
{
	if (id != 0)
		Put(slot, att, Int64GetDatum(id));
}

static Datum
EnumDatum(const char *type, const char *label)
{
	return DirectFunctionCall2(enum_in, CStringGetDatum(label),
							   ObjectIdGetDatum(CompayTypeOid(type)));
}

static Datum
HashBytea(const uint8 *hash)
{
	bytea	   *b = palloc(VARHDRSZ + LEDGER_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + LEDGER_HASH_LEN);
	memcpy(VARDATA(b), hash, LEDGER_HASH_LEN);
	return PointerGetDatum(b);
}

/* Orders journal entries by their key, (account_id, seq). */
static int
CompareEntryKeys(const void *a, const void *b)
{
	const LedgerEntry *x = *(const LedgerEntry *const *) a;
	const LedgerEntry *y = *(const LedgerEntry *const *) b;

	if (x->account_id != y->account_id)
		return (x->account_id > y->account_id) - (x->account_id < y->account_id);
	return (x->seq > y->seq) - (x->seq < y->seq);
}

/*
 * Inserts the batch's journal entries in key order: a batch's entries of
 * one account are neighbours in the primary key, so their index inserts
 * find the leaf page their predecessor just used.
 */
void
LedgerHeapInsertJournal(LedgerBatch *batch)
{
	HeapTarget	t;
	int			a_account, a_seq, a_kind, a_amount, a_balance, a_reserved,
				a_transfer, a_hold, a_counterparty, a_created, a_hash;
	Datum		kinds[ENTRY_BARTER + 1];
	LedgerEntry **order;
	TupleTableSlot **slots;
	int			nslots;

	Assert(batch->nentries > 0);
	OpenTarget(&t, "journal");
	a_account = Att(&t, "account_id");
	a_seq = Att(&t, "seq");
	a_kind = Att(&t, "kind");
	a_amount = Att(&t, "amount");
	a_balance = Att(&t, "balance_after");
	a_reserved = Att(&t, "reserved_after");
	a_transfer = Att(&t, "transfer_id");
	a_hold = Att(&t, "hold_id");
	a_counterparty = Att(&t, "counterparty");
	a_created = Att(&t, "created_at");
	a_hash = Att(&t, "hash");
	for (int k = 0; k <= ENTRY_BARTER; k++)
		kinds[k] = EnumDatum("entry_kind", EntryKindName((EntryKind) k));

	order = palloc(sizeof(LedgerEntry *) * batch->nentries);
	for (int i = 0; i < batch->nentries; i++)
		order[i] = &batch->entries[i];
	if (batch->nentries > 2)
		qsort(order, batch->nentries, sizeof(LedgerEntry *), CompareEntryKeys);

	nslots = Min(batch->nentries, HEAP_INSERT_CHUNK);
	slots = MakeSlots(&t, nslots);
	for (int first = 0; first < batch->nentries; first += nslots)
	{
		int			n = Min(nslots, batch->nentries - first);

		for (int j = 0; j < n; j++)
		{
			LedgerEntry *e = order[first + j];
			TupleTableSlot *slot = slots[j];

			ClearSlot(slot);
			Put(slot, a_account, Int64GetDatum(e->account_id));
			Put(slot, a_seq, Int64GetDatum(e->seq));
			Put(slot, a_kind, kinds[e->kind]);
			Put(slot, a_amount, CreditGetDatum(e->amount));
			Put(slot, a_balance, CreditGetDatum(e->balance_after));
			Put(slot, a_reserved, CreditGetDatum(e->reserved_after));
			PutId(slot, a_transfer, e->transfer_id);
			PutId(slot, a_hold, e->hold_id);
			PutId(slot, a_counterparty, e->counterparty);
			Put(slot, a_created, TimestampTzGetDatum(batch->now));
			Put(slot, a_hash, HashBytea(e->hash));
		}
		InsertSlots(&t, slots, n);
	}
	DropSlots(slots, nslots);
	pfree(order);
	CloseTarget(&t);
}

void
LedgerHeapInsertTransfers(LedgerBatch *batch)
{
	HeapTarget	t;
	int			a_id, a_kind, a_from, a_to, a_amount, a_barter, a_currency,
				a_reference, a_hold, a_refund, a_key, a_created;
	Datum		kinds[TRANSFER_WITHDRAWAL + 1];
	Datum		currency = CStringGetTextDatum(batch->currency);
	TupleTableSlot **slots;
	int			nslots;

	Assert(batch->ntransfers > 0);
	OpenTarget(&t, "transfers");
	a_id = Att(&t, "id");
	a_kind = Att(&t, "kind");
	a_from = Att(&t, "from_account");
	a_to = Att(&t, "to_account");
	a_amount = Att(&t, "amount");
	a_barter = Att(&t, "barter_amount");
	a_currency = Att(&t, "currency");
	a_reference = Att(&t, "reference");
	a_hold = Att(&t, "hold_id");
	a_refund = Att(&t, "refund_of");
	a_key = Att(&t, "idempotency_key");
	a_created = Att(&t, "created_at");
	for (int k = 0; k <= TRANSFER_WITHDRAWAL; k++)
		kinds[k] = EnumDatum("transfer_kind", TransferKindName((TransferKind) k));

	nslots = Min(batch->ntransfers, HEAP_INSERT_CHUNK);
	slots = MakeSlots(&t, nslots);
	for (int first = 0; first < batch->ntransfers; first += nslots)
	{
		int			n = Min(nslots, batch->ntransfers - first);

		for (int j = 0; j < n; j++)
		{
			LedgerTransfer *tr = &batch->transfers[first + j];
			TupleTableSlot *slot = slots[j];

			ClearSlot(slot);
			Put(slot, a_id, Int64GetDatum(tr->id));
			Put(slot, a_kind, kinds[tr->kind]);
			Put(slot, a_from, Int64GetDatum(tr->from_account));
			Put(slot, a_to, Int64GetDatum(tr->to_account));
			Put(slot, a_amount, CreditGetDatum(tr->amount));
			Put(slot, a_barter, CreditGetDatum(tr->barter_amount));
			Put(slot, a_currency, currency);
			if (tr->reference)
				Put(slot, a_reference, CStringGetTextDatum(tr->reference));
			PutId(slot, a_hold, tr->hold_id);
			PutId(slot, a_refund, tr->refund_of);
			if (tr->idempotency_key)
				Put(slot, a_key, CStringGetTextDatum(tr->idempotency_key));
			Put(slot, a_created, TimestampTzGetDatum(batch->now));
		}
		InsertSlots(&t, slots, n);
	}
	DropSlots(slots, nslots);
	CloseTarget(&t);
}

/* The credit score after one outcome: up 1 % of the way to 1, or down 5 %. */
static Datum
MovedScore(Datum score, int change)
{
	Datum		moved;

	if (change > 0)
		moved = DirectFunctionCall2(numeric_add, score,
									DirectFunctionCall2(numeric_mul,
														DirectFunctionCall2(numeric_sub,
																			NumericGetDatum(int64_to_numeric(1)),
																			score),
														DirectFunctionCall3(numeric_in,
																			CStringGetDatum("0.01"),
																			ObjectIdGetDatum(InvalidOid),
																			Int32GetDatum(-1))));
	else
		moved = DirectFunctionCall2(numeric_mul, score,
									DirectFunctionCall3(numeric_in, CStringGetDatum("0.95"),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	return DirectFunctionCall2(numeric_round, moved, Int32GetDatum(5));
}

/* The xmin of the row version in slot. */
static TransactionId
SlotXmin(TupleTableSlot *slot)
{
	bool		isnull;

	return DatumGetTransactionId(slot_getsysattr(slot, MinTransactionIdAttributeNumber,
												 &isnull));
}

/*
 * Updates every changed account of the batch (balance, reserved, flags
 * and, after a payment outcome, credit_score): the row version locked by
 * LedgerLockAccounts (its TID) gets a new version, HOT when no indexed
 * column changes and the page has room, and index entries otherwise.  The
 * new tuple is formed with heap_modify_tuple, which copies every value out
 * of the old one, so nothing points into a buffer the update may change.
 */
void
LedgerHeapUpdateAccounts(LedgerBatch *batch)
{
	HeapTarget	t;
	TupleDesc	desc;
	TupleTableSlot *newslot;
	Datum	   *values;
	bool	   *nulls;
	bool	   *replace;
	int			a_balance, a_reserved, a_flags, a_score, a_seq_01, a_hash_01;

	OpenTarget(&t, "accounts");
	desc = RelationGetDescr(t.rel);
	newslot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc0(sizeof(bool) * desc->natts);
	replace = palloc0(sizeof(bool) * desc->natts);
	a_balance = Att(&t, "balance");
	a_reserved = Att(&t, "reserved");
	a_flags = Att(&t, "flags");
	a_score = Att(&t, "credit_score");

	/*
	 * Only what a transfer changes: the chain head (the newest entry's seq
	 * and hash) is the journal's (ReadChainHeads), and updated_at dates
	 * changes of the account's terms, the journal its movements.  Bytes
	 * that do not change before and after the balance stay out of the
	 * update's WAL record.
	 */
	replace[a_balance] = replace[a_reserved] = replace[a_flags] = true;

	/*
	 * A 0.1 schema, until ALTER EXTENSION UPDATE drops the columns, keeps
	 * the chain head in the row too, and its verify_ledger() checks it there.
	 */
	a_seq_01 = CompayColumn(t.rel, "journal_seq", true) - 1;
	a_hash_01 = CompayColumn(t.rel, "journal_hash", true) - 1;
	if (a_seq_01 >= 0)
		replace[a_seq_01] = true;
	if (a_hash_01 >= 0)
		replace[a_hash_01] = true;

	for (int i = 0; i < batch->naccounts; i++)
	{
		LedgerAccount *a = &batch->accounts[i];
		HeapTuple	oldtup;
		HeapTuple	newtup;
		bool		should_free;
		TM_FailureData tmfd;
		LockTupleMode lockmode;
		bool		update_indexes;
		TM_Result	result;

		if (!a->dirty)
			continue;
		if (!table_tuple_fetch_row_version(t.rel, &a->tid, SnapshotAny, t.slot))
			elog(ERROR, "locked account " INT64_FORMAT " vanished", a->id);
		oldtup = ExecFetchSlotHeapTuple(t.slot, false, &should_free);

		values[a_balance] = CreditGetDatum(a->balance);
		values[a_reserved] = CreditGetDatum(a->reserved);
		if (a_seq_01 >= 0)
			values[a_seq_01] = Int64GetDatum(a->seq);
		if (a_hash_01 >= 0)
			values[a_hash_01] = HashBytea(a->hash);
		values[a_flags] = Int32GetDatum(a->flags);
		replace[a_score] = a->score_change != 0 && !(a->flags & ACCOUNT_FLAG_SYSTEM);
		if (replace[a_score])
		{
			bool		isnull;
			Datum		score = heap_getattr(oldtup, a_score + 1, desc, &isnull);

			Assert(!isnull);
			values[a_score] = MovedScore(score, a->score_change);
		}
		newtup = heap_modify_tuple(oldtup, desc, values, nulls, replace);
		if (should_free)
			heap_freetuple(oldtup);
		ExecClearTuple(t.slot);
		ExecStoreHeapTuple(newtup, newslot, true);

		CompayExecConstraints(t.rri, newslot, t.estate);
		result = table_tuple_update(t.rel, &a->tid, newslot, t.cid,
									GetActiveSnapshot(), InvalidSnapshot, true,
									&tmfd, &lockmode, &update_indexes);
		if (result != TM_Ok)
			elog(ERROR, "could not update locked account " INT64_FORMAT " (%d)",
				 a->id, (int) result);
		if (update_indexes && t.rri->ri_NumIndices > 0)
			ExecInsertIndexTuples(t.rri, newslot, t.estate, false, false, NULL, NIL);
		/* The account's current version is the new one. */
		a->tid = newslot->tts_tid;
		Assert(SlotXmin(newslot) == GetCurrentTransactionId());
		LedgerChainHeadWritten(t.rel, a, &newslot->tts_tid);
		ExecClearTuple(newslot);
		ResetPerTupleExprContext(t.estate);
	}
	ExecDropSingleTupleTableSlot(newslot);
	CloseTarget(&t);
}

/* One account found by node id, before it is locked. */
typedef struct FoundAccount
{
	int64		id;
	ItemPointerData tid;
} FoundAccount;

static int
CompareFound(const void *a, const void *b)
{
	int64		x = ((const FoundAccount *) a)->id;
	int64		y = ((const FoundAccount *) b)->id;

	return (x > y) - (x < y);
}

/* The columns of an account that a lock reads, as attribute numbers. */
typedef struct AccountColumns
{
	AttrNumber	id;
	AttrNumber	node_id;
	AttrNumber	balance;
	AttrNumber	reserved;
	AttrNumber	credit_limit;
	AttrNumber	flags;
} AccountColumns;

static void
FindAccountColumns(HeapTarget *t, AccountColumns *c)
{
	c->id = CompayColumn(t->rel, "id", false);
	c->node_id = CompayColumn(t->rel, "node_id", false);
	c->balance = CompayColumn(t->rel, "balance", false);
	c->reserved = CompayColumn(t->rel, "reserved", false);
	c->credit_limit = CompayColumn(t->rel, "credit_limit", false);
	c->flags = CompayColumn(t->rel, "flags", false);
}

/* Reads the locked version in slot into an account. */
static void
ReadAccount(TupleTableSlot *slot, const AccountColumns *c, LedgerAccount *a)
{
	bool		isnull;

	a->id = DatumGetInt64(slot_getattr(slot, c->id, &isnull));
	a->node_id = TextDatumGetCString(slot_getattr(slot, c->node_id, &isnull));
	a->balance = DatumGetCredit(slot_getattr(slot, c->balance, &isnull));
	a->reserved = DatumGetCredit(slot_getattr(slot, c->reserved, &isnull));
	a->credit_limit = DatumGetCredit(slot_getattr(slot, c->credit_limit, &isnull));
	a->flags = DatumGetInt32(slot_getattr(slot, c->flags, &isnull));
	ItemPointerCopy(&slot->tts_tid, &a->tid);
	a->xmin = SlotXmin(slot);
}

/*
 * The newest journal entry of account_id at or after seq from: false when
 * there is none.
 */
static bool
NewestEntry(IndexScanDesc scan, TupleTableSlot *slot, int64 account_id, int64 from)
{
	ScanKeyData keys[2];

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(account_id));
	ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(from));
	index_rescan(scan, keys, 2, NULL, 0);
	return index_getnext_slot(scan, BackwardScanDirection, slot);
}

/*
 * Reads the chain head of each of the n accounts (locked): the seq and hash
 * of its newest journal entry, or 0 and zeros before its first; known
 * without a read when the locked version is the one written with a kept
 * head (src/ledger_chain_heads.c).  The account row does not carry them,
 * so that a transfer's update of the row changes its balance and nothing
 * else.  The entry is read with a dirty snapshot: it was written by the
 * transaction that last updated the row, which has committed (we hold the
 * row's lock) or is our own, possibly in this very command; journal
 * entries are never updated or deleted, and entries of an aborted
 * transaction are not seen.
 */
static void
ReadChainHeads(Relation accounts, LedgerAccount *accounts_of, int n)
{
	Relation	journal;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	SnapshotData dirty;
	AttrNumber	a_seq;
	AttrNumber	a_hash;
	bool	   *known = palloc(sizeof(bool) * Max(n, 1));
	int64	   *hint = palloc(sizeof(int64) * Max(n, 1));
	int			nknown = 0;

	for (int i = 0; i < n; i++)
	{
		known[i] = LedgerChainHeadTake(accounts, &accounts_of[i], &hint[i]);
		nknown += known[i] ? 1 : 0;
	}
	if (nknown == n)
	{
		pfree(known);
		pfree(hint);
		return;
	}
	InitDirtySnapshot(dirty);
	journal = table_open(CompayRelationOid("journal"), AccessShareLock);
	index = index_open(CompayRelationOid("journal_pkey"), AccessShareLock);
	a_seq = CompayColumn(journal, "seq", false);
	a_hash = CompayColumn(journal, "hash", false);
	slot = table_slot_create(journal, NULL);
	scan = index_beginscan(journal, index, &dirty, 2, 0);
	for (int i = 0; i < n; i++)
	{
		LedgerAccount *a = &accounts_of[i];
		int64		from = hint[i];
		bool		isnull;
		bytea	   *hash;
		bool		found;

		if (known[i])
			continue;
		found = NewestEntry(scan, slot, a->id, from);
		if (!found && from > 0)
		{
			from = 0;
			found = NewestEntry(scan, slot, a->id, from);
		}
		if (!found)
		{
			a->seq = 0;
			memset(a->hash, 0, LEDGER_HASH_LEN);
			continue;
		}
		a->seq = DatumGetInt64(slot_getattr(slot, a_seq, &isnull));
		Assert(!isnull && a->seq > 0 && a->seq >= from);
		hash = DatumGetByteaPP(slot_getattr(slot, a_hash, &isnull));
		Assert(!isnull && VARSIZE_ANY_EXHDR(hash) == LEDGER_HASH_LEN);
		memcpy(a->hash, VARDATA_ANY(hash), LEDGER_HASH_LEN);
		ExecClearTuple(slot);
		LedgerChainHeadRead(accounts, a->id, a->seq);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(journal, NoLock);
	pfree(known);
	pfree(hint);
}

/*
 * Finds the accounts of nodes (distinct) in the batch's currency through
 * the (node_id, currency) index and locks them FOR UPDATE in ascending id
 * order, as SELECT ... ORDER BY id FOR UPDATE would.  The lookup uses the
 * statement's snapshot (READ COMMITTED: a new one; REPEATABLE READ and up:
 * the transaction's); locking then waits for a concurrent writer and takes
 * the newest version of the row, which under snapshot isolation is a
 * serialization failure when that version is newer than the snapshot.
 * With LockWaitSkip a row another transaction holds is left out instead
 * (SKIP LOCKED).  Appends the locked accounts to batch->accounts (which has
 * room for them) and returns how many; *nfound says how many exist.
 */
int
LedgerHeapLockAccounts(LedgerBatch *batch, const char **nodes, int n,
					   LockWaitPolicy wait, int *nfound_out)
{
	HeapTarget	t;
	Relation	index;
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	FoundAccount *found = palloc(sizeof(FoundAccount) * Max(n, 1));
	int			nfound = 0;
	int			nlocked = 0;
	Datum		currency = CStringGetTextDatum(batch->currency);
	IndexScanDesc scan;
	AccountColumns columns;

	OpenTarget(&t, "accounts");
	FindAccountColumns(&t, &columns);
	index = index_open(CompayRelationOid("accounts_node_currency"), AccessShareLock);
	scan = index_beginscan(t.rel, index, snapshot, 2, 0);
	for (int i = 0; i < n; i++)
	{
		ScanKeyData keys[2];
		bool		isnull;

		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ,
					CStringGetTextDatum(nodes[i]));
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, currency);
		/*
		 * ScanKeyInit compares in the "C" collation; the index is ordered by
		 * the database's, so the descent must use the index's collations.
		 */
		keys[0].sk_collation = index->rd_indcollation[0];
		keys[1].sk_collation = index->rd_indcollation[1];
		index_rescan(scan, keys, 2, NULL, 0);
		if (!index_getnext_slot(scan, ForwardScanDirection, t.slot))
			continue;
		found[nfound].id = DatumGetInt64(slot_getattr(t.slot, columns.id, &isnull));
		ItemPointerCopy(&t.slot->tts_tid, &found[nfound].tid);
		nfound++;
	}
	index_endscan(scan);
	index_close(index, NoLock);

	qsort(found, nfound, sizeof(FoundAccount), CompareFound);
	for (int i = 0; i < nfound; i++)
	{
		LedgerAccount *a = &batch->accounts[batch->naccounts];

		if (!CompayLockRow(t.rel, &found[i].tid, snapshot, t.slot, t.cid, wait,
						   "account", found[i].id))
			continue;
		memset(a, 0, sizeof(*a));
		ReadAccount(t.slot, &columns, a);
		Assert(a->id == found[i].id);
		batch->naccounts++;
		nlocked++;
	}
	UnregisterSnapshot(snapshot);
	ReadChainHeads(t.rel, &batch->accounts[batch->naccounts - nlocked], nlocked);
	CloseTarget(&t);
	*nfound_out = nfound;
	return nlocked;
}

/*
 * Holds.  A hold's row is read, locked and written here as the accounts'
 * rows are: by key through its primary key, locked FOR UPDATE by
 * table_tuple_lock, updated at the locked version.  Each write ends with
 * CommandCounterIncrement, so that what follows in the same call sees it,
 * as it would after an SPI statement.
 */

/*
 * Fetches into slot the version of the row of table rel whose bigint key
 * (the first column of index) is key that snapshot sees; false when none.
 */
static bool
FetchByKey(Relation rel, const char *index_name, int64 key, Snapshot snapshot,
		   TupleTableSlot *slot)
{
	Relation	index = index_open(CompayRelationOid(index_name), AccessShareLock);
	IndexScanDesc scan = index_beginscan(rel, index, snapshot, 1, 0);
	ScanKeyData skey;
	bool		found;

	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(key));
	index_rescan(scan, &skey, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	index_close(index, NoLock);
	return found;
}

/*
 * The holder's node and currency of a hold, read without a lock with a
 * snapshot taken now (READ COMMITTED) or the transaction's; false when the
 * hold, or its account, does not exist (as the join it replaces).
 */
bool
LedgerHeapHoldOwner(int64 hold_id, char **node, char **currency)
{
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	Relation	holds = table_open(CompayRelationOid("holds"), AccessShareLock);
	Relation	accounts = table_open(CompayRelationOid("accounts"), AccessShareLock);
	TupleTableSlot *hslot = table_slot_create(holds, NULL);
	TupleTableSlot *aslot = table_slot_create(accounts, NULL);
	bool		found = false;
	bool		isnull;

	if (FetchByKey(holds, "holds_pkey", hold_id, snapshot, hslot))
	{
		Datum		account = ColumnValue(hslot, holds, "account_id", &isnull);

		if (FetchByKey(accounts, "accounts_pkey", DatumGetInt64(account), snapshot, aslot))
		{
			*node = TextDatumGetCString(ColumnValue(aslot, accounts, "node_id", &isnull));
			*currency = TextDatumGetCString(ColumnValue(aslot, accounts, "currency", &isnull));
			found = true;
		}
	}
	ExecDropSingleTupleTableSlot(hslot);
	ExecDropSingleTupleTableSlot(aslot);
	table_close(accounts, NoLock);
	table_close(holds, NoLock);
	UnregisterSnapshot(snapshot);
	return found;
}

/*
 * Locks the newest version of hold->id FOR UPDATE (waiting for a concurrent
 * writer, as SELECT ... FOR UPDATE does; under snapshot isolation a
 * version newer than the snapshot is a serialization failure) and reads
 * its status, remaining and expiry into hold.
 */
void
LedgerHeapLockHold(LedgerHoldRow *hold)
{
	HeapTarget	t;
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	bool		isnull;
	Datum		expires_at;

	OpenTarget(&t, "holds");
	if (!FetchByKey(t.rel, "holds_pkey", hold->id, snapshot, t.slot))
		elog(ERROR, "hold " INT64_FORMAT " vanished", hold->id);
	ItemPointerCopy(&t.slot->tts_tid, &hold->tid);
	CompayLockRow(t.rel, &hold->tid, snapshot, t.slot, t.cid, LockWaitBlock, "hold", hold->id);
	hold->account_id = DatumGetInt64(ColumnValue(t.slot, t.rel, "account_id", &isnull));
	hold->amount = DatumGetCredit(ColumnValue(t.slot, t.rel, "amount", &isnull));
	hold->remaining = DatumGetCredit(ColumnValue(t.slot, t.rel, "remaining", &isnull));
	hold->status = DatumGetCString(DirectFunctionCall1(enum_out,
													   ColumnValue(t.slot, t.rel, "status", &isnull)));
	expires_at = ColumnValue(t.slot, t.rel, "expires_at", &isnull);
	hold->expires = !isnull;
	hold->expires_at = isnull ? 0 : DatumGetTimestampTz(expires_at);
	UnregisterSnapshot(snapshot);
	CloseTarget(&t);
}

/*
 * Writes hold's remaining and status at its locked version (resolved_at is
 * now unless the hold stays pending); hold->tid becomes the new version.
 * A change of status moves the row out of the pending holds' partial
 * indexes, so it is not a HOT update and gets its index entries here.
 */
void
LedgerHeapUpdateHold(LedgerHoldRow *hold, TimestampTz now)
{
	HeapTarget	t;
	TupleDesc	desc;
	TupleTableSlot *newslot;
	HeapTuple	oldtup;
	HeapTuple	newtup;
	bool		should_free;
	Datum	   *values;
	bool	   *nulls;
	bool	   *replace;
	int			a_resolved;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;
	TM_Result	result;

	OpenTarget(&t, "holds");
	desc = RelationGetDescr(t.rel);
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc0(sizeof(bool) * desc->natts);
	replace = palloc0(sizeof(bool) * desc->natts);
	a_resolved = Att(&t, "resolved_at");
	replace[Att(&t, "remaining")] = replace[Att(&t, "status")] = replace[a_resolved] = true;
	values[Att(&t, "remaining")] = CreditGetDatum(hold->remaining);
	values[Att(&t, "status")] = EnumDatum("hold_status", hold->status);
	nulls[a_resolved] = strcmp(hold->status, "pending") == 0;
	values[a_resolved] = nulls[a_resolved] ? (Datum) 0 : TimestampTzGetDatum(now);

	if (!table_tuple_fetch_row_version(t.rel, &hold->tid, SnapshotAny, t.slot))
		elog(ERROR, "locked hold " INT64_FORMAT " vanished", hold->id);
	oldtup = ExecFetchSlotHeapTuple(t.slot, false, &should_free);
	newtup = heap_modify_tuple(oldtup, desc, values, nulls, replace);
	if (should_free)
		heap_freetuple(oldtup);
	ExecClearTuple(t.slot);
	newslot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
	ExecStoreHeapTuple(newtup, newslot, true);
	CompayExecConstraints(t.rri, newslot, t.estate);
	result = table_tuple_update(t.rel, &hold->tid, newslot, t.cid, GetActiveSnapshot(),
								InvalidSnapshot, true, &tmfd, &lockmode, &update_indexes);
	if (result != TM_Ok)
		elog(ERROR, "could not update locked hold " INT64_FORMAT " (%d)", hold->id, (int) result);
	if (update_indexes && t.rri->ri_NumIndices > 0)
		ExecInsertIndexTuples(t.rri, newslot, t.estate, false, false, NULL, NIL);
	ItemPointerCopy(&newslot->tts_tid, &hold->tid);
	ExecDropSingleTupleTableSlot(newslot);
	pfree(values);
	pfree(nulls);
	pfree(replace);
	CloseTarget(&t);
	CommandCounterIncrement();
}

/* Inserts a new pending hold: hold's id, account, amount, reference, key, expiry. */
void
LedgerHeapInsertHold(LedgerHoldRow *hold, TimestampTz now)
{
	HeapTarget	t;
	TupleTableSlot **slots;

	OpenTarget(&t, "holds");
	slots = MakeSlots(&t, 1);
	ClearSlot(slots[0]);
	Put(slots[0], Att(&t, "id"), Int64GetDatum(hold->id));
	Put(slots[0], Att(&t, "account_id"), Int64GetDatum(hold->account_id));
	Put(slots[0], Att(&t, "amount"), CreditGetDatum(hold->amount));
	Put(slots[0], Att(&t, "remaining"), CreditGetDatum(hold->amount));
	Put(slots[0], Att(&t, "status"), EnumDatum("hold_status", "pending"));
	if (hold->reference)
		Put(slots[0], Att(&t, "reference"), CStringGetTextDatum(hold->reference));
	if (hold->expires)
		Put(slots[0], Att(&t, "expires_at"), TimestampTzGetDatum(hold->expires_at));
	if (hold->idempotency_key)
		Put(slots[0], Att(&t, "idempotency_key"), CStringGetTextDatum(hold->idempotency_key));
	Put(slots[0], Att(&t, "created_at"), TimestampTzGetDatum(now));
	InsertSlots(&t, slots, 1);
	ItemPointerCopy(&slots[0]->tts_tid, &hold->tid);
	DropSlots(slots, 1);
	CloseTarget(&t);
	CommandCounterIncrement();
}
