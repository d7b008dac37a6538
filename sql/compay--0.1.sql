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

--------------------------------------------------------------------------
-- Pricing: models, discount tiers, task type mappings, market
-- adjustments; compay.price() and compay.quote() (src/pricing.c).
--------------------------------------------------------------------------

CREATE TYPE compay.resource_metrics AS (
    cpu_seconds        numeric,
    memory_byte_hours  numeric,
    storage_byte_hours numeric,
    network_bytes_in   bigint,
    network_bytes_out  bigint,
    gpu_seconds        numeric,
    custom             jsonb
);
COMMENT ON TYPE compay.resource_metrics IS
    'resource usage of a task; NULL fields count as zero, custom maps metric names to quantities';

CREATE FUNCTION compay.metrics(cpu_seconds numeric DEFAULT 0, memory_byte_hours numeric DEFAULT 0,
    storage_byte_hours numeric DEFAULT 0, network_bytes_in bigint DEFAULT 0,
    network_bytes_out bigint DEFAULT 0, gpu_seconds numeric DEFAULT 0,
    custom jsonb DEFAULT '{}') RETURNS compay.resource_metrics
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ROW($1, $2, $3, $4, $5, $6, $7)::compay.resource_metrics
$$;
COMMENT ON FUNCTION compay.metrics(numeric, numeric, numeric, bigint, bigint, numeric, jsonb) IS
    'builds a compay.resource_metrics value from named arguments; omitted ones are zero';

-- custom_prices: a JSON object of metric name -> non-negative price per
-- unit, each a valid credit (at most 12 decimals).
CREATE FUNCTION compay.valid_custom_prices(prices jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.jsonb_typeof(prices) = 'object'
       AND coalesce(bool_and(pg_catalog.jsonb_typeof(value) = 'number'
                             AND value::numeric >= 0
                             AND value::numeric = pg_catalog.round(value::numeric, 12)
                             AND value::numeric < 1e26), true)
    FROM pg_catalog.jsonb_each(prices)
$$;

CREATE SEQUENCE compay.pricing_models_id_seq AS integer;
CREATE TABLE compay.pricing_models (
    id            integer PRIMARY KEY DEFAULT pg_catalog.nextval('compay.pricing_models_id_seq'),
    name          text NOT NULL UNIQUE,
    currency      text NOT NULL DEFAULT 'CREDIT',
    base_price    compay.credit NOT NULL DEFAULT '0',
    cpu_price     compay.credit NOT NULL DEFAULT '0',   -- per CPU-second
    memory_price  compay.credit NOT NULL DEFAULT '0',   -- per GB-hour
    storage_price compay.credit NOT NULL DEFAULT '0',   -- per GB-hour
    network_price compay.credit NOT NULL DEFAULT '0',   -- per GB, in + out
    gpu_price     compay.credit NOT NULL DEFAULT '0',   -- per GPU-second
    custom_prices jsonb NOT NULL DEFAULT '{}',          -- metric -> price per unit
    min_price     compay.credit,
    max_price     compay.credit,
    builtin       boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT pricing_models_prices_nonnegative CHECK (
        base_price >= '0' AND cpu_price >= '0' AND memory_price >= '0' AND
        storage_price >= '0' AND network_price >= '0' AND gpu_price >= '0' AND
        coalesce(min_price >= '0', true)),
    CONSTRAINT pricing_models_bounds CHECK (coalesce(min_price <= max_price, true)),
    CONSTRAINT pricing_models_custom_prices_valid CHECK (compay.valid_custom_prices(custom_prices)),
    CONSTRAINT pricing_models_currency_valid CHECK (currency ~ '^[A-Z][A-Z0-9_]{1,15}$')
);
ALTER SEQUENCE compay.pricing_models_id_seq OWNED BY compay.pricing_models.id;
COMMENT ON TABLE compay.pricing_models IS
    'unit prices of each resource; a task type without a model of its own uses the model named default';
-- The design's prices, in credits.
INSERT INTO compay.pricing_models (name, currency, base_price, cpu_price, memory_price,
    storage_price, network_price, gpu_price, builtin)
VALUES ('default', 'CREDIT', '100', '1000', '100', '10', '50', '10000', true);

CREATE TABLE compay.discount_tiers (
    model_id         integer NOT NULL REFERENCES compay.pricing_models (id) ON DELETE CASCADE,
    min_volume       bigint NOT NULL,
    max_volume       bigint,             -- exclusive; NULL: no upper bound
    discount_percent numeric NOT NULL,
    builtin          boolean NOT NULL DEFAULT false,
    PRIMARY KEY (model_id, min_volume),
    CONSTRAINT discount_tiers_range CHECK (min_volume >= 0 AND coalesce(max_volume > min_volume, true)),
    CONSTRAINT discount_tiers_percent CHECK (discount_percent >= 0 AND discount_percent <= 100)
);
COMMENT ON TABLE compay.discount_tiers IS
    'volume discounts: a requester with min_volume <= paid tasks in compay.discount_window < max_volume gets discount_percent off';
INSERT INTO compay.discount_tiers (model_id, min_volume, max_volume, discount_percent, builtin)
SELECT id, lo, hi, pct, true
FROM compay.pricing_models,
     (VALUES (0, 1000, 0), (1000, 10000, 10), (10000, 100000, 20), (100000, NULL, 30)) t (lo, hi, pct)
WHERE name = 'default';

-- Tiers of one model must not overlap: the model row is locked, so two
-- sessions adding tiers to one model take turns.
CREATE FUNCTION compay.discount_tiers_no_overlap() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
DECLARE
    other compay.discount_tiers;
BEGIN
    PERFORM 1 FROM compay.pricing_models WHERE id = NEW.model_id FOR UPDATE;
    SELECT * INTO other FROM compay.discount_tiers t
    WHERE t.model_id = NEW.model_id
      AND (TG_OP = 'INSERT' OR (t.model_id, t.min_volume) <> (OLD.model_id, OLD.min_volume))
      AND int8range(t.min_volume, t.max_volume) && int8range(NEW.min_volume, NEW.max_volume)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'discount tier [%, %) overlaps tier [%, %) of pricing model %',
            NEW.min_volume, coalesce(NEW.max_volume::text, 'unbounded'),
            other.min_volume, coalesce(other.max_volume::text, 'unbounded'), NEW.model_id
            USING ERRCODE = 'exclusion_violation',
                  HINT = 'Each volume falls in at most one tier of a model; max_volume is exclusive.';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER discount_tiers_no_overlap BEFORE INSERT OR UPDATE ON compay.discount_tiers
    FOR EACH ROW EXECUTE FUNCTION compay.discount_tiers_no_overlap();

CREATE TABLE compay.task_type_models (
    task_type text PRIMARY KEY,
    model_id  integer NOT NULL REFERENCES compay.pricing_models (id) ON DELETE CASCADE
);
COMMENT ON TABLE compay.task_type_models IS 'the pricing model of each task type that has its own';

CREATE TABLE compay.market_adjustments (
    task_type  text PRIMARY KEY,
    factor     numeric NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT market_adjustments_factor_positive CHECK (factor > 0 AND factor <> 'Infinity')
);
COMMENT ON TABLE compay.market_adjustments IS
    'market factor of a task type; price() clamps it to [compay.market_factor_min, compay.market_factor_max]';

-- Backends cache the four tables; a change sends an invalidation.
CREATE FUNCTION compay.pricing_config_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'compay_pricing_config_changed' LANGUAGE C;
CREATE TRIGGER pricing_models_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON compay.pricing_models FOR EACH STATEMENT EXECUTE FUNCTION compay.pricing_config_changed();
CREATE TRIGGER discount_tiers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON compay.discount_tiers FOR EACH STATEMENT EXECUTE FUNCTION compay.pricing_config_changed();
CREATE TRIGGER task_type_models_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON compay.task_type_models FOR EACH STATEMENT EXECUTE FUNCTION compay.pricing_config_changed();
CREATE TRIGGER market_adjustments_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON compay.market_adjustments FOR EACH STATEMENT EXECUTE FUNCTION compay.pricing_config_changed();

SELECT pg_catalog.pg_extension_config_dump('compay.pricing_models', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('compay.pricing_models_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.discount_tiers', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('compay.task_type_models', '');
SELECT pg_catalog.pg_extension_config_dump('compay.market_adjustments', '');
REVOKE ALL ON compay.pricing_models, compay.pricing_models_id_seq, compay.discount_tiers,
    compay.task_type_models, compay.market_adjustments FROM PUBLIC;
GRANT SELECT ON compay.pricing_models, compay.discount_tiers, compay.task_type_models,
    compay.market_adjustments TO compay_reader;
GRANT INSERT, UPDATE, DELETE ON compay.pricing_models, compay.discount_tiers,
    compay.task_type_models, compay.market_adjustments TO compay_admin;
GRANT USAGE ON SEQUENCE compay.pricing_models_id_seq TO compay_admin;

-- No SET search_path: it would cost a GUC save and restore on every call,
-- and every name in the C code's queries is qualified.
CREATE FUNCTION compay.price(metrics compay.resource_metrics, task_type text DEFAULT NULL,
    requester text DEFAULT NULL) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'compay_price'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION compay.price(compay.resource_metrics, text, text) IS
    'base + every resource at its exact quantity + custom metrics, times the market factor, less the volume discount, clamped to the model''s bounds, rounded once half to even';

CREATE FUNCTION compay.quote(metrics compay.resource_metrics, task_type text DEFAULT NULL,
    requester text DEFAULT NULL)
    RETURNS TABLE (component text, quantity numeric, unit_price compay.credit, amount compay.credit)
    AS 'MODULE_PATHNAME', 'compay_quote'
    LANGUAGE C STABLE PARALLEL SAFE ROWS 12;
COMMENT ON FUNCTION compay.quote(compay.resource_metrics, text, text) IS
    'price() one step per row, then the total; the amounts of the steps add up to the total';

REVOKE ALL ON FUNCTION compay.price(compay.resource_metrics, text, text),
    compay.quote(compay.resource_metrics, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.price(compay.resource_metrics, text, text),
    compay.quote(compay.resource_metrics, text, text) TO compay_reader;

--------------------------------------------------------------------------
-- Jobs: escrow, metering, verification, task payments, disputes.
--
-- The orchestration is PL/pgSQL; every money movement is one call of a C
-- ledger function.  Lock order: the job row (FOR UPDATE) first, then the
-- stake row, then the ledger's accounts and holds inside that one C call.
-- Nothing locks a job row while holding account locks, so the order holds
-- across the whole extension.
--------------------------------------------------------------------------

CREATE TYPE compay.job_status AS ENUM
    ('submitted', 'assigned', 'completed', 'paid', 'failed', 'timed_out');
CREATE TYPE compay.payment_method AS ENUM ('credit', 'barter', 'crypto', 'fiat');
CREATE TYPE compay.payment_status AS ENUM
    ('pending', 'processing', 'completed', 'failed', 'refunded', 'disputed');

CREATE SEQUENCE compay.jobs_id_seq;
CREATE TABLE compay.jobs (
    id              bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.jobs_id_seq'),
    task_id         text NOT NULL UNIQUE,
    requester       text NOT NULL,
    provider        text,
    task_type       text NOT NULL,
    currency        text NOT NULL,
    status          compay.job_status NOT NULL,
    max_amount      compay.credit,          -- the escrow; NULL: a task without escrow
    escrow_hold_id  bigint,
    timeout_at      timestamptz,
    started_at      timestamptz,
    completed_at    timestamptz,
    gpu_utilization numeric,
    amount          compay.credit,          -- what was paid
    payment_id      bigint,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT jobs_escrow CHECK ((max_amount IS NULL) = (escrow_hold_id IS NULL)),
    CONSTRAINT jobs_parties CHECK (provider IS NULL OR provider <> requester),
    CONSTRAINT jobs_times CHECK (completed_at IS NULL OR completed_at >= started_at)
);
ALTER SEQUENCE compay.jobs_id_seq OWNED BY compay.jobs.id;
CREATE INDEX jobs_open_timeout ON compay.jobs (timeout_at)
    WHERE status IN ('submitted', 'assigned', 'completed') AND timeout_at IS NOT NULL;
CREATE INDEX jobs_open_provider ON compay.jobs (provider)
    WHERE status IN ('submitted', 'assigned', 'completed');
COMMENT ON TABLE compay.jobs IS
    'compute jobs and tasks: requester, provider, escrow hold, state, what was paid';

CREATE TABLE compay.verifications (
    job_id         bigint NOT NULL REFERENCES compay.jobs (id),
    verifier       text NOT NULL,
    passed         boolean NOT NULL,
    quality_factor numeric,
    reward_amount  compay.credit,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rewarded_at    timestamptz,             -- when the reward moved from $rewards
    settlement_id  bigint,                  -- the settlement that gathered the reward
    PRIMARY KEY (job_id, verifier)
);
CREATE INDEX verifications_unsettled ON compay.verifications (rewarded_at)
    WHERE settlement_id IS NULL AND reward_amount > '0';
CREATE INDEX verifications_settlement ON compay.verifications (settlement_id)
    WHERE settlement_id IS NOT NULL;
COMMENT ON TABLE compay.verifications IS 'one vote per verifier and job';

CREATE TABLE compay.usage_samples (
    job_id             bigint NOT NULL REFERENCES compay.jobs (id),
    sample_id          text NOT NULL,
    node_id            text NOT NULL,
    sampled_at         timestamptz NOT NULL,
    cpu_seconds        numeric NOT NULL,
    memory_byte_hours  numeric NOT NULL,
    storage_byte_hours numeric NOT NULL,
    network_bytes_in   bigint NOT NULL,
    network_bytes_out  bigint NOT NULL,
    gpu_seconds        numeric NOT NULL,
    custom             jsonb,
    recorded_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (job_id, sample_id)
);
COMMENT ON TABLE compay.usage_samples IS
    'usage pushed by nodes: each sample is the usage since the node''s previous one';

CREATE TABLE compay.stakes (
    node_id    text NOT NULL,
    currency   text NOT NULL,
    amount     compay.credit NOT NULL,
    hold_id    bigint,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (node_id, currency),
    CONSTRAINT stakes_amount CHECK (amount >= '0' AND (amount = '0') = (hold_id IS NULL))
);
COMMENT ON TABLE compay.stakes IS 'stake of each provider, held on its account by one ledger hold';

CREATE SEQUENCE compay.payments_id_seq;
CREATE TABLE compay.payments (
    id                 bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.payments_id_seq'),
    task_id            text NOT NULL,
    from_node          text NOT NULL,
    to_node            text NOT NULL,
    amount             compay.credit NOT NULL,
    currency           text NOT NULL,
    method             compay.payment_method NOT NULL,
    status             compay.payment_status NOT NULL DEFAULT 'pending',
    resource_metrics   compay.resource_metrics,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    completed_at       timestamptz,
    tx_hash            text,
    metadata           jsonb NOT NULL DEFAULT '{}',
    transfer_id        bigint,
    refund_transfer_id bigint,
    settlement_id      bigint,              -- the settlement that gathered it
    dispute_reason     text,
    disputed_at        timestamptz,
    CONSTRAINT payments_amount CHECK (amount >= '0')
);
ALTER SEQUENCE compay.payments_id_seq OWNED BY compay.payments.id;
-- A task is paid at most once: only failed attempts may repeat.
CREATE UNIQUE INDEX payments_task_once ON compay.payments (task_id) WHERE status <> 'failed';
-- What the next settlement run gathers.
CREATE INDEX payments_unsettled ON compay.payments (completed_at)
    WHERE status = 'completed' AND settlement_id IS NULL;
CREATE INDEX payments_settlement ON compay.payments (settlement_id) WHERE settlement_id IS NOT NULL;
-- The requester's volume for discount tiers (src/pricing_config.c).
CREATE INDEX payments_volume ON compay.payments (from_node, completed_at)
    WHERE status IN ('completed', 'disputed');
COMMENT ON TABLE compay.payments IS
    'one row per payment attempt of a task: pending, processing, completed, failed, refunded, disputed';

-- Each requester's paid payments (completed or disputed) per UTC day of
-- completed_at, kept by statement triggers in the same transaction as the
-- payment rows, so that the discount volume reads at most a month of rows plus the
-- payments of the window's first day (src/pricing_config.c).  Not dumped:
-- restoring compay.payments fills it again through the trigger;
-- compay.rebuild_requester_volume() makes it again from the payments.
CREATE TABLE compay.requester_volume (
    from_node text NOT NULL,
    day       date NOT NULL,
    payments  bigint NOT NULL,
    PRIMARY KEY (from_node, day)
);
COMMENT ON TABLE compay.requester_volume IS
    'paid payments (completed or disputed) per requester and UTC day, kept by a trigger on compay.payments';
REVOKE ALL ON compay.requester_volume FROM PUBLIC;
GRANT SELECT ON compay.requester_volume TO compay_reader;

-- Statement triggers with transition tables: the net change a statement
-- made to each (requester, UTC day), one upsert per group however many
-- rows it wrote.
CREATE FUNCTION compay.track_requester_volume() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO compay.requester_volume AS v (from_node, day, payments)
        SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date, count(*)
        FROM new_rows
        WHERE status IN ('completed', 'disputed') AND completed_at IS NOT NULL
        GROUP BY 1, 2
        ON CONFLICT (from_node, day) DO UPDATE SET payments = v.payments + excluded.payments;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO compay.requester_volume AS v (from_node, day, payments)
        SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date, -count(*)
        FROM old_rows
        WHERE status IN ('completed', 'disputed') AND completed_at IS NOT NULL
        GROUP BY 1, 2
        ON CONFLICT (from_node, day) DO UPDATE SET payments = v.payments + excluded.payments;
    ELSE
        INSERT INTO compay.requester_volume AS v (from_node, day, payments)
        SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date, sum(sign)
        FROM (SELECT n.from_node, n.completed_at, 1 AS sign FROM new_rows n
              WHERE n.status IN ('completed', 'disputed') AND n.completed_at IS NOT NULL
              UNION ALL
              SELECT o.from_node, o.completed_at, -1 FROM old_rows o
              WHERE o.status IN ('completed', 'disputed') AND o.completed_at IS NOT NULL) r
        GROUP BY 1, 2 HAVING sum(sign) <> 0
        ON CONFLICT (from_node, day) DO UPDATE SET payments = v.payments + excluded.payments;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_volume_insert AFTER INSERT ON compay.payments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.track_requester_volume();
CREATE TRIGGER payments_volume_update AFTER UPDATE ON compay.payments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.track_requester_volume();
CREATE TRIGGER payments_volume_delete AFTER DELETE ON compay.payments
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.track_requester_volume();

CREATE FUNCTION compay.truncate_requester_volume() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
BEGIN
    TRUNCATE compay.requester_volume;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_volume_truncate AFTER TRUNCATE ON compay.payments
    FOR EACH STATEMENT EXECUTE FUNCTION compay.truncate_requester_volume();

-- Makes compay.requester_volume again from the payments (after a restore
-- with triggers disabled, say).  Returns the rows written.
CREATE FUNCTION compay.rebuild_requester_volume() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_n bigint;
BEGIN
    LOCK TABLE compay.payments IN SHARE MODE;
    DELETE FROM compay.requester_volume;
    INSERT INTO compay.requester_volume (from_node, day, payments)
    SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date, count(*)
    FROM compay.payments
    WHERE status IN ('completed', 'disputed') AND completed_at IS NOT NULL
    GROUP BY 1, 2;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION compay.track_requester_volume(), compay.truncate_requester_volume(),
    compay.rebuild_requester_volume() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('compay.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('compay.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.verifications', '');
SELECT pg_catalog.pg_extension_config_dump('compay.usage_samples', '');
SELECT pg_catalog.pg_extension_config_dump('compay.stakes', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payments', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payments_id_seq', '');
REVOKE ALL ON compay.jobs, compay.verifications, compay.usage_samples, compay.stakes,
    compay.payments, compay.jobs_id_seq, compay.payments_id_seq FROM PUBLIC;
GRANT SELECT ON compay.jobs, compay.verifications, compay.usage_samples, compay.stakes,
    compay.payments TO compay_reader;

-- One ledger call that pays a verified job (src/ledger_holds.c).
CREATE FUNCTION compay.settle_escrow(hold_id bigint, provider text, amount compay.credit,
    verifiers text[], verifier_reward compay.credit, reference text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_settle_escrow'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;
REVOKE ALL ON FUNCTION compay.settle_escrow(bigint, text, compay.credit, text[], compay.credit, text)
    FROM PUBLIC;

CREATE FUNCTION compay.compute_reward(job_type text, duration interval,
    utilization_factor numeric, quality_factors numeric[]) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'compay_compute_reward_mean'
    LANGUAGE C STABLE PARALLEL SAFE SET search_path = pg_catalog, compay;
COMMENT ON FUNCTION compay.compute_reward(text, interval, numeric, numeric[]) IS
    'compute_reward() with the exact mean of several quality factors (empty or all NULL: the job type''s multiplier)';
REVOKE ALL ON FUNCTION compay.compute_reward(text, interval, numeric, numeric[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.compute_reward(text, interval, numeric, numeric[]) TO compay_reader;

CREATE FUNCTION compay.check_metrics(metrics compay.resource_metrics) RETURNS void
    AS 'MODULE_PATHNAME', 'compay_check_metrics'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION compay.check_metrics(compay.resource_metrics) IS
    'raises 22023 unless every quantity is a finite number >= 0 and custom is an object of such numbers';

-- The job row, locked; PY010 if there is none.
CREATE FUNCTION compay.lock_job(task_id text, share boolean DEFAULT false) RETURNS compay.jobs
LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs;
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF share THEN
        SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = lock_job.task_id FOR SHARE;
    ELSE
        SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = lock_job.task_id FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task "%" does not exist', left(task_id, 64) USING ERRCODE = 'PY010',
            HINT = 'Submit it first with compay.submit_job() or compay.submit_task().';
    END IF;
    RETURN j;
END $$;

-- 55000 if the job's timeout has passed; compay.expire_jobs() releases it.
CREATE FUNCTION compay.require_not_timed_out(j compay.jobs) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
BEGIN
    IF j.timeout_at IS NOT NULL AND j.timeout_at <= now() THEN
        RAISE EXCEPTION 'job "%" timed out', left(j.task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Its timeout was %s.', j.timeout_at),
                  HINT = 'compay.expire_jobs() releases its escrow to the requester.';
    END IF;
END $$;

CREATE FUNCTION compay.require_job_status(j compay.jobs, wanted compay.job_status, action text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
BEGIN
    IF j.status <> wanted THEN
        RAISE EXCEPTION 'cannot % job "%": it is %', action, left(j.task_id, 64), j.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This needs a job in state %s.', wanted);
    END IF;
END $$;

-- The currency a task type is paid in: its job type's, else its model's.
CREATE FUNCTION compay.task_currency(task_type text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, compay AS $$
    SELECT c FROM (
        SELECT 1, currency FROM compay.job_types WHERE job_type = $1
        UNION ALL
        SELECT 2, m.currency FROM compay.task_type_models t
        JOIN compay.pricing_models m ON m.id = t.model_id WHERE t.task_type = $1
        UNION ALL
        SELECT 3, currency FROM compay.pricing_models WHERE name = 'default') s (o, c)
    ORDER BY o LIMIT 1
$$;

-- Moves a node's credit score after a payment outcome, as the ledger does:
-- up 1 % of the way to 1, or down 5 %.
CREATE FUNCTION compay.move_credit_score(node_id text, currency text, up boolean) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, compay AS $$
    UPDATE compay.accounts
    SET credit_score = round(CASE WHEN up THEN credit_score + (1 - credit_score) * 0.01
                                  ELSE credit_score * 0.95 END, 5)
    WHERE accounts.node_id = $1 AND accounts.currency = $2 AND (flags & 1) = 0
$$;

CREATE FUNCTION compay.submit_job(task_id text, requester text, task_type text,
    max_amount compay.credit, timeout interval DEFAULT '24 hours') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs;
    v_currency text;
    v_hold bigint;
BEGIN
    IF task_id IS NULL OR requester IS NULL OR task_type IS NULL OR max_amount IS NULL
       OR timeout IS NULL THEN
        RAISE EXCEPTION 'task_id, requester, task_type, max_amount and timeout must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(task_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a task id has 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_amount <= '0' THEN
        RAISE EXCEPTION 'the escrow amount must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout <= interval '0' THEN
        RAISE EXCEPTION 'a job timeout must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = submit_job.task_id FOR UPDATE;
    IF FOUND THEN
        -- A retry of the same submission returns the same job.
        IF j.requester = requester AND j.task_type = task_type AND j.max_amount = max_amount THEN
            RETURN j.id;
        END IF;
        RAISE EXCEPTION 'task "%" was already submitted with other arguments', left(task_id, 64)
            USING ERRCODE = 'PY005';
    END IF;
    v_currency := compay.task_currency(task_type);
    v_hold := compay.reserve(requester, max_amount, 'escrow:' || task_id, NULL, NULL, v_currency);
    INSERT INTO compay.jobs (task_id, requester, task_type, currency, status, max_amount,
                             escrow_hold_id, timeout_at)
    VALUES (task_id, requester, task_type, v_currency, 'submitted', max_amount, v_hold,
            now() + timeout)
    RETURNING id INTO j.id;
    RETURN j.id;
END $$;
COMMENT ON FUNCTION compay.submit_job(text, text, text, compay.credit, interval) IS
    'records a job and holds max_amount of the requester as escrow until verification or timeout';

CREATE FUNCTION compay.submit_task(task_id text, requester text, provider text, task_type text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs;
BEGIN
    IF task_id IS NULL OR requester IS NULL OR provider IS NULL OR task_type IS NULL THEN
        RAISE EXCEPTION 'task_id, requester, provider and task_type must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(task_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a task id has 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF provider = requester THEN
        RAISE EXCEPTION 'a node cannot run its own task' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = submit_task.task_id FOR UPDATE;
    IF FOUND THEN
        IF j.requester = requester AND j.provider = provider AND j.task_type = task_type
           AND j.max_amount IS NULL THEN
            RETURN j.id;
        END IF;
        RAISE EXCEPTION 'task "%" was already submitted with other arguments', left(task_id, 64)
            USING ERRCODE = 'PY005';
    END IF;
    INSERT INTO compay.jobs (task_id, requester, provider, task_type, currency, status)
    VALUES (task_id, requester, provider, task_type, compay.task_currency(task_type), 'assigned')
    RETURNING id INTO j.id;
    RETURN j.id;
END $$;
COMMENT ON FUNCTION compay.submit_task(text, text, text, text) IS
    'records a task without escrow, already assigned; paid by compay.process_task_payment()';

CREATE FUNCTION compay.stake(node_id text, amount compay.credit, currency text DEFAULT 'CREDIT')
RETURNS compay.credit
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    s compay.stakes;
BEGIN
    IF node_id IS NULL OR amount IS NULL OR currency IS NULL THEN
        RAISE EXCEPTION 'node_id, amount and currency must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF amount <= '0' THEN
        RAISE EXCEPTION 'a stake must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO compay.stakes (node_id, currency, amount) VALUES (node_id, currency, '0')
    ON CONFLICT DO NOTHING;
    SELECT * INTO STRICT s FROM compay.stakes
    WHERE stakes.node_id = stake.node_id AND stakes.currency = stake.currency FOR UPDATE;
    -- One hold carries the whole stake: free the old one, hold the new total.
    IF s.hold_id IS NOT NULL THEN
        PERFORM compay.release(s.hold_id);
    END IF;
    s.amount := s.amount + amount;
    s.hold_id := compay.reserve(node_id, s.amount, 'stake', NULL, NULL, currency);
    UPDATE compay.stakes SET amount = s.amount, hold_id = s.hold_id, updated_at = now()
    WHERE stakes.node_id = stake.node_id AND stakes.currency = stake.currency;
    RETURN s.amount;
END $$;
COMMENT ON FUNCTION compay.stake(text, compay.credit, text) IS
    'adds to a node''s stake, held on its account; returns the new stake';

CREATE FUNCTION compay.unstake(node_id text, amount compay.credit, currency text DEFAULT 'CREDIT')
RETURNS compay.credit
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    s compay.stakes;
    v_min compay.credit := current_setting('compay.min_stake')::compay.credit;
BEGIN
    IF node_id IS NULL OR amount IS NULL OR currency IS NULL THEN
        RAISE EXCEPTION 'node_id, amount and currency must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF amount <= '0' THEN
        RAISE EXCEPTION 'an unstake amount must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO s FROM compay.stakes
    WHERE stakes.node_id = unstake.node_id AND stakes.currency = unstake.currency FOR UPDATE;
    IF NOT FOUND OR s.amount < amount THEN
        RAISE EXCEPTION 'cannot unstake % %: node "%" has % staked', amount, currency,
            left(node_id, 64), coalesce(s.amount, '0')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s.amount - amount < v_min AND EXISTS (
        SELECT 1 FROM compay.jobs
        WHERE provider = node_id AND jobs.currency = unstake.currency
          AND status IN ('submitted', 'assigned', 'completed')) THEN
        RAISE EXCEPTION 'cannot unstake below compay.min_stake % while a job of node "%" is open',
            v_min, left(node_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Unstake after the node''s open jobs are paid, failed or timed out.';
    END IF;
    PERFORM compay.release(s.hold_id);
    s.amount := s.amount - amount;
    s.hold_id := CASE WHEN s.amount > '0'
                      THEN compay.reserve(node_id, s.amount, 'stake', NULL, NULL, currency) END;
    UPDATE compay.stakes SET amount = s.amount, hold_id = s.hold_id, updated_at = now()
    WHERE stakes.node_id = unstake.node_id AND stakes.currency = unstake.currency;
    RETURN s.amount;
END $$;
COMMENT ON FUNCTION compay.unstake(text, compay.credit, text) IS
    'frees part of a node''s stake; not below compay.min_stake while one of its jobs is open';

CREATE FUNCTION compay.assign_job(task_id text, provider text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs := compay.lock_job(task_id);
    v_min compay.credit := current_setting('compay.min_stake')::compay.credit;
    v_stake compay.credit;
BEGIN
    IF provider IS NULL THEN
        RAISE EXCEPTION 'provider must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF j.status = 'assigned' AND j.provider = provider THEN
        RETURN;                                 -- a retry
    END IF;
    PERFORM compay.require_job_status(j, 'submitted', 'assign');
    PERFORM compay.require_not_timed_out(j);
    IF provider = j.requester OR left(provider, 1) = '$' OR length(provider) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'node "%" cannot run job "%"', left(provider, 64), left(task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The provider must be a node other than the requester.';
    END IF;
    IF v_min > '0' THEN
        SELECT amount INTO v_stake FROM compay.stakes
        WHERE node_id = provider AND currency = j.currency FOR SHARE;
        IF coalesce(v_stake, '0') < v_min THEN
            RAISE EXCEPTION 'node "%" has staked % %, less than compay.min_stake %',
                left(provider, 64), coalesce(v_stake, '0'), j.currency, v_min
                USING ERRCODE = 'PY011', HINT = 'Stake more with compay.stake().';
        END IF;
    END IF;
    UPDATE compay.jobs SET provider = assign_job.provider, status = 'assigned', updated_at = now()
    WHERE id = j.id;
END $$;
COMMENT ON FUNCTION compay.assign_job(text, text) IS
    'assigns a submitted job to a provider whose stake is at least compay.min_stake';

CREATE FUNCTION compay.complete_job(task_id text, started_at timestamptz,
    completed_at timestamptz, gpu_utilization numeric DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs := compay.lock_job(task_id);
BEGIN
    IF started_at IS NULL OR completed_at IS NULL THEN
        RAISE EXCEPTION 'started_at and completed_at must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_job_status(j, 'assigned', 'complete');
    PERFORM compay.require_not_timed_out(j);
    IF completed_at < started_at OR NOT isfinite(started_at) OR NOT isfinite(completed_at) THEN
        RAISE EXCEPTION 'a job cannot complete before it starts'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('started_at is %s, completed_at %s.', started_at, completed_at);
    END IF;
    IF gpu_utilization IS NOT NULL THEN
        PERFORM compay.utilization_factor(gpu_utilization);   -- 22023 outside [0, 1]
    END IF;
    UPDATE compay.jobs
    SET status = 'completed', started_at = complete_job.started_at,
        completed_at = complete_job.completed_at, gpu_utilization = complete_job.gpu_utilization,
        updated_at = now()
    WHERE id = j.id;
END $$;
COMMENT ON FUNCTION compay.complete_job(text, timestamptz, timestamptz, numeric) IS
    'marks an assigned job completed, with its run time and GPU utilization (0..1)';

CREATE FUNCTION compay.record_usage(task_id text, node_id text, sample_id text,
    sampled_at timestamptz, metrics compay.resource_metrics) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs;
BEGIN
    IF task_id IS NULL OR node_id IS NULL OR sample_id IS NULL OR sampled_at IS NULL
       OR metrics IS NULL THEN
        RAISE EXCEPTION 'task_id, node_id, sample_id, sampled_at and metrics must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_metrics(metrics);
    -- A share lock: samples of one task go in side by side, but not while
    -- the task is being paid (that takes the row FOR UPDATE).
    j := compay.lock_job(task_id, true);
    IF j.status = 'paid' THEN
        RAISE EXCEPTION 'task "%" is already paid', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Usage of a paid task can no longer change what it cost.';
    END IF;
    IF j.status IN ('failed', 'timed_out') THEN
        RAISE EXCEPTION 'task "%" is closed: it is %', left(task_id, 64), j.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF j.provider IS DISTINCT FROM node_id THEN
        RAISE EXCEPTION 'node "%" does not run task "%"', left(node_id, 64), left(task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only the task''s provider reports its usage.';
    END IF;
    INSERT INTO compay.usage_samples (job_id, sample_id, node_id, sampled_at, cpu_seconds,
        memory_byte_hours, storage_byte_hours, network_bytes_in, network_bytes_out,
        gpu_seconds, custom)
    VALUES (j.id, sample_id, node_id, sampled_at, coalesce(metrics.cpu_seconds, 0),
        coalesce(metrics.memory_byte_hours, 0), coalesce(metrics.storage_byte_hours, 0),
        coalesce(metrics.network_bytes_in, 0), coalesce(metrics.network_bytes_out, 0),
        coalesce(metrics.gpu_seconds, 0), nullif(metrics.custom, '{}'))
    ON CONFLICT DO NOTHING;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION compay.record_usage(text, text, text, timestamptz, compay.resource_metrics) IS
    'records one usage sample (the usage since the node''s previous one); the same sample_id again changes nothing and returns false';

CREATE FUNCTION compay.task_metrics(task_id text) RETURNS compay.resource_metrics
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_job bigint;
    m compay.resource_metrics;
BEGIN
    SELECT id INTO v_job FROM compay.jobs WHERE jobs.task_id = task_metrics.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task "%" does not exist', left(coalesce(task_id, 'NULL'), 64)
            USING ERRCODE = 'PY010';
    END IF;
    SELECT coalesce(sum(cpu_seconds), 0), coalesce(sum(memory_byte_hours), 0),
           coalesce(sum(storage_byte_hours), 0), coalesce(sum(network_bytes_in), 0),
           coalesce(sum(network_bytes_out), 0), coalesce(sum(gpu_seconds), 0),
           coalesce((SELECT jsonb_object_agg(key, total ORDER BY key)
                     FROM (SELECT c.key, sum(c.value::numeric) AS total
                           FROM compay.usage_samples s, jsonb_each(s.custom) c
                           WHERE s.job_id = v_job GROUP BY c.key) t), '{}')
    INTO m
    FROM compay.usage_samples WHERE job_id = v_job;
    RETURN m;
END $$;
COMMENT ON FUNCTION compay.task_metrics(text) IS 'the sum of a task''s usage samples';

-- What a completed job earns: compute_reward() for the Monero network's job
-- types (quality: the exact mean of the factors given), else price() of its
-- metered usage.  A NULL GPU utilization counts as utilization factor 1.
CREATE FUNCTION compay.job_amount(j compay.jobs, quality_factors numeric[]) RETURNS compay.credit
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM compay.job_types WHERE job_type = j.task_type) THEN
        RETURN compay.compute_reward(j.task_type, j.completed_at - j.started_at,
            CASE WHEN j.gpu_utilization IS NULL THEN 1.0
                 ELSE compay.utilization_factor(j.gpu_utilization) END,
            quality_factors);
    END IF;
    RETURN compay.price(compay.task_metrics(j.task_id), j.task_type, j.requester);
END $$;

-- Pays a job whose quorum passed: one ledger call (compay.settle_escrow).
CREATE FUNCTION compay.pay_verified_job(j compay.jobs) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
DECLARE
    v_ratio numeric := current_setting('compay.verification_reward_ratio')::numeric;
    v_verifiers text[];
    v_factors numeric[];
    v_amount compay.credit;
    v_reward compay.credit;
    v_payment bigint;
    v_transfer bigint;
BEGIN
    SELECT array_agg(verifier ORDER BY created_at, verifier), array_agg(quality_factor)
    INTO v_verifiers, v_factors
    FROM compay.verifications WHERE job_id = j.id AND passed;
    v_amount := least(compay.job_amount(j, v_factors), j.max_amount);
    v_reward := v_amount * v_ratio;             -- exact, rounded once half to even
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 resource_metrics, metadata)
    VALUES (j.task_id, j.requester, j.provider, v_amount, j.currency,
            (CASE WHEN j.currency = 'XMR' THEN 'crypto' ELSE 'credit' END)::compay.payment_method,
            'processing',
            compay.task_metrics(j.task_id),
            jsonb_build_object('escrow_hold_id', j.escrow_hold_id, 'verifiers', v_verifiers,
                               'verifier_reward', v_reward::text))
    RETURNING id INTO v_payment;
    v_transfer := compay.settle_escrow(j.escrow_hold_id, j.provider, v_amount, v_verifiers,
                                       v_reward, 'job:' || j.task_id);
    UPDATE compay.payments SET status = 'completed', completed_at = now(), transfer_id = v_transfer
    WHERE id = v_payment;
    UPDATE compay.verifications SET reward_amount = v_reward, rewarded_at = now()
    WHERE job_id = j.id AND passed;
    UPDATE compay.jobs SET status = 'paid', amount = v_amount, payment_id = v_payment,
                           updated_at = now()
    WHERE id = j.id;
    RETURN v_payment;
END $$;

CREATE FUNCTION compay.verify_job(task_id text, verifier text, passed boolean,
    quality_factor numeric DEFAULT NULL) RETURNS compay.job_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs := compay.lock_job(task_id);
    v_quorum integer := current_setting('compay.verification_quorum')::integer;
    v_passes integer;
    v_fails integer;
BEGIN
    IF verifier IS NULL OR passed IS NULL THEN
        RAISE EXCEPTION 'verifier and passed must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF j.max_amount IS NULL THEN
        RAISE EXCEPTION 'task "%" has no escrow to verify', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Pay a task without escrow with compay.process_task_payment().';
    END IF;
    PERFORM compay.require_job_status(j, 'completed', 'verify');
    PERFORM compay.require_not_timed_out(j);
    IF verifier IN (j.requester, j.provider) OR left(verifier, 1) = '$'
       OR length(verifier) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'node "%" cannot verify job "%"', left(verifier, 64), left(task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A verifier is neither the requester nor the provider of the job.';
    END IF;
    IF quality_factor IS NOT NULL AND NOT quality_factor BETWEEN 0.8 AND 1.5 THEN
        RAISE EXCEPTION 'quality factor % is outside [0.8, 1.5]', quality_factor
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO compay.verifications (job_id, verifier, passed, quality_factor)
    VALUES (j.id, verifier, passed, quality_factor)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node "%" has already voted on job "%"', left(verifier, 64), left(task_id, 64)
            USING ERRCODE = 'unique_violation';
    END IF;
    SELECT count(*) FILTER (WHERE v.passed), count(*) FILTER (WHERE NOT v.passed)
    INTO v_passes, v_fails
    FROM compay.verifications v WHERE v.job_id = j.id;
    IF v_passes >= v_quorum THEN
        PERFORM compay.pay_verified_job(j);
        RETURN 'paid';
    ELSIF v_fails >= v_quorum THEN
        -- Two calls touch the requester's and the provider's accounts:
        -- lock both first, in ascending id as the ledger does, so that two
        -- jobs failing between the same nodes in opposite roles cannot
        -- deadlock.
        PERFORM 1 FROM compay.accounts
        WHERE currency = j.currency AND node_id IN (j.requester, j.provider)
        ORDER BY id FOR UPDATE;
        PERFORM compay.release(j.escrow_hold_id);
        PERFORM compay.move_credit_score(j.provider, j.currency, false);
        UPDATE compay.jobs SET status = 'failed', updated_at = now() WHERE id = j.id;
        RETURN 'failed';
    END IF;
    RETURN 'completed';
END $$;
COMMENT ON FUNCTION compay.verify_job(text, text, boolean, numeric) IS
    'records one verifier''s vote; at compay.verification_quorum passes the job is paid from its escrow and the passing verifiers rewarded, at as many failures the escrow goes back to the requester';

CREATE FUNCTION compay.expire_jobs() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs;
    n integer := 0;
BEGIN
    -- In ascending order of the requester's account, so that the account
    -- locks the releases gather follow the ledger's order; SKIP LOCKED, so
    -- a job row held by another call is left for the next run.
    FOR j IN SELECT jobs.* FROM compay.jobs
             JOIN compay.accounts a ON a.node_id = jobs.requester AND a.currency = jobs.currency
             WHERE jobs.status IN ('submitted', 'assigned', 'completed') AND jobs.timeout_at <= now()
             ORDER BY a.id, jobs.id LIMIT 10000
             FOR UPDATE OF jobs SKIP LOCKED
    LOOP
        PERFORM compay.release(j.escrow_hold_id);
        UPDATE compay.jobs SET status = 'timed_out', updated_at = now() WHERE id = j.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION compay.expire_jobs() IS
    'releases the escrow of every open job past its timeout to the requester; returns how many';

CREATE FUNCTION compay.process_task_payment(task_id text,
    method compay.payment_method DEFAULT 'credit') RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    j compay.jobs := compay.lock_job(task_id);
    p compay.payments;
    v_currency text;
BEGIN
    IF method IS NULL THEN
        RAISE EXCEPTION 'method must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Paid at most once: a retry, of any method, gets the payment made.
    SELECT * INTO p FROM compay.payments
    WHERE payments.task_id = process_task_payment.task_id AND status <> 'failed';
    IF FOUND THEN
        RETURN p;
    END IF;
    IF j.max_amount IS NOT NULL THEN
        RAISE EXCEPTION 'job "%" is paid from its escrow after verification', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Use compay.verify_job().';
    END IF;
    IF method = 'fiat' THEN
        RAISE EXCEPTION 'fiat payments are not supported' USING ERRCODE = 'feature_not_supported',
            HINT = 'Pay with credit, barter or crypto.';
    END IF;
    PERFORM compay.require_job_status(j, 'completed', 'pay');
    v_currency := CASE method WHEN 'crypto' THEN 'XMR' WHEN 'barter' THEN 'CREDIT' ELSE j.currency END;
    IF v_currency <> j.currency THEN
        RAISE EXCEPTION 'task "%" is priced in %, not %', left(task_id, 64), j.currency, v_currency
            USING ERRCODE = 'PY003',
                  DETAIL = format('A %s payment moves %s.', method, v_currency),
                  HINT = 'Map the task type to a pricing model in that currency.';
    END IF;
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 resource_metrics)
    VALUES (task_id, j.requester, j.provider, compay.job_amount(j, NULL), v_currency, method,
            'processing', compay.task_metrics(task_id))
    RETURNING * INTO p;
    BEGIN
        IF p.amount > '0' THEN
            IF method = 'barter' THEN
                p.transfer_id := compay.grant_barter(j.provider, j.requester, p.amount,
                                                     'payment:' || p.id);
            ELSE
                p.transfer_id := compay.transfer(j.requester, j.provider, p.amount,
                                                 'payment:' || p.id, NULL, v_currency);
            END IF;
        END IF;
        UPDATE compay.payments SET status = 'completed', completed_at = now(),
                                   transfer_id = p.transfer_id
        WHERE id = p.id RETURNING * INTO p;
        UPDATE compay.jobs SET status = 'paid', amount = p.amount, payment_id = p.id,
                               updated_at = now()
        WHERE id = j.id;
    EXCEPTION WHEN SQLSTATE 'PY001' OR SQLSTATE 'PY002' THEN
        UPDATE compay.payments
        SET status = 'failed', completed_at = now(),
            metadata = metadata || jsonb_build_object('sqlstate', SQLSTATE, 'error', SQLERRM)
        WHERE id = p.id RETURNING * INTO p;
        PERFORM compay.move_credit_score(j.requester, v_currency, false);
    END;
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.process_task_payment(text, compay.payment_method) IS
    'pays a completed task without escrow once: metrics, price, payment record, then credit, barter or crypto';

-- The payment row, locked; PY012 if there is none.
CREATE FUNCTION compay.lock_payment(payment_id bigint) RETURNS compay.payments
LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
DECLARE
    p compay.payments;
BEGIN
    IF payment_id IS NULL THEN
        RAISE EXCEPTION 'payment_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO p FROM compay.payments WHERE id = payment_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payment % does not exist', payment_id USING ERRCODE = 'PY012';
    END IF;
    RETURN p;
END $$;

CREATE FUNCTION compay.dispute_payment(payment_id bigint, reason text) RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    p compay.payments := compay.lock_payment(payment_id);
    v_window interval := current_setting('compay.dispute_window')::interval;
BEGIN
    IF reason IS NULL OR length(reason) = 0 THEN
        RAISE EXCEPTION 'a dispute needs a reason' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p.status <> 'completed' THEN
        RAISE EXCEPTION 'cannot dispute payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF now() > p.completed_at + v_window THEN
        RAISE EXCEPTION 'the dispute window of payment % has closed', payment_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Payments can be disputed for %s after they complete (compay.dispute_window).',
                                  current_setting('compay.dispute_window'));
    END IF;
    UPDATE compay.payments SET status = 'disputed', dispute_reason = reason, disputed_at = now()
    WHERE id = payment_id RETURNING * INTO p;
    PERFORM compay.move_credit_score(p.to_node, p.currency, false);
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.dispute_payment(bigint, text) IS
    'disputes a completed payment within compay.dispute_window';

CREATE FUNCTION compay.resolve_dispute(payment_id bigint, refund_amount compay.credit)
RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    p compay.payments := compay.lock_payment(payment_id);
BEGIN
    IF refund_amount IS NULL THEN
        RAISE EXCEPTION 'refund_amount must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p.status <> 'disputed' THEN
        RAISE EXCEPTION 'cannot resolve payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF refund_amount < '0' THEN
        RAISE EXCEPTION 'a refund cannot be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF refund_amount > p.amount THEN
        RAISE EXCEPTION 'refund of % exceeds payment % of %', refund_amount, payment_id, p.amount
            USING ERRCODE = 'PY008';
    END IF;
    IF refund_amount = '0' THEN
        UPDATE compay.payments SET status = 'completed' WHERE id = payment_id RETURNING * INTO p;
        RETURN p;
    END IF;
    IF p.method = 'barter' THEN
        RAISE EXCEPTION 'barter payments cannot be refunded' USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Barter credits are not money the ledger can move back.',
            HINT = 'Resolve with refund 0, or grant barter credits back with compay.grant_barter().';
    END IF;
    UPDATE compay.payments
    SET status = 'refunded',
        refund_transfer_id = compay.refund(p.transfer_id, refund_amount, 'dispute:' || payment_id),
        metadata = metadata || jsonb_build_object('refund_amount', refund_amount::text)
    WHERE id = payment_id RETURNING * INTO p;
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.resolve_dispute(bigint, compay.credit) IS
    'ends a dispute: refund 0 puts the payment back to completed, more refunds it through the ledger';

-- Internal helpers: no role may call them directly.
REVOKE ALL ON FUNCTION compay.lock_job(text, boolean), compay.require_not_timed_out(compay.jobs),
    compay.task_currency(text),
    compay.require_job_status(compay.jobs, compay.job_status, text),
    compay.move_credit_score(text, text, boolean), compay.job_amount(compay.jobs, numeric[]),
    compay.pay_verified_job(compay.jobs), compay.lock_payment(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION compay.submit_job(text, text, text, compay.credit, interval),
    compay.submit_task(text, text, text, text),
    compay.stake(text, compay.credit, text), compay.unstake(text, compay.credit, text),
    compay.assign_job(text, text),
    compay.complete_job(text, timestamptz, timestamptz, numeric),
    compay.record_usage(text, text, text, timestamptz, compay.resource_metrics),
    compay.task_metrics(text), compay.verify_job(text, text, boolean, numeric),
    compay.expire_jobs(), compay.process_task_payment(text, compay.payment_method),
    compay.dispute_payment(bigint, text), compay.resolve_dispute(bigint, compay.credit)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.task_metrics(text) TO compay_reader;
GRANT EXECUTE ON FUNCTION compay.submit_job(text, text, text, compay.credit, interval),
    compay.submit_task(text, text, text, text),
    compay.stake(text, compay.credit, text), compay.unstake(text, compay.credit, text),
    compay.assign_job(text, text),
    compay.complete_job(text, timestamptz, timestamptz, numeric),
    compay.record_usage(text, text, text, timestamptz, compay.resource_metrics),
    compay.verify_job(text, text, boolean, numeric),
    compay.expire_jobs(), compay.process_task_payment(text, compay.payment_method),
    compay.dispute_payment(bigint, text)
    TO compay_app;
GRANT EXECUTE ON FUNCTION compay.resolve_dispute(bigint, compay.credit) TO compay_admin;

--------------------------------------------------------------------------
-- Settlement: completed payments batched per period, currency and payee.
-- compay.run_settlement() for pg_cron; the background worker
-- (src/worker.c) calls the same functions each round.
--------------------------------------------------------------------------

CREATE TYPE compay.settlement_period AS ENUM ('hourly', 'daily', 'weekly', 'monthly');
CREATE TYPE compay.settlement_status AS ENUM ('pending', 'processing', 'completed', 'failed');

CREATE SEQUENCE compay.settlements_id_seq;
CREATE TABLE compay.settlements (
    id              bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.settlements_id_seq'),
    period          compay.settlement_period NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    currency        text NOT NULL,
    payee           text NOT NULL,
    purpose         text NOT NULL DEFAULT 'primary',   -- verification: verifier rewards
    payment_count   bigint NOT NULL,
    total_amount    compay.credit NOT NULL,
    status          compay.settlement_status NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,
    earmark_hold_id bigint,                 -- XMR: the hold that keeps the amount for payout
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    completed_at    timestamptz,
    CONSTRAINT settlements_period CHECK (period_end > period_start),
    CONSTRAINT settlements_totals CHECK (payment_count > 0 AND total_amount >= '0'),
    CONSTRAINT settlements_purpose CHECK (purpose IN ('primary', 'verification'))
);
ALTER SEQUENCE compay.settlements_id_seq OWNED BY compay.settlements.id;
CREATE INDEX settlements_open ON compay.settlements (status, next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX settlements_payee ON compay.settlements (payee, currency, period_start);
COMMENT ON TABLE compay.settlements IS
    'completed payments of one period, currency and payee, gathered by compay.run_settlement()';
SELECT pg_catalog.pg_extension_config_dump('compay.settlements', '');
SELECT pg_catalog.pg_extension_config_dump('compay.settlements_id_seq', '');
REVOKE ALL ON compay.settlements, compay.settlements_id_seq FROM PUBLIC;
GRANT SELECT ON compay.settlements TO compay_reader;

-- The start of the period that holds ts, in UTC (weeks start on Monday).
CREATE FUNCTION compay.period_start(period compay.settlement_period, ts timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.date_trunc(CASE period WHEN 'hourly' THEN 'hour' WHEN 'daily' THEN 'day'
                                             WHEN 'weekly' THEN 'week' ELSE 'month' END,
                                 ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;
CREATE FUNCTION compay.period_end(period compay.settlement_period, start timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((start AT TIME ZONE 'UTC') + CASE period WHEN 'hourly' THEN interval '1 hour'
                                                     WHEN 'daily' THEN interval '1 day'
                                                     WHEN 'weekly' THEN interval '7 days'
                                                     ELSE interval '1 month' END) AT TIME ZONE 'UTC'
$$;
COMMENT ON FUNCTION compay.period_start(compay.settlement_period, timestamptz) IS
    'start of the settlement period holding ts, in UTC; weeks start on Monday';

-- Processes one settlement: credit and barter complete at once (the money
-- moved when each payment was made); XMR is earmarked for payout by a
-- hold on the payee's XMR account and stays processing until the payout.
-- A failure is recorded with its error and retried with backoff.
CREATE FUNCTION compay.process_settlement(settlement_id bigint, as_of timestamptz DEFAULT now())
RETURNS compay.settlement_status
LANGUAGE plpgsql SET search_path = pg_catalog, compay AS $$
DECLARE
    s compay.settlements;
    v_count bigint;
    v_total compay.credit;
BEGIN
    SELECT * INTO s FROM compay.settlements WHERE id = settlement_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'settlement % does not exist', settlement_id USING ERRCODE = 'PY013';
    END IF;
    IF s.status IN ('processing', 'completed') THEN
        RETURN s.status;
    END IF;
    BEGIN
        IF s.purpose = 'verification' THEN
            SELECT count(*), coalesce(compay.sum(reward_amount), '0') INTO v_count, v_total
            FROM compay.verifications v WHERE v.settlement_id = s.id;
        ELSE
            SELECT count(*), coalesce(compay.sum(amount), '0') INTO v_count, v_total
            FROM compay.payments p WHERE p.settlement_id = s.id;
        END IF;
        IF v_count <> s.payment_count OR v_total <> s.total_amount THEN
            RAISE EXCEPTION 'settlement % records % payments of %, its payments are % of %',
                s.id, s.payment_count, s.total_amount, v_count, v_total
                USING ERRCODE = 'data_corrupted';
        END IF;
        IF s.currency = 'XMR' THEN
            s.earmark_hold_id := compay.reserve(s.payee, s.total_amount, 'settlement:' || s.id,
                                                NULL, NULL, 'XMR');
            s.status := 'processing';
        ELSE
            s.status := 'completed';
        END IF;
        UPDATE compay.settlements
        SET status = s.status, attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL,
            earmark_hold_id = s.earmark_hold_id,
            completed_at = CASE WHEN s.status = 'completed' THEN now() END
        WHERE id = s.id;
    EXCEPTION WHEN OTHERS THEN
        -- Backoff: 1, 2, 4, ... minutes after each failure, at most an hour.
        UPDATE compay.settlements
        SET status = 'failed', attempts = attempts + 1,
            last_error = SQLSTATE || ': ' || SQLERRM,
            next_attempt_at = as_of + least(interval '1 minute' * power(2, attempts), interval '1 hour')
        WHERE id = s.id;
        RETURN 'failed';
    END;
    RETURN s.status;
END $$;

-- Processes new settlements and failed ones due for a retry; returns their ids.
CREATE FUNCTION compay.process_due_settlements(as_of timestamptz DEFAULT now())
RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_max integer := current_setting('compay.settlement_max_attempts')::integer;
    v_id bigint;
BEGIN
    FOR v_id IN
        SELECT id FROM compay.settlements
        WHERE status = 'pending'
           OR (status = 'failed' AND attempts < v_max AND next_attempt_at <= as_of)
        ORDER BY id
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM compay.process_settlement(v_id, as_of);
        RETURN NEXT v_id;
    END LOOP;
END $$;
COMMENT ON FUNCTION compay.process_due_settlements(timestamptz) IS
    'processes pending settlements and failed ones whose backoff has passed (fewer than compay.settlement_max_attempts attempts)';

CREATE FUNCTION compay.run_settlement(period compay.settlement_period DEFAULT 'hourly',
    as_of timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_cutoff timestamptz;
BEGIN
    IF period IS NULL OR as_of IS NULL THEN
        RAISE EXCEPTION 'period and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Only closed periods: everything completed before the start of the
    -- period that holds as_of.
    v_cutoff := compay.period_start(period, as_of);
    -- One run at a time.  A second run waits here, then reads the payments
    -- again and finds them settled; a payment committed after this point is
    -- left for the next run.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.run_settlement'));
    WITH eligible AS (
        SELECT p.id, p.to_node, p.currency, p.amount,
               compay.period_start(run_settlement.period, p.completed_at) AS ps
        FROM compay.payments p
        WHERE p.status = 'completed' AND p.settlement_id IS NULL AND p.completed_at < v_cutoff
        FOR UPDATE
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee,
                                        payment_count, total_amount)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, to_node, count(*), compay.sum(amount)
        FROM eligible GROUP BY ps, currency, to_node
        RETURNING id, period_start, currency, payee
    )
    UPDATE compay.payments p SET settlement_id = g.id
    FROM eligible e JOIN groups g
      ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.to_node
    WHERE p.id = e.id;
    -- Verifier rewards: their own settlements (purpose verification), paid
    -- out to the verifier's verification address when it has one.
    WITH eligible AS (
        SELECT v.job_id, v.verifier, j.currency, v.reward_amount AS amount,
               compay.period_start(run_settlement.period, v.rewarded_at) AS ps
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.settlement_id IS NULL AND v.reward_amount > '0' AND v.rewarded_at < v_cutoff
        FOR UPDATE OF v
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                        payment_count, total_amount)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, verifier, 'verification', count(*), compay.sum(amount)
        FROM eligible GROUP BY ps, currency, verifier
        RETURNING id, period_start, currency, payee
    )
    UPDATE compay.verifications v SET settlement_id = g.id
    FROM eligible e JOIN groups g
      ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
    WHERE v.job_id = e.job_id AND v.verifier = e.verifier;
    RETURN QUERY SELECT compay.process_due_settlements(as_of);
END $$;
COMMENT ON FUNCTION compay.run_settlement(compay.settlement_period, timestamptz) IS
    'gathers completed, unsettled payments of every closed period up to as_of into one settlement per period, currency and payee, and processes them; returns the ids processed';

CREATE FUNCTION compay.retry_settlement(settlement_id bigint) RETURNS compay.settlement_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    s compay.settlements;
BEGIN
    SELECT * INTO s FROM compay.settlements WHERE id = settlement_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'settlement % does not exist', settlement_id USING ERRCODE = 'PY013';
    END IF;
    IF s.status <> 'failed' THEN
        RAISE EXCEPTION 'cannot retry settlement %: it is %', settlement_id, s.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN compay.process_settlement(settlement_id);
END $$;
COMMENT ON FUNCTION compay.retry_settlement(bigint) IS
    'processes a failed settlement again now, whatever its attempts; returns its new status';

CREATE VIEW compay.failed_settlements AS
    SELECT id, period, period_start, currency, payee, payment_count, total_amount, attempts,
           last_error, next_attempt_at,
           attempts >= current_setting('compay.settlement_max_attempts')::integer AS gave_up
    FROM compay.settlements WHERE status = 'failed';
COMMENT ON VIEW compay.failed_settlements IS
    'failed settlements; gave_up: no more automatic retries, compay.retry_settlement() is needed';
GRANT SELECT ON compay.failed_settlements TO compay_reader;

REVOKE ALL ON FUNCTION compay.process_settlement(bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION compay.process_due_settlements(timestamptz),
    compay.run_settlement(compay.settlement_period, timestamptz),
    compay.retry_settlement(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.process_due_settlements(timestamptz),
    compay.run_settlement(compay.settlement_period, timestamptz) TO compay_app;
GRANT EXECUTE ON FUNCTION compay.retry_settlement(bigint) TO compay_admin;

-- The background worker (src/worker.c).
CREATE FUNCTION compay.wake_worker() RETURNS void
    AS 'MODULE_PATHNAME', 'compay_wake_worker' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.wake_worker() IS
    'when the calling transaction commits, the settlement worker runs a round at once, settlement included';
CREATE FUNCTION compay.worker_status(OUT state text, OUT pid integer,
    OUT last_round_start timestamptz, OUT last_round_end timestamptz,
    OUT next_settlement_due timestamptz, OUT rounds bigint, OUT holds_expired bigint,
    OUT jobs_expired bigint, OUT settlements_processed bigint,
    OUT last_error text, OUT last_error_at timestamptz)
    AS 'MODULE_PATHNAME', 'compay_worker_status' LANGUAGE C VOLATILE;
CREATE VIEW compay.worker_status AS SELECT * FROM compay.worker_status();
COMMENT ON VIEW compay.worker_status IS
    'the settlement worker: state, last round, next settlement, what the last round did, last error';
REVOKE ALL ON FUNCTION compay.wake_worker(), compay.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.wake_worker() TO compay_app;
GRANT EXECUTE ON FUNCTION compay.worker_status() TO compay_reader;
GRANT SELECT ON compay.worker_status TO compay_reader;

--------------------------------------------------------------------------
-- verify_ledger(): last, because it reads the tables of every section.
--------------------------------------------------------------------------

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
    UNION ALL
    -- 8. Every settlement's count and total are those of its payments.
    SELECT 'settlements_match_payments', count(*) = 0,
           coalesce('settlements ' || string_agg(id::text, ', ' ORDER BY id), 'all settlements match')
    FROM (SELECT s.id
          FROM compay.settlements s
          LEFT JOIN (SELECT settlement_id, amount, 'primary' AS purpose FROM compay.payments
                     WHERE settlement_id IS NOT NULL
                     UNION ALL
                     SELECT settlement_id, reward_amount, 'verification' FROM compay.verifications
                     WHERE settlement_id IS NOT NULL) p
            ON p.settlement_id = s.id AND p.purpose = s.purpose
          GROUP BY s.id, s.payment_count, s.total_amount
          HAVING count(p.amount) <> s.payment_count
              OR coalesce(compay.sum(p.amount), '0') OPERATOR(compay.<>) s.total_amount) bad
    UNION ALL
    -- 9. The requesters' daily volumes match their paid payments.
    SELECT 'requester_volume_matches_payments', count(*) = 0,
           coalesce('requesters ' || string_agg(DISTINCT from_node, ', '), 'all requester volumes match')
    FROM (SELECT coalesce(v.from_node, p.from_node) AS from_node
          FROM compay.requester_volume v
          FULL JOIN (SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date AS day,
                            count(*) AS payments
                     FROM compay.payments
                     WHERE status IN ('completed', 'disputed') AND completed_at IS NOT NULL
                     GROUP BY 1, 2) p
            ON p.from_node = v.from_node AND p.day = v.day
          WHERE coalesce(v.payments, 0) <> coalesce(p.payments, 0)) bad
$$;
COMMENT ON FUNCTION compay.verify_ledger() IS
    'checks every ledger invariant; each row is one check';
REVOKE ALL ON FUNCTION compay.verify_ledger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.verify_ledger() TO compay_reader;
--------------------------------------------------------------------------
-- Monero addresses, checked locally (src/monero_address.c): base58, the
-- Keccak-256 checksum, the network byte and the length of each kind.  No
-- wallet is asked, so these are IMMUTABLE; a regtest wallet's addresses
-- are mainnet addresses.
--------------------------------------------------------------------------

CREATE FUNCTION compay.monero_address_info(address text)
RETURNS TABLE (valid boolean, network text, kind text, reason text)
    AS 'MODULE_PATHNAME', 'compay_monero_address_info'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 1;
COMMENT ON FUNCTION compay.monero_address_info(text) IS
    'one row: whether the text is a valid Monero address, its network and kind (standard, subaddress, integrated), or the reason it is not; never raises an error for a bad address';

CREATE FUNCTION compay.check_monero_address(address text, network text) RETURNS text
    AS 'MODULE_PATHNAME', 'compay_check_monero_address'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.check_monero_address(text, text) IS
    'the kind (standard, subaddress, integrated) of a valid address of the network (mainnet, testnet, stagenet); 22023 for a bad address, an address of another network or an unknown network';

REVOKE ALL ON FUNCTION compay.monero_address_info(text),
    compay.check_monero_address(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.monero_address_info(text),
    compay.check_monero_address(text, text) TO compay_reader;

--------------------------------------------------------------------------
-- The treasury wallet: monero-wallet-rpc over JSON-RPC (src/wallet_rpc.c).
--------------------------------------------------------------------------

CREATE FUNCTION compay.wallet_rpc(method text, params jsonb DEFAULT '{}') RETURNS jsonb
    AS 'MODULE_PATHNAME', 'compay_wallet_rpc' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.wallet_rpc(text, jsonb) IS
    'one JSON-RPC call to compay.wallet_rpc_url, returning its result; PY014 when the wallet cannot be reached or refuses the login, PY015 when it answers with an error (superuser only; not inside a transaction that holds ledger locks)';
REVOKE ALL ON FUNCTION compay.wallet_rpc(text, jsonb) FROM PUBLIC;

--------------------------------------------------------------------------
-- Payout addresses and policies.
--------------------------------------------------------------------------

CREATE TYPE compay.address_purpose AS ENUM ('primary', 'operational', 'verification');

CREATE TABLE compay.payout_addresses (
    node_id    text NOT NULL,
    purpose    compay.address_purpose NOT NULL,
    address    text NOT NULL,
    kind       text NOT NULL,
    network    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (node_id, purpose)
);
COMMENT ON TABLE compay.payout_addresses IS
    'where each node is paid: primary, operational, and verification (verifier rewards) addresses, checked when set';

CREATE TABLE compay.payout_policies (
    node_id         text PRIMARY KEY,
    auto_payout     boolean,
    min_payout      compay.credit,
    payout_interval interval,
    max_per_day     compay.credit,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT payout_policies_amounts CHECK (min_payout >= '0' AND max_per_day > '0'),
    CONSTRAINT payout_policies_interval CHECK (payout_interval > interval '0')
);
COMMENT ON TABLE compay.payout_policies IS
    'a node''s own payout policy; NULL columns take the compay.* defaults';
SELECT pg_catalog.pg_extension_config_dump('compay.payout_addresses', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_policies', '');
REVOKE ALL ON compay.payout_addresses, compay.payout_policies FROM PUBLIC;
GRANT SELECT ON compay.payout_addresses, compay.payout_policies TO compay_reader;

CREATE FUNCTION compay.set_payout_address(node_id text, address text,
    purpose compay.address_purpose DEFAULT 'primary') RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_network text := current_setting('compay.monero_network');
    v_kind text;
BEGIN
    IF node_id IS NULL OR address IS NULL OR purpose IS NULL THEN
        RAISE EXCEPTION 'node_id, address and purpose must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(node_id) NOT BETWEEN 1 AND 200 OR left(node_id, 1) = '$' THEN
        RAISE EXCEPTION 'node id "%" cannot be paid', left(node_id, 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_kind := compay.check_monero_address(address, v_network);   -- 22023 with the reason
    INSERT INTO compay.payout_addresses AS a (node_id, purpose, address, kind, network)
    VALUES (node_id, purpose, address, v_kind, v_network)
    ON CONFLICT ON CONSTRAINT payout_addresses_pkey DO UPDATE
    SET address = EXCLUDED.address, kind = EXCLUDED.kind, network = EXCLUDED.network,
        updated_at = now();
    RETURN v_kind;
END $$;
COMMENT ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose) IS
    'sets a node''s payout address for a purpose after checking it for compay.monero_network; returns its kind';

CREATE FUNCTION compay.set_payout_policy(node_id text, auto_payout boolean,
    min_payout compay.credit, payout_interval interval, max_per_day compay.credit)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF min_payout < '0' OR max_per_day <= '0' OR payout_interval <= interval '0' THEN
        RAISE EXCEPTION 'a payout policy needs min_payout >= 0, max_per_day > 0 and a positive interval'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO compay.payout_policies AS p (node_id, auto_payout, min_payout, payout_interval,
                                             max_per_day)
    VALUES (node_id, auto_payout, min_payout, payout_interval, max_per_day)
    ON CONFLICT ON CONSTRAINT payout_policies_pkey DO UPDATE
    SET auto_payout = EXCLUDED.auto_payout, min_payout = EXCLUDED.min_payout,
        payout_interval = EXCLUDED.payout_interval, max_per_day = EXCLUDED.max_per_day,
        updated_at = now();
END $$;
COMMENT ON FUNCTION compay.set_payout_policy(text, boolean, compay.credit, interval, compay.credit) IS
    'sets a node''s payout policy; a NULL argument keeps the compay.* default for it';

CREATE FUNCTION compay.payout_policy(node_id text, OUT auto_payout boolean,
    OUT min_payout compay.credit, OUT payout_interval interval, OUT max_per_day compay.credit)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay AS $$
    SELECT coalesce(p.auto_payout, current_setting('compay.auto_payout')::boolean),
           coalesce(p.min_payout, current_setting('compay.payout_min')::compay.credit),
           coalesce(p.payout_interval, current_setting('compay.payout_interval')::interval),
           coalesce(p.max_per_day, current_setting('compay.payout_max_per_day')::compay.credit)
    FROM (SELECT 1) one
    LEFT JOIN compay.payout_policies p ON p.node_id = payout_policy.node_id
$$;
COMMENT ON FUNCTION compay.payout_policy(text) IS
    'the payout policy in force for a node: its own, with the compay.* defaults for what it leaves NULL';

REVOKE ALL ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose),
    compay.set_payout_policy(text, boolean, compay.credit, interval, compay.credit),
    compay.payout_policy(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.payout_policy(text) TO compay_reader;
GRANT EXECUTE ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose),
    compay.set_payout_policy(text, boolean, compay.credit, interval, compay.credit) TO compay_app;

--------------------------------------------------------------------------
-- Payouts: settled XMR paid to payees through the treasury wallet, driven
-- by the worker (src/payout.c) through a state machine kept here:
--   queued -> built (transfer with do_not_relay; the tx and its metadata
--   committed, the ledger debited) -> relayed (relay_tx, then store)
--   -> confirmed (compay.payout_confirmations), or failed (only when the
--   wallet refused to build it: nothing reached the network).
--------------------------------------------------------------------------

CREATE TYPE compay.payout_status AS ENUM ('queued', 'built', 'relayed', 'confirmed', 'failed');

CREATE SEQUENCE compay.payout_transactions_id_seq;
CREATE TABLE compay.payout_transactions (
    id              bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.payout_transactions_id_seq'),
    status          compay.payout_status NOT NULL DEFAULT 'queued',
    amount          compay.credit NOT NULL,
    fee             compay.credit,
    fee_from        text,
    tx_hash         text UNIQUE,
    tx_key          text,
    tx_metadata     text,
    key_images      text[],
    confirmations   integer NOT NULL DEFAULT 0,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,
    conflict_height bigint,         -- chain height when a key image was first seen spent elsewhere
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    built_at        timestamptz,
    relayed_at      timestamptz,
    confirmed_at    timestamptz,
    failed_at       timestamptz,
    CONSTRAINT payout_transactions_built CHECK (status IN ('queued', 'failed') OR
                                    (tx_hash IS NOT NULL AND tx_metadata IS NOT NULL))
);
ALTER SEQUENCE compay.payout_transactions_id_seq OWNED BY compay.payout_transactions.id;
CREATE INDEX payout_transactions_open ON compay.payout_transactions (status, id) WHERE status IN ('queued', 'built', 'relayed');
COMMENT ON TABLE compay.payout_transactions IS 'one Monero transaction paying up to compay.payout_batch_max payees';

CREATE TABLE compay.payout_items (
    payout_id      bigint NOT NULL REFERENCES compay.payout_transactions (id),
    node_id        text NOT NULL,
    address        text NOT NULL,
    amount         compay.credit NOT NULL,
    fee            compay.credit NOT NULL DEFAULT '0',
    settlement_ids bigint[] NOT NULL,
    PRIMARY KEY (payout_id, node_id, address),
    CONSTRAINT payout_items_amount CHECK (amount > '0' AND fee >= '0' AND fee < amount)
);
COMMENT ON COLUMN compay.payout_items.fee IS
    'the payee''s share of the network fee, paid out of its amount (compay.payout_fee_payer = ''payee''); it receives amount - fee';
CREATE INDEX payout_items_node ON compay.payout_items (node_id);
ALTER TABLE compay.settlements ADD COLUMN payout_id bigint;
SELECT pg_catalog.pg_extension_config_dump('compay.payout_transactions', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_transactions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_items', '');
REVOKE ALL ON compay.payout_transactions, compay.payout_items, compay.payout_transactions_id_seq FROM PUBLIC;
GRANT SELECT ON compay.payout_transactions, compay.payout_items TO compay_reader;

CREATE FUNCTION compay.payout_withdraw(hold_ids bigint[], fee compay.credit, fee_from text,
    reference text) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_payout_withdraw'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;
REVOKE ALL ON FUNCTION compay.payout_withdraw(bigint[], compay.credit, text, text) FROM PUBLIC;

CREATE FUNCTION compay.payout_return(payout_id bigint) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_payout_return'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay;
REVOKE ALL ON FUNCTION compay.payout_return(bigint) FROM PUBLIC;

-- Gathers each payee's earmarked XMR settlements into queued payouts,
-- by its policy (auto payout, minimum, interval since its last payout,
-- daily cap: what is over waits), at most compay.payout_batch_max payees
-- a payout.  Returns the payouts queued.
CREATE FUNCTION compay.queue_payouts() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_batch integer := current_setting('compay.payout_batch_max')::integer;
    v_payout bigint;
    v_n integer := 0;
    v_items integer := 0;
    r record;
BEGIN
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
    FOR r IN
        WITH open AS (
            -- Verifier rewards go to the verification address when there is one.
            SELECT s.id, s.payee, s.total_amount, coalesce(v.address, a.address) AS address,
                   compay.sum(s.total_amount) OVER (PARTITION BY s.payee ORDER BY s.id) AS running
            FROM compay.settlements s
            JOIN compay.payout_addresses a ON a.node_id = s.payee AND a.purpose = 'primary'
            LEFT JOIN compay.payout_addresses v
              ON v.node_id = s.payee AND v.purpose = 'verification' AND s.purpose = 'verification'
            WHERE s.currency = 'XMR' AND s.status = 'processing' AND s.payout_id IS NULL
              AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
        ), node AS (
            SELECT o.payee, pol.*,
                   coalesce((SELECT compay.sum(i.amount) FROM compay.payout_items i
                             JOIN compay.payout_transactions p ON p.id = i.payout_id
                             WHERE i.node_id = o.payee AND p.status <> 'failed'
                               AND p.created_at > now() - interval '1 day'), '0') AS paid_today,
                   (SELECT max(p.created_at) FROM compay.payout_items i
                    JOIN compay.payout_transactions p ON p.id = i.payout_id
                    WHERE i.node_id = o.payee AND p.status <> 'failed') AS last_payout
            FROM (SELECT DISTINCT payee FROM open) o
            CROSS JOIN LATERAL compay.payout_policy(o.payee) pol
        )
        SELECT n.payee, o.address, array_agg(o.id ORDER BY o.id) AS ids,
               compay.sum(o.total_amount) AS amount
        FROM node n JOIN open o ON o.payee = n.payee
        WHERE n.auto_payout
          AND (n.last_payout IS NULL OR n.last_payout <= now() - n.payout_interval)
          AND n.paid_today + o.running <= n.max_per_day
        GROUP BY n.payee, o.address, n.min_payout
        HAVING compay.sum(o.total_amount) >= n.min_payout
        ORDER BY n.payee, o.address
    LOOP
        IF v_payout IS NULL OR v_items >= v_batch THEN
            INSERT INTO compay.payout_transactions (amount) VALUES ('0') RETURNING id INTO v_payout;
            v_n := v_n + 1;
            v_items := 0;
        END IF;
        INSERT INTO compay.payout_items (payout_id, node_id, address, amount, settlement_ids)
        VALUES (v_payout, r.payee, r.address, r.amount, r.ids);
        UPDATE compay.payout_transactions SET amount = amount + r.amount WHERE id = v_payout;
        UPDATE compay.settlements SET payout_id = v_payout WHERE id = ANY (r.ids);
        v_items := v_items + 1;
    END LOOP;
    RETURN v_n;
END $$;

-- Each payee's share of a payout's network fee when the payees pay it: in
-- proportion to its amount, rounded down to the piconero; the first payee
-- (by node id) also pays what rounding left.  The shares add up to the fee.
CREATE FUNCTION compay.payout_fee_shares(payout_id bigint, fee compay.credit)
RETURNS TABLE (node_id text, address text, share compay.credit)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay AS $$
    WITH i AS (
        SELECT i.node_id, i.address, compay.atomic(i.amount) AS amount,
               sum(compay.atomic(i.amount)) OVER () AS total,
               row_number() OVER (ORDER BY i.node_id, i.address) AS n
        FROM compay.payout_items i WHERE i.payout_id = $1
    ), s AS (
        SELECT i.node_id, i.address, i.n, floor(compay.atomic($2) * i.amount / i.total) AS share
        FROM i
    )
    SELECT s.node_id, s.address, compay.credit_from_atomic(
               s.share + CASE WHEN s.n = 1 THEN compay.atomic($2) - sum(s.share) OVER () ELSE 0 END)
    FROM s ORDER BY s.node_id, s.address
$$;

-- The wallet's transfer parameters of a queued payout (amounts in atomic
-- units): each payee's amount, less its share of fee (0 when the network
-- pays the fee).
CREATE FUNCTION compay.payout_transfer_params(payout_id bigint, fee compay.credit DEFAULT '0')
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, compay AS $$
    SELECT jsonb_build_object(
        'destinations', jsonb_agg(jsonb_build_object(
                            'amount', compay.atomic(i.amount) - compay.atomic(f.share),
                            'address', i.address) ORDER BY i.node_id, i.address),
        'account_index', 0, 'priority', 0, 'do_not_relay', true, 'get_tx_key', true,
        'get_tx_hex', false, 'get_tx_metadata', true)
    FROM compay.payout_items i
    JOIN compay.payout_fee_shares($1, $2) f ON f.node_id = i.node_id AND f.address = i.address
    WHERE i.payout_id = $1
$$;

-- Built: the transaction exists (not yet relayed); record it and debit
-- the ledger in the same transaction, before anything is sent.  With
-- payees_pay_fee the transaction already paid each payee its amount less
-- its share of the fee (compay.payout_transfer_params(id, fee)): the
-- shares are recorded and $fees pays nothing.  The transaction must pay
-- exactly what the items say, or nothing is recorded.
CREATE FUNCTION compay.record_payout_built(payout_id bigint, reply jsonb,
    payees_pay_fee boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    p compay.payout_transactions;
    v_fee compay.credit := compay.credit_from_atomic((reply->>'fee')::numeric);
    v_holds bigint[];
    v_sent numeric;
BEGIN
    SELECT * INTO p FROM compay.payout_transactions WHERE id = payout_id FOR UPDATE;
    IF p.status <> 'queued' THEN
        RAISE EXCEPTION 'payout % is %, not queued', payout_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF payees_pay_fee THEN
        UPDATE compay.payout_items i SET fee = f.share
        FROM compay.payout_fee_shares(p.id, v_fee) f
        WHERE i.payout_id = p.id AND i.node_id = f.node_id AND i.address = f.address;
    END IF;
    SELECT sum(compay.atomic(i.amount) - compay.atomic(i.fee)) INTO v_sent
    FROM compay.payout_items i WHERE i.payout_id = p.id;
    IF v_sent IS DISTINCT FROM (reply->>'amount')::numeric THEN
        RAISE EXCEPTION 'payout % would send % atomic units, the transaction sends %',
            payout_id, v_sent, reply->>'amount'
            USING ERRCODE = 'data_corrupted';
    END IF;
    SELECT array_agg(s.earmark_hold_id ORDER BY s.earmark_hold_id) INTO v_holds
    FROM compay.settlements s WHERE s.payout_id = record_payout_built.payout_id;
    PERFORM compay.payout_withdraw(v_holds, CASE WHEN payees_pay_fee THEN '0' ELSE v_fee END,
                                   '$fees', 'payout:' || p.id);
    UPDATE compay.payout_transactions
    SET status = 'built', fee = v_fee, fee_from = CASE WHEN payees_pay_fee THEN 'payees' ELSE '$fees' END,
        tx_hash = reply->>'tx_hash', tx_key = reply->>'tx_key',
        tx_metadata = reply->>'tx_metadata',
        key_images = ARRAY(SELECT jsonb_array_elements_text(reply->'spent_key_images'->'key_images')),
        attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL, built_at = now()
    WHERE id = p.id;
END $$;

-- The wallet refused to build it: nothing reached the network.  The
-- settlements go back to be queued again after a backoff.
CREATE FUNCTION compay.record_payout_failed(payout_id bigint, reason text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
BEGIN
    UPDATE compay.payout_transactions SET status = 'failed', last_error = reason, failed_at = now(),
                              attempts = attempts + 1
    WHERE id = payout_id AND status = 'queued';
    IF NOT FOUND THEN
        RETURN;             -- not queued: built or sent, its settlements stay with it
    END IF;
    -- Queued again after a backoff: 10 s, 20 s, 40 s, ... at most 10 minutes,
    -- by how many payouts of the settlement have failed.
    UPDATE compay.settlements s
    SET payout_id = NULL,
        next_attempt_at = now() + least(interval '10 seconds' * power(2, least(
            (SELECT count(*) - 1 FROM compay.payout_items i
             JOIN compay.payout_transactions p ON p.id = i.payout_id
             WHERE p.status = 'failed' AND s.id = ANY (i.settlement_ids)), 10)),
            interval '10 minutes')
    WHERE s.payout_id = record_payout_failed.payout_id;
END $$;

-- Built or relayed, and certain never to reach the chain: the daemon has
-- not got it (neither pool nor chain) and one of its key images is spent
-- on chain by another transaction.  The ledger gets the amounts and the
-- fee back, the settlements are earmarked again and queued after a
-- backoff.
CREATE FUNCTION compay.record_payout_voided(payout_id bigint, reason text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    s record;
BEGIN
    UPDATE compay.payout_transactions SET status = 'failed', last_error = reason, failed_at = now(),
                              attempts = attempts + 1
    WHERE id = payout_id AND status IN ('built', 'relayed');
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM compay.payout_return(payout_id);
    FOR s IN SELECT id, payee, total_amount FROM compay.settlements
             WHERE settlements.payout_id = record_payout_voided.payout_id ORDER BY id
    LOOP
        UPDATE compay.settlements
        SET payout_id = NULL, next_attempt_at = now() + interval '10 seconds',
            earmark_hold_id = compay.reserve(s.payee, s.total_amount, 'settlement:' || s.id,
                                             NULL, NULL, 'XMR')
        WHERE id = s.id;
    END LOOP;
END $$;

-- A key image of the payout's transaction is spent on chain by another
-- transaction, seen at the daemon's height: remembers the first height
-- and says whether compay.payout_confirmations blocks have passed since,
-- so that the payout may be voided.
CREATE FUNCTION compay.record_payout_conflict(payout_id bigint, height bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_first bigint;
BEGIN
    UPDATE compay.payout_transactions
    SET conflict_height = coalesce(conflict_height, height),
        last_error = 'conflict: a key image is spent by another transaction on chain',
        next_attempt_at = now() + interval '10 seconds'
    WHERE id = payout_id AND status IN ('built', 'relayed')
    RETURNING conflict_height INTO v_first;
    RETURN v_first IS NOT NULL
       AND height - v_first >= current_setting('compay.payout_confirmations')::integer;
END $$;

-- Outcome unknown or the wallet unreachable: stay in the state, retry later.
CREATE FUNCTION compay.record_payout_retry(payout_id bigint, reason text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
    UPDATE compay.payout_transactions
    SET attempts = attempts + 1, last_error = reason,
        next_attempt_at = now() + least(interval '10 seconds' * power(2, least(attempts, 10)),
                                        interval '10 minutes')
    WHERE id = payout_id
$$;

CREATE FUNCTION compay.record_payout_relayed(payout_id bigint) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
    UPDATE compay.payout_transactions SET status = 'relayed', relayed_at = now(), last_error = NULL,
                              next_attempt_at = NULL, conflict_height = NULL
    WHERE id = payout_id AND status = 'built'
$$;

CREATE FUNCTION compay.record_payout_confirmations(payout_id bigint, confirmations integer)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
BEGIN
    UPDATE compay.payout_transactions SET confirmations = record_payout_confirmations.confirmations
    WHERE id = payout_id AND status = 'relayed';
    IF confirmations >= current_setting('compay.payout_confirmations')::integer THEN
        UPDATE compay.payout_transactions SET status = 'confirmed', confirmed_at = now()
        WHERE id = payout_id AND status = 'relayed';
        UPDATE compay.settlements SET status = 'completed', completed_at = now()
        WHERE settlements.payout_id = record_payout_confirmations.payout_id
          AND status = 'processing';
    END IF;
END $$;

CREATE VIEW compay.payouts AS
    SELECT i.node_id, p.id AS payout_id, i.amount, p.fee, p.tx_hash, p.confirmations, p.status,
           p.created_at, p.confirmed_at
    FROM compay.payout_items i JOIN compay.payout_transactions p ON p.id = i.payout_id;
COMMENT ON VIEW compay.payouts IS 'payouts per node: amount, fee of the transaction, tx hash, confirmations, status';
GRANT SELECT ON compay.payouts TO compay_reader;

REVOKE ALL ON FUNCTION compay.queue_payouts(), compay.payout_transfer_params(bigint, compay.credit),
    compay.payout_fee_shares(bigint, compay.credit),
    compay.record_payout_built(bigint, jsonb, boolean), compay.record_payout_failed(bigint, text),
    compay.record_payout_retry(bigint, text), compay.record_payout_relayed(bigint),
    compay.record_payout_voided(bigint, text), compay.record_payout_conflict(bigint, bigint),
    compay.record_payout_confirmations(bigint, integer) FROM PUBLIC;

-- Checks a payout on chain: what each payee's address received by the
-- transaction, from its tx key (check_tx_key).  Calls the wallet: use it
-- outside transactions that hold ledger locks.
CREATE FUNCTION compay.verify_payout(payout_id bigint)
RETURNS TABLE (node_id text, address text, amount compay.credit, received compay.credit,
               confirmations integer, in_pool boolean, ok boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    p compay.payout_transactions;
    i compay.payout_items;
    r jsonb;
BEGIN
    SELECT * INTO p FROM compay.payout_transactions WHERE id = payout_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payout % does not exist', payout_id USING ERRCODE = 'PY016';
    END IF;
    IF p.tx_hash IS NULL THEN
        RAISE EXCEPTION 'payout % has no transaction yet: it is %', payout_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR i IN SELECT * FROM compay.payout_items WHERE payout_items.payout_id = p.id ORDER BY 2 LOOP
        r := compay.wallet_rpc('check_tx_key', jsonb_build_object(
                 'txid', p.tx_hash, 'tx_key', p.tx_key, 'address', i.address));
        node_id := i.node_id;
        address := i.address;
        amount := i.amount - i.fee;
        received := compay.credit_from_atomic((r->>'received')::numeric);
        confirmations := (r->>'confirmations')::integer;
        in_pool := (r->>'in_pool')::boolean;
        ok := received = i.amount - i.fee;
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION compay.verify_payout(bigint) IS
    'asks the wallet (check_tx_key) what each payee address received by the payout''s transaction';

CREATE FUNCTION compay.payout_proof(payout_id bigint, message text DEFAULT '')
RETURNS TABLE (node_id text, address text, tx_hash text, signature text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    p compay.payout_transactions;
    i compay.payout_items;
BEGIN
    SELECT * INTO p FROM compay.payout_transactions WHERE id = payout_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payout % does not exist', payout_id USING ERRCODE = 'PY016';
    END IF;
    IF p.status NOT IN ('relayed', 'confirmed') THEN
        RAISE EXCEPTION 'payout % was not sent: it is %', payout_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR i IN SELECT * FROM compay.payout_items WHERE payout_items.payout_id = p.id ORDER BY 2 LOOP
        node_id := i.node_id;
        address := i.address;
        tx_hash := p.tx_hash;
        signature := compay.wallet_rpc('get_tx_proof', jsonb_build_object(
                         'txid', p.tx_hash, 'address', i.address,
                         'message', coalesce(message, '')))->>'signature';
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION compay.payout_proof(bigint, text) IS
    'a proof per payee (get_tx_proof) that the payout''s transaction paid its address; payees check it with their own wallet (check_tx_proof)';

--------------------------------------------------------------------------
-- Deposits: XMR sent to a node's subaddress credits its XMR account once,
-- after compay.deposit_confirmations, so jobs can be escrowed in XMR.
--------------------------------------------------------------------------

CREATE TABLE compay.deposit_addresses (
    node_id       text PRIMARY KEY,
    address       text NOT NULL UNIQUE,
    address_index integer NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE compay.xmr_deposits (
    tx_hash       text NOT NULL,
    global_index  bigint NOT NULL,           -- the output's index on chain
    address_index integer NOT NULL,
    node_id       text NOT NULL,
    amount        compay.credit NOT NULL,
    block_height  bigint,
    transfer_id   bigint NOT NULL,
    credited_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (tx_hash, global_index)
);
COMMENT ON TABLE compay.deposit_addresses IS 'one treasury subaddress per node for its XMR deposits';
COMMENT ON TABLE compay.xmr_deposits IS
    'XMR deposits credited, once per output (transaction and global output index), after compay.deposit_confirmations';
SELECT pg_catalog.pg_extension_config_dump('compay.deposit_addresses', '');
SELECT pg_catalog.pg_extension_config_dump('compay.xmr_deposits', '');
REVOKE ALL ON compay.deposit_addresses, compay.xmr_deposits FROM PUBLIC;
GRANT SELECT ON compay.deposit_addresses, compay.xmr_deposits TO compay_reader;

CREATE FUNCTION compay.deposit_address(node_id text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_address text;
    r jsonb;
BEGIN
    IF node_id IS NULL OR length(node_id) NOT BETWEEN 1 AND 200 OR left(node_id, 1) = '$' THEN
        RAISE EXCEPTION 'node id "%" cannot have a deposit address', left(coalesce(node_id, 'NULL'), 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One address per node, even for two calls at once.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.deposit_address:' || node_id));
    SELECT address INTO v_address FROM compay.deposit_addresses d WHERE d.node_id = deposit_address.node_id;
    IF FOUND THEN
        RETURN v_address;
    END IF;
    r := compay.wallet_rpc('create_address', jsonb_build_object('account_index', 0, 'label', node_id));
    PERFORM compay.wallet_rpc('store');
    INSERT INTO compay.deposit_addresses (node_id, address, address_index)
    VALUES (node_id, r->>'address', (r->>'address_index')::integer);
    RETURN r->>'address';
END $$;
COMMENT ON FUNCTION compay.deposit_address(text) IS
    'the node''s deposit subaddress of the treasury wallet, made (create_address, then store) on first use';

-- Credits the outputs the worker read (incoming_transfers, at the
-- wallet's height) that reached compay.deposit_confirmations and were not
-- credited yet: once per output, by tx hash and global output index.
-- Returns how many.
CREATE FUNCTION compay.record_deposits(reply jsonb, height bigint) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay AS $$
DECLARE
    v_min integer := current_setting('compay.deposit_confirmations')::integer;
    t record;
    v_n integer := 0;
    v_transfer bigint;
BEGIN
    FOR t IN
        SELECT e->>'tx_hash' AS txid, (e->>'global_index')::bigint AS output,
               (e->'subaddr_index'->>'minor')::integer AS idx,
               compay.credit_from_atomic((e->>'amount')::numeric) AS amount,
               (e->>'block_height')::bigint AS block_height, d.node_id
        FROM jsonb_array_elements(coalesce(reply->'transfers', '[]')) e
        JOIN compay.deposit_addresses d
          ON d.address_index = (e->'subaddr_index'->>'minor')::integer
        WHERE (e->'subaddr_index'->>'major')::integer = 0
          AND (e->>'block_height')::bigint > 0
          AND record_deposits.height - (e->>'block_height')::bigint >= v_min
        ORDER BY 1, 2
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM compay.xmr_deposits x
                              WHERE x.tx_hash = t.txid AND x.global_index = t.output);
        v_transfer := compay.deposit(t.node_id, t.amount, 'XMR', 'xmr:' || t.txid,
                                     'xmr-deposit:' || t.txid || ':' || t.output);
        INSERT INTO compay.xmr_deposits (tx_hash, global_index, address_index, node_id, amount,
                                         block_height, transfer_id)
        VALUES (t.txid, t.output, t.idx, t.node_id, t.amount, t.block_height, v_transfer);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END $$;

REVOKE ALL ON FUNCTION compay.verify_payout(bigint), compay.payout_proof(bigint, text),
    compay.deposit_address(text), compay.record_deposits(jsonb, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.verify_payout(bigint), compay.payout_proof(bigint, text)
    TO compay_reader;
GRANT EXECUTE ON FUNCTION compay.deposit_address(text) TO compay_app;
