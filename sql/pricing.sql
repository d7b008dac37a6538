-- Pricing: compay.price() and compay.quote() against amounts worked out by
-- hand; every component, fractions of GB and seconds, custom metrics, each
-- discount tier from real payment history, the market clamp, min/max, and
-- the bad inputs beside the good ones.
\i sql/include/fresh_extension.sql
\set VERBOSITY default

-- The design's default model: base 100, CPU 1000/s, memory 100/GB-h,
-- storage 10/GB-h, network 50/GB, GPU 10000/s.
SELECT name, currency, base_price, cpu_price, memory_price, storage_price, network_price,
       gpu_price, custom_prices, min_price, max_price FROM pricing_models;

-- Nothing used: the base price.
SELECT price(metrics());
-- 1.5 CPU-seconds: 100 + 1.5 x 1000 = 1600.
SELECT price(metrics(cpu_seconds => 1.5));
-- Half a GB-hour of memory (2^29 byte-hours): 100 + 0.5 x 100 = 150.
SELECT price(metrics(memory_byte_hours => 536870912));
-- 3 GB-hours of storage: 100 + 3 x 10 = 130.
SELECT price(metrics(storage_byte_hours => 3 * 1073741824::numeric));
-- 0.9 GB of network is not free (the seed design truncated it to 0 GB):
-- 0.75 GB in + 0.25 GB out = 1 GB: 100 + 50 = 150.  966367641 bytes is
-- just under 0.9 GB (0.8999999994...): 144.99999997206, not 100.
SELECT price(metrics(network_bytes_in => 805306368, network_bytes_out => 268435456));
SELECT price(metrics(network_bytes_in => 966367641));
-- One byte: 50 / 2^30 = 0.000000046566128730773925781 25, rounded once:
-- 100.000000046566.
SELECT price(metrics(network_bytes_out => 1));
-- 0.25 GPU-seconds: 100 + 2500 = 2600.
SELECT price(metrics(gpu_seconds => 0.25));
-- Every component at once: 100 + 1500 + 50 + 30 + 50 + 2500 = 4230.
SELECT price(metrics(1.5, 536870912, 3 * 1073741824::numeric, 805306368, 268435456, 0.25));
-- NULL fields count as zero.
SELECT price(ROW(1.5, NULL, NULL, NULL, NULL, NULL, NULL)::resource_metrics);

-- One rounding, half to even, at the 12th decimal:
-- 1000 x 0.0000000000000005 = 0.0000000000005: a tie, to even (down).
SELECT price(metrics(cpu_seconds => 0.0000000000000005));
-- 1000 x 0.0000000000000015 = 0.0000000000015: a tie, to even (up).
SELECT price(metrics(cpu_seconds => 0.0000000000000015));
-- Summing first and rounding once differs from rounding each part: CPU
-- and GPU each cost 0.0000000000004, which alone rounds to 0; together
-- 0.0000000000008 rounds to 0.000000000001.
SELECT price(metrics(cpu_seconds => 0.0000000000000004, gpu_seconds => 0.00000000000000004));

-- Bad metrics: NULL (22004), negative, NaN, infinite (22023).
SELECT price(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT price(metrics(cpu_seconds => -0.000001)); \echo :LAST_ERROR_SQLSTATE
SELECT price(metrics(memory_byte_hours => 'NaN')); \echo :LAST_ERROR_SQLSTATE
SELECT price(metrics(gpu_seconds => 'Infinity')); \echo :LAST_ERROR_SQLSTATE
SELECT price(metrics(network_bytes_in => -1)); \echo :LAST_ERROR_SQLSTATE
-- Unknown custom metric on the default model (22023).
SELECT price(metrics(custom => '{"tokens": 5}')); \echo :LAST_ERROR_SQLSTATE

-- A model with custom metrics for the task type 'inference':
-- base 10, tokens 0.002 each, api_calls 1.5 each.
INSERT INTO pricing_models (name, base_price, custom_prices)
VALUES ('ml', '10', '{"tokens": 0.002, "api_calls": 1.5}');
INSERT INTO task_type_models SELECT 'inference', id FROM pricing_models WHERE name = 'ml';
-- 10 + 1234.5 x 0.002 + 3 x 1.5 = 10 + 2.469 + 4.5 = 16.969.
SELECT price(metrics(custom => '{"tokens": 1234.5, "api_calls": 3}'), 'inference');
-- The model prices only what it lists: CPU is free here.
SELECT price(metrics(cpu_seconds => 100, custom => '{"tokens": 1}'), 'inference');
-- A task type without a mapping uses the default model.
SELECT price(metrics(cpu_seconds => 1.5), 'no-such-type');
-- Custom metrics: unknown, negative, not a number, not an object (22023).
SELECT price(metrics(custom => '{"tokens": 1, "frames": 2}'), 'inference'); \echo :LAST_ERROR_SQLSTATE
SELECT price(metrics(custom => '{"tokens": -1}'), 'inference'); \echo :LAST_ERROR_SQLSTATE
SELECT price(metrics(custom => '{"tokens": "5"}'), 'inference'); \echo :LAST_ERROR_SQLSTATE
SELECT price(metrics(custom => '[1, 2]'), 'inference'); \echo :LAST_ERROR_SQLSTATE
-- Bad models are refused by the table (the detail would show the time).
\set VERBOSITY terse
INSERT INTO pricing_models (name, custom_prices) VALUES ('bad', '{"x": -1}'); \echo :LAST_ERROR_SQLSTATE
INSERT INTO pricing_models (name, custom_prices) VALUES ('bad', '{"x": 0.0000000000001}'); \echo :LAST_ERROR_SQLSTATE
INSERT INTO pricing_models (name, cpu_price) VALUES ('bad', '-1'); \echo :LAST_ERROR_SQLSTATE
INSERT INTO pricing_models (name, min_price, max_price) VALUES ('bad', '5', '4'); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- Market adjustment, clamped to [0.5, 2.0] by default.
INSERT INTO market_adjustments (task_type, factor) VALUES ('inference', 1.25);
-- 16.969 x 1.25 = 21.21125.
SELECT price(metrics(custom => '{"tokens": 1234.5, "api_calls": 3}'), 'inference');
UPDATE market_adjustments SET factor = 3 WHERE task_type = 'inference';
-- Clamped to 2.0: 33.938.
SELECT price(metrics(custom => '{"tokens": 1234.5, "api_calls": 3}'), 'inference');
UPDATE market_adjustments SET factor = 0.1 WHERE task_type = 'inference';
-- Clamped to 0.5: 8.4845.
SELECT price(metrics(custom => '{"tokens": 1234.5, "api_calls": 3}'), 'inference');
-- The bounds are settings: at most 1.5 now, so 3 gives 16.969 x 1.5 = 25.4535.
UPDATE market_adjustments SET factor = 3 WHERE task_type = 'inference';
SET compay.market_factor_max = '1.5';
SELECT price(metrics(custom => '{"tokens": 1234.5, "api_calls": 3}'), 'inference');
RESET compay.market_factor_max;
SET compay.market_factor_min = '0'; \echo :LAST_ERROR_SQLSTATE
SET compay.market_factor_min = 'abc'; \echo :LAST_ERROR_SQLSTATE
SET compay.market_factor_min = '3';
SELECT price(metrics(), 'inference'); \echo :LAST_ERROR_SQLSTATE
RESET compay.market_factor_min;
\set VERBOSITY terse
INSERT INTO market_adjustments (task_type, factor) VALUES ('x', 0); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- A market factor applies to default-priced task types too: 1600 x 1.1 = 1760.
INSERT INTO market_adjustments (task_type, factor) VALUES ('render', 1.1);
SELECT price(metrics(cpu_seconds => 1.5), 'render');

-- Min and max price of a model: base 1, CPU 1/s, between 5 and 50.
INSERT INTO pricing_models (name, base_price, cpu_price, min_price, max_price)
VALUES ('bounded', '1', '1', '5', '50');
INSERT INTO task_type_models SELECT 'small', id FROM pricing_models WHERE name = 'bounded';
SELECT price(metrics(), 'small') AS raised_to_min,
       price(metrics(cpu_seconds => 10), 'small') AS within,
       price(metrics(cpu_seconds => 1000), 'small') AS lowered_to_max;

-- Volume discounts from real history: a requester's completed (or
-- disputed) payments in the last compay.discount_window (30 days).
SELECT min_volume, max_volume, discount_percent FROM discount_tiers t
JOIN pricing_models m ON m.id = t.model_id WHERE m.name = 'default' ORDER BY min_volume;
CREATE FUNCTION pay_history(requester text, n integer, age interval,
    st payment_status DEFAULT 'completed') RETURNS void LANGUAGE sql AS $$
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 completed_at)
    SELECT requester || ':' || age || ':' || st || ':' || g, requester, 'someone', '1', 'CREDIT',
           'credit', st, now() - age
    FROM generate_series(1, n) g
$$;
SELECT pay_history('r_999', 999, '1 day');
SELECT pay_history('r_1000', 1000, '29 days');
SELECT pay_history('r_old', 5000, '31 days');          -- outside the window
SELECT pay_history('r_failed', 5000, '1 day', 'failed'); -- not paid
SELECT pay_history('r_10000', 9000, '1 hour');
SELECT pay_history('r_10000', 1000, '1 hour', 'disputed');
SELECT pay_history('r_100000', 100000, '1 minute');
-- 1600 less 0 %, 10 %, 0 %, 0 %, 20 %, 30 %.
SELECT r, price(metrics(cpu_seconds => 1.5), NULL, r)
FROM unnest(ARRAY['r_999', 'r_1000', 'r_old', 'r_failed', 'r_10000', 'r_100000', 'nobody']) r;
-- A shorter window drops r_1000 to the first tier.
SET compay.discount_window = '7d';
SELECT price(metrics(cpu_seconds => 1.5), NULL, 'r_1000');
RESET compay.discount_window;
-- Market factor and discount together: 1600 x 1.1 x 0.7 = 1232.
SELECT price(metrics(cpu_seconds => 1.5), 'render', 'r_100000');

-- The volume is read from daily counts (compay.requester_volume, kept by
-- statement triggers) plus the payments of the window's first day, counted
-- one by one: exact at the window's edge.  999 payments 29 days old and
-- one just inside the window make 1000 (10 %); one just outside changes
-- nothing.  (Hours, not days: the test's time zone changes to winter time
-- within the window, and the window is 30 x 24 hours.)
SELECT pay_history('r_edge', 999, '696 hours');
SELECT pay_history('r_edge', 1, '719 hours 59 minutes');
SELECT pay_history('r_edge', 1, '720 hours 1 minute');
SELECT price(metrics(cpu_seconds => 1.5), NULL, 'r_edge') AS at_1000;
-- Refunded, the one inside no longer counts; completed again, it does.
UPDATE payments SET status = 'refunded' WHERE from_node = 'r_edge' AND completed_at BETWEEN now() - interval '720 hours' AND now() - interval '719 hours';
SELECT price(metrics(cpu_seconds => 1.5), NULL, 'r_edge') AS at_999;
UPDATE payments SET status = 'completed' WHERE from_node = 'r_edge' AND completed_at BETWEEN now() - interval '720 hours' AND now() - interval '719 hours';
SELECT price(metrics(cpu_seconds => 1.5), NULL, 'r_edge') AS at_1000_again;
-- Moved out of the window, and one deleted: the daily counts follow.
UPDATE payments SET completed_at = completed_at - interval '2 days' WHERE from_node = 'r_edge' AND completed_at BETWEEN now() - interval '720 hours' AND now() - interval '719 hours';
DELETE FROM payments WHERE task_id = (SELECT min(task_id) FROM payments WHERE from_node = 'r_edge'
                                      AND completed_at > now() - interval '697 hours');
-- 998 in the window, 2 older: 1000 counted in all.
SELECT sum(payments) AS r_edge_counted FROM requester_volume WHERE from_node = 'r_edge';
SELECT price(metrics(cpu_seconds => 1.5), NULL, 'r_edge') AS at_998;
-- verify_ledger() compares the counts with the payments; a wrong count is
-- reported and compay.rebuild_requester_volume() makes them again.
SELECT ok FROM verify_ledger() WHERE check_name = 'requester_volume_matches_payments';
UPDATE requester_volume SET payments = payments + 1 WHERE from_node = 'r_999';
SELECT ok, detail FROM verify_ledger() WHERE check_name = 'requester_volume_matches_payments';
SELECT rebuild_requester_volume() > 0 AS rebuilt;
SELECT ok FROM verify_ledger() WHERE check_name = 'requester_volume_matches_payments';

-- Tiers of one model must not overlap (23P01); max_volume is exclusive.
INSERT INTO discount_tiers (model_id, min_volume, max_volume, discount_percent)
SELECT id, 500, 2000, 5 FROM pricing_models WHERE name = 'default'; \echo :LAST_ERROR_SQLSTATE
INSERT INTO discount_tiers (model_id, min_volume, max_volume, discount_percent)
SELECT id, 0, 10, 1 FROM pricing_models WHERE name = 'bounded';
INSERT INTO discount_tiers (model_id, min_volume, max_volume, discount_percent)
SELECT id, 10, NULL, 2 FROM pricing_models WHERE name = 'bounded';
INSERT INTO discount_tiers (model_id, min_volume, max_volume, discount_percent)
SELECT id, 5, 6, 3 FROM pricing_models WHERE name = 'bounded'; \echo :LAST_ERROR_SQLSTATE
UPDATE discount_tiers SET max_volume = 11
WHERE min_volume = 0 AND model_id = (SELECT id FROM pricing_models WHERE name = 'bounded'); \echo :LAST_ERROR_SQLSTATE
INSERT INTO discount_tiers (model_id, min_volume, max_volume, discount_percent)
SELECT id, 0, 10, 101 FROM pricing_models WHERE name = 'ml'; \echo :LAST_ERROR_SQLSTATE

-- quote(): one row per step; the steps add up to price() exactly.
SELECT * FROM quote(metrics(1.5, 536870912, 0, 1, 0, 0.25), 'render', 'r_1000');
SELECT price(metrics(1.5, 536870912, 0, 1, 0, 0.25), 'render', 'r_1000');
SELECT sum(amount) FILTER (WHERE component <> 'total')
         = price(metrics(1.5, 536870912, 0, 1, 0, 0.25), 'render', 'r_1000') AS steps_add_up,
       sum(amount) FILTER (WHERE component = 'total')
         = price(metrics(1.5, 536870912, 0, 1, 0, 0.25), 'render', 'r_1000') AS total_is_price
FROM quote(metrics(1.5, 536870912, 0, 1, 0, 0.25), 'render', 'r_1000');
-- Raised to the model's minimum: the bounds step carries the difference.
SELECT * FROM quote(metrics(cpu_seconds => 0.5), 'small');
-- Over many random inputs, quote and price always agree.
SELECT count(*) AS disagreements
FROM (SELECT g, metrics(round((random() * 100)::numeric, 7), (random() * 1e10)::bigint,
                        (random() * 1e12)::bigint, (random() * 1e9)::bigint,
                        (random() * 1e9)::bigint, round((random() * 10)::numeric, 9)) AS m,
             (ARRAY['render', 'small', NULL, 'inference'])[1 + g % 4] AS tt,
             (ARRAY['r_1000', NULL, 'r_10000'])[1 + g % 3] AS rq
      FROM generate_series(1, 400) g) s
WHERE (tt IS DISTINCT FROM 'inference')
  AND (SELECT sum(amount) FROM quote(m, tt, rq) WHERE component <> 'total')
      <> price(m, tt, rq);

-- The configuration is cached per backend and follows every change at
-- once, rolled-back changes included.
SELECT price(metrics(cpu_seconds => 1.5));
BEGIN;
UPDATE pricing_models SET cpu_price = '2000' WHERE name = 'default';
SELECT price(metrics(cpu_seconds => 1.5));
ROLLBACK;
SELECT price(metrics(cpu_seconds => 1.5));
DELETE FROM task_type_models WHERE task_type = 'inference';
SELECT price(metrics(cpu_seconds => 1.5), 'inference');
-- Without a default model nothing can be priced (55000).
BEGIN;
UPDATE pricing_models SET name = 'old default' WHERE name = 'default';
SELECT price(metrics()); \echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT price(metrics());

-- The reward formula with the exact mean of several quality factors.
SELECT compute_reward('Fine-tuning', '24 hours', 1.0, ARRAY[1.0, 1.2]) AS mean_1_1,
       compute_reward('Fine-tuning', '24 hours', 1.0, ARRAY[0.8, 0.9, 1.0]) AS mean_0_9,
       compute_reward('Fine-tuning', '24 hours', 1.0, ARRAY[NULL, 1.2]::numeric[]) AS one_factor,
       compute_reward('Fine-tuning', '24 hours', 1.0, ARRAY[]::numeric[]) AS multiplier;
-- 0.0002 x 1 h x (1.0 + 1.0 + 1.01) / 3 = 0.000200666666...: 0.000200666667.
SELECT compute_reward('Verification Work', '1 hour', 1.0, ARRAY[1.0, 1.0, 1.01]);
SELECT compute_reward('Fine-tuning', '24 hours', 1.0, ARRAY[1.0, 1.6]); \echo :LAST_ERROR_SQLSTATE
