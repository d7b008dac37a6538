-- Metering: record_usage() refuses (22023, nothing written) a sample that
-- pricing could not price: an unknown custom metric, a quantity whose price
-- leaves the credit range, a sum with the samples before it that would
-- overflow.  A job whose payment at quorum still fails (the prices changed
-- after its samples) fails at once: the escrow goes back to the requester
-- and the error stays on the job.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE OR REPLACE FUNCTION samples() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM compay.usage_samples
$$;
SELECT open_account('req', 'CREDIT', '0') > 0 AS opened;
SELECT deposit('req', '100000') > 0 AS funded;
INSERT INTO pricing_models (name, base_price, cpu_price, network_price, custom_prices)
VALUES ('render', '100', '1000', '50', '{"frames": 20}');
INSERT INTO task_type_models SELECT 'render', id FROM pricing_models WHERE name = 'render';

-- A job with escrow, assigned to prov.
SELECT submit_job('m1', 'req', 'render', '50000', '1 hour') > 0 AS submitted;
SELECT assign_job('m1', 'prov');

-- Good samples: known metrics, priceable totals.
SELECT record_usage('m1', 'prov', 's1', '2026-11-30 10:00+00',
                    metrics(cpu_seconds => 2, network_bytes_in => 1073741824,
                            custom => '{"frames": 3}'));
SELECT record_usage('m1', 'prov', 's2', '2026-11-30 10:01+00',
                    metrics(cpu_seconds => 100000000000000000000000));   -- 1e23 s: 1e26 credits
SELECT samples();

-- 1. A custom metric the task type's model has no price for.
SELECT record_usage('m1', 'prov', 'bad-1', now(), metrics(custom => '{"tiles": 1}'));
\echo :LAST_ERROR_SQLSTATE
SELECT record_usage('m1', 'prov', 'bad-1', now(), metrics(custom => '{"frames": 1, "Frames": 1}'));
\echo :LAST_ERROR_SQLSTATE
-- 2. A quantity no price can hold: 1e30 CPU-seconds at 1000 each.
SELECT record_usage('m1', 'prov', 'bad-2', now(), metrics(cpu_seconds => 1e30));
\echo :LAST_ERROR_SQLSTATE
-- 3. Fine alone, too much with the samples before it: 1e23 + 8e22 s.
SELECT price(metrics(cpu_seconds => 80000000000000000000000), 'render') AS alone;
SELECT record_usage('m1', 'prov', 'bad-3', now(), metrics(cpu_seconds => 80000000000000000000000));
\echo :LAST_ERROR_SQLSTATE
-- 4. Byte counts that overflow bigint when summed.
SELECT record_usage('m1', 'prov', 's3', now(), metrics(network_bytes_out => 9223372036854775807));
SELECT record_usage('m1', 'prov', 'bad-4', now(), metrics(network_bytes_out => 1));
\echo :LAST_ERROR_SQLSTATE
SELECT record_usage('m1', 'prov', 'bad-4', now(), metrics(network_bytes_in => 9223372036854775807));
\echo :LAST_ERROR_SQLSTATE
-- Nothing of the refused samples was written; the task still prices.
SELECT samples();
SELECT sample_id FROM usage_samples ORDER BY sample_id;
SELECT price(task_metrics('m1'), 'render') > '0' AS priced;
-- The running totals the checks use are the sum of the samples.
SELECT (cpu_seconds, memory_byte_hours, storage_byte_hours, network_bytes_in, network_bytes_out,
        gpu_seconds, custom) = (SELECT (m).cpu_seconds, (m).memory_byte_hours,
                                       (m).storage_byte_hours, (m).network_bytes_in::numeric,
                                       (m).network_bytes_out::numeric, (m).gpu_seconds, (m).custom
                                FROM task_metrics('m1') m) AS totals_match
FROM usage_totals u JOIN jobs j ON j.id = u.job_id WHERE j.task_id = 'm1';
-- A retry of a stored sample is still a retry (false), whatever it says now.
SELECT record_usage('m1', 'prov', 's1', now(), metrics(cpu_seconds => 1e30));

-- A model with a maximum price prices any quantity: then 1e30 is accepted,
-- exactly as price() accepts it.
INSERT INTO pricing_models (name, cpu_price, max_price) VALUES ('capped', '1000', '5000');
INSERT INTO task_type_models SELECT 'capped-render', id FROM pricing_models WHERE name = 'capped';
SELECT submit_task('m2', 'req', 'prov', 'capped-render') > 0 AS submitted;
SELECT record_usage('m2', 'prov', 's1', now(), metrics(cpu_seconds => 1e30));
SELECT price(task_metrics('m2'), 'capped-render');
-- ... but not a custom metric it has no price for.
SELECT record_usage('m2', 'prov', 's2', now(), metrics(custom => '{"frames": 1}'));
\echo :LAST_ERROR_SQLSTATE

-- Payment at quorum fails when the prices changed after the samples: the
-- job fails now (not at its timeout), with the error on it, and its escrow
-- goes back to the requester.  Verifiers get nothing; no payment is made.
SELECT complete_job('m1', '2026-11-30 10:00+00', '2026-11-30 10:05+00');
UPDATE pricing_models SET cpu_price = '10000' WHERE name = 'render';
SELECT price(task_metrics('m1'), 'render'); \echo :LAST_ERROR_SQLSTATE
SELECT balance, reserved FROM balance('req');
SELECT verify_job('m1', 'v1', true);
SELECT verify_job('m1', 'v2', true);
SELECT status, payment_error, amount, payment_id FROM jobs WHERE task_id = 'm1';
SELECT h.status AS escrow FROM holds h JOIN jobs j ON j.escrow_hold_id = h.id WHERE j.task_id = 'm1';
SELECT balance, reserved FROM balance('req');
SELECT count(*) AS payments FROM payments WHERE task_id = 'm1';
SELECT verifier, passed, reward_amount FROM verifications v JOIN jobs j ON j.id = v.job_id
WHERE j.task_id = 'm1' ORDER BY verifier;
SELECT node_id FROM accounts WHERE node_id IN ('prov', 'v1', 'v2');
-- The job is closed: no more votes, no more samples, no timeout to wait for.
SELECT verify_job('m1', 'v3', true); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('m1', 'prov', 's9', now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT expire_jobs();

-- A job paid normally at quorum is unaffected.
SELECT submit_job('m3', 'req', 'render', '50000', '1 hour') > 0 AS submitted;
SELECT assign_job('m3', 'prov');
SELECT record_usage('m3', 'prov', 's1', now(), metrics(cpu_seconds => 1, custom => '{"frames": 2}'));
SELECT complete_job('m3', '2026-11-30 10:00+00', '2026-11-30 10:05+00');
SELECT verify_job('m3', 'v1', true), verify_job('m3', 'v2', true);
SELECT status, payment_error, amount FROM jobs WHERE task_id = 'm3';
SELECT balance, reserved FROM balance('req');

SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
