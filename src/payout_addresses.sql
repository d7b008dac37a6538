--------------------------------------------------------------------------
-- Several payout addresses per node and purpose, addresses for one job
-- type, and rotation (issue 16).  The table and the choice of an address
-- for a payout (compay.payout_address_for) are in src/payout.sql; the
-- settlements keep the earnings of a job type with an address apart
-- (src/settlement.sql).  compay.set_payout_address (0.1) replaces; the
-- functions here add, remove, list and turn rotation on or off.
--------------------------------------------------------------------------

-- Checks what add/remove_payout_address take; raises as set_payout_address.
CREATE FUNCTION compay.check_payout_address_args(node_id text, address text,
    purpose compay.address_purpose, job_type text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF node_id IS NULL OR address IS NULL OR purpose IS NULL THEN
        RAISE EXCEPTION 'node_id, address and purpose must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(node_id) NOT BETWEEN 1 AND 200 OR left(node_id, 1) = '$' THEN
        RAISE EXCEPTION 'node id "%" cannot be paid', left(node_id, 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF job_type IS NOT NULL AND (length(job_type) NOT BETWEEN 1 AND 200 OR btrim(job_type) = '') THEN
        RAISE EXCEPTION 'a job type is 1 to 200 characters, not blank'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.check_node_id(node_id);
END $$;
REVOKE ALL ON FUNCTION compay.check_payout_address_args(text, text, compay.address_purpose, text)
    FROM PUBLIC;

-- Adds an address to the node's addresses of a purpose (for one job type
-- when job_type is set), checked for compay.monero_network; adding one
-- it has is a no-op.  At most 100 addresses per node.
CREATE FUNCTION compay.add_payout_address(node_id text, address text,
    purpose compay.address_purpose DEFAULT 'primary', job_type text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_network text := compay.setting('compay.monero_network');
    v_kind text;
BEGIN
    PERFORM compay.check_payout_address_args(node_id, address, purpose, job_type);
    PERFORM compay.require_node(node_id);
    v_kind := compay.check_monero_address(address, v_network);   -- 22023 with the reason
    -- One writer per node at a time, so that the bound holds.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.payout_addresses:' || node_id));
    IF (SELECT count(*) FROM compay.payout_addresses a
        WHERE a.node_id = add_payout_address.node_id) >= 100
       AND NOT EXISTS (SELECT 1 FROM compay.payout_addresses a
                       WHERE a.node_id = add_payout_address.node_id
                         AND a.purpose = add_payout_address.purpose
                         AND a.job_type IS NOT DISTINCT FROM add_payout_address.job_type
                         AND a.address = add_payout_address.address) THEN
        RAISE EXCEPTION 'node "%" has 100 payout addresses already', node_id
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Remove one with compay.remove_payout_address().';
    END IF;
    INSERT INTO compay.payout_addresses AS a (node_id, purpose, address, kind, network, job_type)
    VALUES (node_id, purpose, address, v_kind, v_network, job_type)
    ON CONFLICT ON CONSTRAINT payout_addresses_key DO NOTHING;
    RETURN v_kind;
END $$;
COMMENT ON FUNCTION compay.add_payout_address(text, text, compay.address_purpose, text) IS
    'adds a payout address of a purpose (for one job type when job_type is set) to a node''s addresses, checked for compay.monero_network; returns its kind';

-- Removes one of the node's addresses.  Payouts already queued keep the
-- address they took.
CREATE FUNCTION compay.remove_payout_address(node_id text, address text,
    purpose compay.address_purpose DEFAULT 'primary', job_type text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.check_payout_address_args(node_id, address, purpose, job_type);
    PERFORM compay.require_node(node_id);
    DELETE FROM compay.payout_addresses a
    WHERE a.node_id = remove_payout_address.node_id AND a.purpose = remove_payout_address.purpose
      AND a.job_type IS NOT DISTINCT FROM remove_payout_address.job_type
      AND a.address = remove_payout_address.address;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node "%" has no % payout address % for %', left(node_id, 64), purpose,
            left(address, 16) || '...', coalesce('job type "' || left(job_type, 64) || '"', 'any job type')
            USING ERRCODE = 'PY027';
    END IF;
END $$;
COMMENT ON FUNCTION compay.remove_payout_address(text, text, compay.address_purpose, text) IS
    'removes one of a node''s payout addresses; payouts already queued keep theirs';

-- Turns rotation on or off in the node's payout policy: with it on,
-- successive payouts take the addresses of a set in turn.
CREATE FUNCTION compay.set_payout_rotation(node_id text, rotate boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF node_id IS NULL OR rotate IS NULL THEN
        RAISE EXCEPTION 'node_id and rotate must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    INSERT INTO compay.payout_policies AS p (node_id, rotate_addresses) VALUES (node_id, rotate)
    ON CONFLICT ON CONSTRAINT payout_policies_pkey DO UPDATE
    SET rotate_addresses = EXCLUDED.rotate_addresses, updated_at = now();
END $$;
COMMENT ON FUNCTION compay.set_payout_rotation(text, boolean) IS
    'turns address rotation on or off in a node''s payout policy: successive payouts take its addresses in turn';

-- A node's payout addresses; next: the one the next payout of its set
-- (purpose and job type) takes.
CREATE FUNCTION compay.payout_address_list(node_id text)
RETURNS TABLE (purpose compay.address_purpose, job_type text, address text, kind text,
               network text, created_at timestamptz, last_payout_id bigint, next boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF payout_address_list.node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_node(payout_address_list.node_id, false);
    RETURN QUERY
    SELECT a.purpose, a.job_type, a.address, a.kind, a.network, a.created_at, a.last_payout_id,
           row_number() OVER (PARTITION BY a.purpose, a.job_type
                              ORDER BY CASE WHEN coalesce(p.rotate_addresses, false)
                                            THEN a.last_payout_id END NULLS FIRST,
                                       a.created_at, a.address) = 1
    FROM compay.payout_addresses a
    LEFT JOIN compay.payout_policies p ON p.node_id = a.node_id
    WHERE a.node_id = payout_address_list.node_id
    ORDER BY a.purpose, a.job_type NULLS FIRST, a.created_at, a.address;
END $$;
COMMENT ON FUNCTION compay.payout_address_list(text) IS
    'a node''s payout addresses by purpose and job type; next: the one its next payout of that set takes';

REVOKE ALL ON FUNCTION compay.add_payout_address(text, text, compay.address_purpose, text),
    compay.remove_payout_address(text, text, compay.address_purpose, text),
    compay.set_payout_rotation(text, boolean), compay.payout_address_list(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.payout_address_list(text) TO compay_reader, compay_node;
GRANT EXECUTE ON FUNCTION compay.add_payout_address(text, text, compay.address_purpose, text),
    compay.remove_payout_address(text, text, compay.address_purpose, text),
    compay.set_payout_rotation(text, boolean) TO compay_app, compay_node;
