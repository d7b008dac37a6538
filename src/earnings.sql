--------------------------------------------------------------------------
-- Earnings: what a node earned, where each amount is now (pending,
-- settled, in flight on chain, paid) and what it owes or is owed, read
-- from the payments, verifier rewards, settlements, payout parts,
-- clawbacks and shortfalls.  Read-only (STABLE, no temporary tables):
-- every function here works on a hot standby.  Node-scoped: a node role
-- reads its own, compay_reader every node's.
--
-- An earning event is a payment received (completed, disputed or
-- refunded) or a verifier reward moved from $rewards.  Its net is its
-- amount less what refunds gave back (transfers of kind refund of its
-- transfer, from the payee, its settlement's earmark hold or $clawbacks).
--------------------------------------------------------------------------

-- Every earning event of a node, with its settlement and payout parts.
-- Internal: the node-scoped functions below check the caller first.
CREATE FUNCTION compay.earning_events(node_id text)
RETURNS TABLE (earned_at timestamptz, kind text, purpose text, job_id bigint, task_id text,
               job_type text, payer text, payment_id bigint, currency text,
               amount compay.credit, refunded compay.credit, earned compay.credit,
               settlement_id bigint, payout_ids bigint[], tx_hashes text[], status text)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH events AS (
        SELECT p.completed_at AS earned_at, 'payment'::text AS kind, 'compute'::text AS purpose,
               j.id AS job_id, p.task_id, j.task_type AS job_type, p.from_node AS payer,
               p.id AS payment_id, p.currency, p.amount,
               coalesce((SELECT compay.sum(t.amount) FROM compay.transfers t
                         WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'),
                        '0'::compay.credit) AS refunded,
               compay.payment_settlement(p) AS settlement_id, p.status = 'disputed' AS disputed
        FROM compay.payments p
        LEFT JOIN compay.jobs j ON j.task_id = p.task_id
        WHERE p.to_node = $1 AND p.status IN ('completed', 'disputed', 'refunded')
        UNION ALL
        SELECT v.rewarded_at, 'reward', 'verification', j.id, j.task_id, j.task_type, '$rewards',
               NULL, j.currency, v.reward_amount, '0'::compay.credit, v.settlement_id, false
        FROM compay.verifications v
        JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.verifier = $1 AND v.reward_amount OPERATOR(compay.>) '0'::compay.credit
          AND v.rewarded_at IS NOT NULL
          -- On a shard, an XMR reward of a verifier of another shard is that
          -- shard's earning (compay.clearing_rewards, below), not this one's.
          AND NOT (j.currency = 'XMR' AND EXISTS (
                   SELECT 1 FROM compay.shard_config c
                   WHERE (pg_catalog.hashtext(v.verifier) & (c.partitions - 1)) % c.shards
                         <> c.shard))
        UNION ALL
        SELECT r.rewarded_at, 'reward', 'verification', NULL, r.task_id, r.job_type, '$rewards',
               NULL, r.currency, r.reward_amount, '0'::compay.credit, r.settlement_id, false
        FROM compay.clearing_rewards r
        WHERE r.verifier = $1
    )
    SELECT e.earned_at, e.kind, e.purpose, e.job_id, e.task_id, e.job_type, e.payer,
           e.payment_id, e.currency, e.amount, e.refunded, e.amount OPERATOR(compay.-) e.refunded,
           e.settlement_id, o.payout_ids, o.tx_hashes,
           CASE WHEN e.refunded OPERATOR(compay.>) '0'::compay.credit
                     AND e.refunded OPERATOR(compay.=) e.amount THEN 'refunded'
                WHEN e.disputed THEN 'disputed'
                WHEN e.settlement_id IS NULL THEN 'pending'
                WHEN s.status = 'completed' THEN 'paid'
                WHEN o.in_flight THEN 'in_flight'
                ELSE 'settled' END
    FROM events e
    LEFT JOIN compay.settlements s ON s.id = e.settlement_id
    LEFT JOIN LATERAL (
        SELECT array_agg(t.id ORDER BY t.id) AS payout_ids,
               array_agg(t.tx_hash ORDER BY t.id) AS tx_hashes,
               coalesce(bool_or(t.status IN ('built', 'relayed')), false) AS in_flight
        FROM compay.payout_parts pp
        JOIN compay.payout_transactions t ON t.id = pp.payout_id
        WHERE pp.settlement_id = e.settlement_id AND t.status <> 'failed'
    ) o ON true
$$;
REVOKE ALL ON FUNCTION compay.earning_events(text) FROM PUBLIC;

-- The caller may read node_id's earnings; a NULL node_id is refused.
CREATE FUNCTION compay.require_earnings_node(node_id text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_node(node_id, false);
END $$;
REVOKE ALL ON FUNCTION compay.require_earnings_node(text) FROM PUBLIC;

-- Per currency: what the node earned and where it is now.  earned =
-- pending + settled_unpaid + in_flight + paid - clawbacks_owed (see
-- docs/reference.md for each column).
CREATE FUNCTION compay.earnings(node_id text, currency text DEFAULT NULL)
RETURNS TABLE (currency_code text, earned compay.credit, refunded compay.credit,
               rewards compay.credit, pending compay.credit, settled_unpaid compay.credit,
               in_flight compay.credit, paid compay.credit, clawbacks_owed compay.credit,
               shortfalls_owed_to compay.credit, shortfalls_owed_by compay.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := earnings.node_id;
    v_currency text := earnings.currency;
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM compay.earning_events(v_node) e
        WHERE v_currency IS NULL OR e.currency = v_currency
    ), st AS (
        -- Each settlement of the node: its net, and where that net is now.
        SELECT s.id, s.currency, s.status,
               coalesce((SELECT compay.sum(e.earned) FROM ev e WHERE e.settlement_id = s.id),
                        '0'::compay.credit) AS net,
               coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                         JOIN compay.payout_transactions t ON t.id = pp.payout_id
                         WHERE pp.settlement_id = s.id AND t.status IN ('built', 'relayed')),
                        '0'::compay.credit) AS flying,
               coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                         JOIN compay.payout_transactions t ON t.id = pp.payout_id
                         WHERE pp.settlement_id = s.id AND t.status = 'confirmed'),
                        '0'::compay.credit) AS confirmed,
               coalesce((SELECT h.remaining FROM compay.holds h
                         WHERE h.id = s.earmark_hold_id AND h.status = 'pending'),
                        '0'::compay.credit) AS kept
        FROM compay.settlements s
        WHERE s.payee = v_node AND (v_currency IS NULL OR s.currency = v_currency)
          AND s.purpose <> 'operational'           -- withdrawals are no earnings
    ), per_settlement AS (
        SELECT st.currency,
               CASE WHEN st.currency <> 'XMR' THEN
                        CASE WHEN st.status = 'completed' THEN '0'::compay.credit ELSE st.net END
                    WHEN st.status IN ('pending', 'failed') THEN st.net
                    WHEN st.status = 'processing' THEN st.kept
                    ELSE '0'::compay.credit END AS settled_unpaid,
               CASE WHEN st.currency <> 'XMR' THEN '0'::compay.credit ELSE st.flying END AS in_flight,
               CASE WHEN st.currency <> 'XMR' THEN
                        CASE WHEN st.status = 'completed' THEN st.net ELSE '0'::compay.credit END
                    ELSE st.confirmed END AS paid
        FROM st
    ), owed AS (
        SELECT c.currency, compay.sum(c.amount OPERATOR(compay.-) c.repaid) AS clawbacks
        FROM compay.clawbacks c
        WHERE c.node_id = v_node AND c.repaid_at IS NULL
          AND (v_currency IS NULL OR c.currency = v_currency)
        GROUP BY c.currency
    ), shortfalls AS (
        SELECT f.currency,
               compay.sum(f.amount OPERATOR(compay.-) f.collected)
                   FILTER (WHERE f.provider = v_node) AS owed_to,
               compay.sum(f.amount OPERATOR(compay.-) f.collected)
                   FILTER (WHERE f.requester = v_node) AS owed_by
        FROM compay.shortfalls f
        WHERE (f.provider = v_node OR f.requester = v_node) AND f.collected_at IS NULL
          AND (v_currency IS NULL OR f.currency = v_currency)
        GROUP BY f.currency
    ), currencies AS (
        SELECT ev.currency FROM ev
        UNION SELECT per_settlement.currency FROM per_settlement
        UNION SELECT owed.currency FROM owed
        UNION SELECT shortfalls.currency FROM shortfalls
        UNION SELECT v_currency WHERE v_currency IS NOT NULL
    )
    SELECT c.currency,
           coalesce((SELECT compay.sum(e.earned) FROM ev e WHERE e.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.refunded) FROM ev e WHERE e.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.earned) FROM ev e
                     WHERE e.currency = c.currency AND e.purpose = 'verification'),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.earned) FROM ev e
                     WHERE e.currency = c.currency AND e.settlement_id IS NULL),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(x.settled_unpaid) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT compay.sum(x.in_flight) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT compay.sum(x.paid) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT o.clawbacks FROM owed o WHERE o.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT f.owed_to FROM shortfalls f WHERE f.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT f.owed_by FROM shortfalls f WHERE f.currency = c.currency),
                    '0'::compay.credit)
    FROM currencies c
    ORDER BY c.currency;
END $$;
COMMENT ON FUNCTION compay.earnings(text, text) IS
    'per currency: what a node earned (net of refunds), pending, settled not paid out, in flight, paid, its verifier rewards, and clawbacks and shortfalls owed';

-- Checks a [from, to) range: NULL ends are open; from after to is refused.
CREATE FUNCTION compay.check_earnings_range("from" timestamptz, "to" timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF "from" > "to" THEN
        RAISE EXCEPTION 'from (%) is after to (%)', "from", "to"
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the start of the range first; the range is [from, to).';
    END IF;
END $$;
REVOKE ALL ON FUNCTION compay.check_earnings_range(timestamptz, timestamptz) FROM PUBLIC;

-- What a node earned in [from, to), grouped by job type, purpose, payer,
-- or UTC day, week (starting Monday) or month.
CREATE FUNCTION compay.earnings_breakdown(node_id text, "from" timestamptz, "to" timestamptz,
    by text)
RETURNS TABLE (key text, currency text, events bigint, amount compay.credit,
               refunded compay.credit, earned compay.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := earnings_breakdown.node_id;
    v_from timestamptz := earnings_breakdown."from";
    v_to timestamptz := earnings_breakdown."to";
    v_by text := earnings_breakdown.by;
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    IF v_by IS NULL OR v_by NOT IN ('job_type', 'purpose', 'payer', 'day', 'week', 'month') THEN
        RAISE EXCEPTION 'cannot break earnings down by "%"', left(v_by, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use job_type, purpose, payer, day, week or month.';
    END IF;
    PERFORM compay.check_earnings_range(v_from, v_to);
    RETURN QUERY
    SELECT k.key, e.currency, count(*), compay.sum(e.amount), compay.sum(e.refunded),
           compay.sum(e.earned)
    FROM compay.earning_events(v_node) e
    CROSS JOIN LATERAL (SELECT CASE v_by
        WHEN 'job_type' THEN e.job_type
        WHEN 'purpose' THEN e.purpose
        WHEN 'payer' THEN e.payer
        ELSE to_char(date_trunc(v_by, e.earned_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') END AS key) k
    WHERE (v_from IS NULL OR e.earned_at >= v_from) AND (v_to IS NULL OR e.earned_at < v_to)
    GROUP BY k.key, e.currency
    ORDER BY k.key, e.currency;
END $$;
COMMENT ON FUNCTION compay.earnings_breakdown(text, timestamptz, timestamptz, text) IS
    'what a node earned in [from, to) by job_type, purpose, payer, or UTC day, week or month, per currency';

-- One row per earning event in [from, to), oldest first.
CREATE FUNCTION compay.earnings_history(node_id text, "from" timestamptz DEFAULT NULL,
    "to" timestamptz DEFAULT NULL)
RETURNS TABLE (earned_at timestamptz, kind text, purpose text, job_id bigint, task_id text,
               job_type text, payer text, payment_id bigint, currency text,
               amount compay.credit, refunded compay.credit, earned compay.credit,
               settlement_id bigint, payout_ids bigint[], tx_hashes text[], status text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := earnings_history.node_id;
    v_from timestamptz := earnings_history."from";
    v_to timestamptz := earnings_history."to";
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    PERFORM compay.check_earnings_range(v_from, v_to);
    RETURN QUERY
    SELECT e.* FROM compay.earning_events(v_node) e
    WHERE (v_from IS NULL OR e.earned_at >= v_from) AND (v_to IS NULL OR e.earned_at < v_to)
    ORDER BY e.earned_at, e.kind, e.payment_id, e.job_id;
END $$;
COMMENT ON FUNCTION compay.earnings_history(text, timestamptz, timestamptz) IS
    'one row per earning event (payment received or verifier reward) of a node in [from, to), with its settlement, payouts and tx hashes';

-- The payments a node made (out) and received (in), newest first.
CREATE FUNCTION compay.payment_history(node_id text, max_rows integer DEFAULT 100)
RETURNS TABLE (created_at timestamptz, completed_at timestamptz, direction text,
               payment_id bigint, task_id text, counterparty text, amount compay.credit,
               refunded compay.credit, currency text, method compay.payment_method,
               status compay.payment_status, settlement_id bigint, tx_hash text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := payment_history.node_id;
    v_max integer := payment_history.max_rows;
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    IF v_max IS NULL OR v_max < 1 OR v_max > 10000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 10000, not %', coalesce(v_max::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT p.created_at, p.completed_at,
           CASE WHEN p.to_node = v_node THEN 'in' ELSE 'out' END,
           p.id, p.task_id,
           CASE WHEN p.to_node = v_node THEN p.from_node ELSE p.to_node END,
           p.amount,
           coalesce((SELECT compay.sum(t.amount) FROM compay.transfers t
                     WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'),
                    '0'::compay.credit),
           p.currency, p.method, p.status, compay.payment_settlement(p), p.tx_hash
    FROM compay.payments p
    WHERE p.to_node = v_node OR p.from_node = v_node
    ORDER BY p.created_at DESC, p.id DESC
    LIMIT v_max;
END $$;
COMMENT ON FUNCTION compay.payment_history(text, integer) IS
    'the payments a node made (direction out) and received (in), newest first, at most max_rows (1 to 10000)';

REVOKE ALL ON FUNCTION compay.earnings(text, text),
    compay.earnings_breakdown(text, timestamptz, timestamptz, text),
    compay.earnings_history(text, timestamptz, timestamptz),
    compay.payment_history(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.earnings(text, text),
    compay.earnings_breakdown(text, timestamptz, timestamptz, text),
    compay.earnings_history(text, timestamptz, timestamptz),
    compay.payment_history(text, integer) TO compay_reader, compay_node;
