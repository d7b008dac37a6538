--------------------------------------------------------------------------
-- Deposit requests (issue 16): "pay this amount to this fresh subaddress
-- before this time".  Each request has a subaddress of its own, made in
-- the treasury wallet for it and never used by another request.  The
-- deposit poll (src/payout.c, PollDeposits: the worker or CALL
-- compay.poll_deposits()) shows what it sees in the pool or below the
-- request's confirmations (state seen), credits each output once through
-- compay.record_deposits (compay.xmr_deposits), and expires what is
-- unpaid at its expiry.  A job may wait for its request: the escrow hold
-- is placed in the transaction that credits the last output it needs.
--
-- States: pending (nothing seen), seen (an uncredited payment in the pool
-- or below the confirmations), partial (credited, less than the amount),
-- confirmed (credited the amount or more), expired (not paid in full at
-- its expiry; what arrives later is still credited and flags it late).
-- Lock order: the request row, then its job row, then the ledger's.
--------------------------------------------------------------------------

CREATE SEQUENCE compay.deposit_requests_id_seq;
CREATE TABLE compay.deposit_requests (
    id                 bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.deposit_requests_id_seq'),
    node_id            text NOT NULL,
    address            text NOT NULL CONSTRAINT deposit_requests_address_key UNIQUE,
    -- A subaddress is never reused across requests.
    address_index      integer NOT NULL CONSTRAINT deposit_requests_address_index_key UNIQUE
                       CHECK (address_index > 0),
    amount             compay.credit NOT NULL CHECK (amount > '0'),
    confirmations      integer NOT NULL CHECK (confirmations BETWEEN 0 AND 1000),
    expires_at         timestamptz NOT NULL,
    state              text NOT NULL DEFAULT 'pending'
                       CONSTRAINT deposit_requests_state
                       CHECK (state IN ('pending', 'seen', 'partial', 'confirmed', 'expired')),
    received           compay.credit NOT NULL DEFAULT '0',   -- credited, every output once
    seen_amount        compay.credit NOT NULL DEFAULT '0',   -- in the pool or below the confirmations
    seen_confirmations integer,                              -- the fewest of those
    seen_tx_hashes     text[] NOT NULL DEFAULT '{}',
    late               boolean NOT NULL DEFAULT false,       -- credited after it expired
    job_id             bigint CONSTRAINT deposit_requests_job_key UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    seen_at            timestamptz,
    confirmed_at       timestamptz,
    expired_at         timestamptz,
    CONSTRAINT deposit_requests_confirmed CHECK ((state = 'confirmed') = (confirmed_at IS NOT NULL)),
    CONSTRAINT deposit_requests_expired CHECK ((state = 'expired') = (expired_at IS NOT NULL))
);
ALTER SEQUENCE compay.deposit_requests_id_seq OWNED BY compay.deposit_requests.id;
CREATE INDEX deposit_requests_open ON compay.deposit_requests (expires_at)
    WHERE state IN ('pending', 'seen', 'partial');
CREATE INDEX deposit_requests_node ON compay.deposit_requests (node_id);
COMMENT ON TABLE compay.deposit_requests IS
    'deposit requests: an amount to pay to a fresh treasury subaddress before expires_at; what was seen and credited, and the job it funds';
SELECT pg_catalog.pg_extension_config_dump('compay.deposit_requests', '');
SELECT pg_catalog.pg_extension_config_dump('compay.deposit_requests_id_seq', '');
REVOKE ALL ON compay.deposit_requests FROM PUBLIC;
GRANT SELECT ON compay.deposit_requests TO compay_reader;

-- The state a request in flight is in after a change of what it received
-- or saw (confirmed and expired are final).
CREATE FUNCTION compay.deposit_request_state(r compay.deposit_requests) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT CASE WHEN r.state IN ('confirmed', 'expired') THEN r.state
                WHEN r.received >= r.amount THEN 'confirmed'
                WHEN r.seen_amount > '0' THEN 'seen'
                WHEN r.received > '0' THEN 'partial'
                ELSE 'pending' END
$$;

-- One event of a request (src/events.sql): deposit_request.seen,
-- .partial, .confirmed, .expired or .late, sent when the transaction that
-- changed the request commits.
CREATE FUNCTION compay.deposit_request_event(kind text, r compay.deposit_requests) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.emit_event('deposit_request.' || kind,
        jsonb_build_object('request_id', r.id, 'node_id', r.node_id, 'state', r.state,
                           'amount', r.amount::text, 'received', r.received::text,
                           'missing', CASE WHEN r.received >= r.amount THEN '0'
                                           ELSE (r.amount - r.received)::text END,
                           'pending', r.seen_amount::text, 'late', r.late,
                           'job_id', r.job_id, 'address', r.address))
$$;

-- Asks the wallet for a fresh subaddress (create_address, then store) and
-- records the request.  The wallet call happens before any row is written
-- and holds no lock but the idempotency key's: a transaction that rolls
-- back leaves an unused subaddress in the wallet (labelled
-- compay-request:<installation>:<id>), never one shared by two requests.
CREATE FUNCTION compay.request_deposit(node_id text, amount compay.credit,
    expires_in interval DEFAULT '1 hour', confirmations integer DEFAULT NULL,
    idempotency_key text DEFAULT NULL)
RETURNS TABLE (request_id bigint, address text, amount_due compay.credit, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
    v_conf integer := coalesce(confirmations, compay.setting('compay.deposit_confirmations')::integer);
    r jsonb;
    a record;
BEGIN
    IF node_id IS NULL OR amount IS NULL OR expires_in IS NULL THEN
        RAISE EXCEPTION 'node_id, amount and expires_in must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(node_id) NOT BETWEEN 1 AND 200 OR left(node_id, 1) = '$' THEN
        RAISE EXCEPTION 'node id "%" cannot request a deposit', left(node_id, 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    IF amount <= '0' THEN
        RAISE EXCEPTION 'a deposit request amount must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF expires_in <= interval '0' OR expires_in > interval '30 days' THEN
        RAISE EXCEPTION 'a deposit request expires in more than 0 and at most 30 days'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('expires_in was %s.', expires_in);
    END IF;
    IF v_conf NOT BETWEEN 0 AND 1000 THEN
        RAISE EXCEPTION 'a deposit request needs 0 to 1000 confirmations' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('confirmations was %s.', v_conf);
    END IF;
    IF idempotency_key IS NOT NULL THEN
        v_id := compay.idempotency_claim(idempotency_key, 'request_deposit',
                                         concat_ws(E'\n', node_id, amount, expires_in, v_conf));
        IF v_id IS NOT NULL THEN
            RETURN QUERY SELECT d.id, d.address, d.amount, d.expires_at
                         FROM compay.deposit_requests d WHERE d.id = v_id;
            RETURN;
        END IF;
    END IF;
    v_id := nextval('compay.deposit_requests_id_seq');
    r := compay.wallet_rpc('create_address', jsonb_build_object('account_index', 0, 'label',
             'compay-request:' || substr((SELECT l.label_prefix FROM compay.deposit_label l), 8, 16)
             || ':' || v_id));
    SELECT * INTO a FROM compay.monero_address_info(coalesce(r->>'address', ''));
    IF jsonb_typeof(r->'address') IS DISTINCT FROM 'string' OR NOT a.valid
       OR a.network IS DISTINCT FROM compay.setting('compay.monero_network')
       OR a.kind IS DISTINCT FROM 'subaddress'
       OR coalesce(r->>'address_index', '') !~ '^[1-9][0-9]{0,8}$' THEN
        RAISE EXCEPTION 'bad reply from the wallet to create_address'
            USING ERRCODE = 'PY015',
                  DETAIL = 'A deposit request address is a subaddress of compay.monero_network with a positive address_index; the wallet answered '
                           || left(r::text, 200) || '.';
    END IF;
    -- A wallet restored from its seed counts its subaddresses from 1 again.
    IF EXISTS (SELECT 1 FROM compay.deposit_requests d
               WHERE d.address_index = (r->>'address_index')::integer OR d.address = r->>'address')
       OR EXISTS (SELECT 1 FROM compay.deposit_addresses d
                  WHERE d.address_index = (r->>'address_index')::integer OR d.address = r->>'address') THEN
        RAISE EXCEPTION 'the wallet gave subaddress %, which compay has used already', r->>'address_index'
            USING ERRCODE = 'PY024',
                  DETAIL = 'A deposit subaddress is never given to two requests; nothing was recorded.',
                  HINT = 'The treasury wallet lost its subaddresses (restored without them?): see docs/operations.md, "Restoring the treasury wallet".';
    END IF;
    PERFORM compay.wallet_rpc('store');
    INSERT INTO compay.deposit_requests (id, node_id, address, address_index, amount, confirmations, expires_at)
    VALUES (v_id, node_id, r->>'address', (r->>'address_index')::integer, amount, v_conf, now() + expires_in);
    IF idempotency_key IS NOT NULL THEN
        PERFORM compay.idempotency_record(idempotency_key, v_id);
    END IF;
    RETURN QUERY SELECT d.id, d.address, d.amount, d.expires_at FROM compay.deposit_requests d WHERE d.id = v_id;
END $$;
COMMENT ON FUNCTION compay.request_deposit(text, compay.credit, interval, integer, text) IS
    'a deposit request: a fresh treasury subaddress (create_address) to which the node pays amount before now() + expires_in; credited after confirmations (default compay.deposit_confirmations)';

-- What a requester watches: credited, missing, state, what is in flight.
CREATE VIEW compay.deposit_requests_v AS
SELECT r.id, r.node_id, r.address, r.address_index, r.amount, r.received,
       CASE WHEN r.received >= r.amount THEN '0'::compay.credit ELSE r.amount - r.received END AS missing,
       r.state, r.late, r.seen_amount AS pending, r.seen_confirmations AS confirmations_seen,
       r.confirmations AS confirmations_required,
       ARRAY(SELECT h FROM (SELECT x.tx_hash FROM compay.xmr_deposits x
                            WHERE x.address_index = r.address_index
                            UNION SELECT unnest(r.seen_tx_hashes)) s (h) ORDER BY h) AS tx_hashes,
       j.task_id, j.status AS job_status, r.expires_at, r.created_at, r.seen_at, r.confirmed_at,
       r.expired_at
FROM compay.deposit_requests r
LEFT JOIN compay.jobs j ON j.id = r.job_id;
COMMENT ON VIEW compay.deposit_requests_v IS
    'each deposit request: received (credited), missing, state, late, pending (seen, not credited yet) with its confirmations, tx hashes, the job it funds';
REVOKE ALL ON compay.deposit_requests_v FROM PUBLIC;
GRANT SELECT ON compay.deposit_requests_v TO compay_reader;

CREATE FUNCTION compay.deposit_request_status(request_id bigint) RETURNS compay.deposit_requests_v
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v compay.deposit_requests_v;
BEGIN
    IF request_id IS NULL THEN
        RAISE EXCEPTION 'request_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO v FROM compay.deposit_requests_v d WHERE d.id = request_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'deposit request % does not exist', request_id USING ERRCODE = 'PY023';
    END IF;
    PERFORM compay.require_node(v.node_id, false);
    RETURN v;
END $$;
COMMENT ON FUNCTION compay.deposit_request_status(bigint) IS
    'one deposit request as compay.deposit_requests_v shows it (a node role sees its own only)';

-- Every subaddress whose deposits compay credits: the nodes' static ones
-- and the requests' (src/payout.c reads it too).
CREATE VIEW compay.deposit_subaddresses AS
SELECT d.address_index, d.node_id, NULL::bigint AS request_id, NULL::integer AS confirmations
FROM compay.deposit_addresses d
UNION ALL
SELECT r.address_index, r.node_id, r.id, r.confirmations
FROM compay.deposit_requests r;
COMMENT ON VIEW compay.deposit_subaddresses IS
    'the treasury subaddresses deposits are credited from: one per node (deposit_addresses) and one per deposit request, with the request''s confirmations';
REVOKE ALL ON compay.deposit_subaddresses FROM PUBLIC;
GRANT SELECT ON compay.deposit_subaddresses TO compay_reader;

-- The payments to open requests in a get_transfers reply (in and pool) at
-- the wallet's height that are not credited yet, with their confirmations
-- (0 in the pool).
CREATE FUNCTION compay.deposit_request_flight(reply jsonb, height bigint)
RETURNS TABLE (request_id bigint, txid text, amount compay.credit, confirmations bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT d.id, e.e->>'txid', compay.credit_from_atomic((e.e->>'amount')::numeric),
           CASE WHEN e.pool OR (e.e->>'height')::bigint = 0 THEN 0
                ELSE greatest($2 - (e.e->>'height')::bigint, 0) END
    FROM (SELECT x, false FROM jsonb_array_elements(coalesce($1->'in', '[]')) x
          UNION ALL
          SELECT x, true FROM jsonb_array_elements(coalesce($1->'pool', '[]')) x) e (e, pool)
    JOIN compay.deposit_requests d ON d.address_index::text = e.e->'subaddr_index'->>'minor'
    WHERE e.e->'subaddr_index'->>'major' = '0' AND d.state IN ('pending', 'seen', 'partial')
      AND NOT EXISTS (SELECT 1 FROM compay.xmr_deposits x
                      WHERE x.tx_hash = e.e->>'txid' AND x.address_index = d.address_index)
$$;

-- The poll, with the wallet's get_transfers reply (in and pool) for the
-- open requests' subaddresses at the wallet's height: records what each
-- open request has in flight (not credited yet), and returns the
-- subaddress indices with a payment that has its confirmations (the poll
-- reads their outputs and credits them), or NULL.
CREATE FUNCTION compay.record_deposit_requests(reply jsonb, height bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    r compay.deposit_requests;
    v_state text;
BEGIN
    IF jsonb_typeof(coalesce(reply->'in', '[]')) <> 'array' OR jsonb_typeof(coalesce(reply->'pool', '[]')) <> 'array'
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(reply->'in', '[]') || coalesce(reply->'pool', '[]')) e
                  WHERE coalesce(e->>'txid', '') !~ '^[0-9a-f]{64}$' OR coalesce(e->>'amount', '') !~ '^[0-9]{1,20}$'
                     OR coalesce(e->>'height', '') !~ '^[0-9]{1,15}$') THEN
        RAISE EXCEPTION 'bad reply from the wallet to get_transfers'
            USING ERRCODE = 'PY015',
                  DETAIL = 'Every transfer has a 64-digit hexadecimal txid, an amount and a height; nothing was recorded.';
    END IF;
    FOR r IN SELECT d.* FROM compay.deposit_requests d
             WHERE d.state IN ('pending', 'seen', 'partial')
               AND (d.seen_amount > '0'
                    OR d.id IN (SELECT f.request_id FROM compay.deposit_request_flight(reply, height) f))
             ORDER BY d.id LIMIT 10000 FOR UPDATE
    LOOP
        SELECT coalesce(compay.sum(f.amount), '0'), min(f.confirmations),
               coalesce(array_agg(DISTINCT f.txid), '{}')
        INTO r.seen_amount, r.seen_confirmations, r.seen_tx_hashes
        FROM compay.deposit_request_flight(reply, height) f WHERE f.request_id = r.id;
        v_state := r.state;
        r.state := compay.deposit_request_state(r);
        IF r.seen_amount > '0' AND r.seen_at IS NULL THEN
            r.seen_at := now();
        END IF;
        UPDATE compay.deposit_requests d
        SET seen_amount = r.seen_amount, seen_confirmations = r.seen_confirmations,
            seen_tx_hashes = r.seen_tx_hashes, state = r.state, seen_at = r.seen_at
        WHERE d.id = r.id;
        IF r.state = 'seen' AND v_state <> 'seen' THEN
            PERFORM compay.deposit_request_event('seen', r);
        END IF;
    END LOOP;
    RETURN (SELECT string_agg(DISTINCT d.address_index::text, ',')
            FROM compay.deposit_request_flight(reply, height) f
            JOIN compay.deposit_requests d ON d.id = f.request_id
            WHERE f.confirmations >= greatest(d.confirmations, 1));
END $$;
COMMENT ON FUNCTION compay.record_deposit_requests(jsonb, bigint) IS
    'the deposit poll: records what each open deposit request has in the pool or below its confirmations; returns the subaddress indices with outputs to credit';

-- compay.record_deposits, in the transaction that credits an output to a
-- request's subaddress (the request row locked first): the request's
-- received amount, its state, and, when it is paid in full, its job's
-- escrow hold.
CREATE FUNCTION compay.deposit_request_credited(request_id bigint, amount compay.credit) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    r compay.deposit_requests;
    v_state text;
BEGIN
    SELECT * INTO STRICT r FROM compay.deposit_requests d WHERE d.id = request_id FOR UPDATE;
    v_state := r.state;
    r.received := r.received + amount;
    r.seen_amount := CASE WHEN r.seen_amount > amount THEN r.seen_amount - amount ELSE '0' END;
    IF r.seen_amount = '0' THEN
        r.seen_confirmations := NULL;
    END IF;
    r.late := r.late OR r.state = 'expired';
    r.state := compay.deposit_request_state(r);
    IF r.state = 'confirmed' AND v_state <> 'confirmed' THEN
        r.confirmed_at := now();
    END IF;
    UPDATE compay.deposit_requests d
    SET received = r.received, seen_amount = r.seen_amount, seen_confirmations = r.seen_confirmations,
        late = r.late, state = r.state, confirmed_at = r.confirmed_at
    WHERE d.id = r.id;
    IF r.state = 'confirmed' AND v_state <> 'confirmed' THEN
        IF r.job_id IS NOT NULL THEN
            PERFORM compay.fund_job_from_deposit(r);
        END IF;
        PERFORM compay.deposit_request_event('confirmed', r);
    ELSIF r.late THEN
        PERFORM compay.deposit_request_event('late', r);
    ELSIF r.state IN ('partial', 'seen') THEN
        PERFORM compay.deposit_request_event('partial', r);
    END IF;
END $$;

-- The escrow hold of a job its request has paid: the job becomes
-- submitted, its timeout counted from now.  A hold that fails (the
-- deposit went to a shortfall the requester owed) cancels the job and
-- says why; the deposit stays credited.
CREATE FUNCTION compay.fund_job_from_deposit(r compay.deposit_requests) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    v_hold bigint;
BEGIN
    SELECT * INTO j FROM compay.jobs WHERE jobs.id = r.job_id FOR UPDATE;
    IF NOT FOUND OR j.status <> 'awaiting_deposit' THEN
        RETURN;
    END IF;
    BEGIN
        v_hold := compay.reserve(j.requester, r.amount, 'escrow:' || j.task_id, NULL, NULL, j.currency);
    EXCEPTION WHEN OTHERS THEN
        UPDATE compay.jobs
        SET status = 'cancelled', updated_at = now(),
            payment_error = left(format('deposit request %s was paid, but the escrow hold failed: %s', r.id, SQLERRM), 500)
        WHERE jobs.id = j.id;
        RAISE WARNING 'job "%" is cancelled: its escrow hold failed: %', left(j.task_id, 64), SQLERRM
            USING DETAIL = format('Deposit request %s is credited to node "%s".', r.id, left(r.node_id, 64));
        RETURN;
    END;
    UPDATE compay.jobs
    SET status = 'submitted', max_amount = r.amount, escrow_hold_id = v_hold,
        timeout_at = now() + j.timeout, updated_at = now()
    WHERE jobs.id = j.id;
END $$;

-- The poll: every open request past its expiry that is not paid in full,
-- counting what is in flight (a payment seen in time is waited for), is
-- expired, and the job it funds is cancelled.  Returns how many.
CREATE FUNCTION compay.expire_deposit_requests() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    r compay.deposit_requests;
    v_n integer := 0;
BEGIN
    FOR r IN SELECT d.* FROM compay.deposit_requests d
             WHERE d.state IN ('pending', 'seen', 'partial') AND d.expires_at <= now()
               AND d.received + d.seen_amount < d.amount
             ORDER BY d.id LIMIT 10000 FOR UPDATE SKIP LOCKED
    LOOP
        r.state := 'expired';
        r.expired_at := now();
        UPDATE compay.deposit_requests d SET state = r.state, expired_at = r.expired_at WHERE d.id = r.id;
        IF r.job_id IS NOT NULL THEN
            UPDATE compay.jobs
            SET status = 'cancelled', updated_at = now(),
                payment_error = format('deposit request %s expired with %s of %s XMR received',
                                       r.id, r.received, r.amount)
            WHERE jobs.id = r.job_id AND jobs.status = 'awaiting_deposit';
        END IF;
        PERFORM compay.deposit_request_event('expired', r);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END $$;
COMMENT ON FUNCTION compay.expire_deposit_requests() IS
    'the deposit poll: expires the open deposit requests past their expiry that are not paid in full (counting payments in flight) and cancels their jobs; returns how many';

-- A job that waits for a deposit request of its escrow (max_amount XMR):
-- state awaiting_deposit until the request is paid in full (then the
-- hold is placed and it is submitted), cancelled if the request expires.
-- The same task id with the same arguments returns the same job and
-- request.
CREATE FUNCTION compay.submit_job_funded_by_deposit(task_id text, requester text, task_type text,
    max_amount compay.credit, timeout interval DEFAULT '24 hours', expires_in interval DEFAULT '1 hour',
    confirmations integer DEFAULT NULL)
RETURNS TABLE (job_id bigint, request_id bigint, address text, amount_due compay.credit, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
#variable_conflict use_column
DECLARE
    j compay.jobs;
    v_currency text;
    v_req record;
BEGIN
    IF task_id IS NULL OR requester IS NULL OR task_type IS NULL OR max_amount IS NULL
       OR timeout IS NULL THEN
        RAISE EXCEPTION 'task_id, requester, task_type, max_amount and timeout must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_node(requester);
    IF length(task_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a task id has 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_amount <= '0' THEN
        RAISE EXCEPTION 'the escrow amount must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout <= interval '0' THEN
        RAISE EXCEPTION 'a job timeout must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_currency := compay.task_currency(task_type);
    IF v_currency IS DISTINCT FROM 'XMR' THEN
        RAISE EXCEPTION 'task type "%" is paid in %, not XMR', left(task_type, 64), coalesce(v_currency, 'no currency')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A deposit request funds an XMR escrow only.',
                  HINT = 'Submit it with compay.submit_job() instead.';
    END IF;
    SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = submit_job_funded_by_deposit.task_id;
    IF FOUND THEN
        SELECT d.id, d.address, d.amount, d.expires_at INTO v_req
        FROM compay.deposit_requests d WHERE d.job_id = j.id;
        IF v_req.id IS NOT NULL AND j.requester = requester AND j.task_type = task_type
           AND v_req.amount = max_amount AND j.timeout = timeout THEN
            RETURN QUERY SELECT j.id, v_req.id, v_req.address, v_req.amount, v_req.expires_at;
            RETURN;
        END IF;
        RAISE EXCEPTION 'task "%" was already submitted with other arguments', left(task_id, 64)
            USING ERRCODE = 'PY005',
                  DETAIL = 'A retry returns the job only with the same requester, task type, amount and timeout, funded by a deposit request.';
    END IF;
    SELECT * INTO v_req FROM compay.request_deposit(requester, max_amount, expires_in, confirmations);
    INSERT INTO compay.jobs (task_id, requester, task_type, currency, status, timeout)
    VALUES (task_id, requester, task_type, v_currency, 'awaiting_deposit', timeout)
    RETURNING * INTO j;
    UPDATE compay.deposit_requests d SET job_id = j.id WHERE d.id = v_req.request_id;
    RETURN QUERY SELECT j.id, v_req.request_id, v_req.address, v_req.amount_due, v_req.expires_at;
END $$;
COMMENT ON FUNCTION compay.submit_job_funded_by_deposit(text, text, text, compay.credit, interval, interval, integer) IS
    'records a job awaiting a deposit request of max_amount XMR: paid in full, the escrow is held and the job submitted in the same transaction; expired, the job is cancelled';

REVOKE ALL ON FUNCTION compay.deposit_request_state(compay.deposit_requests),
    compay.deposit_request_event(text, compay.deposit_requests),
    compay.request_deposit(text, compay.credit, interval, integer, text),
    compay.deposit_request_status(bigint),
    compay.deposit_request_flight(jsonb, bigint),
    compay.record_deposit_requests(jsonb, bigint),
    compay.deposit_request_credited(bigint, compay.credit),
    compay.fund_job_from_deposit(compay.deposit_requests),
    compay.expire_deposit_requests(),
    compay.submit_job_funded_by_deposit(text, text, text, compay.credit, interval, interval, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.request_deposit(text, compay.credit, interval, integer, text),
    compay.deposit_request_status(bigint) TO compay_app, compay_node;
GRANT EXECUTE ON FUNCTION compay.deposit_request_status(bigint) TO compay_reader;
GRANT EXECUTE ON FUNCTION
    compay.submit_job_funded_by_deposit(text, text, text, compay.credit, interval, interval, integer)
    TO compay_app;

-- The job states of deposit-funded jobs (appended, as the upgrade does).
ALTER TYPE compay.job_status ADD VALUE 'awaiting_deposit';
ALTER TYPE compay.job_status ADD VALUE 'cancelled';
