-- Withdrawals to operational addresses, without a wallet: what a node
-- holds in XMR that is not earnings awaiting settlement (here returned
-- stake and a deposit) is paid out by compay.request_withdrawal to its
-- operational address(es) through the payout machinery (queued, built,
-- relayed, confirmed; failed and voided payouts queued again), while its
-- earnings still go to its primary address.  Bad inputs beside the good
-- cases, with nothing written.  The wallet's replies are made up
-- (sql/include/simulated_payout.sql); test/t/064_operational_payouts.pl
-- pays the same on a real regtest chain.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
\set addr_a '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'
\set addr_e '86upMFd4PkPgMGjMXfhtgL1ZNJrZEyVEC7KQLEdX8aGR7rrpFWBygDgSxFkXLH3juHfbb8MJ1HPFNfRBAzhx67LF7kpkxqE'
\set addr_f '8BdmzP8sGagQp4wE6dCnrTgkxaKZh2brpQtvT7dA9sifWGyFq97dxEz8Q6xo8MpeaxAGtqQRPqYwV8jFTfh5AjHiTY3AhzV'
\i sql/include/simulated_payout.sql

CREATE TEMP TABLE letters (letter text, address text);
INSERT INTO letters VALUES ('A', :'addr_a'), ('E', :'addr_e'), ('F', :'addr_f');
CREATE OR REPLACE FUNCTION wd_letter(address text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT l.letter FROM letters l WHERE l.address = $1), $1)
$$;
-- What each payout pays, to which address, of which kind of settlement.
CREATE OR REPLACE FUNCTION wd_paid() RETURNS TABLE (payout bigint, status compay.payout_status,
    node text, address text, amount compay.credit, purposes text) LANGUAGE sql AS $$
    SELECT i.payout_id, p.status, i.node_id, wd_letter(i.address), i.amount,
           (SELECT string_agg(s.purpose, ',' ORDER BY s.id)
            FROM compay.settlements s WHERE s.id = ANY (i.settlement_ids))
    FROM compay.payout_items i JOIN compay.payout_transactions p ON p.id = i.payout_id
    ORDER BY 1, 3, 4
$$;
-- What a bad call may not write.
CREATE OR REPLACE FUNCTION wd_rows() RETURNS text LANGUAGE sql AS $$
    SELECT format('settlements %s payouts %s holds %s',
                  (SELECT count(*) FROM compay.settlements), (SELECT count(*) FROM compay.payout_transactions),
                  (SELECT count(*) FROM compay.holds))
$$;
CREATE OR REPLACE FUNCTION wd_ledger_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(ok) FROM compay.verify_ledger()
$$;
CREATE TEMP SEQUENCE model_ids START 1000;
CREATE OR REPLACE FUNCTION wd_earn(task text, payee text, amount numeric) RETURNS text
LANGUAGE sql AS $$
    SELECT compay.admin_deposit('wd-req', amount, 'XMR', 'funds for ' || task);
    INSERT INTO compay.pricing_models (id, name, currency, base_price)
    VALUES (nextval('model_ids'), 'model of ' || task, 'XMR', amount);
    INSERT INTO compay.task_type_models (task_type, model_id)
    VALUES ('wd-render', currval('model_ids')::integer)
    ON CONFLICT (task_type) DO UPDATE SET model_id = EXCLUDED.model_id;
    SELECT compay.submit_task(task, 'wd-req', payee, 'wd-render');
    SELECT compay.complete_job(task, now() - interval '1 minute', now());
    SELECT (compay.process_task_payment(task, 'crypto')).status::text;
$$;

-- 1. A node deposits 5 XMR, stakes 2 and unstakes 1 (1 stays held), and
-- earns 1 XMR not yet settled: it may withdraw 6 - 1 - 1 = 4.
SELECT admin_deposit('wn', 5, 'XMR', 'deposit') > 0 AS deposited;
SELECT stake('wn', 2, 'XMR') AS staked, unstake('wn', 1, 'XMR') AS stake_left;
SELECT wd_earn('wd-t1', 'wn', 1) AS earned;
SELECT balance, reserved, withdrawable('wn') FROM balance('wn', 'XMR');
SELECT set_payout_address('wn', :'addr_a') AS primary_kind;
SELECT set_payout_policy('wn', false, NULL, NULL, 3);

-- 2. Bad inputs, each with nothing written.
SELECT wd_rows() AS before;
SELECT request_withdrawal(NULL, 1); \echo :LAST_ERROR_SQLSTATE
SELECT request_withdrawal('wn', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT request_withdrawal('wn', 0); \echo :LAST_ERROR_SQLSTATE
SELECT request_withdrawal('wn', -1); \echo :LAST_ERROR_SQLSTATE
SELECT request_withdrawal(' wn', 1); \echo :LAST_ERROR_SQLSTATE
-- No operational address (its primary one takes earnings only): PY034.
SELECT request_withdrawal('wn', 1); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_address('wn', :'addr_e', 'operational') AS operational_kind;
-- More than it can withdraw (its unsettled earnings and its stake are
-- not withdrawable): PY035; over its daily cap of 3: PY018.
SELECT request_withdrawal('wn', 4.000000000001); \echo :LAST_ERROR_SQLSTATE
SELECT request_withdrawal('wn', 3.5); \echo :LAST_ERROR_SQLSTATE
-- A node with no XMR account: PY035.
SELECT set_payout_address('wn-empty', :'addr_f', 'operational') AS kind;
SELECT request_withdrawal('wn-empty', 1); \echo :LAST_ERROR_SQLSTATE
SELECT wd_rows() AS after;

-- 3. The good case: 2.5 is earmarked by a hold and queued as a payout of
-- its own to the operational address E; the same idempotency key returns
-- the same payout, another request under it is PY005.
SELECT request_withdrawal('wn', 2.5, 'wd-key-1') AS p1 \gset
SELECT request_withdrawal('wn', 2.5, 'wd-key-1') = :p1 AS same_payout;
SELECT request_withdrawal('wn', 1, 'wd-key-1'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM wd_paid();
SELECT purpose, payment_count, total_amount, s.status, h.amount AS held, h.reference = 'settlement:' || s.id AS ref
FROM settlements s JOIN holds h ON h.id = s.earmark_hold_id WHERE s.payee = 'wn';
SELECT balance, reserved, withdrawable('wn') FROM balance('wn', 'XMR');
SELECT request_withdrawal('wn', 1.6); \echo :LAST_ERROR_SQLSTATE
-- Earnings payouts leave a withdrawal out: nothing is payable yet.
SELECT count(*) AS payable FROM payable_settlements('wn');
SELECT request_payout('wn'); \echo :LAST_ERROR_SQLSTATE

-- 4. Earnings still go to the primary address A.
SELECT set_payout_policy('wn', false, NULL, NULL, 10);
SELECT count(*) AS settled FROM run_settlement('hourly', now() + interval '1 hour');
SELECT request_payout('wn') AS p2 \gset
SELECT * FROM wd_paid();
SELECT pg_temp.pay_on_chain(:p1), pg_temp.pay_on_chain(:p2);
SELECT * FROM wd_paid();
SELECT purpose, status FROM settlements WHERE payee = 'wn' ORDER BY id;
SELECT balance, reserved, withdrawable('wn') FROM balance('wn', 'XMR');
-- A withdrawal is no earnings: earnings() says 1 paid, not 3.5.
SELECT earned, settled_unpaid, in_flight, paid FROM earnings('wn', 'XMR');
SELECT wd_ledger_ok() AS ledger_ok;

-- 5. A payout the wallet refused is queued again after its backoff,
-- whatever the node's auto_payout (off here); a voided one too, with its
-- amount earmarked again; then it is paid.  The numeric twin.
SELECT request_withdrawal('wn', 0.5::numeric) AS p3 \gset
SELECT record_payout_failed(:p3, 'the wallet refused');
SELECT queue_payouts() AS queued_in_backoff;
UPDATE settlements SET next_attempt_at = now() - interval '1 second' WHERE purpose = 'operational' AND status = 'processing';
SELECT queue_payouts() AS queued;
SELECT max(id) AS p4 FROM payout_transactions \gset
SELECT pg_temp.fake_build(:p4);
SELECT balance, reserved FROM balance('wn', 'XMR');
SELECT record_payout_voided(:p4, 'an input is spent elsewhere');
SELECT balance, reserved FROM balance('wn', 'XMR');
UPDATE settlements SET next_attempt_at = now() - interval '1 second' WHERE purpose = 'operational' AND status = 'processing';
SELECT queue_payouts() AS queued;
SELECT max(id) AS p5 FROM payout_transactions \gset
SELECT pg_temp.pay_on_chain(:p5);
SELECT * FROM wd_paid() WHERE payout >= :p3;
SELECT purpose, total_amount, status FROM settlements WHERE payee = 'wn' ORDER BY id;
SELECT balance, reserved, withdrawable('wn') FROM balance('wn', 'XMR');
SELECT wd_ledger_ok() AS ledger_ok;

-- 6. With rotation on, successive withdrawals take the operational
-- addresses in turn (F never used, then E).
SELECT add_payout_address('wn', :'addr_f', 'operational') AS kind;
SELECT set_payout_rotation('wn', true);
SELECT request_withdrawal('wn', 0.1) AS p6 \gset
SELECT request_withdrawal('wn', 0.1) AS p7 \gset
SELECT payout, address, amount FROM wd_paid() WHERE payout IN (:p6, :p7);
SELECT pg_temp.pay_on_chain(:p6), pg_temp.pay_on_chain(:p7);

-- 7. A node's role withdraws its own money only (42501 for another's).
SET client_min_messages = warning;
DROP ROLE IF EXISTS wd_node;
RESET client_min_messages;
CREATE ROLE wd_node IN ROLE compay_node;
SELECT add_node_role('wd_node', 'wn') AS mapped;
SELECT wd_rows() AS before;
SET ROLE wd_node;
SELECT compay.request_withdrawal('wn-empty', 0.1); \echo :LAST_ERROR_SQLSTATE
SELECT compay.withdrawable('wn-empty'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT wd_rows() AS after;
SET ROLE wd_node;
SELECT compay.withdrawable('wn') AS own;
SELECT compay.request_withdrawal('wn', 0.1) > 0 AS own_withdrawal;
RESET ROLE;
DELETE FROM node_roles WHERE role_name = 'wd_node';
DROP ROLE wd_node;

-- 8. verify_ledger checks each withdrawal against its hold (check 18,
-- settlements_match_payments leaves withdrawals out): a withdrawal whose
-- total is not what was earmarked is reported.
BEGIN;
UPDATE settlements SET total_amount = total_amount + '0.5'
WHERE id = (SELECT min(id) FROM settlements WHERE purpose = 'operational');
SELECT check_name, ok FROM verify_ledger()
WHERE check_name IN ('settlements_match_payments', 'withdrawals_match_holds');
ROLLBACK;
SELECT check_name, ok, detail FROM verify_ledger();
