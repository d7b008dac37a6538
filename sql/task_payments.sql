-- Metering and task payments: usage samples (idempotent, rejected once the
-- task is paid), task_metrics(), process_task_payment() by credit, barter
-- and crypto (fiat refused), paid at most once whatever is retried, failed
-- payments, disputes within the window and their resolution, and the
-- credit scores that follow.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE OR REPLACE FUNCTION show(VARIADIC nodes text[]) RETURNS TABLE (node text, currency text,
    balance compay.credit, reserved compay.credit, score numeric)
LANGUAGE sql AS $$
    SELECT node_id, currency, balance, reserved, credit_score FROM compay.accounts
    WHERE node_id = ANY (nodes) ORDER BY currency, node_id
$$;
CREATE OR REPLACE FUNCTION ledger_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(ok) FROM compay.verify_ledger()
$$;
SELECT open_account('req', 'CREDIT', '0') > 0 AS opened;
SELECT deposit('req', '5000') > 0 AS funded;

-- A task without escrow, already assigned to its provider.
SELECT submit_task('t1', 'req', 'prov', 'render') AS t1 \gset
SELECT status, provider, max_amount, currency FROM jobs WHERE id = :t1;
SELECT submit_task('t1', 'req', 'prov', 'render') = :t1 AS same_task;
SELECT submit_task('t1', 'req', 'other', 'render'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_task('tx', 'req', 'req', 'render'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_task('tx', 'req', NULL, 'render'); \echo :LAST_ERROR_SQLSTATE

-- Custom metrics need prices (a sample with one its model does not price
-- is refused, see metering_validation): map 'render' to a model that has them.
INSERT INTO pricing_models (name, base_price, cpu_price, storage_price, network_price, custom_prices)
VALUES ('render', '100', '1000', '10', '50', '{"frames": 20, "tiles": 4}');
INSERT INTO task_type_models SELECT 'render', id FROM pricing_models WHERE name = 'render';

-- Samples: each is the usage since the provider's previous one.
SELECT record_usage('t1', 'prov', 'a', '2026-11-23 10:00+00',
                    metrics(cpu_seconds => 0.5, network_bytes_in => 268435456,
                            custom => '{"frames": 2}'));
SELECT record_usage('t1', 'prov', 'b', '2026-11-23 10:01+00',
                    metrics(cpu_seconds => 0.75, network_bytes_out => 268435456,
                            storage_byte_hours => 1073741824, custom => '{"frames": 3, "tiles": 1.5}'));
-- The same sample again changes nothing, whatever it says now.
SELECT record_usage('t1', 'prov', 'a', '2026-11-23 10:00+00', metrics(cpu_seconds => 99));
SELECT count(*) AS samples FROM usage_samples;
SELECT * FROM task_metrics('t1');
-- Bad samples (nothing is written).
SELECT record_usage('t1', 'intruder', 'c', now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('t1', 'prov', 'c', now(), metrics(cpu_seconds => -1)); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('t1', 'prov', 'c', now(), metrics(gpu_seconds => 'NaN')); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('t1', 'prov', 'c', now(), metrics(custom => '{"frames": "x"}')); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('t1', 'prov', 'c', now(), metrics(custom => '{"frames": {"a": 1}}')); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('t1', 'prov', 'c', now(), NULL); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('nope', 'prov', 'c', now(), metrics()); \echo :LAST_ERROR_SQLSTATE
SELECT task_metrics('nope'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS samples FROM usage_samples;

-- Paying needs a completed task.
SELECT process_task_payment('t1'); \echo :LAST_ERROR_SQLSTATE
SELECT complete_job('t1', '2026-11-23 10:00+00', '2026-11-23 10:02+00');
-- Fiat is not supported (0A000); the task type is priced in CREDIT, so
-- crypto (XMR) is a currency mismatch (PY003).  Neither writes anything.
SELECT process_task_payment('t1', 'fiat'); \echo :LAST_ERROR_SQLSTATE
SELECT process_task_payment('t1', 'crypto'); \echo :LAST_ERROR_SQLSTATE
SELECT process_task_payment('t1', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT process_task_payment('nope'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS payments FROM payments;

-- 100 + 1.25 x 1000 + 1 x 10 + 0.5 x 50 + 5 x 20 + 1.5 x 4 = 1491.
SELECT price(task_metrics('t1'), 'render', 'req');
SELECT id, task_id, from_node, to_node, amount, currency, method, status,
       (resource_metrics).cpu_seconds, completed_at IS NOT NULL AS completed,
       transfer_id IS NOT NULL AS has_transfer
FROM process_task_payment('t1');
SELECT * FROM show('req', 'prov');
SELECT status, amount FROM jobs WHERE id = :t1;
-- Paid at most once: every retry, of any method, returns the same payment.
SELECT id, status, amount FROM process_task_payment('t1');
SELECT id, status, amount FROM process_task_payment('t1', 'barter');
SELECT count(*) AS payments, count(*) FILTER (WHERE status = 'completed') AS completed FROM payments;
SELECT * FROM show('req', 'prov');
SELECT record_usage('t1', 'prov', 'late', now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT ledger_ok();

-- A payment that cannot be made is recorded failed, lowers the requester's
-- score, and can be retried once the money is there.
SELECT submit_task('t2', 'req', 'prov', 'gpu') > 0 AS submitted;
SELECT record_usage('t2', 'prov', 'a', now(), metrics(gpu_seconds => 1));
SELECT complete_job('t2', now() - interval '1 minute', now());
-- 100 + 1 x 10000 = 10100, more than req has (3509).
SELECT id, amount, status, metadata->>'sqlstate' AS sqlstate FROM process_task_payment('t2');
SELECT * FROM show('req');
SELECT deposit('req', '10000') > 0 AS funded;
SELECT id, amount, status FROM process_task_payment('t2');
SELECT id, status FROM payments WHERE task_id = 't2' ORDER BY id;
SELECT * FROM show('req', 'prov');
SELECT ledger_ok();

-- Barter: the provider gets barter credits with the requester, 1:1.
SELECT submit_task('t3', 'req', 'prov', 'gpu') > 0 AS submitted;
SELECT complete_job('t3', now() - interval '1 minute', now());
SELECT id, amount, method, status FROM process_task_payment('t3', 'barter');
SELECT barter_balance('prov', 'req');
SELECT * FROM show('req', 'prov');
SELECT ledger_ok();

-- Crypto: a task type priced in XMR is paid by a transfer in XMR, which
-- settlement later pays out on chain.
INSERT INTO pricing_models (name, currency, base_price, gpu_price)
VALUES ('xmr-gpu', 'XMR', '0.0001', '0.000002');
INSERT INTO task_type_models SELECT 'xmr-gpu', id FROM pricing_models WHERE name = 'xmr-gpu';
SELECT admin_deposit('req', '1', 'XMR', 'test funds') > 0 AS funded;
SELECT submit_task('t4', 'req', 'prov', 'xmr-gpu') > 0 AS submitted;
SELECT currency FROM jobs WHERE task_id = 't4';
SELECT record_usage('t4', 'prov', 'a', now(), metrics(gpu_seconds => 3600));
SELECT complete_job('t4', now() - interval '1 hour', now());
SELECT process_task_payment('t4', 'barter'); \echo :LAST_ERROR_SQLSTATE
-- 0.0001 + 3600 x 0.000002 = 0.0073 XMR.
SELECT id, amount, currency, method, status FROM process_task_payment('t4', 'crypto');
SELECT * FROM show('req', 'prov') WHERE currency = 'XMR';
SELECT ledger_ok();

-- Disputes: only completed payments, within compay.dispute_window (72 h).
SELECT id AS p1 FROM payments WHERE task_id = 't1' \gset
SELECT id AS p3 FROM payments WHERE task_id = 't3' \gset
SELECT id AS p4 FROM payments WHERE task_id = 't4' \gset
SELECT dispute_payment(:p1, NULL); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_payment(999999, 'why'); \echo :LAST_ERROR_SQLSTATE
SELECT id, status, dispute_reason FROM dispute_payment(:p1, 'frames were blank');
SELECT * FROM show('prov');
SELECT dispute_payment(:p1, 'again'); \echo :LAST_ERROR_SQLSTATE
-- Resolving: more than was paid (PY008), negative (22023), not disputed (55000).
SELECT resolve_dispute(:p1, '1491.000000000001'); \echo :LAST_ERROR_SQLSTATE
SELECT resolve_dispute(:p1, '-1'); \echo :LAST_ERROR_SQLSTATE
SELECT resolve_dispute(:p4, '0'); \echo :LAST_ERROR_SQLSTATE
-- A partial refund moves money back through the ledger.
SELECT id, status, refund_transfer_id IS NOT NULL AS refunded, metadata->>'refund_amount' AS refund
FROM resolve_dispute(:p1, '491');
SELECT * FROM show('req', 'prov');
SELECT t.kind, t.amount, t.refund_of = p.transfer_id AS refunds_payment
FROM transfers t JOIN payments p ON p.refund_transfer_id = t.id WHERE p.id = :p1;
SELECT resolve_dispute(:p1, '1'); \echo :LAST_ERROR_SQLSTATE
-- Resolved with 0: back to completed, nothing moves.
SELECT status FROM dispute_payment(:p4, 'slow');
SELECT status FROM resolve_dispute(:p4, '0');
-- Barter payments cannot be refunded through the ledger (0A000).
SELECT status FROM dispute_payment(:p3, 'bad');
SELECT resolve_dispute(:p3, '1'); \echo :LAST_ERROR_SQLSTATE
SELECT status FROM resolve_dispute(:p3, '0');
-- After the window, no dispute.
UPDATE payments SET completed_at = now() - interval '73 hours' WHERE id = :p4;
SELECT dispute_payment(:p4, 'too late'); \echo :LAST_ERROR_SQLSTATE
SET compay.dispute_window = '4d';
SELECT status FROM dispute_payment(:p4, 'within a longer window');
RESET compay.dispute_window;
SELECT id, task_id, amount, method, status FROM payments ORDER BY id;
SELECT * FROM show('req', 'prov');
SELECT ledger_ok();
