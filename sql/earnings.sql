-- Earnings of a node: what it earned, where each amount is now (pending,
-- settled, in flight, paid), what refunds took back and what it owes or
-- is owed, in CREDIT and XMR; the breakdown, the event history and the
-- payment history; bad inputs beside good ones; node roles.  Payouts are
-- built and confirmed with made-up wallet replies, as in payout_caps.
-- Every earnings() row is checked against the identity
-- earned = pending + settled_unpaid + in_flight + paid - clawbacks_owed.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET client_min_messages = warning;
DROP ROLE IF EXISTS ea_node_prov, ea_node_other;
RESET client_min_messages;
\set addr '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'

CREATE OR REPLACE FUNCTION ea_ledger_ok() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(check_name || ': ' || detail, '; ') FILTER (WHERE NOT ok), 'ok')
    FROM compay.verify_ledger()
$$;
-- earnings() of a node, each row with its identity checked.
CREATE OR REPLACE FUNCTION ea_earned(node text, cur text DEFAULT NULL) RETURNS TABLE (
    currency text, earned compay.credit, refunded compay.credit, rewards compay.credit,
    pending compay.credit, settled_unpaid compay.credit, in_flight compay.credit,
    paid compay.credit, clawbacks compay.credit, sf_owed_to compay.credit,
    sf_owed_by compay.credit, adds_up boolean)
LANGUAGE sql AS $$
    SELECT e.*, e.earned = e.pending + e.settled_unpaid + e.in_flight + e.paid - e.clawbacks_owed
    FROM compay.earnings(node, cur) e
$$;
-- A CREDIT job of the default model (100 + 1000 per CPU-second) run by
-- provider and verified by two verifiers.
CREATE OR REPLACE FUNCTION ea_run_job(task text, requester text, provider text, escrow compay.credit,
    cpu numeric, v1 text, v2 text) RETURNS compay.job_status LANGUAGE plpgsql AS $$
BEGIN
    PERFORM compay.submit_job(task, requester, 'render', escrow);
    PERFORM compay.assign_job(task, provider);
    PERFORM compay.record_usage(task, provider, 's1', now(), compay.metrics(cpu_seconds => cpu));
    PERFORM compay.complete_job(task, now() - interval '1 minute', now());
    PERFORM compay.verify_job(task, v1, true);
    RETURN compay.verify_job(task, v2, true);
END $$;
-- Moves a task's payments and rewards to a fixed time.
CREATE OR REPLACE FUNCTION ea_at_time(task text, ts timestamptz) RETURNS void LANGUAGE sql AS $$
    UPDATE compay.payments SET created_at = ts, completed_at = ts WHERE task_id = task;
    UPDATE compay.verifications v SET rewarded_at = ts FROM compay.jobs j
    WHERE j.id = v.job_id AND j.task_id = task AND v.rewarded_at IS NOT NULL;
$$;
-- An XMR task without escrow paid by crypto from ea-xreq; the payment id.
CREATE OR REPLACE FUNCTION ea_xmr_task(task text, payee text, amount compay.credit) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_model bigint;
BEGIN
    INSERT INTO compay.pricing_models (name, currency, base_price)
    VALUES ('m-' || task, 'XMR', amount) RETURNING id INTO v_model;
    INSERT INTO compay.task_type_models VALUES ('xmr-' || task, v_model);
    PERFORM compay.submit_task(task, 'ea-xreq', payee, 'xmr-' || task);
    PERFORM compay.complete_job(task, now() - interval '1 minute', now());
    PERFORM compay.process_task_payment(task, 'crypto');
    -- All in one hour (the last one closed), so that one hourly
    -- settlement gathers them whenever the test runs.
    UPDATE compay.payments SET completed_at = date_trunc('hour', now()) - interval '30 minutes'
    WHERE task_id = task;
    RETURN (SELECT id FROM compay.payments WHERE task_id = task);
END $$;
\i sql/include/simulated_payout.sql
CREATE OR REPLACE FUNCTION ea_next_day() RETURNS void LANGUAGE sql AS $$
    UPDATE compay.payout_transactions SET created_at = created_at - interval '1 day 1 minute'
$$;

-- A node with no earnings: no row, or one row of zeros for a currency;
-- the other functions return nothing.
SELECT * FROM ea_earned('ea-nobody');
SELECT * FROM ea_earned('ea-nobody', 'XMR');
SELECT count(*) FROM earnings_history('ea-nobody');
SELECT count(*) FROM earnings_breakdown('ea-nobody', NULL, NULL, 'day');
SELECT count(*) FROM payment_history('ea-nobody');

-- CREDIT.  ea-prov runs two jobs of ea-req: ea-1 costs 1100 (escrow
-- 1500); ea-2 costs 2100 beyond its escrow of 1000: ea-req's other 500 is
-- charged at once (a second payment of the task), 600 is owed to ea-prov.
-- ea-prov verifies ea-3 (ea-r3's, run by ea-other) with ea-v1: its reward is 15 % of
-- 1100 = 165.
SELECT open_account(n, 'CREDIT', '0') > 0 AS opened
FROM unnest(ARRAY['ea-req', 'ea-r3', 'ea-prov', 'ea-v1', 'ea-v2', 'ea-other']) n;
SELECT deposit('ea-req', '2600') > 0 AS funded, deposit('ea-r3', '1500') > 0 AS funded_r3;
SELECT ea_run_job('ea-1', 'ea-req', 'ea-prov', '1500', 1, 'ea-v1', 'ea-v2');
SELECT ea_run_job('ea-2', 'ea-req', 'ea-prov', '1000', 2, 'ea-v1', 'ea-v2');
SELECT ea_run_job('ea-3', 'ea-r3', 'ea-other', '1500', 1, 'ea-prov', 'ea-v1');
SELECT task_id, amount, metadata ? 'shortfall_id' AS collection FROM payments
WHERE to_node = 'ea-prov' ORDER BY id;
SELECT requester, provider, amount, collected FROM shortfalls;
-- ea-1 is disputed and 100 of it refunded.
SELECT status FROM dispute_payment((SELECT id FROM payments WHERE task_id = 'ea-1'), 'late');
SELECT status FROM resolve_dispute((SELECT id FROM payments WHERE task_id = 'ea-1'), '100');
-- The days they happened on, for the breakdown: ea-1 on 5 January 2026,
-- ea-2 on 12 January, ea-3 on 3 February.
SELECT ea_at_time('ea-1', '2026-01-05 10:00+00'), ea_at_time('ea-2', '2026-01-12 23:59:59+00'),
       ea_at_time('ea-3', '2026-02-03 00:00+00');
-- Earned 1100 - 100 + 1000 + 500 + 165 = 2665, nothing settled yet; 600
-- owed to it by ea-req.
SELECT * FROM ea_earned('ea-prov');
SELECT * FROM ea_earned('ea-req');
-- ea-v1 only verifies: 165 (ea-1) + 150 (15 % of the 1000 ea-2's escrow
-- paid) + 165 (ea-3) = 480, all rewards.
SELECT earned, rewards, adds_up FROM ea_earned('ea-v1');
SELECT earned_at, kind, purpose, task_id, job_type, payer, currency, amount, refunded, earned,
       settlement_id IS NULL AS unsettled, payout_ids, tx_hashes, status
FROM earnings_history('ea-prov');
-- Settled: CREDIT settlements complete at once (the money is in the
-- balance already): paid.
SELECT count(*) > 0 AS settled FROM run_settlement('hourly', now() + interval '1 hour');
SELECT * FROM ea_earned('ea-prov');
SELECT task_id, status FROM earnings_history('ea-prov', '2026-01-01', '2026-02-01');

-- The breakdown over January and over the two months, every grouping.
SELECT * FROM earnings_breakdown('ea-prov', '2026-01-01', '2026-02-01', 'day');
SELECT * FROM earnings_breakdown('ea-prov', '2026-01-01', '2026-03-01', 'week');
SELECT * FROM earnings_breakdown('ea-prov', '2026-01-01', '2026-03-01', 'month');
SELECT * FROM earnings_breakdown('ea-prov', '2026-01-01', '2026-03-01', 'job_type');
SELECT * FROM earnings_breakdown('ea-prov', '2026-01-01', '2026-03-01', 'purpose');
SELECT * FROM earnings_breakdown('ea-prov', '2026-01-01', '2026-03-01', 'payer');
-- The range is [from, to): an event at to is left out, one at from kept.
SELECT key, earned FROM earnings_breakdown('ea-prov', '2026-01-05 10:00+00', '2026-01-12 23:59:59+00', 'day');
SELECT task_id FROM earnings_history('ea-prov', '2026-02-03 00:00+00');
SELECT task_id FROM earnings_history('ea-prov', NULL, '2026-01-05 10:00:00.000001+00');
-- Empty ranges: nothing.
SELECT count(*) FROM earnings_breakdown('ea-prov', '2025-01-01', '2025-12-31', 'month');
SELECT count(*) FROM earnings_breakdown('ea-prov', '2026-01-07', '2026-01-07', 'day');
SELECT count(*) FROM earnings_history('ea-prov', '2026-01-06', '2026-01-12');

-- XMR.  ea-prov earns 0.8 and 0.3, settled together (1.1), paid in parts
-- under its cap of 0.5 a day.
SELECT admin_deposit('ea-xreq', '10', 'XMR', 'test funds') > 0 AS funded;
SELECT set_payout_address('ea-prov', :'addr');
SELECT set_payout_policy('ea-prov', true, '0', '1 microsecond', '0.5');
SELECT ea_xmr_task('ea-x1', 'ea-prov', '0.8') AS x1 \gset
SELECT ea_xmr_task('ea-x2', 'ea-prov', '0.3') AS x2 \gset
SELECT currency, earned, pending, settled_unpaid, in_flight, paid, adds_up FROM ea_earned('ea-prov', 'XMR');
SELECT count(*) > 0 AS settled FROM run_settlement('hourly', now() + interval '1 hour');
SELECT currency, earned, pending, settled_unpaid, in_flight, paid, adds_up FROM ea_earned('ea-prov', 'XMR');
-- Day one: a part of 0.5 built, relayed and confirmed.
SELECT queue_payouts() AS queued;
SELECT pg_temp.fake_build(1);
SELECT record_payout_relayed(1);
SELECT record_payout_confirmations(1, 10);
-- Day two: the next 0.5 built and relayed, not confirmed: in flight.
SELECT ea_next_day();
SELECT queue_payouts() AS queued;
SELECT pg_temp.fake_build(2);
SELECT record_payout_relayed(2);
SELECT currency, earned, pending, settled_unpaid, in_flight, paid, adds_up FROM ea_earned('ea-prov', 'XMR');
SELECT task_id, amount, earned, payout_ids,
       tx_hashes = ARRAY[encode(sha256('tx1'::bytea), 'hex'), encode(sha256('tx2'::bytea), 'hex')] AS hashes,
       status
FROM earnings_history('ea-prov') WHERE currency = 'XMR';
-- ea-x2 disputed and refunded in full: 0.1 comes from the hold, 0.2 has
-- left on chain and is clawed back.  Earned 0.8 = 0 + 0.5 + 0.5 - 0.2.
SELECT status FROM dispute_payment(:x2, 'wrong');
SELECT status FROM resolve_dispute(:x2, '0.3');
SELECT amount, repaid FROM clawbacks;
SELECT * FROM ea_earned('ea-prov', 'XMR');
-- Confirmed: everything paid, 0.2 still owed.
SELECT record_payout_confirmations(2, 10);
SELECT currency, earned, refunded, settled_unpaid, in_flight, paid, clawbacks, adds_up
FROM ea_earned('ea-prov', 'XMR');
SELECT task_id, earned, status FROM earnings_history('ea-prov') WHERE currency = 'XMR';
-- The next 0.5 is pending, then settled: it repays the 0.2 first, its
-- hold keeps 0.3.
SELECT ea_xmr_task('ea-x3', 'ea-prov', '0.5') > 0 AS earned;
SELECT currency, earned, pending, settled_unpaid, paid, clawbacks, adds_up FROM ea_earned('ea-prov', 'XMR');
SELECT count(*) > 0 AS settled FROM run_settlement('hourly', now() + interval '1 hour');
SELECT currency, earned, pending, settled_unpaid, paid, clawbacks, adds_up FROM ea_earned('ea-prov', 'XMR');
-- Both currencies.
SELECT currency, earned, refunded, rewards, adds_up FROM ea_earned('ea-prov');

-- The payments ea-prov received and ea-req made, newest first.
SELECT direction, task_id, counterparty, amount, refunded, currency, method, status
FROM payment_history('ea-prov');
SELECT direction, task_id, counterparty, amount, refunded, status FROM payment_history('ea-req', 2);
SELECT count(*) FROM payment_history('ea-req', 10000);

-- Bad inputs, each beside the good call above: no row, a clear error.
SELECT * FROM earnings(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM earnings_breakdown('ea-prov', NULL, NULL, 'year'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM earnings_breakdown('ea-prov', NULL, NULL, NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM earnings_breakdown('ea-prov', '2026-02-01', '2026-01-01', 'day'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM earnings_breakdown(NULL, '2026-01-01', '2026-02-01', 'day'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM earnings_history('ea-prov', '2026-02-01', '2026-01-01'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_history('ea-prov', 0); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_history('ea-prov', 10001); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_history('ea-prov', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_history(NULL); \echo :LAST_ERROR_SQLSTATE

-- Roles: a node role reads its own node's earnings only; compay_reader
-- reads every node's.
CREATE ROLE ea_node_prov IN ROLE compay_node;
CREATE ROLE ea_node_other IN ROLE compay_node;
SELECT add_node_role('ea_node_prov', 'ea-prov') AS mapped;
SET ROLE ea_node_prov;
SELECT currency_code, earned FROM earnings('ea-prov');
SELECT count(*) FROM earnings_history('ea-prov');
SELECT count(*) FROM earnings_breakdown('ea-prov', NULL, NULL, 'purpose');
SELECT count(*) FROM payment_history('ea-prov');
SELECT * FROM earnings('ea-req'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_history('ea-req'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE ea_node_other;
SELECT * FROM earnings_history('ea-prov'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE compay_reader;
SELECT currency_code, earned, shortfalls_owed_by FROM earnings('ea-req');
RESET ROLE;
-- Each is read-only, STABLE and SECURITY DEFINER with the pinned search_path.
SELECT p.proname, p.provolatile, p.prosecdef, p.proconfig
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'compay'
  AND p.proname IN ('earnings', 'earnings_breakdown', 'earnings_history', 'payment_history')
ORDER BY 1;
SELECT ea_ledger_ok();
DROP ROLE ea_node_prov, ea_node_other;
DROP FUNCTION ea_ledger_ok(), ea_earned(text, text),
    ea_run_job(text, text, text, compay.credit, numeric, text, text),
    ea_at_time(text, timestamptz), ea_xmr_task(text, text, compay.credit),
    ea_next_day();
