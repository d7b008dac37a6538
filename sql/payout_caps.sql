-- Payouts under the daily cap and on request, without a wallet: a
-- settlement over max_per_day is paid in parts on later days (payout
-- parts, a partial withdrawal of its earmark hold), every payee is paid in
-- full, request_payout's bad inputs beside the good case, its
-- idempotency key, and verify_ledger()'s checks of payouts against
-- settlements and the ledger.  The wallet's replies are made up here;
-- test/t/039_payout_caps.pl pays the same on a real regtest chain.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
\set addr_a '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'
\set addr_b '87uLzB6ynrvKyBeU5FLigJDdfYCMN9YueeFZH3S6XWhqTAD84p1CYZwHTQribxUCAvGParmc6hZPNEzfDMve9k5DESF2ucw'

-- Settled XMR of a payee: payments written as completed a while ago,
-- funded in the ledger, then settled (earmarked for payout).
CREATE OR REPLACE FUNCTION earn(task text, payee text, amount compay.credit,
    ago interval DEFAULT '2 hours') RETURNS bigint
LANGUAGE sql AS $$
    SELECT compay.admin_deposit(payee, amount, 'XMR', 'earnings of ' || task);
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 completed_at)
    VALUES (task, 'requester', payee, amount, 'XMR', 'crypto', 'completed', now() - ago)
    RETURNING id
$$;
\i sql/include/simulated_payout.sql
-- The clock: every payout so far a day older.
CREATE OR REPLACE FUNCTION next_day() RETURNS void LANGUAGE sql AS $$
    UPDATE compay.payout_transactions SET created_at = created_at - interval '1 day 1 minute'
$$;
CREATE OR REPLACE FUNCTION parts() RETURNS TABLE (payout bigint, settlement bigint, node text,
    amount compay.credit, status compay.payout_status)
LANGUAGE sql AS $$
    SELECT pp.payout_id, pp.settlement_id, pp.node_id, pp.amount, p.status
    FROM compay.payout_parts pp JOIN compay.payout_transactions p ON p.id = pp.payout_id
    ORDER BY 1, 2
$$;
CREATE OR REPLACE FUNCTION ledger_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(ok) FROM compay.verify_ledger()
$$;

-- gpu-a earns 0.8 and 0.1 XMR with the default cap of 0.5 a day.
SELECT set_payout_address('gpu-a', :'addr_a');
-- Settled one run each, so that the 0.1 settlement is the first whatever
-- the hour (one run numbers its settlements in no set order).
SELECT earn('t2', 'gpu-a', '0.1') > 0;
SELECT count(*) AS settled FROM run_settlement('hourly');
SELECT earn('t1', 'gpu-a', '0.8', '3 hours') > 0;
SELECT count(*) AS settled FROM run_settlement('hourly');
SELECT id, total_amount, status FROM settlements ORDER BY id;
SELECT settlement_id, payee, payable, started FROM payable_settlements('gpu-a') ORDER BY 1;

-- Day one: 0.5, the 0.1 settlement (settled first) and 0.4 of the 0.8
-- one; the rest waits.
SELECT queue_payouts() AS queued;
SELECT * FROM parts();
SELECT settlement_id, payable, started FROM payable_settlements('gpu-a') ORDER BY 1;
-- The same day again queues nothing.
SELECT queue_payouts() AS queued_again;
SELECT pg_temp.pay_on_chain(1);
-- The 0.8 settlement's hold kept what is not paid yet: it is still
-- processing; the 0.1 one is completed.
SELECT s.id, s.status, h.status AS hold, h.remaining
FROM settlements s JOIN holds h ON h.id = s.earmark_hold_id ORDER BY s.id;
SELECT tx_hash = encode(sha256('tx1'::bytea), 'hex') AS payments_have_tx_hash
FROM payments WHERE task_id = 't1';
SELECT ledger_ok();

-- Day two: the 0.4 left of the 0.8 settlement.
SELECT next_day();
SELECT queue_payouts() AS queued;
SELECT * FROM parts() WHERE payout = 2;
SELECT settlement_ids FROM payout_items WHERE payout_id = 2;
SELECT pg_temp.pay_on_chain(2);
SELECT id, status FROM settlements ORDER BY id;
SELECT h.status, h.remaining FROM settlements s JOIN holds h ON h.id = s.earmark_hold_id ORDER BY s.id;
SELECT balance, reserved FROM balance('gpu-a', 'XMR');
SELECT node_id, payout_id, amount, status FROM payouts ORDER BY payout_id;
SELECT ledger_ok();
-- Nothing is left: day three queues nothing.
SELECT next_day();
SELECT queue_payouts() AS queued;

-- A cap under the minimum: the cap is the minimum (0.2 a day, min 0.3).
SELECT set_payout_address('gpu-m', :'addr_b');
SELECT set_payout_policy('gpu-m', true, '0.3', NULL, '0.2');
SELECT earn('m1', 'gpu-m', '0.45') > 0;
SELECT count(*) AS settled FROM run_settlement('hourly');
SELECT queue_payouts() AS queued;
SELECT payout, amount FROM parts() WHERE node = 'gpu-m';
SELECT pg_temp.pay_on_chain(max(payout)) FROM parts() WHERE node = 'gpu-m';
SELECT next_day();
SELECT queue_payouts() AS queued;
SELECT pg_temp.pay_on_chain(max(payout)) FROM parts() WHERE node = 'gpu-m';
SELECT next_day();
-- The last 0.05 is the rest of a started settlement: paid though under the minimum.
SELECT queue_payouts() AS queued;
SELECT pg_temp.pay_on_chain(max(payout)) FROM parts() WHERE node = 'gpu-m';
SELECT payout, amount, status FROM parts() WHERE node = 'gpu-m';
SELECT status FROM settlements WHERE payee = 'gpu-m';
SELECT ledger_ok();

-- Payouts on request: gpu-r has auto_payout off; the automatic round
-- leaves it alone.
SELECT set_payout_address('gpu-r', :'addr_a');
SELECT set_payout_policy('gpu-r', false, '0.05', NULL, '1');
-- Nothing payable yet (PY019), no address (55000), bad arguments.
SELECT request_payout('gpu-r'); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout('gpu-x'); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout('$fees'); \echo :LAST_ERROR_SQLSTATE
SELECT earn('r1', 'gpu-r', '0.7') > 0, earn('r2', 'gpu-r', '0.6') > 0;
SELECT count(*) AS settled FROM run_settlement('hourly');
SELECT queue_payouts() AS queued_for_auto_off;
SELECT request_payout('gpu-r', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout('gpu-r', '-1'); \echo :LAST_ERROR_SQLSTATE
-- Below the minimum (PY017), more than payable (PY001), over the cap (PY018).
SELECT request_payout('gpu-r', '0.01'); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout('gpu-r', '1.4'); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout('gpu-r', '1.2'); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout('gpu-r', 'abc'); \echo :LAST_ERROR_SQLSTATE
-- Nothing was queued by the errors.
SELECT count(*) AS payouts FROM payout_items WHERE node_id = 'gpu-r';
-- 0.25 with a key; the same key and arguments: the same payout; the same
-- key with another amount: PY005.
SELECT request_payout('gpu-r', '0.25', 'req-1') AS req_1 \gset
SELECT request_payout('gpu-r', '0.25', 'req-1') = :req_1 AS same_payout;
SELECT request_payout('gpu-r', '0.3', 'req-1'); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout('gpu-r', NULL, 'req-1'); \echo :LAST_ERROR_SQLSTATE
SELECT payout, settlement, amount, status FROM parts() WHERE node = 'gpu-r';
-- All that is payable, up to the cap: 0.75 of the 1.05 left (1 a day).
SELECT request_payout('gpu-r', idempotency_key => 'req-2') AS req_2 \gset
SELECT payout = :req_2 AS is_req_2, settlement, amount FROM parts() WHERE node = 'gpu-r' ORDER BY payout, settlement;
-- The cap is reached: PY018; the numeric twin reaches the same checks.
SELECT request_payout('gpu-r'); \echo :LAST_ERROR_SQLSTATE
SELECT request_payout('gpu-r', 0.1); \echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.pay_on_chain(:req_1), pg_temp.pay_on_chain(:req_2);
SELECT ledger_ok();
SELECT next_day();
SELECT request_payout('gpu-r', 0.3) > 0 AS rest_requested;
SELECT pg_temp.pay_on_chain(max(payout)) FROM parts() WHERE node = 'gpu-r';
SELECT id, total_amount, status FROM settlements WHERE payee = 'gpu-r' ORDER BY id;
SELECT request_payout('gpu-r'); \echo :LAST_ERROR_SQLSTATE
SELECT ledger_ok();

-- A node's own role may ask for its payout, not for another node's
-- (42501); its keys are its own: the same key as the application's is
-- another key.
CREATE ROLE pc_node_r IN ROLE compay_node;
CREATE ROLE pc_node_x IN ROLE compay_node;
SELECT add_node_role('pc_node_r', 'gpu-r') AS mapped;
SELECT earn('r3', 'gpu-r', '0.2') > 0;
SELECT count(*) AS settled FROM run_settlement('hourly');
SET ROLE pc_node_x;
SELECT compay.request_payout('gpu-r'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE pc_node_r;
SELECT compay.request_payout('gpu-r', '0.1', 'req-1') <> :req_1 AS own_key;
RESET ROLE;
SELECT payout, settlement, amount, status FROM parts() WHERE node = 'gpu-r' AND status = 'queued';
DROP ROLE pc_node_r, pc_node_x;
SELECT ledger_ok();

-- A payout the wallet refused: its parts go back to be queued again, the
-- settlement's payout_id back to its earlier payout.
SELECT set_payout_address('gpu-f', :'addr_b');
SELECT set_payout_policy('gpu-f', false, '0.01', NULL, '1');
SELECT earn('f1', 'gpu-f', '0.4') > 0;
SELECT count(*) AS settled FROM run_settlement('hourly');
SELECT request_payout('gpu-f', '0.1') AS f1 \gset
SELECT pg_temp.pay_on_chain(:f1);
SELECT request_payout('gpu-f', '0.2') AS f2 \gset
SELECT record_payout_failed(:f2, 'wallet said no');
SELECT payout_id = :f1 AS back_to_first, next_attempt_at > now() AS backoff
FROM settlements WHERE payee = 'gpu-f';
SELECT payable FROM payable_settlements('gpu-f');
-- A built payout voided (its inputs spent elsewhere): the ledger gets it
-- back, and the hold is made again of its rest and the part.
SELECT request_payout('gpu-f', '0.2') AS f3 \gset
SELECT pg_temp.fake_build(:f3);
SELECT h.remaining FROM settlements s JOIN holds h ON h.id = s.earmark_hold_id WHERE s.payee = 'gpu-f';
SELECT record_payout_voided(:f3, 'inputs spent elsewhere');
SELECT h.status, h.remaining FROM settlements s JOIN holds h ON h.id = s.earmark_hold_id WHERE s.payee = 'gpu-f';
SELECT count(*) FILTER (WHERE tx_hash IS NOT NULL) AS tx_hash_back_to_first,
       bool_and(tx_hash = (SELECT tx_hash FROM payout_transactions WHERE id = :f1)) AS first
FROM payments WHERE task_id = 'f1';
SELECT balance, reserved FROM balance('gpu-f', 'XMR');
SELECT ledger_ok();

-- A dispute holds back money after a part was queued: the build fails
-- that payout instead of paying held-back money, and the payable rest
-- shrinks.
SELECT request_payout('gpu-f', '0.25') AS f4 \gset
UPDATE settlements SET held_back = '0.1' WHERE payee = 'gpu-f';
SELECT pg_temp.fake_build(:f4);
SELECT status, last_error FROM payout_transactions WHERE id = :f4;
SELECT payable FROM payable_settlements('gpu-f');
SELECT request_payout('gpu-f', '0.25'); \echo :LAST_ERROR_SQLSTATE
UPDATE settlements SET held_back = '0' WHERE payee = 'gpu-f';
SELECT ledger_ok();

-- verify_ledger() sees a payout whose amount is not its items', a
-- settlement paid beyond its total, a completed settlement not paid out,
-- and a payout whose withdrawals are not its amount.
SELECT check_name, ok, detail FROM verify_ledger() WHERE check_name IN
    ('payouts_match_parts', 'payout_parts_within_settlements',
     'completed_settlements_paid_out', 'payouts_match_ledger') ORDER BY 1;
BEGIN;
UPDATE payout_transactions SET amount = amount + '0.000000000001' WHERE id = :f1;
SELECT check_name, ok, detail FROM verify_ledger()
WHERE check_name IN ('payouts_match_parts', 'payouts_match_ledger') ORDER BY 1;
ROLLBACK;
BEGIN;
ALTER TABLE payout_parts DROP CONSTRAINT payout_parts_pkey;
INSERT INTO payout_parts SELECT * FROM payout_parts WHERE payout_id = 1;
SELECT check_name, ok, detail FROM verify_ledger()
WHERE check_name IN ('payout_parts_within_settlements', 'payouts_match_parts') ORDER BY 1;
ROLLBACK;
BEGIN;
UPDATE settlements SET status = 'completed' WHERE payee = 'gpu-f';
SELECT check_name, ok, detail FROM verify_ledger() WHERE check_name = 'completed_settlements_paid_out';
ROLLBACK;
