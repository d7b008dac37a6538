-- The compay demo: exact credits and the ledger, on a throwaway cluster.
-- Run by `make demo` (test/demo.sh), which creates the extension first.
\set ON_ERROR_STOP on
SET search_path = public, compay;

\echo
\echo '== 1. Exact money: compay.credit has 12 decimals (one piconero) and never rounds silently'
SELECT '0.1'::credit + '0.2'::credit AS "0.1 + 0.2",
       0.1::float8 + 0.2::float8 AS "the same in float8";
SELECT '10'::credit / 3 AS "10 / 3 (half to even)",
       '0.000000000003'::credit / 2 AS "a tie rounds to even",
       '1'::credit * 1.5 AS "1 * 1.5",
       xmr('1.5') AS "as XMR";
SELECT round_credit(0.0000000000025, mode) AS rounded, mode
FROM unnest(ARRAY['half_even', 'half_up', 'down', 'floor', 'ceiling']) AS mode;
SELECT sum(x) AS "sum of a million thousandths", avg(x)
FROM (SELECT '0.001'::credit AS x FROM generate_series(1, 1000000)) s;

\echo
\echo '== 2. Accounts and deposits: every movement is a double-entry journal pair'
SELECT open_account('requester-1', 'CREDIT', '0') > 0 AS opened,
       open_account('provider-1', 'CREDIT', '0') > 0 AS opened;
SELECT deposit('requester-1', '500', reference => 'top-up', idempotency_key => 'demo-dep-1') > 0 AS deposited;
SELECT deposit('requester-1', '500', reference => 'top-up', idempotency_key => 'demo-dep-1') > 0
       AS "retried with the same key (moves nothing)";
SELECT node_id, balance, reserved, credit_limit FROM accounts ORDER BY id;

\echo
\echo '== 3. A two-phase hold: reserve, stream two partial captures, release the rest'
SELECT reserve('requester-1', '120', 'job-42', '1 hour') AS hold \gset
SELECT * FROM balance('requester-1');
SELECT capture(:hold, 'provider-1', '30', final => false) > 0 AS "captured 30";
SELECT capture(:hold, 'provider-1', '45') > 0 AS "captured 45, rest released";
SELECT id, amount, remaining, status FROM holds;
SELECT (SELECT balance FROM balance('requester-1')) AS requester,
       (SELECT balance FROM balance('provider-1')) AS provider;

\echo
\echo '== 4. Insufficient funds is an error with a SQLSTATE of its own (PY001), and writes nothing'
\set ON_ERROR_STOP off
SELECT transfer('provider-1', 'requester-1', '1000');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set ON_ERROR_STOP on

\echo
\echo '== 5. Refunds never exceed the original; barter credits pay the counterparty first'
SELECT transfer('requester-1', 'provider-1', '50', 'invoice 7') AS t \gset
SELECT refund(:t, '20', 'partial outage') > 0 AS refunded;
SELECT grant_barter('provider-1', 'requester-1', '10', 'GPU hours swap') > 0 AS granted;
SELECT transfer('provider-1', 'requester-1', '15') AS t2 \gset
SELECT amount, barter_amount AS "paid in barter" FROM transfers WHERE id = :t2;

\echo
\echo '== 6. The journal of one account, newest first, hash-chained'
SELECT seq, kind, amount, balance_after, counterparty, transfer_kind, reference
FROM history('requester-1', max_rows => 6);

\echo
\echo '== 7. verify_ledger(): balances sum to zero, match the journal, chains intact'
SELECT check_name, ok, detail FROM verify_ledger();

\echo
\echo '== 8. The Monero reward formula: BaseRate x hours x utilization x quality, exact, rounded once'
SELECT job_type, base_rate AS "XMR per GPU-hour", quality_multiplier,
       compute_reward(job_type, '24 hours', 1.0) AS "24 h at full utilization"
FROM job_types ORDER BY base_rate;
SELECT compute_reward('Fine-tuning', '90 minutes', utilization_factor(0.8), 1.25) AS "90 min at 80 %, quality 1.25";

\echo
\echo '== 9. Pricing: exact quantities (0.9 GB is not free), market factor, volume discount; quote() adds up to price()'
SELECT price(metrics(cpu_seconds => 1.5, network_bytes_in => 966367641)) AS "1.5 CPU-s + 0.9 GB";
INSERT INTO market_adjustments (task_type, factor) VALUES ('render', 1.1);
SELECT component, quantity, unit_price, amount
FROM quote(metrics(cpu_seconds => 1.5, memory_byte_hours => 536870912, gpu_seconds => 0.25), 'render');

\echo
\echo '== 10. A job from submission to verified payment: escrow, usage, two verifiers, payment, rewards'
SELECT deposit('requester-2', '10000') > 0 AS funded;
SELECT submit_job('render-42', 'requester-2', 'render', '6000', '2 hours') AS job_id;
SELECT reserved AS "escrow held" FROM balance('requester-2');
SELECT assign_job('render-42', 'gpu-node-7');
SELECT record_usage('render-42', 'gpu-node-7', 'sample-1', now(), metrics(cpu_seconds => 1.0, gpu_seconds => 0.2));
SELECT record_usage('render-42', 'gpu-node-7', 'sample-2', now(), metrics(cpu_seconds => 0.5, gpu_seconds => 0.05));
SELECT record_usage('render-42', 'gpu-node-7', 'sample-2', now(), metrics(cpu_seconds => 0.5)) AS "same sample again";
SELECT cpu_seconds, gpu_seconds FROM task_metrics('render-42');
SELECT complete_job('render-42', now() - interval '20 minutes', now(), 0.9);
SELECT verify_job('render-42', 'verifier-a', true, 1.1) AS "after 1 vote";
SELECT verify_job('render-42', 'verifier-b', true, 1.0) AS "after 2 votes";
SELECT task_id, from_node, to_node, amount, method, status FROM payments WHERE task_id = 'render-42';
SELECT node_id, balance, reserved FROM accounts
WHERE node_id IN ('requester-2', 'gpu-node-7', 'verifier-a', 'verifier-b', '$rewards') AND currency = 'CREDIT'
ORDER BY node_id;

\echo
\echo '== 11. A task without escrow, paid once however often it is retried'
SELECT submit_task('encode-7', 'requester-2', 'gpu-node-7', 'encode') > 0 AS submitted;
SELECT record_usage('encode-7', 'gpu-node-7', 's1', now(), metrics(cpu_seconds => 0.3));
SELECT complete_job('encode-7', now() - interval '1 minute', now());
SELECT id, amount, method, status FROM process_task_payment('encode-7');
SELECT id, amount, method, status FROM process_task_payment('encode-7');
SELECT check_name, ok FROM verify_ledger();

\echo
\echo '== 12. Settlement: payments batched per hour, currency and payee (here the current hour, closed early with as_of)'
SELECT count(*) AS settlements_processed
FROM run_settlement('hourly', date_trunc('hour', now()) + interval '1 hour');
SELECT id, period, period_start, currency, payee, payment_count, total_amount, status
FROM settlements ORDER BY id;
SELECT count(*) AS processed_again FROM run_settlement('hourly', date_trunc('hour', now()) + interval '1 hour');
SELECT check_name, ok FROM verify_ledger() WHERE check_name = 'settlements_match_payments';
\echo 'The settlement worker (preloaded in this cluster) runs the same every hour:'
SELECT state, pid IS NOT NULL AS running, next_settlement_due IS NOT NULL AS has_schedule FROM worker_status;
