-- test/lib/catalog.sql: every object of extension compay as sorted text
-- lines, so that two databases (a 0.1 database updated to the current
-- version, and a fresh install) can be compared with diff.  pg_dump skips
-- extension members, so it cannot show this.  OIDs, and the order of
-- creation, never appear; everything else that a definition holds does.
-- Run with psql -XAt.

WITH ext AS (
    SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'compay'
), member AS (
    SELECT d.classid, d.objid
    FROM pg_catalog.pg_depend d, ext
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid
      AND d.deptype = 'e'
), rel AS (
    SELECT c.* FROM pg_catalog.pg_class c
    JOIN member m ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid
    UNION ALL   -- composite types' relations belong to the type, not the extension
    SELECT c.* FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_type t ON t.typrelid = c.oid AND c.relkind = 'c'
    JOIN member m ON m.classid = 'pg_catalog.pg_type'::regclass AND m.objid = t.oid
), lines (line) AS (
    -- Extension membership: every member, described.
    SELECT 'member ' || pg_catalog.pg_describe_object(m.classid, m.objid, 0) FROM member m
    UNION ALL
    -- Functions, procedures and aggregates: their full definition, owner
    -- and privileges.
    SELECT 'function ' || p.oid::regprocedure::text || ' ' ||
           CASE WHEN p.prokind = 'a' THEN
               'aggregate sfunc=' || a.aggtransfn::text || ' stype=' || a.aggtranstype::regtype::text ||
               ' final=' || a.aggfinalfn::text || ' combine=' || a.aggcombinefn::text ||
               ' serial=' || a.aggserialfn::text || ' deserial=' || a.aggdeserialfn::text ||
               ' sortop=' || a.aggsortop::regoperator::text || ' init=' || coalesce(a.agginitval, '-') ||
               ' parallel=' || p.proparallel::text
           ELSE pg_catalog.pg_get_functiondef(p.oid) END ||
           ' owner=' || p.proowner::regrole::text ||
           ' acl=' || coalesce(p.proacl::text, 'default') ||
           ' comment=' || coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '-')
    FROM pg_catalog.pg_proc p
    JOIN member m ON m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid
    LEFT JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid
    UNION ALL
    -- Relations: kind, options, privileges, comment.
    SELECT 'relation ' || c.oid::regclass::text || ' kind=' || c.relkind::text ||
           ' persistence=' || c.relpersistence::text || ' options=' || coalesce(c.reloptions::text, '-') ||
           ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity ||
           ' owner=' || c.relowner::regrole::text ||
           ' acl=' || coalesce(c.relacl::text, 'default') ||
           ' comment=' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '-')
    FROM rel c
    UNION ALL
    -- Columns, in their order: type, nullability, default, privileges, comment.
    SELECT 'column ' || c.oid::regclass::text || ' #' ||
           pg_catalog.row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) || ' ' ||
           pg_catalog.quote_ident(a.attname) || ' ' ||
           pg_catalog.format_type(a.atttypid, a.atttypmod) ||
           CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
           coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '') ||
           CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END ||
           CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END ||
           ' collation=' || coalesce(NULLIF(a.attcollation, 0)::regcollation::text, '-') ||
           ' acl=' || coalesce(a.attacl::text, 'default') ||
           ' comment=' || coalesce(pg_catalog.col_description(c.oid, a.attnum), '-')
    FROM rel c
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    -- Constraints of tables and domains.
    SELECT 'constraint ' || coalesce(co.conrelid::regclass::text, co.contypid::regtype::text) || ' ' ||
           pg_catalog.quote_ident(co.conname) || ' ' || pg_catalog.pg_get_constraintdef(co.oid) ||
           ' deferrable=' || co.condeferrable || ' valid=' || co.convalidated
    FROM pg_catalog.pg_constraint co
    WHERE co.conrelid IN (SELECT oid FROM rel)
       OR co.contypid IN (SELECT objid FROM member WHERE classid = 'pg_catalog.pg_type'::regclass)
    UNION ALL
    -- Indexes (constraint indexes included).
    SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
    FROM pg_catalog.pg_index i WHERE i.indrelid IN (SELECT oid FROM rel)
    UNION ALL
    -- Views: their query.
    SELECT 'view ' || c.oid::regclass::text || ' ' || pg_catalog.pg_get_viewdef(c.oid)
    FROM rel c WHERE c.relkind IN ('v', 'm')
    UNION ALL
    -- Triggers.
    SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
    FROM pg_catalog.pg_trigger t
    WHERE t.tgrelid IN (SELECT oid FROM rel) AND NOT t.tgisinternal
    UNION ALL
    -- Row security policies.
    SELECT 'policy ' || p.polrelid::regclass::text || ' ' || p.polname || ' cmd=' || p.polcmd::text ||
           ' permissive=' || p.polpermissive ||
           ' roles=' || p.polroles::regrole[]::text ||
           ' using=' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '-') ||
           ' check=' || coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '-')
    FROM pg_catalog.pg_policy p WHERE p.polrelid IN (SELECT oid FROM rel)
    UNION ALL
    -- Types: kind, I/O, storage, category; enum labels in their order;
    -- domains' base types.
    SELECT 'type ' || t.oid::regtype::text || ' kind=' || t.typtype::text || ' len=' || t.typlen ||
           ' byval=' || t.typbyval || ' align=' || t.typalign::text || ' storage=' || t.typstorage::text ||
           ' category=' || t.typcategory::text || ' preferred=' || t.typispreferred ||
           ' in=' || t.typinput::text || ' out=' || t.typoutput::text ||
           ' recv=' || t.typreceive::text || ' send=' || t.typsend::text ||
           ' base=' || coalesce(NULLIF(t.typbasetype, 0)::regtype::text, '-') ||
           ' labels=' || coalesce((SELECT pg_catalog.string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                   FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), '-') ||
           ' owner=' || t.typowner::regrole::text ||
           ' acl=' || coalesce(t.typacl::text, 'default') ||
           ' comment=' || coalesce(pg_catalog.obj_description(t.oid, 'pg_type'), '-')
    FROM pg_catalog.pg_type t
    JOIN member m ON m.classid = 'pg_catalog.pg_type'::regclass AND m.objid = t.oid
    UNION ALL
    -- Operators.
    SELECT 'operator ' || o.oid::regoperator::text || ' returns ' || o.oprresult::regtype::text ||
           ' code=' || o.oprcode::text || ' commutator=' || coalesce(NULLIF(o.oprcom, 0)::regoperator::text, '-') ||
           ' negator=' || coalesce(NULLIF(o.oprnegate, 0)::regoperator::text, '-') ||
           ' restrict=' || o.oprrest::text || ' join=' || o.oprjoin::text ||
           ' hashes=' || o.oprcanhash || ' merges=' || o.oprcanmerge ||
           ' comment=' || coalesce(pg_catalog.obj_description(o.oid, 'pg_operator'), '-')
    FROM pg_catalog.pg_operator o
    JOIN member m ON m.classid = 'pg_catalog.pg_operator'::regclass AND m.objid = o.oid
    UNION ALL
    -- Operator classes and families with their operators and support functions.
    SELECT 'opclass ' || pg_catalog.pg_describe_object('pg_catalog.pg_opclass'::regclass, oc.oid, 0) ||
           ' default=' || oc.opcdefault || ' type=' || oc.opcintype::regtype::text ||
           ' family=' || pg_catalog.pg_describe_object('pg_catalog.pg_opfamily'::regclass, oc.opcfamily, 0)
    FROM pg_catalog.pg_opclass oc
    JOIN member m ON m.classid = 'pg_catalog.pg_opclass'::regclass AND m.objid = oc.oid
    UNION ALL
    SELECT 'amop ' || pg_catalog.pg_describe_object('pg_catalog.pg_opfamily'::regclass, ao.amopfamily, 0) ||
           ' ' || ao.amopstrategy || ' ' || ao.amopopr::regoperator::text
    FROM pg_catalog.pg_amop ao
    WHERE ao.amopfamily IN (SELECT objid FROM member WHERE classid = 'pg_catalog.pg_opfamily'::regclass)
    UNION ALL
    SELECT 'amproc ' || pg_catalog.pg_describe_object('pg_catalog.pg_opfamily'::regclass, ap.amprocfamily, 0) ||
           ' ' || ap.amprocnum || ' ' || ap.amproc::regprocedure::text
    FROM pg_catalog.pg_amproc ap
    WHERE ap.amprocfamily IN (SELECT objid FROM member WHERE classid = 'pg_catalog.pg_opfamily'::regclass)
    UNION ALL
    -- Casts.
    SELECT 'cast ' || ca.castsource::regtype::text || ' -> ' || ca.casttarget::regtype::text ||
           ' func=' || coalesce(NULLIF(ca.castfunc, 0)::regprocedure::text, '-') ||
           ' context=' || ca.castcontext::text || ' method=' || ca.castmethod::text
    FROM pg_catalog.pg_cast ca
    JOIN member m ON m.classid = 'pg_catalog.pg_cast'::regclass AND m.objid = ca.oid
    UNION ALL
    -- pg_extension_config_dump registrations, each with its filter.
    SELECT 'config_dump ' || cfg.rel::regclass::text || ' ' || coalesce(NULLIF(cfg.cond, ''), '-')
    FROM pg_catalog.pg_extension e, ext,
         LATERAL unnest(e.extconfig, e.extcondition) AS cfg (rel, cond)
    WHERE e.oid = ext.oid
    UNION ALL
    -- The schema's privileges.
    SELECT 'schema compay acl=' || coalesce(n.nspacl::text, 'default')
    FROM pg_catalog.pg_namespace n WHERE n.nspname = 'compay'
    UNION ALL
    -- The roles the extension creates, and who is a member of whom among them.
    SELECT 'role membership ' || r.rolname || ' in ' || g.rolname
    FROM pg_catalog.pg_auth_members am
    JOIN pg_catalog.pg_roles r ON r.oid = am.member
    JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
    WHERE g.rolname LIKE 'compay\_%' AND r.rolname LIKE 'compay\_%'
)
SELECT line FROM lines ORDER BY line COLLATE "C";
