--------------------------------------------------------------------------
-- Ledger tables.  Only the extension's functions write them.  No foreign
-- keys on the append-only tables: only our own code inserts there, and
-- verify_ledger() checks every reference; an RI trigger per row would cost
-- more than the transfer itself.
--------------------------------------------------------------------------

CREATE TYPE compay.transfer_kind AS ENUM (
    'deposit', 'transfer', 'capture', 'refund', 'barter', 'withdrawal');
CREATE TYPE compay.entry_kind AS ENUM (
    'debit', 'credit', 'reserve', 'release', 'refund', 'barter');
CREATE TYPE compay.hold_status AS ENUM ('pending', 'posted', 'voided', 'expired');

-- The ledger's invariant as one C call: a CHECK constraint's expression is
-- read again for every statement that updates accounts, and a function
-- call is the smallest expression to read.
CREATE FUNCTION compay.account_within_limit(balance compay.credit, reserved compay.credit,
    credit_limit compay.credit, flags integer) RETURNS boolean
    AS 'MODULE_PATHNAME', 'compay_account_within_limit'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.account_within_limit(compay.credit, compay.credit, compay.credit, integer) IS
    'reserved >= 0, credit_limit >= 0, and balance - reserved + credit_limit >= 0 unless flag 1 (system) is set';

CREATE SEQUENCE compay.accounts_id_seq;
CREATE TABLE compay.accounts (
    id            bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.accounts_id_seq'),
    node_id       text NOT NULL,
    currency      text NOT NULL DEFAULT 'CREDIT',
    balance       compay.credit NOT NULL DEFAULT '0',
    reserved      compay.credit NOT NULL DEFAULT '0',
    credit_limit  compay.credit NOT NULL DEFAULT '0',
    credit_score  numeric(6,5) NOT NULL DEFAULT 0.5,
    flags         integer NOT NULL DEFAULT 0,
    -- The chain head (the newest journal entry, its seq and hash) is the
    -- journal's, not kept here: a transfer updates the balance and nothing
    -- else, and the update's WAL record carries little more than that.
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT accounts_node_currency UNIQUE (node_id, currency),
    -- One constraint, checked on every update: the ledger's invariant.
    -- Flag 1 marks a system account, which may go negative.  Node ids,
    -- currency codes and scores are validated by the functions that write
    -- them, so that no per-update check is spent on what never changes.
    CONSTRAINT accounts_within_limit
        CHECK (compay.account_within_limit(balance, reserved, credit_limit, flags))
) WITH (fillfactor = 30);
-- Room on each page for HOT updates of balances: a batch of 1,000
-- transfers writes a new version of every row it touches while other
-- batches' snapshots keep the old ones from being pruned; at 50 a third of
-- those updates left the page, each with two index entries (issue 17).
ALTER SEQUENCE compay.accounts_id_seq OWNED BY compay.accounts.id;
COMMENT ON TABLE compay.accounts IS 'one credit account per node and currency';

CREATE SEQUENCE compay.transfers_id_seq;
CREATE TABLE compay.transfers (
    id              bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.transfers_id_seq'),
    kind            compay.transfer_kind NOT NULL,
    from_account    bigint NOT NULL,
    to_account      bigint NOT NULL,
    amount          compay.credit NOT NULL,
    barter_amount   compay.credit NOT NULL DEFAULT '0',
    currency        text NOT NULL,
    reference       text,
    hold_id         bigint,
    refund_of       bigint,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER SEQUENCE compay.transfers_id_seq OWNED BY compay.transfers.id;
CREATE INDEX transfers_refund_of ON compay.transfers (refund_of) WHERE refund_of IS NOT NULL;
CREATE INDEX transfers_withdrawal_reference ON compay.transfers (reference) WHERE kind = 'withdrawal';
COMMENT ON TABLE compay.transfers IS 'one row per money movement; append-only';

CREATE TABLE compay.journal (
    account_id     bigint NOT NULL,
    seq            bigint NOT NULL,
    kind           compay.entry_kind NOT NULL,
    amount         compay.credit NOT NULL,
    balance_after  compay.credit NOT NULL,
    reserved_after compay.credit NOT NULL,
    transfer_id    bigint,
    hold_id        bigint,
    counterparty   bigint,
    created_at     timestamptz NOT NULL,
    hash           bytea NOT NULL,
    PRIMARY KEY (account_id, seq)
);
COMMENT ON TABLE compay.journal IS
    'double-entry journal, hash-chained per account; append-only';

CREATE SEQUENCE compay.holds_id_seq;
CREATE TABLE compay.holds (
    id              bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.holds_id_seq'),
    account_id      bigint NOT NULL,
    amount          compay.credit NOT NULL,
    remaining       compay.credit NOT NULL,
    status          compay.hold_status NOT NULL DEFAULT 'pending',
    reference       text,
    expires_at      timestamptz,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    resolved_at     timestamptz,
    CONSTRAINT holds_amount_positive CHECK (amount > '0'),
    CONSTRAINT holds_remaining_range CHECK (remaining >= '0' AND remaining <= amount),
    CONSTRAINT holds_resolved CHECK ((status = 'pending') = (resolved_at IS NULL))
);
ALTER SEQUENCE compay.holds_id_seq OWNED BY compay.holds.id;
CREATE INDEX holds_pending_expiry ON compay.holds (expires_at) WHERE status = 'pending';
CREATE INDEX holds_account_pending ON compay.holds (account_id) WHERE status = 'pending';
COMMENT ON TABLE compay.holds IS 'two-phase holds: reserve, then capture or release';

CREATE TABLE compay.barter_credits (
    holder_account       bigint NOT NULL,
    counterparty_account bigint NOT NULL,
    amount               compay.credit NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (holder_account, counterparty_account),
    CONSTRAINT barter_nonnegative CHECK (amount >= '0')
);
COMMENT ON TABLE compay.barter_credits IS
    'barter credits a holder can spend only with one counterparty';

CREATE TABLE compay.idempotency_keys (
    key          text PRIMARY KEY,
    operation    text NOT NULL,
    request_hash bytea NOT NULL,
    result_id    bigint,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT idempotency_key_length CHECK (pg_catalog.length(key) BETWEEN 1 AND 200)
);
COMMENT ON TABLE compay.idempotency_keys IS
    'first result of every money-moving call made with an idempotency key';

-- What compay_admin did beyond the application's rights: credits of a
-- wallet-backed currency (XMR) and credit limits other than the default.
CREATE SEQUENCE compay.admin_journal_id_seq;
CREATE TABLE compay.admin_journal (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.admin_journal_id_seq'),
    action      text NOT NULL,              -- 'deposit' or 'credit_limit'
    node_id     text NOT NULL,
    currency    text NOT NULL,
    amount      compay.credit NOT NULL,     -- the deposit, or the new credit limit
    reason      text,
    transfer_id bigint,                     -- the deposit's transfer
    role_name   text NOT NULL,              -- the session's role (after SET ROLE)
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER SEQUENCE compay.admin_journal_id_seq OWNED BY compay.admin_journal.id;
COMMENT ON TABLE compay.admin_journal IS
    'who credited a wallet-backed currency or set a credit limit, and why; append-only';

-- The journal and transfers are append-only.
CREATE FUNCTION compay.reject_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'compay.% is append-only', TG_TABLE_NAME
        USING ERRCODE = 'PY009',
              DETAIL = pg_catalog.format('%s on compay.%s is not allowed.', TG_OP, TG_TABLE_NAME),
              HINT = 'Correct a ledger with a new transfer, such as compay.refund().';
END $$;
CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON compay.journal
    FOR EACH ROW EXECUTE FUNCTION compay.reject_change();
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON compay.journal
    FOR EACH STATEMENT EXECUTE FUNCTION compay.reject_change();
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON compay.transfers
    FOR EACH ROW EXECUTE FUNCTION compay.reject_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON compay.transfers
    FOR EACH STATEMENT EXECUTE FUNCTION compay.reject_change();
CREATE TRIGGER admin_journal_append_only BEFORE UPDATE OR DELETE ON compay.admin_journal
    FOR EACH ROW EXECUTE FUNCTION compay.reject_change();
CREATE TRIGGER admin_journal_no_truncate BEFORE TRUNCATE ON compay.admin_journal
    FOR EACH STATEMENT EXECUTE FUNCTION compay.reject_change();

-- pg_dump keeps every row: none are created by this script, so a restore
-- never collides with rows CREATE EXTENSION made.
SELECT pg_catalog.pg_extension_config_dump('compay.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('compay.accounts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.transfers', '');
SELECT pg_catalog.pg_extension_config_dump('compay.transfers_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.journal', '');
SELECT pg_catalog.pg_extension_config_dump('compay.holds', '');
SELECT pg_catalog.pg_extension_config_dump('compay.holds_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.barter_credits', '');
SELECT pg_catalog.pg_extension_config_dump('compay.idempotency_keys', '');
SELECT pg_catalog.pg_extension_config_dump('compay.admin_journal', '');
SELECT pg_catalog.pg_extension_config_dump('compay.admin_journal_id_seq', '');

REVOKE ALL ON ALL TABLES IN SCHEMA compay FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA compay FROM PUBLIC;
GRANT SELECT ON compay.accounts, compay.transfers, compay.journal, compay.holds,
    compay.barter_credits, compay.admin_journal TO compay_reader;

--------------------------------------------------------------------------
-- Ledger functions.  Those that write are C, SECURITY DEFINER with a
-- pinned search_path, executable by compay_app (and compay_admin) only.
--------------------------------------------------------------------------

CREATE FUNCTION compay.journal_entry_hash(prev bytea, account_id bigint, seq bigint,
    kind text, amount compay.credit, balance_after compay.credit,
    reserved_after compay.credit, transfer_id bigint, hold_id bigint,
    counterparty bigint, created_at timestamptz) RETURNS bytea
    AS 'MODULE_PATHNAME', 'compay_journal_entry_hash'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION compay.journal_entry_hash(bytea, bigint, bigint, text, compay.credit,
    compay.credit, compay.credit, bigint, bigint, bigint, timestamptz) IS
    'the SHA-256 a journal entry with these fields must carry, chained from prev';

CREATE FUNCTION compay.open_account(node_id text, currency text DEFAULT 'CREDIT',
    credit_limit compay.credit DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_open_account'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

CREATE FUNCTION compay.deposit(node_id text, amount compay.credit,
    currency text DEFAULT 'CREDIT', reference text DEFAULT NULL,
    idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_deposit'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

-- XMR (wallet-backed) that reaches an account other than by the wallet:
-- compay_admin only, with a reason kept in compay.admin_journal.
CREATE FUNCTION compay.admin_deposit(node_id text, amount compay.credit, currency text,
    reason text, idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_admin_deposit'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.admin_deposit(text, compay.credit, text, text, text) IS
    'credits an account from $external in any currency, XMR included; the reason is the transfer''s reference and is journaled in compay.admin_journal';

-- The wallet's deposits (compay.record_deposits); no role may call it.
CREATE FUNCTION compay.deposit_from_wallet(node_id text, amount compay.credit, currency text,
    reference text, idempotency_key text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_deposit_from_wallet'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

CREATE FUNCTION compay.transfer(from_node text, to_node text, amount compay.credit,
    reference text DEFAULT NULL, idempotency_key text DEFAULT NULL,
    currency text DEFAULT 'CREDIT') RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_transfer'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

CREATE FUNCTION compay.transfer_batch(from_nodes text[], to_nodes text[],
    amounts compay.credit[], "references" text[] DEFAULT NULL,
    idempotency_keys text[] DEFAULT NULL, currency text DEFAULT 'CREDIT')
    RETURNS SETOF bigint
    AS 'MODULE_PATHNAME', 'compay_transfer_batch'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp ROWS 1000;

CREATE FUNCTION compay.reserve(node_id text, amount compay.credit,
    reference text DEFAULT NULL, timeout interval DEFAULT NULL,
    idempotency_key text DEFAULT NULL, currency text DEFAULT 'CREDIT') RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_reserve'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

CREATE FUNCTION compay.capture(hold_id bigint, to_node text, amount compay.credit DEFAULT NULL,
    final boolean DEFAULT true, idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_capture'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

CREATE FUNCTION compay.release(hold_id bigint, idempotency_key text DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'compay_release'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

-- Idempotency keys for the PL/pgSQL money functions (src/idempotency.c):
-- claim returns NULL when the caller is to do the work and record its
-- result, or the first call's result; another request under the key is
-- PY005.  The key is scoped to the calling node role, as in C.  Used by
-- request_payout, stake and unstake; no role may call them.
CREATE FUNCTION compay.idempotency_claim(key text, operation text, request text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_idempotency_claim' LANGUAGE C VOLATILE;
CREATE FUNCTION compay.idempotency_record(key text, result_id bigint) RETURNS void
    AS 'MODULE_PATHNAME', 'compay_idempotency_record' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION compay.idempotency_claim(text, text, text),
    compay.idempotency_record(text, bigint) FROM PUBLIC;
COMMENT ON FUNCTION compay.idempotency_claim(text, text, text) IS
    'claims an idempotency key: NULL, do the work and record its result; or the first call''s result id; another request with the key: PY005';
COMMENT ON FUNCTION compay.idempotency_record(text, bigint) IS
    'records the result id of the work done under a key claimed with compay.idempotency_claim()';

CREATE FUNCTION compay.expire_holds() RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_expire_holds'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

CREATE FUNCTION compay.refund(transfer_id bigint, amount compay.credit DEFAULT NULL,
    reason text DEFAULT NULL, idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_refund'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

CREATE FUNCTION compay.grant_barter(holder text, counterparty text, amount compay.credit,
    reference text DEFAULT NULL, idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_grant_barter'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

CREATE FUNCTION compay.set_credit_limit(node_id text, credit_limit compay.credit,
    currency text DEFAULT 'CREDIT') RETURNS void
    AS 'MODULE_PATHNAME', 'compay_set_credit_limit'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

-- The node id rule of the ledger (src/ledger.c), for the SQL functions.
CREATE FUNCTION compay.check_node_id(node_id text) RETURNS text
    AS 'MODULE_PATHNAME', 'compay_check_node_id'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION compay.check_node_id(text) IS
    'returns the node id, or raises 22023 unless it has 1 to 200 characters, no control character, no white space at either end and no leading $';


-- System accounts are striped (src/ledger_stripes.c): '$name' and
-- '$name#1' to '$name#63' are rows of one account, each with its own lock,
-- balance and hash chain; a flow takes a row no other transaction holds,
-- so that no flow through $external, $rewards or $fees waits for another's.
-- The account's balance is the exact sum of its rows.
CREATE FUNCTION compay.system_account_rows(node_id text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT CASE WHEN left($1, 1) = '$'
                THEN ARRAY[$1] || ARRAY(SELECT $1 || '#' || g FROM generate_series(1, 63) g)
                ELSE ARRAY[$1] END
$$;
COMMENT ON FUNCTION compay.system_account_rows(text) IS
    'the node ids of the rows that make up an account: a system account''s 64 possible stripes, or the node id itself';

CREATE VIEW compay.system_balances AS
    SELECT split_part(a.node_id, '#', 1) AS node_id, a.currency,
           compay.sum(a.balance) AS balance, count(*) AS stripes,
           -- Seqs run 1..n (verify_ledger check 2): the last is the count,
           -- one probe of the journal's primary key per stripe.
           sum(coalesce((SELECT j.seq FROM compay.journal j WHERE j.account_id = a.id
                         ORDER BY j.seq DESC LIMIT 1), 0)) AS entries
    FROM compay.accounts a
    WHERE left(a.node_id, 1) = '$'
    GROUP BY 1, 2;
COMMENT ON VIEW compay.system_balances IS
    'each system account''s balance: the exact sum of its stripe rows';
GRANT SELECT ON compay.system_balances TO compay_reader;


-- Read functions: SECURITY DEFINER, so that a node role (compay_node),
-- which cannot read the tables, reads its own accounts; compay_reader
-- reads every node's.

CREATE FUNCTION compay.balance(node_id text, currency text DEFAULT 'CREDIT',
    OUT balance compay.credit, OUT reserved compay.credit, OUT available compay.credit,
    OUT credit_limit compay.credit, OUT credit_score numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT a.balance, a.reserved,
           -- balance - reserved fits for an ordinary account (it is at least
           -- -credit_limit); adding the limit may not: then the largest credit.
           CASE WHEN (a.flags & 1) <> 0 THEN NULL
                WHEN (a.balance OPERATOR(compay.-) a.reserved)
                     OPERATOR(compay.>) ('170141183460469231731687303.715884105727'::compay.credit
                                         OPERATOR(compay.-) a.credit_limit)
                THEN '170141183460469231731687303.715884105727'::compay.credit
                ELSE a.balance OPERATOR(compay.-) a.reserved OPERATOR(compay.+) a.credit_limit END,
           a.credit_limit, a.credit_score
    -- A system account's balance is the sum of its stripe rows.
    FROM (SELECT compay.sum(r.balance) AS balance, compay.sum(r.reserved) AS reserved,
                 (array_agg(r.credit_limit))[1] AS credit_limit,
                 (array_agg(r.credit_score))[1] AS credit_score, bit_or(r.flags) AS flags
          FROM compay.accounts r
          WHERE r.node_id = ANY (compay.system_account_rows($1)) AND r.currency = $2
          HAVING count(*) > 0) a
$$;

CREATE FUNCTION compay.barter_balance(holder text, counterparty text) RETURNS compay.credit
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT coalesce((SELECT b.amount FROM compay.barter_credits b
                     JOIN compay.accounts h ON h.id = b.holder_account
                     JOIN compay.accounts c ON c.id = b.counterparty_account
                     WHERE h.node_id = $1 AND c.node_id = $2
                       AND h.currency = 'CREDIT' AND c.currency = 'CREDIT'), '0'::compay.credit)
$$;

CREATE FUNCTION compay.history(node_id text, currency text DEFAULT 'CREDIT',
    max_rows integer DEFAULT 100, before_seq bigint DEFAULT NULL)
RETURNS TABLE (seq bigint, created_at timestamptz, kind compay.entry_kind,
    amount compay.credit, balance_after compay.credit, reserved_after compay.credit,
    transfer_id bigint, hold_id bigint, counterparty text, transfer_kind compay.transfer_kind,
    reference text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    -- A system account's stripe row ('$rewards#3') is named as the account.
    SELECT j.seq, j.created_at, j.kind, j.amount, j.balance_after, j.reserved_after,
           j.transfer_id, j.hold_id,
           CASE WHEN left(c.node_id, 1) = '$' THEN split_part(c.node_id, '#', 1) ELSE c.node_id END,
           t.kind, coalesce(t.reference, h.reference)
    FROM compay.accounts a
    JOIN compay.journal j ON j.account_id = a.id
    LEFT JOIN compay.accounts c ON c.id = j.counterparty
    LEFT JOIN compay.transfers t ON t.id = j.transfer_id
    LEFT JOIN compay.holds h ON h.id = j.hold_id
    WHERE a.node_id = $1 AND a.currency = $2 AND ($4 IS NULL OR j.seq < $4)
    ORDER BY j.seq DESC
    LIMIT greatest(least($3, 10000), 0)
$$;
COMMENT ON FUNCTION compay.history(text, text, integer, bigint) IS
    'journal entries of one account, newest first; page with before_seq';


REVOKE ALL ON FUNCTION compay.open_account(text, text, compay.credit),
    compay.deposit(text, compay.credit, text, text, text),
    compay.admin_deposit(text, compay.credit, text, text, text),
    compay.deposit_from_wallet(text, compay.credit, text, text, text),
    compay.transfer(text, text, compay.credit, text, text, text),
    compay.transfer_batch(text[], text[], compay.credit[], text[], text[], text),
    compay.reserve(text, compay.credit, text, interval, text, text),
    compay.capture(bigint, text, compay.credit, boolean, text),
    compay.release(bigint, text),
    compay.expire_holds(),
    compay.refund(bigint, compay.credit, text, text),
    compay.grant_barter(text, text, compay.credit, text, text),
    compay.set_credit_limit(text, compay.credit, text),
    compay.balance(text, text), compay.barter_balance(text, text),
    compay.history(text, text, integer, bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.balance(text, text), compay.barter_balance(text, text),
    compay.history(text, text, integer, bigint)
    TO compay_reader;
GRANT EXECUTE ON FUNCTION compay.open_account(text, text, compay.credit),
    compay.deposit(text, compay.credit, text, text, text),
    compay.transfer(text, text, compay.credit, text, text, text),
    compay.transfer_batch(text[], text[], compay.credit[], text[], text[], text),
    compay.reserve(text, compay.credit, text, interval, text, text),
    compay.capture(bigint, text, compay.credit, boolean, text),
    compay.release(bigint, text),
    compay.expire_holds(),
    compay.refund(bigint, compay.credit, text, text),
    compay.grant_barter(text, text, compay.credit, text, text)
    TO compay_app;
GRANT EXECUTE ON FUNCTION compay.set_credit_limit(text, compay.credit, text),
    compay.admin_deposit(text, compay.credit, text, text, text) TO compay_admin;
-- A node role: its own balance, history and payments out (transfer checks
-- from_node); everything else of the ledger belongs to the application.
GRANT EXECUTE ON FUNCTION compay.balance(text, text), compay.barter_balance(text, text),
    compay.history(text, text, integer, bigint),
    compay.transfer(text, text, compay.credit, text, text, text)
    TO compay_node;
