-- compay 0.1: the credit type.  Later parts of the install script add the
-- ledger, pricing, settlement and payouts.

\echo Use "CREATE EXTENSION compay" to load this file. \quit

--------------------------------------------------------------------------
-- compay.credit: a signed fixed-point amount with 12 decimal places,
-- stored as a 16-byte int128 count of atomic units (1e-12, one piconero).
--------------------------------------------------------------------------

CREATE TYPE compay.credit;

CREATE FUNCTION compay.credit_in(cstring) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_out(compay.credit) RETURNS cstring
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_recv(internal) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_send(compay.credit) RETURNS bytea
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE compay.credit (
    INTERNALLENGTH = 16,
    INPUT = compay.credit_in,
    OUTPUT = compay.credit_out,
    RECEIVE = compay.credit_recv,
    SEND = compay.credit_send,
    ALIGNMENT = double,
    STORAGE = plain,
    CATEGORY = 'N'
);
COMMENT ON TYPE compay.credit IS
    'exact amount with 12 decimal places (atomic unit 1e-12, one piconero), 16-byte int128';

-- Casts.  Integers (whole units) and numeric convert to credit on
-- assignment, and credit to numeric likewise, as for money: an implicit
-- integer cast would make "numeric * integer" ambiguous once compay is on
-- the search_path.  In expressions write '0' or 0::compay.credit.

CREATE FUNCTION compay.credit(bigint) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'credit_from_int8' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit(integer) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'credit_from_int4' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit(smallint) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'credit_from_int2' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit(numeric) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'credit_from_numeric' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.numeric(compay.credit) RETURNS numeric
    AS 'MODULE_PATHNAME', 'credit_to_numeric' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE CAST (bigint AS compay.credit) WITH FUNCTION compay.credit(bigint) AS ASSIGNMENT;
CREATE CAST (integer AS compay.credit) WITH FUNCTION compay.credit(integer) AS ASSIGNMENT;
CREATE CAST (smallint AS compay.credit) WITH FUNCTION compay.credit(smallint) AS ASSIGNMENT;
CREATE CAST (numeric AS compay.credit) WITH FUNCTION compay.credit(numeric) AS ASSIGNMENT;
CREATE CAST (compay.credit AS numeric) WITH FUNCTION compay.numeric(compay.credit) AS ASSIGNMENT;

-- Functions on credits.

CREATE FUNCTION compay.atomic(compay.credit) RETURNS numeric
    AS 'MODULE_PATHNAME', 'credit_atomic' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.atomic(compay.credit) IS 'the amount as a count of atomic units (piconero)';

CREATE FUNCTION compay.credit_from_atomic(numeric) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'credit_from_atomic' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.credit_from_atomic(numeric) IS 'the credit of a whole count of atomic units';

CREATE FUNCTION compay.round_credit(numeric, mode text DEFAULT 'half_even') RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'credit_round' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.round_credit(numeric, text) IS
    'rounds to the atomic unit: half_even (default), half_up, down, floor or ceiling';

CREATE FUNCTION compay.xmr(compay.credit) RETURNS text
    AS 'MODULE_PATHNAME', 'credit_xmr' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.xmr(compay.credit) IS 'the amount with all 12 decimals, as wallets print XMR';

CREATE FUNCTION compay.abs(compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'credit_abs' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.sign(compay.credit) RETURNS integer
    AS 'MODULE_PATHNAME', 'credit_sign' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Arithmetic.

-- credit_pl's planner support turns "a * k + b" (integer k) into one call of
-- credit_muladd_int4/int8, with the same result and the same checks.
CREATE FUNCTION compay.credit_pl_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_muladd_int8(compay.credit, bigint, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_muladd_int4(compay.credit, integer, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_pl(compay.credit, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    SUPPORT compay.credit_pl_support;
CREATE FUNCTION compay.credit_mi(compay.credit, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_um(compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_mul_int8(compay.credit, bigint) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_mul_int4(compay.credit, integer) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_mul_int2(compay.credit, smallint) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.int8_mul_credit(bigint, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.int4_mul_credit(integer, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.int2_mul_credit(smallint, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_div_int8(compay.credit, bigint) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_div_int4(compay.credit, integer) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_div_int2(compay.credit, smallint) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_mul_numeric(compay.credit, numeric) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.numeric_mul_credit(numeric, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_div_numeric(compay.credit, numeric) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_div_credit(compay.credit, compay.credit) RETURNS numeric
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR compay.+ (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_pl, COMMUTATOR = OPERATOR(compay.+));
CREATE OPERATOR compay.- (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_mi);
CREATE OPERATOR compay.- (RIGHTARG = compay.credit, FUNCTION = compay.credit_um);
CREATE OPERATOR compay.* (LEFTARG = compay.credit, RIGHTARG = bigint,
    FUNCTION = compay.credit_mul_int8, COMMUTATOR = OPERATOR(compay.*));
CREATE OPERATOR compay.* (LEFTARG = bigint, RIGHTARG = compay.credit,
    FUNCTION = compay.int8_mul_credit, COMMUTATOR = OPERATOR(compay.*));
CREATE OPERATOR compay.* (LEFTARG = compay.credit, RIGHTARG = integer,
    FUNCTION = compay.credit_mul_int4, COMMUTATOR = OPERATOR(compay.*));
CREATE OPERATOR compay.* (LEFTARG = integer, RIGHTARG = compay.credit,
    FUNCTION = compay.int4_mul_credit, COMMUTATOR = OPERATOR(compay.*));
CREATE OPERATOR compay.* (LEFTARG = compay.credit, RIGHTARG = smallint,
    FUNCTION = compay.credit_mul_int2, COMMUTATOR = OPERATOR(compay.*));
CREATE OPERATOR compay.* (LEFTARG = smallint, RIGHTARG = compay.credit,
    FUNCTION = compay.int2_mul_credit, COMMUTATOR = OPERATOR(compay.*));
CREATE OPERATOR compay.* (LEFTARG = compay.credit, RIGHTARG = numeric,
    FUNCTION = compay.credit_mul_numeric, COMMUTATOR = OPERATOR(compay.*));
CREATE OPERATOR compay.* (LEFTARG = numeric, RIGHTARG = compay.credit,
    FUNCTION = compay.numeric_mul_credit, COMMUTATOR = OPERATOR(compay.*));
CREATE OPERATOR compay./ (LEFTARG = compay.credit, RIGHTARG = bigint,
    FUNCTION = compay.credit_div_int8);
CREATE OPERATOR compay./ (LEFTARG = compay.credit, RIGHTARG = integer,
    FUNCTION = compay.credit_div_int4);
CREATE OPERATOR compay./ (LEFTARG = compay.credit, RIGHTARG = smallint,
    FUNCTION = compay.credit_div_int2);
CREATE OPERATOR compay./ (LEFTARG = compay.credit, RIGHTARG = numeric,
    FUNCTION = compay.credit_div_numeric);
CREATE OPERATOR compay./ (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_div_credit);

-- Comparison.

CREATE FUNCTION compay.credit_eq(compay.credit, compay.credit) RETURNS boolean
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_ne(compay.credit, compay.credit) RETURNS boolean
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_lt(compay.credit, compay.credit) RETURNS boolean
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_le(compay.credit, compay.credit) RETURNS boolean
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_gt(compay.credit, compay.credit) RETURNS boolean
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_ge(compay.credit, compay.credit) RETURNS boolean
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_cmp(compay.credit, compay.credit) RETURNS integer
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_sortsupport(internal) RETURNS void
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_hash(compay.credit) RETURNS integer
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_hash_extended(compay.credit, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION compay.credit_larger(compay.credit, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_smaller(compay.credit, compay.credit) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR compay.= (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_eq, COMMUTATOR = OPERATOR(compay.=),
    NEGATOR = OPERATOR(compay.<>), RESTRICT = eqsel, JOIN = eqjoinsel,
    HASHES, MERGES);
CREATE OPERATOR compay.<> (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_ne, COMMUTATOR = OPERATOR(compay.<>),
    NEGATOR = OPERATOR(compay.=), RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR compay.< (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_lt, COMMUTATOR = OPERATOR(compay.>),
    NEGATOR = OPERATOR(compay.>=), RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR compay.<= (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_le, COMMUTATOR = OPERATOR(compay.>=),
    NEGATOR = OPERATOR(compay.>), RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR compay.> (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_gt, COMMUTATOR = OPERATOR(compay.<),
    NEGATOR = OPERATOR(compay.<=), RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR compay.>= (LEFTARG = compay.credit, RIGHTARG = compay.credit,
    FUNCTION = compay.credit_ge, COMMUTATOR = OPERATOR(compay.<=),
    NEGATOR = OPERATOR(compay.<), RESTRICT = scalargesel, JOIN = scalargejoinsel);

CREATE OPERATOR CLASS compay.credit_ops
    DEFAULT FOR TYPE compay.credit USING btree AS
        OPERATOR 1 compay.<,
        OPERATOR 2 compay.<=,
        OPERATOR 3 compay.=,
        OPERATOR 4 compay.>=,
        OPERATOR 5 compay.>,
        FUNCTION 1 compay.credit_cmp(compay.credit, compay.credit),
        FUNCTION 2 compay.credit_sortsupport(internal),
        FUNCTION 4 pg_catalog.btequalimage(oid);

CREATE OPERATOR CLASS compay.credit_hash_ops
    DEFAULT FOR TYPE compay.credit USING hash AS
        OPERATOR 1 compay.=,
        FUNCTION 1 compay.credit_hash(compay.credit),
        FUNCTION 2 compay.credit_hash_extended(compay.credit, bigint);

-- Aggregates.  sum and avg share an in-place int128 state and run in
-- parallel through combine and serial functions.

CREATE FUNCTION compay.credit_sum_accum(internal, compay.credit) RETURNS internal
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION compay.credit_sum_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION compay.credit_sum_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_sum_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION compay.credit_sum_final(internal) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION compay.credit_avg_final(internal) RETURNS compay.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE compay.sum(compay.credit) (
    SFUNC = compay.credit_sum_accum, STYPE = internal, SSPACE = 32,
    FINALFUNC = compay.credit_sum_final,
    COMBINEFUNC = compay.credit_sum_combine,
    SERIALFUNC = compay.credit_sum_serialize,
    DESERIALFUNC = compay.credit_sum_deserialize,
    PARALLEL = SAFE
);
CREATE AGGREGATE compay.avg(compay.credit) (
    SFUNC = compay.credit_sum_accum, STYPE = internal, SSPACE = 32,
    FINALFUNC = compay.credit_avg_final,
    COMBINEFUNC = compay.credit_sum_combine,
    SERIALFUNC = compay.credit_sum_serialize,
    DESERIALFUNC = compay.credit_sum_deserialize,
    PARALLEL = SAFE
);
CREATE AGGREGATE compay.min(compay.credit) (
    SFUNC = compay.credit_smaller, STYPE = compay.credit,
    COMBINEFUNC = compay.credit_smaller, SORTOP = OPERATOR(compay.<),
    PARALLEL = SAFE
);
CREATE AGGREGATE compay.max(compay.credit) (
    SFUNC = compay.credit_larger, STYPE = compay.credit,
    COMBINEFUNC = compay.credit_larger, SORTOP = OPERATOR(compay.>),
    PARALLEL = SAFE
);

--------------------------------------------------------------------------
-- Roles.  Cluster-wide, so created only when missing; never dropped with
-- the extension.
--------------------------------------------------------------------------

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['compay_reader', 'compay_app', 'compay_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;
GRANT compay_reader TO compay_app;
GRANT compay_app TO compay_admin;
GRANT USAGE ON SCHEMA compay TO PUBLIC;

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
    journal_seq   bigint NOT NULL DEFAULT 0,
    journal_hash  bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT accounts_node_currency UNIQUE (node_id, currency),
    -- One constraint, checked on every update: the ledger's invariant.
    -- Flag 1 marks a system account, which may go negative.  Node ids,
    -- currency codes and scores are validated by the functions that write
    -- them, so that no per-update check is spent on what never changes.
    CONSTRAINT accounts_within_limit
        CHECK (compay.account_within_limit(balance, reserved, credit_limit, flags))
) WITH (fillfactor = 50);  -- room on each page for HOT updates of balances
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

-- The journal and transfers are append-only.
CREATE FUNCTION compay.reject_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
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

REVOKE ALL ON ALL TABLES IN SCHEMA compay FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA compay FROM PUBLIC;
GRANT SELECT ON compay.accounts, compay.transfers, compay.journal, compay.holds,
    compay.barter_credits TO compay_reader;

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
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.deposit(node_id text, amount compay.credit,
    currency text DEFAULT 'CREDIT', reference text DEFAULT NULL,
    idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_deposit'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.transfer(from_node text, to_node text, amount compay.credit,
    reference text DEFAULT NULL, idempotency_key text DEFAULT NULL,
    currency text DEFAULT 'CREDIT') RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_transfer'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.transfer_batch(from_nodes text[], to_nodes text[],
    amounts compay.credit[], "references" text[] DEFAULT NULL,
    idempotency_keys text[] DEFAULT NULL, currency text DEFAULT 'CREDIT')
    RETURNS SETOF bigint
    AS 'MODULE_PATHNAME', 'compay_transfer_batch'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay ROWS 1000;

CREATE FUNCTION compay.reserve(node_id text, amount compay.credit,
    reference text DEFAULT NULL, timeout interval DEFAULT NULL,
    idempotency_key text DEFAULT NULL, currency text DEFAULT 'CREDIT') RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_reserve'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.capture(hold_id bigint, to_node text, amount compay.credit DEFAULT NULL,
    final boolean DEFAULT true, idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_capture'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.release(hold_id bigint, idempotency_key text DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'compay_release'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.expire_holds() RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_expire_holds'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.refund(transfer_id bigint, amount compay.credit DEFAULT NULL,
    reason text DEFAULT NULL, idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_refund'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.grant_barter(holder text, counterparty text, amount compay.credit,
    reference text DEFAULT NULL, idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_grant_barter'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

CREATE FUNCTION compay.set_credit_limit(node_id text, credit_limit compay.credit,
    currency text DEFAULT 'CREDIT') RETURNS void
    AS 'MODULE_PATHNAME', 'compay_set_credit_limit'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;

-- Read functions: plain SQL, run with the caller's rights (compay_reader).

CREATE FUNCTION compay.balance(node_id text, currency text DEFAULT 'CREDIT',
    OUT balance compay.credit, OUT reserved compay.credit, OUT available compay.credit,
    OUT credit_limit compay.credit, OUT credit_score numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay AS $$
    SELECT a.balance, a.reserved,
           CASE WHEN (a.flags & 1) <> 0 THEN NULL
                ELSE a.balance OPERATOR(compay.-) a.reserved OPERATOR(compay.+) a.credit_limit END,
           a.credit_limit, a.credit_score
    FROM compay.accounts a WHERE a.node_id = $1 AND a.currency = $2
$$;

CREATE FUNCTION compay.barter_balance(holder text, counterparty text) RETURNS compay.credit
LANGUAGE sql STABLE SET search_path = pg_catalog, compay AS $$
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
LANGUAGE sql STABLE SET search_path = pg_catalog, compay AS $$
    SELECT j.seq, j.created_at, j.kind, j.amount, j.balance_after, j.reserved_after,
           j.transfer_id, j.hold_id, c.node_id, t.kind, coalesce(t.reference, h.reference)
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

CREATE FUNCTION compay.verify_ledger()
RETURNS TABLE (check_name text, ok boolean, detail text)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay AS $$
    -- 1. Per currency, all balances (system accounts included) sum to zero.
    SELECT 'balances_sum_to_zero', bool_and(total OPERATOR(compay.=) '0'),
           coalesce(string_agg(currency || ' sums to ' || total::text, ', ')
                    FILTER (WHERE total OPERATOR(compay.<>) '0'), 'every currency sums to zero')
    FROM (SELECT currency, compay.sum(balance) AS total FROM compay.accounts GROUP BY currency
          UNION ALL SELECT NULL, '0' WHERE NOT EXISTS (SELECT 1 FROM compay.accounts)) s
    UNION ALL
    -- 2. Every balance equals the sum of its journal, and so does reserved.
    SELECT 'balances_match_journal', count(*) = 0,
           coalesce('accounts ' || string_agg(a.id::text, ', ' ORDER BY a.id), 'all accounts match')
    FROM compay.accounts a
    LEFT JOIN (SELECT account_id,
                      compay.sum(amount) FILTER (WHERE kind IN ('debit', 'credit', 'refund')) AS b,
                      compay.sum(amount) FILTER (WHERE kind IN ('reserve', 'release')) AS r,
                      max(seq) AS last_seq, count(*) AS n
               FROM compay.journal GROUP BY account_id) j ON j.account_id = a.id
    WHERE a.balance OPERATOR(compay.<>) coalesce(j.b, '0')
       OR a.reserved OPERATOR(compay.<>) coalesce(j.r, '0')
       OR a.journal_seq <> coalesce(j.last_seq, 0) OR a.journal_seq <> coalesce(j.n, 0)
    UNION ALL
    -- 3. Every reserved amount equals the remaining of its pending holds.
    SELECT 'reserved_matches_holds', count(*) = 0,
           coalesce('accounts ' || string_agg(a.id::text, ', ' ORDER BY a.id), 'all accounts match')
    FROM compay.accounts a
    LEFT JOIN (SELECT account_id, compay.sum(remaining) AS r FROM compay.holds
               WHERE status = 'pending' GROUP BY account_id) h ON h.account_id = a.id
    WHERE a.reserved OPERATOR(compay.<>) coalesce(h.r, '0')
    UNION ALL
    -- 4. No ordinary account is past its credit limit.
    SELECT 'accounts_within_limits', count(*) = 0,
           coalesce('accounts ' || string_agg(id::text, ', ' ORDER BY id), 'all accounts within limits')
    FROM compay.accounts
    WHERE (flags & 1) = 0
      AND balance OPERATOR(compay.-) reserved OPERATOR(compay.+) credit_limit OPERATOR(compay.<) '0'
    UNION ALL
    -- 5. Every entry's hash chains from the one before; the newest is on the account.
    SELECT 'hash_chains_intact', count(*) = 0,
           coalesce('entries ' || string_agg(account_id || '/' || seq, ', ' ORDER BY account_id, seq),
                    'all chains intact')
    FROM (SELECT j.account_id, j.seq, j.hash,
                 compay.journal_entry_hash(
                     coalesce(lag(j.hash) OVER w,
                              '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea),
                     j.account_id, j.seq, j.kind::text, j.amount, j.balance_after, j.reserved_after,
                     j.transfer_id, j.hold_id, j.counterparty, j.created_at) AS expected,
                 lag(j.seq) OVER w AS prev_seq,
                 lead(j.seq) OVER w IS NULL AS newest
          FROM compay.journal j
          WINDOW w AS (PARTITION BY j.account_id ORDER BY j.seq)) e
    LEFT JOIN compay.accounts a ON a.id = e.account_id
    WHERE e.hash <> e.expected OR e.seq <> coalesce(e.prev_seq, 0) + 1
       OR a.id IS NULL OR (e.newest AND a.journal_hash <> e.hash)
    UNION ALL
    -- 6. Every transfer's balance entries net to zero, and each has its entries.
    SELECT 'transfers_balanced', count(*) = 0,
           coalesce('transfers ' || string_agg(id::text, ', ' ORDER BY id), 'all transfers balanced')
    FROM (SELECT t.id
          FROM compay.transfers t
          LEFT JOIN compay.journal j ON j.transfer_id = t.id
          GROUP BY t.id, t.amount, t.barter_amount, t.kind
          HAVING coalesce(compay.sum(j.amount) FILTER (WHERE j.kind <> 'barter'), '0') OPERATOR(compay.<>) '0'
              OR coalesce(compay.sum(j.amount) FILTER (WHERE j.kind <> 'barter'
                                                        AND j.amount OPERATOR(compay.>) '0'), '0')
                 OPERATOR(compay.<>) CASE WHEN t.kind = 'barter' THEN '0'
                                          ELSE t.amount OPERATOR(compay.-) t.barter_amount END) bad
    UNION ALL
    -- 7. Barter positions in the journal match compay.barter_credits.
    SELECT 'barter_matches_journal', count(*) = 0,
           coalesce('accounts ' || string_agg(id::text, ', ' ORDER BY id), 'all barter positions match')
    FROM (SELECT a.id
          FROM compay.accounts a
          LEFT JOIN (SELECT account_id, compay.sum(amount) AS j FROM compay.journal
                     WHERE kind = 'barter' GROUP BY account_id) j ON j.account_id = a.id
          LEFT JOIN (SELECT holder_account AS id, amount FROM compay.barter_credits
                     UNION ALL
                     SELECT counterparty_account, OPERATOR(compay.-) amount FROM compay.barter_credits) b
                 ON b.id = a.id
          GROUP BY a.id, j.j
          HAVING coalesce(j.j, '0') OPERATOR(compay.<>) coalesce(compay.sum(b.amount), '0')) bad
$$;
COMMENT ON FUNCTION compay.verify_ledger() IS
    'checks every ledger invariant; each row is one check';

REVOKE ALL ON FUNCTION compay.open_account(text, text, compay.credit),
    compay.deposit(text, compay.credit, text, text, text),
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
    compay.history(text, text, integer, bigint), compay.verify_ledger()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.balance(text, text), compay.barter_balance(text, text),
    compay.history(text, text, integer, bigint), compay.verify_ledger()
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
GRANT EXECUTE ON FUNCTION compay.set_credit_limit(text, compay.credit, text) TO compay_admin;

--------------------------------------------------------------------------
-- The Monero compute network's reward formula, per job type:
-- BaseRate x Duration x UtilizationFactor x QualityFactor.
--------------------------------------------------------------------------

CREATE TABLE compay.job_types (
    job_type           text PRIMARY KEY,
    currency           text NOT NULL DEFAULT 'XMR',
    base_rate          compay.credit NOT NULL,   -- per GPU-hour
    quality_multiplier numeric NOT NULL DEFAULT 1.0,
    builtin            boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT job_types_rate_nonnegative CHECK (base_rate >= '0'),
    CONSTRAINT job_types_quality_range CHECK (quality_multiplier BETWEEN 0.8 AND 1.5),
    CONSTRAINT job_types_currency_valid CHECK (currency ~ '^[A-Z][A-Z0-9_]{1,15}$')
);
COMMENT ON TABLE compay.job_types IS
    'reward base rate per GPU-hour and default quality multiplier of each job type';
INSERT INTO compay.job_types (job_type, base_rate, quality_multiplier, builtin) VALUES
    ('Basic Training', '0.001', 1.0, true),
    ('Fine-tuning', '0.0012', 1.1, true),
    ('Large Model Training', '0.0015', 1.2, true),
    ('Verification Work', '0.0002', 1.0, true);
-- As for PostGIS's spatial_ref_sys: the rows this script ships are made
-- again by CREATE EXTENSION on restore, so only the others are dumped.
SELECT pg_catalog.pg_extension_config_dump('compay.job_types', 'WHERE NOT builtin');
REVOKE ALL ON compay.job_types FROM PUBLIC;
GRANT SELECT ON compay.job_types TO compay_reader;
GRANT INSERT, UPDATE, DELETE ON compay.job_types TO compay_admin;

CREATE FUNCTION compay.compute_reward(job_type text, duration interval,
    utilization_factor numeric, quality_factor numeric DEFAULT NULL) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'compay_compute_reward'
    LANGUAGE C STABLE PARALLEL SAFE SET search_path = pg_catalog, compay;
COMMENT ON FUNCTION compay.compute_reward(text, interval, numeric, numeric) IS
    'base rate x hours x utilization factor x quality factor (NULL: the job type''s multiplier), exact, rounded once half to even';

CREATE FUNCTION compay.utilization_factor(gpu_utilization numeric) RETURNS numeric
    AS 'MODULE_PATHNAME', 'compay_utilization_factor'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.utilization_factor(numeric) IS
    'GPU utilization 0..1 mapped linearly onto the utilization factor 0.5..1.2';

REVOKE ALL ON FUNCTION compay.compute_reward(text, interval, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.compute_reward(text, interval, numeric, numeric) TO compay_reader;
