-- Wallet-backed currencies (XMR) are credited only by the wallet's deposits
-- (compay.record_deposits) or by compay_admin with a journaled reason
-- (compay.admin_deposit); a credit limit other than the default needs
-- compay_admin, through open_account as through set_credit_limit.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never

-- The application cannot mint XMR ...
SET ROLE compay_app;
SELECT deposit('sw-a', '500', 'XMR'); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT deposit('sw-a', '500', 'XMR', 'ref', 'key-1'); \echo :LAST_ERROR_SQLSTATE
SELECT admin_deposit('sw-a', '500', 'XMR', 'because'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit_from_wallet('sw-a', '500', 'XMR', 'xmr:fake', 'xmr-deposit:fake:1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('$external', 'sw-a', '500', currency => 'XMR'); \echo :LAST_ERROR_SQLSTATE
-- ... nor give itself a credit limit, in XMR or in CREDIT.
\set VERBOSITY default
SELECT open_account('sw-b', 'XMR', '1'); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT open_account('sw-b', 'CREDIT', '5000000'); \echo :LAST_ERROR_SQLSTATE
SELECT open_account('sw-b', 'CREDIT', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT set_credit_limit('sw-b', '5000000'); \echo :LAST_ERROR_SQLSTATE
-- What it may do: CREDIT deposits, and accounts at the default limit.
SELECT deposit('sw-a', '5') > 0 AS credit_deposit;
SELECT open_account('sw-b', 'CREDIT', '1000000') > 0 AS default_limit,
       open_account('sw-b', 'XMR') > 0 AS xmr_default_limit;
SELECT currency, credit_limit FROM accounts WHERE node_id = 'sw-b' ORDER BY currency;
RESET ROLE;

-- Not even a superuser credits XMR through deposit(): the admin path
-- records who and why.
SELECT deposit('sw-a', '1', 'XMR'); \echo :LAST_ERROR_SQLSTATE

-- compay_admin credits XMR with a reason; the reason is the transfer's
-- reference and a row of compay.admin_journal.
SET ROLE compay_admin;
SELECT admin_deposit('sw-a', '2.5', 'XMR', 'treasury top-up, ticket 42', 'adm-1') AS t1 \gset
SELECT admin_deposit('sw-a', '2.5', 'XMR', 'treasury top-up, ticket 42', 'adm-1') = :t1 AS same_transfer;
SELECT admin_deposit('sw-a', '2.5', 'XMR', 'another reason', 'adm-1'); \echo :LAST_ERROR_SQLSTATE
SELECT admin_deposit('sw-a', '1', 'XMR', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT admin_deposit('sw-a', '1', 'XMR', '  '); \echo :LAST_ERROR_SQLSTATE
SELECT admin_deposit('sw-a', '0', 'XMR', 'zero'); \echo :LAST_ERROR_SQLSTATE
SELECT admin_deposit('sw-a', '1', 'xmr', 'bad code'); \echo :LAST_ERROR_SQLSTATE
SELECT open_account('sw-c', 'CREDIT', '5') > 0 AS admin_sets_limit;
SELECT set_credit_limit('sw-b', '7', 'XMR');
RESET ROLE;
SELECT balance FROM balance('sw-a', 'XMR');
SELECT kind, amount, reference FROM history('sw-a', 'XMR');
SELECT action, node_id, currency, amount, reason, role_name, transfer_id = :t1 AS is_t1
FROM admin_journal ORDER BY id;
SELECT node_id, currency, credit_limit FROM accounts
WHERE node_id IN ('sw-b', 'sw-c') ORDER BY 1, 2;
-- The admin journal is append-only.
UPDATE admin_journal SET reason = 'nothing'; \echo :LAST_ERROR_SQLSTATE
DELETE FROM admin_journal; \echo :LAST_ERROR_SQLSTATE

-- The deposit path: an output the wallet reports for sw-w's subaddress,
-- compay.deposit_confirmations deep, credits it once.
INSERT INTO deposit_addresses (node_id, address, address_index) VALUES ('sw-w', 'sw-address', 7);
SELECT record_deposits('{"transfers": [{"tx_hash": "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12", "global_index": 3, "amount": 1250000000000,
    "subaddr_index": {"major": 0, "minor": 7}, "block_height": 10}]}', 100) AS credited;
SELECT record_deposits('{"transfers": [{"tx_hash": "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12", "global_index": 3, "amount": 1250000000000,
    "subaddr_index": {"major": 0, "minor": 7}, "block_height": 10}]}', 101) AS credited_again;
SELECT balance FROM balance('sw-w', 'XMR');
SELECT kind, amount, reference FROM history('sw-w', 'XMR');
SET ROLE compay_app;
SELECT record_deposits('{"transfers": []}', 1); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SELECT bool_and(ok) AS ledger_ok FROM verify_ledger();
