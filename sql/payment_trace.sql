-- From a job to the chain: compay.payment_trace(task_id) follows a task
-- through its job, payment and settlement to every payout part, with the
-- payout's tx hash and confirmations; the payments carry the tx hash once
-- built.  Bad inputs beside the good case; readable by compay_reader.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
\set addr '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'

-- A paid job of 0.8 XMR (rows written directly: the money moved when it
-- was paid), settled.
SELECT admin_deposit('gpu-t', '0.8', 'XMR', 'earnings') > 0 AS funded;
INSERT INTO jobs (task_id, requester, provider, task_type, currency, status)
VALUES ('job-1', 'req', 'gpu-t', 'inference', 'XMR', 'paid');
INSERT INTO payments (task_id, from_node, to_node, amount, currency, method, status, completed_at)
VALUES ('job-1', 'req', 'gpu-t', '0.8', 'XMR', 'crypto', 'completed', now() - interval '2 hours');
-- A job not paid yet: one row, no payment.
INSERT INTO jobs (task_id, requester, provider, task_type, currency, status)
VALUES ('job-2', 'req', 'gpu-t', 'inference', 'XMR', 'assigned');
SELECT count(*) AS settled FROM run_settlement('hourly');
SELECT set_payout_address('gpu-t', :'addr');

-- Settled, not yet queued: the settlement, no payout.
SELECT job_status, payment_status, amount, currency, settlement_status, payout_id, tx_hash
FROM payment_trace('job-1');
SELECT job_status, payment_id, settlement_id FROM payment_trace('job-2');

-- Paid in two parts (the 0.5 cap): one row per part, each with its tx
-- hash and confirmations; the payment has the latest built one.
SELECT queue_payouts() AS queued;
SELECT record_payout_built(1, jsonb_build_object(
    'tx_hash', repeat('a', 64), 'tx_key', repeat('b', 64), 'tx_metadata', 'abcd',
    'spent_key_images', jsonb_build_object('key_images', jsonb_build_array(repeat('c', 64))),
    'fee', 1000, 'amount', 500000000000));
SELECT record_payout_relayed(1), record_payout_confirmations(1, 10);
SELECT tx_hash = repeat('a', 64) AS payment_tx_hash FROM payments WHERE task_id = 'job-1';
UPDATE payout_transactions SET created_at = created_at - interval '25 hours';
SELECT queue_payouts() AS queued;
SELECT record_payout_built(2, jsonb_build_object(
    'tx_hash', repeat('d', 64), 'tx_key', repeat('e', 64), 'tx_metadata', 'abcd',
    'spent_key_images', jsonb_build_object('key_images', jsonb_build_array(repeat('f', 64))),
    'fee', 1000, 'amount', 300000000000));
SELECT record_payout_relayed(2), record_payout_confirmations(2, 3);
SELECT settlement_status, payout_id, part_amount, payout_status, left(tx_hash, 4) AS tx,
       confirmations
FROM payment_trace('job-1');
SELECT tx_hash = repeat('d', 64) AS payment_tx_hash FROM payments WHERE task_id = 'job-1';
SELECT record_payout_confirmations(2, 10);
SELECT settlement_status, payout_id, payout_status, confirmations FROM payment_trace('job-1');

-- An unknown task (PY010), NULL (22004).
SELECT * FROM payment_trace('no-such-task'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_trace(NULL); \echo :LAST_ERROR_SQLSTATE

-- compay_reader may trace and read what is payable; a role without it
-- may not (42501).
CREATE ROLE trace_reader IN ROLE compay_reader;
CREATE ROLE trace_nobody;
SET ROLE trace_reader;
SELECT count(*) AS rows FROM compay.payment_trace('job-1');
SELECT count(*) AS payable FROM compay.payable_settlements(NULL);
RESET ROLE;
SET ROLE trace_nobody;
SELECT count(*) FROM compay.payment_trace('job-1'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE trace_reader, trace_nobody;
SELECT bool_and(ok) AS ledger_ok FROM verify_ledger();
