-- Loose inputs: node ids (blank, white space at either end, control
-- characters, too long), over-long ids, keys and references, infinite
-- times, and submit_job repeated with other arguments.  Each is 22023
-- (PY005 for the resubmission), beside the good case, and writes nothing.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE OR REPLACE FUNCTION rows_written() RETURNS bigint LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM compay.accounts) + (SELECT count(*) FROM compay.transfers)
         + (SELECT count(*) FROM compay.holds) + (SELECT count(*) FROM compay.jobs)
         + (SELECT count(*) FROM compay.usage_samples) + (SELECT count(*) FROM compay.stakes)
         + (SELECT count(*) FROM compay.verifications) + (SELECT count(*) FROM compay.payments)
         + (SELECT count(*) FROM compay.payout_addresses)
         + (SELECT count(*) FROM compay.payout_policies)
         + (SELECT count(*) FROM compay.idempotency_keys)
$$;

-- 1. Node ids: the rule, in one place (compay.check_node_id, the ledger's).
SELECT n AS good_id, check_node_id(n) = n AS ok
FROM (VALUES ('node-1'), ('a b'), ('nœud-ü'), ('ノード'), (repeat('n', 200)), (repeat('ü', 200))) v (n);
SELECT check_node_id(''); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id(' '); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id('   '); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id(' a'); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id('a '); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id(E'a\tb'); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id(E'a\nb'); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id(E'a\rb'); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id('a' || chr(1) || 'b'); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id('a' || chr(127)); \echo :LAST_ERROR_SQLSTATE
-- U+0085 (a C1 control), a no-break space, an ideographic space.
SELECT check_node_id('a' || chr(133) || 'b'); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id('a' || chr(160)); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id(chr(12288) || 'a'); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id(repeat('n', 201)); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id('$fees'); \echo :LAST_ERROR_SQLSTATE
SELECT check_node_id(NULL); \echo :LAST_ERROR_SQLSTATE

-- Every entry point that takes a node id applies it.
SELECT open_account('good', 'CREDIT', '0') > 0 AS opened;
SELECT deposit('good', '100000') > 0 AS funded;
SELECT rows_written() AS before \gset
SELECT open_account(' '); \echo :LAST_ERROR_SQLSTATE
SELECT open_account(E'bad\n'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit(' ', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit(E'a\x1fb', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('good', ' good', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('good', E'x\ty', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer_batch(ARRAY['good'], ARRAY['ok '], ARRAY['1']::credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT reserve(E'\x01', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT grant_barter('good', ' ', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT set_credit_limit(' good', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT stake(' ', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('v-1', ' ', 'render', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_task('v-1', 'good', ' ', 'render'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_task('v-1', E'good\n', 'prov', 'render'); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_address(' ', '9tQoHWyZ4yXUgbz9nvMcFZUfDy5hxcdZabQCxmNCUukKYicXegsDL7nQpcUa3A1pF6K3fhq3scsyY88tdB1MqucULcKzWZC'); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_policy(E'n\u0085', true, '1', '1 day', '10'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit_address(' '); \echo :LAST_ERROR_SQLSTATE
SELECT rows_written() = :before AS nothing_written;
-- The job functions, on a job of good nodes.
SELECT submit_job('v-1', 'good', 'render', '100', '1 hour') > 0 AS submitted;
SELECT rows_written() AS before \gset
SELECT assign_job('v-1', 'prov '); \echo :LAST_ERROR_SQLSTATE
SELECT assign_job('v-1', E'pr\tov'); \echo :LAST_ERROR_SQLSTATE
SELECT rows_written() = :before AS nothing_written;
SELECT assign_job('v-1', 'prov');
SELECT rows_written() AS before \gset
SELECT record_usage('v-1', ' prov', 's', now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT rows_written() = :before AS nothing_written;
SELECT complete_job('v-1', now() - interval '1 minute', now());
SELECT rows_written() AS before \gset
SELECT verify_job('v-1', ' ', true); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('v-1', E'v\r', true); \echo :LAST_ERROR_SQLSTATE
SELECT rows_written() = :before AS nothing_written;
SELECT verify_job('v-1', 'verifier-1', true);

-- 2. Over-long ids, keys and references: 22023, not 54000 or "not found".
SELECT submit_task('v-2', 'good', 'prov', 'render') > 0 AS submitted;
SELECT rows_written() AS before \gset
SELECT record_usage('v-2', 'prov', repeat('s', 200), now(), metrics(cpu_seconds => 1));
SELECT record_usage('v-2', 'prov', repeat('s', 1000000), now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('v-2', 'prov', repeat('s', 201), now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('v-2', 'prov', '', now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage(repeat('t', 1000000), 'prov', 's', now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT assign_job(repeat('t', 201), 'prov'); \echo :LAST_ERROR_SQLSTATE
SELECT task_metrics(repeat('t', 201)); \echo :LAST_ERROR_SQLSTATE
SELECT process_task_payment(repeat('t', 201)); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job(repeat('t', 201), 'good', 'render', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_task(repeat('t', 1000000), 'good', 'prov', 'render'); \echo :LAST_ERROR_SQLSTATE
SELECT rows_written() = :before + 1 AS only_the_good_sample;
SELECT rows_written() AS before \gset
SELECT deposit('good', '1', 'CREDIT', NULL, repeat('k', 201)); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('good', 'other', '1', NULL, repeat('k', 1000000)); \echo :LAST_ERROR_SQLSTATE
SELECT deposit('good', '1', 'CREDIT', repeat('r', 1001)); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('good', 'other', '1', repeat('r', 1000000)); \echo :LAST_ERROR_SQLSTATE
SELECT transfer_batch(ARRAY['good'], ARRAY['other'], ARRAY['1']::credit[], ARRAY[repeat('r', 1001)]); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('good', '1', repeat('r', 1001)); \echo :LAST_ERROR_SQLSTATE
SELECT grant_barter('good', 'other', '1', repeat('r', 1001)); \echo :LAST_ERROR_SQLSTATE
SELECT rows_written() = :before AS nothing_written;
-- At the limits, all are taken.
SELECT deposit('good', '1', 'CREDIT', repeat('r', 1000), repeat('k', 200)) > 0 AS deposited;
SELECT transfer('good', 'other', '1', repeat('ü', 1000)) AS t1 \gset
SELECT refund(:t1, '1', repeat('r', 1001)); \echo :LAST_ERROR_SQLSTATE
SELECT refund(:t1, '1', repeat('r', 1000)) > 0 AS refunded;
-- A dispute reason, too.
SELECT complete_job('v-2', now() - interval '1 minute', now());
SELECT id AS p1 FROM process_task_payment('v-2') \gset
SELECT dispute_payment(:p1, repeat('r', 1001)); \echo :LAST_ERROR_SQLSTATE
SELECT status FROM payments WHERE id = :p1;
SELECT status FROM dispute_payment(:p1, repeat('r', 1000));

-- 3. Infinite times where a finite one is needed.
SELECT submit_task('v-3', 'good', 'prov', 'render') > 0 AS submitted;
SELECT rows_written() AS before \gset
SELECT record_usage('v-3', 'prov', 'a', 'infinity', metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('v-3', 'prov', 'a', '-infinity', metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT complete_job('v-3', '-infinity', '2026-11-30 10:00+00'); \echo :LAST_ERROR_SQLSTATE
SELECT complete_job('v-3', '2026-11-30 10:00+00', 'infinity'); \echo :LAST_ERROR_SQLSTATE
SELECT run_settlement('hourly', 'infinity'); \echo :LAST_ERROR_SQLSTATE
SELECT process_due_settlements('infinity'); \echo :LAST_ERROR_SQLSTATE
SELECT process_due_settlements(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT rows_written() = :before AS nothing_written;
SELECT record_usage('v-3', 'prov', 'a', '2026-11-30 10:00+00', metrics(cpu_seconds => 1));
SELECT count(*) AS settled FROM process_due_settlements(now());

-- 4. submit_job again: the same arguments return the same job; any other
-- argument, the timeout included, is PY005 and holds nothing more.
SELECT submit_job('v-4', 'good', 'render', '10', '2 hours') AS j4 \gset
SELECT submit_job('v-4', 'good', 'render', '10', '2 hours') = :j4 AS same_job;
SELECT submit_job('v-4', 'good', 'render', '10', '120 minutes') = :j4 AS same_duration;
SELECT reserved FROM balance('good') \gset
SELECT submit_job('v-4', 'good', 'render', '10', '3 hours'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('v-4', 'good', 'render', '10'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('v-4', 'good', 'render', '11', '2 hours'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('v-4', 'good', 'other-type', '10', '2 hours'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('v-4', 'other', 'render', '10', '2 hours'); \echo :LAST_ERROR_SQLSTATE
SELECT reserved = :'reserved' AS nothing_more_held FROM balance('good');
SELECT timeout, timeout_at - created_at AS held_for FROM jobs WHERE id = :j4;

SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
