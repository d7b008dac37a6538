--------------------------------------------------------------------------
-- Roles.  Cluster-wide, so created only when missing; never dropped with
-- the extension.
--------------------------------------------------------------------------

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['compay_reader', 'compay_app', 'compay_admin', 'compay_node'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;
GRANT compay_reader TO compay_app;
GRANT compay_app TO compay_admin;
GRANT USAGE ON SCHEMA compay TO PUBLIC;

--------------------------------------------------------------------------
-- Node roles (src/node_roles.c).  compay_app acts for every node; a role
-- granted compay_node acts only for the nodes mapped to it here, and the
-- money functions check it (compay.require_node).  compay_node is not a
-- member of compay_reader: a node reads its own rows through the
-- functions, not the tables.
--------------------------------------------------------------------------

CREATE TABLE compay.node_roles (
    role_name  name NOT NULL,
    node_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (role_name, node_id)
);
CREATE INDEX node_roles_node ON compay.node_roles (node_id);
COMMENT ON TABLE compay.node_roles IS
    'the nodes each role that is not compay_app (a compay_node role) may act for';
SELECT pg_catalog.pg_extension_config_dump('compay.node_roles', '');
REVOKE ALL ON compay.node_roles FROM PUBLIC;
GRANT SELECT ON compay.node_roles TO compay_reader;

CREATE FUNCTION compay.require_node(node_id text, write boolean DEFAULT true) RETURNS void
    AS 'MODULE_PATHNAME', 'compay_require_node'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION compay.require_node(text, boolean) IS
    '42501 unless the session''s role may act for the node (to write, or to read); NULL node: only compay_app (compay_reader to read) and superusers pass';

CREATE FUNCTION compay.add_node_role(role_name name, node_id text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF role_name IS NULL OR node_id IS NULL THEN
        RAISE EXCEPTION 'role_name and node_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM compay.check_node_id(node_id);      -- the ledger's node id rule (22023)
    INSERT INTO compay.node_roles AS n (role_name, node_id)
    VALUES (add_node_role.role_name, add_node_role.node_id) ON CONFLICT DO NOTHING;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION compay.add_node_role(name, text) IS
    'lets a role (granted compay_node) act for a node; false if it already could';

CREATE FUNCTION compay.remove_node_role(role_name name, node_id text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    DELETE FROM compay.node_roles n
    WHERE n.role_name = remove_node_role.role_name AND n.node_id = remove_node_role.node_id;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION compay.remove_node_role(name, text) IS
    'stops a role acting for a node; false if it did not';

REVOKE ALL ON FUNCTION compay.require_node(text, boolean), compay.add_node_role(name, text),
    compay.remove_node_role(name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.add_node_role(name, text), compay.remove_node_role(name, text)
    TO compay_admin;
