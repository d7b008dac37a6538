-- pgTAP: the schema contract of pricing and jobs (types, tables, the
-- payments index, functions, privileges, builtin rows and settings).
BEGIN;
SET search_path = public, compay;
SELECT plan(103);

-- Types.
SELECT has_composite('compay', 'resource_metrics', 'compay.resource_metrics is a composite type');
SELECT is((SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
           FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
           WHERE t.oid = 'compay.resource_metrics'::regtype AND a.attnum > 0 AND NOT a.attisdropped),
          ARRAY['cpu_seconds numeric', 'memory_byte_hours numeric', 'storage_byte_hours numeric',
                'network_bytes_in bigint', 'network_bytes_out bigint', 'gpu_seconds numeric',
                'custom jsonb'],
          'resource_metrics has its seven fields, in order');
SELECT has_enum('compay', 'job_status', 'enum compay.job_status exists');
SELECT has_enum('compay', 'payment_method', 'enum compay.payment_method exists');
SELECT has_enum('compay', 'payment_status', 'enum compay.payment_status exists');
SELECT enum_has_labels('compay', 'job_status',
                       ARRAY['submitted', 'assigned', 'completed', 'paid', 'failed', 'timed_out',
                             'awaiting_deposit', 'cancelled']);
SELECT enum_has_labels('compay', 'payment_method', ARRAY['credit', 'barter', 'crypto', 'fiat']);
SELECT enum_has_labels('compay', 'payment_status',
                       ARRAY['pending', 'processing', 'completed', 'failed', 'refunded', 'disputed']);

-- Tables, keys and column types.
SELECT col_is_pk('compay', 'jobs', 'id', 'jobs are keyed by id');
SELECT col_is_unique('compay', 'jobs', 'task_id', 'one job per task id');
SELECT col_is_pk('compay', 'verifications', ARRAY['job_id', 'verifier'], 'one vote per verifier and job');
SELECT col_is_fk('compay', 'verifications', 'job_id', 'votes reference their job');
SELECT col_is_pk('compay', 'usage_samples', ARRAY['job_id', 'sample_id'], 'one row per usage sample');
SELECT col_is_pk('compay', 'stakes', ARRAY['node_id', 'currency'], 'one stake per node and currency');
SELECT col_is_pk('compay', 'payments', 'id', 'payments are keyed by id');
SELECT col_is_pk('compay', 'discount_tiers', ARRAY['model_id', 'min_volume'], 'tiers are keyed by model and lower bound');
SELECT col_is_unique('compay', 'pricing_models', 'name', 'pricing model names are unique');
SELECT col_type_is('compay', 'jobs', 'status', 'compay', 'job_status', 'job status is an enum');
SELECT col_type_is('compay', 'jobs', 'max_amount', 'compay', 'credit', 'the escrow is a credit');
SELECT col_type_is('compay', 'payments', 'amount', 'compay', 'credit', 'payment amount is a credit');
SELECT col_type_is('compay', 'payments', 'method', 'compay', 'payment_method', 'payment method is an enum');
SELECT col_type_is('compay', 'payments', 'status', 'compay', 'payment_status', 'payment status is an enum');
SELECT col_type_is('compay', 'payments', 'resource_metrics', 'compay', 'resource_metrics',
                   'a payment carries its resource metrics');
SELECT col_default_is('compay', 'payments', 'status', 'pending', 'payments start pending');
SELECT col_type_is('compay', 'pricing_models', 'cpu_price', 'compay', 'credit', 'unit prices are credits');
SELECT has_trigger('compay', 'discount_tiers', 'discount_tiers_no_overlap',
                   'trigger discount_tiers_no_overlap on discount_tiers');

-- A task is paid at most once: a unique index over the payments that did
-- not fail, but for the collections of its shortfall (src/jobs.sql).
SELECT has_index('compay', 'payments', 'payments_task_once', 'task_id', 'index payments_task_once on task_id');
SELECT index_is_unique('compay', 'payments', 'payments_task_once');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
           WHERE indexrelid = 'compay.payments_task_once'::regclass),
          '((status <> ''failed''::payment_status) AND ((metadata -> ''shortfall_id''::text) IS NULL))',
          'payments_task_once covers every payment but failed ones and shortfall collections');

-- Functions and their signatures.
SELECT has_function('compay', 'price', ARRAY['compay.resource_metrics', 'text', 'text']);
SELECT has_function('compay', 'quote', ARRAY['compay.resource_metrics', 'text', 'text']);
SELECT has_function('compay', 'metrics',
                    ARRAY['numeric', 'numeric', 'numeric', 'bigint', 'bigint', 'numeric', 'jsonb']);
SELECT has_function('compay', 'record_usage',
                    ARRAY['text', 'text', 'text', 'timestamptz', 'compay.resource_metrics']);
SELECT has_function('compay', 'task_metrics', ARRAY['text']);
SELECT has_function('compay', 'submit_job', ARRAY['text', 'text', 'text', 'compay.credit', 'interval']);
SELECT has_function('compay', 'submit_task', ARRAY['text', 'text', 'text', 'text']);
SELECT has_function('compay', 'assign_job', ARRAY['text', 'text']);
SELECT has_function('compay', 'complete_job', ARRAY['text', 'timestamptz', 'timestamptz', 'numeric']);
SELECT has_function('compay', 'verify_job', ARRAY['text', 'text', 'boolean', 'numeric']);
SELECT has_function('compay', 'expire_jobs', '{}'::name[]);
SELECT has_function('compay', 'stake', ARRAY['text', 'compay.credit', 'text', 'text']);
SELECT has_function('compay', 'unstake', ARRAY['text', 'compay.credit', 'text', 'text']);
SELECT has_function('compay', 'process_task_payment', ARRAY['text', 'compay.payment_method']);
SELECT has_function('compay', 'dispute_payment', ARRAY['bigint', 'text']);
SELECT has_function('compay', 'resolve_dispute', ARRAY['bigint', 'compay.credit']);
SELECT has_function('compay', 'settle_escrow',
                    ARRAY['bigint', 'text', 'compay.credit', 'text[]', 'compay.credit', 'text']);
SELECT is((SELECT prorettype::regtype FROM pg_proc
           WHERE oid = 'compay.price(compay.resource_metrics, text, text)'::regprocedure),
          'compay.credit'::regtype, 'price returns a credit');
SELECT is((SELECT prorettype::regtype FROM pg_proc
           WHERE oid = 'compay.verify_job(text, text, boolean, numeric)'::regprocedure),
          'compay.job_status'::regtype, 'verify_job returns the job''s status');
SELECT is((SELECT prorettype::regtype FROM pg_proc
           WHERE oid = 'compay.process_task_payment(text, compay.payment_method)'::regprocedure),
          'compay.payments'::regtype, 'process_task_payment returns the payments row');
SELECT is((SELECT provolatile::text || proretset::text FROM pg_proc
           WHERE oid = 'compay.quote(compay.resource_metrics, text, text)'::regprocedure),
          'strue', 'quote is a STABLE set-returning function');
SELECT is((SELECT array_agg(provolatile::text ORDER BY oid::regprocedure::text) FROM pg_proc
           WHERE oid IN ('compay.price(compay.resource_metrics, text, text)'::regprocedure,
                         'compay.metrics(numeric, numeric, numeric, bigint, bigint, numeric, jsonb)'::regprocedure)),
          ARRAY['i', 's'], 'metrics is IMMUTABLE, price STABLE');
SELECT is((SELECT count(*)::int FROM pg_proc
           WHERE pronamespace = 'compay'::regnamespace
             AND proname IN ('submit_job', 'submit_task', 'assign_job', 'complete_job', 'record_usage',
                             'verify_job', 'expire_jobs', 'stake', 'unstake', 'process_task_payment',
                             'dispute_payment', 'resolve_dispute', 'settle_escrow')
             AND prosecdef AND proconfig = ARRAY['search_path=pg_catalog, compay, pg_temp']
             AND provolatile = 'v'), 13,
          'all 13 job write functions are VOLATILE SECURITY DEFINER with search_path pinned');

-- Privileges: the app runs jobs, only the admin resolves disputes, and
-- only the owner (through verify_job) settles an escrow.
SELECT function_privs_are('compay', 'submit_job', ARRAY['text', 'text', 'text', 'compay.credit', 'interval'],
                          'compay_app', ARRAY['EXECUTE'], 'compay_app can call submit_job');
SELECT function_privs_are('compay', 'submit_job', ARRAY['text', 'text', 'text', 'compay.credit', 'interval'],
                          'public', '{}'::text[], 'PUBLIC cannot call submit_job');
SELECT function_privs_are('compay', 'verify_job', ARRAY['text', 'text', 'boolean', 'numeric'],
                          'compay_app', ARRAY['EXECUTE'], 'compay_app can call verify_job');
SELECT function_privs_are('compay', 'verify_job', ARRAY['text', 'text', 'boolean', 'numeric'],
                          'public', '{}'::text[], 'PUBLIC cannot call verify_job');
SELECT function_privs_are('compay', 'process_task_payment', ARRAY['text', 'compay.payment_method'],
                          'compay_app', ARRAY['EXECUTE'], 'compay_app can call process_task_payment');
SELECT function_privs_are('compay', 'process_task_payment', ARRAY['text', 'compay.payment_method'],
                          'public', '{}'::text[], 'PUBLIC cannot call process_task_payment');
SELECT function_privs_are('compay', 'resolve_dispute', ARRAY['bigint', 'compay.credit'],
                          'compay_admin', ARRAY['EXECUTE'], 'compay_admin can resolve disputes');
SELECT function_privs_are('compay', 'resolve_dispute', ARRAY['bigint', 'compay.credit'],
                          'compay_app', '{}'::text[], 'compay_app cannot resolve disputes');
SELECT function_privs_are('compay', 'resolve_dispute', ARRAY['bigint', 'compay.credit'],
                          'compay_reader', '{}'::text[], 'compay_reader cannot resolve disputes');
SELECT function_privs_are('compay', 'resolve_dispute', ARRAY['bigint', 'compay.credit'],
                          'public', '{}'::text[], 'PUBLIC cannot resolve disputes');
SELECT function_privs_are('compay', 'settle_escrow',
                          ARRAY['bigint', 'text', 'compay.credit', 'text[]', 'compay.credit', 'text'],
                          'public', '{}'::text[], 'PUBLIC cannot settle an escrow');
SELECT function_privs_are('compay', 'settle_escrow',
                          ARRAY['bigint', 'text', 'compay.credit', 'text[]', 'compay.credit', 'text'],
                          'compay_app', '{}'::text[], 'compay_app cannot settle an escrow');
SELECT function_privs_are('compay', 'settle_escrow',
                          ARRAY['bigint', 'text', 'compay.credit', 'text[]', 'compay.credit', 'text'],
                          'compay_admin', '{}'::text[], 'compay_admin cannot settle an escrow');
SELECT ok((SELECT p.proacl IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee <> p.proowner)
           FROM pg_proc p
           WHERE p.oid = 'compay.settle_escrow(bigint, text, compay.credit, text[], compay.credit, text)'::regprocedure),
          'the ACL of settle_escrow names its owner only');
SELECT function_privs_are('compay', 'price', ARRAY['compay.resource_metrics', 'text', 'text'],
                          'compay_reader', ARRAY['EXECUTE'], 'compay_reader can price');
SELECT function_privs_are('compay', 'price', ARRAY['compay.resource_metrics', 'text', 'text'],
                          'public', '{}'::text[], 'PUBLIC cannot price');
SELECT table_privs_are('compay', 'payments', 'compay_app', ARRAY['SELECT'],
                       'app only reads payments (as a compay_reader)');
SELECT table_privs_are('compay', 'pricing_models', 'compay_admin', ARRAY['DELETE', 'INSERT', 'SELECT', 'UPDATE'],
                       'admin edits pricing models');
SELECT table_privs_are('compay', 'jobs', 'public', '{}'::text[], 'PUBLIC has no privilege on jobs');

-- The builtin rows: the design's prices and volume discounts.
SELECT results_eq(
    $$SELECT name, currency, base_price::text, cpu_price::text, memory_price::text,
             storage_price::text, network_price::text, gpu_price::text, custom_prices,
             min_price IS NULL AND max_price IS NULL, builtin
      FROM compay.pricing_models ORDER BY id$$,
    $$VALUES ('default', 'CREDIT', '100', '1000', '100', '10', '50', '10000', '{}'::jsonb, true, true)$$,
    'one pricing model, default: base 100, cpu 1000, memory 100, storage 10, network 50, gpu 10000');
SELECT results_eq(
    $$SELECT t.min_volume, t.max_volume, t.discount_percent, t.builtin
      FROM compay.discount_tiers t JOIN compay.pricing_models m ON m.id = t.model_id
      WHERE m.name = 'default' ORDER BY t.min_volume$$,
    $$VALUES (0::bigint, 1000::bigint, 0::numeric, true), (1000, 10000, 10, true),
             (10000, 100000, 20, true), (100000, NULL, 30, true)$$,
    'four discount tiers: [0, 1000) 0 %, [1000, 10000) 10 %, [10000, 100000) 20 %, [100000, -) 30 %');
SELECT is((SELECT count(*)::int FROM compay.discount_tiers), 4, 'no other discount tiers');
SELECT is_empty('SELECT * FROM compay.task_type_models', 'no task type has a model of its own');
SELECT is_empty('SELECT * FROM compay.market_adjustments', 'no market adjustments');
SELECT is(compay.price(compay.metrics()), '100'::compay.credit, 'an empty task costs the base price');

-- Tiers of one model do not overlap (23P01, exclusion_violation).
SELECT throws_ok($$INSERT INTO compay.discount_tiers (model_id, min_volume, max_volume, discount_percent)
                   SELECT id, 500, 2000, 5 FROM compay.pricing_models WHERE name = 'default'$$,
                 '23P01', NULL, 'a tier overlapping two others is refused');
SELECT throws_ok($$INSERT INTO compay.discount_tiers (model_id, min_volume, max_volume, discount_percent)
                   SELECT id, 200000, NULL, 40 FROM compay.pricing_models WHERE name = 'default'$$,
                 '23P01', NULL, 'an unbounded tier inside the unbounded one is refused');
SELECT throws_ok($$UPDATE compay.discount_tiers SET max_volume = 2000 WHERE min_volume = 0$$,
                 '23P01', NULL, 'widening a tier over its neighbour is refused');
SELECT lives_ok($$UPDATE compay.discount_tiers SET discount_percent = 1 WHERE min_volume = 0$$,
                'a tier does not overlap itself');
SELECT lives_ok($$WITH m AS (INSERT INTO compay.pricing_models (name) VALUES ('tap model') RETURNING id)
                  INSERT INTO compay.discount_tiers (model_id, min_volume, max_volume, discount_percent)
                  SELECT id, 0, 1000, 0 FROM m$$,
                'the same range on another model is fine');

-- A second payment of a task that is not failed breaks payments_task_once.
SELECT lives_ok($$INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status)
                  VALUES ('tap-task', 'r', 'p', '1', 'CREDIT', 'credit', 'failed'),
                         ('tap-task', 'r', 'p', '1', 'CREDIT', 'credit', 'failed'),
                         ('tap-task', 'r', 'p', '1', 'CREDIT', 'credit', 'completed')$$,
                'failed attempts and one payment of a task');
SELECT throws_ok($$INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status)
                   VALUES ('tap-task', 'r', 'p', '1', 'CREDIT', 'barter', 'pending')$$,
                 '23505', NULL, 'a second payment of the task is refused');

-- Settings and their defaults.
SELECT is(current_setting('compay.verification_quorum'), '2', 'compay.verification_quorum defaults to 2');
SELECT is(current_setting('compay.verification_reward_ratio'), '0.15',
          'compay.verification_reward_ratio defaults to 0.15');
SELECT is(current_setting('compay.min_stake'), '0', 'compay.min_stake defaults to 0');
SELECT is(current_setting('compay.market_factor_min'), '0.5', 'compay.market_factor_min defaults to 0.5');
SELECT is(current_setting('compay.market_factor_max'), '2.0', 'compay.market_factor_max defaults to 2.0');
SELECT is(current_setting('compay.dispute_window'), '3d', 'compay.dispute_window defaults to 3 days');
SELECT is(current_setting('compay.discount_window'), '30d', 'compay.discount_window defaults to 30 days');
SELECT is((SELECT count(*)::int FROM pg_settings
           WHERE name IN ('compay.verification_quorum', 'compay.verification_reward_ratio',
                          'compay.min_stake', 'compay.market_factor_min', 'compay.market_factor_max',
                          'compay.dispute_window', 'compay.discount_window')
             AND context = 'superuser'), 7, 'only a superuser changes the seven settings');
SELECT throws_ok($$SET compay.verification_reward_ratio = '0.25'$$, '22023', NULL,
                 'a reward ratio above 0.20 is refused');
SELECT throws_ok($$SET compay.verification_reward_ratio = '0.09'$$, '22023', NULL,
                 'a reward ratio below 0.10 is refused');
SELECT lives_ok($$SET LOCAL compay.verification_reward_ratio = '0.20'$$, 'a reward ratio of 0.20 is allowed');
SELECT is(current_setting('compay.verification_reward_ratio'), '0.20', 'and is in effect');
RESET compay.verification_reward_ratio;
SELECT throws_ok($$SET compay.verification_quorum = 0$$, '22023', NULL, 'a quorum below 1 is refused');
SELECT throws_ok($$SET compay.min_stake = '-1'$$, '22023', NULL, 'a negative minimum stake is refused');

-- Behaviour, as compay_app: the job functions run, the admin's and the
-- owner's do not (42501).
SET LOCAL ROLE compay_app;
SELECT lives_ok($$SELECT compay.deposit('tap_req', '50')$$, 'compay_app deposits');
SELECT lives_ok($$SELECT compay.submit_job('tap-job', 'tap_req', 'render', '10')$$,
                'compay_app submits a job with escrow');
SELECT throws_ok($$SELECT compay.resolve_dispute(1, '0')$$, '42501', NULL,
                 'compay_app cannot resolve disputes');
SELECT throws_ok($$SELECT compay.settle_escrow(1, 'x', '1', '{}', '0', NULL)$$, '42501', NULL,
                 'compay_app cannot settle an escrow');
RESET ROLE;
SET LOCAL ROLE compay_admin;
SELECT throws_ok($$SELECT compay.settle_escrow(1, 'x', '1', '{}', '0', NULL)$$, '42501', NULL,
                 'compay_admin cannot settle an escrow');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
