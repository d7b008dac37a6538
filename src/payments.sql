--------------------------------------------------------------------------
-- Payments: one row per payment attempt of a task, the requester volume
-- kept from them, task payments without escrow, disputes.
--------------------------------------------------------------------------

CREATE SEQUENCE compay.payments_id_seq;
CREATE TABLE compay.payments (
    id                 bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.payments_id_seq'),
    task_id            text NOT NULL,
    from_node          text NOT NULL,
    to_node            text NOT NULL,
    amount             compay.credit NOT NULL,
    currency           text NOT NULL,
    method             compay.payment_method NOT NULL,
    status             compay.payment_status NOT NULL DEFAULT 'pending',
    resource_metrics   compay.resource_metrics,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    completed_at       timestamptz,
    tx_hash            text,
    metadata           jsonb NOT NULL DEFAULT '{}',
    transfer_id        bigint,
    refund_transfer_id bigint,
    settlement_id      bigint,              -- a late payment's settlement: compay.payment_settlement()
    dispute_reason     text,
    disputed_at        timestamptz,
    CONSTRAINT payments_amount CHECK (amount >= '0')
);
ALTER SEQUENCE compay.payments_id_seq OWNED BY compay.payments.id;
-- A task is paid at most once: only failed attempts may repeat.  The
-- collections of a job's shortfall (src/jobs.sql) are further payments of
-- the task, each marked with its shortfall_id.
CREATE UNIQUE INDEX payments_task_once ON compay.payments (task_id)
    WHERE status <> 'failed' AND (metadata -> 'shortfall_id') IS NULL;
-- A settlement run's window (src/settlement_runs.sql): the payments it
-- settles without writing them.
CREATE INDEX payments_settle_window ON compay.payments (completed_at) WHERE settlement_id IS NULL;
-- A settlement's payments, by payee and period (compay.settlement_payments).
CREATE INDEX payments_payee ON compay.payments (to_node, completed_at);
CREATE INDEX payments_settlement ON compay.payments (settlement_id) WHERE settlement_id IS NOT NULL;
-- The requester's volume for discount tiers (src/pricing_config.c).
CREATE INDEX payments_volume ON compay.payments (from_node, completed_at)
    WHERE status IN ('completed', 'disputed');
COMMENT ON TABLE compay.payments IS
    'one row per payment attempt of a task: pending, processing, completed, failed, refunded, disputed';

-- Each requester's paid payments (completed or disputed) per UTC day of
-- completed_at, kept by statement triggers in the same transaction as the
-- payment rows, so that the discount volume reads at most a month of rows plus the
-- payments of the window's first day (src/pricing_config.c).  Not dumped:
-- restoring compay.payments fills it again through the trigger;
-- compay.rebuild_requester_volume() makes it again from the payments.
CREATE TABLE compay.requester_volume (
    from_node text NOT NULL,
    day       date NOT NULL,
    payments  bigint NOT NULL,
    PRIMARY KEY (from_node, day)
);
COMMENT ON TABLE compay.requester_volume IS
    'paid payments (completed or disputed) per requester and UTC day, kept by a trigger on compay.payments';
REVOKE ALL ON compay.requester_volume FROM PUBLIC;
GRANT SELECT ON compay.requester_volume TO compay_reader;

-- Statement triggers with transition tables: the net change a statement
-- made to each (requester, UTC day), one upsert per group however many
-- rows it wrote.
CREATE FUNCTION compay.track_requester_volume() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO compay.requester_volume AS v (from_node, day, payments)
        SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date, count(*)
        FROM new_rows
        WHERE status IN ('completed', 'disputed') AND completed_at IS NOT NULL
        GROUP BY 1, 2
        ON CONFLICT (from_node, day) DO UPDATE SET payments = v.payments + excluded.payments;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO compay.requester_volume AS v (from_node, day, payments)
        SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date, -count(*)
        FROM old_rows
        WHERE status IN ('completed', 'disputed') AND completed_at IS NOT NULL
        GROUP BY 1, 2
        ON CONFLICT (from_node, day) DO UPDATE SET payments = v.payments + excluded.payments;
    ELSE
        INSERT INTO compay.requester_volume AS v (from_node, day, payments)
        SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date, sum(sign)
        FROM (SELECT n.from_node, n.completed_at, 1 AS sign FROM new_rows n
              WHERE n.status IN ('completed', 'disputed') AND n.completed_at IS NOT NULL
              UNION ALL
              SELECT o.from_node, o.completed_at, -1 FROM old_rows o
              WHERE o.status IN ('completed', 'disputed') AND o.completed_at IS NOT NULL) r
        GROUP BY 1, 2 HAVING sum(sign) <> 0
        ON CONFLICT (from_node, day) DO UPDATE SET payments = v.payments + excluded.payments;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_volume_insert AFTER INSERT ON compay.payments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.track_requester_volume();
CREATE TRIGGER payments_volume_update AFTER UPDATE ON compay.payments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.track_requester_volume();
CREATE TRIGGER payments_volume_delete AFTER DELETE ON compay.payments
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.track_requester_volume();

CREATE FUNCTION compay.truncate_requester_volume() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    TRUNCATE compay.requester_volume;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_volume_truncate AFTER TRUNCATE ON compay.payments
    FOR EACH STATEMENT EXECUTE FUNCTION compay.truncate_requester_volume();

-- Makes compay.requester_volume again from the payments (after a restore
-- with triggers disabled, say).  Returns the rows written.
CREATE FUNCTION compay.rebuild_requester_volume() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_n bigint;
BEGIN
    LOCK TABLE compay.payments IN SHARE MODE;
    DELETE FROM compay.requester_volume;
    INSERT INTO compay.requester_volume (from_node, day, payments)
    SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date, count(*)
    FROM compay.payments
    WHERE status IN ('completed', 'disputed') AND completed_at IS NOT NULL
    GROUP BY 1, 2;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION compay.track_requester_volume(), compay.truncate_requester_volume(),
    compay.rebuild_requester_volume() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('compay.payments', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payments_id_seq', '');
REVOKE ALL ON compay.payments, compay.payments_id_seq FROM PUBLIC;
GRANT SELECT ON compay.payments TO compay_reader;

CREATE FUNCTION compay.process_task_payment(task_id text,
    method compay.payment_method DEFAULT 'credit') RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    p compay.payments;
    v_currency text;
BEGIN
    PERFORM compay.require_node(NULL);
    j := compay.lock_job(task_id);      -- after the check: no lock for a refused caller
    IF method IS NULL THEN
        RAISE EXCEPTION 'method must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Paid at most once: a retry, of any method, gets the payment made
    -- (not a collection of the job's shortfall, src/jobs.sql).
    SELECT * INTO p FROM compay.payments
    WHERE payments.task_id = process_task_payment.task_id AND status <> 'failed'
      AND (payments.metadata -> 'shortfall_id') IS NULL;
    IF FOUND THEN
        RETURN p;
    END IF;
    IF j.max_amount IS NOT NULL THEN
        RAISE EXCEPTION 'job "%" is paid from its escrow after verification', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Use compay.verify_job().';
    END IF;
    IF method = 'fiat' THEN
        RAISE EXCEPTION 'fiat payments are not supported' USING ERRCODE = 'feature_not_supported',
            HINT = 'Pay with credit, barter or crypto.';
    END IF;
    PERFORM compay.require_job_status(j, 'completed', 'pay');
    v_currency := CASE method WHEN 'crypto' THEN 'XMR' WHEN 'barter' THEN 'CREDIT' ELSE j.currency END;
    IF v_currency <> j.currency THEN
        RAISE EXCEPTION 'task "%" is priced in %, not %', left(task_id, 64), j.currency, v_currency
            USING ERRCODE = 'PY003',
                  DETAIL = format('A %s payment moves %s.', method, v_currency),
                  HINT = 'Map the task type to a pricing model in that currency.';
    END IF;
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 resource_metrics)
    VALUES (task_id, j.requester, j.provider, compay.job_amount(j, NULL), v_currency, method,
            'processing', compay.task_metrics(task_id))
    RETURNING * INTO p;
    BEGIN
        IF p.amount > '0' THEN
            IF method = 'barter' THEN
                p.transfer_id := compay.grant_barter(j.provider, j.requester, p.amount,
                                                     'payment:' || p.id);
            ELSE
                p.transfer_id := compay.transfer(j.requester, j.provider, p.amount,
                                                 'payment:' || p.id, NULL, v_currency);
            END IF;
        END IF;
        UPDATE compay.payments SET status = 'completed', completed_at = now(),
                                   transfer_id = p.transfer_id
        WHERE id = p.id RETURNING * INTO p;
        UPDATE compay.jobs SET status = 'paid', amount = p.amount, payment_id = p.id,
                               updated_at = now()
        WHERE id = j.id;
    EXCEPTION WHEN SQLSTATE 'PY001' OR SQLSTATE 'PY002' THEN
        UPDATE compay.payments
        SET status = 'failed', completed_at = now(),
            metadata = metadata || jsonb_build_object('sqlstate', SQLSTATE, 'error', SQLERRM)
        WHERE id = p.id RETURNING * INTO p;
        PERFORM compay.move_credit_score(j.requester, v_currency, false);
    END;
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.process_task_payment(text, compay.payment_method) IS
    'pays a completed task without escrow once: metrics, price, payment record, then credit, barter or crypto';

-- The payment row, locked; PY012 if there is none.
CREATE FUNCTION compay.lock_payment(payment_id bigint) RETURNS compay.payments
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
BEGIN
    IF payment_id IS NULL THEN
        RAISE EXCEPTION 'payment_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO p FROM compay.payments WHERE id = payment_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payment % does not exist', payment_id USING ERRCODE = 'PY012';
    END IF;
    RETURN p;
END $$;

--------------------------------------------------------------------------
-- Disputes hold money.  A disputed payment is kept out of settlement
-- (compay.run_settlement gathers completed payments only); one already
-- settled is held back: its settlement's held_back is the sum of its
-- disputed payments, and a payout pays at most the earmark hold's
-- remaining less held_back.  A refund comes from the unpaid rest (the
-- payee's balance before settlement, the settlement's earmark hold after);
-- what has left on chain already is fronted to the payer by $clawbacks and
-- recorded here as owed by the payee, whose next XMR settlements repay it
-- first (compay.process_settlement).
--------------------------------------------------------------------------

CREATE SEQUENCE compay.clawbacks_id_seq;
CREATE TABLE compay.clawbacks (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.clawbacks_id_seq'),
    node_id     text NOT NULL,                  -- the payee who owes it
    currency    text NOT NULL,
    payment_id  bigint NOT NULL,                -- the refunded payment
    amount      compay.credit NOT NULL,         -- what $clawbacks fronted to the payer
    repaid      compay.credit NOT NULL DEFAULT '0',
    transfer_id bigint NOT NULL,                -- the refund from $clawbacks
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    repaid_at   timestamptz,                    -- when the last of it was repaid
    CONSTRAINT clawbacks_amounts CHECK (amount > '0' AND repaid >= '0' AND repaid <= amount),
    CONSTRAINT clawbacks_repaid_at CHECK ((repaid_at IS NOT NULL) = (repaid = amount))
);
ALTER SEQUENCE compay.clawbacks_id_seq OWNED BY compay.clawbacks.id;
CREATE INDEX clawbacks_open ON compay.clawbacks (node_id, currency, id) WHERE repaid_at IS NULL;
CREATE INDEX clawbacks_payment ON compay.clawbacks (payment_id);
COMMENT ON TABLE compay.clawbacks IS
    'refunds of payments whose money had left on chain: fronted by $clawbacks, owed by the payee, repaid first from its next settlements';
SELECT pg_catalog.pg_extension_config_dump('compay.clawbacks', '');
SELECT pg_catalog.pg_extension_config_dump('compay.clawbacks_id_seq', '');
REVOKE ALL ON compay.clawbacks, compay.clawbacks_id_seq FROM PUBLIC;
GRANT SELECT ON compay.clawbacks TO compay_reader;

CREATE FUNCTION compay.dispute_refund(transfer_id bigint, amount compay.credit, hold_id bigint,
    reason text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_dispute_refund'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.dispute_refund(bigint, compay.credit, bigint, text) IS
    'refunds part of a transfer to its payer from a pending hold of its payee, or, with no hold, fronted by $clawbacks; for compay.resolve_dispute()';

CREATE FUNCTION compay.clawback_repay(node_id text, amount compay.credit, currency text,
    reference text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_clawback_repay'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.clawback_repay(text, compay.credit, text, text) IS
    'moves what a node repays of a clawback from its balance to $clawbacks; for compay.process_settlement()';

-- What a node still owes of its clawbacks in a currency.
CREATE FUNCTION compay.clawbacks_owed(node_id text, currency text DEFAULT 'XMR')
RETURNS compay.credit
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT coalesce(compay.sum(c.amount OPERATOR(compay.-) c.repaid), '0'::compay.credit)
    FROM compay.clawbacks c
    WHERE c.node_id = $1 AND c.currency = $2 AND c.repaid_at IS NULL
$$;
COMMENT ON FUNCTION compay.clawbacks_owed(text, text) IS
    'what a node still owes of refunds fronted by $clawbacks; its next settlements repay it first';

CREATE FUNCTION compay.dispute_payment(payment_id bigint, reason text) RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
    v_window interval := compay.setting('compay.dispute_window')::interval;
    v_settlement bigint;
BEGIN
    PERFORM compay.require_node(NULL);
    -- A settlement run in progress is waited for (its lock), and one after
    -- this commit sees the payment disputed: a run finds a payment's
    -- settlement by key, without locking its row (src/settlement_runs.sql).
    PERFORM pg_advisory_xact_lock_shared(pg_catalog.hashtext('compay.run_settlement'));
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
    v_settlement := compay.payment_settlement(p);
    IF reason IS NULL OR length(reason) = 0 THEN
        RAISE EXCEPTION 'a dispute needs a reason' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(reason) > 1000 THEN
        RAISE EXCEPTION 'a dispute reason has at most 1000 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p.status <> 'completed' THEN
        RAISE EXCEPTION 'cannot dispute payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF now() > p.completed_at + v_window THEN
        RAISE EXCEPTION 'the dispute window of payment % has closed', payment_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Payments can be disputed for %s after they complete (compay.dispute_window).',
                                  compay.setting('compay.dispute_window'));
    END IF;
    -- Settled already: its settlement holds the amount back from payouts.
    -- The payment row is locked first, then the settlement.  A payout
    -- queue run in progress is waited for (its lock), and one after this
    -- commit sees held_back: a payout never takes a payment disputed
    -- before it was queued.
    IF v_settlement IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
        UPDATE compay.settlements SET held_back = held_back + p.amount
        WHERE id = v_settlement;
    END IF;
    UPDATE compay.payments SET status = 'disputed', dispute_reason = reason, disputed_at = now()
    WHERE id = payment_id RETURNING * INTO p;
    PERFORM compay.move_credit_score(p.to_node, p.currency, false);
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.dispute_payment(bigint, text) IS
    'disputes a completed payment within compay.dispute_window: unsettled, it is kept out of settlement; settled, its settlement holds it back from payouts';

-- The refund of a disputed payment, from where its money is.  Other
-- currencies than XMR: from the payee's balance (compay.refund), as any
-- refund.  XMR: what is still unpaid comes back from the payee (settled:
-- from what the settlement's earmark hold keeps that no queued payout part
-- carries; unsettled: from its available balance); the rest has left, or
-- is about to leave, on chain (built or queued parts, a paid settlement):
-- $clawbacks fronts it and the payee owes it.  Returns the transfer of the
-- last part.
CREATE FUNCTION compay.refund_disputed(p compay.payments, refund_amount compay.credit)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_reason text := 'dispute:' || p.id;
    v_hold bigint;
    v_unpaid compay.credit;
    v_part compay.credit;
    v_transfer bigint;
BEGIN
    IF p.currency <> 'XMR' THEN
        RETURN compay.refund(p.transfer_id, refund_amount, v_reason);
    END IF;
    SELECT * INTO s FROM compay.settlements WHERE id = compay.payment_settlement(p) FOR UPDATE;
    IF FOUND THEN
        IF s.status IN ('pending', 'failed') THEN
            -- Not earmarked yet: earmark it now, so that its unpaid rest is in its hold.
            PERFORM compay.process_settlement(s.id);
            SELECT * INTO s FROM compay.settlements WHERE id = s.id;
        END IF;
        IF s.status = 'processing' THEN
            -- What its hold keeps that no payout carries yet (parts of a
            -- queued payout are paid as queued; built ones left the hold).
            v_hold := s.earmark_hold_id;
            SELECT h.remaining - coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                                           JOIN compay.payout_transactions t ON t.id = pp.payout_id
                                           WHERE pp.settlement_id = s.id AND t.status = 'queued'), '0')
            INTO v_unpaid FROM compay.holds h
            WHERE h.id = v_hold AND h.status = 'pending';
            v_unpaid := coalesce(v_unpaid, '0');
        ELSIF s.status = 'completed' THEN
            v_unpaid := '0';           -- paid out
        END IF;
    END IF;
    IF v_unpaid IS NULL AND v_hold IS NULL THEN
        -- Unsettled, or a settlement the payee's balance could not earmark.
        SELECT a.balance - a.reserved INTO v_unpaid FROM compay.accounts a
        WHERE a.node_id = p.to_node AND a.currency = p.currency;
    END IF;
    v_part := least(refund_amount, greatest(coalesce(v_unpaid, '0'), '0'));
    IF v_part > '0' AND v_hold IS NULL THEN
        v_transfer := compay.refund(p.transfer_id, v_part, v_reason);
    ELSIF v_part > '0' THEN
        v_transfer := compay.dispute_refund(p.transfer_id, v_part, v_hold, v_reason);
        -- Its hold refunded to the last piconero and no part open: nothing
        -- is left to pay out, whatever other disputes still hold back (a
        -- refund of theirs is a clawback now).  A part still built or
        -- relayed completes it when confirmed.
        UPDATE compay.settlements SET status = 'completed', completed_at = now()
        WHERE id = s.id
          AND NOT EXISTS (SELECT FROM compay.holds h WHERE h.id = v_hold AND h.status = 'pending')
          AND NOT EXISTS (SELECT FROM compay.payout_parts pp
                          JOIN compay.payout_transactions t ON t.id = pp.payout_id
                          WHERE pp.settlement_id = s.id AND t.status IN ('queued', 'built', 'relayed'));
    END IF;
    v_part := refund_amount - v_part;
    IF v_part > '0' THEN
        v_transfer := compay.dispute_refund(p.transfer_id, v_part, NULL, v_reason);
        INSERT INTO compay.clawbacks (node_id, currency, payment_id, amount, transfer_id)
        VALUES (p.to_node, p.currency, p.id, v_part, v_transfer);
    END IF;
    RETURN v_transfer;
END $$;

CREATE FUNCTION compay.resolve_dispute(payment_id bigint, refund_amount compay.credit)
RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
BEGIN
    PERFORM compay.require_node(NULL);
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
    IF refund_amount IS NULL THEN
        RAISE EXCEPTION 'refund_amount must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p.status <> 'disputed' THEN
        RAISE EXCEPTION 'cannot resolve payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF refund_amount < '0' THEN
        RAISE EXCEPTION 'a refund cannot be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF refund_amount > p.amount THEN
        RAISE EXCEPTION 'refund of % exceeds payment % of %', refund_amount, payment_id, p.amount
            USING ERRCODE = 'PY008';
    END IF;
    IF refund_amount > '0' AND p.method = 'barter' THEN
        RAISE EXCEPTION 'barter payments cannot be refunded' USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Barter credits are not money the ledger can move back.',
            HINT = 'Resolve with refund 0, or grant barter credits back with compay.grant_barter().';
    END IF;
    -- The settlement no longer holds it back: what is not refunded is paid out.
    UPDATE compay.settlements SET held_back = held_back - p.amount
    WHERE id = compay.payment_settlement(p);
    IF refund_amount = '0' THEN
        UPDATE compay.payments SET status = 'completed' WHERE id = payment_id RETURNING * INTO p;
        RETURN p;
    END IF;
    UPDATE compay.payments
    SET status = 'refunded',
        refund_transfer_id = compay.refund_disputed(p, refund_amount),
        metadata = metadata || jsonb_build_object('refund_amount', refund_amount::text)
    WHERE id = payment_id RETURNING * INTO p;
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.resolve_dispute(bigint, compay.credit) IS
    'ends a dispute: refund 0 puts the payment back to completed; more refunds it from the unpaid rest and claws back what has left on chain';

-- Internal helpers: no role may call them directly.
REVOKE ALL ON FUNCTION compay.lock_payment(bigint),
    compay.refund_disputed(compay.payments, compay.credit),
    compay.dispute_refund(bigint, compay.credit, bigint, text),
    compay.clawback_repay(text, compay.credit, text, text),
    compay.clawbacks_owed(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.clawbacks_owed(text, text) TO compay_reader, compay_node;
REVOKE ALL ON FUNCTION compay.process_task_payment(text, compay.payment_method),
    compay.dispute_payment(bigint, text), compay.resolve_dispute(bigint, compay.credit)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.process_task_payment(text, compay.payment_method),
    compay.dispute_payment(bigint, text)
    TO compay_app;
GRANT EXECUTE ON FUNCTION compay.resolve_dispute(bigint, compay.credit) TO compay_admin;
