-- Ledger: roles and privileges.  Only the extension's functions write the
-- tables: compay_app may call them but not write a table directly (42501).
SET search_path = public, compay;
-- A fresh ledger, so that ids and totals do not depend on other tests.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
SELECT rolname, rolcanlogin FROM pg_roles
WHERE rolname IN ('compay_admin', 'compay_app', 'compay_reader') ORDER BY 1;
SELECT pg_has_role('compay_admin', 'compay_app', 'member') AS admin_is_app,
       pg_has_role('compay_app', 'compay_reader', 'member') AS app_is_reader;
SELECT open_account('lp_seed', 'CREDIT', '0') IS NOT NULL AS ok;
SELECT deposit('lp_seed', '10') IS NOT NULL AS ok;

SET ROLE compay_app;
SELECT transfer('lp_seed', 'lp_app', '1') IS NOT NULL AS app_can_transfer;
SELECT balance FROM balance('lp_app');
UPDATE accounts SET balance = '1000000' WHERE node_id = 'lp_app'; \echo :LAST_ERROR_SQLSTATE
INSERT INTO journal (account_id, seq, kind, amount, balance_after, reserved_after, created_at, hash)
VALUES (1, 99, 'credit', '1', '1', '0', now(), '\x00'); \echo :LAST_ERROR_SQLSTATE
DELETE FROM holds; \echo :LAST_ERROR_SQLSTATE
INSERT INTO idempotency_keys VALUES ('k', 'x', '\x00'); \echo :LAST_ERROR_SQLSTATE
SELECT nextval('compay.transfers_id_seq'); \echo :LAST_ERROR_SQLSTATE
SELECT set_credit_limit('lp_app', '99'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SET ROLE compay_reader;
SELECT count(*) > 0 AS reader_can_read FROM journal;
SELECT check_name, ok FROM verify_ledger() LIMIT 1;
SELECT transfer('lp_seed', 'lp_app', '1'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SET ROLE compay_admin;
SELECT set_credit_limit('lp_app', '99');
SELECT transfer('lp_seed', 'lp_app', '1') IS NOT NULL AS admin_can_transfer;
UPDATE accounts SET credit_limit = '1'; \echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A role with no compay grant can neither call nor read.
CREATE ROLE lp_stranger NOLOGIN;
SET ROLE lp_stranger;
SELECT transfer('lp_seed', 'lp_app', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM accounts; \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE lp_stranger;

-- Every write function is SECURITY DEFINER with a pinned search_path; its
-- numeric twin (src/amounts.sql, prosecdef f) runs as its caller and calls it.
SELECT p.proname, p.prosecdef, p.proconfig
FROM pg_proc p WHERE p.pronamespace = 'compay'::regnamespace
  AND p.proname IN ('open_account', 'deposit', 'transfer', 'transfer_batch', 'reserve',
                    'capture', 'release', 'expire_holds', 'refund', 'grant_barter',
                    'set_credit_limit')
ORDER BY 1;
