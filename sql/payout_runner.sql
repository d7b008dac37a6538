-- CALL compay.run_payouts() and compay.poll_deposits(): refused where they
-- cannot commit (2D000), for superusers only, and what a run records in
-- compay.runner_status (here with no wallet listening: the wallet error).
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Inside a transaction block: nothing runs, 2D000.
BEGIN;
CALL compay.run_payouts();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
CALL compay.poll_deposits();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- From a function (an atomic context): the same.
CREATE FUNCTION pg_temp.pay() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CALL compay.run_payouts();
END
$$;
SELECT pg_temp.pay();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS runs FROM compay.runner_status;

-- Not for the application's roles.
SET ROLE compay_admin;
CALL compay.run_payouts();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- On its own: a round with nothing to pay makes no payout; the health
-- check finds no wallet at compay.wallet_rpc_url and says so.
CALL compay.run_payouts();
CALL compay.poll_deposits();
SELECT runner, state, moved, skipped, last_error, wallet_error IS NOT NULL AS wallet_error_shown,
       wallet_height, unlocked_balance, queued_payouts, oldest_stuck_payout,
       finished_at >= started_at AS finished
FROM compay.runner_status ORDER BY runner;
SELECT count(*) AS payouts FROM compay.payout_transactions;

-- The worker's status view shows the health columns (the worker's row).
SELECT array_agg(attname ORDER BY attnum) FILTER (WHERE attnum > 11) AS health_columns
FROM pg_attribute WHERE attrelid = 'compay.worker_status'::regclass AND attnum > 0;

-- The lock of each runner is a session-level advisory lock, free again
-- after the call.
SELECT count(*) AS locks_held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT bool_and(ok) AS ledger_ok FROM compay.verify_ledger();
