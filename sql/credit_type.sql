-- compay.credit: text and binary input/output, casts and functions.
SET search_path = public, compay;

-- Valid text input, printed as the shortest exact decimal.
SELECT v, v::credit AS credit
FROM (VALUES ('0'), ('-0'), ('1.5'), ('.5'), ('5.'), (' 1 '), (E'\t2.25\n'),
             ('+7'), ('12'), ('-0.000000000001'), ('0.000000000001'),
             ('1.100000000000'), ('000123.450'), ('-42.000000000001'),
             ('170141183460469231731687303.715884105727'),
             ('-170141183460469231731687303.715884105727')) AS t(v);

-- Bad text input: 22P02 (syntax, too many decimals) and 22003 (range).
\set VERBOSITY default
SELECT ''::credit; \echo :LAST_ERROR_SQLSTATE
SELECT ' '::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '-'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '+'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '.'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '1e3'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '1E3'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT 'NaN'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT 'Infinity'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '1,000'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '1 000'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '1_000'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '--1'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '0x10'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '1.2.3'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '1.0000000000000'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '0.0000000000001'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '170141183460469231731687303.715884105728'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '-170141183460469231731687303.715884105728'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '999999999999999999999999999999999999999999999'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '99999999999999999999999999999999999999999999x'::credit; \echo :LAST_ERROR_SQLSTATE
SELECT repeat('7', 200)::credit; \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- Every value round-trips through text exactly.
SELECT setseed(0.42);
SELECT count(*) AS text_round_trip_failures
FROM (SELECT credit_from_atomic((random() * 1e30)::numeric(40,0) * (CASE WHEN i % 2 = 0 THEN 1 ELSE -1 END)) AS c
      FROM generate_series(1, 1000) AS i) s
WHERE c::text::credit <> c OR atomic(c::text::credit) <> atomic(c);

-- Binary send/recv through COPY (FORMAT binary).
SELECT '/tmp/compay_credit_type_' || pg_backend_pid() || '.bin' AS bin_file \gset
CREATE TEMP TABLE bin_src (c credit);
INSERT INTO bin_src VALUES ('0'), ('1.5'), ('-0.000000000001'),
    ('170141183460469231731687303.715884105727'),
    ('-170141183460469231731687303.715884105727'), (NULL);
COPY bin_src TO :'bin_file' (FORMAT binary);
CREATE TEMP TABLE bin_dst (c credit);
COPY bin_dst FROM :'bin_file' (FORMAT binary);
SELECT c FROM bin_dst ORDER BY c NULLS FIRST;
SELECT (SELECT count(*) FROM bin_src s JOIN bin_dst d ON s.c = d.c) AS matched;
SELECT credit_send('-1.5'::credit);
SELECT credit_send('0.000000000001'::credit);

-- Binary input is validated like text.  write_copy_file() writes a binary
-- COPY file holding one field of the given bytes.
CREATE FUNCTION pg_temp.write_copy_file(path text, field bytea) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
    file bytea := decode('5047434f50590aff0d0a00' || '0000000000000000' || '0001', 'hex')
        || int4send(length(field)) || field || decode('ffff', 'hex');
BEGIN
    EXECUTE format('COPY (SELECT %L) TO PROGRAM %L',
                   translate(encode(file, 'base64'), E'\n', ''),
                   'base64 -d > ' || path);
END $f$;
-- A well-formed 16-byte value loads: 2^64 atomic units.
SELECT pg_temp.write_copy_file(:'bin_file', decode('00000000000000010000000000000000', 'hex'));
TRUNCATE bin_dst;
COPY bin_dst FROM :'bin_file' (FORMAT binary);
SELECT c, atomic(c) FROM bin_dst;
-- -2^127 is the one 16-byte pattern that is not a credit: 22003.
\set VERBOSITY default
SELECT pg_temp.write_copy_file(:'bin_file', decode('80000000000000000000000000000000', 'hex'));
COPY bin_dst FROM :'bin_file' (FORMAT binary); \echo :LAST_ERROR_SQLSTATE
-- Too short (8 bytes) and too long (17 bytes).
SELECT pg_temp.write_copy_file(:'bin_file', decode('0000000000000001', 'hex'));
COPY bin_dst FROM :'bin_file' (FORMAT binary); \echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.write_copy_file(:'bin_file', decode('0000000000000000000000000000000100', 'hex'));
COPY bin_dst FROM :'bin_file' (FORMAT binary); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT count(*) AS rows_after_bad_binary FROM bin_dst;
\set rm_cmd 'rm -f ' :bin_file
COPY (SELECT 1) TO PROGRAM :'rm_cmd';

-- Casts from integers (whole units) and numeric, both on assignment.
SELECT 7::smallint::credit, (-7)::integer::credit, 9223372036854775807::bigint::credit,
       (-9223372036854775808)::bigint::credit;
SELECT 1.5::numeric::credit, (-0.000000000001)::numeric::credit,
       1.000000000000000::numeric::credit AS trailing_zeros_ok,
       170141183460469231731687303.715884105727::numeric::credit;
SELECT '1.5'::credit::numeric, '-0.000000000001'::credit::numeric,
       '170141183460469231731687303.715884105727'::credit::numeric;
\set VERBOSITY default
SELECT 1.0000000000001::numeric::credit; \echo :LAST_ERROR_SQLSTATE
SELECT 170141183460469231731687303.715884105728::numeric::credit; \echo :LAST_ERROR_SQLSTATE
SELECT 'NaN'::numeric::credit; \echo :LAST_ERROR_SQLSTATE
SELECT 'Infinity'::numeric::credit; \echo :LAST_ERROR_SQLSTATE
SELECT '-Infinity'::numeric::credit; \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
-- Assignment casts apply in INSERT and UPDATE.
CREATE TEMP TABLE cast_target (c credit);
INSERT INTO cast_target VALUES (2.5::numeric), (3), (4::bigint), (5::smallint);
SELECT c FROM cast_target ORDER BY c;
-- Literals in quotes take the credit type; numbers need a cast, so numeric
-- and credit never mix silently, and numeric * integer stays unambiguous.
SELECT '1.5'::credit > '1' AS gt_one, '1.5'::credit + '1' AS plus_one,
       '1.5'::credit > 1::credit AS gt_cast;
SELECT 2.5 * 2 AS numeric_times_int, 2 * 2.5 AS int_times_numeric;
SELECT '1.5'::credit + 1.5; \echo :LAST_ERROR_SQLSTATE
SELECT '1.5'::credit > 1; \echo :LAST_ERROR_SQLSTATE

-- atomic() and credit_from_atomic().
SELECT atomic('1'::credit), atomic('-0.000000000001'::credit), atomic('0'::credit),
       atomic('170141183460469231731687303.715884105727'::credit);
SELECT credit_from_atomic(1), credit_from_atomic(-1500000000000),
       credit_from_atomic(170141183460469231731687303715884105727),
       credit_from_atomic(-170141183460469231731687303715884105727),
       credit_from_atomic(5.000);
\set VERBOSITY default
SELECT credit_from_atomic(1.5); \echo :LAST_ERROR_SQLSTATE
SELECT credit_from_atomic(170141183460469231731687303715884105728); \echo :LAST_ERROR_SQLSTATE
SELECT credit_from_atomic('NaN'); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- round_credit(): each mode on ties, just above and just below ties, both signs.
SELECT x, round_credit(x) AS half_even, round_credit(x, 'half_up') AS half_up,
       round_credit(x, 'down') AS down, round_credit(x, 'floor') AS floor,
       round_credit(x, 'ceiling') AS ceiling
FROM (VALUES (0.0000000000005), (0.0000000000015), (0.0000000000025),
             (0.00000000000050001), (0.00000000000049999),
             (-0.0000000000005), (-0.0000000000015), (-0.0000000000025),
             (-0.00000000000050001), (-0.00000000000049999),
             (1.5), (2.000000000000999), (-2.000000000000999)) AS t(x);
SELECT round_credit(170141183460469231731687303.7158841057274);
\set VERBOSITY default
SELECT round_credit(170141183460469231731687303.7158841057275); \echo :LAST_ERROR_SQLSTATE
SELECT round_credit(1, 'bogus'); \echo :LAST_ERROR_SQLSTATE
SELECT round_credit(1, 'HALF_EVEN'); \echo :LAST_ERROR_SQLSTATE
SELECT round_credit('NaN'); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- xmr(): always 12 decimals.
SELECT xmr('0'::credit), xmr('1.5'::credit), xmr('-0.000000000001'::credit),
       xmr('170141183460469231731687303.715884105727'::credit);

-- abs() and sign().
SELECT abs('-1.5'::credit), abs('1.5'::credit), abs('0'::credit),
       abs('-170141183460469231731687303.715884105727'::credit);
SELECT sign('-1.5'::credit), sign('0'::credit), sign('0.000000000001'::credit);

-- NULL in, NULL out (STRICT).
SELECT atomic(NULL), xmr(NULL), abs(NULL::credit), round_credit(NULL);
