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
    LANGUAGE C STABLE PARALLEL SAFE SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.compute_reward(text, interval, numeric, numeric) IS
    'base rate x hours x utilization factor x quality factor (NULL: the job type''s multiplier), exact, rounded once half to even';

CREATE FUNCTION compay.utilization_factor(gpu_utilization numeric) RETURNS numeric
    AS 'MODULE_PATHNAME', 'compay_utilization_factor'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.utilization_factor(numeric) IS
    'GPU utilization 0..1 mapped linearly onto the utilization factor 0.5..1.2';

REVOKE ALL ON FUNCTION compay.compute_reward(text, interval, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.compute_reward(text, interval, numeric, numeric) TO compay_reader;
