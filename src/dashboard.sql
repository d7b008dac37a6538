--------------------------------------------------------------------------
-- Dashboards: one self-contained HTML page per call, for a provider
-- (compay.earnings_dashboard) and for the operator
-- (compay.network_dashboard).  Inline SVG charts and tables, no
-- JavaScript, nothing loaded from the network; every amount is the exact
-- compay.credit text and every value that comes from data is escaped with
-- compay.html_escape.  Read only: they work on a hot standby.  The pages
-- read the tables directly through the small internal functions below.
--------------------------------------------------------------------------

-- The five characters HTML gives a meaning, as entities.  NULL is the
-- empty string: a missing value must not erase the page it is put in.
CREATE FUNCTION compay.html_escape(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
           pg_catalog.replace(COALESCE(value, ''), '&', '&amp;'),
           '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;
COMMENT ON FUNCTION compay.html_escape(text) IS
    'the text with & < > " and '' as HTML entities; NULL gives the empty string';

-- The range of a dashboard: both ends given, from before to, at most 366
-- days (one bar per day).
CREATE FUNCTION compay.dashboard_check_range(from_ts timestamptz, to_ts timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL THEN
        RAISE EXCEPTION 'the range must have both ends' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'from and to must not be NULL.';
    END IF;
    IF NOT pg_catalog.isfinite(from_ts) OR NOT pg_catalog.isfinite(to_ts) THEN
        RAISE EXCEPTION 'the range must be finite' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'from and to must not be infinity or -infinity.';
    END IF;
    IF from_ts >= to_ts THEN
        RAISE EXCEPTION 'the range is empty' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = pg_catalog.format('from (%s) must be before to (%s).', from_ts, to_ts);
    END IF;
    IF to_ts - from_ts > interval '366 days' THEN
        RAISE EXCEPTION 'the range is longer than 366 days' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A dashboard shows one bar per day.',
            HINT = 'Make one page per year.';
    END IF;
END $$;

-- A timestamp as the pages show it: UTC to the minute.
CREATE FUNCTION compay.dashboard_time(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT COALESCE(pg_catalog.to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC', '')
$$;

-- The UTC days of a range, oldest first.
CREATE FUNCTION compay.dashboard_days(from_ts timestamptz, to_ts timestamptz) RETURNS SETOF date
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT d::date FROM pg_catalog.generate_series((from_ts AT TIME ZONE 'UTC')::date::timestamp,
        ((to_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date::timestamp, interval '1 day') d
$$;

-- One earning of a node: a payment it received (completed, disputed or
-- refunded) or a verification reward, with its job type, its amount net
-- of refunds (as compay.earning_events counts them), what refunds took
-- back, and how far it has gone: 'unsettled', 'disputed', 'settling'
-- (settled, the payout not complete) or 'completed' (its settlement
-- completed: paid out on chain for XMR).
CREATE FUNCTION compay.dashboard_earnings(node_id text, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (earned_at timestamptz, currency text, amount compay.credit, job_type text,
               stage text, refunded compay.credit)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT p.completed_at, p.currency, p.amount - r.refunded, COALESCE(j.task_type, '(no job)'),
           CASE WHEN p.status = 'disputed' THEN 'disputed'
                WHEN s.id IS NULL THEN 'unsettled'
                WHEN s.status = 'completed' THEN 'completed'
                ELSE 'settling' END,
           r.refunded
    FROM compay.payments p
    CROSS JOIN LATERAL (SELECT COALESCE(compay.sum(t.amount), '0'::compay.credit) AS refunded
                        FROM compay.transfers t
                        WHERE t.refund_of = p.transfer_id AND t.kind = 'refund') r
    LEFT JOIN compay.jobs j ON j.task_id = p.task_id
    LEFT JOIN compay.settlements s ON s.id = compay.payment_settlement(p)
    WHERE p.to_node = dashboard_earnings.node_id
      AND p.status IN ('completed', 'disputed', 'refunded')
      AND p.completed_at >= from_ts AND p.completed_at < to_ts
    UNION ALL
    SELECT v.rewarded_at, j.currency, v.reward_amount, 'verification',
           CASE WHEN s.id IS NULL THEN 'unsettled'
                WHEN s.status = 'completed' THEN 'completed'
                ELSE 'settling' END,
           '0'::compay.credit
    FROM compay.verifications v
    JOIN compay.jobs j ON j.id = v.job_id
    LEFT JOIN compay.settlements s ON s.id = v.settlement_id
    WHERE v.verifier = dashboard_earnings.node_id AND v.reward_amount > '0'
      AND v.rewarded_at >= from_ts AND v.rewarded_at < to_ts
$$;

-- Bars per day with the running total as a line.  Two scales, both
-- drawn: the bars' on the left (0 to the largest day), the line's on the
-- right in the line's colour (0 to the total), and the legend says which
-- is which.  Heights are drawn from numeric; every figure written is the
-- exact compay.credit text.
CREATE FUNCTION compay.dashboard_day_chart(title text, days date[], amounts compay.credit[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    n integer := pg_catalog.cardinality(days);
    plot_w constant numeric := 850;
    plot_h constant numeric := 220;
    left_x constant numeric := 110;
    top_y constant numeric := 50;
    max_day compay.credit := '0';
    total compay.credit := '0';
    running compay.credit := '0';
    bar_w numeric;
    x numeric;
    h numeric;
    label_every integer;
    bars text := '';
    points text := '';
    labels text := '';
BEGIN
    IF n IS NULL OR n = 0 THEN
        RETURN '';
    END IF;
    FOR i IN 1 .. n LOOP
        max_day := GREATEST(max_day, amounts[i]);
        total := total + amounts[i];
    END LOOP;
    bar_w := plot_w / n;
    label_every := pg_catalog.ceil(n / 10.0)::integer;
    FOR i IN 1 .. n LOOP
        running := running + amounts[i];
        x := left_x + (i - 1) * bar_w;
        h := CASE WHEN max_day = '0' THEN 0
                  ELSE plot_h * amounts[i]::numeric / max_day::numeric END;
        bars := bars || pg_catalog.format(
            '<rect class="bar" x="%s" y="%s" width="%s" height="%s"><title>%s: %s</title></rect>',
            pg_catalog.round(x + bar_w * 0.1, 1), pg_catalog.round(top_y + plot_h - h, 1),
            pg_catalog.round(bar_w * 0.8, 1), pg_catalog.round(h, 1), days[i], amounts[i]);
        points := points || pg_catalog.format('%s,%s ', pg_catalog.round(x + bar_w / 2, 1),
            pg_catalog.round(top_y + plot_h - CASE WHEN total = '0' THEN 0
                ELSE plot_h * running::numeric / total::numeric END, 1));
        IF (i - 1) % label_every = 0 THEN
            labels := labels || pg_catalog.format(
                '<text class="tick" x="%s" y="%s" text-anchor="middle">%s</text>',
                pg_catalog.round(x + bar_w / 2, 1), top_y + plot_h + 18,
                pg_catalog.to_char(days[i], 'MM-DD'));
        END IF;
    END LOOP;
    RETURN pg_catalog.format(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="1100" height="320" viewBox="0 0 1100 320">'
        '<text class="ctitle" x="%s" y="24">%s</text>'
        '<rect class="key-bar" x="640" y="12" width="14" height="14"/><text class="tick" x="660" y="24">per day (left scale)</text>'
        '<line class="key-line" x1="810" y1="19" x2="834" y2="19"/><text class="tick line-label" x="840" y="24">running total (right scale)</text>'
        '<line class="axis" x1="%s" y1="%s" x2="%s" y2="%s"/>'
        '<line class="axis" x1="%s" y1="%s" x2="%s" y2="%s"/>'
        '<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>'
        '<text class="tick" x="%s" y="%s" text-anchor="end">%s</text>'
        '<text class="tick" x="%s" y="%s" text-anchor="end">0</text>'
        '%s<polyline class="line" points="%s"/>%s'
        '<line class="right-axis" x1="%s" y1="%s" x2="%s" y2="%s"/>'
        '<text class="tick line-label" x="%s" y="%s">%s</text>'
        '<text class="tick line-label" x="%s" y="%s">0</text></svg>',
        left_x, compay.html_escape(title),
        left_x, top_y + plot_h, left_x + plot_w, top_y + plot_h,
        left_x, top_y, left_x, top_y + plot_h,
        left_x, top_y, left_x + plot_w, top_y,
        left_x - 6, top_y + 4, max_day,
        left_x - 6, top_y + plot_h + 4,
        bars, pg_catalog.rtrim(points), labels,
        left_x + plot_w, top_y, left_x + plot_w, top_y + plot_h,
        left_x + plot_w + 6, top_y + 4, total,
        left_x + plot_w + 6, top_y + plot_h + 4);
END $$;

-- Horizontal bars, one per label, each with its exact amount.
CREATE FUNCTION compay.dashboard_bar_chart(title text, labels text[], amounts compay.credit[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    n integer := COALESCE(pg_catalog.cardinality(labels), 0);
    bar_max constant numeric := 560;
    left_x constant numeric := 300;
    max_amount compay.credit := '0';
    rows text := '';
    w numeric;
    y numeric;
BEGIN
    FOR i IN 1 .. n LOOP
        max_amount := GREATEST(max_amount, amounts[i]);
    END LOOP;
    FOR i IN 1 .. n LOOP
        y := 40 + (i - 1) * 30;
        w := CASE WHEN max_amount = '0' THEN 0
                  ELSE bar_max * amounts[i]::numeric / max_amount::numeric END;
        rows := rows || pg_catalog.format(
            '<text class="tick" x="%s" y="%s" text-anchor="end">%s</text>'
            '<rect class="bar bar-%s" x="%s" y="%s" width="%s" height="20"/>'
            '<text class="tick" x="%s" y="%s">%s</text>',
            left_x - 8, y + 15, compay.html_escape(pg_catalog.left(labels[i], 40)),
            i % 6, left_x, y, pg_catalog.round(w, 1),
            left_x + pg_catalog.round(w, 1) + 8, y + 15, amounts[i]);
    END LOOP;
    RETURN pg_catalog.format(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="1100" height="%s" viewBox="0 0 1100 %s">'
        '<text class="ctitle" x="20" y="24">%s</text>%s%s</svg>',
        50 + n * 30, 50 + n * 30, compay.html_escape(title), rows,
        CASE WHEN n = 0 THEN '<text class="tick" x="20" y="48">nothing in this range</text>' ELSE '' END);
END $$;

-- A table from rows of already escaped cells.
CREATE FUNCTION compay.dashboard_table(headers text[], cells text[]) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT '<table><tr>' ||
           (SELECT pg_catalog.string_agg('<th>' || compay.html_escape(h) || '</th>', '' ORDER BY o)
            FROM pg_catalog.unnest(headers) WITH ORDINALITY AS t(h, o)) || '</tr>' ||
           COALESCE((SELECT pg_catalog.string_agg(c, '' ORDER BY o)
                                FROM pg_catalog.unnest(cells) WITH ORDINALITY AS t(c, o)),
                               '<tr><td colspan="' || pg_catalog.cardinality(headers) ||
                               '">none in this range</td></tr>') ||
           '</table>'
$$;

-- One table row of escaped values.
CREATE FUNCTION compay.dashboard_row(VARIADIC cells text[]) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT '<tr>' || pg_catalog.string_agg('<td>' || compay.html_escape(c) || '</td>', '' ORDER BY o)
           || '</tr>'
    FROM pg_catalog.unnest(cells) WITH ORDINALITY AS t(c, o)
$$;

-- The page around the sections: inline style, system fonts, no script.
CREATE FUNCTION compay.dashboard_page(title text, subtitle text, body text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''; img-src data:">'
        '<title>' || compay.html_escape(title) || '</title><style>'
        'body{font-family:sans-serif;margin:24px;color:#1b1f24;background:#fff;width:1120px}'
        'h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:28px 0 8px;border-bottom:2px solid #d0d7de}'
        'h3{font-size:16px;margin:12px 0 4px}'
        'p.sub{color:#57606a;margin:0 0 16px}'
        'table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}'
        'th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left}th{background:#f6f8fa}'
        'td.num{text-align:right;font-family:monospace}'
        '.chart{display:block;margin:8px 0;background:#fbfcfd;border:1px solid #d0d7de}'
        '.ctitle{font-size:16px;font-weight:bold;fill:#1b1f24}.tick{font-size:12px;fill:#1b1f24}'
        '.bar,.key-bar{fill:#4c78a8}.bar-1{fill:#4c78a8}.bar-2{fill:#f58518}.bar-3{fill:#54a24b}'
        '.bar-4{fill:#e45756}.bar-5{fill:#72b7b2}.bar-0{fill:#b279a2}'
        '.line,.key-line{fill:none;stroke:#f58518;stroke-width:3}.line-label{fill:#c45f00;font-weight:bold}'
        '.right-axis{stroke:#f58518;stroke-width:2}'
        '.axis{stroke:#57606a;stroke-width:1}.grid{stroke:#d0d7de;stroke-dasharray:4 4}'
        '</style></head><body><h1>' || compay.html_escape(title) || '</h1><p class="sub">' ||
        compay.html_escape(subtitle) || ' &middot; generated ' ||
        compay.html_escape(compay.dashboard_time(pg_catalog.now())) || '</p>' || body ||
        '</body></html>'
$$;

-- One currency's section of a provider's page: the range's totals, the
-- node's totals now (compay.earnings: refunds, clawbacks and shortfalls
-- included, so that the page and earnings() agree), the day chart, job
-- types, how far the money has gone.
CREATE FUNCTION compay.dashboard_earnings_section(node_id text, currency text,
    from_ts timestamptz, to_ts timestamptz) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    e record;
    tot record;
    d record;
    s record;
    st record;
    out text;
BEGIN
    SELECT pg_catalog.count(*) AS n, compay.sum(x.amount) AS total, compay.sum(x.refunded) AS refunded
    INTO e FROM compay.dashboard_earnings(node_id, from_ts, to_ts) x
    WHERE x.currency = dashboard_earnings_section.currency;
    SELECT pg_catalog.array_agg(day ORDER BY day) AS days,
           pg_catalog.array_agg(COALESCE(amt, '0'::compay.credit) ORDER BY day) AS amounts
    INTO d
    FROM compay.dashboard_days(from_ts, to_ts) day
    LEFT JOIN (SELECT (x.earned_at AT TIME ZONE 'UTC')::date AS dd, compay.sum(x.amount) AS amt
               FROM compay.dashboard_earnings(node_id, from_ts, to_ts) x
               WHERE x.currency = dashboard_earnings_section.currency GROUP BY 1) g ON g.dd = day;
    SELECT pg_catalog.array_agg(k.stage ORDER BY k.o) AS labels,
           pg_catalog.array_agg(COALESCE(t.amt, '0'::compay.credit) ORDER BY k.o) AS amounts
    INTO st
    FROM pg_catalog.unnest(ARRAY['unsettled', 'disputed', 'settling', 'completed'])
         WITH ORDINALITY AS k(stage, o)
    LEFT JOIN (SELECT x.stage, compay.sum(x.amount) AS amt
               FROM compay.dashboard_earnings(node_id, from_ts, to_ts) x
               WHERE x.currency = dashboard_earnings_section.currency GROUP BY 1) t
      ON t.stage = k.stage;
    out := '<h2>' || compay.html_escape(currency) || '</h2><h3>In this range</h3>' ||
        compay.dashboard_table(ARRAY['earned (net of refunds)', 'earnings', 'refunded',
                                     'unsettled', 'disputed', 'settling (payout pending)',
                                     'completed (paid out)'],
            ARRAY[compay.dashboard_row(COALESCE(e.total, '0'::compay.credit)::text, e.n::text,
                  COALESCE(e.refunded, '0'::compay.credit)::text, st.amounts[1]::text, st.amounts[2]::text, st.amounts[3]::text,
                  st.amounts[4]::text)]);
    SELECT * INTO tot FROM compay.earnings(node_id, currency);
    out := out || '<h3>All time, now</h3>' ||
        compay.dashboard_table(ARRAY['earned (net of refunds)', 'refunded', 'verification rewards',
                                     'pending', 'settled, not paid out', 'in flight', 'paid',
                                     'clawbacks owed', 'shortfalls owed to the node',
                                     'shortfalls owed by the node'],
            ARRAY[compay.dashboard_row(tot.earned::text, tot.refunded::text, tot.rewards::text,
                  tot.pending::text, tot.settled_unpaid::text, tot.in_flight::text, tot.paid::text,
                  tot.clawbacks_owed::text, tot.shortfalls_owed_to::text,
                  tot.shortfalls_owed_by::text)]);
    out := out || compay.dashboard_day_chart('Earnings per day (UTC), ' || currency, d.days, d.amounts);
    SELECT pg_catalog.array_agg(job_type ORDER BY amt DESC, job_type) AS labels,
           pg_catalog.array_agg(amt ORDER BY amt DESC, job_type) AS amounts
    INTO s
    FROM (SELECT x.job_type, compay.sum(x.amount) AS amt
          FROM compay.dashboard_earnings(node_id, from_ts, to_ts) x
          WHERE x.currency = dashboard_earnings_section.currency GROUP BY 1
          ORDER BY 2 DESC, 1 LIMIT 20) t;
    out := out || compay.dashboard_bar_chart('Earnings by job type, ' || currency, s.labels, s.amounts);
    RETURN out || compay.dashboard_bar_chart('Pending and paid, all time, ' || currency,
        ARRAY['pending', 'settled, not paid out', 'in flight', 'paid', 'refunded',
              'clawbacks owed', 'shortfalls owed to the node', 'shortfalls owed by the node'],
        ARRAY[tot.pending, tot.settled_unpaid, tot.in_flight, tot.paid, tot.refunded, tot.clawbacks_owed,
              tot.shortfalls_owed_to, tot.shortfalls_owed_by]);
END $$;

-- A provider's page: per currency its earnings per day with the running
-- total, by job type, pending against paid; its recent jobs and payouts
-- with their tx hashes.
CREATE FUNCTION compay.earnings_dashboard(node_id text, "from" timestamptz, "to" timestamptz)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    body text := '';
    c text;
    jobs text[];
    payouts text[];
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.dashboard_check_range("from", "to");
    PERFORM compay.require_node(node_id, false);
    FOR c IN SELECT x.currency FROM compay.dashboard_earnings(node_id, "from", "to") x
             UNION SELECT a.currency_code FROM compay.earnings(node_id) a
             ORDER BY 1 LIMIT 10 LOOP
        body := body || compay.dashboard_earnings_section(node_id, c, "from", "to");
    END LOOP;
    IF body = '' THEN
        body := '<h2>Earnings</h2><p>No earnings in this range.</p>';
    END IF;
    SELECT pg_catalog.array_agg(compay.dashboard_row(j.task_id, j.task_type, j.status::text,
               j.currency, j.amount::text, compay.dashboard_time(j.created_at),
               compay.dashboard_time(j.completed_at), p.tx_hash) ORDER BY j.created_at DESC, j.id DESC)
    INTO jobs
    FROM (SELECT * FROM compay.jobs j
          WHERE j.provider = earnings_dashboard.node_id
            AND j.created_at >= "from" AND j.created_at < "to"
          ORDER BY j.created_at DESC, j.id DESC LIMIT 25) j
    LEFT JOIN compay.payments p ON p.id = j.payment_id;
    SELECT pg_catalog.array_agg(compay.dashboard_row(t.id::text, compay.dashboard_time(t.created_at),
               t.status::text, i.amount::text, i.fee::text, t.confirmations::text, t.tx_hash)
               ORDER BY t.created_at DESC, t.id DESC)
    INTO payouts
    FROM (SELECT t.* FROM compay.payout_transactions t
          WHERE t.created_at >= "from" AND t.created_at < "to"
            AND EXISTS (SELECT 1 FROM compay.payout_items i
                        WHERE i.payout_id = t.id AND i.node_id = earnings_dashboard.node_id)
          ORDER BY t.created_at DESC, t.id DESC LIMIT 25) t
    JOIN (SELECT i.payout_id, compay.sum(i.amount) AS amount, compay.sum(i.fee) AS fee
          FROM compay.payout_items i WHERE i.node_id = earnings_dashboard.node_id
          GROUP BY 1) i ON i.payout_id = t.id;
    body := body || '<h2>Recent jobs</h2>' ||
        compay.dashboard_table(ARRAY['task', 'job type', 'status', 'currency', 'paid', 'created',
                                     'completed', 'payment tx hash'], jobs) ||
        '<h2>Payouts</h2>' ||
        compay.dashboard_table(ARRAY['payout', 'created', 'status', 'amount (XMR)', 'fee share',
                                     'confirmations', 'tx hash'], payouts);
    RETURN compay.dashboard_page('Earnings of ' || node_id,
        compay.dashboard_time("from") || ' to ' || compay.dashboard_time("to"), body);
END $$;
COMMENT ON FUNCTION compay.earnings_dashboard(text, timestamptz, timestamptz) IS
    'a self-contained HTML page of a node''s earnings in [from, to): per day with the running total, by job type; its totals now as compay.earnings reports them (refunds, clawbacks, shortfalls); recent jobs and payouts';

-- The operator's page: volume, failure and dispute rates, payouts,
-- treasury, top providers.
CREATE FUNCTION compay.network_dashboard("from" timestamptz, "to" timestamptz) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    body text;
    c text;
    d record;
    s record;
    cells text[];
BEGIN
    PERFORM compay.dashboard_check_range("from", "to");
    -- Payments per currency: the failure rate of all, the dispute rate of
    -- those that completed (refunded ones included), shown to 0.01 %.
    SELECT pg_catalog.array_agg(compay.dashboard_row(t.currency, t.n::text, t.paid::text,
               t.volume::text, t.failed::text,
               pg_catalog.round(100.0 * t.failed / t.n, 2)::text || ' %',
               t.disputed::text,
               CASE WHEN t.completed = 0 THEN '-'
                    ELSE pg_catalog.round(100.0 * t.disputed / t.completed, 2)::text || ' %' END,
               t.refunded::text) ORDER BY t.currency)
    INTO cells
    FROM (SELECT p.currency, pg_catalog.count(*) AS n,
                 pg_catalog.count(*) FILTER (WHERE p.status IN ('completed', 'disputed')) AS paid,
                 COALESCE(compay.sum(p.amount) FILTER (WHERE p.status IN ('completed', 'disputed')),
                                     '0') AS volume,
                 pg_catalog.count(*) FILTER (WHERE p.completed_at IS NOT NULL) AS completed,
                 pg_catalog.count(*) FILTER (WHERE p.status = 'failed') AS failed,
                 pg_catalog.count(*) FILTER (WHERE p.disputed_at IS NOT NULL) AS disputed,
                 pg_catalog.count(*) FILTER (WHERE p.status = 'refunded') AS refunded
          FROM compay.payments p
          WHERE p.created_at >= "from" AND p.created_at < "to"
          GROUP BY 1) t;
    body := '<h2>Payments</h2>' || compay.dashboard_table(ARRAY['currency', 'payments', 'paid',
        'volume', 'failed', 'failure rate', 'disputed', 'dispute rate', 'refunded'], cells);
    FOR c IN SELECT DISTINCT p.currency FROM compay.payments p
             WHERE p.status IN ('completed', 'disputed')
               AND p.completed_at >= "from" AND p.completed_at < "to" ORDER BY 1 LIMIT 10 LOOP
        SELECT pg_catalog.array_agg(day ORDER BY day) AS days,
               pg_catalog.array_agg(COALESCE(amt, '0'::compay.credit) ORDER BY day) AS amounts
        INTO d
        FROM compay.dashboard_days("from", "to") day
        LEFT JOIN (SELECT (p.completed_at AT TIME ZONE 'UTC')::date AS dd, compay.sum(p.amount) AS amt
                   FROM compay.payments p
                   WHERE p.currency = c AND p.status IN ('completed', 'disputed')
                     AND p.completed_at >= "from" AND p.completed_at < "to" GROUP BY 1) g
          ON g.dd = day;
        body := body || compay.dashboard_day_chart('Volume per day (UTC), ' || c, d.days, d.amounts);
        SELECT pg_catalog.array_agg(t.to_node ORDER BY t.amt DESC, t.to_node) AS labels,
               pg_catalog.array_agg(t.amt ORDER BY t.amt DESC, t.to_node) AS amounts,
               pg_catalog.array_agg(compay.dashboard_row(t.to_node, t.n::text, t.amt::text)
                                    ORDER BY t.amt DESC, t.to_node) AS cells
        INTO s
        FROM (SELECT p.to_node, pg_catalog.count(*) AS n, compay.sum(p.amount) AS amt
              FROM compay.payments p
              WHERE p.currency = c AND p.status IN ('completed', 'disputed')
                AND p.completed_at >= "from" AND p.completed_at < "to"
              GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 10) t;
        body := body || compay.dashboard_bar_chart('Top providers, ' || c, s.labels, s.amounts) ||
            compay.dashboard_table(ARRAY['provider', 'payments', 'earned'], s.cells);
    END LOOP;
    -- Jobs.
    SELECT pg_catalog.array_agg(compay.dashboard_row(t.n::text, t.failed::text,
               CASE WHEN t.n = 0 THEN '-'
                    ELSE pg_catalog.round(100.0 * t.failed / t.n, 2)::text || ' %' END))
    INTO cells
    FROM (SELECT pg_catalog.count(*) AS n,
                 pg_catalog.count(*) FILTER (WHERE j.status IN ('failed', 'timed_out')) AS failed
          FROM compay.jobs j WHERE j.created_at >= "from" AND j.created_at < "to") t;
    body := body || '<h2>Jobs</h2>' ||
        compay.dashboard_table(ARRAY['jobs', 'failed or timed out', 'failure rate'], cells);
    -- Payouts (XMR) by status.
    SELECT pg_catalog.array_agg(k.status::text ORDER BY k.status) AS labels,
           pg_catalog.array_agg(COALESCE(t.amt, '0'::compay.credit) ORDER BY k.status) AS amounts,
           pg_catalog.array_agg(compay.dashboard_row(k.status::text, COALESCE(t.n, 0)::text,
               COALESCE(t.amt, '0'::compay.credit)::text,
               COALESCE(t.fee, '0'::compay.credit)::text) ORDER BY k.status) AS cells
    INTO s
    FROM pg_catalog.unnest(pg_catalog.enum_range(NULL::compay.payout_status)) k(status)
    LEFT JOIN (SELECT p.status, pg_catalog.count(*) AS n, compay.sum(p.amount) AS amt,
                      compay.sum(p.fee) AS fee
               FROM compay.payout_transactions p
               WHERE p.created_at >= "from" AND p.created_at < "to" GROUP BY 1) t
      ON t.status = k.status;
    body := body || '<h2>Payouts (XMR)</h2>' ||
        compay.dashboard_bar_chart('Payouts by status, XMR', s.labels, s.amounts) ||
        compay.dashboard_table(ARRAY['status', 'payouts', 'amount', 'network fees'], s.cells);
    SELECT pg_catalog.array_agg(compay.dashboard_row(t.id::text, compay.dashboard_time(t.created_at),
               t.status::text, t.amount::text, t.fee::text, t.confirmations::text, t.tx_hash)
               ORDER BY t.created_at DESC, t.id DESC)
    INTO cells
    FROM (SELECT * FROM compay.payout_transactions p
          WHERE p.created_at >= "from" AND p.created_at < "to"
          ORDER BY p.created_at DESC, p.id DESC LIMIT 25) t;
    body := body || compay.dashboard_table(ARRAY['payout', 'created', 'status', 'amount', 'fee',
        'confirmations', 'tx hash'], cells);
    -- Treasury: the wallet health the runners recorded last, no wallet call.
    SELECT pg_catalog.array_agg(compay.dashboard_row(r.runner, compay.dashboard_time(r.health_at),
               r.unlocked_balance::text, r.queued_payouts::text, r.wallet_height::text,
               r.daemon_height::text, r.wallet_error))
    INTO cells
    FROM (SELECT * FROM compay.runner_status r WHERE r.health_at IS NOT NULL
          ORDER BY r.health_at DESC LIMIT 1) r;
    body := body || '<h2>Treasury</h2>' || compay.dashboard_table(ARRAY['seen by', 'at',
        'unlocked balance (XMR)', 'queued payouts (XMR)', 'wallet height', 'daemon height',
        'wallet error'], cells);
    RETURN compay.dashboard_page('compay network',
        compay.dashboard_time("from") || ' to ' || compay.dashboard_time("to"), body);
END $$;
COMMENT ON FUNCTION compay.network_dashboard(timestamptz, timestamptz) IS
    'the operator''s self-contained HTML page for [from, to): payment volume, failure and dispute rates, top providers, jobs, payouts, treasury';

REVOKE ALL ON FUNCTION compay.dashboard_check_range(timestamptz, timestamptz),
    compay.dashboard_time(timestamptz), compay.dashboard_days(timestamptz, timestamptz),
    compay.dashboard_earnings(text, timestamptz, timestamptz),
    compay.dashboard_day_chart(text, date[], compay.credit[]),
    compay.dashboard_bar_chart(text, text[], compay.credit[]),
    compay.dashboard_table(text[], text[]), compay.dashboard_row(text[]),
    compay.dashboard_page(text, text, text),
    compay.dashboard_earnings_section(text, text, timestamptz, timestamptz),
    compay.earnings_dashboard(text, timestamptz, timestamptz),
    compay.network_dashboard(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.earnings_dashboard(text, timestamptz, timestamptz)
    TO compay_reader, compay_node;
GRANT EXECUTE ON FUNCTION compay.network_dashboard(timestamptz, timestamptz) TO compay_reader;
