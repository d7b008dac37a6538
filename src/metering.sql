--------------------------------------------------------------------------
-- Metering: the bulk path compay.record_usage_batch() (in C,
-- src/metering_batch.c), and the sum of two custom-metric objects that it
-- and compay.record_usage() (in C, src/metering.c; declared in
-- src/jobs.sql beside the tables) keep in compay.usage_totals.
--------------------------------------------------------------------------

-- Two objects of custom metrics summed per name.
CREATE FUNCTION compay.add_custom_metrics(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(c.key, c.q), '{}')
    FROM (SELECT e.key, pg_catalog.sum(e.value::numeric) AS q
          FROM (SELECT * FROM pg_catalog.jsonb_each(a)
                UNION ALL
                SELECT * FROM pg_catalog.jsonb_each(b)) e
          GROUP BY e.key) c
$$;
COMMENT ON FUNCTION compay.add_custom_metrics(jsonb, jsonb) IS
    'the sum per name of two objects of custom metrics (usage totals)';
REVOKE ALL ON FUNCTION compay.add_custom_metrics(jsonb, jsonb) FROM PUBLIC;

-- The bulk path of compay.record_usage(), in C (src/metering_batch.c):
-- the samples of one node, for one or more of its tasks, in one call.
-- The same checks, all made before anything is written; the job rows
-- locked FOR UPDATE in id order (so concurrent batches wait for each
-- other, never deadlock); a sample id recorded before is a retry,
-- skipped; the new samples written in multi-inserts and each task's
-- totals updated once, then checked as record_usage checks them.
-- Returns how many were new.
CREATE FUNCTION compay.record_usage_batch(task_ids text[], node_id text, sample_ids text[],
    sampled_at timestamptz[], metrics compay.resource_metrics[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_record_usage_batch'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) IS
    'records the usage samples of one node (element i of each array: one sample), all or none; a sample id recorded before is skipped; returns how many were new';
REVOKE ALL ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) TO compay_app, compay_node;
