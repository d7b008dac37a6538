-- Setup of test/bench/pricing.sh: the pricing configuration and payment
-- history the cases use, and the baseline: bench.price(), compay.price()'s
-- formula in PL/pgSQL over numeric, with the same table lookups done by
-- plain SQL on every call.  Before anything is measured, bench.price() must
-- equal compay.price() on a few hundred varied inputs (every model, task
-- type, tier and bound used below, rounding ties); any difference stops the
-- benchmark.
\set ON_ERROR_STOP on
CREATE EXTENSION compay;
CREATE SCHEMA bench;

-- A second model for the "typed" case: every price set, custom metrics,
-- both bounds, tiers of its own.  'render' maps to it with a market factor
-- inside [0.5, 2.0]; 'spot' and 'surge' use the default model with factors
-- outside it (clamped); 'adjusted' has a factor and no model of its own.
INSERT INTO compay.pricing_models (name, base_price, cpu_price, memory_price, storage_price,
    network_price, gpu_price, custom_prices, min_price, max_price)
VALUES ('render', '20', '800', '120', '8', '40', '12000',
        '{"frames": 0.25, "api_calls": 0.000137}', '150', '2000000');
INSERT INTO compay.discount_tiers (model_id, min_volume, max_volume, discount_percent)
SELECT id, lo, hi, pct FROM compay.pricing_models,
    (VALUES (0, 500, 0), (500, 5000, 7.5), (5000, NULL, 15.25)) t (lo, hi, pct)
WHERE name = 'render';
INSERT INTO compay.task_type_models (task_type, model_id)
SELECT 'render', id FROM compay.pricing_models WHERE name = 'render';
INSERT INTO compay.market_adjustments (task_type, factor)
VALUES ('render', 1.37), ('spot', 0.3), ('surge', 3.1), ('adjusted', 0.8333);

-- Payment history.  r_bench, the requester of the cases: 3,000 completed
-- and 50 disputed payments in the window, and rows that must not count
-- (older than the window, pending, failed, refunded).  r_999 and r_1000
-- sit on either side of the default model's 1,000 tier; o1..o200 are other
-- requesters' history in the same index.
CREATE FUNCTION pg_temp.pay(requester text, n integer, st compay.payment_status, age_lo interval,
    age_hi interval) RETURNS void LANGUAGE sql AS $$
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 created_at, completed_at)
    SELECT requester || ':' || st || ':' || age_lo || ':' || g, requester, 'provider', '1', 'CREDIT',
           'credit', st, ts, CASE WHEN st <> 'pending' THEN ts END
    FROM generate_series(1, n) AS g,
         LATERAL (SELECT now() - age_lo - random() * (age_hi - age_lo) AS ts) t
$$;
SELECT count(*) FROM (
    SELECT pg_temp.pay('r_bench', 3000, 'completed', '1 minute', '29 days')
    UNION ALL SELECT pg_temp.pay('r_bench', 50, 'disputed', '1 minute', '29 days')
    UNION ALL SELECT pg_temp.pay('r_bench', 200, 'completed', '31 days', '90 days')
    UNION ALL SELECT pg_temp.pay('r_bench', 100, 'pending', '1 minute', '29 days')
    UNION ALL SELECT pg_temp.pay('r_bench', 100, 'failed', '1 minute', '29 days')
    UNION ALL SELECT pg_temp.pay('r_bench', 100, 'refunded', '1 minute', '29 days')
    UNION ALL SELECT pg_temp.pay('r_999', 999, 'completed', '1 minute', '29 days')
    UNION ALL SELECT pg_temp.pay('r_1000', 1000, 'completed', '1 minute', '29 days')
    UNION ALL SELECT pg_temp.pay('r_1000', 10, 'completed', '31 days', '40 days')
    UNION ALL SELECT pg_temp.pay('o' || i, 100, 'completed', '1 minute', '60 days')
              FROM generate_series(1, 200) AS i) s \g /dev/null
VACUUM ANALYZE compay.payments;

-- round() on numeric rounds half away from zero; compay rounds half to
-- even.  This is the half-even rounding to 12 decimals, written out in
-- bench.price() below (inline, so the baseline pays no extra call).
--   t := trunc(v, 12); r := abs(v - t)   -- 0 <= r < 1e-12
--   r > 5e-13, or r = 5e-13 and the 12th decimal of t is odd: t +/- 1e-12

-- compay.price()'s formula (src/pricing.c, src/pricing_config.c): the
-- task type's model (compay.task_type_models, else the model 'default'),
-- its market factor clamped to [compay.market_factor_min,
-- compay.market_factor_max], the requester's tier by the count of its
-- completed or disputed payments within compay.discount_window; the same
-- checks of the metrics; exact numeric arithmetic (1 / 2^30 is an exact
-- decimal), the bounds on the exact value, one rounding half to even.
-- Without a requester there is no discount at all, as in compay.price()
-- (which skips the tier lookup then; the default and render models give
-- 0 % at volume 0 anyway).
CREATE FUNCTION bench.price(metrics compay.resource_metrics, task_type text DEFAULT NULL,
    requester text DEFAULT NULL) RETURNS numeric
LANGUAGE plpgsql STABLE AS $$
DECLARE
    m compay.pricing_models;
    v_factor numeric;
    v_lo numeric := current_setting('compay.market_factor_min')::numeric;
    v_hi numeric := current_setting('compay.market_factor_max')::numeric;
    v_volume bigint;
    v_discount numeric := 0;
    v_key text;
    v_value jsonb;
    v_quantity numeric;
    v numeric;
    t numeric;
    r numeric;
BEGIN
    IF metrics IS NULL THEN
        RAISE EXCEPTION 'metrics must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- finite and >= 0 (NaN sorts above Infinity)
    IF NOT (coalesce(metrics.cpu_seconds, 0) >= 0 AND coalesce(metrics.cpu_seconds, 0) < 'Infinity'
            AND coalesce(metrics.memory_byte_hours, 0) >= 0
            AND coalesce(metrics.memory_byte_hours, 0) < 'Infinity'
            AND coalesce(metrics.storage_byte_hours, 0) >= 0
            AND coalesce(metrics.storage_byte_hours, 0) < 'Infinity'
            AND coalesce(metrics.network_bytes_in, 0) >= 0
            AND coalesce(metrics.network_bytes_out, 0) >= 0
            AND coalesce(metrics.gpu_seconds, 0) >= 0 AND coalesce(metrics.gpu_seconds, 0) < 'Infinity')
    THEN
        RAISE EXCEPTION 'metrics must be finite numbers >= 0' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT p.* INTO m FROM compay.task_type_models tm
    JOIN compay.pricing_models p ON p.id = tm.model_id
    WHERE tm.task_type = price.task_type;
    IF NOT FOUND THEN
        SELECT p.* INTO m FROM compay.pricing_models p WHERE p.name = 'default';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pricing model "default" does not exist'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;
    SELECT a.factor INTO v_factor FROM compay.market_adjustments a
    WHERE a.task_type = price.task_type;
    IF v_lo > v_hi THEN
        RAISE EXCEPTION 'compay.market_factor_min % exceeds compay.market_factor_max %', v_lo, v_hi
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_factor := greatest(v_lo, least(v_hi, coalesce(v_factor, 1)));
    IF requester IS NOT NULL THEN
        SELECT count(*) INTO v_volume FROM compay.payments p
        WHERE p.from_node = price.requester AND p.status IN ('completed', 'disputed')
          AND p.completed_at > now() - extract(epoch FROM
                current_setting('compay.discount_window')::interval) * interval '1 second';
        SELECT dt.discount_percent INTO v_discount FROM compay.discount_tiers dt
        WHERE dt.model_id = m.id AND dt.min_volume <= v_volume
          AND (dt.max_volume IS NULL OR v_volume < dt.max_volume);
        v_discount := coalesce(v_discount, 0);
    END IF;

    v := m.base_price::numeric
       + coalesce(metrics.cpu_seconds, 0) * m.cpu_price::numeric
       + coalesce(metrics.memory_byte_hours, 0) * 0.000000000931322574615478515625
         * m.memory_price::numeric
       + coalesce(metrics.storage_byte_hours, 0) * 0.000000000931322574615478515625
         * m.storage_price::numeric
       + (coalesce(metrics.network_bytes_in, 0)::numeric + coalesce(metrics.network_bytes_out, 0))
         * 0.000000000931322574615478515625 * m.network_price::numeric
       + coalesce(metrics.gpu_seconds, 0) * m.gpu_price::numeric;
    IF metrics.custom IS NOT NULL THEN
        IF jsonb_typeof(metrics.custom) <> 'object' THEN
            RAISE EXCEPTION 'custom metrics must be a JSON object of metric names and quantities'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR v_key, v_value IN SELECT c.key, c.value FROM jsonb_each(metrics.custom) c LOOP
            IF jsonb_typeof(v_value) <> 'number' THEN
                RAISE EXCEPTION 'custom metric "%" is not a number', v_key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            v_quantity := v_value::numeric;
            IF v_quantity < 0 THEN
                RAISE EXCEPTION 'custom metric "%" cannot be negative', v_key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF NOT m.custom_prices ? v_key THEN
                RAISE EXCEPTION 'unknown custom metric "%"', v_key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            v := v + v_quantity * (m.custom_prices ->> v_key)::numeric;
        END LOOP;
    END IF;
    -- x (100 - d) / 100 as x (100 - d) x 0.01: numeric division would round
    v := v * v_factor * (100 - v_discount) * 0.01;
    IF m.min_price IS NOT NULL AND v < m.min_price::numeric THEN
        v := m.min_price::numeric;
    END IF;
    IF m.max_price IS NOT NULL AND v > m.max_price::numeric THEN
        v := m.max_price::numeric;
    END IF;
    -- one rounding, half to even, at the 12th decimal
    t := trunc(v, 12);
    r := abs(v - t);
    IF r > 0.0000000000005
       OR (r = 0.0000000000005 AND mod(t * 1000000000000, 2) <> 0) THEN
        t := t + sign(v) * 0.000000000001;
    END IF;
    RETURN t;
END $$;

-- The check: bench.price() = compay.price() on 480 random inputs (every
-- task type above and an unknown one; no requester, r_bench, either side
-- of a tier, someone without history; custom metrics with render; many
-- scales, zeros and NULLs), 40 half-way cases and the bounds.
CREATE TABLE bench.check_inputs AS
SELECT i, tt, rq, compay.metrics(
        cpu_seconds => CASE WHEN i % 7 = 0 THEN 0 ELSE round((random() * 3600)::numeric, i % 15) END,
        memory_byte_hours => CASE WHEN i % 5 = 0 THEN 0
                                  ELSE round((random() * 2 ^ (10 + i % 31))::numeric, i % 4) END,
        storage_byte_hours => CASE WHEN i % 3 = 0 THEN 0
                                   ELSE round((random() * 2 ^ (20 + i % 21))::numeric) END,
        network_bytes_in => (random() * 2 ^ (i % 37))::bigint,
        network_bytes_out => CASE WHEN i % 2 = 0 THEN 0 ELSE (random() * 1e10)::bigint END,
        gpu_seconds => CASE WHEN i % 4 = 0 THEN 0 ELSE round((random() * 100)::numeric, i % 17) END,
        custom => CASE WHEN tt = 'render' AND i % 3 <> 0
                       THEN jsonb_build_object('frames', round((random() * 1e4)::numeric, i % 5),
                                               'api_calls', floor(random() * 1e6))
                       ELSE '{}' END) AS m
FROM generate_series(1, 480) AS i,
     LATERAL (SELECT (ARRAY[NULL, 'render', 'spot', 'surge', 'adjusted', 'unknown'])[1 + i % 6] AS tt,
                     (ARRAY[NULL, 'r_bench', 'r_999', 'r_1000', 'nobody'])[1 + (i / 6) % 5] AS rq) s;
-- Half-way cases: 1000 x n x 5e-16 = n x 5e-13 on top of the base price,
-- odd n a tie (to even, down or up by turn); NULL fields; the bounds of
-- render (tiny usage: min; huge: max).
INSERT INTO bench.check_inputs
SELECT 1000 + n, NULL, NULL, compay.metrics(cpu_seconds => n * 0.0000000000000005)
FROM generate_series(1, 40) AS n;
INSERT INTO bench.check_inputs VALUES
    (2001, NULL, 'r_bench', ROW(1.5, NULL, NULL, NULL, NULL, NULL, NULL)::compay.resource_metrics),
    (2002, 'render', NULL, compay.metrics()),
    (2003, 'render', 'r_bench', compay.metrics(cpu_seconds => 0.0000001)),
    (2004, 'render', 'r_bench', compay.metrics(gpu_seconds => 1000)),
    (2005, 'render', NULL, compay.metrics(custom => '{"frames": 1e9}')),
    (2006, 'spot', 'r_1000', compay.metrics(network_bytes_out => 1)),
    (2007, 'surge', 'r_999', compay.metrics(memory_byte_hours => 1));
DO $$
DECLARE
    n_inputs integer;
    n_diff integer;
    example text;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE d),
           string_agg(format('#%s price(%s, %s, %s): compay %s, bench %s', i, m,
                             coalesce(tt, 'NULL'), coalesce(rq, 'NULL'), c, b), E'\n' ORDER BY i)
               FILTER (WHERE d)
    INTO n_inputs, n_diff, example
    FROM (SELECT i, tt, rq, m, c, b, c IS DISTINCT FROM b AS d
          FROM bench.check_inputs,
               LATERAL (SELECT compay.price(m, tt, rq)::numeric AS c,
                               bench.price(m, tt, rq) AS b) p) s;
    IF n_diff > 0 THEN
        RAISE EXCEPTION 'bench.price() differs from compay.price() on % of % inputs', n_diff, n_inputs
            USING DETAIL = left(example, 4000);
    END IF;
    RAISE NOTICE 'bench.price() = compay.price() on all % inputs', n_inputs;
END $$;
-- The discounts and factors the cases see, for the record.
SELECT rq AS requester, tt AS task_type, q.quantity AS discount_percent, f.quantity AS market_factor
FROM (VALUES (NULL, NULL), ('r_bench', NULL), ('r_bench', 'render')) v (rq, tt),
     LATERAL (SELECT quantity FROM compay.quote(compay.metrics(), tt, rq)
              WHERE component = 'volume_discount') q,
     LATERAL (SELECT quantity FROM compay.quote(compay.metrics(), tt, rq)
              WHERE component = 'market_adjustment') f;
