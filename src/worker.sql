--------------------------------------------------------------------------
-- The background worker (src/worker.c): its wake-up and its status.
--------------------------------------------------------------------------

CREATE FUNCTION compay.wake_worker() RETURNS void
    AS 'MODULE_PATHNAME', 'compay_wake_worker' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.wake_worker() IS
    'when the calling transaction commits, the settlement worker runs a round at once, settlement included';
CREATE FUNCTION compay.worker_status(OUT state text, OUT pid integer,
    OUT last_round_start timestamptz, OUT last_round_end timestamptz,
    OUT next_settlement_due timestamptz, OUT rounds bigint, OUT holds_expired bigint,
    OUT jobs_expired bigint, OUT settlements_processed bigint,
    OUT last_error text, OUT last_error_at timestamptz)
    AS 'MODULE_PATHNAME', 'compay_worker_status' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION compay.wake_worker(), compay.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.wake_worker() TO compay_app;
GRANT EXECUTE ON FUNCTION compay.worker_status() TO compay_reader;
-- The view compay.worker_status, with the wallet health, is in payout_run.sql.
