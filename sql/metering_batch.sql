-- Metering in bulk: compay.record_usage_batch() records the samples of one
-- node (element i of each array is one sample) all or none.  A sample id
-- recorded before, by a batch or by record_usage(), is skipped; the result
-- counts the new ones, and the totals grow by exactly those.  Every bad
-- input is refused with its SQLSTATE before anything is written: the good
-- samples beside the bad one are not stored either.
\i sql/include/fresh_extension.sql
\set VERBOSITY terse
\set SHOW_CONTEXT never

CREATE OR REPLACE FUNCTION samples() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM compay.usage_samples
$$;
-- The totals of a task, and whether they are the sum of its samples.
CREATE OR REPLACE FUNCTION totals(task text) RETURNS TABLE (cpu numeric, gpu numeric, bytes_in numeric,
    custom jsonb, sums_match boolean) LANGUAGE sql AS $$
    SELECT t.cpu_seconds, t.gpu_seconds, t.network_bytes_in, t.custom,
           ROW(t.cpu_seconds, t.memory_byte_hours, t.storage_byte_hours, t.network_bytes_in,
               t.network_bytes_out, t.gpu_seconds, t.custom)::text
           = compay.task_metrics(task)::text
    FROM compay.usage_totals t JOIN compay.jobs j ON j.id = t.job_id WHERE j.task_id = task
$$;
INSERT INTO pricing_models (name, base_price, cpu_price, network_price, custom_prices)
VALUES ('render', '100', '1000', '50', '{"frames": 20}');
INSERT INTO task_type_models SELECT 'render', id FROM pricing_models WHERE name = 'render';
SELECT submit_task('b1', 'req', 'prov', 'render') AS b1, submit_task('b2', 'req', 'prov', 'render') AS b2,
       submit_task('other', 'req', 'prov2', 'render') AS other;

-- Good: three samples of two tasks of prov, one with custom metrics.
SELECT record_usage_batch(ARRAY['b1', 'b1', 'b2'], 'prov', ARRAY['s1', 's2', 's1'],
    ARRAY['2026-11-30 10:00+00', '2026-11-30 10:01+00', '2026-11-30 10:00+00']::timestamptz[],
    ARRAY[metrics(cpu_seconds => 1.5, custom => '{"frames": 2}'),
          metrics(gpu_seconds => 2, network_bytes_in => 10, custom => '{"frames": 1.5}'),
          metrics(cpu_seconds => 3)]) AS recorded;
SELECT * FROM totals('b1');
SELECT * FROM totals('b2');
SELECT sample_id, node_id, cpu_seconds, gpu_seconds, custom FROM usage_samples ORDER BY job_id, sample_id;
-- The same batch again: nothing new, nothing changes.
SELECT record_usage_batch(ARRAY['b1', 'b1', 'b2'], 'prov', ARRAY['s1', 's2', 's1'],
    ARRAY[now(), now(), now()], ARRAY[metrics(cpu_seconds => 7), metrics(), metrics()]) AS recorded;
-- Overlapping: s2 is a retry, s3 new; record_usage and batches skip each other's samples.
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['s2', 's3'], ARRAY[now(), now()],
    ARRAY[metrics(cpu_seconds => 100), metrics(cpu_seconds => 0.25, custom => '{"frames": 1}')]) AS recorded;
SELECT record_usage('b1', 'prov', 's3', now(), metrics(cpu_seconds => 9)) AS recorded_again;
SELECT record_usage('b1', 'prov', 's4', now(), metrics(cpu_seconds => 1)) AS recorded;
SELECT record_usage_batch(ARRAY['b1'], 'prov', ARRAY['s4'], ARRAY[now()], ARRAY[metrics(cpu_seconds => 5)]) AS recorded;
SELECT * FROM totals('b1');
-- An empty batch records nothing.
SELECT record_usage_batch('{}', 'prov', '{}', '{}', '{}') AS recorded;
SELECT samples();

-- Bad inputs, each beside a good sample that is not stored either.
SELECT record_usage_batch(NULL, 'prov', ARRAY['x'], ARRAY[now()], ARRAY[metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1'], NULL, ARRAY['x'], ARRAY[now()], ARRAY[metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', NULL], ARRAY[now(), now()],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(), NULL]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', 'y'], ARRAY[now()],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(array_fill('b1'::text, ARRAY[10001]), 'prov',
    ARRAY(SELECT 'x' || i FROM generate_series(1, 10001) i), array_fill(now(), ARRAY[10001]),
    array_fill(metrics(), ARRAY[10001])); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1'], ' prov', ARRAY['x'], ARRAY[now()], ARRAY[metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', ''], ARRAY[now(), now()],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', repeat('y', 201)], ARRAY[now(), now()],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', repeat('b', 201)], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', 'y'], ARRAY[now(), 'infinity'],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(), metrics(cpu_seconds => -1)]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(), metrics(custom => '[1]')]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b2', 'b1'], 'prov', ARRAY['x', 'x', 'x'], ARRAY[now(), now(), now()],
    ARRAY[metrics(), metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'nope'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'other'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
-- Sums checked as record_usage checks them: bytes within bigint, a known
-- custom metric, a price within the credit range (1e23 + 8e22 CPU-seconds
-- at 1000 each is more than the largest credit; each alone is not).
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(network_bytes_in => 9223372036854775807), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b1', 'b1'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(), metrics(custom => '{"tiles": 1}')]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(ARRAY['b2', 'b2'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(cpu_seconds => 1e23), metrics(cpu_seconds => 8e22)]); \echo :LAST_ERROR_SQLSTATE
SELECT samples();
SELECT * FROM totals('b1');
-- Each big sample alone fits: one batch takes it.
SELECT record_usage_batch(ARRAY['b2'], 'prov', ARRAY['big'], ARRAY[now()],
    ARRAY[metrics(cpu_seconds => 1e23)]) AS recorded;
-- A closed task takes no more samples.
UPDATE jobs SET status = 'failed' WHERE task_id = 'b2';
SELECT record_usage_batch(ARRAY['b1', 'b2'], 'prov', ARRAY['x', 'y'], ARRAY[now(), now()],
    ARRAY[metrics(), metrics()]); \echo :LAST_ERROR_SQLSTATE
SELECT samples();

-- A node role batches the samples of its own node only.
SET client_min_messages = warning;
DROP ROLE IF EXISTS mb_node;
RESET client_min_messages;
CREATE ROLE mb_node IN ROLE compay_node;
SELECT add_node_role('mb_node', 'prov') AS mapped;
SET ROLE mb_node;
SELECT compay.record_usage_batch(ARRAY['b1'], 'prov', ARRAY['n1'], ARRAY[now()],
    ARRAY[compay.metrics(cpu_seconds => 1)]) AS recorded;
SELECT compay.record_usage_batch(ARRAY['other'], 'prov2', ARRAY['n1'], ARRAY[now()],
    ARRAY[compay.metrics(cpu_seconds => 1)]); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT * FROM totals('b1');
SELECT samples();
DROP OWNED BY mb_node;
DROP ROLE mb_node;

SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
