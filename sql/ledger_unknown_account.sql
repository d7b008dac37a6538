-- No money from a typo: the paying side of a debit, hold or transfer must
-- be an open account (PY002 otherwise, raised before anything is written);
-- only the receiving side is opened on first use.  Each entry point that
-- takes money refuses an unknown payer and leaves no row behind, beside the
-- good cases: receivers auto-created, a payer opened with open_account()
-- or funded by a deposit.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Every row a refused call could leave: accounts, journal, transfers,
-- holds, stakes, jobs.
CREATE OR REPLACE FUNCTION ua_rows() RETURNS text LANGUAGE sql AS $$
    SELECT format('accounts %s, journal %s, transfers %s, holds %s, stakes %s, jobs %s',
                  (SELECT count(*) FROM compay.accounts), (SELECT count(*) FROM compay.journal),
                  (SELECT count(*) FROM compay.transfers), (SELECT count(*) FROM compay.holds),
                  (SELECT count(*) FROM compay.stakes), (SELECT count(*) FROM compay.jobs))
$$;
CREATE OR REPLACE FUNCTION ua_accounts() RETURNS TABLE (node_id text, currency text,
    balance compay.credit, reserved compay.credit, credit_limit compay.credit)
LANGUAGE sql AS $$
    SELECT node_id, currency, balance, reserved, credit_limit FROM compay.accounts
    WHERE node_id NOT LIKE '$%' ORDER BY node_id, currency
$$;

SELECT deposit('app-1', '100') > 0 AS app_funded;
SELECT ua_rows() AS before \gset

-- The typo of the issue: a payer that never deposited cannot pay, on
-- credit or otherwise; neither it nor the payee is opened.
SELECT transfer('ghost-never-deposited', 'app-1', '999999'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('ghost-never-deposited', 'ua-new-payee', '1'); \echo :LAST_ERROR_SQLSTATE
-- A batch with one unknown payer among known ones: all of it refused.
SELECT * FROM transfer_batch(ARRAY['app-1', 'ghost-2'], ARRAY['ua-new-payee', 'app-1'],
                             ARRAY['1', '1']::credit[]); \echo :LAST_ERROR_SQLSTATE
-- A payer must have its account before the batch, even one that an
-- earlier transfer of the same batch would open.
SELECT * FROM transfer_batch(ARRAY['app-1', 'ua-new-payee'], ARRAY['ua-new-payee', 'app-1'],
                             ARRAY['2', '1']::credit[]); \echo :LAST_ERROR_SQLSTATE
-- A hold, a stake, an escrowed job.
SELECT reserve('ghost-3', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT stake('ghost-4', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('ua-job-1', 'ghost-5', 'render', '10'); \echo :LAST_ERROR_SQLSTATE
-- Barter credits are granted by the counterparty: it is the paying side.
SELECT grant_barter('app-1', 'ghost-6', '1'); \echo :LAST_ERROR_SQLSTATE
-- An account in one currency does not open one in another.
SELECT transfer('app-1', 'ua-new-payee', '1', currency => 'XMR'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('app-1', '1', currency => 'XMR'); \echo :LAST_ERROR_SQLSTATE
SELECT ua_rows() = :'before' AS nothing_written;
SELECT * FROM ua_accounts();

-- process_task_payment with a requester that has no account: the payment
-- is recorded failed with PY002 (a later call may try again), and no
-- account is opened for the requester or the provider.
SELECT submit_task('ua-task-1', 'ghost-req', 'ua-prov', 'render') > 0 AS submitted;
SELECT complete_job('ua-task-1', '2026-11-23 10:00+00', '2026-11-23 10:02+00');
SELECT status, metadata->>'sqlstate' AS sqlstate, metadata->>'error' AS error
FROM process_task_payment('ua-task-1');
SELECT count(*) AS accounts_of_the_task FROM accounts WHERE node_id IN ('ghost-req', 'ua-prov');

-- The good cases.  The receiving side is opened on first use, with the
-- default credit limit, as open_account() would.
SELECT transfer('app-1', 'ua-payee-1', '10') > 0 AS paid_new_payee;
SELECT deposit('ua-depositor', '5') > 0 AS deposited_new_node;
SELECT reserve('app-1', '20') AS hold \gset
SELECT capture(:hold, 'ua-payee-2', '5') > 0 AS captured_to_new_node;
SELECT grant_barter('ua-barter-holder', 'app-1', '3') > 0 AS granted_to_new_holder;
SELECT * FROM ua_accounts();
-- What a payer does instead: open its account (it then pays on its credit
-- limit) or receive a deposit first.
SELECT open_account('ghost-never-deposited') > 0 AS opened;
SELECT transfer('ghost-never-deposited', 'app-1', '999999') > 0 AS paid_on_credit;
SELECT transfer('ghost-never-deposited', 'app-1', '2'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('ua-depositor', '5') > 0 AS funded_by_deposit_holds;
SELECT stake('ua-payee-1', '1') AS staked;
-- The task's requester opens its account; the retry pays.
SELECT deposit('ghost-req', '500') > 0 AS requester_funded;
SELECT status, amount > '0' AS paid FROM process_task_payment('ua-task-1');
SELECT node_id, balance > '0' AS received FROM accounts WHERE node_id = 'ua-prov';

-- With compay.auto_create_accounts off, receivers are not opened either.
SET compay.auto_create_accounts = off;
SELECT transfer('app-1', 'ua-payee-3', '1'); \echo :LAST_ERROR_SQLSTATE
RESET compay.auto_create_accounts;

SELECT check_name, ok FROM verify_ledger() ORDER BY check_name;
