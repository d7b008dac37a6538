--------------------------------------------------------------------------
-- Withdrawals (issue 16): what a node holds in XMR that is not earnings
-- awaiting settlement (returned stake, deposits it no longer needs) paid
-- out on chain to its operational address(es).  A withdrawal is a
-- settlement of purpose 'operational' with no payments behind it: its
-- amount is earmarked at once by a hold on the node's XMR account and
-- queued as a payout of its own; from there the payout round
-- (src/payout.c, src/payout.sql) builds, relays, confirms, retries and
-- voids it as any payout.  Earnings payouts never take a withdrawal
-- (compay.payable_settlements leaves them out); a withdrawal whose payout
-- failed is queued again by compay.queue_withdrawals, from
-- compay.queue_payouts.
--------------------------------------------------------------------------

ALTER TABLE compay.settlements
    DROP CONSTRAINT settlements_purpose,
    ADD CONSTRAINT settlements_purpose
        CHECK (purpose IN ('primary', 'verification', 'operational')),
    DROP CONSTRAINT settlements_totals,
    ADD CONSTRAINT settlements_totals CHECK (CASE WHEN purpose = 'operational'
        THEN payment_count = 0 AND total_amount > '0' AND currency = 'XMR'
        ELSE payment_count > 0 AND total_amount >= '0' END);

-- What the node may withdraw: its available XMR (balance less holds: its
-- stake, escrows, earmarks) less what it earned and is not settled yet
-- (payments to it and verifier rewards with no settlement, less what was
-- refunded of them; on a shard, the rewards of jobs on other shards too)
-- and less what it owes of clawbacks; never below 0.
CREATE FUNCTION compay.withdrawable(node_id text) RETURNS compay.credit
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT compay.credit_from_atomic(greatest(0,
        coalesce((SELECT compay.atomic(a.balance) - compay.atomic(a.reserved)
                  FROM compay.accounts a WHERE a.node_id = $1 AND a.currency = 'XMR'), 0)
        - coalesce((SELECT sum(compay.atomic(p.amount) - coalesce(
                              (SELECT compay.sum_atomic(t.amount) FROM compay.transfers t
                               WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'), 0))
                    FROM compay.payments p
                    WHERE p.to_node = $1 AND p.currency = 'XMR' AND compay.payment_settlement(p) IS NULL
                      AND p.status IN ('completed', 'disputed', 'refunded')), 0)
        - coalesce((SELECT compay.sum_atomic(v.reward_amount)
                    FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
                    WHERE v.verifier = $1 AND j.currency = 'XMR' AND v.settlement_id IS NULL
                      AND v.reward_amount > '0'), 0)
        - coalesce((SELECT compay.sum_atomic(r.reward_amount)
                    FROM compay.clearing_rewards r
                    WHERE r.verifier = $1 AND r.currency = 'XMR' AND r.settlement_id IS NULL), 0)
        - coalesce((SELECT sum(compay.atomic(c.amount) - compay.atomic(c.repaid))
                    FROM compay.clawbacks c
                    WHERE c.node_id = $1 AND c.currency = 'XMR' AND c.repaid_at IS NULL), 0)))
$$;
COMMENT ON FUNCTION compay.withdrawable(text) IS
    'what a node may withdraw to its operational address: its available XMR less its unsettled earnings and what it owes of clawbacks';

-- Adds a withdrawal's amount to a queued payout, to the node's operational
-- address (chosen once, here, and kept; with rotation on, the next payout
-- takes the next one).  The caller holds the queue lock.
CREATE FUNCTION compay.queue_withdrawal(payout_id bigint, settlement_id bigint,
    amount compay.credit) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_address compay.payout_addresses;
BEGIN
    SELECT * INTO STRICT s FROM compay.settlements st WHERE st.id = queue_withdrawal.settlement_id;
    v_address := compay.payout_address_for(s.payee, 'operational', NULL, queue_withdrawal.payout_id);
    IF v_address.address IS NULL OR s.purpose <> 'operational' THEN
        RAISE EXCEPTION 'settlement % is no withdrawal to an operational address', s.id
            USING ERRCODE = 'internal_error';
    END IF;
    UPDATE compay.payout_addresses a SET last_payout_id = queue_withdrawal.payout_id
    WHERE a.node_id = v_address.node_id AND a.purpose = v_address.purpose
      AND a.job_type IS NOT DISTINCT FROM v_address.job_type AND a.address = v_address.address;
    INSERT INTO compay.payout_items AS i (payout_id, node_id, address, amount, settlement_ids)
    VALUES (queue_withdrawal.payout_id, s.payee, v_address.address, amount, ARRAY[s.id])
    ON CONFLICT ON CONSTRAINT payout_items_pkey DO UPDATE
    SET amount = i.amount + EXCLUDED.amount, settlement_ids = i.settlement_ids || EXCLUDED.settlement_ids;
    INSERT INTO compay.payout_parts (payout_id, settlement_id, node_id, address, amount)
    VALUES (queue_withdrawal.payout_id, s.id, s.payee, v_address.address, amount);
    UPDATE compay.settlements st SET payout_id = queue_withdrawal.payout_id WHERE st.id = s.id;
    UPDATE compay.payout_transactions p SET amount = p.amount + queue_withdrawal.amount
    WHERE p.id = queue_withdrawal.payout_id;
END $$;
REVOKE ALL ON FUNCTION compay.queue_withdrawal(bigint, bigint, compay.credit) FROM PUBLIC;

-- Queues again the withdrawals whose payout failed, once their backoff
-- has passed (whatever the node's payout policy: the node asked for
-- them), at most compay.payout_batch_max payees a payout; returns the
-- payouts queued.  Called by compay.queue_payouts, under its lock.
CREATE FUNCTION compay.queue_withdrawals() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_batch integer := compay.setting('compay.payout_batch_max')::integer;
    v_payout bigint;
    v_n integer := 0;
    r record;
BEGIN
    PERFORM NULL FROM compay.settlements s
    WHERE s.purpose = 'operational' AND s.status = 'processing'
    ORDER BY s.id FOR UPDATE;
    FOR r IN
        SELECT s.id, s.payee,
               compay.credit_from_atomic(compay.atomic(h.remaining) - coalesce(
                   (SELECT compay.sum_atomic(pp.amount) FROM compay.payout_parts pp
                    JOIN compay.payout_transactions p ON p.id = pp.payout_id
                    WHERE pp.settlement_id = s.id AND p.status = 'queued'), 0)) AS rest
        FROM compay.settlements s
        JOIN compay.holds h ON h.id = s.earmark_hold_id AND h.status = 'pending'
        WHERE s.purpose = 'operational' AND s.status = 'processing'
          AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
          AND (compay.payout_address_for(s.payee, 'operational', NULL, NULL)).address IS NOT NULL
        ORDER BY s.id
    LOOP
        CONTINUE WHEN r.rest <= '0';
        IF v_payout IS NULL OR (SELECT count(*) FROM compay.payout_items i
                                WHERE i.payout_id = v_payout) >= v_batch THEN
            INSERT INTO compay.payout_transactions (amount) VALUES ('0') RETURNING id INTO v_payout;
            v_n := v_n + 1;
        END IF;
        PERFORM compay.queue_withdrawal(v_payout, r.id, r.rest);
    END LOOP;
    RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION compay.queue_withdrawals() FROM PUBLIC;

-- A withdrawal on the node's request: amount of what it may withdraw
-- (compay.withdrawable) paid on chain to its operational address(es).
-- Earmarked by a hold at once and queued as a payout of its own, which
-- the payout round builds, relays and confirms.  It counts toward, and is
-- bounded by, the node's daily cap (max_per_day); min_payout and
-- payout_interval do not apply.  Returns the payout id; the same
-- idempotency key with the same arguments returns the same id.
CREATE FUNCTION compay.request_withdrawal(node_id text, amount compay.credit,
    idempotency_key text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    pol record;
    v_paid compay.credit;
    v_can compay.credit;
    v_start timestamptz := compay.period_start('hourly', now());
    v_settlement bigint;
    v_payout bigint;
BEGIN
    IF node_id IS NULL OR amount IS NULL THEN
        RAISE EXCEPTION 'node_id and amount must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    IF amount <= '0' THEN
        RAISE EXCEPTION 'a withdrawal amount must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF idempotency_key IS NOT NULL THEN
        v_payout := compay.idempotency_claim(idempotency_key, 'request_withdrawal',
                                             node_id || E'\n' || amount::text);
        IF v_payout IS NOT NULL THEN
            RETURN v_payout;
        END IF;
    END IF;
    IF (compay.payout_address_for(node_id, 'operational', NULL, NULL)).address IS NULL THEN
        RAISE EXCEPTION 'node "%" has no operational address', node_id
            USING ERRCODE = 'PY034',
                  HINT = 'Add one with compay.add_payout_address(node_id, address, ''operational'').';
    END IF;
    -- One queue at a time (compay.queue_payouts and request_payout take the
    -- same lock): two withdrawals of a node never both count the same money.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
    v_can := compay.withdrawable(node_id);
    IF amount > v_can THEN
        RAISE EXCEPTION 'a withdrawal of % exceeds the % node "%" can withdraw', amount, v_can, node_id
            USING ERRCODE = 'PY035',
                  DETAIL = 'A node withdraws its available XMR less its earnings not yet settled and what it owes of clawbacks; settled earnings are paid by compay.request_payout().';
    END IF;
    SELECT * INTO pol FROM compay.payout_policy(node_id);
    v_paid := compay.payout_paid_today(node_id);
    IF amount > pol.max_per_day - v_paid THEN
        RAISE EXCEPTION 'a withdrawal of % is over the daily cap of node "%"', amount, node_id
            USING ERRCODE = 'PY018',
                  DETAIL = format('Its max_per_day is %s and it was paid %s in the last 24 hours.',
                                  pol.max_per_day, v_paid),
                  HINT = 'Ask for less, or again once its earlier payouts are 24 hours old.';
    END IF;
    INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                    payment_count, total_amount, status, attempts)
    VALUES ('hourly', v_start, compay.period_end('hourly', v_start), 'XMR', node_id,
            'operational', 0, amount, 'processing', 1)
    RETURNING id INTO v_settlement;
    UPDATE compay.settlements s
    SET earmark_hold_id = compay.reserve(node_id, amount, 'settlement:' || v_settlement,
                                         NULL, NULL, 'XMR')
    WHERE s.id = v_settlement;
    INSERT INTO compay.payout_transactions (amount) VALUES ('0') RETURNING id INTO v_payout;
    PERFORM compay.queue_withdrawal(v_payout, v_settlement, amount);
    IF idempotency_key IS NOT NULL THEN
        PERFORM compay.idempotency_record(idempotency_key, v_payout);
    END IF;
    RETURN v_payout;
END $$;
COMMENT ON FUNCTION compay.request_withdrawal(text, compay.credit, text) IS
    'queues a payout of amount of what a node may withdraw (not its earnings) to its operational address, within its daily cap; returns the payout id';

REVOKE ALL ON FUNCTION compay.withdrawable(text),
    compay.request_withdrawal(text, compay.credit, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.withdrawable(text) TO compay_reader, compay_node;
GRANT EXECUTE ON FUNCTION compay.request_withdrawal(text, compay.credit, text)
    TO compay_app, compay_node;
