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
    settlement_id      bigint,              -- the settlement that gathered it
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
-- What the next settlement run gathers.
CREATE INDEX payments_unsettled ON compay.payments (completed_at)
    WHERE status = 'completed' AND settlement_id IS NULL;
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

CREATE FUNCTION compay.dispute_payment(payment_id bigint, reason text) RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
    v_window interval := compay.setting('compay.dispute_window')::interval;
BEGIN
    PERFORM compay.require_node(NULL);
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
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
    UPDATE compay.payments SET status = 'disputed', dispute_reason = reason, disputed_at = now()
    WHERE id = payment_id RETURNING * INTO p;
    PERFORM compay.move_credit_score(p.to_node, p.currency, false);
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.dispute_payment(bigint, text) IS
    'disputes a completed payment within compay.dispute_window';

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
    IF refund_amount = '0' THEN
        UPDATE compay.payments SET status = 'completed' WHERE id = payment_id RETURNING * INTO p;
        RETURN p;
    END IF;
    IF p.method = 'barter' THEN
        RAISE EXCEPTION 'barter payments cannot be refunded' USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Barter credits are not money the ledger can move back.',
            HINT = 'Resolve with refund 0, or grant barter credits back with compay.grant_barter().';
    END IF;
    UPDATE compay.payments
    SET status = 'refunded',
        refund_transfer_id = compay.refund(p.transfer_id, refund_amount, 'dispute:' || payment_id),
        metadata = metadata || jsonb_build_object('refund_amount', refund_amount::text)
    WHERE id = payment_id RETURNING * INTO p;
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.resolve_dispute(bigint, compay.credit) IS
    'ends a dispute: refund 0 puts the payment back to completed, more refunds it through the ledger';

-- Internal helpers: no role may call them directly.
REVOKE ALL ON FUNCTION compay.lock_payment(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION compay.process_task_payment(text, compay.payment_method),
    compay.dispute_payment(bigint, text), compay.resolve_dispute(bigint, compay.credit)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.process_task_payment(text, compay.payment_method),
    compay.dispute_payment(bigint, text)
    TO compay_app;
GRANT EXECUTE ON FUNCTION compay.resolve_dispute(bigint, compay.credit) TO compay_admin;
