-- The Monero network's reward formula: compute_reward() and
-- utilization_factor(), checked against the published table and by hand.
SET search_path = public, compay;
\set VERBOSITY default

SELECT job_type, currency, base_rate, quality_multiplier, builtin FROM job_types ORDER BY base_rate;

-- The published table: 24 hours at utilization factor 1.0 and each job
-- type's own quality multiplier.
SELECT job_type, compute_reward(job_type, '24 hours', 1.0) AS reward
FROM job_types ORDER BY base_rate;
SELECT compute_reward('Basic Training', '24 hours', 1.0) = '0.024' AS basic,
       compute_reward('Fine-tuning', '24 hours', 1.0) = '0.03168' AS fine_tuning,
       compute_reward('Large Model Training', '24 hours', 1.0) = '0.0432' AS large_model,
       compute_reward('Verification Work', '24 hours', 1.0) = '0.0048' AS verification;

-- Exact fractions of an hour, explicit factors, one rounding at the end.
-- 0.001 x (1/3600 h) x 1.0 x 1.0 = 0.000000277777...: rounds to 0.000000277778.
SELECT compute_reward('Basic Training', '1 second', 1.0, 1.0);
-- 0.0012 x 1.5 h x 0.85 x 1.25 = 0.0019125 exactly.
SELECT compute_reward('Fine-tuning', '90 minutes', 0.85, 1.25);
-- 0.0002 x (1/3600000000 h) x 0.5 x 0.8: far below one atomic unit, rounds to 0.
SELECT compute_reward('Verification Work', '1 microsecond', 0.5, 0.8);
-- Ties round half to even: 0.0002 x 45 us = 0.0000000000025 -> ...002, and
-- 0.0002 x 135 us = 0.0000000000075 -> ...008.
SELECT compute_reward('Verification Work', '45 microseconds', 1.0) AS tie_down_to_even,
       compute_reward('Verification Work', '135 microseconds', 1.0) AS tie_up_to_even;
SELECT compute_reward('Basic Training', '1 day 2 hours', 1.2, 1.5);
SELECT compute_reward('Basic Training', '0 seconds', 1.0);

-- Bad inputs: 22023 (factors, durations, unknown job type), 22004 (NULL).
SELECT compute_reward('Basic Training', '1 hour', 0.49); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Basic Training', '1 hour', 1.21); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Basic Training', '1 hour', 1.0, 0.79); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Basic Training', '1 hour', 1.0, 1.51); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Basic Training', '1 hour', 'NaN'); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Basic Training', '1 month', 1.0); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Basic Training', '-1 hour', 1.0); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Quantum Annealing', '1 hour', 1.0); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward(NULL, '1 hour', 1.0); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Basic Training', NULL, 1.0); \echo :LAST_ERROR_SQLSTATE
SELECT compute_reward('Basic Training', '1 hour', NULL); \echo :LAST_ERROR_SQLSTATE

-- utilization_factor(): 0..1 onto 0.5..1.2, linearly and exactly.
SELECT u, utilization_factor(u) FROM unnest(ARRAY[0, 0.25, 0.5, 0.9, 1, 0.333]::numeric[]) AS u;
SELECT compute_reward('Basic Training', '10 hours', utilization_factor(0.9)) AS reward_at_90_percent;
SELECT utilization_factor(-0.01); \echo :LAST_ERROR_SQLSTATE
SELECT utilization_factor(1.01); \echo :LAST_ERROR_SQLSTATE
SELECT utilization_factor('NaN'); \echo :LAST_ERROR_SQLSTATE
SELECT utilization_factor(NULL) IS NULL AS null_in_null_out;

-- A job type of one's own; the quality multiplier must be in range.
INSERT INTO job_types (job_type, base_rate, quality_multiplier) VALUES ('Inference', '0.0003', 0.9);
SELECT compute_reward('Inference', '2 hours', 1.0);
\set VERBOSITY terse
INSERT INTO job_types (job_type, base_rate, quality_multiplier) VALUES ('Bad', '0.1', 2.0); \echo :LAST_ERROR_SQLSTATE
INSERT INTO job_types (job_type, base_rate) VALUES ('Negative', '-0.1'); \echo :LAST_ERROR_SQLSTATE
DELETE FROM job_types WHERE job_type = 'Inference';
