-- Payment reports: compay.payment_report('daily', day), ('monthly', year,
-- month) and ('tax', year), per node and network-wide, with figures
-- computed by hand in the comments; every totals row equals the sum of
-- its rows (recomputed); the tax report values receipts with the rate at
-- or before them from compay.exchange_rates and flags a missing rate; bad
-- inputs beside the good cases (each with its SQLSTATE), and node scoping.
\i sql/include/fresh_extension.sql
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET client_min_messages = warning;
DROP ROLE IF EXISTS pr_node_a;
RESET client_min_messages;
CREATE ROLE pr_node_a LOGIN IN ROLE compay_node;
SELECT add_node_role('pr_node_a', 'gpu-a');

-- Payments written as they would be, at fixed times (UTC).
CREATE FUNCTION pay(task text, from_node text, to_node text, amount compay.credit,
    currency text, method compay.payment_method, status compay.payment_status,
    created timestamptz, completed timestamptz DEFAULT NULL, tx text DEFAULT NULL,
    disputed timestamptz DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 created_at, completed_at, tx_hash, disputed_at)
    VALUES (task, from_node, to_node, amount, currency, method, status, created, completed, tx,
            disputed)
    RETURNING id
$$;
SELECT pay('p1', 'req', 'gpu-a', '2.5', 'CREDIT', 'credit', 'completed',
           '2025-03-10 09:00', '2025-03-10 09:05') AS p1,
       pay('p2', 'req', 'gpu-a', '0.75', 'XMR', 'crypto', 'completed',
           '2025-03-10 10:00', '2025-03-10 10:01', 'aa11') AS p2,
       pay('p3', 'req', 'gpu-b', '1.25', 'XMR', 'crypto', 'failed', '2025-03-10 11:00') AS p3,
       pay('p4', 'gpu-a', 'gpu-b', '0.5', 'XMR', 'crypto', 'disputed',
           '2025-03-10 12:00', '2025-03-10 12:01', NULL, '2025-03-10 15:00') AS p4,
       pay('p5', 'req', 'gpu-a', '3', 'CREDIT', 'barter', 'completed',
           '2025-03-10 13:00', '2025-03-10 13:00') AS p5,
       -- the next day, and the day before: in March, not on the 10th
       pay('p6', 'req', 'gpu-a', '0.1', 'XMR', 'crypto', 'completed',
           '2025-03-11 00:00', '2025-03-11 00:00') AS p6,
       pay('p7', 'req', 'gpu-b', '4', 'USD', 'fiat', 'completed',
           '2025-03-09 23:59:59.999999', '2025-03-09 23:59:59.999999') AS p7;

-- Payouts (made up as sql/payout_caps.sql's wallet replies are): #1
-- confirmed 0.9 (gpu-a 0.6, gpu-b 0.3), network fee 0.0001 paid by $fees;
-- #2 queued 0.2 for gpu-a; #3 relayed 0.4 for gpu-b, fee 0.0002 paid by
-- the payee; all queued on the 10th.
INSERT INTO compay.payout_transactions (id, status, amount, fee, fee_from, tx_hash, tx_metadata,
                                        created_at, confirmed_at, confirmations)
VALUES (1, 'confirmed', '0.9', '0.0001', '$fees', 'bb22', 'ab', '2025-03-10 14:00',
        '2025-03-10 14:30', 10),
       (2, 'queued', '0.2', NULL, NULL, NULL, NULL, '2025-03-10 16:00', NULL, 0),
       (3, 'relayed', '0.4', '0.0002', 'payee', 'cc33', 'ab', '2025-03-10 17:00', NULL, 0);
INSERT INTO compay.payout_items (payout_id, node_id, address, amount, fee, settlement_ids)
VALUES (1, 'gpu-a', 'addr-a', '0.6', '0', '{1}'), (1, 'gpu-b', 'addr-b', '0.3', '0', '{}'),
       (2, 'gpu-a', 'addr-a', '0.2', '0', '{}'), (3, 'gpu-b', 'addr-b', '0.4', '0.0002', '{}');

-- An empty day, a node with nothing.
SELECT count(*) AS empty_day FROM payment_report('daily', date '2025-03-12');
SELECT count(*) AS node_with_nothing FROM payment_report('daily', date '2025-03-10', 'gpu-z');
SELECT count(*) AS empty_month FROM payment_report('monthly', 2025, 4);

-- The 10th, network-wide.  CREDIT: credit completed 1 x 2.5, barter
-- completed 1 x 3; total 2, 5.5.  XMR payments: completed 0.75, disputed
-- 0.5, failed 1.25: total 3, 2.5; the dispute of p4: 1, 0.5; payouts
-- (transactions): confirmed 0.9 fee 0.0001, queued 0.2, relayed 0.4 fee
-- 0.0002: total 3, 1.5, fee 0.0003.  p6 and p7 are on other days.
SELECT * FROM payment_report('daily', date '2025-03-10');

-- The 10th for gpu-a: received 2.5 and 3 CREDIT and 0.75 XMR; paid
-- 0.5 XMR (p4, disputed by its payer's side); its payout items 0.6
-- (confirmed) and 0.2 (queued), no fee share.
SELECT * FROM payment_report('daily', date '2025-03-10', 'gpu-a');
-- gpu-b's share of #3's fee is 0.0002.
SELECT * FROM payment_report('daily', date '2025-03-10', 'gpu-b') WHERE section = 'payout';

-- March: p6 (XMR completed: 0.75 + 0.1 = 0.85, count 2) and p7 (USD fiat 4) too.
SELECT * FROM payment_report('monthly', 2025, 3) WHERE section = 'payment';

-- Refunds: a CREDIT payment of gpu-c in February, refunded today in two
-- refund transfers, 0.5 and 0.25: one payment, 0.75, in today's report.
SELECT admin_deposit('req', '10', 'CREDIT', 'funds') > 0 AS funded;
SELECT transfer('req', 'gpu-c', '2') AS paid_transfer \gset
SELECT pay('p8', 'req', 'gpu-c', '2', 'CREDIT', 'credit', 'refunded',
           '2025-02-01 08:00', '2025-02-01 08:00') AS p8 \gset
UPDATE compay.payments SET transfer_id = :paid_transfer WHERE id = :p8;
SELECT refund(:paid_transfer, '0.5', 'part') > 0 AS refunded,
       refund(:paid_transfer, '0.25', 'more') > 0 AS refunded_again;
SELECT created_at::date AS refund_day FROM compay.transfers WHERE kind = 'refund' LIMIT 1 \gset
SELECT * FROM payment_report('daily', :'refund_day'::date) WHERE section = 'refund';
SELECT * FROM payment_report('daily', :'refund_day'::date, 'gpu-c') WHERE section = 'refund';
-- The payment itself is in February's report (status refunded).
SELECT * FROM payment_report('monthly', 2025, 2);

-- Every totals row is the sum of its section's rows: recomputed for each
-- report above (count of totals rows checked, and none differs).
WITH reports AS (
    SELECT 'daily' AS report, r.* FROM payment_report('daily', date '2025-03-10') r
    UNION ALL SELECT 'daily gpu-a', r.* FROM payment_report('daily', date '2025-03-10', 'gpu-a') r
    UNION ALL SELECT 'daily gpu-b', r.* FROM payment_report('daily', date '2025-03-10', 'gpu-b') r
    UNION ALL SELECT 'monthly', r.* FROM payment_report('monthly', 2025, 3) r
    UNION ALL SELECT 'monthly gpu-a', r.* FROM payment_report('monthly', 2025, 3, 'gpu-a') r
    UNION ALL SELECT 'refunds', r.* FROM payment_report('daily', :'refund_day'::date) r
), sums AS (
    SELECT report, currency, section, sum(count) AS count, compay.sum(amount) AS amount,
           compay.sum(fee) AS fee
    FROM reports WHERE NOT is_total GROUP BY 1, 2, 3
)
SELECT count(*) AS totals_rows,
       count(*) FILTER (WHERE s.count IS DISTINCT FROM t.count OR s.amount IS DISTINCT FROM t.amount
                        OR s.fee IS DISTINCT FROM t.fee) AS differing
FROM reports t FULL JOIN sums s USING (report, currency, section)
WHERE t.is_total OR t.is_total IS NULL;

-- Tax year 2025 in EUR.  XMR/EUR 150 from January, 160.5 from 10:00:30 on
-- the 10th, 170 from the exact instant p6 completed, 200 from July; no
-- CREDIT rate.  gpu-a's receipts: p1 2.5 CREDIT (no rate: NULL, flagged),
-- p2 0.75 XMR at 160.5 = 120.375 (tx aa11), p6 0.1 XMR at 170 = 17, and a
-- verifier reward of 0.05 XMR on 1 June at 170 = 8.5, paid by payout #1
-- (bb22); p5 is barter, p4 was paid by gpu-a.  Totals: CREDIT 2.5 (value
-- NULL, flagged), XMR 0.9 = 145.875; all 145.875, flagged.
INSERT INTO compay.exchange_rates (currency, quote_currency, rate, valid_from)
VALUES ('XMR', 'EUR', 150, '2025-01-01'), ('XMR', 'EUR', 160.5, '2025-03-10 10:00:30'),
       ('XMR', 'EUR', 170, '2025-03-11 00:00'), ('XMR', 'EUR', 200, '2025-07-01'),
       ('XMR', 'USD', 180, '2025-01-01');
INSERT INTO compay.jobs (id, task_id, requester, provider, task_type, currency, status)
VALUES (1, 'job-1', 'req', 'gpu-b', 'render', 'XMR', 'paid');
INSERT INTO compay.settlements (id, period, period_start, period_end, currency, payee, purpose,
                                payment_count, total_amount, status, payout_id)
VALUES (1, 'daily', '2025-06-01', '2025-06-02', 'XMR', 'gpu-a', 'verification', 1, '0.05',
        'completed', 1);
INSERT INTO compay.verifications (job_id, verifier, passed, reward_amount, rewarded_at,
                                  settlement_id)
VALUES (1, 'gpu-a', true, '0.05', '2025-06-01 12:00', 1),
       (1, 'gpu-b', false, NULL, NULL, NULL);
SELECT * FROM payment_report('tax', 2025, 'gpu-a');
-- In USD: XMR at 180 (0.9 x 180 = 162); the CREDIT receipt still flagged.
SELECT receipt, amount, currency, rate, value, rate_missing, is_total
FROM payment_report('tax', 2025, 'gpu-a', 'USD');
-- Network-wide: gpu-b's receipts too (p4 0.5 XMR disputed at 160.5 =
-- 80.25, p7 4 USD with no USD/EUR rate) and gpu-c's p8 (2 CREDIT,
-- completed in February 2025, refunded since: its refunds are receipts of
-- the year they were made in, this year).
SELECT node, receipt, amount, currency, value, rate_missing, is_total
FROM payment_report('tax', 2025);
-- The refunds are negative receipts of the year they were made in.
SELECT receipt, amount, currency, value, rate_missing
FROM payment_report('tax', extract(year FROM :'refund_day'::date)::integer, 'gpu-c')
WHERE receipt = 'refund';
-- The tax totals equal the sums of their receipts.
WITH t AS (SELECT * FROM payment_report('tax', 2025))
SELECT count(*) AS totals_rows,
       count(*) FILTER (WHERE tot.amount IS DISTINCT FROM
                            (SELECT compay.sum(r.amount) FROM t r
                             WHERE NOT r.is_total AND r.node = tot.node
                               AND r.currency = tot.currency)
                        OR tot.value IS DISTINCT FROM
                            (SELECT sum(r.value) FROM t r
                             WHERE NOT r.is_total AND r.node = tot.node
                               AND r.currency IS NOT DISTINCT FROM coalesce(tot.currency, r.currency))
                        OR tot.rate_missing IS DISTINCT FROM
                            (SELECT bool_or(r.rate_missing) FROM t r
                             WHERE NOT r.is_total AND r.node = tot.node
                               AND r.currency IS NOT DISTINCT FROM coalesce(tot.currency, r.currency)))
           AS differing
FROM t tot WHERE tot.is_total;

-- Clawbacks: gpu-d was paid 1 XMR by p9 (June 2025), settled and paid
-- out; a refund of 0.4 today left on chain, so $clawbacks fronts it (a
-- refund of p9, in the refund section) and gpu-d owes 0.4.  Its next
-- settlement earns 0.15, all of which repays the clawback: today 1 fronted
-- 0.4 (status owed), 1 repayment 0.15, 0.25 still owed at the day's end.
SELECT admin_deposit('req', '5', 'XMR', 'funds') > 0 AS funded_xmr;
SELECT transfer('req', 'gpu-d', '1', 'job', NULL, 'XMR') AS xmr_transfer \gset
INSERT INTO compay.settlements (id, period, period_start, period_end, currency, payee, purpose,
                                payment_count, total_amount, status, payout_id)
VALUES (2, 'daily', '2025-06-02', '2025-06-03', 'XMR', 'gpu-d', 'primary', 1, '1',
        'completed', 1);
SELECT pay('p9', 'req', 'gpu-d', '1', 'XMR', 'crypto', 'disputed',
           '2025-06-02 08:00', '2025-06-02 08:00') AS p9 \gset
UPDATE compay.payments SET transfer_id = :xmr_transfer, settlement_id = 2 WHERE id = :p9;
SELECT compay.refund_disputed(p, '0.4') > 0 AS clawed FROM compay.payments p WHERE p.id = :p9;
SELECT node_id, amount, repaid FROM compay.clawbacks;
SELECT compay.repay_clawbacks(s, '0.15') AS left_over FROM compay.settlements s WHERE s.id = 2;
SELECT * FROM payment_report('daily', :'refund_day'::date, 'gpu-d');
-- The next settlement earns 1: 0.25 repays the rest, 0.75 is left to
-- earmark.  Today: the clawback is repaid, 2 repayments 0.4, none owed.
SELECT compay.repay_clawbacks(s, '1') AS left_over FROM compay.settlements s WHERE s.id = 2;
SELECT * FROM payment_report('daily', :'refund_day'::date, 'gpu-d');
-- The clawback's refund is a negative receipt of gpu-d's tax year (at the
-- XMR/EUR rate of 200 from July 2025: -0.4 x 200 = -80); the repayments
-- are not receipts (they pay back what that refund took).
SELECT receipt, amount, currency, rate, value, rate_missing, is_total
FROM payment_report('tax', extract(year FROM :'refund_day'::date)::integer, 'gpu-d');

-- Shortfalls: job-2 of sreq cost 1 CREDIT beyond its escrow; sreq has 0.3,
-- charged at once (a collection payment to gpu-e), 0.7 is owed; a deposit
-- of 0.5 collects 0.5 of it: 0.2 still owed.  For gpu-e today: payments
-- received credit completed 2, 0.8; a shortfall of 1 (status owed),
-- collected 2 x 0.8, 0.2 owed at the day's end.  For sreq the same, paid.
INSERT INTO compay.jobs (id, task_id, requester, provider, task_type, currency, status)
VALUES (2, 'job-2', 'sreq', 'gpu-e', 'render', 'CREDIT', 'paid');
SELECT open_account('sreq', 'CREDIT', '0') > 0 AS opened;
SELECT admin_deposit('sreq', '0.3', 'CREDIT', 'funds') > 0 AS funded;
SELECT compay.record_shortfall(j, '1') > 0 AS recorded FROM compay.jobs j WHERE j.id = 2;
SELECT admin_deposit('sreq', '0.5', 'CREDIT', 'funds') > 0 AS funded;
SELECT amount, collected FROM compay.shortfalls;
SELECT * FROM payment_report('daily', :'refund_day'::date, 'gpu-e');
SELECT section, status, direction, count, amount, is_total
FROM payment_report('daily', :'refund_day'::date, 'sreq') WHERE section LIKE 'shortfall%';
-- Network-wide today: CREDIT payments 2 x 0.8 (the collections), the
-- refunds of p8 (0.75), the shortfall sections as gpu-e's; XMR the refund
-- of p9 (0.4), the clawback (repaid) and its 2 repayments (0.4).
SELECT * FROM payment_report('daily', :'refund_day'::date);
-- The collections are gpu-e's receipts (no CREDIT rate: flagged); what is
-- still owed is not (a receipt when collected).
SELECT receipt, amount, currency, value, rate_missing, is_total
FROM payment_report('tax', extract(year FROM :'refund_day'::date)::integer, 'gpu-e');
-- The ledger the clawback and the shortfall moved still verifies (the
-- payout checks are left out: this test writes its payouts by hand).
SELECT check_name, ok FROM compay.verify_ledger()
WHERE check_name IN ('balances_sum_to_zero', 'balances_match_journal', 'transfers_balanced',
                     'hash_chains_intact', 'shortfalls_match_transfers', 'clawbacks_match_ledger')
ORDER BY check_name;
-- Every totals row of today's reports is the sum of its section's rows.
WITH reports AS (
    SELECT 'network' AS report, r.* FROM payment_report('daily', :'refund_day'::date) r
    UNION ALL SELECT 'gpu-d', r.* FROM payment_report('daily', :'refund_day'::date, 'gpu-d') r
    UNION ALL SELECT 'gpu-e', r.* FROM payment_report('daily', :'refund_day'::date, 'gpu-e') r
    UNION ALL SELECT 'sreq', r.* FROM payment_report('daily', :'refund_day'::date, 'sreq') r
    UNION ALL SELECT 'month', r.* FROM payment_report('monthly',
        extract(year FROM :'refund_day'::date)::integer,
        extract(month FROM :'refund_day'::date)::integer) r
), sums AS (
    SELECT report, currency, section, sum(count) AS count, compay.sum(amount) AS amount,
           compay.sum(fee) AS fee
    FROM reports WHERE NOT is_total GROUP BY 1, 2, 3
)
SELECT count(*) AS totals_rows,
       count(*) FILTER (WHERE s.count IS DISTINCT FROM t.count OR s.amount IS DISTINCT FROM t.amount
                        OR s.fee IS DISTINCT FROM t.fee) AS differing
FROM reports t FULL JOIN sums s USING (report, currency, section)
WHERE t.is_total OR t.is_total IS NULL;

-- Bad inputs, each beside a good call above.
SELECT * FROM payment_report('weekly', date '2025-03-10'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report(NULL, date '2025-03-10'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('tax', date '2025-03-10'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('daily', 2025, 3); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('monthly', 2025); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('daily', NULL::date); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('daily', date 'infinity'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('daily', date '1969-12-31'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('monthly', 2025, 13); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('monthly', 2025, 0); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('monthly', 2025, NULL::integer); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('monthly', 1969, 12); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('tax', 10000); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('tax', NULL::integer); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('tax', 2025, 'gpu-a', ''); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payment_report('tax', 2025, 'gpu-a', NULL); \echo :LAST_ERROR_SQLSTATE
-- An untyped day is ambiguous between the daily and tax calls: type it.
SELECT * FROM payment_report('daily', '2025-03-10'); \echo :LAST_ERROR_SQLSTATE
-- Rates are exact and positive.
INSERT INTO compay.exchange_rates VALUES ('XMR', 'EUR', 0, '2026-01-01'); \echo :LAST_ERROR_SQLSTATE
INSERT INTO compay.exchange_rates VALUES ('XMR', 'XMR', 1, '2026-01-01'); \echo :LAST_ERROR_SQLSTATE

-- Node scoping: gpu-a's role reads gpu-a's reports, not gpu-b's nor the
-- network's; compay_reader reads all; PUBLIC nothing.
SET ROLE pr_node_a;
SELECT count(*) AS own_daily FROM payment_report('daily', date '2025-03-10', 'gpu-a');
SELECT count(*) AS own_tax FROM payment_report('tax', 2025, 'gpu-a');
SELECT count(*) FROM payment_report('daily', date '2025-03-10', 'gpu-b'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM payment_report('monthly', 2025, 3); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM payment_report('tax', 2025); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM compay.exchange_rates; \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE compay_reader;
SELECT count(*) AS reader_network FROM payment_report('monthly', 2025, 3);
SELECT count(*) AS reader_rates FROM compay.exchange_rates;
INSERT INTO compay.exchange_rates VALUES ('XMR', 'EUR', 1, '2026-01-01'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE compay_admin;
INSERT INTO compay.exchange_rates VALUES ('XMR', 'GBP', 130.25, '2025-01-01');
RESET ROLE;
SELECT has_function_privilege('public', 'compay.payment_report(text, integer, text, text)',
                              'EXECUTE') AS public_may_report;

-- Read-only: the reports run in a read-only transaction (as on a hot standby).
BEGIN TRANSACTION READ ONLY;
SELECT count(*) AS read_only_daily FROM payment_report('daily', date '2025-03-10');
SELECT count(*) AS read_only_tax FROM payment_report('tax', 2025);
COMMIT;

RESET ROLE;
DROP ROLE pr_node_a;
