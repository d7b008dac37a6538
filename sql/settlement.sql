-- Settlement: completed payments gathered per closed period, currency and
-- payee; period boundaries of every kind, reruns that change nothing,
-- failures retried with backoff and by the operator, the XMR earmark, and
-- verify_ledger()'s check of settlement totals.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

-- Completed payments, written directly with the times the test needs: the
-- money already moved when each payment was made, and settlement only
-- gathers them.
CREATE OR REPLACE FUNCTION paid(task text, payee text, amount compay.credit, at timestamptz,
    currency text DEFAULT 'CREDIT', st compay.payment_status DEFAULT 'completed')
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 completed_at)
    VALUES (task, 'requester', payee, amount, currency,
            CASE WHEN currency = 'XMR' THEN 'crypto' ELSE 'credit' END::compay.payment_method,
            st, at)
    RETURNING id
$$;
CREATE OR REPLACE FUNCTION show_settlements() RETURNS TABLE (id bigint, period compay.settlement_period,
    period_start timestamptz, period_end timestamptz, currency text, payee text, n bigint,
    total compay.credit, status compay.settlement_status, attempts integer)
LANGUAGE sql AS $$
    SELECT id, period, period_start, period_end, currency, payee, payment_count, total_amount,
           status, attempts FROM compay.settlements ORDER BY id
$$;

-- Period starts, in UTC: hour, day, ISO week (Monday), month.
SELECT p, period_start(p, '2026-11-25 10:59:59.999999+00') AS start,
       period_end(p, period_start(p, '2026-11-25 10:59:59.999999+00')) AS "end"
FROM unnest(enum_range(NULL::settlement_period)) p;

-- The hour boundary: 10:59:59.999999 belongs to 10:00-11:00, 11:00:00 to
-- the next hour.
SELECT paid('b1', 'prov-a', '1', '2026-11-25 10:59:59.999999+00') > 0 AS ok;
SELECT paid('b2', 'prov-a', '2', '2026-11-25 11:00:00+00') > 0 AS ok;
-- At 11:00 exactly only the 10:00 hour is closed.
SELECT count(*) AS processed FROM run_settlement('hourly', '2026-11-25 11:00:00+00');
SELECT * FROM show_settlements();
SELECT task_id, payment_settlement(payments) AS settlement_id FROM payments ORDER BY task_id;
-- Running again changes nothing.
SELECT count(*) AS processed FROM run_settlement('hourly', '2026-11-25 11:00:00+00');
SELECT count(*) AS processed FROM run_settlement('hourly', '2026-11-25 11:59:59.999999+00');
-- At 12:00 the 11:00 hour closes.
SELECT count(*) AS processed FROM run_settlement('hourly', '2026-11-25 12:00:00+00');
SELECT * FROM show_settlements();

-- Currencies and payees are kept apart; several payments of one payee in
-- one period make one settlement.  Payments not completed wait.
SELECT paid('c1', 'prov-a', '10', '2026-11-25 13:05+00') > 0,
       paid('c2', 'prov-a', '20', '2026-11-25 13:10+00') > 0,
       paid('c3', 'prov-b', '5', '2026-11-25 13:15+00') > 0,
       paid('c4', 'prov-a', '0.5', '2026-11-25 13:20+00', 'XMR') > 0,
       paid('c5', 'prov-a', '7', '2026-11-25 13:25+00', 'CREDIT', 'disputed') > 0,
       paid('c6', 'prov-a', '8', '2026-11-25 13:30+00', 'CREDIT', 'failed') > 0;
-- The XMR settlement earmarks the payee's XMR for payout: prov-a has it.
SELECT admin_deposit('prov-a', '0.5', 'XMR', 'test funds') > 0 AS funded;
SELECT count(*) AS processed FROM run_settlement('hourly', '2026-11-25 14:00+00');
SELECT * FROM show_settlements() WHERE period_start = '2026-11-25 13:00+00';
SELECT s.currency, h.amount, h.status, h.reference = 'settlement:' || s.id AS ref
FROM settlements s JOIN holds h ON h.id = s.earmark_hold_id;
SELECT balance, reserved FROM balance('prov-a', 'XMR');
SELECT task_id, payment_settlement(payments) IS NOT NULL AS settled FROM payments WHERE task_id LIKE 'c%' ORDER BY 1;
-- The disputed payment is settled once its dispute is resolved.
UPDATE payments SET status = 'completed' WHERE task_id = 'c5';
SELECT count(*) AS processed FROM run_settlement('hourly', '2026-11-25 14:00+00');
SELECT id, payee, n, total, status FROM show_settlements() WHERE id = (SELECT max(id) FROM settlements);

-- Every period kind gathers by its own boundaries.
SELECT paid('d1', 'prov-d', '1', '2026-11-30 23:59:59+00') > 0,   -- Monday 30 Nov
       paid('d2', 'prov-d', '2', '2026-12-01 00:00:00+00') > 0,   -- Tuesday 1 Dec
       paid('d3', 'prov-d', '4', '2026-12-07 00:00:00+00') > 0;   -- next Monday
SELECT count(*) AS processed FROM run_settlement('daily', '2026-12-01 00:00+00');
SELECT count(*) AS processed FROM run_settlement('weekly', '2026-12-07 00:00+00');
SELECT count(*) AS processed FROM run_settlement('monthly', '2027-01-01 00:00+00');
SELECT id, period, period_start, period_end, payee, n, total FROM show_settlements()
WHERE payee = 'prov-d';

-- A failure is recorded and retried with backoff, up to
-- compay.settlement_max_attempts; then only the operator retries it.
-- prov-f has no XMR account to earmark from (PY002).
SELECT paid('f1', 'prov-f', '0.25', '2026-11-26 09:30+00', 'XMR') > 0 AS ok;
SET compay.settlement_max_attempts = 2;
SELECT count(*) AS processed FROM run_settlement('hourly', '2026-11-26 10:00+00');
SELECT id AS failed_id, status, attempts, last_error, next_attempt_at
FROM settlements WHERE payee = 'prov-f' \gset
SELECT :'status' AS status, :attempts AS attempts, :'last_error' AS last_error,
       :'next_attempt_at' AS next_attempt_at;
-- Not due yet at 10:00:30; due at 10:01.
SELECT count(*) AS retried FROM process_due_settlements('2026-11-26 10:00:30+00');
SELECT count(*) AS retried FROM process_due_settlements('2026-11-26 10:01:00+00');
SELECT status, attempts, next_attempt_at FROM settlements WHERE id = :failed_id;
SELECT id, payee, attempts, gave_up FROM failed_settlements;
-- Given up: no more automatic retries, however late.
SELECT count(*) AS retried FROM process_due_settlements('2026-12-31 00:00+00');
-- The operator funds the payee and retries.
SELECT admin_deposit('prov-f', '0.25', 'XMR', 'test funds') > 0 AS funded;
SELECT retry_settlement(:failed_id);
SELECT status, attempts, last_error FROM settlements WHERE id = :failed_id;
SELECT count(*) AS failed FROM failed_settlements;
SELECT retry_settlement(:failed_id); \echo :LAST_ERROR_SQLSTATE
SELECT retry_settlement(999999); \echo :LAST_ERROR_SQLSTATE
RESET compay.settlement_max_attempts;
SET compay.settlement_max_attempts = 0; \echo :LAST_ERROR_SQLSTATE

-- Bad arguments.
SELECT run_settlement(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT run_settlement('hourly', 'infinity'); \echo :LAST_ERROR_SQLSTATE
SELECT run_settlement('fortnightly'); \echo :LAST_ERROR_SQLSTATE
-- Repeatable read: its snapshot could predate what the writers it waits
-- for commit (55000); nothing is written.
SELECT count(*) AS runs_before FROM settlement_runs \gset
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT run_settlement('hourly', '2026-12-01 00:00+00'); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) = :runs_before AS no_run_recorded FROM settlement_runs;

-- Every settlement's payments, found by its run's window (or stamped),
-- are those it counts, and each payment is in the settlement that
-- payment_settlement() names.
SELECT bool_and(n = payment_count) AS counts_match, sum(n) AS payments_found
FROM (SELECT s.id, s.payment_count, (SELECT count(*) FROM settlement_payments(s)) AS n
      FROM settlements s WHERE s.purpose = 'primary') c;
SELECT count(*) AS payments_elsewhere
FROM settlements s, settlement_payments(s) p WHERE payment_settlement(p) IS DISTINCT FROM s.id;

-- verify_ledger() checks that every settlement's total is the sum of its
-- payments, and finds a tampered one.
SELECT check_name, ok FROM verify_ledger() WHERE check_name = 'settlements_match_payments';
UPDATE settlements SET total_amount = total_amount + '0.000000000001'
WHERE id = (SELECT min(id) FROM settlements);
SELECT check_name, ok, detail FROM verify_ledger() WHERE check_name = 'settlements_match_payments';
UPDATE settlements SET total_amount = total_amount - '0.000000000001'
WHERE id = (SELECT min(id) FROM settlements);
SELECT bool_and(ok) AS ledger_ok FROM verify_ledger();

-- The worker's status is a view; wake_worker() only acts at commit.
SELECT state IS NOT NULL AS has_state FROM worker_status;
BEGIN;
SELECT wake_worker();
COMMIT;
