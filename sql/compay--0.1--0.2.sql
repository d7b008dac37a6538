-- compay 0.1 -> 0.2: ALTER EXTENSION compay UPDATE TO '0.2'.
-- Every change of 0.2 to what 0.1 created; a fresh 0.2 install
-- (src/*.sql) and a 0.1 database updated by this script give the same
-- database (test/t/012_upgrade.pl compares them from the catalogs).

\echo Use "ALTER EXTENSION compay UPDATE TO '0.2'" to load this file. \quit

--------------------------------------------------------------------------
-- Security: every function that pins its search_path ends it with
-- pg_temp.  Left out, PostgreSQL searches the session's temporary schema
-- first for relations and types, so a caller's pg_temp.text domain would
-- run its check as the function's owner.
--------------------------------------------------------------------------

DO $pin$
DECLARE
    f regprocedure;
    v_path text;
BEGIN
    FOR f, v_path IN
        SELECT p.oid::regprocedure, substr(c, length('search_path=') + 1)
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass
             AND d.objid = p.oid AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'compay'
        CROSS JOIN LATERAL unnest(p.proconfig) c
        WHERE c LIKE 'search\_path=%' AND c NOT LIKE '%pg\_temp'
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = %s, pg_temp', f, v_path);
    END LOOP;
END
$pin$;
