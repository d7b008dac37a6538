--------------------------------------------------------------------------
-- Shards (docs/scaling.md).  A database configured by
-- compay.shard_configure() is one shard of several behind a router
-- (extension compay_router, PL/Proxy): it holds the accounts of the nodes
-- that hash to it.  A payment to a node on another shard N credits the
-- system account '$clearing:N' here and queues a PgQ event in the same
-- transaction (shard.c, compay.clearing_queue); compay.clearing_consume()
-- on shard N applies it there from its '$clearing:<this shard>', exactly
-- once by (source shard, event id).  PgQ (extension pgq) and dblink are
-- needed only by a shard: a database never configured is no shard, and
-- every call behaves as on a single server.
--------------------------------------------------------------------------

CREATE TABLE compay.shard_config (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    shard         integer NOT NULL,
    shards        integer NOT NULL,
    partitions    integer NOT NULL,
    connstrs      text[] NOT NULL,
    configured_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT shard_config_range CHECK (shard >= 0 AND shard < shards
        AND partitions >= shards AND (partitions & (partitions - 1)) = 0
        AND pg_catalog.array_length(connstrs, 1) = shards)
);
COMMENT ON TABLE compay.shard_config IS
    'this database''s place among the shards: one row once compay.shard_configure() ran';

CREATE TABLE compay.clearing_sent (
    transfer_id bigint PRIMARY KEY,
    to_shard    integer NOT NULL,
    payee       text NOT NULL,
    amount      compay.credit NOT NULL,
    currency    text NOT NULL,
    event_id    bigint NOT NULL,
    txid        bigint NOT NULL DEFAULT pg_catalog.txid_current(),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX clearing_sent_to_shard ON compay.clearing_sent (to_shard, event_id);
COMMENT ON TABLE compay.clearing_sent IS
    'payments to nodes on other shards: the transfer into $clearing:<to_shard> and its PgQ event';

CREATE TABLE compay.clearing_applied (
    from_shard  integer NOT NULL,
    event_id    bigint NOT NULL,
    source_transfer_id bigint NOT NULL,
    transfer_id bigint,
    payee       text NOT NULL,
    amount      compay.credit NOT NULL,
    currency    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (from_shard, event_id),
    -- A source transfer is credited once, whatever event carries it.
    CONSTRAINT clearing_applied_source UNIQUE (from_shard, source_transfer_id)
);
COMMENT ON TABLE compay.clearing_applied IS
    'credits applied here from other shards'' clearing events, one row per (source shard, event id)';

-- An XMR payment to a node on another shard moves there with its credit
-- (compay.clearing_queue, compay.clearing_apply): the payee's shard
-- records, settles and pays it out.  payment_id: the payment the event
-- carries, whose row this shard deletes once it completed.
ALTER TABLE compay.clearing_sent ADD COLUMN payment_id bigint;
CREATE INDEX clearing_sent_payment ON compay.clearing_sent (payment_id) WHERE payment_id IS NOT NULL;

-- An XMR verifier reward to a verifier on another shard moves there too:
-- the job's shard keeps the vote (compay.verifications) but never settles
-- it (compay.run_settlement skips remote verifiers); the verifier's shard
-- records the reward here, once per event, and settles and pays it out
-- (a settlement of purpose verification, as for a local vote).
CREATE TABLE compay.clearing_rewards (
    from_shard     integer NOT NULL,        -- the job's shard
    event_id       bigint NOT NULL,         -- its clearing event
    task_id        text NOT NULL,           -- the job's task (on from_shard)
    job_type       text,                    -- the job's task type
    verifier       text NOT NULL,
    currency       text NOT NULL,
    reward_amount  compay.credit NOT NULL,
    rewarded_at    timestamptz NOT NULL,
    transfer_id    bigint NOT NULL,         -- the credit here
    settlement_id  bigint,                  -- the settlement that gathered the reward
    PRIMARY KEY (from_shard, event_id),
    CONSTRAINT clearing_rewards_amount CHECK (reward_amount > '0')
);
CREATE INDEX clearing_rewards_unsettled ON compay.clearing_rewards (rewarded_at)
    WHERE settlement_id IS NULL;
CREATE INDEX clearing_rewards_settlement ON compay.clearing_rewards (settlement_id)
    WHERE settlement_id IS NOT NULL;
COMMENT ON TABLE compay.clearing_rewards IS
    'XMR verifier rewards of jobs on other shards, credited here by clearing and settled here';

SELECT pg_catalog.pg_extension_config_dump('compay.shard_config', '');
SELECT pg_catalog.pg_extension_config_dump('compay.clearing_sent', '');
SELECT pg_catalog.pg_extension_config_dump('compay.clearing_applied', '');
SELECT pg_catalog.pg_extension_config_dump('compay.clearing_rewards', '');
REVOKE ALL ON compay.shard_config, compay.clearing_sent, compay.clearing_applied,
    compay.clearing_rewards FROM PUBLIC;
GRANT SELECT ON compay.clearing_rewards TO compay_reader;
-- Not connstrs: its connection strings may hold passwords.
GRANT SELECT (singleton, shard, shards, partitions, configured_at) ON compay.shard_config
    TO compay_reader;
GRANT SELECT ON compay.clearing_sent, compay.clearing_applied TO compay_reader;

CREATE FUNCTION compay.shard_config_changed() RETURNS void
    AS 'MODULE_PATHNAME', 'compay_shard_config_changed' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.shard_config_changed() IS
    'makes every backend read compay.shard_config again; compay.shard_configure() calls it';
REVOKE ALL ON FUNCTION compay.shard_config_changed() FROM PUBLIC;

-- The one row of compay.shard_config, or PY036.
CREATE FUNCTION compay.shard_require() RETURNS compay.shard_config
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config;
BEGIN
    SELECT * INTO c FROM compay.shard_config;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this database is not a compay shard' USING ERRCODE = 'PY036',
              DETAIL = 'compay.shard_config has no row.',
              HINT = 'Run compay.shard_configure(shard, connstrs, partitions) on every shard first.';
    END IF;
    RETURN c;
END $$;
REVOKE ALL ON FUNCTION compay.shard_require() FROM PUBLIC;

CREATE FUNCTION compay.shard_of(node_id text) RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN (pg_catalog.hashtext(node_id) & (c.partitions - 1)) % c.shards;
END $$;
COMMENT ON FUNCTION compay.shard_of(text) IS
    'the shard that owns node_id: (hashtext(node_id) & (partitions - 1)) % shards, the partition PL/Proxy''s RUN ON hashtext(node_id) picks';

CREATE FUNCTION compay.shard_configure(shard integer, connstrs text[], partitions integer DEFAULT 8)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_shards integer := pg_catalog.array_length(connstrs, 1);
    v_old compay.shard_config;
    v_stray text;
    v_start bigint;
    v_table text;
BEGIN
    PERFORM compay.require_node(NULL);
    IF shard IS NULL OR connstrs IS NULL OR partitions IS NULL THEN
        RAISE EXCEPTION 'shard, connstrs and partitions must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_shards IS NULL OR pg_catalog.array_position(connstrs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'connstrs must list one connection string per shard'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An empty array or a NULL element names no shard.';
    END IF;
    IF shard < 0 OR shard >= v_shards THEN
        RAISE EXCEPTION 'shard % is not one of the % shards connstrs lists', shard, v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Shards are numbered from 0, in the order of connstrs.';
    END IF;
    IF partitions < v_shards OR partitions > 65536 OR (partitions & (partitions - 1)) <> 0 THEN
        RAISE EXCEPTION 'partitions must be a power of two from the number of shards (%) up to 65536', v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('%s partitions were asked for.', partitions),
                  HINT = 'PL/Proxy maps hashtext(node_id) & (partitions - 1) to a partition.';
    END IF;
    -- The lock first: on a standby this is the read-only error.
    SELECT * INTO v_old FROM compay.shard_config FOR UPDATE;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgq')
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        RAISE EXCEPTION 'a compay shard needs the extensions pgq and dblink' USING ERRCODE = 'PY036',
              DETAIL = 'Cross-shard payments are PgQ events, which the payee''s shard reads with dblink.',
              HINT = 'CREATE EXTENSION pgq; CREATE EXTENSION dblink; (Debian: postgresql-15-pgq3), and run pgqd.';
    END IF;
    IF v_old.shard IS NOT NULL AND (v_old.shard, v_old.shards, v_old.partitions) IS DISTINCT FROM
                 (shard, v_shards, partitions) THEN
        RAISE EXCEPTION 'this database is already shard % of % with % partitions',
                        v_old.shard, v_old.shards, v_old.partitions
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Moving partitions between shards is not supported yet.',
                  HINT = 'Call it again with the same shard, shard count and partitions to change connection strings only.';
    END IF;
    -- Every account here must be one this shard owns.
    SELECT a.node_id INTO v_stray FROM compay.accounts a
    WHERE a.node_id NOT LIKE '$%'
      AND (pg_catalog.hashtext(a.node_id) & (partitions - 1)) % v_shards <> shard
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'node "%" has an account here but would live on shard %', v_stray,
                        (pg_catalog.hashtext(v_stray) & (partitions - 1)) % v_shards
            USING ERRCODE = 'PY037',
                  DETAIL = 'A shard holds only the accounts of the nodes that hash to it.',
                  HINT = 'Configure an empty database, or one whose nodes all hash to this shard.';
    END IF;
    INSERT INTO compay.shard_config (shard, shards, partitions, connstrs)
    VALUES (shard, v_shards, partitions, connstrs)
    ON CONFLICT (singleton) DO UPDATE SET connstrs = EXCLUDED.connstrs, configured_at = pg_catalog.now();
    -- Hold and transfer ids name their shard: id & (partitions - 1) = shard,
    -- so the router runs capture(hold_id) and refund(transfer_id) there.
    -- Payment ids too: an XMR payment moved to the payee's shard keeps its
    -- id there (compay.clearing_apply), which no other shard hands out.
    -- Set again on every call, which repairs a sequence altered by hand
    -- (the ledger refuses an id that does not name this shard); past both
    -- the table's ids and the sequence's, so no id is drawn twice.
    FOREACH v_table IN ARRAY ARRAY['payments', 'holds', 'transfers'] LOOP
        EXECUTE pg_catalog.format('SELECT GREATEST((SELECT pg_catalog.max(id) FROM compay.%I), '
                                  '(SELECT last_value FROM compay.%I))', v_table, v_table || '_id_seq')
            INTO v_start;
        v_start := (coalesce(v_start, 0) / partitions + 1) * partitions + shard;
        EXECUTE pg_catalog.format('ALTER SEQUENCE compay.%I INCREMENT BY %s RESTART WITH %s',
                                  v_table || '_id_seq', partitions, v_start);
    END LOOP;
    -- One outgoing queue per peer, read by the peer's consumer.
    FOR i IN 0 .. v_shards - 1 LOOP
        CONTINUE WHEN i = shard;
        IF NOT EXISTS (SELECT FROM pgq.get_queue_info() q
                       WHERE q.queue_name = 'compay_clearing_to_' || i) THEN
            PERFORM pgq.create_queue('compay_clearing_to_' || i);
        END IF;
        PERFORM pgq.register_consumer('compay_clearing_to_' || i, 'compay_clearing');
    END LOOP;
    PERFORM compay.shard_config_changed();
END $$;
COMMENT ON FUNCTION compay.shard_configure(integer, text[], integer) IS
    'makes this database shard number shard (from 0) of the shards connstrs lists, with partitions (a power of two) mapped to shards as partition % shards; creates the PgQ queues of outgoing clearing events and registers their consumer';

-- The payer's half of a cross-shard payment: called by the ledger's C
-- (shard.c) in the payment's transaction.
CREATE FUNCTION compay.clearing_queue(to_shard integer, transfer_id bigint, payee text,
    amount compay.credit, currency text, reference text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_event bigint;
    v_data jsonb := pg_catalog.jsonb_build_object('transfer_id', transfer_id, 'payee', payee,
            'amount', amount::text, 'currency', currency, 'reference', reference);
    p compay.payments;
BEGIN
    -- The XMR payment this credit pays (a task payment 'payment:<id>', a
    -- verified job's provider 'job:<task id>'), still processing in this
    -- transaction: the event carries it, the payee's shard records it, and
    -- compay.clearing_payment_moved() deletes it here once it completed.
    IF currency = 'XMR' AND reference ~ '^payment:[0-9]+$' THEN
        SELECT * INTO p FROM compay.payments y
        WHERE y.id = pg_catalog.substr(reference, 9)::bigint;
    ELSIF currency = 'XMR' AND reference LIKE 'job:%' THEN
        SELECT * INTO p FROM compay.payments y
        WHERE y.task_id = pg_catalog.substr(reference, 5) AND y.status = 'processing'
          AND (y.metadata -> 'shortfall_id') IS NULL;
    END IF;
    IF p.id IS NOT NULL AND p.to_node = payee AND p.status = 'processing' AND p.amount = amount
       AND p.currency = currency THEN
        v_data := v_data || pg_catalog.jsonb_build_object('payment', pg_catalog.jsonb_build_object(
            'id', p.id, 'kind', 'payment', 'task_id', p.task_id, 'from_node', p.from_node,
            'amount', p.amount::text, 'currency', p.currency, 'method', p.method,
            'created_at', p.created_at, 'completed_at', pg_catalog.now(),
            'resource_metrics', p.resource_metrics, 'metadata', p.metadata,
            'source_shard', (compay.shard_require()).shard, 'source_payment_id', p.id));
    ELSE
        p.id := NULL;
        -- A verifier's reward of an XMR job (reference 'job:<task id>'):
        -- the event names it, the verifier's shard records and settles it.
        IF currency = 'XMR' AND reference LIKE 'job:%' THEN
            v_data := v_data || coalesce((
                SELECT pg_catalog.jsonb_build_object('reward', pg_catalog.jsonb_build_object(
                           'task_id', j.task_id, 'job_type', j.task_type,
                           'rewarded_at', pg_catalog.now()))
                FROM compay.jobs j JOIN compay.verifications v ON v.job_id = j.id
                WHERE j.task_id = pg_catalog.substr(reference, 5) AND v.verifier = payee), '{}');
        END IF;
    END IF;
    v_event := pgq.insert_event('compay_clearing_to_' || to_shard, 'credit', v_data::text);
    INSERT INTO compay.clearing_sent (transfer_id, to_shard, payee, amount, currency, event_id,
                                      payment_id)
    VALUES (transfer_id, to_shard, payee, amount, currency, v_event, p.id);
    RETURN v_event;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_queue(integer, bigint, text, compay.credit, text, text)
    FROM PUBLIC;

-- The payer's row of an XMR payment that moved to the payee's shard goes
-- once it completed (its last write here): the payee's shard holds it,
-- under the same id, and settles it; this shard keeps the transfer into
-- $clearing:N, the clearing_sent row naming the payment, and the job's
-- payment_id (a reference to the payment on the payee's shard).
CREATE FUNCTION compay.clearing_payment_moved() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM compay.clearing_sent s
               WHERE s.payment_id = NEW.id AND s.transfer_id = NEW.transfer_id) THEN
        DELETE FROM compay.payments WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_payment_moved() FROM PUBLIC;
CREATE TRIGGER payments_clearing_moved AFTER UPDATE OF status ON compay.payments
    FOR EACH ROW WHEN (NEW.status = 'completed' AND NEW.currency = 'XMR'
                       AND OLD.status = 'processing')
    EXECUTE FUNCTION compay.clearing_payment_moved();

CREATE FUNCTION compay.clearing_credit(from_shard integer, payee text, amount compay.credit,
    currency text, reference text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_clearing_credit' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.clearing_credit(integer, text, compay.credit, text, text) IS
    'credits payee from $clearing:<from_shard>: the payee''s half of a cross-shard payment (compay.clearing_apply makes it once per event)';
REVOKE ALL ON FUNCTION compay.clearing_credit(integer, text, compay.credit, text, text) FROM PUBLIC;

-- The payee's half: one event of from_shard, applied once.
CREATE FUNCTION compay.clearing_apply(from_shard integer, event_id bigint, event_type text,
    event_data text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    e jsonb := event_data::jsonb;
    v_transfer bigint;
    v_seen compay.clearing_applied;
BEGIN
    IF event_type IS DISTINCT FROM 'credit' THEN
        RAISE EXCEPTION 'clearing event % of shard % has unknown type %', event_id, from_shard, event_type
            USING ERRCODE = 'PY037';
    END IF;
    IF compay.shard_of(e->>'payee') <> c.shard THEN
        RAISE EXCEPTION 'clearing event % of shard % pays node "%", which is not on shard %',
                        event_id, from_shard, e->>'payee', c.shard
            USING ERRCODE = 'PY037',
                  HINT = 'Every shard must be configured with the same connstrs and partitions.';
    END IF;
    INSERT INTO compay.clearing_applied (from_shard, event_id, source_transfer_id, payee,
                                         amount, currency)
    VALUES (from_shard, event_id, (e->>'transfer_id')::bigint, e->>'payee',
            (e->>'amount')::compay.credit, e->>'currency')
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        -- Applied before (a batch seen again): the same event, or its
        -- source transfer under another event id (a no-op too).  The same
        -- event id with other contents is a peer whose queue was remade.
        SELECT * INTO v_seen FROM compay.clearing_applied a
        WHERE a.from_shard = clearing_apply.from_shard AND a.event_id = clearing_apply.event_id;
        IF FOUND AND (v_seen.payee, v_seen.amount, v_seen.currency, v_seen.source_transfer_id)
                     IS DISTINCT FROM (e->>'payee', (e->>'amount')::compay.credit, e->>'currency',
                                       (e->>'transfer_id')::bigint) THEN
            RAISE EXCEPTION 'clearing event % of shard % differs from the one applied under that id',
                            event_id, from_shard
                USING ERRCODE = 'PY037',
                      DETAIL = pg_catalog.format('Applied: transfer %s, %s %s to "%s"; now: transfer %s, %s %s to "%s".',
                          v_seen.source_transfer_id, v_seen.amount, v_seen.currency, v_seen.payee,
                          e->>'transfer_id', e->>'amount', e->>'currency', e->>'payee'),
                      HINT = 'The peer''s PgQ queue was recreated or the shards'' connstrs disagree: stop its consumer and compare compay.clearing_sent there with compay.clearing_applied here.';
        END IF;
        RETURN false;
    END IF;
    v_transfer := compay.clearing_credit(from_shard, e->>'payee', (e->>'amount')::compay.credit,
                                         e->>'currency', e->>'reference');
    UPDATE compay.clearing_applied a SET transfer_id = v_transfer
    WHERE a.from_shard = clearing_apply.from_shard AND a.event_id = clearing_apply.event_id;
    -- An XMR payment that moved here with its credit: recorded completed,
    -- under its id, its transfer the credit; settled and paid out here.
    IF e ? 'payment' THEN
        INSERT INTO compay.payments (id, task_id, from_node, to_node, amount, currency, method,
                                     status, resource_metrics, created_at, completed_at,
                                     transfer_id, metadata)
        SELECT (m->>'id')::bigint, m->>'task_id', m->>'from_node', e->>'payee',
               (m->>'amount')::compay.credit, m->>'currency',
               (m->>'method')::compay.payment_method, 'completed',
               CASE WHEN pg_catalog.jsonb_typeof(m->'resource_metrics') = 'object' THEN
                    pg_catalog.jsonb_populate_record(NULL::compay.resource_metrics,
                                                     m->'resource_metrics') END,
               (m->>'created_at')::timestamptz, (m->>'completed_at')::timestamptz, v_transfer,
               (m->'metadata') || pg_catalog.jsonb_build_object(
                   'source_shard', from_shard, 'source_payment_id', (m->>'id')::bigint,
                   'source_transfer_id', (e->>'transfer_id')::bigint, 'clearing_event_id', event_id)
        FROM (SELECT e->'payment' AS m) x;
    END IF;
    -- An XMR verifier reward of a job on from_shard: settled here.
    IF e ? 'reward' AND (e->>'amount')::compay.credit > '0' THEN
        INSERT INTO compay.clearing_rewards (from_shard, event_id, task_id, job_type, verifier,
                                             currency, reward_amount, rewarded_at, transfer_id)
        VALUES (from_shard, event_id, e->'reward'->>'task_id', e->'reward'->>'job_type',
                e->>'payee', e->>'currency', (e->>'amount')::compay.credit,
                (e->'reward'->>'rewarded_at')::timestamptz, v_transfer);
    END IF;
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_apply(integer, bigint, text, text) FROM PUBLIC;

-- The next batch of peer's queue for this shard, over dblink; a peer that
-- cannot be reached gives no batch (a warning), so one shard down does not
-- stop the others' clearing.
CREATE FUNCTION compay.clearing_fetch(peer integer, OUT batch_id bigint, OUT events jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    v_conn text := 'compay_clearing_' || peer;
    v_schema name := (SELECT n.nspname FROM pg_catalog.pg_extension x
                      JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
                      WHERE x.extname = 'dblink');
BEGIN
    BEGIN
        IF NOT v_conn = ANY (coalesce(compay.clearing_dblink(v_schema, 'dblink_get_connections()'), '{}')) THEN
            EXECUTE pg_catalog.format('SELECT %I.dblink_connect($1, $2)', v_schema)
                USING v_conn, c.connstrs[peer + 1];
        END IF;
        EXECUTE pg_catalog.format('SELECT b FROM %I.dblink($1, $2) AS t(b bigint)', v_schema)
            INTO batch_id
            USING v_conn, pg_catalog.format('SELECT pgq.next_batch(%L, %L)',
                                            'compay_clearing_to_' || c.shard, 'compay_clearing');
        IF batch_id IS NOT NULL THEN
            EXECUTE pg_catalog.format(
                'SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(''id'', ev_id, ''type'', ev_type, ''data'', ev_data) ORDER BY ev_id), ''[]'')
                 FROM %I.dblink($1, $2) AS t(ev_id bigint, ev_type text, ev_data text)', v_schema)
                INTO events
                USING v_conn, pg_catalog.format(
                    'SELECT ev_id, ev_type, ev_data FROM pgq.get_batch_events(%s)', batch_id);
        END IF;
    -- Only remote reads above: any failure (unreachable, restarting,
    -- crashed mid-query) means no batch this round.
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'clearing: no batch from shard %: % (%)', peer, SQLERRM, SQLSTATE;
        BEGIN
            EXECUTE pg_catalog.format('SELECT %I.dblink_disconnect($1)', v_schema) USING v_conn;
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
        batch_id := NULL;
        events := NULL;
    END;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_fetch(integer) FROM PUBLIC;

CREATE FUNCTION compay.clearing_dblink(dblink_schema name, call text) RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v text[];
BEGIN
    EXECUTE pg_catalog.format('SELECT %I.%s', dblink_schema, call) INTO v;
    RETURN v;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_dblink(name, text) FROM PUBLIC;

-- Tells peer the batch is done (after the local commit); an unreachable
-- peer keeps the batch and gives it again: its events are then no-ops.
CREATE FUNCTION compay.clearing_finish(peer integer, batch_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    v_schema name := (SELECT n.nspname FROM pg_catalog.pg_extension x
                      JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
                      WHERE x.extname = 'dblink');
BEGIN
    EXECUTE pg_catalog.format('SELECT 1 FROM %I.dblink($1, $2) AS t(r integer)', v_schema)
        USING 'compay_clearing_' || peer, pg_catalog.format('SELECT pgq.finish_batch(%s)', batch_id);
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'clearing: batch % of shard % not finished: % (%)', batch_id, peer, SQLERRM, SQLSTATE;
    BEGIN
        EXECUTE pg_catalog.format('SELECT %I.dblink_disconnect($1)', v_schema)
            USING 'compay_clearing_' || peer;
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    RETURN false;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_finish(integer, bigint) FROM PUBLIC;

-- One round: for each peer shard, its batches of events for this shard
-- (one per PgQ tick, at most 64 a round), each applied and committed
-- here, then finished there.  A procedure (it commits), so neither
-- SECURITY DEFINER nor SET: what it calls is.
CREATE PROCEDURE compay.clearing_consume(INOUT applied integer DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    f record;
    ev jsonb;
BEGIN
    applied := 0;
    FOR peer IN 0 .. c.shards - 1 LOOP
        CONTINUE WHEN peer = c.shard;
        FOR b IN 1 .. 64 LOOP
            f := compay.clearing_fetch(peer);
            EXIT WHEN f.batch_id IS NULL;
            FOR ev IN SELECT * FROM pg_catalog.jsonb_array_elements(f.events) LOOP
                IF compay.clearing_apply(peer, (ev->>'id')::bigint, ev->>'type', ev->>'data') THEN
                    applied := applied + 1;
                END IF;
            END LOOP;
            COMMIT;
            EXIT WHEN NOT compay.clearing_finish(peer, f.batch_id);
            COMMIT;
        END LOOP;
    END LOOP;
END $$;
COMMENT ON PROCEDURE compay.clearing_consume(integer) IS
    'applies each peer shard''s PgQ batches of clearing events for this shard (at most 64 a peer a round), each committed here, then finished at the peer; a batch given again after a crash is a no-op by (shard, event id); returns the events applied';

CREATE PROCEDURE compay.clearing_consume_loop(pause interval DEFAULT '100 milliseconds',
    rounds integer DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    i integer := 0;
BEGIN
    IF pause IS NULL OR pause < '0' OR rounds < 0 THEN
        RAISE EXCEPTION 'pause must be a non-negative interval and rounds non-negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.shard_require();
    WHILE rounds IS NULL OR i < rounds LOOP
        n := NULL;
        CALL compay.clearing_consume(n);
        COMMIT;
        i := i + 1;
        IF n = 0 THEN
            PERFORM pg_catalog.pg_sleep(extract(epoch FROM pause));
        END IF;
    END LOOP;
END $$;
COMMENT ON PROCEDURE compay.clearing_consume_loop(interval, integer) IS
    'runs compay.clearing_consume() for ever (or rounds times), pausing when a round applied nothing; run it in a session of its own on every shard';

-- What this shard sent to and received from each peer, and what it sent
-- that the peer's consumer has not yet finished (by the txid snapshot of
-- the consumer's last finished PgQ tick).  The router's
-- compay.cluster_check() compares both sides.
CREATE FUNCTION compay.clearing_totals()
RETURNS TABLE (shard integer, peer integer, currency text, sent_events bigint,
               sent compay.credit, received_events bigint, received compay.credit,
               in_flight_events bigint, in_flight compay.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
BEGIN
    RETURN QUERY
    WITH snap AS (
        SELECT pg_catalog.substr(q.queue_name, 20)::integer AS to_shard, t.tick_snapshot
        FROM pgq.queue q
        JOIN pgq.subscription s ON s.sub_queue = q.queue_id
        JOIN pgq.consumer co ON co.co_id = s.sub_consumer AND co.co_name = 'compay_clearing'
        JOIN pgq.tick t ON t.tick_queue = q.queue_id AND t.tick_id = s.sub_last_tick
        WHERE q.queue_name LIKE 'compay\_clearing\_to\_%'),
    sent AS (
        SELECT s.to_shard AS peer, s.currency, pg_catalog.count(*) AS n,
               sum(s.amount) AS amount,
               pg_catalog.count(*) FILTER (WHERE NOT coalesce(pg_catalog.txid_visible_in_snapshot(
                   s.txid, snap.tick_snapshot), false)) AS f_n,
               sum(s.amount) FILTER (WHERE NOT coalesce(pg_catalog.txid_visible_in_snapshot(
                   s.txid, snap.tick_snapshot), false)) AS f_amount
        FROM compay.clearing_sent s LEFT JOIN snap ON snap.to_shard = s.to_shard
        GROUP BY s.to_shard, s.currency),
    recv AS (
        SELECT a.from_shard AS peer, a.currency, pg_catalog.count(*) AS n,
               sum(a.amount) AS amount
        FROM compay.clearing_applied a GROUP BY a.from_shard, a.currency)
    SELECT c.shard, p.peer, p.currency,
           coalesce(sent.n, 0), coalesce(sent.amount, '0'),
           coalesce(recv.n, 0), coalesce(recv.amount, '0'),
           coalesce(sent.f_n, 0), coalesce(sent.f_amount, '0')
    FROM (SELECT sent.peer, sent.currency FROM sent UNION SELECT recv.peer, recv.currency FROM recv) p
    LEFT JOIN sent ON sent.peer = p.peer AND sent.currency = p.currency
    LEFT JOIN recv ON recv.peer = p.peer AND recv.currency = p.currency
    ORDER BY 2, 3;
END $$;
COMMENT ON FUNCTION compay.clearing_totals() IS
    'per peer shard and currency: what this shard sent (count, amount), received, and sent that the peer''s consumer has not finished yet';

GRANT EXECUTE ON FUNCTION compay.shard_of(text), compay.clearing_totals() TO compay_reader;
-- Superuser only: the connection strings it stores are what the consumer's
-- SECURITY DEFINER steps open with dblink as the extension's owner.
REVOKE ALL ON FUNCTION compay.shard_configure(integer, text[], integer) FROM PUBLIC;
REVOKE ALL ON PROCEDURE compay.clearing_consume(integer) FROM PUBLIC;
REVOKE ALL ON PROCEDURE compay.clearing_consume_loop(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE compay.clearing_consume(integer),
    compay.clearing_consume_loop(interval, integer) TO compay_admin;
-- The procedures run as their caller (a procedure that commits can be
-- neither SECURITY DEFINER nor SET): its steps are granted with them.
GRANT EXECUTE ON FUNCTION compay.clearing_fetch(integer),
    compay.clearing_apply(integer, bigint, text, text),
    compay.clearing_finish(integer, bigint) TO compay_admin;
