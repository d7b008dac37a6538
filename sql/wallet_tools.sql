-- Wallet tools and compay.diagnose() without a wallet (src/wallet_tools.sql):
-- bad inputs are refused before any wallet call; the checks that read no
-- wallet (payouts, settlements, ledger, settings) give ok, warn or fail;
-- test/t/043_wallet_tools.pl runs the rest against a real regtest.
SET search_path = public, compay;
\i sql/include/fresh_extension.sql
\set VERBOSITY default

-- Bad inputs: 22023, nothing asked of the wallet.
SELECT * FROM verify_tx('zz'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM verify_tx(repeat('a', 63)); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM verify_tx(repeat('g', 64)); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM verify_tx(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM wallet_transfers(0); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM wallet_transfers(10001); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM wallet_transfers(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT daemon_rpc('/mining_status'); \echo :LAST_ERROR_SQLSTATE
SELECT daemon_rpc('/get_height', '[1]'); \echo :LAST_ERROR_SQLSTATE
SELECT daemon_rpc(NULL); \echo :LAST_ERROR_SQLSTATE

-- Who may call them: compay_admin, not compay_reader nor compay_app.
SELECT r.rolname, f.fn, has_function_privilege(r.rolname, f.fn, 'EXECUTE') AS execute
FROM (VALUES ('compay_admin'), ('compay_reader'), ('compay_app')) r(rolname),
     (VALUES ('compay.wallet_balance()'), ('compay.wallet_transfers(integer)'),
             ('compay.verify_tx(text)'), ('compay.diagnose()'),
             ('compay.daemon_rpc(text,jsonb)')) f(fn)
ORDER BY 1, 2;
SELECT has_table_privilege('compay_admin', 'compay.pending_payouts', 'SELECT') AS admin,
       has_table_privilege('compay_reader', 'compay.pending_payouts', 'SELECT') AS reader;
-- compay_admin runs them (as their owner); compay_reader cannot.
SET ROLE compay_admin;
SELECT count(*) AS checks FROM compay.diagnose();
SELECT count(*) AS pending FROM compay.pending_payouts;
SET ROLE compay_reader;
SELECT count(*) FROM compay.diagnose(); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The checks that read no wallet, all ok on a fresh ledger.
SELECT name, status, advice, regexp_replace(detail, '^\d+ checks ok$', 'N checks ok') AS detail
FROM diagnose() WHERE name IN ('payouts', 'settlements', 'ledger', 'settings');
-- Every check has a row, in a fixed order, with a one-sentence advice.
SELECT string_agg(name, ', ' ORDER BY ord) AS checks,
       bool_and(status IN ('ok', 'warn', 'fail')) AS statuses,
       bool_and(advice ~ '^[A-Z].*\.$') AS advice_sentences
FROM diagnose() WITH ORDINALITY AS d(name, status, advice, detail, ord);

-- Settings that contradict each other: a minimum payout below the
-- typical fee (0.0001 XMR without payouts), a daily maximum below the
-- minimum, a node whose own minimum is above its own maximum, relay off.
SELECT typical_payout_fee();
SET compay.payout_min = '0.0001';
SET compay.payout_max_per_day = '0.00005';
SELECT set_payout_policy('wt-node', NULL, '2', NULL, '1');
SELECT c FROM settings_contradictions() c;
SELECT name, status, advice FROM diagnose() WHERE name = 'settings';
RESET compay.payout_min;
RESET compay.payout_max_per_day;
SELECT set_payout_policy('wt-node', NULL, NULL, NULL, NULL);
SELECT count(*) AS contradictions FROM settings_contradictions();

-- Payouts: what the balance must cover and the oldest stuck one (the
-- runners' health uses the same payout_health()).
BEGIN;
INSERT INTO payout_transactions (amount) VALUES ('2'), ('3');
SELECT queued, stuck_payout IS NULL AS none_stuck FROM payout_health(NULL);
SELECT queued, stuck_payout = (SELECT max(id) FROM payout_transactions) AS second_stuck, stuck_reason
FROM payout_health('4');
SELECT payees, status, amount FROM pending_payouts ORDER BY payout_id;
SELECT name, status, advice FROM diagnose() WHERE name = 'payouts';
UPDATE payout_transactions SET last_error = 'transfer: wallet error: not enough money', attempts = 3
WHERE id = (SELECT min(id) FROM payout_transactions);
SELECT name, status, advice, detail ~ '^payout \d+: transfer: wallet error: not enough money$' AS detail
FROM diagnose() WHERE name = 'payouts';
ROLLBACK;

-- Settlements: a failed one retrying is warn, one that gave up is fail.
BEGIN;
INSERT INTO settlements (period, period_start, period_end, currency, payee, payment_count,
                         total_amount, status, attempts, last_error)
VALUES ('hourly', '2026-01-01 00:00+00', '2026-01-01 01:00+00', 'CREDIT', 'wt-node', 1, '1',
        'failed', 1, 'test');
SELECT name, status, detail FROM diagnose() WHERE name = 'settlements';
UPDATE settlements SET attempts = 1000 WHERE payee = 'wt-node';
SELECT name, status, detail FROM diagnose() WHERE name = 'settlements';
ROLLBACK;

-- The ledger: verify_ledger()'s summary; a tampered balance is fail.
SELECT deposit('wt-a', '5') IS NOT NULL AS ok;
BEGIN;
UPDATE accounts SET balance = balance + '1' WHERE node_id = 'wt-a';
SELECT name, status,
       detail ~ '^2 of \d+ checks fail: balances_match_journal: .*; balances_sum_to_zero: CREDIT sums to 1$' AS detail
FROM diagnose() WHERE name = 'ledger';
ROLLBACK;
SELECT name, status FROM diagnose() WHERE name = 'ledger';
