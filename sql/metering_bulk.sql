-- Metering written through the table access method (src/metering_heap.c):
-- record_usage() and record_usage_batch() plan no SQL, skip the foreign
-- key triggers (the job row lock holds them) and look sample ids up in the
-- primary key themselves.  What that must keep: a batch larger than one
-- multi-insert, each sample id once however it arrives, the totals the sum
-- of the stored samples (custom metrics too), ids found whatever the
-- collation orders them by, the writes visible to the rest of the
-- transaction and gone with it, and every error leaving nothing behind.
\i sql/include/fresh_extension.sql
\set VERBOSITY terse
\set SHOW_CONTEXT never

CREATE OR REPLACE FUNCTION samples() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM compay.usage_samples
$$;
-- Per task with samples: how many, and whether its totals are the sum of them.
CREATE OR REPLACE FUNCTION totals_match() RETURNS TABLE (task text, samples bigint,
    cpu numeric, custom jsonb, sums_match boolean) LANGUAGE sql AS $$
    SELECT j.task_id, (SELECT count(*) FROM compay.usage_samples s WHERE s.job_id = j.id),
           t.cpu_seconds, t.custom,
           ROW(t.cpu_seconds, t.memory_byte_hours, t.storage_byte_hours, t.network_bytes_in,
               t.network_bytes_out, t.gpu_seconds, t.custom)::text
           = compay.task_metrics(j.task_id)::text
    FROM compay.jobs j JOIN compay.usage_totals t ON t.job_id = j.id ORDER BY j.task_id
$$;
-- n samples of task (ids prefix1..prefixn), each cpu_seconds 0.5 and
-- network_bytes_in i; custom frames 1 on every tenth.
CREATE OR REPLACE FUNCTION batch(task text, prefix text, n integer, node text DEFAULT 'prov')
RETURNS integer LANGUAGE sql AS $$
    SELECT compay.record_usage_batch(array_agg(task ORDER BY i), node,
        array_agg(prefix || i ORDER BY i), array_agg(now() ORDER BY i),
        array_agg(compay.metrics(cpu_seconds => 0.5, network_bytes_in => i,
                  custom => CASE WHEN i % 10 = 0 THEN '{"frames": 1}' ELSE '{}' END::jsonb)::compay.resource_metrics
                  ORDER BY i))
    FROM generate_series(1, n) AS i
$$;
INSERT INTO pricing_models (name, base_price, cpu_price, network_price, custom_prices)
VALUES ('render', '1', '1', '0', '{"frames": 2}');
INSERT INTO task_type_models SELECT 'render', id FROM pricing_models WHERE name = 'render';
-- Task ids that a C-collation lookup of a tree ordered otherwise would miss.
SELECT submit_task('Task-A', 'req', 'prov', 'render') AS a, submit_task('task_a', 'req', 'prov', 'render') AS b,
       submit_task('tâche', 'req', 'prov', 'render') AS c, submit_task('closed', 'req', 'prov', 'render') AS d;
UPDATE jobs SET status = 'failed' WHERE task_id = 'closed';

-- Good: 2,500 samples of one task (three multi-inserts), 300 of them sent
-- before, 100 by record_usage() and 200 by a batch: 2,200 new.
SELECT count(*) FILTER (WHERE record_usage('Task-A', 'prov', 's' || i, now(),
           metrics(cpu_seconds => 0.5, network_bytes_in => i,
                   custom => CASE WHEN i % 10 = 0 THEN '{"frames": 1}' ELSE '{}' END::jsonb))) AS one_by_one
FROM generate_series(1, 100) AS i;
SELECT batch('Task-A', 's', 300) AS first_batch;
SELECT batch('Task-A', 's', 2500) AS big_batch;
SELECT * FROM totals_match();
-- The same batch again: every sample a retry, nothing changes.
SELECT batch('Task-A', 's', 2500) AS again, record_usage('Task-A', 'prov', 's7', now(), metrics()) AS one_again;
SELECT * FROM totals_match();

-- Bad beside good: a closed task (55000) or an unknown one (PY010) at the
-- end of a long batch, or a batch over 10,000 samples (54000): nothing of
-- it is written.
SELECT record_usage_batch(array_append(array_fill('task_a'::text, ARRAY[1500]), 'closed'), 'prov',
    array_append(ARRAY(SELECT 'x' || i FROM generate_series(1, 1500) AS i), 'y'),
    array_fill(now(), ARRAY[1501]), array_fill(metrics(cpu_seconds => 1), ARRAY[1501])); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage_batch(array_append(array_fill('task_a'::text, ARRAY[1500]), 'nope'), 'prov',
    array_append(ARRAY(SELECT 'x' || i FROM generate_series(1, 1500) AS i), 'y'),
    array_fill(now(), ARRAY[1501]), array_fill(metrics(cpu_seconds => 1), ARRAY[1501])); \echo :LAST_ERROR_SQLSTATE
SELECT batch('task_a', 'x', 10001); \echo :LAST_ERROR_SQLSTATE
SELECT samples();
-- Good: the same samples without the bad one.
SELECT batch('task_a', 'x', 1500) AS task_a;
-- An error after the samples are written (the sum of the batch's bytes
-- exceeds bigint, 22023) takes them back with it, here and in record_usage().
SELECT record_usage_batch(ARRAY['tâche', 'tâche', 'tâche'], 'prov', ARRAY['u1', 'u2', 'u3'],
    ARRAY[now(), now(), now()],
    ARRAY[metrics(cpu_seconds => 1), metrics(network_bytes_in => 9223372036854775807),
          metrics(network_bytes_in => 1)]); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('tâche', 'prov', 'big', now(), metrics(network_bytes_in => 9223372036854775807)) AS big;
SELECT record_usage('tâche', 'prov', 'one', now(), metrics(network_bytes_in => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT samples();
SELECT * FROM totals_match();

-- Good: one batch over two tasks whose totals have custom metrics, its
-- samples without: each task's totals grow by its own samples only.
SELECT record_usage_batch(ARRAY['Task-A', 'task_a', 'Task-A', 'task_a'], 'prov',
    ARRAY['m1', 'm1', 'm2', 'm2'], array_fill(now(), ARRAY[4]),
    ARRAY[metrics(cpu_seconds => 2), metrics(cpu_seconds => 3), metrics(cpu_seconds => 5),
          metrics(cpu_seconds => 7)]) AS two_tasks;
SELECT * FROM totals_match();

-- In one transaction: each write is seen by the statements after it (the
-- sum, a retry), and all of it is gone with a rollback.
BEGIN;
SELECT (task_metrics('task_a')).cpu_seconds AS sum_before;
SELECT record_usage('task_a', 'prov', 'in-tx', now(), metrics(cpu_seconds => 4)) AS recorded;
SELECT (task_metrics('task_a')).cpu_seconds AS sum_after,
       batch('task_a', 'in-tx-', 5) AS batch_in_tx,
       record_usage('task_a', 'prov', 'in-tx', now(), metrics(cpu_seconds => 4)) AS retry;
SELECT * FROM totals_match() WHERE task = 'task_a';
ROLLBACK;
SELECT * FROM totals_match() WHERE task = 'task_a';
SELECT samples();

SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
