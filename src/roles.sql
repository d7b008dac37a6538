--------------------------------------------------------------------------
-- Roles.  Cluster-wide, so created only when missing; never dropped with
-- the extension.
--------------------------------------------------------------------------

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['compay_reader', 'compay_app', 'compay_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;
GRANT compay_reader TO compay_app;
GRANT compay_app TO compay_admin;
GRANT USAGE ON SCHEMA compay TO PUBLIC;
