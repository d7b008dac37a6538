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

CREATE TYPE compay.router_report_row AS (
    currency text, section text, method compay.payment_method, status text,
    direction text, count bigint, amount compay.credit, fee compay.credit, is_total boolean);

-- A node's earnings and payment history: its payments live on their
-- requesters' shards, so every shard answers and the router combines:
-- each amount summed per currency, the rows merged in the shard's order.
CREATE FUNCTION compay.router_all_earnings(node_id text, currency text)
RETURNS TABLE (currency_code text, earned compay.credit, refunded compay.credit,
               rewards compay.credit, pending compay.credit, settled_unpaid compay.credit,
               in_flight compay.credit, paid compay.credit, clawbacks_owed compay.credit,
               shortfalls_owed_to compay.credit, shortfalls_owed_by compay.credit)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'compay_cluster';
    RUN ON ALL;
    SELECT * FROM compay.earnings(node_id, currency);
$$;

CREATE FUNCTION compay.earnings(node_id text, currency text DEFAULT NULL::text)
RETURNS TABLE (currency_code text, earned compay.credit, refunded compay.credit,
               rewards compay.credit, pending compay.credit, settled_unpaid compay.credit,
               in_flight compay.credit, paid compay.credit, clawbacks_owed compay.credit,
               shortfalls_owed_to compay.credit, shortfalls_owed_by compay.credit)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT e.currency_code, sum(e.earned), sum(e.refunded), sum(e.rewards), sum(e.pending),
           sum(e.settled_unpaid), sum(e.in_flight), sum(e.paid), sum(e.clawbacks_owed),
           sum(e.shortfalls_owed_to), sum(e.shortfalls_owed_by)
    FROM compay.router_all_earnings($1, $2) e
    GROUP BY e.currency_code ORDER BY e.currency_code
$$;
COMMENT ON FUNCTION compay.earnings(text, text) IS
    'every shard''s compay.earnings() of the node, each amount summed per currency';

CREATE FUNCTION compay.router_all_payment_history(node_id text, max_rows integer)
RETURNS TABLE (created_at timestamptz, completed_at timestamptz, direction text,
               payment_id bigint, task_id text, counterparty text, amount compay.credit,
               refunded compay.credit, currency text, method compay.payment_method,
               status compay.payment_status, settlement_id bigint, tx_hash text)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'compay_cluster';
    RUN ON ALL;
    SELECT * FROM compay.payment_history(node_id, max_rows);
$$;

CREATE FUNCTION compay.payment_history(node_id text, max_rows integer DEFAULT 100)
RETURNS TABLE (created_at timestamptz, completed_at timestamptz, direction text,
               payment_id bigint, task_id text, counterparty text, amount compay.credit,
               refunded compay.credit, currency text, method compay.payment_method,
               status compay.payment_status, settlement_id bigint, tx_hash text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT * FROM compay.router_all_payment_history($1, $2) h
    ORDER BY h.created_at DESC, h.payment_id DESC
    LIMIT $2
$$;
COMMENT ON FUNCTION compay.payment_history(text, integer) IS
    'every shard''s compay.payment_history() of the node, newest first, max_rows in all';

-- The daily and monthly payment reports: every shard's rows summed by
-- their key (totals too), in the shard's order.
CREATE FUNCTION compay.router_all_payment_report(kind text, day date, node_id text)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'compay_cluster';
    RUN ON ALL;
    SELECT * FROM compay.payment_report(kind, day, node_id);
$$;

CREATE FUNCTION compay.router_all_payment_report(kind text, year integer, month integer,
    node_id text)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'compay_cluster';
    RUN ON ALL;
    SELECT * FROM compay.payment_report(kind, year, month, node_id);
$$;

CREATE FUNCTION compay.router_report_rows(r compay.router_report_row[])
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT u.currency, u.section, u.method, u.status, u.direction, sum(u.count)::bigint,
           sum(u.amount), sum(u.fee), u.is_total
    FROM unnest($1) u
    GROUP BY u.currency, u.section, u.method, u.status, u.direction, u.is_total
    ORDER BY u.currency,
             array_position(ARRAY['payment', 'refund', 'dispute', 'clawback', 'clawback_repaid',
                                  'clawback_owed', 'shortfall', 'shortfall_collected',
                                  'shortfall_owed', 'payout'], u.section),
             u.is_total, u.method, u.status, u.direction
$$;

CREATE FUNCTION compay.payment_report(kind text, day date, node_id text DEFAULT NULL::text)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT * FROM compay.router_report_rows(ARRAY(
        SELECT r::compay.router_report_row FROM compay.router_all_payment_report($1, $2, $3) r))
$$;
COMMENT ON FUNCTION compay.payment_report(text, date, text) IS
    'every shard''s daily compay.payment_report(), rows summed by their key';

CREATE FUNCTION compay.payment_report(kind text, year integer, month integer,
    node_id text DEFAULT NULL::text)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT * FROM compay.router_report_rows(ARRAY(
        SELECT r::compay.router_report_row FROM compay.router_all_payment_report($1, $2, $3, $4) r))
$$;
COMMENT ON FUNCTION compay.payment_report(text, integer, integer, text) IS
    'every shard''s monthly compay.payment_report(), rows summed by their key';

-- Every routed call runs on a shard as the role of the cluster's user
-- mapping, where compay's grants and node checks apply; the router itself
-- grants execution to all, except its configuration.
REVOKE ALL ON TABLE compay.router_config FROM PUBLIC;
