--------------------------------------------------------------------------
-- Reports: compay.payment_report() for a day, a month or a tax year, per
-- node or network-wide, and compay.exchange_rates, the operator's rates
-- that value a tax year's receipts in a reporting currency.  Read-only
-- (STABLE, no writes, no temporary tables): they run on a hot standby.
--------------------------------------------------------------------------

-- Operator-supplied rates: one unit of currency is worth rate units of
-- quote_currency from valid_from on (until the next row of the pair).
-- Exact numeric, never a float.
CREATE TABLE compay.exchange_rates (
    currency       text NOT NULL,
    quote_currency text NOT NULL,
    rate           numeric NOT NULL,
    valid_from     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (currency, quote_currency, valid_from),
    CONSTRAINT exchange_rates_rate CHECK (rate > 0 AND rate < 'Infinity'),
    CONSTRAINT exchange_rates_pair CHECK (currency <> quote_currency
                                          AND currency <> '' AND quote_currency <> '')
);
COMMENT ON TABLE compay.exchange_rates IS
    'operator-supplied exact rates: one unit of currency is worth rate quote_currency from valid_from on';
SELECT pg_catalog.pg_extension_config_dump('compay.exchange_rates', '');
REVOKE ALL ON compay.exchange_rates FROM PUBLIC;
GRANT SELECT ON compay.exchange_rates TO compay_reader;
GRANT INSERT, UPDATE, DELETE ON compay.exchange_rates TO compay_admin;

-- The rows of a daily or monthly report over [period_start, period_end),
-- for one node (node_id) or the network (NULL).  Sections:
--   payment  payments created in the period, by currency, method, current
--            status and, for a node, direction (received: it is the
--            payee; paid: the payer);
--   refund   refund transfers made in the period, by the refunded
--            payment's currency and method (count: payments refunded);
--   dispute  payments disputed in the period, by currency, method and
--            current status (disputed, completed again, refunded);
--   clawback            refunds fronted by $clawbacks in the period (a
--            refund after the XMR left on chain), by the payment's method
--            and the clawback's status now (owed, repaid);
--   clawback_repaid     what payees repaid of clawbacks in the period;
--   clawback_owed       what was still owed of clawbacks at the period's end;
--   shortfall           shortfalls recorded in the period, by status now
--            (owed, collected); for a node, received as the provider;
--   shortfall_collected collections in the period (payments with
--            metadata shortfall_id, also in the payment section);
--   shortfall_owed      what was still owed of shortfalls at the period's end;
--   payout   payouts queued in the period, by status: network-wide one
--            row per Monero transaction (amount, network fee); for a node
--            its payout items (amount, its share of the fee).
-- Then one totals row (is_total) per currency and section whose count,
-- amount and fee are the sums of that section's rows.
CREATE FUNCTION compay.payment_report_rows(period_start timestamptz, period_end timestamptz,
    node_id text)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH r AS (
        SELECT p.currency, 'payment' AS section, p.method, p.status::text AS status,
               CASE WHEN $3 IS NULL THEN NULL WHEN p.to_node = $3 THEN 'received' ELSE 'paid' END
                   AS direction,
               pg_catalog.count(*) AS count, compay.sum(p.amount) AS amount,
               NULL::compay.credit AS fee
        FROM compay.payments p
        WHERE p.created_at >= $1 AND p.created_at < $2
          AND ($3 IS NULL OR p.to_node = $3 OR p.from_node = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT p.currency, 'refund', p.method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL WHEN p.to_node = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(DISTINCT p.id), compay.sum(t.amount), NULL
        FROM compay.payments p JOIN compay.transfers t ON t.refund_of = p.transfer_id
        WHERE t.created_at >= $1 AND t.created_at < $2
          AND ($3 IS NULL OR p.to_node = $3 OR p.from_node = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT p.currency, 'dispute', p.method, p.status::text,
               CASE WHEN $3 IS NULL THEN NULL WHEN p.to_node = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(p.amount), NULL
        FROM compay.payments p
        WHERE p.disputed_at >= $1 AND p.disputed_at < $2
          AND ($3 IS NULL OR p.to_node = $3 OR p.from_node = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- Clawbacks: refunds fronted by $clawbacks in the period (their
        -- refund transfers are in the refund section too), by the status
        -- they have now (owed, repaid); the node is the payee who owes it.
        SELECT c.currency, 'clawback', p.method,
               CASE WHEN c.repaid_at IS NULL THEN 'owed' ELSE 'repaid' END,
               CASE WHEN $3 IS NULL THEN NULL ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(c.amount), NULL
        FROM compay.clawbacks c JOIN compay.payments p ON p.id = c.payment_id
        WHERE c.created_at >= $1 AND c.created_at < $2 AND ($3 IS NULL OR c.node_id = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- What payees repaid in the period (their transfers to $clawbacks,
        -- 'clawback:<id> settlement:<id>'; count: repayments).
        SELECT c.currency, 'clawback_repaid', p.method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(t.amount), NULL
        FROM compay.clawbacks c JOIN compay.payments p ON p.id = c.payment_id
        JOIN compay.transfers t ON t.reference LIKE 'clawback:' || c.id || ' %'
        WHERE t.created_at >= $1 AND t.created_at < $2 AND ($3 IS NULL OR c.node_id = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- Still owed at the period's end: each clawback fronted before it
        -- less what was repaid before it (count: clawbacks owed).
        SELECT o.currency, 'clawback_owed', o.method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(o.owed), NULL
        FROM (SELECT c.currency, p.method,
                     c.amount OPERATOR(compay.-) coalesce(
                         (SELECT compay.sum(t.amount) FROM compay.transfers t
                          WHERE t.reference LIKE 'clawback:' || c.id || ' %'
                            AND t.created_at < $2), '0'::compay.credit) AS owed
              FROM compay.clawbacks c JOIN compay.payments p ON p.id = c.payment_id
              WHERE c.created_at < $2 AND ($3 IS NULL OR c.node_id = $3)) o
        WHERE o.owed > '0'
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- Shortfalls: what verified jobs cost beyond their escrow, recorded
        -- in the period, by the status they have now (owed, collected); for
        -- a node: paid as the requester, received as the provider.
        SELECT s.currency, 'shortfall', NULL::compay.payment_method,
               CASE WHEN s.collected_at IS NULL THEN 'owed' ELSE 'collected' END,
               CASE WHEN $3 IS NULL THEN NULL WHEN s.provider = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(s.amount), NULL
        FROM compay.shortfalls s
        WHERE s.created_at >= $1 AND s.created_at < $2
          AND ($3 IS NULL OR s.requester = $3 OR s.provider = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- What was collected of them in the period: the collection payments
        -- (metadata shortfall_id), also counted in the payment section.
        SELECT p.currency, 'shortfall_collected', p.method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL WHEN p.to_node = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(p.amount), NULL
        FROM compay.payments p
        WHERE p.metadata ? 'shortfall_id' AND p.created_at >= $1 AND p.created_at < $2
          AND ($3 IS NULL OR p.to_node = $3 OR p.from_node = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- Still owed at the period's end: each shortfall recorded before it
        -- less what was collected before it (count: shortfalls owed).
        SELECT o.currency, 'shortfall_owed', NULL::compay.payment_method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL WHEN o.provider = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(o.owed), NULL
        FROM (SELECT s.currency, s.provider,
                     s.amount OPERATOR(compay.-) coalesce(
                         (SELECT compay.sum(p.amount) FROM compay.payments p
                          WHERE p.metadata ? 'shortfall_id'
                            AND p.metadata->>'shortfall_id' = s.id::text
                            AND p.created_at < $2), '0'::compay.credit) AS owed
              FROM compay.shortfalls s
              WHERE s.created_at < $2 AND ($3 IS NULL OR s.requester = $3 OR s.provider = $3)) o
        WHERE o.owed > '0'
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT 'XMR', 'payout', NULL::compay.payment_method, t.status::text, NULL,
               pg_catalog.count(*), compay.sum(t.amount), compay.sum(t.fee)
        FROM compay.payout_transactions t
        WHERE $3 IS NULL AND t.created_at >= $1 AND t.created_at < $2
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT 'XMR', 'payout', NULL::compay.payment_method, t.status::text, 'received',
               pg_catalog.count(*), compay.sum(i.amount), compay.sum(i.fee)
        FROM compay.payout_items i JOIN compay.payout_transactions t ON t.id = i.payout_id
        WHERE i.node_id = $3 AND t.created_at >= $1 AND t.created_at < $2
        GROUP BY 1, 2, 3, 4, 5
    )
    SELECT u.* FROM (
        SELECT r.currency, r.section, r.method, r.status, r.direction, r.count, r.amount, r.fee,
               false AS is_total
        FROM r
        UNION ALL
        SELECT r.currency, r.section, NULL, NULL, NULL, pg_catalog.sum(r.count)::bigint,
               compay.sum(r.amount), compay.sum(r.fee), true
        FROM r GROUP BY r.currency, r.section
    ) u
    ORDER BY u.currency,
             pg_catalog.array_position(ARRAY['payment', 'refund', 'dispute', 'clawback', 'clawback_repaid',
                                        'clawback_owed', 'shortfall', 'shortfall_collected',
                                        'shortfall_owed', 'payout'], u.section),
             u.is_total, u.method, u.status, u.direction
$$;

-- The checks every report makes: kind is the one this call serves; the
-- caller may read the node (NULL: the network, compay_reader).
CREATE FUNCTION compay.payment_report_check(kind text, expected text, node_id text)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF kind IS NULL THEN
        RAISE EXCEPTION 'kind must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF kind NOT IN ('daily', 'monthly', 'tax') THEN
        RAISE EXCEPTION 'unknown report kind "%"', kind USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use payment_report(''daily'', day date), payment_report(''monthly'', year, month) or payment_report(''tax'', year).';
    END IF;
    IF kind <> expected THEN
        RAISE EXCEPTION 'a % report takes other arguments', kind
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = pg_catalog.format('These arguments are those of a %s report.', expected),
            HINT = 'Use payment_report(''daily'', day date), payment_report(''monthly'', year, month) or payment_report(''tax'', year).';
    END IF;
    PERFORM compay.require_node(node_id, false);
END $$;

CREATE FUNCTION compay.payment_report_year(year integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF year IS NULL THEN
        RAISE EXCEPTION 'year must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF year < 1970 OR year > 9999 THEN
        RAISE EXCEPTION 'year % is out of range', year USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A report year is from 1970 to 9999.';
    END IF;
END $$;

-- payment_report('daily', day [, node_id]): the UTC day.
CREATE FUNCTION compay.payment_report(kind text, day date, node_id text DEFAULT NULL)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.payment_report_check(kind, 'daily', node_id);
    IF day IS NULL THEN
        RAISE EXCEPTION 'day must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_catalog.isfinite(day) OR day < date '1970-01-01' OR day > date '9999-12-31' THEN
        RAISE EXCEPTION 'day % is out of range', CASE WHEN pg_catalog.isfinite(day)
            THEN pg_catalog.to_char(day, 'YYYY-MM-DD') ELSE day::text END
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A report day is from 1970-01-01 to 9999-12-31.';
    END IF;
    RETURN QUERY SELECT * FROM compay.payment_report_rows(
        day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC', node_id);
END $$;
COMMENT ON FUNCTION compay.payment_report(text, date, text) IS
    'the daily report of a UTC day, for a node or (NULL) the network: payments, refunds, disputes, clawbacks (fronted, repaid, owed), shortfalls (recorded, collected, owed), payouts by currency, method and status, with a totals row per currency and section';

-- payment_report('monthly', year, month [, node_id]): the UTC month.
CREATE FUNCTION compay.payment_report(kind text, year integer, month integer,
    node_id text DEFAULT NULL)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_start timestamp;
BEGIN
    PERFORM compay.payment_report_check(kind, 'monthly', node_id);
    PERFORM compay.payment_report_year(year);
    IF month IS NULL THEN
        RAISE EXCEPTION 'month must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF month < 1 OR month > 12 THEN
        RAISE EXCEPTION 'month % is out of range', month USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A month is from 1 to 12.';
    END IF;
    v_start := pg_catalog.make_date(year, month, 1);
    RETURN QUERY SELECT * FROM compay.payment_report_rows(
        v_start AT TIME ZONE 'UTC', (v_start + interval '1 month') AT TIME ZONE 'UTC', node_id);
END $$;
COMMENT ON FUNCTION compay.payment_report(text, integer, integer, text) IS
    'the monthly report of a UTC month, for a node or (NULL) the network: payments, refunds, disputes, clawbacks (fronted, repaid, owed), shortfalls (recorded, collected, owed), payouts by currency, method and status, with a totals row per currency and section';

-- The value of amount of currency in quote at ts: the rate valid at or
-- before ts; 1 in its own currency; NULL when no rate is known.
CREATE FUNCTION compay.exchange_rate(currency text, quote text, ts timestamptz)
RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT CASE WHEN $1 = $2 THEN 1::numeric ELSE
        (SELECT r.rate FROM compay.exchange_rates r
         WHERE r.currency = $1 AND r.quote_currency = $2 AND r.valid_from <= $3
         ORDER BY r.valid_from DESC LIMIT 1) END
$$;
COMMENT ON FUNCTION compay.exchange_rate(text, text, timestamptz) IS
    'the rate of currency in quote valid at ts (compay.exchange_rates): the latest at or before ts; 1 for the same currency; NULL if none';

-- payment_report('tax', year [, node_id [, reporting_currency]]): the
-- receipts of a provider in the UTC year.  A receipt is what the node
-- earned, when it earned it: a payment it received (not barter) that
-- completed in the year (its current status: completed, disputed or
-- refunded), and a verifier reward moved to it in the year.  A refund in
-- the year of such a payment is a negative receipt (receipt 'refund').
-- Payouts are not receipts: they carry to the node's wallet what it has
-- earned already; tx_hash names the payout that carried it (NULL while
-- not paid out).  value = amount x the rate at or before the receipt,
-- exact (trailing zeros trimmed); a missing rate gives NULL value and rate_missing.  Totals rows
-- (is_total): one per node and currency (amount, value of the rows whose
-- rate is known, rate_missing if any is missing), and one per node in
-- the reporting currency (currency NULL, value only).
CREATE FUNCTION compay.payment_report(kind text, year integer, node_id text DEFAULT NULL,
    reporting_currency text DEFAULT 'EUR')
RETURNS TABLE (node text, received_at timestamptz, receipt text, reference bigint,
               task_id text, amount compay.credit, currency text, tx_hash text,
               value_currency text, rate numeric, value numeric, rate_missing boolean,
               is_total boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_start timestamptz;
    v_end timestamptz;
BEGIN
    PERFORM compay.payment_report_check(kind, 'tax', node_id);
    PERFORM compay.payment_report_year(year);
    IF reporting_currency IS NULL OR reporting_currency = '' THEN
        RAISE EXCEPTION 'reporting_currency must be a currency code'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_start := pg_catalog.make_date(year, 1, 1)::timestamp AT TIME ZONE 'UTC';
    v_end := pg_catalog.make_date(year + 1, 1, 1)::timestamp AT TIME ZONE 'UTC';
    RETURN QUERY
    WITH rc AS (
        SELECT p.to_node AS node, p.completed_at AS at, 'payment' AS receipt, p.id AS reference,
               p.task_id, p.amount, p.currency,
               coalesce(p.tx_hash, (SELECT t.tx_hash FROM compay.settlements s
                                    JOIN compay.payout_transactions t ON t.id = s.payout_id
                                    WHERE s.id = compay.payment_settlement(p))) AS tx_hash
        FROM compay.payments p
        WHERE p.completed_at >= v_start AND p.completed_at < v_end
          AND p.status IN ('completed', 'disputed', 'refunded') AND p.method <> 'barter'
          AND (payment_report.node_id IS NULL OR p.to_node = payment_report.node_id)
        UNION ALL
        SELECT p.to_node, t.created_at, 'refund', p.id, p.task_id,
               '0'::compay.credit OPERATOR(compay.-) t.amount, p.currency, NULL
        FROM compay.payments p JOIN compay.transfers t ON t.refund_of = p.transfer_id
        WHERE t.created_at >= v_start AND t.created_at < v_end AND p.method <> 'barter'
          AND (payment_report.node_id IS NULL OR p.to_node = payment_report.node_id)
        UNION ALL
        SELECT v.verifier, v.rewarded_at, 'verifier_reward', v.job_id, j.task_id,
               v.reward_amount, j.currency,
               (SELECT t.tx_hash FROM compay.settlements s
                JOIN compay.payout_transactions t ON t.id = s.payout_id
                WHERE s.id = v.settlement_id)
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.rewarded_at >= v_start AND v.rewarded_at < v_end AND v.reward_amount > '0'
          AND (payment_report.node_id IS NULL OR v.verifier = payment_report.node_id)
    ), valued AS (
        SELECT rc.*, compay.exchange_rate(rc.currency, reporting_currency, rc.at) AS rate
        FROM rc
    )
    SELECT x.node, x.at, x.receipt, x.reference, x.task_id, x.amount, x.currency, x.tx_hash,
           reporting_currency, x.rate, pg_catalog.trim_scale(x.amount::numeric * x.rate),
           x.rate IS NULL, false
    FROM valued x
    UNION ALL
    SELECT x.node, NULL, NULL, NULL, NULL, compay.sum(x.amount), x.currency, NULL,
           reporting_currency, NULL, pg_catalog.trim_scale(pg_catalog.sum(x.amount::numeric * x.rate)),
           pg_catalog.bool_or(x.rate IS NULL), true
    FROM valued x GROUP BY x.node, x.currency
    UNION ALL
    SELECT x.node, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           reporting_currency, NULL, pg_catalog.trim_scale(pg_catalog.sum(x.amount::numeric * x.rate)),
           pg_catalog.bool_or(x.rate IS NULL), true
    FROM valued x GROUP BY x.node
    ORDER BY 1, 13, 7 NULLS LAST, 2, 3, 4;
END $$;
COMMENT ON FUNCTION compay.payment_report(text, integer, text, text) IS
    'the tax report of a UTC year: each receipt (payment received, verifier reward, refund as negative) with date, amount, currency, tx hash and value in the reporting currency from compay.exchange_rates (NULL and rate_missing when no rate), with totals per node and currency and per node';

REVOKE ALL ON FUNCTION compay.payment_report_rows(timestamptz, timestamptz, text),
    compay.payment_report_check(text, text, text), compay.payment_report_year(integer),
    compay.payment_report(text, date, text), compay.payment_report(text, integer, integer, text),
    compay.payment_report(text, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.payment_report(text, date, text),
    compay.payment_report(text, integer, integer, text),
    compay.payment_report(text, integer, text, text) TO compay_reader, compay_node;
