-- Shortfalls: a verified price above the escrow is never lost.  The
-- requester is charged the difference at once as far as its funds and
-- credit limit allow (a transfer and a second payment of the task, in the
-- same transaction); the rest is owed to the provider, shown to both, and
-- collected from the requester's next deposits (deposit, admin_deposit,
-- deposit_from_wallet), oldest first, exactly.  verify_ledger() check 14
-- ties what shortfalls say was collected to the ledger's transfers.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP ROLE IF EXISTS sf_node_req, sf_node_other;
RESET client_min_messages;

CREATE OR REPLACE FUNCTION show(VARIADIC nodes text[]) RETURNS TABLE (node text, currency text,
    balance compay.credit, reserved compay.credit, available compay.credit)
LANGUAGE sql AS $$
    SELECT node_id, currency, balance, reserved, balance - reserved + credit_limit
    FROM compay.accounts WHERE node_id = ANY (nodes) ORDER BY currency, node_id
$$;
CREATE OR REPLACE FUNCTION ledger_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(ok) FROM compay.verify_ledger()
$$;
-- A job of the default model: 100 + 1000 per CPU-second.
CREATE OR REPLACE FUNCTION run_job(task text, requester text, escrow compay.credit,
    cpu numeric) RETURNS compay.job_status LANGUAGE plpgsql AS $$
BEGIN
    PERFORM compay.submit_job(task, requester, 'render', escrow);
    PERFORM compay.assign_job(task, 'sf-prov');
    PERFORM compay.record_usage(task, 'sf-prov', 's1', now(), compay.metrics(cpu_seconds => cpu));
    PERFORM compay.complete_job(task, now() - interval '1 minute', now());
    PERFORM compay.verify_job(task, 'sf-v1', true);
    RETURN compay.verify_job(task, 'sf-v2', true);
END $$;

SELECT open_account(n, 'CREDIT', '0') > 0 AS opened FROM unnest(ARRAY['sf-req', 'sf-prov']) n;
SELECT deposit('sf-req', '1500') > 0 AS funded;

-- 1. Charged in part at once: the price is 2100, the escrow 1000; sf-req
-- has 500 more, which is charged; 600 is owed.
SELECT run_job('sf-1', 'sf-req', '1000', 2);
SELECT status, amount FROM jobs WHERE task_id = 'sf-1';
SELECT amount, status, metadata->>'price' AS price, metadata->'shortfall_id' IS NOT NULL AS collection
FROM payments WHERE task_id = 'sf-1' ORDER BY id;
SELECT id AS sf1, amount, collected, collected_at IS NULL AS owed FROM shortfalls \gset
SELECT amount, collected, collected_at IS NULL AS owed FROM shortfalls;
SELECT kind, amount, reference FROM transfers WHERE reference = 'shortfall:' || :sf1;
-- A payment call for the task returns its own payment, not the collection
-- (the update puts the task's own payment after the collection in the table).
UPDATE payments SET metadata = metadata WHERE task_id = 'sf-1' AND NOT metadata ? 'shortfall_id';
SELECT amount FROM process_task_payment('sf-1');
SELECT * FROM show('sf-req', 'sf-prov');
SELECT ledger_ok();

-- 2. Deposits collect what is owed: 500 collects 500 of the 600, the next
-- 500 the last 100 (400 stays).  With nothing left beyond the escrow, the
-- whole shortfall of the next job (3100 less its escrow of 400) is owed.
SELECT deposit('sf-req', '500') > 0 AS funded;
SELECT deposit('sf-req', '500') > 0 AS funded;
SELECT amount, collected, collected_at IS NULL AS owed FROM shortfalls;
SELECT run_job('sf-2', 'sf-req', '400', 3);
SELECT task_id, role, requester, provider, amount, collected, owed, collected_at IS NULL AS open
FROM node_shortfalls('sf-req');
SELECT task_id, role, owed FROM node_shortfalls('sf-prov');
SELECT * FROM show('sf-req', 'sf-prov');
SELECT ledger_ok();

-- 3. Each deposit collects at most its own amount, oldest first, exactly:
-- 1000 collects 1000 of the 2700 of sf-2, then 2000 the 1700 left (300
-- stays, the escrow of sf-3, whose shortfall of 1800 is owed).
SELECT deposit('sf-req', '1000') > 0 AS funded;
SELECT task_id, amount, collected, owed FROM node_shortfalls('sf-req');
SELECT deposit('sf-req', '2000') > 0 AS funded;
SELECT task_id, amount, collected, owed FROM node_shortfalls('sf-req');
SELECT run_job('sf-3', 'sf-req', '300', 2);
SELECT task_id, amount, collected, owed FROM node_shortfalls('sf-req') WHERE owed > '0';
SELECT deposit('sf-req', '0.000000000001') > 0 AS funded;     -- one atomic unit
SELECT task_id, collected, owed FROM node_shortfalls('sf-req') WHERE owed > '0';
-- A deposit retried with its idempotency key collects nothing more.
SELECT deposit('sf-req', '700', 'CREDIT', NULL, 'sf-key') AS dep \gset
SELECT deposit('sf-req', '700', 'CREDIT', NULL, 'sf-key') = :dep AS same_deposit;
SELECT task_id, collected, owed, collected_at IS NOT NULL AS done FROM node_shortfalls('sf-req');
SELECT to_node, count(*), sum(amount) FROM payments
WHERE metadata ? 'shortfall_id' GROUP BY to_node;
SELECT * FROM show('sf-req', 'sf-prov');
SELECT ledger_ok();

-- A credit limit counts as funds: sf-lim has nothing beyond its escrow but
-- a limit of 2000, so its shortfall of 1100 is charged at once.
SELECT open_account('sf-lim', 'CREDIT', '0') > 0 AS opened;
SELECT set_credit_limit('sf-lim', '2000');
SELECT deposit('sf-lim', '1000') > 0 AS funded;
SELECT run_job('sf-4', 'sf-lim', '1000', 2);
SELECT task_id, amount, collected, owed FROM node_shortfalls('sf-lim');
SELECT * FROM show('sf-lim');
SELECT ledger_ok();

-- 4. The collections are payments of the task: settlement gathers them.
SELECT count(*) > 0 AS settled FROM run_settlement('hourly', now() + interval '2 hours');
SELECT payee, payment_count, total_amount FROM settlements ORDER BY payee, id;

-- 5. XMR: admin_deposit and the wallet's deposits collect too.
SELECT admin_deposit('sf-xreq', '0.001', 'XMR', 'sf test funds') > 0 AS funded;
SELECT submit_job('sf-x1', 'sf-xreq', 'Fine-tuning', '0.001') > 0 AS submitted;
SELECT assign_job('sf-x1', 'sf-prov');
SELECT complete_job('sf-x1', now() - interval '24 hours', now(), 1);
SELECT verify_job('sf-x1', 'sf-v1', true), verify_job('sf-x1', 'sf-v2', true);
SELECT task_id, amount, collected, owed FROM node_shortfalls('sf-xreq', 'XMR');
SELECT admin_deposit('sf-xreq', '0.01', 'XMR', 'sf test top-up') > 0 AS funded;
SELECT task_id, amount, collected, owed FROM node_shortfalls('sf-xreq', 'XMR');
-- As the deposit poll credits a wallet output: the credit and its
-- compay.xmr_deposits row (verify_ledger() ties the two).
INSERT INTO xmr_deposits (tx_hash, global_index, address_index, node_id, amount, block_height, transfer_id)
SELECT repeat('5f', 32), 1, 1, 'sf-xreq', '0.03', 10,
       deposit_from_wallet('sf-xreq', '0.03', 'XMR', 'xmr:' || repeat('5f', 32), 'sf-wallet-1')
RETURNING transfer_id > 0 AS credited;
SELECT task_id, amount, collected, owed, collected_at IS NOT NULL AS done
FROM node_shortfalls('sf-xreq', 'XMR');
SELECT method, amount FROM payments WHERE task_id = 'sf-x1' ORDER BY id;
SELECT * FROM show('sf-xreq', 'sf-prov');
SELECT ledger_ok();

-- 6. Who sees what: a node role sees its own shortfalls (as requester or
-- provider) and no other node's (42501); only the deposit path collects
-- (the internal functions are not granted: 42501).
CREATE ROLE sf_node_req LOGIN IN ROLE compay_node;
CREATE ROLE sf_node_other LOGIN IN ROLE compay_node;
SELECT add_node_role('sf_node_req', 'sf-req') AS mapped;
SET ROLE sf_node_req;
SELECT count(*) AS own FROM node_shortfalls('sf-req');
SELECT count(*) FROM node_shortfalls('sf-prov'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM shortfalls; \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE compay_app;
SELECT collect_shortfalls('sf-req', 'CREDIT', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT record_shortfall(j, '1') FROM jobs j LIMIT 1; \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS shortfalls FROM shortfalls;

-- 7. The check can fail: a shortfall that claims more than was moved, or
-- a collection payment whose transfer went elsewhere.
BEGIN;
UPDATE shortfalls SET collected = amount, collected_at = now() WHERE collected_at IS NULL;
SELECT check_name, ok, detail FROM verify_ledger() WHERE check_name = 'shortfalls_match_transfers';
ROLLBACK;
BEGIN;
UPDATE payments SET transfer_id = (SELECT min(id) FROM transfers)
WHERE id = (SELECT min(id) FROM payments WHERE metadata ? 'shortfall_id');
SELECT check_name, ok, detail FROM verify_ledger() WHERE check_name = 'shortfalls_match_transfers';
ROLLBACK;
SELECT * FROM verify_ledger();

DROP ROLE sf_node_req, sf_node_other;
