-- Ledger: accounts, deposits, transfers, batches, credit limits; each bad
-- input next to the good one, with its SQLSTATE.
SET search_path = public, compay;
-- A fresh ledger, so that ids and totals do not depend on other tests.
\i sql/include/fresh_extension.sql
\set VERBOSITY default

-- open_account returns the existing account on a second call.
SELECT open_account('lt_alice', 'CREDIT', '0') AS alice \gset
SELECT open_account('lt_alice') = :alice AS same_account;
SELECT open_account('lt_bob', 'CREDIT', '0') IS NOT NULL AS opened;
SELECT open_account('lt_carol') IS NOT NULL AS opened_default_limit;
SELECT node_id, currency, balance, reserved, credit_limit, credit_score, flags
FROM accounts WHERE node_id LIKE 'lt\_%' ORDER BY node_id;
-- XMR accounts open with limit 0 whatever the default.
SELECT open_account('lt_alice', 'XMR') <> :alice AS separate_xmr_account;
SELECT credit_limit FROM accounts WHERE node_id = 'lt_alice' AND currency = 'XMR';
-- Bad arguments.
SELECT open_account(''); \echo :LAST_ERROR_SQLSTATE
SELECT open_account(repeat('n', 201)); \echo :LAST_ERROR_SQLSTATE
SELECT open_account('$external'); \echo :LAST_ERROR_SQLSTATE
SELECT open_account('lt_x', 'credit'); \echo :LAST_ERROR_SQLSTATE
SELECT open_account('lt_x', 'C'); \echo :LAST_ERROR_SQLSTATE
SELECT open_account('lt_x', 'CREDIT', '-1'); \echo :LAST_ERROR_SQLSTATE
SELECT open_account(NULL); \echo :LAST_ERROR_SQLSTATE

-- Deposits come from $external, which goes negative.
SELECT deposit('lt_alice', '100', reference => 'top-up') > 0 AS deposited;
SELECT deposit('lt_alice', '0.000000000001') > 0 AS smallest_deposit;
SELECT * FROM balance('lt_alice');
SELECT node_id, balance, flags FROM accounts WHERE node_id = '$external' AND currency = 'CREDIT';
SELECT deposit('lt_alice', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit('lt_alice', '-5'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit('lt_alice', '5', 'lower'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit('$fees', '5'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit(NULL, '5'); \echo :LAST_ERROR_SQLSTATE

-- Transfers.
SELECT transfer('lt_alice', 'lt_bob', '30', 'first') AS t1 \gset
SELECT kind, amount, barter_amount, currency, reference
FROM transfers WHERE id = :t1;
SELECT a.node_id, j.seq, j.kind, j.amount, j.balance_after, c.node_id AS counterparty
FROM journal j JOIN accounts a ON a.id = j.account_id
LEFT JOIN accounts c ON c.id = j.counterparty
WHERE j.transfer_id = :t1 ORDER BY j.amount;
SELECT (SELECT balance FROM balance('lt_alice')) AS alice, (SELECT balance FROM balance('lt_bob')) AS bob;
-- Insufficient funds (PY001): the detail shows what is available; nothing is written.
SELECT count(*) AS transfers_before FROM transfers \gset
SELECT transfer('lt_alice', 'lt_bob', '70.000000000002'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('lt_bob', 'lt_alice', '30.000000000001'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) = :transfers_before AS nothing_written FROM transfers;
SELECT transfer('lt_alice', 'lt_bob', '70.000000000001') > 0 AS exact_balance_ok;
SELECT balance FROM balance('lt_alice');
-- The credit limit lets an account go below zero, down to -limit.
SELECT transfer('lt_carol', 'lt_bob', '1000000') > 0 AS within_limit;
SELECT * FROM balance('lt_carol');
SELECT transfer('lt_carol', 'lt_bob', '0.000000000001'); \echo :LAST_ERROR_SQLSTATE
-- Bad arguments.
SELECT transfer('lt_alice', 'lt_alice', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('lt_alice', 'lt_bob', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('lt_alice', 'lt_bob', '-1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('lt_alice', '$fees', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('lt_alice', 'lt_bob', '1', currency => 'bad'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('lt_alice', 'lt_bob', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('lt_alice', 'lt_bob', '1', currency => NULL); \echo :LAST_ERROR_SQLSTATE
-- Currencies are kept apart: lt_bob's CREDIT cannot pay in XMR, where it
-- has no account (PY002: a payer is never opened on first use).
SELECT transfer('lt_bob', 'lt_alice', '1', currency => 'XMR'); \echo :LAST_ERROR_SQLSTATE
-- Missing receiving accounts are created on first use unless auto-create is off.
SELECT transfer('lt_bob', 'lt_dave', '1') > 0 AS created_dave;
SET compay.auto_create_accounts = off;
SELECT transfer('lt_bob', 'lt_erin', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit('lt_erin', '1'); \echo :LAST_ERROR_SQLSTATE
RESET compay.auto_create_accounts;

-- transfer_batch: all or nothing, ids in input order.
SELECT open_account('lt_f', 'CREDIT', '0') IS NOT NULL AS ok;
SELECT deposit('lt_f', '10') > 0 AS ok;
SELECT count(*) AS n, count(DISTINCT id) AS distinct_ids, min(id) > 0 AS positive
FROM transfer_batch(ARRAY['lt_f', 'lt_f', 'lt_bob'], ARRAY['lt_bob', 'lt_dave', 'lt_f'],
                    ARRAY['1', '2', '3']::credit[], ARRAY['a', 'b', 'c']) AS id;
SELECT balance FROM balance('lt_f');
-- One element short of funds rolls back the whole batch (PY001).
SELECT count(*) AS transfers_before FROM transfers \gset
SELECT * FROM transfer_batch(ARRAY['lt_f', 'lt_f'], ARRAY['lt_bob', 'lt_bob'],
                             ARRAY['5', '5.000000000001']::credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) = :transfers_before AS nothing_written FROM transfers;
SELECT balance FROM balance('lt_f');
-- Transfers within one batch see each other: f can spend what it receives earlier in it.
SELECT count(*) FROM transfer_batch(ARRAY['lt_bob', 'lt_f'], ARRAY['lt_f', 'lt_dave'],
                                    ARRAY['5', '15']::credit[]);
SELECT balance FROM balance('lt_f');
-- An empty batch does nothing.
SELECT count(*) FROM transfer_batch('{}', '{}', '{}');
-- Bad batches.
SELECT * FROM transfer_batch(ARRAY['lt_f'], ARRAY['lt_bob', 'lt_dave'], ARRAY['1']::credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM transfer_batch(ARRAY['lt_f'], ARRAY['lt_bob'], ARRAY['1']::credit[], ARRAY['a', 'b']); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM transfer_batch(ARRAY['lt_f'], NULL, ARRAY['1']::credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM transfer_batch(ARRAY['lt_f', NULL], ARRAY['lt_bob', 'lt_bob'], ARRAY['1', '1']::credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM transfer_batch(ARRAY['lt_f'], ARRAY['lt_f'], ARRAY['1']::credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM transfer_batch(ARRAY['lt_f'], ARRAY['lt_bob'], ARRAY['0']::credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM transfer_batch(ARRAY[['lt_f']], ARRAY[['lt_bob']], ARRAY[['1']]::credit[]); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM transfer_batch(array_fill('lt_f'::text, ARRAY[10001]),
    array_fill('lt_bob'::text, ARRAY[10001]), array_fill('1'::credit, ARRAY[10001])); \echo :LAST_ERROR_SQLSTATE

-- Credit limits (admin).
SELECT set_credit_limit('lt_bob', '5');
SELECT credit_limit FROM balance('lt_bob');
SELECT set_credit_limit('lt_carol', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT set_credit_limit('lt_nobody', '5'); \echo :LAST_ERROR_SQLSTATE
SELECT set_credit_limit('lt_bob', '-1'); \echo :LAST_ERROR_SQLSTATE

-- The journal and transfers are append-only (PY009).
UPDATE journal SET amount = '1' WHERE transfer_id = :t1; \echo :LAST_ERROR_SQLSTATE
DELETE FROM transfers WHERE id = :t1; \echo :LAST_ERROR_SQLSTATE
TRUNCATE journal; \echo :LAST_ERROR_SQLSTATE
TRUNCATE transfers; \echo :LAST_ERROR_SQLSTATE

-- A chain goes on from its committed head when a rolled-back savepoint
-- wrote newer entries that this session read: one entry is added, and
-- the chains check out below.
SELECT deposit('lt_alice', '3') > 0 AS funded;
SELECT max(j.seq) AS alice_head FROM journal j JOIN accounts a ON a.id = j.account_id
WHERE a.node_id = 'lt_alice' \gset
BEGIN;
SAVEPOINT s;
SELECT transfer('lt_alice', 'lt_bob', '1') > 0 AS in_savepoint;
SELECT transfer('lt_alice', 'lt_bob', '1') > 0 AS after_own_entry;
ROLLBACK TO SAVEPOINT s;
SELECT transfer('lt_alice', 'lt_bob', '1') > 0 AS after_rollback;
COMMIT;
SELECT max(j.seq) - :alice_head AS alice_new_entries FROM journal j
JOIN accounts a ON a.id = j.account_id WHERE a.node_id = 'lt_alice';

-- A session plans a table's CHECK constraints once and keeps them
-- (src/check_constraints.c) until the table's definition or a function
-- changes: one added after this session's transfers applies to its next
-- transfer (23514, nothing written); one that replaces it (as many
-- constraints as before) applies instead; once dropped, neither does; a
-- replacement rolled back to a savepoint no longer applies after it, nor a
-- constraint added in a transaction that rolls back; and a function a
-- constraint calls applies as it is now, not as it was planned (a SQL
-- function is inlined when the constraint is planned).
SELECT deposit('lt_alice', '10') > 0 AS funded;
SELECT open_account('lt_dave', 'CREDIT', '0') IS NOT NULL AS opened;
SELECT count(*) AS transfers_before FROM transfers \gset
SELECT transfer('lt_alice', 'lt_bob', '1') > 0 AS before_constraint;
ALTER TABLE accounts ADD CONSTRAINT lt_bob_capped
    CHECK (node_id <> 'lt_bob' OR balance < '1'::compay.credit) NOT VALID;
\set VERBOSITY terse
SELECT transfer('lt_alice', 'lt_bob', '1'); \echo :LAST_ERROR_SQLSTATE
ALTER TABLE accounts DROP CONSTRAINT lt_bob_capped, ADD CONSTRAINT lt_dave_capped
    CHECK (node_id <> 'lt_dave' OR balance < '1'::compay.credit) NOT VALID;
SELECT transfer('lt_alice', 'lt_bob', '1') > 0 AS bob_no_longer_capped;
SELECT transfer('lt_alice', 'lt_dave', '1'); \echo :LAST_ERROR_SQLSTATE
ALTER TABLE accounts DROP CONSTRAINT lt_dave_capped;
SELECT transfer('lt_alice', 'lt_dave', '1') > 0 AS after_drop;
BEGIN;
ALTER TABLE accounts ADD CONSTRAINT lt_dave_capped
    CHECK (node_id <> 'lt_dave' OR balance < '1'::compay.credit) NOT VALID;
SELECT transfer('lt_alice', 'lt_bob', '1') > 0 AS in_transaction;
SAVEPOINT s;
ALTER TABLE accounts DROP CONSTRAINT lt_dave_capped, ADD CONSTRAINT lt_bob_capped
    CHECK (node_id <> 'lt_bob' OR balance < '1'::compay.credit) NOT VALID;
SELECT transfer('lt_alice', 'lt_bob', '1'); \echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT transfer('lt_alice', 'lt_bob', '1') > 0 AS after_rollback_to_savepoint;
SELECT transfer('lt_alice', 'lt_dave', '1'); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT transfer('lt_alice', 'lt_dave', '1') > 0 AS after_rollback;
CREATE FUNCTION public.lt_small(b compay.credit) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$ SELECT b < '1'::compay.credit $$;
ALTER TABLE accounts ADD CONSTRAINT lt_dave_small
    CHECK (node_id <> 'lt_dave' OR public.lt_small(balance)) NOT VALID;
SELECT transfer('lt_alice', 'lt_dave', '1'); \echo :LAST_ERROR_SQLSTATE
CREATE OR REPLACE FUNCTION public.lt_small(b compay.credit) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$ SELECT b < '1000'::compay.credit $$;
SELECT transfer('lt_alice', 'lt_dave', '1') > 0 AS after_replace;
\set VERBOSITY default
ALTER TABLE accounts DROP CONSTRAINT lt_dave_small;
DROP FUNCTION public.lt_small(compay.credit);
SELECT count(*) - :transfers_before AS transfers_written FROM transfers;

SELECT check_name, ok FROM verify_ledger();
