-- compay.credit against numeric: 100,000 random pairs, every operator's
-- result must equal the same computation done exactly in numeric and
-- rounded by the documented rule (half to even), and every result outside
-- the credit range must raise 22003 instead.
SET search_path = public, compay;
SELECT setseed(0.20261123);

-- A random count of atomic units with 1 to 38 digits and a random sign.
CREATE FUNCTION pg_temp.rnd_atomic() RETURNS numeric LANGUAGE sql VOLATILE AS $$
    SELECT (CASE WHEN random() < 0.5 THEN -1 ELSE 1 END)
         * left(lpad(floor(random() * 1e15)::text, 15, '0')
                || lpad(floor(random() * 1e15)::text, 15, '0')
                || lpad(floor(random() * 1e15)::text, 15, '0'),
                1 + floor(random() * 38)::int)::numeric
$$;
-- A random non-zero bigint with 1 to 18 digits.
CREATE FUNCTION pg_temp.rnd_int8() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (CASE WHEN random() < 0.5 THEN -1 ELSE 1 END)
         * greatest(1, floor(random()::numeric * 10::numeric ^ (1 + floor(random() * 18)::int)))::bigint
$$;
-- A random non-zero decimal with 1 to 12 digits and a scale of 0 to 15.
CREATE FUNCTION pg_temp.rnd_decimal() RETURNS numeric LANGUAGE sql VOLATILE AS $$
    SELECT (CASE WHEN random() < 0.5 THEN -1 ELSE 1 END)
         * greatest(1, floor(random()::numeric * 10::numeric ^ (1 + floor(random() * 12)::int)))
         / 10::numeric ^ floor(random() * 16)::int
$$;
-- x rounded to an integer, ties to even: the reference rule.
CREATE FUNCTION pg_temp.round_half_even(x numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN abs(x - trunc(x)) = 0.5
                THEN trunc(x) + CASE WHEN mod(trunc(x), 2) = 0 THEN 0 ELSE sign(x) END
                ELSE round(x) END
$$;
-- a / b rounded half to even, exactly, with numeric integer division.
CREATE FUNCTION pg_temp.div_half_even(a numeric, b numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT q + CASE WHEN 2 * abs(r) > abs(bi) OR (2 * abs(r) = abs(bi) AND mod(q, 2) <> 0)
                    THEN sign(ai) * sign(bi) ELSE 0 END
    FROM (SELECT ai, bi, div(ai, bi) AS q, ai - div(ai, bi) * bi AS r
          FROM (SELECT a * 10::numeric ^ scale(b) AS ai, b * 10::numeric ^ scale(b) AS bi) s) t
$$;

CREATE TEMP TABLE pairs AS
SELECT i, pg_temp.rnd_atomic() AS a, pg_temp.rnd_atomic() AS b,
       pg_temp.rnd_int8() AS n, pg_temp.rnd_decimal() AS d
FROM generate_series(1, 100000) AS i;
ALTER TABLE pairs ADD COLUMN ca credit, ADD COLUMN cb credit;
UPDATE pairs SET ca = credit_from_atomic(a), cb = credit_from_atomic(b);
-- The data covers every digit length, fractional factors, and exact ties
-- where the rounding rule decides the result.
SELECT count(*) AS pairs, count(DISTINCT length(abs(a)::text)) AS digit_lengths,
       count(*) FILTER (WHERE d <> trunc(d)) > 50000 AS mostly_fractional,
       count(*) FILTER (WHERE abs(a * d - trunc(a * d)) = 0.5) > 100 AS many_product_ties,
       count(*) FILTER (WHERE 2 * abs(mod(a, n)) = abs(n)) > 100 AS many_quotient_ties
FROM pairs;

-- Each operator as (expected atomic count in numeric, credit expression).
CREATE TEMP TABLE cases (op text, expected text, actual text);
INSERT INTO cases VALUES
    ('credit + credit',    'a + b',                                 'ca + cb'),
    ('credit - credit',    'a - b',                                 'ca - cb'),
    ('- credit',           '-a',                                    '-ca'),
    ('abs(credit)',        'abs(a)',                                'abs(ca)'),
    ('credit * int8',      'a * n',                                 'ca * n'),
    ('int8 * credit',      'n * a',                                 'n * ca'),
    -- Planned as one fused call; a product out of range overflows even if
    -- the sum would not, exactly as the two operators one after the other.
    ('credit * int8 + credit',
     'CASE WHEN abs(a * n) > 170141183460469231731687303715884105727 THEN 1e40 ELSE a * n + b END',
     'ca * n + cb'),
    ('credit * numeric',   'pg_temp.round_half_even(a * d)',        'ca * d'),
    ('numeric * credit',   'pg_temp.round_half_even(d * a)',        'd * ca'),
    ('credit / int8',      'pg_temp.div_half_even(a, n::numeric)',           'ca / n'),
    ('credit / numeric',   'pg_temp.div_half_even(a, d)',           'ca / d'),
    ('credit::numeric',    'a',                                     'credit_from_atomic(ca::numeric * 1000000000000)'),
    ('numeric::credit',    'a',                                     '(a * 0.000000000001)::credit'),
    ('text round trip',    'a',                                     'ca::text::credit');

-- In-range results must be equal; out-of-range ones must raise 22003 (each
-- is tried in a subtransaction, so at most 1,000 of them per operator).
CREATE FUNCTION pg_temp.check_case(c cases) RETURNS TABLE (
    op text, checked bigint, mismatches bigint, overflow_tried bigint, not_raised bigint)
LANGUAGE plpgsql AS $f$
DECLARE
    max_atomic numeric := 170141183460469231731687303715884105727;
    r record;
BEGIN
    op := c.op;
    EXECUTE format($q$
        SELECT count(*), count(*) FILTER (WHERE abs(e) <= $1 AND atomic(%s) <> e)
        FROM (SELECT *, %s AS e FROM pairs) p$q$, c.actual, c.expected)
        INTO checked, mismatches USING max_atomic;
    overflow_tried := 0;
    not_raised := 0;
    FOR r IN EXECUTE format('SELECT i FROM (SELECT *, %s AS e FROM pairs) p
                             WHERE abs(e) > $1 LIMIT 1000', c.expected) USING max_atomic
    LOOP
        overflow_tried := overflow_tried + 1;
        BEGIN
            EXECUTE format('SELECT %s FROM pairs WHERE i = $1', c.actual) USING r.i;
            not_raised := not_raised + 1;
        EXCEPTION WHEN numeric_value_out_of_range THEN NULL;
        END;
    END LOOP;
    RETURN NEXT;
END $f$;

SELECT r.op, r.checked, r.mismatches, r.overflow_tried > 0 AS saw_overflow, r.not_raised
FROM cases c, LATERAL pg_temp.check_case(c) r;

-- Comparisons, and credit / credit against numeric division.
SELECT count(*) FILTER (WHERE (ca = cb) <> (a = b) OR (ca <> cb) <> (a <> b)
                           OR (ca < cb) <> (a < b) OR (ca <= cb) <> (a <= b)
                           OR (ca > cb) <> (a > b) OR (ca >= cb) <> (a >= b)
                           OR credit_cmp(ca, cb) <> sign(a - b)) AS comparison_mismatches,
       count(*) FILTER (WHERE CASE WHEN b = 0 THEN false ELSE ca / cb <> a / b END) AS ratio_mismatches,
       count(*) FILTER (WHERE sign(ca) <> sign(a)) AS sign_mismatches
FROM pairs;

-- Aggregates against numeric: sums of groups of 100, average rounded half to even.
SELECT count(*) FILTER (WHERE atomic(s) <> ns) AS sum_mismatches,
       count(*) FILTER (WHERE atomic(av) <> pg_temp.div_half_even(ns, cnt::numeric)) AS avg_mismatches,
       count(*) FILTER (WHERE atomic(mn) <> nmn OR atomic(mx) <> nmx) AS minmax_mismatches
FROM (SELECT sum(ca / 1000) AS s, sum(atomic(ca / 1000)) AS ns, avg(ca / 1000) AS av,
             count(*) AS cnt, min(ca) AS mn, min(a) AS nmn, max(ca) AS mx, max(a) AS nmx
      FROM pairs GROUP BY i % 1000) g;
