-- pgTAP: the schema contract of the ledger (tables, columns, keys,
-- triggers, functions, roles and privileges).
BEGIN;
SET search_path = public, compay;
SELECT plan(81);

-- Tables and their keys.
SELECT tables_are('compay', ARRAY['accounts', 'transfers', 'journal', 'holds',
                                  'barter_credits', 'idempotency_keys', 'job_types',
                                  'pricing_models', 'discount_tiers', 'task_type_models',
                                  'market_adjustments', 'jobs', 'verifications',
                                  'usage_samples', 'usage_totals', 'stakes', 'payments', 'settlements',
                                  'settlement_runs', 'settlement_exceptions',
                                  'payout_addresses', 'payout_policies', 'payout_transactions',
                                  'payout_items', 'payout_parts', 'deposit_addresses', 'xmr_deposits', 'deposit_scan', 'deposit_label',
                                  'requester_volume', 'node_roles', 'admin_journal',
                                  'node_regions', 'credit_limit_policy', 'shortfalls', 'clawbacks', 'runner_status',
                                  'exchange_rates', 'event_queue', 'events', 'events_deleted',
                                  'deposit_requests', 'shard_config', 'clearing_sent',
                                  'clearing_applied', 'clearing_rewards']);
SELECT has_pk('compay', 'accounts', 'accounts has a primary key');
SELECT col_is_pk('compay', 'journal', ARRAY['account_id', 'seq'], 'journal is keyed by account and seq');
SELECT col_is_pk('compay', 'idempotency_keys', 'key', 'idempotency keys are unique');
SELECT col_is_unique('compay', 'accounts', ARRAY['node_id', 'currency'], 'one account per node and currency');
SELECT col_is_unique('compay', 'payout_addresses', ARRAY['node_id', 'purpose', 'job_type', 'address'],
                     'a node may have several payout addresses per purpose and job type, each once');
SELECT ok((SELECT indnullsnotdistinct FROM pg_index
           WHERE indexrelid = 'compay.payout_addresses_key'::regclass),
          'an address of no job type is registered once per purpose (NULLS NOT DISTINCT)');
SELECT col_type_is('compay', 'accounts', 'balance', 'compay', 'credit', 'balance is a credit');
SELECT col_type_is('compay', 'accounts', 'reserved', 'compay', 'credit', 'reserved is a credit');
SELECT col_type_is('compay', 'accounts', 'credit_limit', 'compay', 'credit', 'credit_limit is a credit');
SELECT col_type_is('compay', 'transfers', 'amount', 'compay', 'credit', 'transfer amount is a credit');
SELECT col_type_is('compay', 'journal', 'amount', 'compay', 'credit', 'entry amount is a credit');
SELECT col_type_is('compay', 'journal', 'hash', 'bytea', 'entries carry a hash');
SELECT col_type_is('compay', 'holds', 'status', 'compay', 'hold_status', 'hold status is an enum');
SELECT col_not_null('compay', 'accounts', 'balance', 'balance is NOT NULL');
SELECT col_default_is('compay', 'accounts', 'currency', 'CREDIT', 'currency defaults to CREDIT');
SELECT col_default_is('compay', 'accounts', 'credit_score', '0.5', 'credit score starts at 0.5');
SELECT ok((SELECT count(*) = 1 FROM pg_constraint WHERE conrelid = 'compay.accounts'::regclass
           AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%account_within_limit(balance, reserved, credit_limit, flags)%'),
          'accounts carry the within-limit invariant as a CHECK');
SELECT enum_has_labels('compay', 'hold_status', ARRAY['pending', 'posted', 'voided', 'expired']);
SELECT enum_has_labels('compay', 'entry_kind', ARRAY['debit', 'credit', 'reserve', 'release', 'refund', 'barter']);
SELECT enum_has_labels('compay', 'transfer_kind',
                       ARRAY['deposit', 'transfer', 'capture', 'refund', 'barter', 'withdrawal']);

-- The invariant function: reserved and limit non-negative, available >= 0
-- unless the account is a system account; no overflow at the extremes.
SELECT ok(compay.account_within_limit('10', '5', '0', 0), 'funded account is within its limit');
SELECT ok(NOT compay.account_within_limit('-1', '0', '0', 0), 'an ordinary account cannot go negative');
SELECT ok(compay.account_within_limit('-1', '0', '0', 1), 'a system account can');
SELECT ok(NOT compay.account_within_limit('0', '-1', '5', 0), 'reserved cannot be negative');
SELECT ok(compay.account_within_limit('170141183460469231731687303.715884105727', '0',
                                      '170141183460469231731687303.715884105727', 0),
          'the largest balance and limit do not overflow');

-- Append-only triggers.
SELECT has_trigger('compay', 'journal', 'journal_append_only', 'trigger journal_append_only on journal');
SELECT has_trigger('compay', 'journal', 'journal_no_truncate', 'trigger journal_no_truncate on journal');
SELECT has_trigger('compay', 'transfers', 'transfers_append_only', 'trigger transfers_append_only on transfers');
SELECT has_trigger('compay', 'transfers', 'transfers_no_truncate', 'trigger transfers_no_truncate on transfers');
SELECT trigger_is('compay', 'journal', 'journal_append_only', 'compay', 'reject_change');

-- Every table and sequence is dumped with its rows; the tables with rows
-- of their own (builtin) only with the others.
SELECT is((SELECT count(*)::int FROM pg_extension e, unnest(e.extconfig) c
           WHERE e.extname = 'compay'), 60, '60 tables and sequences are registered for pg_dump');
SELECT set_eq($$SELECT c::regclass, w
                FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x (c, w)
                WHERE e.extname = 'compay'$$,
              $$VALUES ('compay.accounts'::regclass, ''),
                       ('compay.accounts_id_seq'::regclass, ''),
                       ('compay.settlement_runs'::regclass, ''),
                       ('compay.settlement_runs_id_seq'::regclass, ''),
                       ('compay.settlement_exceptions'::regclass, ''),
                       ('compay.transfers'::regclass, ''),
                       ('compay.transfers_id_seq'::regclass, ''),
                       ('compay.journal'::regclass, ''),
                       ('compay.holds'::regclass, ''),
                       ('compay.holds_id_seq'::regclass, ''),
                       ('compay.barter_credits'::regclass, ''),
                       ('compay.idempotency_keys'::regclass, ''),
                       ('compay.job_types'::regclass, 'WHERE NOT builtin'),
                       ('compay.pricing_models'::regclass, 'WHERE NOT builtin'),
                       ('compay.pricing_models_id_seq'::regclass, ''),
                       ('compay.discount_tiers'::regclass, 'WHERE NOT builtin'),
                       ('compay.task_type_models'::regclass, ''),
                       ('compay.market_adjustments'::regclass, ''),
                       ('compay.jobs'::regclass, ''),
                       ('compay.jobs_id_seq'::regclass, ''),
                       ('compay.verifications'::regclass, ''),
                       ('compay.usage_samples'::regclass, ''),
                       ('compay.usage_totals'::regclass, ''),
                       ('compay.stakes'::regclass, ''),
                       ('compay.payments'::regclass, ''),
                       ('compay.payments_id_seq'::regclass, ''),
                      ('compay.settlements'::regclass, ''),
                      ('compay.settlements_id_seq'::regclass, ''),
                      ('compay.payout_addresses'::regclass, ''),
                      ('compay.payout_policies'::regclass, ''),
                      ('compay.payout_transactions'::regclass, ''),
                      ('compay.payout_transactions_id_seq'::regclass, ''),
                      ('compay.payout_items'::regclass, ''),
                      ('compay.payout_parts'::regclass, ''),
                      ('compay.deposit_addresses'::regclass, ''),
                      ('compay.xmr_deposits'::regclass, ''),
                      ('compay.node_roles'::regclass, ''),
                      ('compay.admin_journal'::regclass, ''),
                      ('compay.admin_journal_id_seq'::regclass, ''),
                      ('compay.deposit_scan'::regclass, ''),
                      ('compay.node_regions'::regclass, ''),
                      ('compay.credit_limit_policy'::regclass, ''),
                      ('compay.shortfalls'::regclass, ''),
                      ('compay.shortfalls_id_seq'::regclass, ''),
                      ('compay.clawbacks'::regclass, ''),
                      ('compay.clawbacks_id_seq'::regclass, ''),
                      ('compay.deposit_address_calls'::regclass, ''),
                      ('compay.runner_status'::regclass, ''),
                      ('compay.exchange_rates'::regclass, ''),
                      ('compay.event_queue'::regclass, ''),
                      ('compay.event_queue_id_seq'::regclass, ''),
                      ('compay.events'::regclass, ''),
                      ('compay.events_id_seq'::regclass, ''),
                      ('compay.events_deleted'::regclass, ''),
                      ('compay.deposit_requests'::regclass, ''),
                      ('compay.deposit_requests_id_seq'::regclass, ''),
                      ('compay.shard_config'::regclass, ''),
                      ('compay.clearing_sent'::regclass, ''),
                      ('compay.clearing_applied'::regclass, ''),
                      ('compay.clearing_rewards'::regclass, '')$$,
              'the registered tables and sequences, and the filter of each');

-- Functions: the money-moving ones are SECURITY DEFINER with a pinned search_path.
SELECT has_function('compay', 'open_account', ARRAY['text', 'text', 'compay.credit']);
SELECT has_function('compay', 'deposit', ARRAY['text', 'compay.credit', 'text', 'text', 'text']);
SELECT has_function('compay', 'transfer', ARRAY['text', 'text', 'compay.credit', 'text', 'text', 'text']);
SELECT has_function('compay', 'transfer_batch', ARRAY['text[]', 'text[]', 'compay.credit[]', 'text[]', 'text[]', 'text']);
SELECT has_function('compay', 'reserve', ARRAY['text', 'compay.credit', 'text', 'interval', 'text', 'text']);
SELECT has_function('compay', 'capture', ARRAY['bigint', 'text', 'compay.credit', 'boolean', 'text']);
SELECT has_function('compay', 'release', ARRAY['bigint', 'text']);
SELECT has_function('compay', 'expire_holds', '{}'::name[]);
SELECT has_function('compay', 'refund', ARRAY['bigint', 'compay.credit', 'text', 'text']);
SELECT has_function('compay', 'grant_barter', ARRAY['text', 'text', 'compay.credit', 'text', 'text']);
SELECT has_function('compay', 'set_credit_limit', ARRAY['text', 'compay.credit', 'text']);
SELECT has_function('compay', 'balance', ARRAY['text', 'text']);
SELECT has_function('compay', 'barter_balance', ARRAY['text', 'text']);
SELECT has_function('compay', 'history', ARRAY['text', 'text', 'integer', 'bigint']);
SELECT has_function('compay', 'verify_ledger', '{}'::name[]);
SELECT is((SELECT count(*)::int FROM pg_proc
           WHERE pronamespace = 'compay'::regnamespace
             AND proname IN ('open_account', 'deposit', 'transfer', 'transfer_batch', 'reserve',
                             'capture', 'release', 'expire_holds', 'refund', 'grant_barter',
                             'set_credit_limit')
             AND prosecdef AND proconfig = ARRAY['search_path=pg_catalog, compay, pg_temp']
             AND provolatile = 'v'), 11,
          'all 11 write functions are VOLATILE SECURITY DEFINER with search_path pinned');

-- Roles.
SELECT has_role('compay_reader');
SELECT has_role('compay_app');
SELECT has_role('compay_admin');
SELECT has_role('compay_node');
SELECT ok(NOT pg_has_role('compay_node', 'compay_reader', 'USAGE'),
          'compay_node has no privilege of compay_reader (it reads no table)');
SELECT is_member_of('compay_reader', 'compay_app');
SELECT is_member_of('compay_app', 'compay_admin');
SELECT ok(NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'compay_app'), 'compay_app cannot log in');

-- Privileges: PUBLIC has nothing; the app executes; nobody but the owner writes.
SELECT function_privs_are('compay', 'transfer', ARRAY['text', 'text', 'compay.credit', 'text', 'text', 'text'],
                          'public', '{}'::text[], 'PUBLIC cannot call transfer');
SELECT function_privs_are('compay', 'transfer', ARRAY['text', 'text', 'compay.credit', 'text', 'text', 'text'],
                          'compay_app', ARRAY['EXECUTE'], 'compay_app can call transfer');
SELECT function_privs_are('compay', 'set_credit_limit', ARRAY['text', 'compay.credit', 'text'],
                          'compay_app', '{}'::text[], 'compay_app cannot set credit limits');
SELECT function_privs_are('compay', 'set_credit_limit', ARRAY['text', 'compay.credit', 'text'],
                          'compay_admin', ARRAY['EXECUTE'], 'compay_admin can set credit limits');
SELECT function_privs_are('compay', 'admin_deposit', ARRAY['text', 'compay.credit', 'text', 'text', 'text'],
                          'compay_app', '{}'::text[], 'compay_app cannot credit XMR');
SELECT function_privs_are('compay', 'admin_deposit', ARRAY['text', 'compay.credit', 'text', 'text', 'text'],
                          'compay_admin', ARRAY['EXECUTE'], 'compay_admin credits XMR with a reason');
SELECT function_privs_are('compay', 'verify_ledger', '{}'::name[],
                          'compay_reader', ARRAY['EXECUTE'], 'compay_reader can verify the ledger');
SELECT table_privs_are('compay', 'accounts', 'compay_reader', ARRAY['SELECT'], 'reader only reads accounts');
SELECT table_privs_are('compay', 'journal', 'compay_reader', ARRAY['SELECT'], 'reader only reads the journal');
SELECT table_privs_are('compay', 'accounts', 'compay_app', ARRAY['SELECT'],
                       'app only reads accounts (as a compay_reader)');
SELECT table_privs_are('compay', 'accounts', 'compay_admin', ARRAY['SELECT'],
                       'admin only reads accounts (as a compay_reader)');
SELECT table_privs_are('compay', 'accounts', 'public', '{}'::text[], 'PUBLIC has no table privilege');
SELECT table_privs_are('compay', 'idempotency_keys', 'compay_reader', '{}'::text[],
                       'idempotency keys are not readable');
SELECT ok(NOT has_table_privilege('compay_app', 'compay.accounts', 'UPDATE'), 'compay_app cannot UPDATE accounts');
SELECT ok(NOT has_table_privilege('compay_app', 'compay.journal', 'INSERT'), 'compay_app cannot INSERT journal');
SELECT ok(NOT has_sequence_privilege('compay_app', 'compay.transfers_id_seq', 'USAGE'),
          'compay_app cannot draw transfer ids');
-- A payout's tx key and signed transaction: compay_admin only.
SELECT ok(NOT has_column_privilege('compay_reader', 'compay.payout_transactions', 'tx_key', 'SELECT')
          AND NOT has_column_privilege('compay_reader', 'compay.payout_transactions', 'tx_metadata', 'SELECT'),
          'compay_reader cannot read tx_key and tx_metadata');
SELECT ok(NOT has_column_privilege('compay_app', 'compay.payout_transactions', 'tx_key', 'SELECT'),
          'compay_app cannot read tx_key');
SELECT ok(has_column_privilege('compay_admin', 'compay.payout_transactions', 'tx_key', 'SELECT')
          AND has_column_privilege('compay_admin', 'compay.payout_transactions', 'tx_metadata', 'SELECT'),
          'compay_admin reads tx_key and tx_metadata');
SELECT ok(has_column_privilege('compay_reader', 'compay.payout_transactions', 'tx_hash', 'SELECT')
          AND has_table_privilege('compay_reader', 'compay.payouts', 'SELECT'),
          'compay_reader reads tx_hash and the payouts view');

-- Behaviour, as compay_app: the functions work, direct writes fail with 42501.
SET LOCAL ROLE compay_app;
SELECT lives_ok($$SELECT compay.deposit('tap_a', '5')$$, 'compay_app deposits through the function');
SELECT throws_ok($$UPDATE compay.accounts SET balance = '0'$$, '42501', NULL,
                 'compay_app cannot UPDATE accounts directly');
SELECT throws_ok($$SELECT compay.set_credit_limit('tap_a', '1')$$, '42501', NULL,
                 'compay_app cannot set credit limits');
RESET ROLE;
SELECT throws_ok($$DELETE FROM compay.journal$$, 'PY009', NULL, 'the journal is append-only, even for the owner');

SELECT * FROM finish();
ROLLBACK;
