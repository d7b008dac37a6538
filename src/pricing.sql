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
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
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
