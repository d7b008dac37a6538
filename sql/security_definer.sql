-- SECURITY DEFINER functions cannot be made to run a caller's code.
--
-- 1. The catalog check: every function of the extension that is SECURITY
--    DEFINER pins its search_path, and every pinned search_path ends with
--    pg_temp (PostgreSQL searches the temporary schema first for relations
--    and types when the path does not name it).
-- 2. The exploit, as a login role with only compay_app, one with only
--    compay_reader and a node role (compay_node): domains named text,
--    jsonb, int8, ... in pg_temp whose check makes the session user a
--    superuser when it runs as anyone else;
--    then every SECURITY DEFINER function the role may execute is called.
--    No check runs as the owner, and no role becomes a superuser.

SET client_min_messages = warning;

-- 1. The catalog check.
SELECT p.oid::regprocedure AS definer_without_pinned_path
FROM pg_proc p
WHERE p.pronamespace = 'compay'::regnamespace AND p.prosecdef
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
ORDER BY 1;
SELECT p.oid::regprocedure AS pinned_path_without_pg_temp_last, c AS setting
FROM pg_proc p, unnest(p.proconfig) c
WHERE p.pronamespace = 'compay'::regnamespace
  AND c LIKE 'search\_path=%' AND c NOT LIKE '%, pg\_temp'
ORDER BY 1;
SELECT count(*) > 40 AS many_definer_functions_checked
FROM pg_proc p WHERE p.pronamespace = 'compay'::regnamespace AND p.prosecdef;

-- The exploit's roles, and money for the app's job.
SELECT current_user AS original_user \gset
CREATE ROLE security_app LOGIN IN ROLE compay_app;
CREATE ROLE security_reader LOGIN IN ROLE compay_reader;
CREATE ROLE security_node LOGIN IN ROLE compay_node;
SELECT compay.add_node_role('security_node', 'sec-req') AS node_mapped;
SELECT compay.deposit('sec-req', '100') > 0 AS funded;

-- The exploit's objects, made in the session of the role itself: a check
-- function that escalates when it runs as another user, and a domain over
-- each type the functions declare, all in pg_temp.
CREATE FUNCTION public.security_plant() RETURNS void LANGUAGE plpgsql AS $plant$
DECLARE
    t text;
BEGIN
    EXECUTE $evil$
        CREATE FUNCTION pg_temp.evil(v pg_catalog.text) RETURNS pg_catalog.bool
        LANGUAGE plpgsql AS $$
        BEGIN
            IF current_user <> session_user THEN
                -- A trace that outlives the caller's error and rollback.
                PERFORM pg_catalog.nextval('pg_temp.ran_as');
                RAISE WARNING 'the check ran as %', current_user;
                EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', session_user);
            END IF;
            RETURN true;
        END $$ $evil$;
    CREATE TEMP SEQUENCE ran_as;
    -- Types looked up by name (bigint, integer, boolean, numeric and
    -- interval are keywords that always mean pg_catalog's types).
    FOREACH t IN ARRAY ARRAY['text', 'jsonb', 'bytea', 'date', 'timestamptz', 'int8', 'int4',
                             'bool', 'float8', 'regclass'] LOOP
        EXECUTE pg_catalog.format(
            'CREATE DOMAIN pg_temp.%I AS pg_catalog.%I CHECK (pg_temp.evil(VALUE::pg_catalog.text))', t, t);
    END LOOP;
END $plant$;

-- Calls every SECURITY DEFINER function of compay that the current role may
-- execute, with NULL arguments, and the issue's submit_job call; errors are
-- expected (NULL arguments, no wallet) and swallowed.  Returns how many.
CREATE FUNCTION public.security_call_all() RETURNS integer LANGUAGE plpgsql AS $call$
DECLARE
    f record;
    n integer := 0;
BEGIN
    BEGIN
        PERFORM compay.submit_job('hj-1', 'sec-req', 'render', '1', '1 hour');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    FOR f IN
        SELECT p.oid, p.proname, p.pronargs, p.proretset
        FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'compay'::regnamespace AND p.prosecdef AND p.prokind = 'f'
          AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
        ORDER BY p.proname
    LOOP
        BEGIN
            EXECUTE pg_catalog.format('SELECT %s %I.%I(%s)',
                CASE WHEN f.proretset THEN 'count(*) FROM' ELSE '' END, 'compay', f.proname,
                (SELECT pg_catalog.string_agg('NULL', ', ') FROM pg_catalog.generate_series(1, f.pronargs)));
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        n := n + 1;
    END LOOP;
    RETURN n;
END $call$;
GRANT EXECUTE ON FUNCTION public.security_plant(), public.security_call_all() TO PUBLIC;

-- 2a. As compay_app.
\c - security_app
SET client_min_messages = warning;
SELECT public.security_plant();
SELECT public.security_call_all() > 25 AS app_called_definer_functions;
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS checks_run_as_another_user FROM pg_temp.ran_as;
SELECT rolsuper AS app_became_superuser FROM pg_roles WHERE rolname = 'security_app';

-- 2b. As compay_reader.
\c - security_reader
SET client_min_messages = warning;
SELECT public.security_plant();
SELECT public.security_call_all() > 0 AS reader_called_definer_functions;
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS checks_run_as_another_user FROM pg_temp.ran_as;
SELECT rolsuper AS reader_became_superuser FROM pg_roles WHERE rolname = 'security_reader';

-- 2c. As compay_node, mapped to the node sec-req.
\c - security_node
SET client_min_messages = warning;
SELECT public.security_plant();
SELECT public.security_call_all() > 5 AS node_called_definer_functions;
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS checks_run_as_another_user FROM pg_temp.ran_as;
SELECT rolsuper AS node_became_superuser FROM pg_roles WHERE rolname = 'security_node';

\c - :original_user
SET client_min_messages = warning;
DROP FUNCTION public.security_plant(), public.security_call_all();
SELECT bool_and(ok) AS ledger_ok FROM compay.verify_ledger();
SELECT compay.remove_node_role('security_node', 'sec-req') AS node_unmapped;
DROP OWNED BY security_app, security_reader, security_node;
DROP ROLE security_app, security_reader, security_node;
