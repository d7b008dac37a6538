--------------------------------------------------------------------------
-- Network-wide reads of the router: every shard's answer, combined.
--------------------------------------------------------------------------

CREATE FUNCTION compay.router_verify_ledger_all()
RETURNS TABLE (shard integer, check_name text, ok boolean, detail text)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'compay_cluster';
    RUN ON ALL;
    SELECT c.shard, v.check_name, v.ok, v.detail
    FROM compay.verify_ledger() v CROSS JOIN compay.shard_config c;
$$;

-- Every shard's checks, each named 'shard <n>: <check>'.
CREATE FUNCTION compay.verify_ledger() RETURNS TABLE (check_name text, ok boolean, detail text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT 'shard ' || v.shard || ': ' || v.check_name, v.ok, v.detail
    FROM compay.router_verify_ledger_all() v ORDER BY v.shard
$$;
COMMENT ON FUNCTION compay.verify_ledger() IS
    'every shard''s compay.verify_ledger(), each check named ''shard <n>: <check>''';

CREATE FUNCTION compay.router_clearing_totals()
RETURNS TABLE (shard integer, peer integer, currency text, sent_events bigint,
               sent compay.credit, received_events bigint, received compay.credit,
               in_flight_events bigint, in_flight compay.credit)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'compay_cluster';
    RUN ON ALL;
    SELECT * FROM compay.clearing_totals();
$$;

-- Conservation of cross-shard money: per ordered pair of shards and
-- currency, what from_shard sent (its clearing_sent, the credits of its
-- $clearing:<to_shard>) equals what to_shard received (its
-- clearing_applied, the debits of its $clearing:<from_shard>) plus the
-- events to_shard's consumer has not finished yet.
CREATE FUNCTION compay.cluster_check()
RETURNS TABLE (from_shard integer, to_shard integer, currency text, sent_events bigint,
               sent compay.credit, received_events bigint, received compay.credit,
               in_flight_events bigint, in_flight compay.credit, ok boolean)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH t AS (SELECT * FROM compay.router_clearing_totals()),
    pairs AS (SELECT t.shard AS a, t.peer AS b, t.currency FROM t
              UNION SELECT t.peer, t.shard, t.currency FROM t)
    SELECT p.a, p.b, p.currency,
           coalesce(s.sent_events, 0), coalesce(s.sent, '0'),
           coalesce(r.received_events, 0), coalesce(r.received, '0'),
           coalesce(s.in_flight_events, 0), coalesce(s.in_flight, '0'),
           coalesce(s.sent_events, 0) = coalesce(r.received_events, 0) + coalesce(s.in_flight_events, 0)
           AND coalesce(s.sent, '0') = (coalesce(r.received, '0') + coalesce(s.in_flight, '0'))
    FROM pairs p
    LEFT JOIN t s ON s.shard = p.a AND s.peer = p.b AND s.currency = p.currency
    LEFT JOIN t r ON r.shard = p.b AND r.peer = p.a AND r.currency = p.currency
    ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION compay.cluster_check() IS
    'per ordered pair of shards and currency: sent = received + in flight (events and amounts), ok when it holds';

-- Every routed call runs on a shard as the role of the cluster's user
-- mapping, where compay's grants and node checks apply; the router itself
-- grants execution to all, except its configuration.
REVOKE ALL ON TABLE compay.router_config FROM PUBLIC;
