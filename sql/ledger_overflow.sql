-- Ledger at the edge of the credit range (+/-(2^127 - 1) atomic units):
-- balances, limits and barter positions that are legal but whose running
-- totals leave the range.  verify_ledger() runs all its checks and
-- balance() answers; neither fails with 22003.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
-- M: the largest credit; 0.9 M, as a credit.
\set max '''170141183460469231731687303.715884105727''::credit'
\set big '''153127065114422308558518573.344295695154''::credit'

-- A currency of its own: two accounts that may go 0.9 M negative.
SELECT open_account('ovf_lender_1', 'OVF', :max) IS NOT NULL AS ok;
SELECT open_account('ovf_lender_2', 'OVF', :max) IS NOT NULL AS ok;
-- Balances +0.9 M (twice), -0.9 M (twice: a lender and $external).
SELECT deposit('ovf_a', :big, 'OVF') IS NOT NULL AS ok;
SELECT transfer('ovf_lender_1', 'ovf_b', :big, NULL, NULL, 'OVF') IS NOT NULL AS ok;
-- ovf_a's journal: +0.9 M, -0.9 M, +0.9 M.
SELECT transfer('ovf_a', 'ovf_c', :big, NULL, NULL, 'OVF') IS NOT NULL AS ok;
SELECT transfer('ovf_c', 'ovf_a', :big, NULL, NULL, 'OVF') IS NOT NULL AS ok;
-- An account with 0.9 M and a credit limit of M: available is 1.9 M,
-- past the range.
SELECT transfer('ovf_lender_2', 'ovf_rich', :big, NULL, NULL, 'OVF') IS NOT NULL AS ok;
SELECT set_credit_limit('ovf_rich', :max, 'OVF');
-- Holds of 0.45 M each on one account.
SELECT reserve('ovf_a', :big / 2, NULL, NULL, NULL, 'OVF') IS NOT NULL AS ok;
SELECT reserve('ovf_a', :big / 2, NULL, NULL, NULL, 'OVF') IS NOT NULL AS ok;
-- A node holding 0.9 M of barter credit from each of two counterparties:
-- its barter entries add up to 1.8 M, beyond any credit.  The counterparties
-- grant them, so their accounts are opened first (a granter is never opened
-- on first use).
SELECT open_account('ovf_peer_1') IS NOT NULL AND open_account('ovf_peer_2') IS NOT NULL AS opened;
SELECT grant_barter('ovf_holder', 'ovf_peer_1', :big) IS NOT NULL AS ok;
SELECT grant_barter('ovf_holder', 'ovf_peer_2', :big) IS NOT NULL AS ok;

-- The running totals a check meets do leave the range: in this order
-- the balances reach 1.8 M, and ovf_a's journal 1.8 M, before coming back.
SELECT sum_atomic(balance ORDER BY balance DESC) AS total,
       sum(balance ORDER BY balance DESC) AS widened_sum
FROM accounts WHERE currency = 'OVF';
SELECT sum_atomic(amount) AS barter_held, atomic(:big) * 2 AS expected
FROM journal j JOIN accounts a ON a.id = j.account_id
WHERE a.node_id = 'ovf_holder' AND j.kind = 'barter';
SELECT sum(amount ORDER BY amount DESC) AS ovf_a_balance_from_journal
FROM journal j JOIN accounts a ON a.id = j.account_id
WHERE a.node_id = 'ovf_a' AND a.currency = 'OVF' AND j.kind IN ('debit', 'credit', 'refund');

-- All nine checks run, and all are ok.
SELECT check_name, ok, detail FROM verify_ledger();

-- balance(): available is capped at the largest credit when balance -
-- reserved + limit would pass it; the others are exact.
SELECT node_id, (balance(node_id, 'OVF')).*
FROM (VALUES ('ovf_rich'), ('ovf_lender_1'), ('ovf_a'), ('$external')) n (node_id);
SELECT available = :max AS capped FROM balance('ovf_rich', 'OVF');
-- ovf_rich can still spend all it has and all its limit allows.
SELECT transfer('ovf_rich', 'ovf_lender_2', :big, NULL, NULL, 'OVF') IS NOT NULL AS ok;
SELECT balance, available FROM balance('ovf_rich', 'OVF');

-- A broken ledger at the edge: balances raised to M behind the ledger's
-- back, so that the currency's total is out of the credit range, and an
-- account past its limit by more than M (balance -M, reserved M, limit M;
-- balance - reserved alone is out of range).  The checks report them;
-- none fails.
BEGIN;
ALTER TABLE accounts DROP CONSTRAINT accounts_within_limit;
UPDATE accounts SET balance = :max
WHERE node_id IN ('ovf_a', 'ovf_b', 'ovf_c') AND currency = 'OVF';
UPDATE accounts SET balance = -:max, reserved = :max
WHERE node_id = 'ovf_lender_1' AND currency = 'OVF';
SELECT check_name, ok, detail FROM verify_ledger();
ROLLBACK;

SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
