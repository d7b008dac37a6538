-- pgTAP: the schema contract of compay.credit (type, casts, operators,
-- operator classes, aggregates and function properties).
BEGIN;
SET search_path = public, compay;
SELECT plan(47);

SELECT has_schema('compay');
SELECT has_type('compay', 'credit', 'type compay.credit exists');
SELECT is((SELECT typlen FROM pg_type WHERE oid = 'compay.credit'::regtype)::int, 16,
          'credit is fixed length, 16 bytes');
SELECT is((SELECT typbyval FROM pg_type WHERE oid = 'compay.credit'::regtype), false,
          'credit is passed by reference');
SELECT is((SELECT typalign FROM pg_type WHERE oid = 'compay.credit'::regtype)::text, 'd',
          'credit is 8-byte aligned');
SELECT isnt((SELECT typreceive FROM pg_type WHERE oid = 'compay.credit'::regtype), 0::regproc,
            'credit has binary input');

-- Casts and their contexts.
SELECT has_cast('bigint', 'credit', 'cast bigint -> credit');
SELECT has_cast('integer', 'credit', 'cast integer -> credit');
SELECT has_cast('smallint', 'credit', 'cast smallint -> credit');
SELECT has_cast('numeric', 'credit', 'cast numeric -> credit');
SELECT has_cast('credit', 'numeric', 'cast credit -> numeric');
SELECT cast_context_is('bigint', 'credit', 'assignment');
SELECT cast_context_is('numeric', 'credit', 'assignment');
SELECT cast_context_is('credit', 'numeric', 'assignment');

-- Operators.
SELECT has_operator('credit', 'compay', '+', 'credit', 'credit', 'operator credit + credit -> credit');
SELECT has_operator('credit', 'compay', '-', 'credit', 'credit', 'operator credit - credit -> credit');
SELECT has_leftop('compay', '-', 'credit', 'credit', 'prefix operator - credit');
SELECT has_operator('credit', 'compay', '*', 'bigint', 'credit', 'operator credit * bigint -> credit');
SELECT has_operator('bigint', 'compay', '*', 'credit', 'credit', 'operator bigint * credit -> credit');
SELECT has_operator('credit', 'compay', '*', 'numeric', 'credit', 'operator credit * numeric -> credit');
SELECT has_operator('numeric', 'compay', '*', 'credit', 'credit', 'operator numeric * credit -> credit');
SELECT has_operator('credit', 'compay', '/', 'bigint', 'credit', 'operator credit / bigint -> credit');
SELECT has_operator('credit', 'compay', '/', 'numeric', 'credit', 'operator credit / numeric -> credit');
SELECT has_operator('credit', 'compay', '/', 'credit', 'numeric', 'operator credit / credit -> numeric');
SELECT has_operator('credit', 'compay', '=', 'credit', 'boolean', 'operator credit = credit -> boolean');
SELECT has_operator('credit', 'compay', '<>', 'credit', 'boolean', 'operator credit <> credit -> boolean');
SELECT has_operator('credit', 'compay', '<', 'credit', 'boolean', 'operator credit < credit -> boolean');
SELECT has_operator('credit', 'compay', '<=', 'credit', 'boolean', 'operator credit <= credit -> boolean');
SELECT has_operator('credit', 'compay', '>', 'credit', 'boolean', 'operator credit > credit -> boolean');
SELECT has_operator('credit', 'compay', '>=', 'credit', 'boolean', 'operator credit >= credit -> boolean');
SELECT ok((SELECT oprcanhash AND oprcanmerge FROM pg_operator
           WHERE oprname = '=' AND oprleft = 'compay.credit'::regtype AND oprright = 'compay.credit'::regtype),
          '= is marked HASHES and MERGES');

-- Operator classes: the defaults for btree and hash.
SELECT has_opclass('compay', 'credit_ops', 'btree operator class exists');
SELECT has_opclass('compay', 'credit_hash_ops', 'hash operator class exists');
SELECT ok((SELECT bool_and(opcdefault) FROM pg_opclass
           WHERE opcintype = 'compay.credit'::regtype), 'both operator classes are the default');

-- Aggregates, parallel safe with combine and serial functions.
SELECT is_aggregate('compay', 'sum', ARRAY['credit']);
SELECT is_aggregate('compay', 'avg', ARRAY['credit']);
SELECT is_aggregate('compay', 'min', ARRAY['credit']);
SELECT is_aggregate('compay', 'max', ARRAY['credit']);
SELECT ok((SELECT aggcombinefn <> 0 AND aggserialfn <> 0 AND aggdeserialfn <> 0
           FROM pg_aggregate WHERE aggfnoid = 'compay.sum(compay.credit)'::regprocedure),
          'sum has combine, serial and deserial functions');
SELECT is((SELECT proparallel::text FROM pg_proc WHERE oid = 'compay.sum(compay.credit)'::regprocedure),
          's', 'sum is parallel safe');

-- Functions of the type: IMMUTABLE, STRICT and PARALLEL SAFE.
SELECT has_function('compay', 'atomic', ARRAY['credit']);
SELECT has_function('compay', 'credit_from_atomic', ARRAY['numeric']);
SELECT has_function('compay', 'round_credit', ARRAY['numeric', 'text']);
SELECT has_function('compay', 'xmr', ARRAY['credit']);
SELECT is((SELECT count(*)::int FROM pg_proc
           WHERE pronamespace = 'compay'::regnamespace
             AND proname IN ('atomic', 'credit_from_atomic', 'round_credit', 'xmr', 'abs', 'sign',
                             'credit_in', 'credit_out', 'credit_recv', 'credit_send', 'credit_pl',
                             'credit_mi', 'credit_um', 'credit_cmp', 'credit_eq', 'credit_hash')
             AND NOT (provolatile = 'i' AND proisstrict AND proparallel = 's')), 0,
          'type functions are IMMUTABLE STRICT PARALLEL SAFE');
SELECT is((SELECT default_version FROM pg_available_extensions WHERE name = 'compay'), '0.2',
          'extension version is 0.2');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'compay'), false,
          'extension is not relocatable');

SELECT * FROM finish();
ROLLBACK;
