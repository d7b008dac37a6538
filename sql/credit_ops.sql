-- compay.credit: operators, comparison, indexes, joins and aggregates.
SET search_path = public, compay;
\set max '''170141183460469231731687303.715884105727''::credit'
\set min '''-170141183460469231731687303.715884105727''::credit'

-- + - and unary -.
SELECT '1.5'::credit + '2.25', '1.5'::credit - '2.25', -'1.5'::credit,
       -'0'::credit, '0.000000000001'::credit + '0.000000000001';
SELECT :max + '0', :min - '0', :max - :max, :max + :min, -:min;
\set VERBOSITY default
SELECT :max + '0.000000000001'; \echo :LAST_ERROR_SQLSTATE
SELECT :min - '0.000000000001'; \echo :LAST_ERROR_SQLSTATE
SELECT :min + :min; \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- Multiplication by integers, both orders.
SELECT '1.5'::credit * 2, 2 * '1.5'::credit, '1.5'::credit * 3::bigint,
       3::bigint * '1.5'::credit, '1.5'::credit * 2::smallint,
       2::smallint * '1.5'::credit, '-0.000000000001'::credit * -1;
SELECT :max * 1, :max * -1, '85070591730234615865843651.857942052863'::credit * 2;
\set VERBOSITY default
SELECT '85070591730234615865843651.857942052864'::credit * 2; \echo :LAST_ERROR_SQLSTATE
SELECT :max * 9223372036854775807::bigint; \echo :LAST_ERROR_SQLSTATE
SELECT 2::smallint * :min; \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- "a * k + b" with an integer k is planned as one fused call with the
-- same result and the same overflow checks.
CREATE TEMP TABLE fused (x credit, y credit, k int, kb bigint);
INSERT INTO fused VALUES ('1.5', '0.25', 3, 3), (NULL, '1', 1, 1), ('2', NULL, 2, 2),
    ('1', '1', NULL, NULL), (:max, '0', 1, 1);
EXPLAIN (VERBOSE, COSTS OFF) SELECT x * k + y, y + x * kb, k * x + y, x * 1.5 + y FROM fused;
SELECT x, k, y, x * k + y AS fused, y + kb * x AS fused_int8
FROM fused ORDER BY x NULLS FIRST, y NULLS FIRST;
SELECT x * k + '0.000000000001' FROM fused WHERE x = :max; \echo :LAST_ERROR_SQLSTATE
SELECT x * 2 + '-1' FROM fused WHERE x = :max; \echo :LAST_ERROR_SQLSTATE

-- Multiplication by numeric: exact product, rounded once half to even.
SELECT '1'::credit * 1.5, 1.5 * '1'::credit, '0.000000000001'::credit * 0.5,
       '0.000000000003'::credit * 0.5, '-0.000000000003'::credit * 0.5,
       '0.000000000001'::credit * 0.5000001, '3'::credit * 0.333333333333333333333,
       '1'::credit * 0, '7'::credit * -2.5;
\set VERBOSITY default
SELECT :max * 1.000000000001; \echo :LAST_ERROR_SQLSTATE
SELECT '1'::credit * 'NaN'::numeric; \echo :LAST_ERROR_SQLSTATE
SELECT '1'::credit * 'Infinity'::numeric; \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- Division by integers and numeric: rounded half to even.
SELECT '1'::credit / 3, '2'::credit / 3, '-2'::credit / 3, '0.000000000001'::credit / 2,
       '0.000000000003'::credit / 2, '-0.000000000003'::credit / 2,
       '0.000000000005'::credit / 2::smallint, '10'::credit / 4::bigint,
       :max / -1, :min / 2;
SELECT '10'::credit / 4.0, '1'::credit / 3.0, '1'::credit / 0.000000000003,
       '-1'::credit / 1.5, '0.000000000001'::credit / -2.0;
\set VERBOSITY default
SELECT '1'::credit / 0; \echo :LAST_ERROR_SQLSTATE
SELECT '1'::credit / 0::bigint; \echo :LAST_ERROR_SQLSTATE
SELECT '1'::credit / 0::smallint; \echo :LAST_ERROR_SQLSTATE
SELECT '1'::credit / 0.0; \echo :LAST_ERROR_SQLSTATE
SELECT :max / 0.5; \echo :LAST_ERROR_SQLSTATE
SELECT '1'::credit / 'NaN'::numeric; \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- credit / credit is their ratio as numeric.
SELECT '1'::credit / '3'::credit, '3'::credit / '1.5'::credit,
       '-1'::credit / '0.000000000001'::credit, :max / :max;
\set VERBOSITY default
SELECT '1'::credit / '0'::credit; \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- Comparison operators.
SELECT a, b, a = b AS eq, a <> b AS ne, a < b AS lt, a <= b AS le, a > b AS gt,
       a >= b AS ge, credit_cmp(a, b) AS cmp
FROM (VALUES ('1'::credit, '1'::credit), ('1', '1.000000000001'), ('-1', '1'),
             ('0', '-0'), (:max, :min)) AS t(a, b);

-- greatest, least, ORDER BY, DISTINCT, GROUP BY.
SELECT greatest('1'::credit, '2.5', '-3'), least('1'::credit, '2.5', '-3');
CREATE TEMP TABLE amounts (id int, v credit);
INSERT INTO amounts
SELECT i, (((i * 7919) % 2001) - 1000)::bigint * '0.001'::credit FROM generate_series(1, 20000) AS i;
SELECT v FROM amounts ORDER BY v LIMIT 3;
SELECT v FROM amounts ORDER BY v DESC LIMIT 3;
SELECT count(DISTINCT v) AS distinct_values FROM amounts;
SELECT v, count(*) FROM amounts WHERE v BETWEEN '-0.001' AND '0.001' GROUP BY v ORDER BY v;

-- A btree index is used for range and equality, and a hash index for equality.
CREATE INDEX amounts_v ON amounts (v);
ANALYZE amounts;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM amounts WHERE v = '0.5';
SELECT count(*) FROM amounts WHERE v = '0.5';
EXPLAIN (COSTS OFF) SELECT id FROM amounts WHERE v > '0.998' ORDER BY v;
SELECT v FROM amounts WHERE v > '0.998' ORDER BY v;
CREATE INDEX amounts_v_hash ON amounts USING hash (v);
DROP INDEX amounts_v;
EXPLAIN (COSTS OFF) SELECT id FROM amounts WHERE v = '0.5';
SELECT count(*) FROM amounts WHERE v = '0.5';
RESET enable_seqscan;
-- A unique index rejects an equal value.
CREATE TEMP TABLE uniq (v credit UNIQUE);
INSERT INTO uniq VALUES ('1.5');
INSERT INTO uniq VALUES ('1.500000000000'); \echo :LAST_ERROR_SQLSTATE

-- Hash join and merge join.
CREATE TEMP TABLE other AS SELECT DISTINCT v FROM amounts WHERE v > '0.9';
ANALYZE other;
SET enable_mergejoin = off; SET enable_nestloop = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM amounts a JOIN other o ON a.v = o.v;
SELECT count(*) FROM amounts a JOIN other o ON a.v = o.v;
SET enable_hashjoin = off; SET enable_mergejoin = on;
EXPLAIN (COSTS OFF) SELECT count(*) FROM amounts a JOIN other o ON a.v = o.v;
SELECT count(*) FROM amounts a JOIN other o ON a.v = o.v;
RESET enable_hashjoin; RESET enable_mergejoin; RESET enable_nestloop;
-- Hash aggregation.
SET enable_sort = off;
EXPLAIN (COSTS OFF) SELECT v, count(*) FROM amounts GROUP BY v;
SELECT count(*) FROM (SELECT v, count(*) FROM amounts GROUP BY v) g;
RESET enable_sort;

-- Aggregates: sum, avg (rounded half to even), min, max; NULLs skipped,
-- no rows gives NULL.
SELECT sum(v), avg(v), min(v), max(v), count(v) FROM amounts;
SELECT sum(v), avg(v), min(v), max(v) FROM (VALUES ('1.5'::credit), ('2'), (NULL)) t(v);
SELECT avg(v) FROM (VALUES ('0.000000000001'::credit), ('0.000000000002')) t(v);
SELECT avg(v) FROM (VALUES ('0.000000000001'::credit), ('0.000000000000')) t(v);
SELECT sum(v), avg(v), min(v), max(v) FROM amounts WHERE false;
SELECT sum(v) FROM (VALUES (:max), ('-1')) t(v);
\set VERBOSITY default
SELECT sum(v) FROM (VALUES (:max), ('0.000000000001')) t(v); \echo :LAST_ERROR_SQLSTATE
SELECT sum(v) FROM (VALUES (:min), (:min)) t(v); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
-- Running totals never overflow: only the result must fit (22003 above is
-- for results out of range).  avg() of values whose sum leaves the range is
-- still the exact mean, rounded half to even; sum_atomic() gives any total
-- exactly, as a numeric count of atomic units.
SELECT sum(v ORDER BY o), avg(v ORDER BY o), sum_atomic(v ORDER BY o)
FROM (VALUES (1, :max), (2, :max), (3, :min), (4, '-1'::credit)) t(o, v);
SELECT sum(v ORDER BY o), sum_atomic(v ORDER BY o)
FROM (VALUES (1, :min), (2, :min), (3, :max), (4, :max)) t(o, v);
SELECT avg(v), sum_atomic(v) FROM (VALUES (:max), (:max), (:max)) t(v);
SELECT avg(v), sum_atomic(v) FROM (VALUES (:min), (:min), ('-0.000000000001')) t(v);
SELECT avg(v), sum_atomic(v) FROM (VALUES (:max), (:max), ('0.000000000001'), ('0')) t(v);
SELECT avg(v) AS tie_to_even_down, -avg(-v) AS negated
FROM (VALUES (:max), (:max), ('0.000000000002'), ('0.000000000002')) t(v);
SELECT avg(v) AS tie_to_even_up, -avg(-v) AS negated
FROM (VALUES (:max), (:max), ('0.000000000004'), ('0.000000000004')) t(v);
SELECT sum_atomic(v) FROM (VALUES (NULL::credit)) t(v);
\set VERBOSITY default
SELECT sum(v) FROM (VALUES (:max), (:max), ('1')) t(v); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
-- Window use of sum.
SELECT id, v, sum(v) OVER (ORDER BY id) FROM amounts WHERE id <= 4 ORDER BY id;

-- Parallel sum and avg equal the serial ones.
CREATE TABLE par (v credit);
INSERT INTO par SELECT (i::bigint * 1000003 % 99991)::bigint * '0.000123456789'::credit
FROM generate_series(1, 200000) AS i;
ANALYZE par;
SET max_parallel_workers_per_gather = 0;
SELECT sum(v) AS serial_sum, avg(v) AS serial_avg FROM par \gset
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF) SELECT sum(v), avg(v) FROM par;
SELECT sum(v) = :'serial_sum'::credit AS sum_equal, avg(v) = :'serial_avg'::credit AS avg_equal,
       sum(v) AS parallel_sum FROM par;
-- The same with totals far out of range on the way (each worker's state
-- carries, and the states combine): the serial and parallel results agree.
TRUNCATE par;
INSERT INTO par SELECT '100000000000000000000000000.000000000001'::credit FROM generate_series(1, 100000);
INSERT INTO par SELECT '-100000000000000000000000000'::credit FROM generate_series(1, 99999);
ANALYZE par;
SET max_parallel_workers_per_gather = 0;
SELECT sum(v) AS serial_sum, avg(v) AS serial_avg, sum_atomic(v) AS serial_atomic FROM par \gset
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT sum(v), avg(v), sum_atomic(v) FROM par;
SELECT sum(v) = :'serial_sum'::credit AS sum_equal, avg(v) = :'serial_avg'::credit AS avg_equal,
       sum_atomic(v) = :serial_atomic AS atomic_equal, sum(v), avg(v), sum_atomic(v) FROM par;
RESET max_parallel_workers_per_gather; RESET parallel_setup_cost;
RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
DROP TABLE par;

-- Type functions are all IMMUTABLE STRICT PARALLEL SAFE (aggregate support
-- functions that take internal state are not STRICT by design).
SELECT p.proname, p.provolatile, p.proisstrict, p.proparallel
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'compay'
WHERE p.prokind = 'f' AND p.pronamespace = 'compay'::regnamespace
  AND (p.proname ~ '^(credit|int[248]_mul_credit|numeric_mul_credit)'
       OR p.proname IN ('atomic', 'round_credit', 'xmr', 'abs', 'sign', 'numeric'))
  AND (p.provolatile <> 'i' OR p.proparallel <> 's' OR NOT p.proisstrict)
ORDER BY 1;
