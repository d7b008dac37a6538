--------------------------------------------------------------------------
-- Settlement: completed payments batched per period, currency and payee.
-- compay.run_settlement() for pg_cron; the background worker
-- (src/worker.c) calls the same functions each round.
--------------------------------------------------------------------------

CREATE TYPE compay.settlement_period AS ENUM ('hourly', 'daily', 'weekly', 'monthly');
CREATE TYPE compay.settlement_status AS ENUM ('pending', 'processing', 'completed', 'failed');

CREATE SEQUENCE compay.settlements_id_seq;
CREATE TABLE compay.settlements (
    id              bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.settlements_id_seq'),
    period          compay.settlement_period NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    currency        text NOT NULL,
    payee           text NOT NULL,
    purpose         text NOT NULL DEFAULT 'primary',   -- verification: verifier rewards
    payment_count   bigint NOT NULL,
    total_amount    compay.credit NOT NULL,
    status          compay.settlement_status NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,
    earmark_hold_id bigint,                 -- XMR: the hold that keeps the amount for payout
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    completed_at    timestamptz,
    CONSTRAINT settlements_period CHECK (period_end > period_start),
    CONSTRAINT settlements_totals CHECK (payment_count > 0 AND total_amount >= '0'),
    CONSTRAINT settlements_purpose CHECK (purpose IN ('primary', 'verification'))
);
ALTER SEQUENCE compay.settlements_id_seq OWNED BY compay.settlements.id;
CREATE INDEX settlements_open ON compay.settlements (status, next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX settlements_payee ON compay.settlements (payee, currency, period_start);
COMMENT ON TABLE compay.settlements IS
    'completed payments of one period, currency and payee, gathered by compay.run_settlement()';
SELECT pg_catalog.pg_extension_config_dump('compay.settlements', '');
SELECT pg_catalog.pg_extension_config_dump('compay.settlements_id_seq', '');
REVOKE ALL ON compay.settlements, compay.settlements_id_seq FROM PUBLIC;
GRANT SELECT ON compay.settlements TO compay_reader;

-- The start of the period that holds ts, in UTC (weeks start on Monday).
CREATE FUNCTION compay.period_start(period compay.settlement_period, ts timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.date_trunc(CASE period WHEN 'hourly' THEN 'hour' WHEN 'daily' THEN 'day'
                                             WHEN 'weekly' THEN 'week' ELSE 'month' END,
                                 ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;
CREATE FUNCTION compay.period_end(period compay.settlement_period, start timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((start AT TIME ZONE 'UTC') + CASE period WHEN 'hourly' THEN interval '1 hour'
                                                     WHEN 'daily' THEN interval '1 day'
                                                     WHEN 'weekly' THEN interval '7 days'
                                                     ELSE interval '1 month' END) AT TIME ZONE 'UTC'
$$;
COMMENT ON FUNCTION compay.period_start(compay.settlement_period, timestamptz) IS
    'start of the settlement period holding ts, in UTC; weeks start on Monday';

-- Repays the payee's open clawbacks in the settlement's currency, oldest
-- first, from amount (what the settlement earns it): each part moves from
-- the payee to $clawbacks, referenced 'clawback:<id> settlement:<id>', and
-- is counted in compay.clawbacks.  Returns what is left of amount.
CREATE FUNCTION compay.repay_clawbacks(s compay.settlements, amount compay.credit)
RETURNS compay.credit
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.clawbacks;
    v_part compay.credit;
BEGIN
    FOR c IN SELECT * FROM compay.clawbacks
             WHERE node_id = s.payee AND currency = s.currency AND repaid_at IS NULL
             ORDER BY id FOR UPDATE
    LOOP
        EXIT WHEN amount = '0';
        v_part := least(amount, c.amount - c.repaid);
        PERFORM compay.clawback_repay(s.payee, v_part, s.currency,
                                      'clawback:' || c.id || ' settlement:' || s.id);
        UPDATE compay.clawbacks
        SET repaid = repaid + v_part,
            repaid_at = CASE WHEN repaid + v_part = c.amount THEN now() END
        WHERE id = c.id;
        amount := amount - v_part;
    END LOOP;
    RETURN amount;
END $$;
REVOKE ALL ON FUNCTION compay.repay_clawbacks(compay.settlements, compay.credit) FROM PUBLIC;

-- Processes one settlement: credit and barter complete at once (the money
-- moved when each payment was made); XMR is earmarked for payout by a
-- hold on the payee's XMR account and stays processing until the payout.
-- A failure is recorded with its error and retried with backoff.
CREATE FUNCTION compay.process_settlement(settlement_id bigint, as_of timestamptz DEFAULT now())
RETURNS compay.settlement_status
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_count bigint;
    v_total compay.credit;
    v_net compay.credit;
BEGIN
    SELECT * INTO s FROM compay.settlements WHERE id = settlement_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'settlement % does not exist', settlement_id USING ERRCODE = 'PY013';
    END IF;
    IF s.status IN ('processing', 'completed') THEN
        RETURN s.status;
    END IF;
    BEGIN
        IF s.purpose = 'verification' THEN
            SELECT count(*), coalesce(compay.sum(reward_amount), '0') INTO v_count, v_total
            FROM (SELECT v.reward_amount FROM compay.verifications v WHERE v.settlement_id = s.id
                  UNION ALL
                  SELECT r.reward_amount FROM compay.clearing_rewards r
                  WHERE r.settlement_id = s.id) v;
        ELSE
            SELECT count(*), coalesce(compay.sum(amount), '0') INTO v_count, v_total
            FROM compay.settlement_payments(s) p;
        END IF;
        IF v_count <> s.payment_count OR v_total <> s.total_amount THEN
            RAISE EXCEPTION 'settlement % records % payments of %, its payments are % of %',
                s.id, s.payment_count, s.total_amount, v_count, v_total
                USING ERRCODE = 'data_corrupted';
        END IF;
        IF s.currency = 'XMR' THEN
            -- Earmarked: what its payments kept (refunds before settlement
            -- came from the payee's balance), less what repays its clawbacks.
            v_net := compay.repay_clawbacks(s, s.total_amount OPERATOR(compay.-) coalesce(
                (SELECT compay.sum(t.amount) FROM compay.settlement_payments(s) p
                 JOIN compay.transfers t ON t.refund_of = p.transfer_id AND t.kind = 'refund'
                 JOIN compay.accounts a ON a.id = t.from_account
                 WHERE a.node_id = s.payee), '0'));
            IF v_net > '0' THEN
                s.earmark_hold_id := compay.reserve(s.payee, v_net, 'settlement:' || s.id,
                                                    NULL, NULL, 'XMR');
                s.status := 'processing';
            ELSE
                s.status := 'completed';        -- all of it repaid clawbacks
            END IF;
        ELSE
            s.status := 'completed';
        END IF;
        UPDATE compay.settlements
        SET status = s.status, attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL,
            earmark_hold_id = s.earmark_hold_id,
            completed_at = CASE WHEN s.status = 'completed' THEN now() END
        WHERE id = s.id;
    EXCEPTION WHEN OTHERS THEN
        -- Backoff: 1, 2, 4, ... minutes after each failure, at most an hour.
        UPDATE compay.settlements
        SET status = 'failed', attempts = attempts + 1,
            last_error = SQLSTATE || ': ' || SQLERRM,
            next_attempt_at = as_of + least(interval '1 minute' * power(2, attempts), interval '1 hour')
        WHERE id = s.id;
        RETURN 'failed';
    END;
    RETURN s.status;
END $$;

-- Processes new settlements and failed ones due for a retry; returns their ids.
CREATE FUNCTION compay.process_due_settlements(as_of timestamptz DEFAULT now())
RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_max integer := compay.setting('compay.settlement_max_attempts')::integer;
    v_id bigint;
BEGIN
    IF as_of IS NULL OR NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.require_node(NULL);
    FOR v_id IN
        SELECT id FROM compay.settlements
        WHERE status = 'pending'
           OR (status = 'failed' AND attempts < v_max AND next_attempt_at <= as_of)
        ORDER BY id
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM compay.process_settlement(v_id, as_of);
        RETURN NEXT v_id;
    END LOOP;
END $$;
COMMENT ON FUNCTION compay.process_due_settlements(timestamptz) IS
    'processes pending settlements and failed ones whose backoff has passed (fewer than compay.settlement_max_attempts attempts)';

CREATE FUNCTION compay.run_settlement(period compay.settlement_period DEFAULT 'hourly',
    as_of timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp
-- Compiling the run's statement costs seconds on a loaded machine and saves
-- less than that at a million payments (measured: docs/performance.md).
SET jit = off AS $$
DECLARE
    v_cutoff timestamptz;
    v_start timestamptz;
    v_run bigint;
    v_ids bigint[];
BEGIN
    PERFORM compay.require_node(NULL);
    IF period IS NULL OR as_of IS NULL THEN
        RAISE EXCEPTION 'period and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The run reads the payments once, after the lock below: a snapshot
    -- taken before it would miss what the writers it waited for committed.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'compay.run_settlement() needs the read committed isolation level'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This transaction is %s.', current_setting('transaction_isolation')),
                  HINT = 'Run it in a transaction of its own, or BEGIN ISOLATION LEVEL READ COMMITTED.';
    END IF;
    -- Only closed periods: everything completed before the start of the
    -- period that holds as_of.
    v_cutoff := compay.period_start(period, as_of);
    -- One run at a time, and no payment writer half done: every statement
    -- that writes payments holds this lock shared until it commits
    -- (compay.note_late_payments), so the run waits for them here and
    -- reads all they wrote.  What is written later into a window already
    -- taken is recorded as late (compay.settlement_exceptions) and stamped
    -- by the next run.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.run_settlement'));
    -- This run's window continues the last one's: payments completed in
    -- it are settled without writing them (compay.payment_settlement()
    -- finds each one's settlement by its run, payee, currency and period).
    -- A cutoff at or before the last run's end leaves this one no window
    -- (and no row: a run every minute adds none): it settles late
    -- payments only, whose settlements (run_id NULL) are all stamped.
    SELECT coalesce(max(window_end), '-infinity') INTO v_start FROM compay.settlement_runs;
    IF v_cutoff > v_start THEN
        INSERT INTO compay.settlement_runs (period, window_start, window_end)
        VALUES (period, v_start, v_cutoff) RETURNING id INTO v_run;
    END IF;
    -- Earnings of a job type the payee has an address for (primary or
    -- verification) are settled apart (job_type), to be paid there.
    WITH found AS (
        SELECT p.id, p.to_node, p.currency, p.amount, p.status, p.transfer_id, p.task_id,
               p.completed_at, false AS late
        FROM compay.payments p
        WHERE p.completed_at >= v_start AND p.completed_at < v_cutoff
          AND p.settlement_id IS NULL AND p.status <> 'failed'
          AND NOT EXISTS (SELECT 1 FROM compay.settlement_exceptions x WHERE x.payment_id = p.id)
        UNION ALL
        SELECT p.id, p.to_node, p.currency, p.amount, p.status, p.transfer_id, p.task_id,
               p.completed_at, true
        FROM compay.settlement_exceptions x JOIN compay.payments p ON p.id = x.payment_id
        WHERE p.settlement_id IS NULL AND p.completed_at < v_cutoff
    ), eligible AS (
        -- Joins, not a subquery a payment: one pass over each table.
        SELECT f.id, f.to_node, f.currency, f.amount, f.late,
               compay.period_start(run_settlement.period, f.completed_at) AS ps,
               a.job_type AS jt,
               (f.status = 'completed'
                -- Partly refunded by a dispute before settlement: the rest is the payee's.
                OR (f.status = 'refunded' AND f.amount > coalesce(
                       (SELECT compay.sum(t.amount) FROM compay.transfers t
                        WHERE t.refund_of = f.transfer_id AND t.kind = 'refund'), '0'))) AS ok
        FROM found f
        LEFT JOIN compay.jobs j ON j.task_id = f.task_id
        LEFT JOIN (SELECT DISTINCT node_id, job_type FROM compay.payout_addresses
                   WHERE purpose <> 'operational') a
          ON a.node_id = f.to_node AND a.job_type = j.task_type
    ), kept_out AS (
        -- In the window but not settled now (disputed, refunded): settled,
        -- if ever, by a later run, which stamps it.
        INSERT INTO compay.settlement_exceptions (payment_id, run_id)
        SELECT id, v_run FROM eligible WHERE NOT ok AND NOT late
        ON CONFLICT DO NOTHING
    ), groups AS (
        -- Other currencies than XMR complete at once (what
        -- compay.process_settlement would do: the money moved when each
        -- payment was made); XMR ones are processed below (earmark holds).
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee,
                                        payment_count, total_amount, job_type, run_id,
                                        status, attempts, completed_at)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, to_node, n, total, jt, v_run,
               CASE WHEN currency = 'XMR' THEN 'pending' ELSE 'completed' END::compay.settlement_status,
               CASE WHEN currency = 'XMR' THEN 0 ELSE 1 END,
               CASE WHEN currency <> 'XMR' THEN now() END
        FROM (SELECT ps, currency, to_node, jt, count(*) AS n, compay.sum(amount) AS total
              FROM eligible WHERE ok GROUP BY ps, currency, to_node, jt) g
        ORDER BY ps, to_node, currency, jt NULLS FIRST   -- ids in a stable order
        RETURNING id, period_start, currency, payee, job_type, status
    ), stamped AS (
        -- Only late payments are stamped (few): the window's are found by key.
        UPDATE compay.payments p SET settlement_id = g.id
        FROM eligible e JOIN groups g
          ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.to_node
         AND g.job_type IS NOT DISTINCT FROM e.jt
        WHERE p.id = e.id AND e.ok AND e.late
    )
    SELECT array_agg(id) INTO v_ids FROM groups WHERE status = 'completed';
    DELETE FROM compay.settlement_exceptions x
    USING compay.payments p WHERE p.id = x.payment_id AND p.settlement_id IS NOT NULL;
    -- Verifier rewards: their own settlements (purpose verification), paid
    -- out to the verifier's verification address when it has one.  On a
    -- shard (src/shard.sql), a verifier of another shard is settled there
    -- (compay.clearing_rewards), never here.
    WITH local_votes AS (
        SELECT v.job_id, NULL::integer AS from_shard, NULL::bigint AS event_id, v.verifier,
               j.currency, v.reward_amount AS amount, v.rewarded_at, j.task_type
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.settlement_id IS NULL AND v.reward_amount > '0' AND v.rewarded_at < v_cutoff
          AND NOT EXISTS (SELECT 1 FROM compay.shard_config c
                          WHERE (pg_catalog.hashtext(v.verifier) & (c.partitions - 1)) % c.shards
                                <> c.shard)
        FOR UPDATE OF v
    ), remote_jobs AS (
        SELECT NULL::bigint AS job_id, r.from_shard, r.event_id, r.verifier, r.currency,
               r.reward_amount AS amount, r.rewarded_at, r.job_type AS task_type
        FROM compay.clearing_rewards r
        WHERE r.settlement_id IS NULL AND r.rewarded_at < v_cutoff
        FOR UPDATE
    ), eligible AS (
        SELECT x.job_id, x.from_shard, x.event_id, x.verifier, x.currency, x.amount,
               compay.period_start(run_settlement.period, x.rewarded_at) AS ps,
               CASE WHEN EXISTS (SELECT 1 FROM compay.payout_addresses a
                                 WHERE a.node_id = x.verifier AND a.job_type = x.task_type
                                   AND a.purpose <> 'operational')
                    THEN x.task_type END AS jt
        FROM (SELECT * FROM local_votes UNION ALL SELECT * FROM remote_jobs) x
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                        payment_count, total_amount, job_type, run_id,
                                        status, attempts, completed_at)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, verifier, 'verification', count(*), compay.sum(amount), jt, v_run,
               CASE WHEN currency = 'XMR' THEN 'pending' ELSE 'completed' END::compay.settlement_status,
               CASE WHEN currency = 'XMR' THEN 0 ELSE 1 END,
               CASE WHEN currency <> 'XMR' THEN now() END
        FROM eligible GROUP BY ps, currency, verifier, jt
        ORDER BY ps, verifier, currency, jt NULLS FIRST
        RETURNING id, period_start, currency, payee, job_type, status
    ), stamped AS (
        UPDATE compay.verifications v SET settlement_id = g.id
        FROM eligible e JOIN groups g
          ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
         AND g.job_type IS NOT DISTINCT FROM e.jt
        WHERE v.job_id = e.job_id AND v.verifier = e.verifier
    ), stamped_remote AS (
        UPDATE compay.clearing_rewards r SET settlement_id = g.id
        FROM eligible e JOIN groups g
          ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
         AND g.job_type IS NOT DISTINCT FROM e.jt
        WHERE r.from_shard = e.from_shard AND r.event_id = e.event_id
    )
    SELECT v_ids || array_agg(id) INTO v_ids FROM groups WHERE status = 'completed';
    RETURN QUERY
    SELECT u.id FROM (SELECT unnest(v_ids) AS id
                      UNION ALL
                      SELECT compay.process_due_settlements(as_of)) u
    ORDER BY u.id;
END $$;
COMMENT ON FUNCTION compay.run_settlement(compay.settlement_period, timestamptz) IS
    'gathers completed, unsettled payments of every closed period up to as_of into one settlement per period, currency and payee, and processes them; returns the ids processed';

CREATE FUNCTION compay.retry_settlement(settlement_id bigint) RETURNS compay.settlement_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
BEGIN
    PERFORM compay.require_node(NULL);
    SELECT * INTO s FROM compay.settlements WHERE id = settlement_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'settlement % does not exist', settlement_id USING ERRCODE = 'PY013';
    END IF;
    IF s.status <> 'failed' THEN
        RAISE EXCEPTION 'cannot retry settlement %: it is %', settlement_id, s.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN compay.process_settlement(settlement_id);
END $$;
COMMENT ON FUNCTION compay.retry_settlement(bigint) IS
    'processes a failed settlement again now, whatever its attempts; returns its new status';

CREATE VIEW compay.failed_settlements AS
    SELECT id, period, period_start, currency, payee, payment_count, total_amount, attempts,
           last_error, next_attempt_at,
           attempts >= compay.setting('compay.settlement_max_attempts')::integer AS gave_up
    FROM compay.settlements WHERE status = 'failed';
COMMENT ON VIEW compay.failed_settlements IS
    'failed settlements; gave_up: no more automatic retries, compay.retry_settlement() is needed';
GRANT SELECT ON compay.failed_settlements TO compay_reader;

REVOKE ALL ON FUNCTION compay.process_settlement(bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION compay.process_due_settlements(timestamptz),
    compay.run_settlement(compay.settlement_period, timestamptz),
    compay.retry_settlement(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.process_due_settlements(timestamptz),
    compay.run_settlement(compay.settlement_period, timestamptz) TO compay_app;
GRANT EXECUTE ON FUNCTION compay.retry_settlement(bigint) TO compay_admin;
