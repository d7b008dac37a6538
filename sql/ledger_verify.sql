-- Ledger: verify_ledger() finds tampering.  Superusers can bypass the
-- append-only triggers; the hash chain and the cross-checks still notice.
SET search_path = public, compay;
-- A fresh ledger, so that ids and totals do not depend on other tests.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
SELECT open_account('lv_a', 'CREDIT', '0') IS NOT NULL AS ok;
SELECT deposit('lv_a', '50') IS NOT NULL AS ok;
SELECT transfer('lv_a', 'lv_b', '20') AS t1 \gset
SELECT reserve('lv_a', '5') IS NOT NULL AS ok;
SELECT check_name, ok, detail FROM verify_ledger();

-- Tamper with one journal amount: the chain breaks and the balance no longer matches.
BEGIN;
ALTER TABLE journal DISABLE TRIGGER journal_append_only;
UPDATE journal SET amount = '-19' WHERE transfer_id = :t1 AND kind = 'debit';
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- Rewrite an entry's hash to match its new amount: the next entry's link breaks.
BEGIN;
ALTER TABLE journal DISABLE TRIGGER journal_append_only;
UPDATE journal j SET amount = '-19', balance_after = '31',
       hash = journal_entry_hash(p.hash, j.account_id, j.seq, j.kind::text, '-19', '31',
                                 j.reserved_after, j.transfer_id, j.hold_id, j.counterparty, j.created_at)
FROM journal p WHERE j.transfer_id = :t1 AND j.kind = 'debit'
  AND p.account_id = j.account_id AND p.seq = j.seq - 1;
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- Money created out of nothing: balances no longer sum to zero.
BEGIN;
UPDATE accounts SET balance = balance + '1' WHERE node_id = 'lv_b';
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- A hold changed behind the ledger's back.
BEGIN;
UPDATE holds SET remaining = '4' WHERE account_id = (SELECT id FROM accounts WHERE node_id = 'lv_a');
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- A deleted entry leaves a gap in its account's chain.
BEGIN;
ALTER TABLE journal DISABLE TRIGGER journal_append_only;
DELETE FROM journal WHERE transfer_id = :t1 AND kind = 'debit';
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- The chain head is read from the journal (the account row holds neither
-- seq nor hash): two transfers in one transaction chain from the entries
-- written just before.  An entry removed from the end of a chain leaves no
-- gap, and the sums find it.
BEGIN;
SELECT transfer('lv_a', 'lv_b', '1') IS NOT NULL AS ok;
SELECT transfer('lv_b', 'lv_a', '1') IS NOT NULL AS ok;
SELECT check_name, ok FROM verify_ledger() WHERE check_name IN ('balances_match_journal', 'hash_chains_intact');
ROLLBACK;
BEGIN;
ALTER TABLE journal DISABLE TRIGGER journal_append_only;
DELETE FROM journal WHERE transfer_id = :t1 AND kind = 'credit';
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

-- journal_entry_hash() checks its input.
SELECT journal_entry_hash('\x00', 1, 1, 'debit', '1', '1', '0', NULL, NULL, NULL, now()); \echo :LAST_ERROR_SQLSTATE
SELECT journal_entry_hash(decode(repeat('00', 32), 'hex'), 1, 1, 'bogus', '1', '1', '0', NULL, NULL, NULL, now()); \echo :LAST_ERROR_SQLSTATE
SELECT length(journal_entry_hash(decode(repeat('00', 32), 'hex'), 1, 1, 'debit', '1', '1', '0',
                                 NULL, NULL, NULL, '2026-01-01 00:00:00+00')) AS hash_bytes;

-- Deposits match the wallet's outputs (check 10).  Two outputs of one
-- transaction to lv_x's subaddress, as the worker reads them, are credited
-- (compay.record_deposits); then each kind of mismatch is found.  An XMR
-- admin_deposit whose reason looks like a wallet credit is not one.
INSERT INTO deposit_addresses (node_id, address, address_index) VALUES ('lv_x', 'lv-x-subaddress', 7);
SELECT record_deposits(jsonb_build_object('transfers', jsonb_build_array(
    jsonb_build_object('tx_hash', repeat('ab', 32), 'global_index', 100, 'amount', 700000000000,
                       'subaddr_index', jsonb_build_object('major', 0, 'minor', 7), 'block_height', 10),
    jsonb_build_object('tx_hash', repeat('ab', 32), 'global_index', 101, 'amount', 200000000000,
                       'subaddr_index', jsonb_build_object('major', 0, 'minor', 7), 'block_height', 10))),
    30) AS credited;
SELECT admin_deposit('lv_x', '1', 'XMR', 'xmr:' || repeat('cd', 32)) IS NOT NULL AS admin_credit;
SELECT balance FROM balance('lv_x', 'XMR');
SELECT check_name, ok, detail FROM verify_ledger() WHERE check_name = 'deposits_match_wallet_outputs';
-- An output's amount is not its credit's.
BEGIN;
UPDATE xmr_deposits SET amount = '0.8' WHERE global_index = 100;
SELECT check_name, detail FROM verify_ledger() WHERE NOT ok;
ROLLBACK;
-- A wallet credit whose output row is gone.
BEGIN;
DELETE FROM xmr_deposits WHERE global_index = 101;
SELECT check_name, ok, detail ~ '^transfer [0-9]+$' AS names_the_transfer FROM verify_ledger() WHERE NOT ok;
ROLLBACK;
-- Two outputs on one credit, and an output credited to another node.
BEGIN;
UPDATE xmr_deposits SET transfer_id = (SELECT transfer_id FROM xmr_deposits WHERE global_index = 100)
WHERE global_index = 101;
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;
BEGIN;
UPDATE xmr_deposits SET node_id = 'lv_a' WHERE global_index = 101;
SELECT check_name, detail FROM verify_ledger() WHERE NOT ok;
ROLLBACK;
-- One output (global index) recorded under two transactions.
BEGIN;
INSERT INTO xmr_deposits (tx_hash, global_index, address_index, node_id, amount, transfer_id)
SELECT repeat('ef', 32), global_index, address_index, node_id, amount, transfer_id
FROM xmr_deposits WHERE global_index = 100;
SELECT check_name, ok FROM verify_ledger() WHERE NOT ok;
ROLLBACK;

SELECT check_name, ok FROM verify_ledger();

-- The hashed text of an entry is fixed: these digests pin its format (a
-- change to it would break every existing chain).
-- Negative amounts (a debit), a NULL id and a time before 2000 included.
SELECT encode(journal_entry_hash(decode(repeat('00', 32), 'hex'), 1, 1, 'credit',
       '1.5', '1.5', '0', 7, NULL, 3, '2026-01-01 00:00:00+00'), 'hex') AS credit_entry;
SELECT encode(journal_entry_hash(decode(repeat('ab', 32), 'hex'), 9223372036854775807, 42,
       'debit', '-0.000000000001', '-123456789012345678.123456789012',
       '12345.678', NULL, 9223372036854775806, NULL, '1999-12-31 23:59:59.999999+00'), 'hex')
       AS debit_entry;
