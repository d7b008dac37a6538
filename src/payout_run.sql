--------------------------------------------------------------------------
-- How payouts and deposits run (src/payout_run.c): the procedures that run
-- them without the worker (pg_cron), what each runner did last and the
-- wallet health it saw, and the worker's status view with that health.
--------------------------------------------------------------------------

CREATE PROCEDURE compay.run_payouts()
    AS 'MODULE_PATHNAME', 'compay_run_payouts' LANGUAGE C;
COMMENT ON PROCEDURE compay.run_payouts() IS
    'one payout round (queue, build, relay, confirm), committing after each step; not inside a transaction block (2D000); returns at once when another runner holds its lock (superuser only)';
CREATE PROCEDURE compay.poll_deposits()
    AS 'MODULE_PATHNAME', 'compay_poll_deposits' LANGUAGE C;
COMMENT ON PROCEDURE compay.poll_deposits() IS
    'one deposit poll (read the wallet, credit new deposits), committing after each step; not inside a transaction block (2D000); returns at once when another runner holds its lock (superuser only)';
REVOKE ALL ON PROCEDURE compay.run_payouts(), compay.poll_deposits() FROM PUBLIC;

CREATE TABLE compay.runner_status (
    runner              text PRIMARY KEY
                        CONSTRAINT runner_status_runner
                        CHECK (runner IN ('worker', 'run_payouts', 'poll_deposits')),
    state               text NOT NULL,
    pid                 integer,
    started_at          timestamptz,
    finished_at         timestamptz,
    moved               bigint,
    skipped             bigint NOT NULL DEFAULT 0,
    last_skipped_at     timestamptz,
    last_error          text,
    last_error_at       timestamptz,
    wallet_error        text,
    wallet_error_at     timestamptz,
    wallet_height       bigint,
    daemon_height       bigint,
    unlocked_balance    compay.credit,
    queued_payouts      compay.credit,
    oldest_stuck_payout bigint,
    oldest_stuck_reason text,
    health_at           timestamptz
);
COMMENT ON TABLE compay.runner_status IS
    'what each runner of payouts and deposits (the worker, CALL compay.run_payouts(), CALL compay.poll_deposits()) did last, and the wallet health it saw';
SELECT pg_catalog.pg_extension_config_dump('compay.runner_status', '');
REVOKE ALL ON compay.runner_status FROM PUBLIC;
GRANT SELECT ON compay.runner_status TO compay_reader;

CREATE FUNCTION compay.record_runner_start(runner text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    INSERT INTO compay.runner_status AS s (runner, state, pid, started_at)
    VALUES (record_runner_start.runner, 'running', pg_backend_pid(), now())
    ON CONFLICT (runner) DO UPDATE
    SET state = 'running', pid = excluded.pid, started_at = excluded.started_at,
        finished_at = NULL, moved = NULL
$$;

CREATE FUNCTION compay.record_runner_skipped(runner text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    INSERT INTO compay.runner_status AS s (runner, state, skipped, last_skipped_at)
    VALUES (record_runner_skipped.runner, 'never run', 1, now())
    ON CONFLICT (runner) DO UPDATE
    SET skipped = s.skipped + 1, last_skipped_at = excluded.last_skipped_at
$$;

CREATE FUNCTION compay.record_runner_failed(runner text, message text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    INSERT INTO compay.runner_status AS s (runner, state, finished_at, last_error, last_error_at)
    VALUES (record_runner_failed.runner, 'failed', now(), message, now())
    ON CONFLICT (runner) DO UPDATE
    SET state = 'failed', finished_at = excluded.finished_at, last_error = excluded.last_error,
        last_error_at = excluded.last_error_at
$$;

-- What the wallet's unlocked balance must cover: the payouts queued or
-- built (a built transaction that is not relayed reserves nothing in the
-- wallet).  The oldest stuck payout: the oldest open one with an error
-- recorded, or the first queued or built one the unlocked balance does
-- not cover (with those before it).  Shared by the runners' health and
-- compay.diagnose().
CREATE FUNCTION compay.payout_health(unlocked compay.credit, OUT queued compay.credit,
    OUT stuck_payout bigint, OUT stuck_reason text)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT (SELECT coalesce(compay.sum(amount), '0') FROM compay.payout_transactions
            WHERE status IN ('queued', 'built')),
           s.id, s.reason
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (
        SELECT p.id, CASE WHEN p.last_error IS NOT NULL THEN p.last_error
                          ELSE format('the wallet''s unlocked balance (%s XMR) does not cover it: %s XMR are queued up to it',
                                      unlocked, p.upto) END AS reason
        FROM (SELECT t.id, t.status, t.last_error,
                     compay.sum(t.amount) FILTER (WHERE t.status IN ('queued', 'built'))
                         OVER (ORDER BY t.id) AS upto
              FROM compay.payout_transactions t
              WHERE t.status IN ('queued', 'built', 'relayed')) p
        WHERE p.last_error IS NOT NULL
           OR (p.status IN ('queued', 'built') AND unlocked IS NOT NULL AND p.upto > unlocked)
        ORDER BY p.id LIMIT 1) s ON true
$$;
COMMENT ON FUNCTION compay.payout_health(compay.credit) IS
    'what the unlocked balance must cover (payouts queued or built) and the oldest stuck payout with its reason';

CREATE FUNCTION compay.record_runner_status(runner text, health jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    unlocked compay.credit := compay.credit_from_atomic((health->>'unlocked_atomic')::numeric);
    queued compay.credit;
    stuck_id bigint;
    stuck_reason text;
BEGIN
    SELECT h.queued, h.stuck_payout, h.stuck_reason INTO queued, stuck_id, stuck_reason
    FROM compay.payout_health(unlocked) h;
    INSERT INTO compay.runner_status AS s (runner, state) VALUES (record_runner_status.runner, 'done')
    ON CONFLICT ON CONSTRAINT runner_status_pkey DO NOTHING;
    UPDATE compay.runner_status AS s
    SET state = health->>'state',
        finished_at = now(),
        moved = (health->>'moved')::bigint,
        last_error = coalesce(health->>'error', s.last_error),
        last_error_at = CASE WHEN health->>'error' IS NULL THEN s.last_error_at ELSE now() END,
        wallet_error = coalesce(health->>'wallet_error', s.wallet_error),
        wallet_error_at = coalesce((health->>'wallet_error_at')::timestamptz, s.wallet_error_at),
        wallet_height = (health->>'wallet_height')::bigint,
        daemon_height = (health->>'daemon_height')::bigint,
        unlocked_balance = unlocked,
        queued_payouts = queued,
        oldest_stuck_payout = stuck_id,
        oldest_stuck_reason = stuck_reason,
        health_at = now()
    WHERE s.runner = record_runner_status.runner;
END
$$;
COMMENT ON FUNCTION compay.record_runner_status(text, jsonb) IS
    'records a runner''s outcome and the wallet health it saw (called by the worker and the procedures)';
REVOKE ALL ON FUNCTION compay.payout_health(compay.credit) FROM PUBLIC;
REVOKE ALL ON FUNCTION compay.record_runner_start(text), compay.record_runner_skipped(text),
    compay.record_runner_failed(text, text), compay.record_runner_status(text, jsonb) FROM PUBLIC;

CREATE VIEW compay.worker_status AS
SELECT w.*, r.wallet_error, r.wallet_error_at, r.wallet_height, r.daemon_height,
       r.unlocked_balance, r.queued_payouts, r.oldest_stuck_payout, r.oldest_stuck_reason,
       r.health_at
FROM compay.worker_status() w
LEFT JOIN compay.runner_status r ON r.runner = 'worker';
COMMENT ON VIEW compay.worker_status IS
    'the settlement worker: state, last round, next settlement, what the last round did, last error, and the wallet health it saw last';
GRANT SELECT ON compay.worker_status TO compay_reader;
