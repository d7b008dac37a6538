-- System accounts striped over rows (src/ledger_stripes.c): the rows that
-- make up an account, its balance as their sum (compay.system_balances,
-- compay.balance()), the setting's bounds, and verify_ledger()'s check 18
-- on malformed stripe rows.  Concurrent flows taking stripe rows are in
-- test/isolation/specs/ledger_system_stripes.spec.
\i sql/include/fresh_extension.sql
SET search_path = public, compay;

-- The rows of an account: a system account's 64 names, an ordinary node's own.
SELECT cardinality(system_account_rows('$external')) AS rows,
       (system_account_rows('$external'))[1] AS first,
       (system_account_rows('$external'))[64] AS last,
       system_account_rows('alice') AS ordinary;

-- Without concurrent flows, every flow stays on stripe 0: one row.
SELECT deposit('sa_a', '10') > 0 AS deposited, deposit('sa_b', '5') > 0 AS deposited;
SELECT node_id, balance FROM accounts WHERE node_id LIKE '$%' ORDER BY node_id;

-- A stripe row as a concurrent flow opens it (a transaction holding
-- $external's row makes the next deposit take one; here it is written by
-- hand, empty): it counts in $external's rows and balance.
BEGIN;
INSERT INTO accounts (node_id, currency, flags) VALUES ('$external#3', 'CREDIT', 1);
SELECT node_id, balance, stripes, entries FROM system_balances ORDER BY node_id;
SELECT balance, reserved, available FROM balance('$external');
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;

-- Check 18: a stripe row that is not a system account, or past '#63'.
SAVEPOINT s;
UPDATE accounts SET flags = 0 WHERE node_id = '$external#3';
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK TO s;
INSERT INTO accounts (node_id, currency, flags) VALUES ('$external#64', 'CREDIT', 1);
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- The setting: 1 to 64 rows a system account.
SET compay.system_account_stripes = 0;
SET compay.system_account_stripes = 65;
SET compay.system_account_stripes = 1;
SELECT deposit('sa_a', '1') > 0 AS deposited;
RESET compay.system_account_stripes;
SHOW compay.system_account_stripes;

SELECT node_id, balance, stripes FROM system_balances ORDER BY node_id;
SELECT bool_and(ok) AS ledger_ok FROM verify_ledger();
