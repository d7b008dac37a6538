-- Writes in a read-only transaction (every transaction of a hot standby,
-- see test/t/051_standby_reads.pl) are refused up front with PostgreSQL's
-- read-only error, 25006, before any lookup: the C ledger functions
-- (LedgerBegin), every function that checks the caller for a write
-- (require_node), an idempotent replay too.  Reads answer.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT deposit('ro-a', '100', idempotency_key => 'ro-dep') > 0 AS funded;

BEGIN TRANSACTION READ ONLY;
SELECT transfer('ro-a', 'ro-b', '1'); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN TRANSACTION READ ONLY;
SELECT deposit('ro-a', '100', idempotency_key => 'ro-dep'); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN TRANSACTION READ ONLY;
SELECT admin_deposit('ro-a', '1', 'XMR', 'ticket 1'); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN TRANSACTION READ ONLY;
SELECT reserve('ro-a', '1'); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN TRANSACTION READ ONLY;
SELECT expire_holds(); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN TRANSACTION READ ONLY;
SELECT set_payout_policy('ro-a', true, '1', NULL, NULL); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN TRANSACTION READ ONLY;
SELECT adopt_deposit_address('ro-a', 3); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Reads answer in a read-only transaction.
BEGIN TRANSACTION READ ONLY;
SELECT balance, reserved FROM balance('ro-a');
SELECT bool_and(ok) AS ledger_ok FROM verify_ledger();
ROLLBACK;

-- Outside one, the same calls write.
SELECT transfer('ro-a', 'ro-b', '1') > 0 AS transferred;
SELECT deposit('ro-a', '100', idempotency_key => 'ro-dep') > 0 AS replayed;
SELECT balance FROM balance('ro-b');
SELECT bool_and(ok) AS ledger_ok FROM verify_ledger();
