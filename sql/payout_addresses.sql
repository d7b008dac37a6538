-- Payout addresses per purpose and job type, and rotation, without a
-- wallet: set_payout_address replaces (as in 0.1), add_payout_address
-- adds, remove_payout_address removes, payout_address_list lists;
-- earnings of a job type with an address are settled apart and paid
-- there; verifier rewards take the verification address; with rotation
-- on, successive payouts take a set's addresses in turn, and a payout
-- keeps the address it took when it was queued.  Bad inputs beside the
-- good cases, with nothing written.  The wallet's replies are made up
-- (sql/include/simulated_payout.sql); test/t/063_payout_addresses.pl pays
-- the same on a real regtest chain.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
\set addr_a '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'
\set addr_b '87uLzB6ynrvKyBeU5FLigJDdfYCMN9YueeFZH3S6XWhqTAD84p1CYZwHTQribxUCAvGParmc6hZPNEzfDMve9k5DESF2ucw'
\set addr_c '888tNkZrPN6JsEgekjMnABU4TBzc2Dt29EPAvkRxbANsAnjyPbb3iQ1YBRk1UXcdRsiKc9dhwMVgN5S9cQUiyoogDavup3H'
\set addr_d '83v3TwbZ1gQB4Q6pFDvSDF1epbvzeULRfEuZhq5NvCwZZTkGB6K395YQf8mhsZGTNhXqWBVArBaqfBntNeRVGp56VCE2R9g'
\set addr_e '86upMFd4PkPgMGjMXfhtgL1ZNJrZEyVEC7KQLEdX8aGR7rrpFWBygDgSxFkXLH3juHfbb8MJ1HPFNfRBAzhx67LF7kpkxqE'
\set addr_f '8BdmzP8sGagQp4wE6dCnrTgkxaKZh2brpQtvT7dA9sifWGyFq97dxEz8Q6xo8MpeaxAGtqQRPqYwV8jFTfh5AjHiTY3AhzV'
\i sql/include/simulated_payout.sql

-- The addresses by letter, to keep the output short.
CREATE TEMP TABLE letters (letter text, address text);
INSERT INTO letters VALUES ('A', :'addr_a'), ('B', :'addr_b'), ('C', :'addr_c'), ('D', :'addr_d'),
                           ('E', :'addr_e'), ('F', :'addr_f');
CREATE OR REPLACE FUNCTION pa_letter(address text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT l.letter FROM letters l WHERE l.address = $1), $1)
$$;
CREATE OR REPLACE FUNCTION pa_addresses(node text) RETURNS TABLE (purpose compay.address_purpose, job_type text,
    address text, next boolean) LANGUAGE sql AS $$
    SELECT l.purpose, l.job_type, pa_letter(l.address), l.next FROM compay.payout_address_list(node) l
$$;
-- XMR earnings of a job type: a task priced in XMR, completed and paid.
CREATE TEMP SEQUENCE model_ids START 1000;
CREATE OR REPLACE FUNCTION pa_earn(task text, payee text, job_type text, amount compay.credit) RETURNS text
LANGUAGE sql AS $$
    SELECT compay.admin_deposit('req', amount, 'XMR', 'funds for ' || task);
    INSERT INTO compay.pricing_models (id, name, currency, base_price)
    VALUES (nextval('model_ids'), 'model of ' || task, 'XMR', amount);
    INSERT INTO compay.task_type_models (task_type, model_id)
    VALUES (job_type, currval('model_ids')::integer)
    ON CONFLICT (task_type) DO UPDATE SET model_id = EXCLUDED.model_id;
    SELECT compay.submit_task(task, 'req', payee, job_type);
    SELECT compay.complete_job(task, now() - interval '1 minute', now());
    SELECT (compay.process_task_payment(task, 'crypto')).status::text;
$$;
CREATE OR REPLACE FUNCTION pa_settle() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '1 hour')
$$;
-- What each payout paid, to which address, for which job type.
CREATE OR REPLACE FUNCTION pa_paid() RETURNS TABLE (payout bigint, node text, address text, amount compay.credit,
    job_types text) LANGUAGE sql AS $$
    SELECT i.payout_id, i.node_id, pa_letter(i.address), i.amount,
           (SELECT string_agg(coalesce(s.job_type, '-'), ',' ORDER BY s.id)
            FROM compay.settlements s WHERE s.id = ANY (i.settlement_ids))
    FROM compay.payout_items i ORDER BY 1, 2, 3
$$;
CREATE OR REPLACE FUNCTION ledger_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(ok) FROM compay.verify_ledger()
$$;

-- 1. The 0.1 call replaces the purpose's address; add_payout_address adds,
-- a second time is a no-op; each returns the kind.
SELECT set_payout_address('gpu', :'addr_a');
SELECT set_payout_address('gpu', :'addr_b');
SELECT * FROM pa_addresses('gpu');
SELECT add_payout_address('gpu', :'addr_c');
SELECT add_payout_address('gpu', :'addr_c', 'primary');
SELECT add_payout_address('gpu', :'addr_d', 'primary', 'render');
SELECT add_payout_address('gpu', :'addr_e', 'operational');
SELECT * FROM pa_addresses('gpu');
-- The 0.1 call replaces B and C by A, and leaves the job type's and the
-- other purposes' addresses alone.
SELECT set_payout_address('gpu', :'addr_a');
SELECT * FROM pa_addresses('gpu');
SELECT set_payout_address('gpu', :'addr_b'), add_payout_address('gpu', :'addr_c');

-- 2. Bad inputs, each with nothing written.
SELECT add_payout_address(NULL, :'addr_a'); \echo :LAST_ERROR_SQLSTATE
SELECT add_payout_address('gpu', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT add_payout_address('gpu', :'addr_a', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT add_payout_address('gpu', 'not-an-address'); \echo :LAST_ERROR_SQLSTATE
SELECT add_payout_address('gpu', :'addr_a', 'primary', ''); \echo :LAST_ERROR_SQLSTATE
SELECT add_payout_address('gpu', :'addr_a', 'primary', repeat('x', 201)); \echo :LAST_ERROR_SQLSTATE
SELECT add_payout_address('$fees', :'addr_a'); \echo :LAST_ERROR_SQLSTATE
SELECT remove_payout_address('gpu', :'addr_a'); \echo :LAST_ERROR_SQLSTATE
SELECT remove_payout_address('gpu', :'addr_d'); \echo :LAST_ERROR_SQLSTATE
SELECT remove_payout_address('gpu', :'addr_b', 'primary', ''); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_rotation('gpu', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_rotation(NULL, true); \echo :LAST_ERROR_SQLSTATE
SELECT payout_address_list(NULL); \echo :LAST_ERROR_SQLSTATE
-- At most 100 addresses a node: the 101st is refused, adding one it has is not.
SELECT count(*) FROM (SELECT add_payout_address('many', :'addr_a', 'primary', 'jt' || n)
                      FROM generate_series(1, 100) n) x;
SELECT add_payout_address('many', :'addr_a', 'primary', 'jt101'); \echo :LAST_ERROR_SQLSTATE
SELECT add_payout_address('many', :'addr_a', 'primary', 'jt100');
SELECT count(*) AS addresses, count(DISTINCT node_id) AS nodes FROM payout_addresses;
SELECT * FROM pa_addresses('gpu');

-- 3. Earnings of a job type with an address are settled apart and paid
-- there; the others go to the primary addresses.  Rotation off: the
-- first registered (B).
SELECT set_payout_policy('gpu', true, '0.01', NULL, '100');
SELECT pa_earn('r1', 'gpu', 'render', '0.2'), pa_earn('t1', 'gpu', 'train', '0.3');
SELECT pa_settle();
SELECT payee, job_type, total_amount, status FROM settlements ORDER BY id;
SELECT request_payout('gpu') AS p1 \gset
SELECT * FROM pa_paid();
SELECT pg_temp.pay_on_chain(:p1);
SELECT pa_earn('t2', 'gpu', 'train', '0.1'), pa_settle();
SELECT request_payout('gpu') AS p2 \gset
SELECT pg_temp.pay_on_chain(:p2);
SELECT * FROM pa_paid() WHERE payout = :p2;

-- 4. Rotation on: successive payouts take B, C (and F once added) in
-- turn, the least recently used first: C was never used, then B.
SELECT set_payout_rotation('gpu', true);
SELECT * FROM pa_addresses('gpu') WHERE purpose = 'primary' AND job_type IS NULL;
SELECT pa_earn('t3', 'gpu', 'train', '0.1'), pa_settle();
SELECT request_payout('gpu') AS p3 \gset
SELECT pg_temp.pay_on_chain(:p3);
SELECT pa_earn('t4', 'gpu', 'train', '0.1'), pa_settle();
SELECT request_payout('gpu') AS p4 \gset
-- A payout keeps the address it took when queued (B): after a retry the
-- build pays B, while the next payout would take C.
SELECT record_payout_retry(:p4, 'wallet unreachable');
SELECT * FROM pa_addresses('gpu') WHERE purpose = 'primary' AND job_type IS NULL;
SELECT pa_letter(d->>'address') AS builds_to
FROM jsonb_array_elements(payout_transfer_params(:p4)->'destinations') d;
SELECT pg_temp.pay_on_chain(:p4);
-- A third address joins the turn, first as never used.
SELECT add_payout_address('gpu', :'addr_f');
SELECT pa_earn('t5', 'gpu', 'train', '0.1'), pa_settle();
SELECT request_payout('gpu') AS p5 \gset
SELECT pg_temp.pay_on_chain(:p5);
SELECT pa_earn('t6', 'gpu', 'train', '0.1'), pa_settle();
SELECT request_payout('gpu') AS p6 \gset
SELECT pg_temp.pay_on_chain(:p6);
SELECT * FROM pa_paid() WHERE payout > :p2;
-- Two render settlements in one payout: one item at one address of the
-- render set, A (never used; D paid p1).
SELECT add_payout_address('gpu', :'addr_a', 'primary', 'render');
SELECT pa_earn('r2', 'gpu', 'render', '0.05'), pa_settle();
SELECT pa_earn('r3', 'gpu', 'render', '0.05'), pa_settle();
SELECT request_payout('gpu') AS p7 \gset
SELECT pg_temp.pay_on_chain(:p7);
SELECT * FROM pa_paid() WHERE payout = :p7;
-- Rotation off again: the first registered of a set.
SELECT set_payout_rotation('gpu', false);
SELECT * FROM pa_addresses('gpu');

-- 5. A removed job type address: later earnings of the job type are not
-- kept apart and go to the primary addresses.
SELECT remove_payout_address('gpu', :'addr_d', 'primary', 'render');
SELECT remove_payout_address('gpu', :'addr_a', 'primary', 'render');
-- An operational address for the job type does not keep them apart either.
SELECT add_payout_address('gpu', :'addr_e', 'operational', 'render');
SELECT pa_earn('r4', 'gpu', 'render', '0.1'), pa_settle();
SELECT payee, job_type, total_amount FROM settlements ORDER BY id DESC LIMIT 1;
SELECT request_payout('gpu') AS p8 \gset
SELECT * FROM pa_paid() WHERE payout = :p8;

-- 6. Verifier rewards (settlement purpose verification): the job type's
-- verification address, else the verification address, else the primary.
SELECT set_payout_address('ver', :'addr_a');
SELECT pa_letter((payout_address_for('ver', 'verification', 'render', NULL)).address) AS no_verification_address;
SELECT add_payout_address('ver', :'addr_b', 'verification');
SELECT pa_letter((payout_address_for('ver', 'verification', 'render', NULL)).address) AS verification,
       pa_letter((payout_address_for('ver', 'primary', 'render', NULL)).address) AS earnings;
SELECT add_payout_address('ver', :'addr_c', 'verification', 'render');
SELECT pa_letter((payout_address_for('ver', 'verification', 'render', NULL)).address) AS render_verification,
       pa_letter((payout_address_for('ver', 'verification', 'train', NULL)).address) AS train_verification;
-- Operational addresses are never paid earnings.
SELECT set_payout_address('ops', :'addr_e', 'operational');
SELECT payout_address_for('ops', 'primary', NULL, NULL) IS NULL AS no_earnings_address;
SELECT request_payout('ops'); \echo :LAST_ERROR_SQLSTATE

-- 7. A node's role manages its own addresses only (42501 for another
-- node's, with nothing written).
SET client_min_messages = warning;
DROP ROLE IF EXISTS pa_node;
RESET client_min_messages;
CREATE ROLE pa_node IN ROLE compay_node;
SELECT add_node_role('pa_node', 'gpu') AS mapped;
SET ROLE pa_node;
SELECT compay.add_payout_address('gpu', :'addr_c', 'verification');
SELECT compay.set_payout_rotation('gpu', true);
SELECT count(*) AS own FROM compay.payout_address_list('gpu');
SELECT compay.add_payout_address('ver', :'addr_c'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.remove_payout_address('ver', :'addr_a'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.set_payout_rotation('ver', true); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM compay.payout_address_list('ver'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT node_id, count(*) AS addresses, bool_or(coalesce(p.rotate_addresses, false)) AS rotates
FROM payout_addresses a LEFT JOIN payout_policies p USING (node_id)
WHERE node_id IN ('gpu', 'ver') GROUP BY node_id ORDER BY node_id;
DELETE FROM node_roles WHERE role_name = 'pa_node';
DROP ROLE pa_node;

SELECT ledger_ok();
