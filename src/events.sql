--------------------------------------------------------------------------
-- Events: what applications LISTEN to (channel compay_events) and read
-- back from an append-only outbox after a disconnection.
--
-- Interface (for every emitter, in compay or in an application):
--
--   compay.emit_event(kind text, payload jsonb) RETURNS void
--     Queues one event in the calling transaction: it is published (given
--     its id in compay.events, notified on compay_events) only if and
--     after that transaction commits; a rollback emits nothing.  kind is
--     'family.name' in lower case ('job.state', 'payout.built',
--     'deposit.seen'), at most 64 characters; payload a JSON object of at
--     most 4,000 bytes, amounts as exact text.  Cost on the emitter: one
--     INSERT of a small row.  compay_admin (and compay's own functions,
--     which run as its owner).
--   compay.publish_events(max_events integer DEFAULT 1000) RETURNS bigint
--     Moves up to max_events committed queued events into compay.events,
--     in the order they were emitted, gives each the next id and sends
--     pg_notify('compay_events', {"id", "kind", "at", "payload"}); then
--     deletes published events older than compay.event_retention.  Run by
--     the worker right after each emitting commit; without the worker,
--     from pg_cron.
--   compay.events_since(last_id bigint, max_events integer DEFAULT 1000)
--     Published events with id > last_id, by id: exact for resuming, also
--     on a hot standby (see below).  compay_reader.
--
-- Why ids are exact for resuming.  An id handed out when an event is
-- emitted would follow the emitting transactions' starts, not their
-- commits: a transaction holding id 9 may commit after one holding 10, and
-- a consumer that read 10 and asks for events after 10 would never get 9.
-- So emitters only queue (compay.event_queue), and ids are given when
-- events are published: publishers are serialized by a transaction-level
-- advisory lock held until their commit, and each takes its ids from a
-- sequence after the previous publisher committed.  Every event that
-- becomes visible later therefore has a larger id than every event visible
-- now, and events_since(last_id) misses nothing.  A queued event whose
-- transaction has not committed is invisible to the publisher and simply
-- waits for the next one (no long transaction elsewhere holds back the
-- others).  The events of one object (a job, a payout) come in the order
-- its changes were made: each change locks the object's row, so the next
-- change queues its event after the previous change committed.
--------------------------------------------------------------------------

CREATE SEQUENCE compay.event_queue_id_seq;
CREATE TABLE compay.event_queue (
    id      bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.event_queue_id_seq'),
    at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    kind    text NOT NULL,
    payload jsonb NOT NULL
);
ALTER SEQUENCE compay.event_queue_id_seq OWNED BY compay.event_queue.id;
COMMENT ON TABLE compay.event_queue IS
    'events emitted and not yet published (compay.publish_events moves them to compay.events)';

CREATE SEQUENCE compay.events_id_seq;
CREATE TABLE compay.events (
    id           bigint PRIMARY KEY,
    at           timestamptz NOT NULL,   -- when emitted
    published_at timestamptz NOT NULL,
    kind         text NOT NULL,
    payload      jsonb NOT NULL
);
ALTER SEQUENCE compay.events_id_seq OWNED BY compay.events.id;
CREATE INDEX events_published_at ON compay.events (published_at);
COMMENT ON TABLE compay.events IS
    'published events, append-only, ids in publication order; kept for compay.event_retention';

-- The highest id retention deleted: events_since() from below it would
-- miss events, and says so (PY026).  At most one row.
CREATE TABLE compay.events_deleted (
    only_row boolean PRIMARY KEY DEFAULT true CONSTRAINT events_deleted_one CHECK (only_row),
    through_id bigint NOT NULL
);
COMMENT ON TABLE compay.events_deleted IS
    'the highest event id compay.event_retention deleted';

SELECT pg_catalog.pg_extension_config_dump('compay.event_queue', '');
SELECT pg_catalog.pg_extension_config_dump('compay.event_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.events', '');
SELECT pg_catalog.pg_extension_config_dump('compay.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.events_deleted', '');
REVOKE ALL ON compay.event_queue, compay.event_queue_id_seq, compay.events,
    compay.events_id_seq, compay.events_deleted FROM PUBLIC;
GRANT SELECT ON compay.events, compay.events_deleted TO compay_reader;

CREATE FUNCTION compay.event_wake() RETURNS void
    AS 'MODULE_PATHNAME', 'compay_event_wake' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.event_wake() IS
    'when the calling transaction commits, the worker publishes the events it emitted';
REVOKE ALL ON FUNCTION compay.event_wake() FROM PUBLIC;

CREATE FUNCTION compay.emit_event(kind text, payload jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF kind IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'kind and payload of an event must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(kind) > 64 OR kind !~ '^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$' THEN
        RAISE EXCEPTION 'invalid event kind "%"', left(kind, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An event kind is a family and a name in lower case, such as job.state, of at most 64 characters.';
    END IF;
    IF jsonb_typeof(payload) <> 'object' THEN
        RAISE EXCEPTION 'the payload of an event must be a JSON object, not %', jsonb_typeof(payload)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(payload::text) > 4000 THEN
        RAISE EXCEPTION 'the payload of an event is % bytes, over 4000', octet_length(payload::text)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Put ids in the event and let consumers read the rest from the tables.';
    END IF;
    INSERT INTO compay.event_queue (kind, payload) VALUES (emit_event.kind, emit_event.payload);
    PERFORM compay.event_wake();
END $$;
COMMENT ON FUNCTION compay.emit_event(text, jsonb) IS
    'queues an event, published with its id and notified on compay_events once this transaction commits';
REVOKE ALL ON FUNCTION compay.emit_event(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.emit_event(text, jsonb) TO compay_admin;

CREATE FUNCTION compay.publish_events(max_events integer DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    e          record;
    v_id       bigint;
    v_note     text;
    v_count    bigint := 0;
    v_keep     interval;
    v_deleted  bigint;
BEGIN
    IF max_events IS NULL OR max_events < 1 OR max_events > 100000 THEN
        RAISE EXCEPTION 'max_events must be between 1 and 100000, not %', coalesce(max_events::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot publish events on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'The primary publishes them; events_since() reads them here.';
    END IF;
    IF current_setting('transaction_read_only') = 'on' THEN
        RAISE EXCEPTION 'cannot publish events in a read-only transaction'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    -- One publisher at a time, until its commit: the next one takes its
    -- ids after this one's events are visible (see the header).  Each
    -- statement below takes a new snapshot, after the lock.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.publish_events'));
    FOR e IN SELECT q.id, q.at, q.kind, q.payload FROM compay.event_queue q
             ORDER BY q.id LIMIT max_events LOOP
        v_id := nextval('compay.events_id_seq');
        INSERT INTO compay.events (id, at, published_at, kind, payload)
        VALUES (v_id, e.at, clock_timestamp(), e.kind, e.payload);
        DELETE FROM compay.event_queue WHERE id = e.id;
        -- Under PostgreSQL's 8000 bytes: emit_event caps payloads at 4000.
        v_note := jsonb_build_object('id', v_id, 'kind', e.kind, 'at', e.at, 'payload', e.payload)::text;
        PERFORM pg_notify('compay_events', v_note);
        v_count := v_count + 1;
    END LOOP;

    v_keep := compay.setting('compay.event_retention')::interval;
    IF v_keep > interval '0' THEN
        WITH gone AS (
            DELETE FROM compay.events
            WHERE id IN (SELECT id FROM compay.events
                         WHERE published_at < clock_timestamp() - v_keep
                         ORDER BY id LIMIT 10000)
            RETURNING id)
        SELECT max(id) INTO v_deleted FROM gone;
        IF v_deleted IS NOT NULL THEN
            INSERT INTO compay.events_deleted (through_id) VALUES (v_deleted)
            ON CONFLICT (only_row) DO UPDATE
                SET through_id = greatest(compay.events_deleted.through_id, EXCLUDED.through_id);
        END IF;
    END IF;
    RETURN v_count;
END $$;
COMMENT ON FUNCTION compay.publish_events(integer) IS
    'publishes up to max_events committed queued events (ids, notifications on compay_events) and applies compay.event_retention';
REVOKE ALL ON FUNCTION compay.publish_events(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.publish_events(integer) TO compay_app;

CREATE FUNCTION compay.events_since(last_id bigint, max_events integer DEFAULT 1000)
RETURNS TABLE (id bigint, at timestamptz, kind text, payload jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_through bigint;
BEGIN
    IF last_id IS NULL THEN
        RAISE EXCEPTION 'last_id must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Start with 0 for every event still kept.';
    END IF;
    IF last_id < 0 THEN
        RAISE EXCEPTION 'last_id must be 0 or more, not %', last_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_events IS NULL OR max_events < 1 OR max_events > 100000 THEN
        RAISE EXCEPTION 'max_events must be between 1 and 100000, not %', coalesce(max_events::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A STABLE function reads with one snapshot: the events and the
    -- retention mark below agree.
    RETURN QUERY
    SELECT e.id, e.at, e.kind, e.payload FROM compay.events e
    WHERE e.id > last_id ORDER BY e.id LIMIT max_events;
    SELECT d.through_id INTO v_through FROM compay.events_deleted d;
    IF last_id < v_through THEN
        RAISE EXCEPTION 'events after % were deleted by retention', last_id
            USING ERRCODE = 'PY026',
                  DETAIL = format('Events up to id %s are gone (compay.event_retention is %s).',
                                  v_through, compay.setting('compay.event_retention')),
                  HINT = format('Read the current state from the tables, then resume with events_since(%s).', v_through);
    END IF;
END $$;
COMMENT ON FUNCTION compay.events_since(bigint, integer) IS
    'published events after last_id, by id, at most max_events: what a consumer missed while disconnected';
REVOKE ALL ON FUNCTION compay.events_since(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.events_since(bigint, integer) TO compay_reader;

--------------------------------------------------------------------------
-- What compay emits.  Triggers on the owning tables, so that every change
-- is emitted whichever function makes it; each adds one queued row.
--------------------------------------------------------------------------

-- job.state: every job's first state and each change of it.  Only rows
-- this transaction created emit on INSERT (created_at is now()): a
-- restore (pg_restore COPYs the rows back) or a bulk load of earlier rows
-- emits nothing.  A restore fires no UPDATE trigger.
CREATE FUNCTION compay.jobs_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.emit_event('job.state', jsonb_build_object(
        'job_id', NEW.id, 'task_id', NEW.task_id, 'requester', NEW.requester,
        'provider', NEW.provider, 'task_type', NEW.task_type, 'currency', NEW.currency,
        'status', NEW.status,
        'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status::text END,
        'amount', NEW.amount::text, 'payment_id', NEW.payment_id));
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_emit_insert AFTER INSERT ON compay.jobs
    FOR EACH ROW WHEN (NEW.created_at = pg_catalog.now())
    EXECUTE FUNCTION compay.jobs_emit_event();
CREATE TRIGGER jobs_emit_status AFTER UPDATE OF status ON compay.jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION compay.jobs_emit_event();

-- payment.completed: a payment that reached completed.
CREATE FUNCTION compay.payments_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.emit_event('payment.completed', jsonb_build_object(
        'payment_id', NEW.id, 'task_id', NEW.task_id, 'from_node', NEW.from_node,
        'to_node', NEW.to_node, 'amount', NEW.amount::text, 'currency', NEW.currency,
        'method', NEW.method, 'transfer_id', NEW.transfer_id));
    RETURN NULL;
END $$;
CREATE TRIGGER payments_emit_insert AFTER INSERT ON compay.payments
    FOR EACH ROW WHEN (NEW.status = 'completed' AND NEW.created_at = pg_catalog.now())
    EXECUTE FUNCTION compay.payments_emit_event();
CREATE TRIGGER payments_emit_status AFTER UPDATE OF status ON compay.payments
    FOR EACH ROW WHEN (NEW.status = 'completed' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION compay.payments_emit_event();

-- payout.built, payout.relayed, payout.confirmed, payout.failed: a payout
-- transaction reaching that state (queued is not an event).
CREATE FUNCTION compay.payouts_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.emit_event('payout.' || NEW.status::text, jsonb_build_object(
        'payout_id', NEW.id, 'status', NEW.status, 'previous_status', OLD.status,
        'amount', NEW.amount::text, 'fee', NEW.fee::text, 'tx_hash', NEW.tx_hash,
        'confirmations', NEW.confirmations, 'last_error', NEW.last_error,
        'nodes', (SELECT jsonb_agg(DISTINCT i.node_id) FROM compay.payout_items i
                  WHERE i.payout_id = NEW.id)));
    RETURN NULL;
END $$;
CREATE TRIGGER payouts_emit_status AFTER UPDATE OF status ON compay.payout_transactions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'queued')
    EXECUTE FUNCTION compay.payouts_emit_event();

REVOKE ALL ON FUNCTION compay.jobs_emit_event(), compay.payments_emit_event(),
    compay.payouts_emit_event() FROM PUBLIC;
