#!/usr/bin/env python3
"""Writes sql/router/routed.sql: the router's PL/Proxy twins of the shard API.

Run against a database with the current compay installed:
    python3 sql/router/generate.py 'host=127.0.0.1 port=5432 dbname=postgres' \
        >sql/router/routed.sql
It reads every routed function's arguments (with defaults) and result from
the catalog, so each router function has the shard function's name and
signature; the rule tables below say how each is routed (docs/scaling.md
lists them).  Types of schema compay that the signatures use (enums, row
types) are declared first; compay.credit itself comes from src/credit.sql.
test/t/070_shard_router.pl compares every routed signature with the shard's.
"""

import json
import subprocess
import sys

# Node-scoped: RUN ON hashtext(<argument>), the node's shard.
NODE = {
    'open_account': 'node_id', 'balance': 'node_id', 'history': 'node_id',
    'deposit': 'node_id', 'admin_deposit': 'node_id', 'transfer': 'from_node',
    'reserve': 'node_id', 'submit_job': 'requester', 'submit_task': 'requester',
    'stake': 'node_id', 'unstake': 'node_id', 'set_credit_limit': 'node_id',
    'verifier_daily_limit': 'node_id', 'clawbacks_owed': 'node_id',
    'node_shortfalls': 'node_id', 'withdrawable': 'node_id',
    'request_withdrawal': 'node_id', 'request_payout': 'node_id',
    'payout_policy': 'node_id', 'set_payout_policy': 'node_id',
    'set_payout_address': 'node_id', 'add_payout_address': 'node_id',
    'remove_payout_address': 'node_id', 'payout_address_list': 'node_id',
    'set_payout_rotation': 'node_id', 'set_node_region': 'node_id',
    'deposit_address': 'node_id', 'price': 'requester', 'quote': 'requester',
    'grant_barter': 'holder', 'barter_balance': 'holder',
}
# Hold and transfer ids carry their shard in id & (partitions - 1).
BY_ID = {'capture': 'hold_id', 'release': 'hold_id', 'refund': 'transfer_id'}
# Job-scoped: the shard that holds the job (its requester's), found by
# compay.router_job_shard(task_id).
JOB = ['assign_job', 'complete_job', 'verify_job', 'record_usage',
       'process_task_payment', 'task_metrics', 'payment_trace']
# The same answer on every shard (configuration): any shard.
ANY = ['compute_reward', 'exchange_rate', 'check_price']
# Network-wide, SETOF results: every shard, rows unioned.
ALL_UNION = ['run_settlement', 'process_due_settlements']
# Network-wide counts: every shard, summed.
ALL_SUM = ['expire_holds', 'expire_jobs']
# Pure SQL helpers copied as they are.
COPY = ['metrics']

CATALOG = r"""
SELECT json_agg(json_build_object(
    'name', p.proname, 'oid', p.oid::int,
    'args', pg_get_function_arguments(p.oid),
    'identity', pg_get_function_identity_arguments(p.oid),
    'result', pg_get_function_result(p.oid),
    'retset', p.proretset, 'volatile', p.provolatile,
    'argnames', p.proargnames, 'argmodes', p.proargmodes,
    'nargs', p.pronargs,
    'types', (SELECT array_agg(t::regtype::text) FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]) || p.prorettype) t),
    'def', CASE WHEN p.proname = ANY(%(copy)s) THEN pg_get_functiondef(p.oid) END)
    ORDER BY p.proname, pg_get_function_identity_arguments(p.oid))
FROM pg_proc p WHERE p.pronamespace = 'compay'::regnamespace AND p.proname = ANY(%(all)s)
"""

TYPES = r"""
WITH RECURSIVE used(oid) AS (
    SELECT unnest(%(oids)s::oid[])
  UNION
    SELECT l.oid FROM used u JOIN pg_type t ON t.oid = u.oid
    CROSS JOIN LATERAL (
        SELECT a.atttypid FROM pg_attribute a
        WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL SELECT t.typelem WHERE t.typelem <> 0) l(oid))
SELECT json_agg(json_build_object('name', t.oid::regtype::text, 'kind', t.typtype,
    'labels', (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
    'cols', (SELECT json_agg(json_build_array(quote_ident(a.attname), format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
             FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
    ORDER BY t.typtype DESC, t.oid)
FROM used u JOIN pg_type t ON t.oid = u.oid
WHERE t.typnamespace = 'compay'::regnamespace AND t.typname <> 'credit' AND t.typtype IN ('e', 'c')
"""


def psql(conninfo, sql):
    out = subprocess.run(['psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c', sql],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def sql_array(names):
    return "ARRAY[" + ", ".join("'%s'" % n for n in names) + "]::name[]"


def header(f):
    # PL/Proxy functions are VOLATILE, whatever the shard's function is.
    return "CREATE FUNCTION compay.%s(%s)\nRETURNS %s\nLANGUAGE plproxy VOLATILE AS $$\n" % (
        f['name'], f['args'], f['result'])


def call_args(f):
    """The argument list that passes every input argument on by name."""
    names = f['argnames'] or []
    modes = f['argmodes'] or ['i'] * len(names)
    return ", ".join(n for n, m in zip(names, modes) if m in ('i', 'b', 'v'))


def routed(f):
    n = f['name']
    if n in NODE:
        return header(f) + "    CLUSTER 'compay_cluster';\n    RUN ON compay.router_node_hash(%s);\n$$;\n" % NODE[n]
    if n in BY_ID:
        return header(f) + "    CLUSTER 'compay_cluster';\n    RUN ON compay.router_id_hash(%s);\n$$;\n" % BY_ID[n]
    if n in JOB:
        return header(f) + "    CLUSTER 'compay_cluster';\n    RUN ON compay.router_job_shard(task_id);\n$$;\n"
    if n in ANY:
        return header(f) + "    CLUSTER 'compay_cluster';\n    RUN ON ANY;\n$$;\n"
    if n in ALL_UNION:
        assert f['retset'], n
        return header(f) + "    CLUSTER 'compay_cluster';\n    RUN ON ALL;\n$$;\n"
    if n in ALL_SUM:
        # An internal SETOF twin on every shard, summed by a SQL function.
        # Its caller's EXECUTE stays: the SQL function runs as the caller,
        # and each shard decides whether that role may expire.
        inner = dict(f, name='router_all_' + n, result='SETOF ' + f['result'])
        return (header(inner) + "    CLUSTER 'compay_cluster';\n    RUN ON ALL;\n"
                "    SELECT compay.%s(%s);\n$$;\n" % (n, call_args(f)) +
                "CREATE FUNCTION compay.%s(%s)\nRETURNS %s\nLANGUAGE sql VOLATILE AS $$\n"
                "    SELECT coalesce(sum(n), 0)::integer FROM compay.router_all_%s(%s) n\n$$;\n"
                % (n, f['args'], f['result'], n, call_args(f)))
    if n in COPY:
        return f['def'].rstrip() + ";\n"
    raise SystemExit('no rule for ' + n)


def main():
    conninfo = sys.argv[1]
    names = list(NODE) + list(BY_ID) + JOB + ANY + ALL_UNION + ALL_SUM + COPY
    funcs = psql(conninfo, CATALOG % {'copy': sql_array(COPY), 'all': sql_array(names)})
    missing = set(names) - {f['name'] for f in funcs}
    if missing:
        raise SystemExit('not in compay: ' + ', '.join(sorted(missing)))
    oids = psql(conninfo, "SELECT json_agg(DISTINCT t::regtype::oid::int) FROM unnest(%s::regtype[]) t"
                % ("ARRAY[" + ", ".join("'%s'" % t for f in funcs for t in f['types']) + "]"))
    types = psql(conninfo, TYPES % {'oids': "ARRAY[%s]" % ", ".join(map(str, oids))})
    print("-- Generated by sql/router/generate.py from the compay catalog; do not edit.")
    print("-- The types of schema compay that routed signatures use.")
    for t in types or []:
        if t['kind'] == 'e':
            print("CREATE TYPE %s AS ENUM (%s);" % (
                t['name'], ", ".join("'%s'" % l.replace("'", "''") for l in t['labels'])))
    for t in types or []:
        if t['kind'] == 'c':
            print("CREATE TYPE %s AS (\n    %s);" % (
                t['name'], ",\n    ".join("%s %s" % (c[0], c[1]) for c in t['cols'])))
    print()
    for f in funcs:
        print(routed(f))


if __name__ == '__main__':
    main()
