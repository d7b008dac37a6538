-- Events: emit_event queues in the caller's transaction (a rollback emits
-- nothing), publish_events gives ids in emit order and empties the queue,
-- events_since reads them back; the job, payment and payout events of a
-- CREDIT job with escrow and of an XMR task paid out on chain (made-up
-- wallet replies, as in payout_caps); retention and PY026; bad inputs
-- beside good ones, with nothing queued; who may call what.  The worker
-- does not serve this database: the test publishes itself.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
\set addr '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'
\i sql/include/simulated_payout.sql
-- What was published after an id, without the times.
CREATE FUNCTION ev_after(after bigint) RETURNS TABLE (id bigint, kind text, payload jsonb)
LANGUAGE sql AS $$ SELECT e.id, e.kind, e.payload FROM compay.events_since(after) e $$;

-- 1. emit_event: nothing before the commit, nothing after a rollback.
BEGIN;
SELECT emit_event('test.rolled_back', '{"n": 0}');
ROLLBACK;
SELECT count(*) AS queued FROM event_queue;
SELECT emit_event('test.first', '{"n": 1}'), emit_event('test.second', '{"n": 2, "amount": "1.500000000000"}');
SELECT kind, payload FROM event_queue ORDER BY id;
-- Not published yet: events_since sees nothing.
SELECT count(*) AS published FROM events_since(0);
SELECT publish_events() AS published;
SELECT * FROM ev_after(0);
SELECT count(*) AS queued FROM event_queue;
SELECT publish_events() AS published;
-- Emitted and published in one transaction: visible together at commit.
BEGIN;
SELECT emit_event('test.third', '{}');
SELECT publish_events() AS published;
COMMIT;
SELECT * FROM ev_after(2);
-- max_events: the oldest first, the rest on the next call.
SELECT emit_event('test.batch', jsonb_build_object('n', n)) FROM generate_series(1, 3) n;
SELECT publish_events(2) AS published;
SELECT id, payload FROM ev_after(3);
SELECT publish_events(2) AS published;
SELECT id, payload FROM ev_after(5);
SELECT id, payload FROM events_since(3, 1);

-- Bad inputs: nothing is queued or published.
SELECT emit_event(NULL, '{}'); \echo :LAST_ERROR_SQLSTATE
SELECT emit_event('test.x', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT emit_event('test', '{}'); \echo :LAST_ERROR_SQLSTATE
SELECT emit_event('Job.State', '{}'); \echo :LAST_ERROR_SQLSTATE
SELECT emit_event('job.state; drop', '{}'); \echo :LAST_ERROR_SQLSTATE
SELECT emit_event('test.' || repeat('x', 60), '{}'); \echo :LAST_ERROR_SQLSTATE
SELECT emit_event('test.x', '[1, 2]'); \echo :LAST_ERROR_SQLSTATE
SELECT emit_event('test.x', 'null'); \echo :LAST_ERROR_SQLSTATE
SELECT emit_event('test.x', jsonb_build_object('big', repeat('x', 4000))); \echo :LAST_ERROR_SQLSTATE
SELECT publish_events(0); \echo :LAST_ERROR_SQLSTATE
SELECT publish_events(100001); \echo :LAST_ERROR_SQLSTATE
SELECT publish_events(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM events_since(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM events_since(-1); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM events_since(0, 0); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM events_since(0, 100001); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM events_since(0, NULL); \echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM event_queue) AS queued, (SELECT max(id) FROM events) AS last_id;
-- An id past the last one: nothing (yet).
SELECT count(*) FROM events_since(1000);
-- events_since only reads (so it runs on a hot standby too);
-- publish_events writes, and cannot run read-only.
BEGIN TRANSACTION READ ONLY;
SELECT count(*) AS read_only FROM events_since(0);
SELECT publish_events(); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Who may: compay_reader reads, compay_app publishes, compay_admin emits;
-- PUBLIC (and a node role) none of these.
SET ROLE compay_reader;
SELECT count(*) AS readable FROM events_since(0);
SELECT count(*) AS readable FROM events;
SELECT emit_event('test.x', '{}'); \echo :LAST_ERROR_SQLSTATE
SELECT publish_events(); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM event_queue; \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE compay_app;
SELECT publish_events() AS published;
SELECT emit_event('test.x', '{}'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE compay_node;
SELECT count(*) FROM events_since(0); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE compay_admin;
SELECT emit_event('test.by_admin', '{}');
RESET ROLE;
SELECT publish_events() AS published;
SELECT id, kind FROM ev_after(6);

-- 2. A CREDIT job with escrow: submitted, assigned, completed, then paid
-- at the quorum (job.state each time, payment.completed), all in order.
SELECT open_account(n, 'CREDIT', '0') > 0 AS opened FROM unnest(ARRAY['ev-req', 'ev-prov']) n;
SELECT deposit('ev-req', '5000') > 0 AS funded;
SELECT submit_job('ev-1', 'ev-req', 'render', '2000') AS job1 \gset
SELECT assign_job('ev-1', 'ev-prov');
SELECT record_usage('ev-1', 'ev-prov', 's1', now(), metrics(cpu_seconds => 1));
SELECT complete_job('ev-1', now() - interval '1 minute', now());
SELECT verify_job('ev-1', 'ev-v1', true);
SELECT verify_job('ev-1', 'ev-v2', true);
SELECT publish_events() AS published;
SELECT id, kind, payload FROM ev_after(7);
-- A job that times out: submitted, then timed_out.
SELECT submit_job('ev-2', 'ev-req', 'render', '100') AS job2 \gset
UPDATE jobs SET timeout_at = now() - interval '1 second' WHERE id = :job2;
SELECT expire_jobs() AS expired;
SELECT publish_events() AS published;
SELECT id, kind, payload->>'status' AS status, payload->>'previous_status' AS previous
FROM ev_after(12);
-- An update that leaves the status as it is emits nothing.
UPDATE jobs SET updated_at = now() WHERE id = :job2;
SELECT count(*) AS queued FROM event_queue;
-- Rows made earlier (as pg_restore COPYs them back) emit nothing; the
-- same rows made now do.  (Rolled back: they are not real jobs.)
BEGIN;
INSERT INTO jobs (task_id, requester, task_type, currency, status, created_at)
VALUES ('ev-old', 'ev-req', 'render', 'CREDIT', 'paid', now() - interval '1 day');
INSERT INTO payments (task_id, from_node, to_node, amount, currency, method, status, created_at)
VALUES ('ev-old', 'ev-req', 'ev-prov', '1', 'CREDIT', 'credit', 'completed', now() - interval '1 day');
SELECT count(*) AS queued FROM event_queue;
INSERT INTO jobs (task_id, requester, task_type, currency, status)
VALUES ('ev-new', 'ev-req', 'render', 'CREDIT', 'paid');
INSERT INTO payments (task_id, from_node, to_node, amount, currency, method, status)
VALUES ('ev-new', 'ev-req', 'ev-prov', '1', 'CREDIT', 'credit', 'completed');
SELECT kind, payload->>'task_id' AS task FROM event_queue ORDER BY id;
ROLLBACK;

-- 3. XMR: a task paid by crypto, settled, paid out: payout.built,
-- payout.relayed, payout.confirmed; another payout fails (payout.failed).
-- queued is no event.
SELECT admin_deposit('ev-xreq', '10', 'XMR', 'test funds') > 0 AS funded;
SELECT set_payout_address('ev-prov', :'addr');
SELECT set_payout_policy('ev-prov', true, '0', '1 microsecond', '10');
CREATE FUNCTION ev_xmr_task(task text, amount compay.credit) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_model bigint;
BEGIN
    INSERT INTO compay.pricing_models (name, currency, base_price)
    VALUES ('m-' || task, 'XMR', amount) RETURNING id INTO v_model;
    INSERT INTO compay.task_type_models VALUES ('xmr-' || task, v_model);
    PERFORM compay.submit_task(task, 'ev-xreq', 'ev-prov', 'xmr-' || task);
    PERFORM compay.complete_job(task, now() - interval '1 minute', now());
    PERFORM compay.process_task_payment(task, 'crypto');
    UPDATE compay.payments SET completed_at = date_trunc('hour', now()) - interval '30 minutes'
    WHERE task_id = task;
    RETURN (SELECT id FROM compay.payments WHERE task_id = task);
END $$;
SELECT ev_xmr_task('ev-x1', '0.8') > 0 AS paid;
SELECT count(*) > 0 AS settled FROM run_settlement('hourly', now() + interval '1 hour');
SELECT queue_payouts() AS queued;
SELECT pg_temp.pay_on_chain(1);
SELECT ev_xmr_task('ev-x2', '0.25') > 0 AS paid;
SELECT count(*) > 0 AS settled FROM run_settlement('hourly', now() + interval '2 hours');
SELECT queue_payouts() AS queued;
SELECT record_payout_failed(2, 'the wallet refused it');
SELECT publish_events() AS published;
SELECT id, kind, payload FROM ev_after(14);

-- 4. Retention (compay.event_retention, 7 days by default; set in
-- postgresql.conf, not per session): events published longer ago are
-- deleted by the next publish_events, and events_since from before them
-- is PY026 rather than a silent gap.
SHOW compay.event_retention;
SET compay.event_retention = '1d'; \echo :LAST_ERROR_SQLSTATE
UPDATE events SET published_at = published_at - interval '8 days' WHERE id <= 5;
SELECT publish_events() AS published;
SELECT min(id) AS oldest, (SELECT through_id FROM events_deleted) AS deleted_through FROM events;
SELECT * FROM events_since(0); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM events_since(4); \echo :LAST_ERROR_SQLSTATE
SELECT id, kind FROM events_since(5, 2);
-- Retention deletes by age only: the rest stays.
SELECT publish_events() AS published;
SELECT count(*) AS kept FROM events;

SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
SELECT bool_and(ok) AS ledger_ok FROM verify_ledger();
