--------------------------------------------------------------------------
-- compay_router: a router database's compay schema (docs/scaling.md).
-- The install script is src/credit.sql (the credit type, the same C), this
-- file (configuration, routing helpers), routed.sql (generated: the shard
-- API's PL/Proxy twins) and combine.sql (network-wide reads).
--------------------------------------------------------------------------

\echo Use "CREATE EXTENSION compay_router" to load this file. \quit

CREATE TABLE compay.router_config (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    connstrs      text[] NOT NULL,
    partitions    integer NOT NULL,
    configured_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE compay.router_config IS
    'the shards this router routes to: one row once compay.router_configure() ran';
SELECT pg_catalog.pg_extension_config_dump('compay.router_config', '');

-- The PL/Proxy cluster 'compay_cluster' (a SQL/MED server): partition p
-- is shard p % shards, as compay.shard_of() computes on the shards.
CREATE FUNCTION compay.router_configure(connstrs text[], partitions integer DEFAULT 8)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_shards integer := pg_catalog.array_length(connstrs, 1);
    v_options text;
BEGIN
    IF connstrs IS NULL OR partitions IS NULL THEN
        RAISE EXCEPTION 'connstrs and partitions must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_shards IS NULL OR pg_catalog.array_position(connstrs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'connstrs must list one connection string per shard'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An empty array or a NULL element names no shard.';
    END IF;
    IF partitions < v_shards OR partitions > 65536 OR (partitions & (partitions - 1)) <> 0 THEN
        RAISE EXCEPTION 'partitions must be a power of two from the number of shards (%) up to 65536', v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('%s partitions were asked for.', partitions),
                  HINT = 'Use the partitions every shard was configured with.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('p%s %L', p, connstrs[p % v_shards + 1]), ', ' ORDER BY p)
    INTO v_options FROM pg_catalog.generate_series(0, partitions - 1) p;
    -- Two clusters on the same shards: PL/Proxy cannot nest calls to one
    -- cluster, and a job's calls find the job's shard (compay_lookup)
    -- while they route (compay_cluster).
    DROP SERVER IF EXISTS compay_cluster CASCADE;
    DROP SERVER IF EXISTS compay_lookup CASCADE;
    EXECUTE 'CREATE SERVER compay_cluster FOREIGN DATA WRAPPER plproxy OPTIONS ('
            || v_options || ')';
    EXECUTE 'CREATE SERVER compay_lookup FOREIGN DATA WRAPPER plproxy OPTIONS ('
            || v_options || ')';
    CREATE USER MAPPING FOR PUBLIC SERVER compay_cluster;
    CREATE USER MAPPING FOR PUBLIC SERVER compay_lookup;
    INSERT INTO compay.router_config (connstrs, partitions) VALUES (connstrs, partitions)
    ON CONFLICT (singleton) DO UPDATE
    SET connstrs = EXCLUDED.connstrs, partitions = EXCLUDED.partitions, configured_at = pg_catalog.now();
END $$;
COMMENT ON FUNCTION compay.router_configure(text[], integer) IS
    'routes to the shards connstrs lists (shard i is connstrs[i + 1]), partitions (a power of two, as on every shard) mapped to shards as partition % shards: the PL/Proxy clusters compay_cluster and compay_lookup';
REVOKE ALL ON FUNCTION compay.router_configure(text[], integer) FROM PUBLIC;

-- RUN ON values.  A NULL key goes to some shard, whose function reports it.
CREATE FUNCTION compay.router_node_hash(node_id text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN pg_catalog.hashtext(coalesce(node_id, ''));
COMMENT ON FUNCTION compay.router_node_hash(text) IS
    'hashtext(node_id): PL/Proxy runs a node''s calls on partition hashtext(node_id) & (partitions - 1)';
-- Hold and transfer ids name their shard in their low bits
-- (compay.shard_configure sets the sequences).
CREATE FUNCTION compay.router_id_hash(id bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (coalesce(id, 0) & 2147483647)::integer;
COMMENT ON FUNCTION compay.router_id_hash(bigint) IS
    'the low 31 bits of a hold or transfer id: its partition is the shard that made it';

CREATE FUNCTION compay.router_job_shards(task_id text) RETURNS SETOF integer
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'compay_lookup';
    RUN ON ALL;
    SELECT c.shard FROM compay.shard_config c
    WHERE EXISTS (SELECT FROM compay.jobs j WHERE j.task_id = $1);
$$;
COMMENT ON FUNCTION compay.router_job_shards(text) IS
    'the shards that hold a job with this task id (one, its requester''s)';

-- The shard of a job: asked of every shard; unknown jobs go to shard 0,
-- whose function reports them as on a single server.
CREATE FUNCTION compay.router_job_shard(task_id text) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v integer[];
BEGIN
    IF task_id IS NULL THEN
        RETURN 0;
    END IF;
    SELECT pg_catalog.array_agg(s ORDER BY s) INTO v FROM compay.router_job_shards(task_id) s;
    IF pg_catalog.cardinality(v) > 1 THEN
        RAISE EXCEPTION 'task id "%" names jobs on shards %', task_id, v USING ERRCODE = 'PY037',
              DETAIL = 'Task ids are unique per shard; two requesters on different shards used the same one.',
              HINT = 'Use task ids unique in the network.';
    END IF;
    RETURN coalesce(v[1], 0);
END $$;
COMMENT ON FUNCTION compay.router_job_shard(text) IS
    'the shard that holds a job (RUN ON value): the one whose compay.jobs has the task id, else 0';
