-- Deposit requests (src/deposit_request.sql) without a wallet: every bad
-- argument fails with its SQLSTATE before the wallet is asked, and writes
-- nothing; then the poll's steps are fed the wallet's replies as they come
-- (get_transfers in and pool, incoming_transfers): exact, partial,
-- overpaid, late and never-paid requests end in their documented states,
-- each output credited once; a job waits for its request, is funded in
-- the transaction that credits it, or is cancelled when it expires.
\i sql/include/fresh_extension.sql
\set VERBOSITY terse
\set SHOW_CONTEXT never

-- 1. Bad arguments: nothing written, no wallet call.
SELECT * FROM request_deposit(NULL, '1'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', '1', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('$fees', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', '-1'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', 1.0000000000001); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', '1', '0 seconds'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', '1', '31 days'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', '1', confirmations => -1); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-a', '1', confirmations => 1001); \echo :LAST_ERROR_SQLSTATE
-- The good arguments reach the wallet, which is not running here: PY014.
SELECT * FROM request_deposit('dr-a', '1', idempotency_key => 'dr-key'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM deposit_request_status(1); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM deposit_request_status(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM submit_job_funded_by_deposit('dr-job', 'dr-a', 'inference', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM submit_job_funded_by_deposit('dr-job', 'dr-a', 'Fine-tuning', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM submit_job_funded_by_deposit('dr-job', 'dr-a', 'Fine-tuning', '1', '0 seconds'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM submit_job_funded_by_deposit('dr-job', 'dr-a', 'Fine-tuning', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM deposit_requests) AS requests, (SELECT count(*) FROM jobs) AS jobs,
       (SELECT count(*) FROM idempotency_keys) AS keys;

-- 2. Requests as request_deposit records them after create_address: 1
-- exact, 2 partial, 3 overpaid, 4 late, 5 never paid (2 confirmations).
INSERT INTO deposit_requests (node_id, address, address_index, amount, confirmations, expires_at)
SELECT 'dr-a', 'dr-address-' || i, 100 + i, '1', 2, now() + interval '1 hour'
FROM generate_series(1, 5) i;
-- Two requests never share a subaddress.
INSERT INTO deposit_requests (node_id, address, address_index, amount, confirmations, expires_at)
VALUES ('dr-b', 'dr-address-9', 101, '1', 2, now()); \echo :LAST_ERROR_SQLSTATE

CREATE FUNCTION pg_temp.tx(n integer) RETURNS text LANGUAGE sql
    RETURN encode(sha256(('dr-tx' || n)::bytea), 'hex');
-- get_transfers: payment n of atomic units to subaddress idx, mined at
-- height h (0: in the pool).
CREATE FUNCTION pg_temp.seen(n integer, idx integer, atomic bigint, h integer) RETURNS jsonb LANGUAGE sql
    RETURN jsonb_build_object('txid', pg_temp.tx(n), 'amount', atomic, 'height', h,
                              'subaddr_index', jsonb_build_object('major', 0, 'minor', idx));
-- incoming_transfers: its output.
CREATE FUNCTION pg_temp.output(n integer, idx integer, atomic bigint, h integer) RETURNS jsonb LANGUAGE sql
    RETURN jsonb_build_object('tx_hash', pg_temp.tx(n), 'global_index', 1000 + n, 'amount', atomic,
                              'block_height', h,
                              'subaddr_index', jsonb_build_object('major', 0, 'minor', idx));
CREATE FUNCTION pg_temp.show() RETURNS TABLE (n integer, state text, received compay.credit,
    missing compay.credit, pending compay.credit, confirmations_seen integer, late boolean,
    txs integer, task_id text, job_status compay.job_status)
LANGUAGE sql AS $$
    SELECT address_index - 100, state, received, missing, pending, confirmations_seen, late,
           cardinality(tx_hashes), task_id, job_status
    FROM compay.deposit_requests_v ORDER BY id
$$;

-- In the pool: seen, nothing credited, nothing to read.
SELECT record_deposit_requests(jsonb_build_object('pool', jsonb_build_array(
    pg_temp.seen(1, 101, 1000000000000, 0), pg_temp.seen(2, 102, 400000000000, 0))), 100) AS to_read;
SELECT * FROM pg_temp.show();
-- Mined at 99, one confirmation at 100: still seen.
SELECT record_deposit_requests(jsonb_build_object('in', jsonb_build_array(
    pg_temp.seen(1, 101, 1000000000000, 99), pg_temp.seen(2, 102, 400000000000, 99),
    pg_temp.seen(3, 103, 1500000000000, 99))), 100) AS to_read;
SELECT n, state, pending, confirmations_seen FROM pg_temp.show();
-- Two confirmations: 101, 102 and 103 are read and credited, once.
SELECT record_deposit_requests(jsonb_build_object('in', jsonb_build_array(
    pg_temp.seen(1, 101, 1000000000000, 99), pg_temp.seen(2, 102, 400000000000, 99),
    pg_temp.seen(3, 103, 1500000000000, 99))), 101) AS to_read;
SELECT record_deposits(jsonb_build_object('transfers', jsonb_build_array(
    pg_temp.output(1, 101, 1000000000000, 99), pg_temp.output(2, 102, 400000000000, 99),
    pg_temp.output(3, 103, 1500000000000, 99))), 101) AS credited;
SELECT record_deposits(jsonb_build_object('transfers', jsonb_build_array(
    pg_temp.output(1, 101, 1000000000000, 99), pg_temp.output(2, 102, 400000000000, 99),
    pg_temp.output(3, 103, 1500000000000, 99))), 110) AS credited_again;
SELECT record_deposit_requests(jsonb_build_object('in', jsonb_build_array(
    pg_temp.seen(1, 101, 1000000000000, 99), pg_temp.seen(2, 102, 400000000000, 99),
    pg_temp.seen(3, 103, 1500000000000, 99))), 101) AS to_read;
SELECT * FROM pg_temp.show();
SELECT balance FROM accounts WHERE node_id = 'dr-a' AND currency = 'XMR';

-- Expiry: the partial (2) and the unpaid (4, 5) requests expire; a
-- payment in flight that covers the rest keeps a request open.
UPDATE deposit_requests SET expires_at = now() - interval '1 second' WHERE address_index IN (102, 104, 105);
SELECT record_deposit_requests(jsonb_build_object('pool', jsonb_build_array(
    pg_temp.seen(5, 105, 1000000000000, 0))), 101) AS to_read;
SELECT expire_deposit_requests() AS expired;
SELECT n, state, pending FROM pg_temp.show() WHERE n IN (2, 4, 5);
-- The payment to 5 drops out of the pool: 5 expires too.
SELECT record_deposit_requests('{"in": [], "pool": []}', 101) AS to_read;
SELECT expire_deposit_requests() AS expired;
-- Paid after its expiry: credited, flagged late, still expired.
SELECT record_deposits(jsonb_build_object('transfers', jsonb_build_array(
    pg_temp.output(4, 104, 1000000000000, 100))), 110) AS credited;
SELECT * FROM pg_temp.show();
SELECT balance FROM accounts WHERE node_id = 'dr-a' AND currency = 'XMR';

-- 3. Jobs funded by a request (as submit_job_funded_by_deposit records
-- them): job 6 is paid in two parts, job 7 never.
INSERT INTO jobs (task_id, requester, task_type, currency, status, timeout)
VALUES ('dr-job-6', 'dr-c', 'Fine-tuning', 'XMR', 'awaiting_deposit', '1 hour'),
       ('dr-job-7', 'dr-c', 'Fine-tuning', 'XMR', 'awaiting_deposit', '1 hour');
INSERT INTO deposit_requests (node_id, address, address_index, amount, confirmations, expires_at, job_id)
SELECT 'dr-c', 'dr-address-' || i, 100 + i, '0.5', 2, now() + interval '1 hour',
       (SELECT j.id FROM jobs j WHERE j.task_id = 'dr-job-' || i)
FROM generate_series(6, 7) i;
SELECT record_deposits(jsonb_build_object('transfers', jsonb_build_array(
    pg_temp.output(6, 106, 200000000000, 100))), 110) AS credited;
SELECT n, state, received, missing, task_id, job_status FROM pg_temp.show() WHERE n >= 6;
SELECT record_deposits(jsonb_build_object('transfers', jsonb_build_array(
    pg_temp.output(7, 106, 300000000000, 101))), 110) AS credited;
SELECT n, state, received, missing, task_id, job_status FROM pg_temp.show() WHERE n >= 6;
SELECT j.status, j.max_amount, h.amount AS held, h.status AS hold_status, j.timeout_at > now() AS timeout_set
FROM jobs j JOIN holds h ON h.id = j.escrow_hold_id WHERE j.task_id = 'dr-job-6';
UPDATE deposit_requests SET expires_at = now() - interval '1 second' WHERE address_index = 107;
SELECT expire_deposit_requests() AS expired;
SELECT status, payment_error FROM jobs WHERE task_id = 'dr-job-7';

-- The events of the requests (src/events.sql), in the order they were
-- emitted: the pool, the credits, the expiries, the late payment.
SELECT kind, payload->>'state' AS state, payload->>'received' AS received,
       payload->>'missing' AS missing, payload->>'late' AS late
FROM (SELECT id, kind, payload FROM compay.event_queue
      UNION ALL SELECT id, kind, payload FROM compay.events) e
WHERE kind LIKE 'deposit_request.%' ORDER BY id;
SELECT kind, payload->>'status' AS status
FROM (SELECT id, kind, payload FROM compay.event_queue
      UNION ALL SELECT id, kind, payload FROM compay.events) e
WHERE kind LIKE 'job.%' AND payload->>'task_id' LIKE 'dr-job-%' ORDER BY id;

-- 4. A bad wallet reply records nothing.
SELECT record_deposit_requests('{"in": [{"txid": "zz", "amount": 1, "height": 1}]}', 101); \echo :LAST_ERROR_SQLSTATE
SELECT record_deposit_requests('{"in": {}}', 101); \echo :LAST_ERROR_SQLSTATE

-- 5. The roles: the application sees a request (compay_reader reads
-- the view); nobody but the poll records them.
SET ROLE compay_app;
SELECT state FROM deposit_request_status((SELECT max(id) FROM deposit_requests_v));
SELECT record_deposit_requests('{}', 1); \echo :LAST_ERROR_SQLSTATE
SELECT expire_deposit_requests(); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- A node role sees and asks for its own node's requests only (42501
-- before any wallet call), and cannot submit jobs.
SET client_min_messages = warning;
DROP ROLE IF EXISTS dr_node_a;
RESET client_min_messages;
CREATE ROLE dr_node_a IN ROLE compay_node;
SELECT add_node_role('dr_node_a', 'dr-a') AS mapped;
SELECT min(id) FILTER (WHERE node_id = 'dr-a') AS own, min(id) FILTER (WHERE node_id = 'dr-c') AS other
FROM deposit_requests \gset
SET ROLE dr_node_a;
SELECT state, received FROM deposit_request_status(:own);
SELECT state FROM deposit_request_status(:other); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM request_deposit('dr-c', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM submit_job_funded_by_deposit('dr-job-9', 'dr-a', 'Fine-tuning', '1'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DELETE FROM node_roles WHERE role_name = 'dr_node_a';
DROP ROLE dr_node_a;

SELECT check_name, ok FROM verify_ledger() WHERE NOT ok OR check_name = 'deposit_requests_match_outputs';

-- 6. Restore safety: compay.diagnose() warns when the highest subaddress
-- index used (107 here) comes within a tenth of the lookahead a restore
-- would use.
SELECT status, advice, detail FROM diagnose() WHERE name = 'subaddresses';
SET compay.subaddress_lookahead = 118;
SELECT status, advice, detail FROM diagnose() WHERE name = 'subaddresses';
SET compay.subaddress_lookahead = 119;
SELECT status FROM diagnose() WHERE name = 'subaddresses';
SET compay.subaddress_lookahead = 0; \echo :LAST_ERROR_SQLSTATE
RESET compay.subaddress_lookahead;
