/*-------------------------------------------------------------------------
 *
 * journal_hash.c
 *	  The per-account hash chain of the journal, and the names of entry and
 *	  transfer kinds.
 *
 * Each journal entry stores SHA-256(previous entry's hash || canonical
 * text of its own fields); an account's first entry chains from 32 zero
 * bytes, and the newest is the chain head the next entry chains from (read
 * from the journal by ledger_heap.c; 0.1 kept a copy in the account row).
 * The canonical text is written here and only here, and
 * compay.journal_entry_hash() exposes the same routine so that
 * verify_ledger() checks with exactly the code that wrote the chain.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "ledger.h"

PG_FUNCTION_INFO_V1(compay_journal_entry_hash);

static const char *const entry_kind_names[] = {
	"debit", "credit", "reserve", "release", "refund", "barter"
};

static const char *const transfer_kind_names[] = {
	"deposit", "transfer", "capture", "refund", "barter", "withdrawal"
};

StaticAssertDecl(lengthof(entry_kind_names) == ENTRY_BARTER + 1,
				 "entry kind names out of step with EntryKind");
StaticAssertDecl(lengthof(transfer_kind_names) == TRANSFER_WITHDRAWAL + 1,
				 "transfer kind names out of step with TransferKind");
StaticAssertDecl(PG_SHA256_DIGEST_LENGTH == LEDGER_HASH_LEN,
				 "ledger hash is a SHA-256 digest");

const char *
EntryKindName(EntryKind kind)
{
	Assert(kind >= ENTRY_DEBIT && kind <= ENTRY_BARTER);
	return entry_kind_names[kind];
}

const char *
TransferKindName(TransferKind kind)
{
	Assert(kind >= TRANSFER_DEPOSIT && kind <= TRANSFER_WITHDRAWAL);
	return transfer_kind_names[kind];
}

static EntryKind
EntryKindFromName(const char *name)
{
	for (int i = 0; i < (int) lengthof(entry_kind_names); i++)
		if (strcmp(name, entry_kind_names[i]) == 0)
			return (EntryKind) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown journal entry kind \"%s\"", CompayEchoInput(name))));
}

/* Appends v in decimal at p (as INT64_FORMAT prints it); returns the end. */
static char *
AppendInt64(char *p, int64 v)
{
	return p + pg_lltoa(v, p);
}

static char *
AppendString(char *p, const char *s)
{
	size_t		n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

/*
 * Computes an entry's hash into out: SHA-256 of the previous entry's hash
 * and the text "account_id|seq|kind|amount|balance_after|reserved_after|
 * transfer_id|hold_id|counterparty|created_at" (ids 0 when none, credits
 * as their text, created_at in microseconds since 2000-01-01).  The text
 * is built by hand, not by snprintf, which was most of the hash's time.
 * ctx is a SHA-256 context to reuse (pg_cryptohash_init resets it), or NULL
 * for a one-off.
 */
void
JournalEntryHash(pg_cryptohash_ctx *ctx, const uint8 *prev,
				 const LedgerEntry *entry, TimestampTz created_at, uint8 *out)
{
	bool		own = (ctx == NULL);
	char		text[512];
	char	   *p = text;
	int			len;

	StaticAssertStmt(10 * (MAXINT8LEN + 1) + 3 * CREDIT_TEXT_LEN_MAX < sizeof(text),
					 "room for an entry's text");
	p = AppendInt64(p, entry->account_id);
	*p++ = '|';
	p = AppendInt64(p, entry->seq);
	*p++ = '|';
	p = AppendString(p, EntryKindName(entry->kind));
	*p++ = '|';
	p += CreditFormat(entry->amount, CREDIT_SCALE, false, p);
	*p++ = '|';
	p += CreditFormat(entry->balance_after, CREDIT_SCALE, false, p);
	*p++ = '|';
	p += CreditFormat(entry->reserved_after, CREDIT_SCALE, false, p);
	*p++ = '|';
	p = AppendInt64(p, entry->transfer_id);
	*p++ = '|';
	p = AppendInt64(p, entry->hold_id);
	*p++ = '|';
	p = AppendInt64(p, entry->counterparty);
	*p++ = '|';
	p = AppendInt64(p, (int64) created_at);
	len = p - text;
	Assert(len > 0 && len < (int) sizeof(text));

	if (own)
		ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, prev, LEDGER_HASH_LEN) < 0 ||
		pg_cryptohash_update(ctx, (uint8 *) text, len) < 0 ||
		pg_cryptohash_final(ctx, out, LEDGER_HASH_LEN) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	if (own)
		pg_cryptohash_free(ctx);
}

static int64
ArgInt64OrZero(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? 0 : PG_GETARG_INT64(n);
}

/*
 * compay.journal_entry_hash(prev, account_id, seq, kind, amount,
 * balance_after, reserved_after, transfer_id, hold_id, counterparty,
 * created_at): the hash an entry with these fields must carry.
 */
Datum
compay_journal_entry_hash(PG_FUNCTION_ARGS)
{
	LedgerEntry entry;
	bytea	   *prev;
	bytea	   *result = palloc(VARHDRSZ + LEDGER_HASH_LEN);

	for (int i = 0; i < 7; i++)
		if (PG_ARGISNULL(i))
			PG_RETURN_NULL();
	if (PG_ARGISNULL(10))
		PG_RETURN_NULL();
	prev = PG_GETARG_BYTEA_PP(0);
	if (VARSIZE_ANY_EXHDR(prev) != LEDGER_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a journal hash has %d bytes, not %d", LEDGER_HASH_LEN,
						(int) VARSIZE_ANY_EXHDR(prev))));

	memset(&entry, 0, sizeof(entry));
	entry.account_id = PG_GETARG_INT64(1);
	entry.seq = PG_GETARG_INT64(2);
	entry.kind = EntryKindFromName(text_to_cstring(PG_GETARG_TEXT_PP(3)));
	entry.amount = PG_GETARG_CREDIT(4);
	entry.balance_after = PG_GETARG_CREDIT(5);
	entry.reserved_after = PG_GETARG_CREDIT(6);
	entry.transfer_id = ArgInt64OrZero(fcinfo, 7);
	entry.hold_id = ArgInt64OrZero(fcinfo, 8);
	entry.counterparty = ArgInt64OrZero(fcinfo, 9);

	JournalEntryHash(NULL, (uint8 *) VARDATA_ANY(prev), &entry,
					 PG_GETARG_TIMESTAMPTZ(10), (uint8 *) VARDATA(result));
	SET_VARSIZE(result, VARHDRSZ + LEDGER_HASH_LEN);
	PG_RETURN_BYTEA_P(result);
}
