/*-------------------------------------------------------------------------
 *
 * compay.h
 *	  Limits, SQLSTATEs of our own and the helpers shared by every part of
 *	  compay (src/compay_util.c).
 *
 * Domain outcomes (insufficient funds, a hold that is not pending, an
 * idempotency conflict, ...) have SQLSTATEs of their own in class PY, a class
 * PostgreSQL does not use.  This is the one list of them in C; the SQL
 * pieces raise them by code (ERRCODE = 'PY010'), and docs/reference.md
 * ("Error codes") lists each with when it is raised.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_H
#define COMPAY_H

#include "executor/tuptable.h"
#include "nodes/lockoptions.h"
#include "utils/elog.h"
#include "utils/rel.h"
#include "utils/snapshot.h"
#include "utils/numeric.h"

/* A debit, reserve or refund needs more than the account has available. */
#define ERRCODE_COMPAY_INSUFFICIENT_FUNDS	MAKE_SQLSTATE('P','Y','0','0','1')
/* The node has no account in that currency (and none is opened for it). */
#define ERRCODE_COMPAY_UNKNOWN_ACCOUNT		MAKE_SQLSTATE('P','Y','0','0','2')
/* A payment method whose currency is not the task's (SQL: payments.sql). */
#define ERRCODE_COMPAY_CURRENCY_MISMATCH	MAKE_SQLSTATE('P','Y','0','0','3')
/* Capture or release of a hold that is not pending, or past its expiry. */
#define ERRCODE_COMPAY_HOLD_NOT_PENDING		MAKE_SQLSTATE('P','Y','0','0','4')
/* An idempotency key (or task id) reused with other arguments. */
#define ERRCODE_COMPAY_IDEMPOTENCY_CONFLICT MAKE_SQLSTATE('P','Y','0','0','5')
/* No hold with that id. */
#define ERRCODE_COMPAY_UNKNOWN_HOLD			MAKE_SQLSTATE('P','Y','0','0','6')
/* No transfer with that id. */
#define ERRCODE_COMPAY_UNKNOWN_TRANSFER		MAKE_SQLSTATE('P','Y','0','0','7')
/* A refund of more than the original's money part less earlier refunds. */
#define ERRCODE_COMPAY_REFUND_EXCEEDS		MAKE_SQLSTATE('P','Y','0','0','8')
/* A change to an append-only table (SQL: ledger.sql). */
#define ERRCODE_COMPAY_APPEND_ONLY			MAKE_SQLSTATE('P','Y','0','0','9')
/* No job or task with that task id (SQL: jobs.sql, payments.sql). */
#define ERRCODE_COMPAY_UNKNOWN_TASK			MAKE_SQLSTATE('P','Y','0','1','0')
/* A provider's stake below compay.min_stake (SQL: jobs.sql). */
#define ERRCODE_COMPAY_INSUFFICIENT_STAKE	MAKE_SQLSTATE('P','Y','0','1','1')
/* No payment with that id (SQL: payments.sql). */
#define ERRCODE_COMPAY_UNKNOWN_PAYMENT		MAKE_SQLSTATE('P','Y','0','1','2')
/* No settlement with that id (SQL: settlement.sql). */
#define ERRCODE_COMPAY_UNKNOWN_SETTLEMENT	MAKE_SQLSTATE('P','Y','0','1','3')
/* The wallet RPC cannot be reached, timed out, or gave no usable reply. */
#define ERRCODE_COMPAY_WALLET_UNAVAILABLE	MAKE_SQLSTATE('P','Y','0','1','4')
/* The wallet RPC answered with an error, or with fields that are not valid. */
#define ERRCODE_COMPAY_WALLET_ERROR			MAKE_SQLSTATE('P','Y','0','1','5')
/* No payout with that id (SQL: payout.sql). */
#define ERRCODE_COMPAY_UNKNOWN_PAYOUT		MAKE_SQLSTATE('P','Y','0','1','6')
/* A payout request below the node's min_payout (SQL: payout.sql). */
#define ERRCODE_COMPAY_PAYOUT_BELOW_MIN		MAKE_SQLSTATE('P','Y','0','1','7')
/* A payout request over the node's daily cap, max_per_day (SQL: payout.sql). */
#define ERRCODE_COMPAY_PAYOUT_OVER_CAP		MAKE_SQLSTATE('P','Y','0','1','8')
/* A payout request for a node with nothing payable (SQL: payout.sql). */
#define ERRCODE_COMPAY_NOTHING_PAYABLE		MAKE_SQLSTATE('P','Y','0','1','9')
/* A provider or verifier whose credit score is below compay.min_score_assign
 * or compay.min_score_verify (SQL: jobs.sql). */
#define ERRCODE_COMPAY_INSUFFICIENT_SCORE	MAKE_SQLSTATE('P','Y','0','2','0')
/* A verifier past its daily vote limit (SQL: jobs.sql). */
#define ERRCODE_COMPAY_VOTE_LIMIT			MAKE_SQLSTATE('P','Y','0','2','1')
/* A wallet transaction with compay's payout note that this database cannot
 * adopt (SQL: payout_reconcile.sql). */
#define ERRCODE_COMPAY_UNMATCHED_WALLET_TX	MAKE_SQLSTATE('P','Y','0','2','2')
/* A deposit request id that does not exist (SQL: deposit_request.sql). */
#define ERRCODE_COMPAY_DEPOSIT_REQUEST_UNKNOWN	MAKE_SQLSTATE('P','Y','0','2','3')
/* The wallet gave a subaddress compay used already, as a wallet restored
 * without its subaddresses does (SQL: deposit_request.sql). */
#define ERRCODE_COMPAY_SUBADDRESS_REUSED	MAKE_SQLSTATE('P','Y','0','2','4')
/* events_since() from an id whose successors retention deleted (SQL: events.sql). */
#define ERRCODE_COMPAY_EVENTS_EXPIRED		MAKE_SQLSTATE('P','Y','0','2','6')
/* remove_payout_address of an address the node does not have (SQL:
 * payout_addresses.sql). */
#define ERRCODE_COMPAY_UNKNOWN_PAYOUT_ADDRESS	MAKE_SQLSTATE('P','Y','0','2','7')
/* request_withdrawal for a node without an operational address, and of
 * more than it can withdraw (SQL: withdrawal.sql). */
#define ERRCODE_COMPAY_NO_OPERATIONAL_ADDRESS	MAKE_SQLSTATE('P','Y','0','3','4')
#define ERRCODE_COMPAY_OVER_WITHDRAWABLE	MAKE_SQLSTATE('P','Y','0','3','5')
/* A shard function on a database that is not a configured shard, or
 * without PgQ/dblink (SQL: shard.sql). */
#define ERRCODE_COMPAY_SHARD_NOT_CONFIGURED	MAKE_SQLSTATE('P','Y','0','3','6')
/* A node-scoped call on a shard that does not own the node (shard.c,
 * shard.sql). */
#define ERRCODE_COMPAY_WRONG_SHARD			MAKE_SQLSTATE('P','Y','0','3','7')

/* Longest piece of user input echoed back in an error message. */
#define COMPAY_ECHO_LEN_MAX 64

/* Returns a palloc'd copy of input, cut to COMPAY_ECHO_LEN_MAX characters. */
extern char *CompayEchoInput(const char *input);

/* numeric from and to text, and compared. */
extern Numeric CompayNumeric(const char *text);
extern char *CompayNumericText(Numeric n);
extern int	CompayNumericCmp(Numeric a, Numeric b);

/* Locks a row FOR UPDATE as SELECT ... FOR UPDATE would (compay_util.c). */
extern bool CompayLockRow(Relation rel, ItemPointer tid, Snapshot snapshot,
						  TupleTableSlot *slot, CommandId cid, LockWaitPolicy wait,
						  const char *what, int64 id);

/*
 * The attribute number of a column of rel, read from the relation's
 * descriptor; one it does not have is an error, or InvalidAttrNumber when
 * missing_ok (compay_util.c).
 */
extern AttrNumber CompayColumn(Relation rel, const char *column, bool missing_ok);

/* ExecConstraints, the CHECK constraints planned once a backend (check_constraints.c). */
struct ResultRelInfo;
struct EState;
extern void CompayExecConstraints(struct ResultRelInfo *rri, TupleTableSlot *slot,
								  struct EState *estate);

#endif							/* COMPAY_H */
