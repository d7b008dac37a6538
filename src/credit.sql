-- compay's install script, sql/compay--<version>.sql, is this file and
-- the other src/*.sql pieces, concatenated in the Makefile's SQL_PIECES
-- order.  This first piece: compay.setting(), which every later piece
-- uses to read a setting, and the credit type.

\echo Use "CREATE EXTENSION compay" to load this file. \quit

--------------------------------------------------------------------------
-- compay.setting(name): current_setting(name) of a compay.* setting, with
-- the library loaded.  It is a C function, so calling it loads compay,
-- whose _PG_init defines every compay.* setting with its default: the SQL
-- reads its settings with it, never with current_setting(), so that a
-- session that has not loaded the library yet (no shared_preload_libraries)
-- finds them on its first call.
--------------------------------------------------------------------------

CREATE FUNCTION compay.setting(name text) RETURNS text
    AS 'MODULE_PATHNAME', 'compay_setting' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.setting(text) IS
    'current_setting() of a compay.* setting, with the library loaded first: works as the first call of a session';

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
    -- The string category, not N: an untyped literal ('5', NULL) given
    -- where a function has a credit twin taking numeric (src/amounts.sql)
    -- then resolves to credit and is read by credit_in.  In category N,
    -- beside numeric and neither being N's preferred type (float8), such
    -- a call would be ambiguous.  The category only guides the resolution
    -- of unknown literals; no implicit cast comes with it.
    CATEGORY = 'S'
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

-- Aggregates.  sum, avg and sum_atomic share an in-place state (an int128
-- and a carry, so that running totals never overflow) and run in parallel
-- through combine and serial functions.

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
CREATE FUNCTION compay.credit_sum_atomic_final(internal) RETURNS numeric
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
CREATE AGGREGATE compay.sum_atomic(compay.credit) (
    SFUNC = compay.credit_sum_accum, STYPE = internal, SSPACE = 32,
    FINALFUNC = compay.credit_sum_atomic_final,
    COMBINEFUNC = compay.credit_sum_combine,
    SERIALFUNC = compay.credit_sum_serialize,
    DESERIALFUNC = compay.credit_sum_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE compay.sum_atomic(compay.credit) IS
    'the exact sum as a numeric count of atomic units; never out of range';
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
