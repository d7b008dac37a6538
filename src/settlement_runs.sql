--------------------------------------------------------------------------
-- Settlement runs: where each payment's settlement is, without writing
-- the payment.  compay.run_settlement() (src/settlement.sql) takes the
-- window of completion times that follows the last run's and settles
-- every eligible payment completed in it; a payment's settlement is then
-- found by its run, payee, currency and period (and job type), not
-- stamped on its row.  Only late payments are stamped: those written
-- into a window already taken, or kept out of their run (disputed).
-- After src/payout.sql: compay.settlements.run_id follows job_type.
--------------------------------------------------------------------------

CREATE SEQUENCE compay.settlement_runs_id_seq;
CREATE TABLE compay.settlement_runs (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.settlement_runs_id_seq'),
    period       compay.settlement_period NOT NULL,
    window_start timestamptz NOT NULL,      -- completed_at >= window_start
    window_end   timestamptz NOT NULL,      -- completed_at < window_end
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT settlement_runs_window CHECK (window_end > window_start)
);
ALTER SEQUENCE compay.settlement_runs_id_seq OWNED BY compay.settlement_runs.id;
CREATE INDEX settlement_runs_end ON compay.settlement_runs (window_end);
COMMENT ON TABLE compay.settlement_runs IS
    'one row per compay.run_settlement() that took a window: the completion times whose payments it settled, each window after the last';
SELECT pg_catalog.pg_extension_config_dump('compay.settlement_runs', '');
SELECT pg_catalog.pg_extension_config_dump('compay.settlement_runs_id_seq', '');
REVOKE ALL ON compay.settlement_runs, compay.settlement_runs_id_seq FROM PUBLIC;
GRANT SELECT ON compay.settlement_runs TO compay_reader;

-- Payments whose settlement is not their window's: written into a window
-- already taken (late), or in their run's window but not eligible then
-- (disputed, refunded).  The next run whose cutoff is past them settles
-- the eligible ones by stamping compay.payments.settlement_id, and
-- forgets them.
CREATE TABLE compay.settlement_exceptions (
    payment_id bigint PRIMARY KEY,
    run_id     bigint,                      -- the run that kept it out; NULL: late
    noted_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE compay.settlement_exceptions IS
    'payments not settled with their window''s run (late, or disputed then): a later run stamps their settlement';
SELECT pg_catalog.pg_extension_config_dump('compay.settlement_exceptions', '');
REVOKE ALL ON compay.settlement_exceptions FROM PUBLIC;
GRANT SELECT ON compay.settlement_exceptions TO compay_reader;

ALTER TABLE compay.settlements ADD COLUMN run_id bigint;
COMMENT ON COLUMN compay.settlements.run_id IS
    'the compay.settlement_runs row that made it; its payments are found by that run''s window (compay.settlement_payments)';
-- Found by payee, currency and period start (settlements_payee), then run.

-- The settlement of payment p: stamped (late, or settled before 0.2),
-- else the one its window's run made for its payee, currency and period
-- (of its job type when the run settled that apart); NULL: not settled.
CREATE FUNCTION compay.payment_settlement(p compay.payments) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT coalesce(p.settlement_id, (
        SELECT s.id
        FROM (SELECT r.id, r.period FROM compay.settlement_runs r
              WHERE r.window_end > p.completed_at AND r.window_start <= p.completed_at
              ORDER BY r.window_end LIMIT 1) r
        JOIN compay.settlements s
          ON s.run_id = r.id AND s.payee = p.to_node AND s.currency = p.currency
         AND s.period_start = compay.period_start(r.period, p.completed_at)
         AND s.purpose = 'primary'
        WHERE p.status <> 'failed'
          AND NOT EXISTS (SELECT 1 FROM compay.settlement_exceptions x WHERE x.payment_id = p.id)
          AND (s.job_type IS NULL
               OR s.job_type = (SELECT j.task_type FROM compay.jobs j WHERE j.task_id = p.task_id))
        ORDER BY s.job_type NULLS LAST
        LIMIT 1))
$$;
COMMENT ON FUNCTION compay.payment_settlement(compay.payments) IS
    'the settlement that gathered payment p, NULL while unsettled (replaces reading compay.payments.settlement_id)';
GRANT EXECUTE ON FUNCTION compay.payment_settlement(compay.payments) TO compay_reader;

-- The payments settlement s gathered: stamped ones, and those of its
-- run's window with its payee, currency and period.  A settlement of a
-- job type (job_type) has the payments of jobs of that type; one without
-- has the others.
CREATE FUNCTION compay.settlement_payments(s compay.settlements) RETURNS SETOF compay.payments
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT p.* FROM compay.payments p WHERE p.settlement_id = s.id
    UNION ALL
    SELECT p.*
    FROM compay.settlement_runs r
    JOIN compay.payments p
      ON p.to_node = s.payee
     AND p.completed_at >= greatest(r.window_start, s.period_start)
     AND p.completed_at < least(r.window_end, s.period_end)
    WHERE r.id = s.run_id AND s.purpose = 'primary' AND p.currency = s.currency
      AND p.settlement_id IS NULL AND p.status <> 'failed'
      AND NOT EXISTS (SELECT 1 FROM compay.settlement_exceptions x WHERE x.payment_id = p.id)
      AND CASE WHEN s.job_type IS NOT NULL
               THEN EXISTS (SELECT 1 FROM compay.jobs j
                            WHERE j.task_id = p.task_id AND j.task_type = s.job_type)
               ELSE NOT EXISTS (SELECT 1 FROM compay.jobs j JOIN compay.settlements o
                                  ON o.run_id = s.run_id AND o.payee = s.payee
                                 AND o.currency = s.currency AND o.period_start = s.period_start
                                 AND o.purpose = 'primary' AND o.job_type = j.task_type
                                WHERE j.task_id = p.task_id) END
$$;
COMMENT ON FUNCTION compay.settlement_payments(compay.settlements) IS
    'the payments settlement s gathered (primary settlements; verifier rewards are in compay.verifications)';
GRANT EXECUTE ON FUNCTION compay.settlement_payments(compay.settlements) TO compay_reader;

-- Statement triggers on compay.payments: rows written with a completion
-- time in a window a run has taken, or while a run is under way (its
-- window unknown), are late.  Every writing statement holds the run's
-- lock shared until it commits, so a run waits for the writers before it
-- reads.  In repeatable read the committed runs may be newer than the
-- snapshot: every row written with a completion time is late then.
CREATE FUNCTION compay.note_late_payments() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_end timestamptz;
BEGIN
    -- A COPY into the table is a load (pg_restore, a reload of a dump):
    -- compay's functions never COPY.  It brings payments that a restored
    -- run already counted, and the exceptions as they were: none is late.
    IF pg_catalog.current_query() ~* '^\s*COPY\s' THEN
        RETURN NULL;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock_shared(pg_catalog.hashtext('compay.run_settlement')) THEN
        v_end := 'infinity';
    ELSE
        SELECT max(window_end) INTO v_end FROM compay.settlement_runs;
    END IF;
    IF v_end IS NULL THEN
        RETURN NULL;                    -- no run yet
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO compay.settlement_exceptions (payment_id)
        SELECT n.id FROM new_rows n
        WHERE n.completed_at < v_end AND n.settlement_id IS NULL AND n.status <> 'failed'
          AND EXISTS (SELECT 1 FROM compay.payments p WHERE p.id = n.id)   -- not moved away
        ON CONFLICT DO NOTHING;
    ELSE
        INSERT INTO compay.settlement_exceptions (payment_id)
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.completed_at < v_end AND n.settlement_id IS NULL AND n.status <> 'failed'
          AND n.completed_at IS DISTINCT FROM o.completed_at
          AND EXISTS (SELECT 1 FROM compay.payments p WHERE p.id = n.id)   -- not moved away
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_late_insert AFTER INSERT ON compay.payments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.note_late_payments();
CREATE TRIGGER payments_late_update AFTER UPDATE ON compay.payments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.note_late_payments();
