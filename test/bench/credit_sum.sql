-- Benchmark: sum(x) and sum(x * 3 + y) over the same amounts stored as
-- compay.credit, numeric and int8 (atomic units), serial and without JIT.
-- Each query runs :runs times after one warm-up; the median is reported,
-- with each type's time as a ratio of int8's, measured in the same run.
--
-- psql -v rows=10000000 -v runs=5 -f test/bench/credit_sum.sql
\set ON_ERROR_STOP on
SET search_path = public, compay;
SET max_parallel_workers_per_gather = 0;
SET jit = off;
\if :{?rows}
\else
\set rows 10000000
\endif
\if :{?runs}
\else
\set runs 5
\endif

-- Amounts with all 12 decimals, uniform over 0 to 1,000,000 units, so that
-- x * 3 + y still fits int8 as a count of atomic units.
DROP TABLE IF EXISTS bench_amounts;
CREATE TABLE bench_amounts AS
SELECT xi, yi, credit_from_atomic(xi) AS x, credit_from_atomic(yi) AS y,
       xi * 0.000000000001 AS xn, yi * 0.000000000001 AS yn
FROM (SELECT (random() * 1e18)::bigint AS xi, (random() * 1e18)::bigint AS yi
      FROM generate_series(1, :rows)) s;
VACUUM ANALYZE bench_amounts;
SELECT pg_size_pretty(pg_table_size('bench_amounts')) AS table_size,
       current_setting('shared_buffers') AS shared_buffers;

CREATE FUNCTION pg_temp.median_ms(query text, runs int) RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times numeric[] := '{}';
BEGIN
    EXECUTE query;                      -- warm-up: pages into shared buffers
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        EXECUTE query;
        times := times || (extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric;
    END LOOP;
    RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM unnest(times) t);
END $$;

-- The three types must agree before their speed means anything.
SELECT (SELECT sum(x) FROM bench_amounts)::numeric = (SELECT sum(xn) FROM bench_amounts)
       AND (SELECT sum(xn) FROM bench_amounts) = (SELECT sum(xi) FROM bench_amounts) * 0.000000000001
       AS sums_agree,
       (SELECT sum(x * 3 + y) FROM bench_amounts)::numeric = (SELECT sum(xn * 3 + yn) FROM bench_amounts)
       AS expressions_agree;

CREATE TEMP TABLE bench_result AS
SELECT q.name, t.type, pg_temp.median_ms(format(q.sql, t.x, t.y), :runs) AS ms
FROM (VALUES ('sum(x)', 'SELECT sum(%s) FROM bench_amounts'),
             ('sum(x * 3 + y)', 'SELECT sum(%s * 3 + %s) FROM bench_amounts')) AS q(name, sql),
     (VALUES ('int8', 'xi', 'yi'), ('numeric', 'xn', 'yn'), ('credit', 'x', 'y')) AS t(type, x, y);

SELECT name AS query,
       round(max(ms) FILTER (WHERE type = 'int8')) AS int8_ms,
       round(max(ms) FILTER (WHERE type = 'numeric')) AS numeric_ms,
       round(max(ms) FILTER (WHERE type = 'credit')) AS credit_ms,
       round(max(ms) FILTER (WHERE type = 'numeric') / max(ms) FILTER (WHERE type = 'int8'), 2) AS numeric_vs_int8,
       round(max(ms) FILTER (WHERE type = 'credit') / max(ms) FILTER (WHERE type = 'int8'), 2) AS credit_vs_int8,
       round(max(ms) FILTER (WHERE type = 'numeric') / max(ms) FILTER (WHERE type = 'credit'), 2) AS credit_speedup_vs_numeric
FROM bench_result GROUP BY name ORDER BY name DESC;
DROP TABLE bench_amounts;
