--------------------------------------------------------------------------
-- compay_router: a router database's compay schema (docs/scaling.md).
-- The install script is src/credit.sql (the credit type, the same C), this
-- file (configuration, routing helpers), routed.sql (generated: the shard
-- API's PL/Proxy twins) and combine.sql (network-wide reads).
--------------------------------------------------------------------------

\echo Use "CREATE EXTENSION compay_router" to load this file. \quit

-- Every role may look the router's functions up (as on a shard, where
-- src/roles.sql grants the same): the shards decide what each may do.
GRANT USAGE ON SCHEMA compay TO PUBLIC;

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
-- PL/Proxy connects with the user mapping of the role that calls a routed
-- function: a PUBLIC mapping (public_mapping) makes every caller the user
-- of the connection strings (a trusted service); without it, each role
-- that may call the router gets its own mapping (compay.router_add_role),
-- so compay's grants and node checks on the shard apply to the caller.
CREATE FUNCTION compay.router_configure(connstrs text[], partitions integer DEFAULT 8,
                                        public_mapping boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_shards integer := pg_catalog.array_length(connstrs, 1);
    v_options text;
    v_roles name[];
    v_mappings text[];
    v_stmt text;
BEGIN
    IF connstrs IS NULL OR partitions IS NULL OR public_mapping IS NULL THEN
        RAISE EXCEPTION 'connstrs, partitions and public_mapping must not be NULL'
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
    -- PL/Proxy puts the mapping's user before the connection string, so a
    -- user named there would win over every role's own.
    IF NOT public_mapping AND EXISTS (
        SELECT FROM pg_catalog.unnest(connstrs) c
        WHERE c ~* '(^|\s)user\s*=' OR c ~* '^postgres(ql)?://[^/]*@') THEN
        RAISE EXCEPTION 'connstrs name a user, but callers connect as themselves (public_mapping false)'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A user in the connection string would take the place of every role''s own.',
                  HINT = 'Leave the user out of the connection strings: compay.router_add_role() gives each role its own.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('p%s %L', p, connstrs[p % v_shards + 1]), ', ' ORDER BY p)
    INTO v_options FROM pg_catalog.generate_series(0, partitions - 1) p;
    -- The roles' mappings outlive a new configuration: kept as statements,
    -- made again on the new server.
    SELECT pg_catalog.array_agg(r.rolname),
           pg_catalog.array_agg(pg_catalog.format('CREATE USER MAPPING FOR %I SERVER compay_cluster%s',
               r.rolname, CASE WHEN m.umoptions IS NOT NULL THEN ' OPTIONS (' ||
                   (SELECT pg_catalog.string_agg(pg_catalog.format('%I %L',
                        pg_catalog.split_part(o, '=', 1), pg_catalog.substr(o, pg_catalog.strpos(o, '=') + 1)), ', ')
                    FROM pg_catalog.unnest(m.umoptions) o) || ')' ELSE '' END))
    INTO v_roles, v_mappings
    FROM pg_catalog.pg_user_mapping m
    JOIN pg_catalog.pg_foreign_server s ON s.oid = m.umserver AND s.srvname = 'compay_cluster'
    JOIN pg_catalog.pg_roles r ON r.oid = m.umuser;
    -- Two clusters on the same shards: PL/Proxy cannot nest calls to one
    -- cluster, and a job's calls find the job's shard (compay_lookup)
    -- while they route (compay_cluster).
    DROP SERVER IF EXISTS compay_cluster CASCADE;
    DROP SERVER IF EXISTS compay_lookup CASCADE;
    EXECUTE 'CREATE SERVER compay_cluster FOREIGN DATA WRAPPER plproxy OPTIONS ('
            || v_options || ')';
    EXECUTE 'CREATE SERVER compay_lookup FOREIGN DATA WRAPPER plproxy OPTIONS ('
            || v_options || ')';
    -- PL/Proxy asks for USAGE on the server, then the caller's mapping.
    IF public_mapping THEN
        CREATE USER MAPPING FOR PUBLIC SERVER compay_cluster;
        GRANT USAGE ON FOREIGN SERVER compay_cluster TO PUBLIC;
    END IF;
    FOREACH v_stmt IN ARRAY coalesce(v_mappings, '{}') LOOP
        EXECUTE v_stmt;
    END LOOP;
    IF v_roles IS NOT NULL THEN
        EXECUTE 'GRANT USAGE ON FOREIGN SERVER compay_cluster TO '
                || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r), ', ') FROM pg_catalog.unnest(v_roles) r);
    END IF;
    -- The job lookup runs as this function's owner (compay.router_job_shard
    -- is SECURITY DEFINER): a node role may not read compay.jobs on a shard,
    -- and the lookup tells only which shard holds a task id.
    CREATE USER MAPPING FOR CURRENT_USER SERVER compay_lookup;
    INSERT INTO compay.router_config (connstrs, partitions) VALUES (connstrs, partitions)
    ON CONFLICT (singleton) DO UPDATE
    SET connstrs = EXCLUDED.connstrs, partitions = EXCLUDED.partitions, configured_at = pg_catalog.now();
END $$;
COMMENT ON FUNCTION compay.router_configure(text[], integer, boolean) IS
    'routes to the shards connstrs lists (shard i is connstrs[i + 1]), partitions (a power of two, as on every shard) mapped to shards as partition % shards: the PL/Proxy clusters compay_cluster and compay_lookup; public_mapping: every caller connects as the connection strings'' user (else only the roles of compay.router_add_role); roles'' mappings are kept';
REVOKE ALL ON FUNCTION compay.router_configure(text[], integer, boolean) FROM PUBLIC;

-- The caller's identity on the shards: role connects as the shard role of
-- the same name (its compay_node grants and compay.node_roles entries).
CREATE FUNCTION compay.router_add_role(role name, password text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = role) THEN
        RAISE EXCEPTION 'role "%" does not exist', role USING ERRCODE = 'undefined_object',
              HINT = 'Create the role on the router (and the same role on every shard) first.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_foreign_server s WHERE s.srvname = 'compay_cluster') THEN
        RAISE EXCEPTION 'the router is not configured' USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Call compay.router_configure() first.';
    END IF;
    EXECUTE pg_catalog.format('DROP USER MAPPING IF EXISTS FOR %I SERVER compay_cluster', role);
    EXECUTE pg_catalog.format('CREATE USER MAPPING FOR %I SERVER compay_cluster OPTIONS (user %L%s)',
        role, role, CASE WHEN password IS NOT NULL THEN pg_catalog.format(', password %L', password) ELSE '' END);
    EXECUTE pg_catalog.format('GRANT USAGE ON FOREIGN SERVER compay_cluster TO %I', role);
END $$;
COMMENT ON FUNCTION compay.router_add_role(name, text) IS
    'lets role call the router as itself: its calls reach every shard as the shard role of the same name (with password, if given), so compay''s grants and node checks apply to it there; called again, replaces the password';
REVOKE ALL ON FUNCTION compay.router_add_role(name, text) FROM PUBLIC;

CREATE FUNCTION compay.router_remove_role(role name)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_user_mappings m
                   WHERE m.srvname = 'compay_cluster' AND m.usename = role) THEN
        RETURN false;
    END IF;
    EXECUTE pg_catalog.format('DROP USER MAPPING FOR %I SERVER compay_cluster', role);
    EXECUTE pg_catalog.format('REVOKE USAGE ON FOREIGN SERVER compay_cluster FROM %I', role);
    RETURN true;
END $$;
COMMENT ON FUNCTION compay.router_remove_role(name) IS
    'removes role''s own mapping (compay.router_add_role): false if it had none';
REVOKE ALL ON FUNCTION compay.router_remove_role(name) FROM PUBLIC;

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
REVOKE ALL ON FUNCTION compay.router_job_shards(text) FROM PUBLIC;

-- The shard of a job: asked of every shard; unknown jobs go to shard 0,
-- whose function reports them as on a single server.  It runs as its
-- owner, whose mapping the lookup cluster has (router_configure).
CREATE FUNCTION compay.router_job_shard(task_id text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
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
