-- Node roles: a role granted compay_node acts only for the nodes that
-- compay.node_roles maps it to (42501 for any other node), and reads its
-- own rows through the functions, never the tables.  compay_app (the
-- trusted backend) is not restricted.  Each call is shown with its SQLSTATE.
SET search_path = public, compay;
SET client_min_messages = warning;
DROP EXTENSION compay CASCADE;
CREATE EXTENSION compay;
DROP ROLE IF EXISTS sn_node_a, sn_node_b, sn_app, sn_group;
RESET client_min_messages;
SELECT current_user AS super \gset
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set addr_a '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'

SELECT rolname, rolcanlogin, pg_has_role('compay_node', 'compay_reader', 'member') AS node_is_reader
FROM pg_roles WHERE rolname = 'compay_node';

CREATE ROLE sn_node_a LOGIN IN ROLE compay_node;
CREATE ROLE sn_node_b LOGIN IN ROLE compay_node;
CREATE ROLE sn_app LOGIN IN ROLE compay_app;
CREATE ROLE sn_group NOLOGIN;
GRANT sn_group TO sn_node_b;

-- Two providers, sn-a and sn-b, each running one task of sn-req.
SELECT deposit(n, '100') > 0 AS funded FROM unnest(ARRAY['sn-a', 'sn-b', 'sn-req']) n;
SELECT submit_task('sn-task-a', 'sn-req', 'sn-a', 'render') > 0 AS task_a,
       submit_task('sn-task-b', 'sn-req', 'sn-b', 'render') > 0 AS task_b;

-- The mapping, managed by compay_admin.
SELECT add_node_role('sn_node_a', 'sn-a') AS mapped;
SELECT add_node_role('sn_node_a', 'sn-a') AS mapped_again;
SELECT add_node_role('sn_group', 'sn-b') AS group_mapped;     -- sn_node_b through sn_group
SELECT add_node_role('sn_nobody', 'sn-a'); \echo :LAST_ERROR_SQLSTATE
SELECT add_node_role('sn_node_a', '$fees'); \echo :LAST_ERROR_SQLSTATE
SELECT add_node_role('sn_node_a', ''); \echo :LAST_ERROR_SQLSTATE
SELECT add_node_role(NULL, 'sn-a'); \echo :LAST_ERROR_SQLSTATE
SET ROLE compay_app;
SELECT add_node_role('sn_node_a', 'sn-b'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT role_name, node_id FROM node_roles ORDER BY 1, 2;

-- sn_node_a acts for sn-a.
\c - sn_node_a
SET search_path = public, compay;
\set VERBOSITY terse
\set SHOW_CONTEXT never
SELECT balance, available FROM compay.balance('sn-a');
SELECT count(*) AS entries FROM compay.history('sn-a');
SELECT compay.record_usage('sn-task-a', 'sn-a', 's1', '2026-11-30 06:00+00',
                           compay.metrics(cpu_seconds => 10)) AS recorded;
SELECT compay.set_payout_address('sn-a', :'addr_a') AS kind;
SELECT compay.set_payout_policy('sn-a', true, '1', '1 hour', '50');
SELECT auto_payout, min_payout FROM compay.payout_policy('sn-a');
SELECT compay.transfer('sn-a', 'sn-b', '5') > 0 AS paid_b;
SELECT compay.barter_balance('sn-a', 'sn-b') AS barter;
-- Its idempotency keys are its own: a retry gets its first transfer, and
-- the application's key of the same text (below) is another key.
SELECT compay.transfer('sn-a', 'sn-b', '1', NULL, 'sn-order-7') AS node_first \gset
SELECT compay.transfer('sn-a', 'sn-b', '1', NULL, 'sn-order-7') = :node_first AS node_retry_same;

-- ... and nothing of sn-b's: 42501 from the check inside each function.
SELECT * FROM compay.balance('sn-b'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM compay.history('sn-b'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.barter_balance('sn-b', 'sn-a'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM compay.payout_policy('sn-b'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.transfer('sn-b', 'sn-a', '5'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.record_usage('sn-task-b', 'sn-b', 's1', '2026-11-30 06:00+00',
                           compay.metrics(cpu_seconds => 10)); \echo :LAST_ERROR_SQLSTATE
SELECT compay.set_payout_address('sn-b', :'addr_a'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.set_payout_policy('sn-b', true, '0', '1 hour', '1000'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit_address('sn-b'); \echo :LAST_ERROR_SQLSTATE
-- Its own node id on another provider's task: the task's provider check (22023).
SELECT compay.record_usage('sn-task-b', 'sn-a', 's2', '2026-11-30 06:00+00',
                           compay.metrics(cpu_seconds => 10)); \echo :LAST_ERROR_SQLSTATE
-- No table is readable, and the application's functions are not granted.
SELECT count(*) FROM compay.accounts; \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM compay.journal; \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM compay.usage_samples; \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM compay.payout_addresses; \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM compay.node_roles; \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit('sn-a', '1000'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.reserve('sn-a', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.transfer_batch(ARRAY['sn-a'], ARRAY['sn-b'], ARRAY['1']::compay.credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT compay.submit_job('sn-job', 'sn-a', 'render', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.verify_job('sn-task-b', 'sn-a', true); \echo :LAST_ERROR_SQLSTATE
SELECT compay.add_node_role('sn_node_a', 'sn-b'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM compay.verify_ledger(); \echo :LAST_ERROR_SQLSTATE

-- sn_node_b acts for sn-b through its group role, not for sn-a.
\c - sn_node_b
SET search_path = public, compay;
\set VERBOSITY terse
\set SHOW_CONTEXT never
SELECT balance FROM compay.balance('sn-b');
SELECT compay.record_usage('sn-task-b', 'sn-b', 's1', '2026-11-30 06:00+00',
                           compay.metrics(cpu_seconds => 20)) AS recorded;
SELECT * FROM compay.balance('sn-a'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.transfer('sn-a', 'sn-b', '1'); \echo :LAST_ERROR_SQLSTATE

-- The checks are inside the functions, not only in the grants: with
-- reserve, release, transfer_batch, stake and expire_holds granted, a
-- node role still acts only for its own node (and never for every node).
\c - :super
SET search_path = public, compay;
\set VERBOSITY default
\set SHOW_CONTEXT never
GRANT EXECUTE ON FUNCTION reserve(text, credit, text, interval, text, text),
    release(bigint, text), stake(text, credit, text, text), expire_holds(),
    transfer_batch(text[], text[], credit[], text[], text[], text) TO sn_node_a;
SELECT reserve('sn-b', '1') AS hold_b \gset
\c - sn_node_a
SET search_path = public, compay;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT compay.reserve('sn-a', '1') > 0 AS reserved_own;
SELECT compay.stake('sn-a', '2') AS staked_own;
SELECT compay.stake('sn-a', '1') AS staked_more;    -- releases its own stake hold, holds 3
SELECT compay.reserve('sn-b', '1');
SELECT compay.release(:hold_b);
SELECT compay.transfer_batch(ARRAY['sn-a', 'sn-b'], ARRAY['sn-b', 'sn-a'],
                             ARRAY['1', '1']::compay.credit[]);
SELECT compay.expire_holds();
\set VERBOSITY terse

-- The trusted backend (a compay_app role) is not restricted.
\c - sn_app
SET search_path = public, compay;
\set VERBOSITY terse
\set SHOW_CONTEXT never
SELECT balance FROM compay.balance('sn-b');
SELECT compay.transfer('sn-b', 'sn-a', '1') > 0 AS app_moves_b;
SELECT compay.transfer('sn-b', 'sn-a', '2', NULL, 'sn-order-7') <> :node_first AS app_key_not_claimed_by_node;
SELECT compay.record_usage('sn-task-b', 'sn-b', 's2', '2026-11-30 06:01+00',
                           compay.metrics(cpu_seconds => 5)) AS app_records_b;
SELECT count(*) > 0 AS app_reads_tables FROM compay.accounts;

-- Inside a security-restricted operation the caller cannot be told:
-- compay refuses, whoever the session's role is.
\c - :super
SET search_path = public, compay;
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE MATERIALIZED VIEW sn_balances AS SELECT balance FROM balance('sn-a') WITH NO DATA;
REFRESH MATERIALIZED VIEW sn_balances;
DROP MATERIALIZED VIEW sn_balances;
\set VERBOSITY terse

-- Unmapped, sn_node_a acts for no one.
SELECT remove_node_role('sn_node_a', 'sn-a') AS removed,
       remove_node_role('sn_node_a', 'sn-a') AS removed_again;
\c - sn_node_a
SET search_path = public, compay;
\set VERBOSITY terse
SELECT * FROM compay.balance('sn-a'); \echo :LAST_ERROR_SQLSTATE

\c - :super
SET search_path = public, compay;
SELECT node_id, balance, reserved FROM accounts
WHERE node_id LIKE 'sn-%' AND currency = 'CREDIT' ORDER BY node_id;
SELECT count(*) AS samples FROM usage_samples s JOIN jobs j ON j.id = s.job_id WHERE j.task_id LIKE 'sn-%';
SELECT bool_and(ok) AS ledger_ok FROM verify_ledger();
REVOKE EXECUTE ON FUNCTION reserve(text, credit, text, interval, text, text),
    release(bigint, text), stake(text, credit, text, text), expire_holds(),
    transfer_batch(text[], text[], credit[], text[], text[], text) FROM sn_node_a;
DELETE FROM node_roles WHERE role_name LIKE 'sn\_%';
DROP ROLE sn_node_a, sn_node_b, sn_app, sn_group;
