-- Disputes hold money, and refunds work at every stage of an XMR payment:
-- disputed before settlement (kept out of it), settled and not paid out
-- (held back from payouts; a refund comes from the earmark hold), and
-- paid out (the refund is fronted by $clawbacks and the payee's next
-- earnings repay it first).  Bad inputs beside good ones; verify_ledger()
-- after each stage.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
\set payee_address '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'

-- An XMR task of amount paid by crypto from 'req' to payee; the payment id.
CREATE OR REPLACE FUNCTION dispute_paid(task text, payee text, amount compay.credit) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_model bigint;
BEGIN
    INSERT INTO compay.pricing_models (name, currency, base_price)
    VALUES ('m-' || task, 'XMR', amount) RETURNING id INTO v_model;
    INSERT INTO compay.task_type_models VALUES ('type-' || task, v_model);
    PERFORM compay.submit_task(task, 'req', payee, 'type-' || task);
    PERFORM compay.complete_job(task, now() - interval '1 minute', now());
    RETURN (compay.process_task_payment(task, 'crypto')).id;
END $$;
CREATE OR REPLACE FUNCTION dispute_settle() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '1 hour')
$$;
CREATE OR REPLACE FUNCTION dispute_xmr(node text) RETURNS TABLE (balance compay.credit, reserved compay.credit)
LANGUAGE sql AS $$
    SELECT balance, reserved FROM compay.accounts WHERE node_id = node AND currency = 'XMR'
$$;
CREATE OR REPLACE FUNCTION dispute_ledger_ok() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(check_name || ': ' || detail, '; ') FILTER (WHERE NOT ok), 'ok')
    FROM compay.verify_ledger()
$$;
-- The settlement of a payment, with what its earmark hold keeps and what a
-- payout may take of it (the hold's remaining less held_back).
CREATE OR REPLACE FUNCTION dispute_settled(payment bigint) RETURNS TABLE (status compay.settlement_status,
    total compay.credit, held_back compay.credit, hold_remaining compay.credit, payable compay.credit)
LANGUAGE sql AS $$
    SELECT s.status, s.total_amount, s.held_back, h.remaining,
           greatest(coalesce(h.remaining, '0') - s.held_back, '0')
    FROM compay.payments p JOIN compay.settlements s ON s.id = compay.payment_settlement(p)
    LEFT JOIN compay.holds h ON h.id = s.earmark_hold_id AND h.status = 'pending'
    WHERE p.id = payment
$$;
-- A payout built with a reply as the wallet would give it (the XMR leaves
-- the ledger), and one built, relayed and confirmed.
CREATE OR REPLACE FUNCTION dispute_build(payout bigint) RETURNS void LANGUAGE sql AS $$
    SELECT compay.record_payout_built(payout, jsonb_build_object(
        'tx_hash', encode(sha256(('tx' || payout)::bytea), 'hex'),
        'tx_key', repeat('b', 64), 'tx_metadata', 'ab',
        'spent_key_images', jsonb_build_object('key_images',
            jsonb_build_array(encode(sha256(('ki' || payout)::bytea), 'hex'))),
        'amount', (SELECT compay.atomic(amount) FROM compay.payout_transactions WHERE id = payout),
        'fee', 1000))
$$;
CREATE OR REPLACE FUNCTION dispute_pay_on_chain(payout bigint) RETURNS void LANGUAGE sql AS $$
    SELECT dispute_build(payout);
    SELECT compay.record_payout_relayed(payout);
    SELECT compay.record_payout_confirmations(payout, 10);
$$;
SELECT admin_deposit('req', '12', 'XMR', 'test funds') > 0 AS funded;
SELECT set_payout_address('prov', :'payee_address');
SELECT set_payout_policy('prov', true, '0', '1 microsecond', '100');

-- Stage 1: disputed before settlement.  It is kept out of settlement.
SELECT dispute_paid('a1', 'prov', '1') AS a1 \gset
SELECT dispute_paid('a2', 'prov', '2') AS a2 \gset
SELECT status FROM dispute_payment(:a1, 'wrong output');
SELECT dispute_settle() AS settled;
SELECT id = :a1 AS is_a1, status, payment_settlement(payments) IS NOT NULL AS settled FROM payments
WHERE id IN (:a1, :a2) ORDER BY id;
SELECT * FROM dispute_settled(:a2);
-- Bad inputs: no partial write.
SELECT resolve_dispute(:a1, '-1'); \echo :LAST_ERROR_SQLSTATE
SELECT resolve_dispute(:a1, '1.5'); \echo :LAST_ERROR_SQLSTATE
SELECT resolve_dispute(:a1, NULL); \echo :LAST_ERROR_SQLSTATE
SELECT resolve_dispute(99999, '0'); \echo :LAST_ERROR_SQLSTATE
SELECT resolve_dispute(:a2, '0'); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_payment(:a1, 'again'); \echo :LAST_ERROR_SQLSTATE
SELECT status FROM payments WHERE id = :a1;
-- A partial refund from the payee's balance; the rest is still the
-- payee's and is settled (its hold keeps 0.6, the total says 1).
SELECT status FROM resolve_dispute(:a1, '0.4');
SELECT * FROM dispute_xmr('prov');
SELECT dispute_settle() AS settled;
SELECT * FROM dispute_settled(:a1);
SELECT dispute_ledger_ok();

-- Stage 2: settled, not paid out.  The dispute holds it back.
SELECT dispute_paid('b1', 'prov', '3') AS b1 \gset
SELECT dispute_paid('b2', 'prov', '0.5') AS b2 \gset
SELECT dispute_settle() AS settled;
SELECT status FROM dispute_payment(:b1, 'never delivered');
SELECT * FROM dispute_settled(:b1);
SELECT dispute_ledger_ok();
-- Nothing of it is queued while disputed: its settlement's part is the
-- undisputed rest (b2's 0.5); the other settlements pay what their holds
-- keep (0.6 of a1's 1).
SELECT queue_payouts() AS payouts;
SELECT s.total_amount, s.id IN (SELECT payment_settlement(payments) FROM payments WHERE id = :b1) AS has_b1,
       pp.amount AS part
FROM payout_parts pp JOIN settlements s ON s.id = pp.settlement_id
ORDER BY s.id;
-- Resolved with a partial refund: 1 of 3.5 comes back from the earmark
-- hold, the rest is no longer held back.
SELECT status FROM resolve_dispute(:b1, '1');
SELECT * FROM dispute_settled(:b1);
SELECT * FROM dispute_xmr('prov');
SELECT * FROM dispute_xmr('req');
SELECT kind, amount, reference FROM transfers WHERE refund_of = (SELECT transfer_id FROM payments WHERE id = :b1);
SELECT dispute_ledger_ok();
-- b2 disputed and resolved without refund: held back, then released.
SELECT status FROM dispute_payment(:b2, 'slow');
SELECT held_back, payable FROM dispute_settled(:b2);
SELECT status FROM resolve_dispute(:b2, '0');
SELECT held_back, payable FROM dispute_settled(:b2);
SELECT dispute_ledger_ok();

-- Stage 3: paid out (payouts built: the XMR left the ledger).  The rest
-- of the settlement of b1 and b2 is queued, and both payouts are built.
SELECT queue_payouts() AS payouts;
SELECT id, amount FROM payout_transactions WHERE status = 'queued' ORDER BY id;
SELECT dispute_build(id) FROM payout_transactions WHERE status = 'queued' ORDER BY id;
SELECT id, status FROM payout_transactions ORDER BY id;
SELECT status FROM dispute_payment(:b2, 'broken after all');
SELECT * FROM dispute_settled(:b2);
-- The refund of 0.5 left on chain: $clawbacks fronts it, prov owes it.
SELECT status FROM resolve_dispute(:b2, '0.5');
SELECT node_id, currency, amount, repaid, repaid_at IS NULL AS open FROM clawbacks;
SELECT clawbacks_owed('prov') AS owed, clawbacks_owed('prov', 'CREDIT') AS owed_credit,
       clawbacks_owed('nobody') AS owed_nobody;
SELECT node_id, balance FROM accounts WHERE node_id IN ('$clawbacks', 'prov') AND currency = 'XMR'
ORDER BY node_id;
SELECT dispute_ledger_ok();
-- The next earnings repay it first: 0.2 repays 0.2, nothing is earmarked.
SELECT dispute_paid('c1', 'prov', '0.2') AS c1 \gset
SELECT dispute_settle() AS settled;
SELECT * FROM dispute_settled(:c1);
SELECT clawbacks_owed('prov') AS owed;
-- 0.7 repays the other 0.3; 0.4 is earmarked for payout.
SELECT dispute_paid('c2', 'prov', '0.7') AS c2 \gset
SELECT dispute_settle() AS settled;
SELECT * FROM dispute_settled(:c2);
SELECT clawbacks_owed('prov') AS owed;
SELECT amount, repaid, repaid_at IS NOT NULL AS repaid_in_full FROM clawbacks;
-- In the payee's history: the repayments to $clawbacks.
SELECT kind, amount, counterparty, reference FROM history('prov', 'XMR', 20)
WHERE reference LIKE 'clawback:%' ORDER BY seq;
SELECT dispute_ledger_ok();

-- verify_ledger() sees a clawback whose books do not add up, and a
-- held_back that is not its disputed payments.
BEGIN;
UPDATE clawbacks SET repaid = '0.4', repaid_at = NULL;
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;
BEGIN;
UPDATE settlements SET held_back = '0.1' WHERE id = (SELECT payment_settlement(payments) FROM payments WHERE id = :c2);
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- Refunded in full from its hold: the settlement has nothing left to pay
-- out and is completed, its hold voided.
SELECT dispute_paid('e1', 'prov', '0.25') AS e1 \gset
SELECT dispute_settle() AS settled;
SELECT status FROM dispute_payment(:e1, 'fake');
SELECT status FROM resolve_dispute(:e1, '0.25');
SELECT * FROM dispute_settled(:e1);
SELECT h.status, h.remaining FROM holds h JOIN settlements s ON s.earmark_hold_id = h.id
JOIN payments p ON payment_settlement(p) = s.id WHERE p.id = :e1;
SELECT dispute_ledger_ok();

-- Settled, a part paid out (confirmed on chain), the rest disputed and
-- refunded: the 0.5 its hold keeps comes back from the hold, the 0.5 paid
-- is clawed back, and the settlement is completed (nothing is left to
-- pay).  prov2 is paid on request only.
SELECT set_payout_address('prov2', :'payee_address');
SELECT set_payout_policy('prov2', false, '0', '1 microsecond', '100');
SELECT dispute_paid('g1', 'prov2', '1') AS g1 \gset
SELECT dispute_paid('g2', 'prov2', '1') AS g2 \gset
SELECT dispute_settle() AS settled;
SELECT dispute_pay_on_chain(request_payout('prov2', '1.5'));
SELECT * FROM dispute_settled(:g2);
SELECT status FROM dispute_payment(:g2, 'half of it was wrong');
SELECT * FROM dispute_settled(:g2);
SELECT request_payout('prov2'); \echo :LAST_ERROR_SQLSTATE
SELECT status FROM resolve_dispute(:g2, '1');
SELECT * FROM dispute_settled(:g2);
SELECT a.node_id AS refunded_by, t.amount FROM transfers t JOIN accounts a ON a.id = t.from_account
WHERE t.refund_of = (SELECT transfer_id FROM payments WHERE id = :g2) ORDER BY t.id;
SELECT amount, repaid FROM clawbacks WHERE payment_id = :g2;
SELECT * FROM dispute_xmr('prov2');
SELECT dispute_ledger_ok();
-- A part queued before the dispute is paid as queued.  h1's settlement
-- first repays g2's clawback (0.5), its hold keeps the other 0.5, of which
-- 0.4 is queued: the refund takes the 0.1 no queued part carries from the
-- hold and claws back 0.9.  The settlement is completed once that part is
-- confirmed.
SELECT dispute_paid('h1', 'prov2', '1') AS h1 \gset
SELECT dispute_settle() AS settled;
SELECT request_payout('prov2', '0.4') AS h_payout \gset
SELECT status FROM dispute_payment(:h1, 'wrong');
SELECT status FROM resolve_dispute(:h1, '1');
SELECT * FROM dispute_settled(:h1);
SELECT amount, repaid FROM clawbacks WHERE payment_id = :h1;
SELECT dispute_pay_on_chain(:h_payout);
SELECT * FROM dispute_settled(:h1);
SELECT clawbacks_owed('prov2') AS owed;
SELECT dispute_ledger_ok();
-- Two payments of a settlement paid in part both disputed: the refund
-- that empties the hold completes the settlement although the other
-- dispute still holds back (nothing is left to pay; its refund is a
-- clawback).
SELECT set_payout_address('prov4', :'payee_address');
SELECT set_payout_policy('prov4', false, '0', '1 microsecond', '100');
SELECT dispute_paid('m1', 'prov4', '1') AS m1 \gset
SELECT dispute_paid('m2', 'prov4', '1') AS m2 \gset
SELECT dispute_settle() AS settled;
SELECT dispute_pay_on_chain(request_payout('prov4', '1'));
SELECT status FROM dispute_payment(:m1, 'wrong');
SELECT status FROM dispute_payment(:m2, 'wrong too');
SELECT status FROM resolve_dispute(:m1, '1');
SELECT * FROM dispute_settled(:m2);
SELECT status FROM resolve_dispute(:m2, '0.5');
SELECT * FROM dispute_settled(:m2);
SELECT amount FROM clawbacks WHERE payment_id IN (:m1, :m2);
SELECT dispute_ledger_ok();

-- A dispute after a part was queued: the build fails that payout (nothing
-- was sent) rather than pay the held-back money; the undisputed rest is
-- payable again, and, resolved without refund, all of it.
SELECT set_payout_address('prov3', :'payee_address');
SELECT set_payout_policy('prov3', false, '0', '1 microsecond', '100');
SELECT dispute_paid('k1', 'prov3', '0.3') AS k1 \gset
SELECT dispute_paid('k2', 'prov3', '0.2') AS k2 \gset
SELECT dispute_settle() AS settled;
SELECT request_payout('prov3') AS k_payout \gset
SELECT status FROM dispute_payment(:k1, 'wrong');
SELECT dispute_build(:k_payout);
SELECT status, last_error FROM payout_transactions WHERE id = :k_payout;
SELECT held_back, hold_remaining, payable FROM dispute_settled(:k1);
SELECT status FROM resolve_dispute(:k1, '0');
SELECT dispute_pay_on_chain(request_payout('prov3'));
SELECT * FROM dispute_settled(:k1);
SELECT dispute_ledger_ok();
-- Built, disputed and refunded (clawed back), then the payout is voided
-- (it never reached the chain): what comes back repays the clawback first,
-- and only the undisputed 0.4 is earmarked again, then paid.
SELECT set_payout_address('prov5', :'payee_address');
SELECT set_payout_policy('prov5', false, '0', '1 microsecond', '100');
SELECT dispute_paid('n1', 'prov5', '0.6') AS n1 \gset
SELECT dispute_paid('n2', 'prov5', '0.4') AS n2 \gset
SELECT dispute_settle() AS settled;
SELECT request_payout('prov5') AS n_payout \gset
SELECT dispute_build(:n_payout);
SELECT status FROM dispute_payment(:n1, 'wrong');
SELECT status FROM resolve_dispute(:n1, '0.6');
SELECT clawbacks_owed('prov5') AS owed;
SELECT record_payout_voided(:n_payout, 'inputs spent elsewhere');
SELECT clawbacks_owed('prov5') AS owed;
SELECT * FROM dispute_settled(:n1);
SELECT * FROM dispute_xmr('prov5');
SELECT kind, amount, counterparty, reference FROM history('prov5', 'XMR', 20)
WHERE reference LIKE 'clawback:%' ORDER BY seq;
SELECT dispute_pay_on_chain(request_payout('prov5'));
SELECT * FROM dispute_settled(:n1);
SELECT dispute_ledger_ok();

-- The same with all of it refunded: the voided payout's return repays all
-- it earned, and the settlement is completed with nothing to pay.
SELECT dispute_paid('o1', 'prov5', '0.3') AS o1 \gset
SELECT dispute_settle() AS settled;
SELECT request_payout('prov5') AS o_payout \gset
SELECT dispute_build(:o_payout);
SELECT status FROM dispute_payment(:o1, 'wrong');
SELECT status FROM resolve_dispute(:o1, '0.3');
SELECT record_payout_voided(:o_payout, 'inputs spent elsewhere');
SELECT clawbacks_owed('prov5') AS owed;
SELECT * FROM dispute_settled(:o1);
SELECT dispute_ledger_ok();

-- verify_ledger() counts only the refunds a settlement's payee made
-- until it completed: one said completed before its refund from the hold
-- is not paid out in full.
BEGIN;
UPDATE settlements SET completed_at = completed_at - interval '1 hour'
WHERE id = (SELECT payment_settlement(payments) FROM payments WHERE id = :g2);
SELECT check_name, detail FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- A CREDIT payment is refunded from the payee's balance as before.
SELECT deposit('req', '100') > 0 AS funded;
INSERT INTO compay.pricing_models (name, currency, base_price) VALUES ('m-d1', 'CREDIT', '5');
INSERT INTO compay.task_type_models SELECT 'type-d1', id FROM pricing_models WHERE name = 'm-d1';
SELECT submit_task('d1', 'req', 'prov', 'type-d1') > 0 AS submitted;
SELECT complete_job('d1', now() - interval '1 minute', now()) IS NOT NULL AS completed;
SELECT id AS d1 FROM process_task_payment('d1') \gset
SELECT status FROM dispute_payment(:d1, 'bad');
SELECT status FROM resolve_dispute(:d1, '5');
SELECT balance FROM accounts WHERE node_id = 'prov' AND currency = 'CREDIT';
SELECT count(*) AS clawbacks FROM clawbacks;

-- The internal ledger calls check what they are given (called here as a
-- superuser; no role is granted them): nothing is written on an error.
SELECT transfer_id AS f1 FROM payments WHERE id = :c2 \gset
SELECT earmark_hold_id AS h1 FROM settlements s JOIN payments p ON payment_settlement(p) = s.id WHERE p.id = :c2 \gset
SELECT count(*) AS transfers_before FROM transfers \gset
SELECT dispute_refund(NULL, '1', NULL, 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_refund(:f1, '0', NULL, 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_refund(99999, '0.1', NULL, 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_refund(:f1, '0.8', NULL, 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_refund(:f1, '0.5', :h1, 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_refund(:f1, '0.1', 99999, 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_refund(:f1, '0.1', reserve('req', '0.2', 'not the payee''s', NULL, NULL, 'XMR'), 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT dispute_refund(:f1, '0.1', (SELECT min(id) FROM holds WHERE status = 'posted'), 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT clawback_repay('prov', '100', 'XMR', 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT clawback_repay('$fees', '1', 'XMR', 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT clawback_repay('prov', '-1', 'XMR', 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT clawback_repay(NULL, '1', 'XMR', 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) = :transfers_before AS nothing_written FROM transfers;
SELECT dispute_ledger_ok();

-- The internal functions are no role's.
SELECT has_function_privilege('compay_app', 'compay.dispute_refund(bigint, compay.credit, bigint, text)', 'EXECUTE') AS app_refund,
       has_function_privilege('compay_app', 'compay.clawback_repay(text, compay.credit, text, text)', 'EXECUTE') AS app_repay,
       has_function_privilege('compay_node', 'compay.clawbacks_owed(text, text)', 'EXECUTE') AS node_owed;
SELECT dispute_ledger_ok();
