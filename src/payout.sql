--------------------------------------------------------------------------
-- Payout addresses and policies.
--------------------------------------------------------------------------

CREATE TYPE compay.address_purpose AS ENUM ('primary', 'operational', 'verification');

CREATE TABLE compay.payout_addresses (
    node_id    text NOT NULL,
    purpose    compay.address_purpose NOT NULL,
    address    text NOT NULL,
    kind       text NOT NULL,
    network    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Issue 16: earnings of this job type only (NULL: any), and the
    -- payout that last took the address (rotation pays the least
    -- recently used address of a set first).
    job_type   text,
    last_payout_id bigint,
    CONSTRAINT payout_addresses_key UNIQUE NULLS NOT DISTINCT (node_id, purpose, job_type, address),
    CONSTRAINT payout_addresses_job_type CHECK (length(job_type) BETWEEN 1 AND 200)
);
COMMENT ON TABLE compay.payout_addresses IS
    'where each node is paid: primary, operational, and verification (verifier rewards) addresses, checked when set; several per purpose, optionally for one job type';

CREATE TABLE compay.payout_policies (
    node_id         text PRIMARY KEY,
    auto_payout     boolean,
    min_payout      compay.credit,
    payout_interval interval,
    max_per_day     compay.credit,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rotate_addresses boolean NOT NULL DEFAULT false,   -- issue 16: payouts take the addresses in turn
    CONSTRAINT payout_policies_amounts CHECK (min_payout >= '0' AND max_per_day > '0'),
    CONSTRAINT payout_policies_interval CHECK (payout_interval > interval '0')
);
COMMENT ON TABLE compay.payout_policies IS
    'a node''s own payout policy; NULL columns take the compay.* defaults';
SELECT pg_catalog.pg_extension_config_dump('compay.payout_addresses', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_policies', '');
REVOKE ALL ON compay.payout_addresses, compay.payout_policies FROM PUBLIC;
GRANT SELECT ON compay.payout_addresses, compay.payout_policies TO compay_reader;

CREATE FUNCTION compay.set_payout_address(node_id text, address text,
    purpose compay.address_purpose DEFAULT 'primary') RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_network text := compay.setting('compay.monero_network');
    v_kind text;
BEGIN
    IF node_id IS NULL OR address IS NULL OR purpose IS NULL THEN
        RAISE EXCEPTION 'node_id, address and purpose must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(node_id) NOT BETWEEN 1 AND 200 OR left(node_id, 1) = '$' THEN
        RAISE EXCEPTION 'node id "%" cannot be paid', left(node_id, 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    v_kind := compay.check_monero_address(address, v_network);   -- 22023 with the reason
    -- As in 0.1: this address replaces the node's addresses of the
    -- purpose (those of no job type); compay.add_payout_address adds one.
    DELETE FROM compay.payout_addresses a
    WHERE a.node_id = set_payout_address.node_id AND a.purpose = set_payout_address.purpose
      AND a.job_type IS NULL AND a.address <> set_payout_address.address;
    INSERT INTO compay.payout_addresses AS a (node_id, purpose, address, kind, network)
    VALUES (node_id, purpose, address, v_kind, v_network)
    ON CONFLICT ON CONSTRAINT payout_addresses_key DO UPDATE
    SET kind = EXCLUDED.kind, network = EXCLUDED.network, updated_at = now();
    RETURN v_kind;
END $$;
COMMENT ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose) IS
    'sets a node''s payout address for a purpose after checking it for compay.monero_network, replacing its other addresses of that purpose (of no job type); returns its kind';

-- The address a settlement of the node is paid to (settlement_purpose
-- verification: a verifier reward; job_type: the settlement's, NULL when
-- its earnings were not kept apart).  The first set the node has of:
-- the purpose's addresses for the job type, the purpose's addresses for
-- any job type, the primary addresses for any job type (a withdrawal,
-- settlement_purpose operational: its operational addresses only).  In the set:
-- the address this payout already took, else with rotation on the least
-- recently used (never used first), else the first registered.  NULL:
-- the node has no address for it.  payout_id NULL: what the next payout
-- would take.
CREATE FUNCTION compay.payout_address_for(node_id text, settlement_purpose text, job_type text,
    payout_id bigint) RETURNS compay.payout_addresses
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH c AS (
        SELECT a.*, t.tier, min(t.tier) OVER () AS best
        FROM compay.payout_addresses a
        JOIN (VALUES (1, CASE WHEN $2 IN ('verification', 'operational') THEN $2
                              ELSE 'primary' END::compay.address_purpose, $3),
                     (2, CASE WHEN $2 IN ('verification', 'operational') THEN $2
                              ELSE 'primary' END::compay.address_purpose, NULL),
                     (3, CASE WHEN $2 = 'operational' THEN 'operational'
                              ELSE 'primary' END::compay.address_purpose, NULL)) t (tier, purpose, job_type)
          ON a.purpose = t.purpose AND a.job_type IS NOT DISTINCT FROM t.job_type
        WHERE a.node_id = $1
    )
    SELECT c.node_id, c.purpose, c.address, c.kind, c.network, c.created_at, c.updated_at,
           c.job_type, c.last_payout_id
    FROM c LEFT JOIN compay.payout_policies p ON p.node_id = $1
    WHERE c.tier = c.best
    ORDER BY c.last_payout_id IS NOT DISTINCT FROM $4 AND $4 IS NOT NULL DESC,
             CASE WHEN p.rotate_addresses THEN c.last_payout_id END NULLS FIRST,
             c.created_at, c.address
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION compay.payout_address_for(text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.payout_address_for(text, text, text, bigint) TO compay_reader;

CREATE FUNCTION compay.set_payout_policy(node_id text, auto_payout boolean,
    min_payout compay.credit, payout_interval interval, max_per_day compay.credit)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    IF min_payout < '0' OR max_per_day <= '0' OR payout_interval <= interval '0' THEN
        RAISE EXCEPTION 'a payout policy needs min_payout >= 0, max_per_day > 0 and a positive interval'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO compay.payout_policies AS p (node_id, auto_payout, min_payout, payout_interval,
                                             max_per_day)
    VALUES (node_id, auto_payout, min_payout, payout_interval, max_per_day)
    ON CONFLICT ON CONSTRAINT payout_policies_pkey DO UPDATE
    SET auto_payout = EXCLUDED.auto_payout, min_payout = EXCLUDED.min_payout,
        payout_interval = EXCLUDED.payout_interval, max_per_day = EXCLUDED.max_per_day,
        updated_at = now();
END $$;
COMMENT ON FUNCTION compay.set_payout_policy(text, boolean, compay.credit, interval, compay.credit) IS
    'sets a node''s payout policy; a NULL argument keeps the compay.* default for it';

CREATE FUNCTION compay.payout_policy(node_id text, OUT auto_payout boolean,
    OUT min_payout compay.credit, OUT payout_interval interval, OUT max_per_day compay.credit)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT coalesce(p.auto_payout, compay.setting('compay.auto_payout')::boolean),
           coalesce(p.min_payout, compay.setting('compay.payout_min')::compay.credit),
           coalesce(p.payout_interval, compay.setting('compay.payout_interval')::interval),
           coalesce(p.max_per_day, compay.setting('compay.payout_max_per_day')::compay.credit)
    FROM (SELECT 1) one
    LEFT JOIN compay.payout_policies p ON p.node_id = payout_policy.node_id
$$;
COMMENT ON FUNCTION compay.payout_policy(text) IS
    'the payout policy in force for a node: its own, with the compay.* defaults for what it leaves NULL';

REVOKE ALL ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose),
    compay.set_payout_policy(text, boolean, compay.credit, interval, compay.credit),
    compay.payout_policy(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.payout_policy(text) TO compay_reader;
GRANT EXECUTE ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose),
    compay.set_payout_policy(text, boolean, compay.credit, interval, compay.credit) TO compay_app;
GRANT EXECUTE ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose),
    compay.set_payout_policy(text, boolean, compay.credit, interval, compay.credit),
    compay.payout_policy(text) TO compay_node;

--------------------------------------------------------------------------
-- Payouts: settled XMR paid to payees through the treasury wallet, driven
-- by the payout round (src/payout.c; the worker or CALL
-- compay.run_payouts()) through a state machine kept here:
--   queued -> built (transfer with do_not_relay; the tx and its metadata
--   committed, the ledger debited) -> relayed (relay_tx, then store)
--   -> confirmed (compay.payout_confirmations), or failed (only when
--   nothing can reach the network: the wallet refused to build it, or a
--   built or relayed one is void because an input is spent elsewhere).
--------------------------------------------------------------------------

CREATE TYPE compay.payout_status AS ENUM ('queued', 'built', 'relayed', 'confirmed', 'failed');

CREATE SEQUENCE compay.payout_transactions_id_seq;
CREATE TABLE compay.payout_transactions (
    id              bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.payout_transactions_id_seq'),
    status          compay.payout_status NOT NULL DEFAULT 'queued',
    amount          compay.credit NOT NULL,
    fee             compay.credit,
    fee_from        text,
    tx_hash         text UNIQUE,
    tx_key          text,
    tx_metadata     text,
    key_images      text[],
    confirmations   integer NOT NULL DEFAULT 0,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,
    conflict_height bigint,         -- chain height when a key image was first seen spent elsewhere
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    built_at        timestamptz,
    relayed_at      timestamptz,
    confirmed_at    timestamptz,
    failed_at       timestamptz,
    CONSTRAINT payout_transactions_built CHECK (status IN ('queued', 'failed') OR
                                    (tx_hash IS NOT NULL AND tx_metadata IS NOT NULL))
);
ALTER SEQUENCE compay.payout_transactions_id_seq OWNED BY compay.payout_transactions.id;
CREATE INDEX payout_transactions_open ON compay.payout_transactions (status, id) WHERE status IN ('queued', 'built', 'relayed');
COMMENT ON TABLE compay.payout_transactions IS 'one Monero transaction paying up to compay.payout_batch_max payees';

CREATE TABLE compay.payout_items (
    payout_id      bigint NOT NULL REFERENCES compay.payout_transactions (id),
    node_id        text NOT NULL,
    address        text NOT NULL,
    amount         compay.credit NOT NULL,
    fee            compay.credit NOT NULL DEFAULT '0',
    settlement_ids bigint[] NOT NULL,
    PRIMARY KEY (payout_id, node_id, address),
    CONSTRAINT payout_items_amount CHECK (amount > '0' AND fee >= '0' AND fee < amount)
);
COMMENT ON COLUMN compay.payout_items.fee IS
    'the payee''s share of the network fee, paid out of its amount (compay.payout_fee_payer = ''payee''); it receives amount - fee';
CREATE INDEX payout_items_node ON compay.payout_items (node_id);
ALTER TABLE compay.settlements ADD COLUMN payout_id bigint;
-- What a dispute holds back of a settled, not yet paid out amount
-- (src/payments.sql): a payout pays at most the earmark hold's remaining
-- less this.
ALTER TABLE compay.settlements ADD COLUMN held_back compay.credit NOT NULL DEFAULT '0'
    CONSTRAINT settlements_held_back CHECK (held_back >= '0');
-- Issue 16: the job type whose earnings it gathers, when the payee has
-- an address for that job type (else NULL: its job types together).
ALTER TABLE compay.settlements ADD COLUMN job_type text;
COMMENT ON COLUMN compay.settlements.payout_id IS
    'XMR: the latest payout that carries a part of it (compay.payout_parts lists them all); NULL while no part is queued or paid';

-- What each payout pays of each settlement.  Under the daily cap a
-- settlement may be paid in parts on several days; it is completed when
-- its parts are confirmed and its earmark hold has nothing left.  A payee
-- item (compay.payout_items) is the sum of its parts.
CREATE TABLE compay.payout_parts (
    payout_id     bigint NOT NULL,
    settlement_id bigint NOT NULL REFERENCES compay.settlements (id),
    node_id       text NOT NULL,
    address       text NOT NULL,
    amount        compay.credit NOT NULL,
    PRIMARY KEY (payout_id, settlement_id),
    FOREIGN KEY (payout_id, node_id, address)
        REFERENCES compay.payout_items (payout_id, node_id, address),
    CONSTRAINT payout_parts_amount CHECK (amount > '0')
);
CREATE INDEX payout_parts_settlement ON compay.payout_parts (settlement_id);
COMMENT ON TABLE compay.payout_parts IS
    'what each payout pays of each settlement: a settlement over the daily cap is paid in parts on later days';
SELECT pg_catalog.pg_extension_config_dump('compay.payout_transactions', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_transactions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_items', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_parts', '');
REVOKE ALL ON compay.payout_transactions, compay.payout_items, compay.payout_transactions_id_seq FROM PUBLIC;
REVOKE ALL ON compay.payout_parts FROM PUBLIC;
-- The tx key proves the payment to any address (check_tx_key) and the
-- metadata is the signed transaction: compay_admin only.
GRANT SELECT (id, status, amount, fee, fee_from, tx_hash, key_images, confirmations, attempts,
              last_error, next_attempt_at, conflict_height, created_at, built_at, relayed_at,
              confirmed_at, failed_at)
    ON compay.payout_transactions TO compay_reader;
GRANT SELECT ON compay.payout_transactions TO compay_admin;
GRANT SELECT ON compay.payout_items TO compay_reader;
GRANT SELECT ON compay.payout_parts TO compay_reader;

CREATE FUNCTION compay.payout_withdraw(hold_ids bigint[], amounts compay.credit[],
    fee compay.credit, fee_from text, reference text) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_payout_withdraw'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
REVOKE ALL ON FUNCTION compay.payout_withdraw(bigint[], compay.credit[], compay.credit, text, text)
    FROM PUBLIC;

CREATE FUNCTION compay.payout_return(payout_id bigint) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_payout_return'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
REVOKE ALL ON FUNCTION compay.payout_return(bigint) FROM PUBLIC;

-- What each processing XMR settlement has left to pay out (the payable
-- rest): the remaining of its earmark hold, less what disputes hold back
-- (settlements.held_back), less its parts in payouts still queued (a
-- built part is withdrawn from the hold already).  started: a part of it
-- is in a payout that did not fail (queued or paid).  Settlements of a
-- payee without a primary address are not payable; withdrawals (purpose
-- operational, src/withdrawal.sql) are paid apart.  node_id NULL: every
-- payee.
CREATE FUNCTION compay.payable_settlements(node_id text)
RETURNS TABLE (settlement_id bigint, payee text, address text, payable compay.credit,
               started boolean, next_attempt_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT s.id, s.payee, a.address,
           compay.credit_from_atomic(r.rest), r.started, s.next_attempt_at
    FROM compay.settlements s
    JOIN compay.holds h ON h.id = s.earmark_hold_id AND h.status = 'pending'
    -- The job type's address, verifier rewards to the verification
    -- address, else the primary: the one the next payout would take.
    CROSS JOIN LATERAL compay.payout_address_for(s.payee, s.purpose, s.job_type, NULL) a
    CROSS JOIN LATERAL (
        SELECT compay.atomic(h.remaining) - compay.atomic(s.held_back)
               - coalesce(compay.sum_atomic(pp.amount) FILTER (WHERE p.status = 'queued'), 0) AS rest,
               count(*) FILTER (WHERE p.status <> 'failed') > 0 AS started
        FROM compay.payout_parts pp JOIN compay.payout_transactions p ON p.id = pp.payout_id
        WHERE pp.settlement_id = s.id) r
    WHERE s.currency = 'XMR' AND s.status = 'processing' AND s.purpose <> 'operational'
      AND ($1 IS NULL OR s.payee = $1)
      AND r.rest > 0 AND a.address IS NOT NULL
$$;
COMMENT ON FUNCTION compay.payable_settlements(text) IS
    'the payable rest of each processing XMR settlement: its earmark hold''s remaining less held_back less its queued parts';

-- What a node was paid in the last 24 hours (payouts that did not fail),
-- the amount its daily cap (max_per_day) counts.
CREATE FUNCTION compay.payout_paid_today(node_id text) RETURNS compay.credit
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT coalesce(compay.sum(i.amount), '0')
    FROM compay.payout_items i JOIN compay.payout_transactions p ON p.id = i.payout_id
    WHERE i.node_id = $1 AND p.status <> 'failed' AND p.created_at > now() - interval '1 day'
$$;

-- Adds amount of a payee's payable settlements to a queued payout: the
-- settlements already started first (to finish them), then by id; one
-- part per settlement, one item per address.  due_only: skips the
-- settlements whose backoff after a failed payout has not passed.  The
-- caller holds the queue lock and the payee's settlement rows.
CREATE FUNCTION compay.queue_payout_parts(payout_id bigint, node_id text, amount compay.credit,
    due_only boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_left compay.credit := amount;
    v_part compay.credit;
    v_address compay.payout_addresses;
    r record;
BEGIN
    FOR r IN SELECT s.*, st.purpose, st.job_type
             FROM compay.payable_settlements(queue_payout_parts.node_id) s
             JOIN compay.settlements st ON st.id = s.settlement_id
             WHERE NOT due_only OR s.next_attempt_at IS NULL OR s.next_attempt_at <= now()
             ORDER BY s.started DESC, s.settlement_id
    LOOP
        EXIT WHEN v_left <= '0';
        v_part := least(r.payable, v_left);
        -- The address is chosen once, here, and kept in the item and the
        -- part: a retried or rebuilt payout pays the same address.  With
        -- rotation on, the next payout takes the next address.
        v_address := compay.payout_address_for(r.payee, r.purpose, r.job_type,
                                               queue_payout_parts.payout_id);
        r.address := v_address.address;
        UPDATE compay.payout_addresses a SET last_payout_id = queue_payout_parts.payout_id
        WHERE a.node_id = v_address.node_id AND a.purpose = v_address.purpose
          AND a.job_type IS NOT DISTINCT FROM v_address.job_type AND a.address = v_address.address;
        INSERT INTO compay.payout_items AS i (payout_id, node_id, address, amount, settlement_ids)
        VALUES (queue_payout_parts.payout_id, r.payee, r.address, v_part, ARRAY[r.settlement_id])
        ON CONFLICT ON CONSTRAINT payout_items_pkey DO UPDATE
        SET amount = i.amount + EXCLUDED.amount, settlement_ids = i.settlement_ids || EXCLUDED.settlement_ids;
        INSERT INTO compay.payout_parts (payout_id, settlement_id, node_id, address, amount)
        VALUES (queue_payout_parts.payout_id, r.settlement_id, r.payee, r.address, v_part);
        UPDATE compay.settlements SET payout_id = queue_payout_parts.payout_id
        WHERE id = r.settlement_id;
        v_left := v_left - v_part;
    END LOOP;
    IF v_left <> '0' THEN
        RAISE EXCEPTION 'node % has % less payable than the % queued', node_id, v_left, amount
            USING ERRCODE = 'internal_error';
    END IF;
    UPDATE compay.payout_transactions p SET amount = p.amount + queue_payout_parts.amount
    WHERE p.id = queue_payout_parts.payout_id;
END $$;

-- Locks the settlement rows a payout of the node may take, in id order.
CREATE FUNCTION compay.lock_payable_settlements(node_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM NULL FROM compay.settlements s
    WHERE s.payee = lock_payable_settlements.node_id AND s.currency = 'XMR'
      AND s.status = 'processing'
    ORDER BY s.id FOR UPDATE;
END $$;

-- Gathers each payee's payable settlements into queued payouts, by its
-- policy: auto payout on, payout_interval since its last payout, and
-- the daily cap.  What a payee gets is least(its payable, max_per_day less
-- what it was paid in the last 24 hours): a settlement over the cap is
-- split and its rest paid on a later day.  A payee is due when its
-- payable reaches min_payout, or when it holds the rest of a settlement
-- already started (paid whatever its size, so that every payee is paid in
-- full); a capped payout waits for a room of least(min_payout,
-- max_per_day).  At most compay.payout_batch_max payees a payout.  Returns
-- the payouts queued.
CREATE FUNCTION compay.queue_payouts() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_batch integer := compay.setting('compay.payout_batch_max')::integer;
    v_payout bigint;
    v_n integer := 0;
    v_items integer := 0;
    v_payable compay.credit;
    v_started boolean;
    v_amount compay.credit;
    n record;
BEGIN
    -- One queue at a time: compay.request_payout takes the same lock.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
    v_n := compay.queue_withdrawals();      -- withdrawals whose payout failed
    FOR n IN
        SELECT d.payee, pol.min_payout, pol.max_per_day
        FROM (SELECT DISTINCT s.payee FROM compay.payable_settlements(NULL) s) d
        CROSS JOIN LATERAL compay.payout_policy(d.payee) pol
        WHERE pol.auto_payout
          AND NOT EXISTS (SELECT 1 FROM compay.payout_items i
                          JOIN compay.payout_transactions p ON p.id = i.payout_id
                          WHERE i.node_id = d.payee AND p.status <> 'failed'
                            AND p.created_at > now() - pol.payout_interval)
        ORDER BY d.payee
    LOOP
        PERFORM compay.lock_payable_settlements(n.payee);
        SELECT coalesce(compay.sum(s.payable), '0'), coalesce(bool_or(s.started), false)
        INTO v_payable, v_started
        FROM compay.payable_settlements(n.payee) s
        WHERE s.next_attempt_at IS NULL OR s.next_attempt_at <= now();
        v_amount := least(v_payable, n.max_per_day - compay.payout_paid_today(n.payee));
        CONTINUE WHEN v_amount <= '0' OR NOT (v_payable >= n.min_payout OR v_started)
                   OR (v_amount < v_payable AND v_amount < least(n.min_payout, n.max_per_day));
        IF v_payout IS NULL OR v_items >= v_batch THEN
            INSERT INTO compay.payout_transactions (amount) VALUES ('0') RETURNING id INTO v_payout;
            v_n := v_n + 1;
            v_items := 0;
        END IF;
        PERFORM compay.queue_payout_parts(v_payout, n.payee, v_amount, true);
        v_items := (SELECT count(*) FROM compay.payout_items i WHERE i.payout_id = v_payout);
    END LOOP;
    RETURN v_n;
END $$;
COMMENT ON FUNCTION compay.queue_payouts() IS
    'queues payouts of the payable settlements by each payee''s policy; over the daily cap a settlement is paid in parts on later days';

-- A payout on the node's request, whatever its auto_payout: amount (all
-- that is payable when NULL, up to the daily cap) to its payout address(es),
-- honouring min_payout and max_per_day but not payout_interval.  Returns
-- the payout id; the same idempotency key with the same arguments returns
-- the same id.
CREATE FUNCTION compay.request_payout(node_id text, amount compay.credit DEFAULT NULL,
    idempotency_key text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    pol record;
    v_payable compay.credit;
    v_started boolean;
    v_paid compay.credit;
    v_room compay.credit;
    v_amount compay.credit;
    v_payout bigint;
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    IF amount <= '0' THEN
        RAISE EXCEPTION 'a payout amount must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF idempotency_key IS NOT NULL THEN
        v_payout := compay.idempotency_claim(idempotency_key, 'request_payout',
                                             node_id || E'\n' || coalesce(amount::text, 'all'));
        IF v_payout IS NOT NULL THEN
            RETURN v_payout;
        END IF;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM compay.payout_addresses a
                   WHERE a.node_id = request_payout.node_id AND a.purpose <> 'operational') THEN
        RAISE EXCEPTION 'node "%" has no payout address', node_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Set one with compay.set_payout_address().';
    END IF;
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
    PERFORM compay.lock_payable_settlements(node_id);
    SELECT * INTO pol FROM compay.payout_policy(node_id);
    SELECT coalesce(compay.sum(s.payable), '0'), coalesce(bool_or(s.started), false)
    INTO v_payable, v_started
    FROM compay.payable_settlements(node_id) s;
    v_paid := compay.payout_paid_today(node_id);
    v_room := pol.max_per_day - v_paid;
    IF v_payable = '0' THEN
        RAISE EXCEPTION 'node "%" has nothing payable', node_id
            USING ERRCODE = 'PY019',
                  DETAIL = 'Only settled XMR earnings (processing settlements) not yet queued or held back by a dispute are paid out.';
    END IF;
    IF amount > v_payable THEN
        RAISE EXCEPTION 'a payout of % exceeds the % payable to node "%"', amount, v_payable, node_id
            USING ERRCODE = 'PY001';
    END IF;
    IF v_room <= '0' THEN
        RAISE EXCEPTION 'node "%" was paid its daily cap in the last 24 hours', node_id
            USING ERRCODE = 'PY018',
                  DETAIL = format('Its max_per_day is %s and it was paid %s.', pol.max_per_day, v_paid),
                  HINT = 'Ask again once its earlier payouts are 24 hours old.';
    END IF;
    v_amount := coalesce(amount, least(v_payable, v_room));
    IF v_amount > v_room
       OR (amount IS NULL AND v_amount < least(pol.min_payout, pol.max_per_day)
           AND v_amount < v_payable) THEN
        RAISE EXCEPTION 'a payout of % is over the daily cap of node "%"', v_amount, node_id
            USING ERRCODE = 'PY018',
                  DETAIL = format('Its max_per_day is %s and it was paid %s in the last 24 hours.',
                                  pol.max_per_day, v_paid),
                  HINT = 'Ask for less, or again once its earlier payouts are 24 hours old.';
    END IF;
    IF v_amount < least(pol.min_payout, pol.max_per_day) AND NOT (v_amount = v_payable AND v_started) THEN
        RAISE EXCEPTION 'a payout of % is below the minimum payout of node "%"', v_amount, node_id
            USING ERRCODE = 'PY017',
                  DETAIL = format('Its min_payout is %s; %s is payable.', pol.min_payout, v_payable);
    END IF;
    INSERT INTO compay.payout_transactions (amount) VALUES ('0') RETURNING id INTO v_payout;
    PERFORM compay.queue_payout_parts(v_payout, node_id, v_amount, false);
    IF idempotency_key IS NOT NULL THEN
        PERFORM compay.idempotency_record(idempotency_key, v_payout);
    END IF;
    RETURN v_payout;
END $$;
COMMENT ON FUNCTION compay.request_payout(text, compay.credit, text) IS
    'queues a payout of amount (all that is payable up to the daily cap when NULL) to the node, honouring min_payout and max_per_day; returns the payout id';

-- Each payee's share of a payout's network fee when the payees pay it: in
-- proportion to its amount, rounded down to the piconero; the first payee
-- (by node id) also pays what rounding left.  The shares add up to the fee.
CREATE FUNCTION compay.payout_fee_shares(payout_id bigint, fee compay.credit)
RETURNS TABLE (node_id text, address text, share compay.credit)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH i AS (
        SELECT i.node_id, i.address, compay.atomic(i.amount) AS amount,
               sum(compay.atomic(i.amount)) OVER () AS total,
               row_number() OVER (ORDER BY i.node_id, i.address) AS n
        FROM compay.payout_items i WHERE i.payout_id = $1
    ), s AS (
        SELECT i.node_id, i.address, i.n, floor(compay.atomic($2) * i.amount / i.total) AS share
        FROM i
    )
    SELECT s.node_id, s.address, compay.credit_from_atomic(
               s.share + CASE WHEN s.n = 1 THEN compay.atomic($2) - sum(s.share) OVER () ELSE 0 END)
    FROM s ORDER BY s.node_id, s.address
$$;

-- The wallet's transfer parameters of a queued payout (amounts in atomic
-- units): each payee's amount, less its share of fee (0 when the network
-- pays the fee).
CREATE FUNCTION compay.payout_transfer_params(payout_id bigint, fee compay.credit DEFAULT '0')
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT jsonb_build_object(
        'destinations', jsonb_agg(jsonb_build_object(
                            'amount', compay.atomic(i.amount) - compay.atomic(f.share),
                            'address', i.address) ORDER BY i.node_id, i.address),
        'account_index', 0, 'priority', 0, 'do_not_relay', true, 'get_tx_key', true,
        'get_tx_hex', false, 'get_tx_metadata', true)
    FROM compay.payout_items i
    JOIN compay.payout_fee_shares($1, $2) f ON f.node_id = i.node_id AND f.address = i.address
    WHERE i.payout_id = $1
$$;

-- Built: the transaction exists (not yet relayed); record it and debit
-- the ledger in the same transaction, before anything is sent: each part
-- is withdrawn from its settlement's earmark hold (in part when the
-- settlement is split), and the payments it carries get the tx hash.  A
-- part over its settlement's payable rest (a dispute held money back
-- since it was queued) fails the payout instead: nothing was sent, and
-- the settlements are queued again for what is payable.  With
-- payees_pay_fee the transaction already paid each payee its amount less
-- its share of the fee (compay.payout_transfer_params(id, fee)): the
-- shares are recorded and $fees pays nothing.  The transaction must pay
-- exactly what the items say, or nothing is recorded.
CREATE FUNCTION compay.record_payout_built(payout_id bigint, reply jsonb,
    payees_pay_fee boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payout_transactions;
    v_fee compay.credit := compay.credit_from_atomic((reply->>'fee')::numeric);
    v_holds bigint[];
    v_amounts compay.credit[];
    v_sent numeric;
BEGIN
    -- What the wallet answered is checked before it is kept.
    IF coalesce(reply->>'tx_hash', '') !~ '^[0-9a-f]{64}$'
       OR coalesce(reply->>'tx_key', '') !~ '^([0-9a-f]{64})+$'
       OR coalesce(reply->>'tx_metadata', '') !~ '^([0-9a-f]{2})+$'
       OR jsonb_typeof(reply->'spent_key_images'->'key_images') IS DISTINCT FROM 'array'
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(reply->'spent_key_images'->'key_images') k
                  WHERE coalesce(k #>> '{}', '') !~ '^[0-9a-f]{64}$') THEN
        RAISE EXCEPTION 'bad reply from the wallet to transfer for payout %', payout_id
            USING ERRCODE = 'PY015',
                  DETAIL = 'The tx_hash and each key image are 64 hexadecimal digits, the tx_key a multiple of 64, the tx_metadata hexadecimal; nothing was recorded.';
    END IF;
    SELECT * INTO p FROM compay.payout_transactions WHERE id = payout_id FOR UPDATE;
    IF p.status <> 'queued' THEN
        RAISE EXCEPTION 'payout % is %, not queued', payout_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM NULL FROM compay.settlements s
    WHERE s.id IN (SELECT pp.settlement_id FROM compay.payout_parts pp WHERE pp.payout_id = p.id)
    ORDER BY s.id FOR UPDATE OF s;
    IF EXISTS (SELECT 1 FROM compay.payout_parts pp
               JOIN compay.settlements s ON s.id = pp.settlement_id
               LEFT JOIN compay.holds h ON h.id = s.earmark_hold_id AND h.status = 'pending'
               WHERE pp.payout_id = p.id
                 AND (h.id IS NULL OR pp.amount > h.remaining - s.held_back)) THEN
        PERFORM compay.record_payout_failed(p.id,
            'a part is over its settlement''s payable rest (held back by a dispute); queued again');
        RETURN;
    END IF;
    IF payees_pay_fee THEN
        UPDATE compay.payout_items i SET fee = f.share
        FROM compay.payout_fee_shares(p.id, v_fee) f
        WHERE i.payout_id = p.id AND i.node_id = f.node_id AND i.address = f.address;
    END IF;
    SELECT sum(compay.atomic(i.amount) - compay.atomic(i.fee)) INTO v_sent
    FROM compay.payout_items i WHERE i.payout_id = p.id;
    IF v_sent IS DISTINCT FROM (reply->>'amount')::numeric THEN
        RAISE EXCEPTION 'payout % would send % atomic units, the transaction sends %',
            payout_id, v_sent, reply->>'amount'
            USING ERRCODE = 'data_corrupted';
    END IF;
    SELECT array_agg(s.earmark_hold_id ORDER BY s.earmark_hold_id),
           array_agg(pp.amount ORDER BY s.earmark_hold_id)
    INTO v_holds, v_amounts
    FROM compay.payout_parts pp JOIN compay.settlements s ON s.id = pp.settlement_id
    WHERE pp.payout_id = p.id;
    PERFORM compay.payout_withdraw(v_holds, v_amounts,
                                   CASE WHEN payees_pay_fee THEN '0' ELSE v_fee END,
                                   '$fees', 'payout:' || p.id);
    UPDATE compay.payments y SET tx_hash = reply->>'tx_hash'
    WHERE y.id IN (SELECT sp.id FROM compay.payout_parts pp
                   JOIN compay.settlements s ON s.id = pp.settlement_id
                   CROSS JOIN LATERAL compay.settlement_payments(s) sp
                   WHERE pp.payout_id = p.id)
      AND y.status = 'completed';
    UPDATE compay.payout_transactions
    SET status = 'built', fee = v_fee, fee_from = CASE WHEN payees_pay_fee THEN 'payees' ELSE '$fees' END,
        tx_hash = reply->>'tx_hash', tx_key = reply->>'tx_key',
        tx_metadata = reply->>'tx_metadata',
        key_images = ARRAY(SELECT jsonb_array_elements_text(reply->'spent_key_images'->'key_images')),
        attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL, built_at = now()
    WHERE id = p.id;
END $$;

-- The wallet refused to build it: nothing reached the network.  The
-- settlements go back to be queued again after a backoff.
CREATE FUNCTION compay.record_payout_failed(payout_id bigint, reason text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    UPDATE compay.payout_transactions SET status = 'failed', last_error = reason, failed_at = now(),
                              attempts = attempts + 1
    WHERE id = payout_id AND status = 'queued';
    IF NOT FOUND THEN
        RETURN;             -- not queued: built or sent, its settlements stay with it
    END IF;
    -- Queued again after a backoff: 10 s, 20 s, 40 s, ... at most 10 minutes,
    -- by how many payouts of the settlement have failed.  Its payout_id
    -- goes back to its latest payout that did not fail, if any.
    UPDATE compay.settlements s
    SET payout_id = (SELECT max(pp.payout_id) FROM compay.payout_parts pp
                     JOIN compay.payout_transactions p ON p.id = pp.payout_id
                     WHERE pp.settlement_id = s.id AND p.status <> 'failed'),
        next_attempt_at = now() + least(interval '10 seconds' * power(2, least(
            (SELECT count(*) - 1 FROM compay.payout_parts pp
             JOIN compay.payout_transactions p ON p.id = pp.payout_id
             WHERE p.status = 'failed' AND pp.settlement_id = s.id), 10)),
            interval '10 minutes')
    WHERE s.id IN (SELECT pp.settlement_id FROM compay.payout_parts pp
                   WHERE pp.payout_id = record_payout_failed.payout_id);
END $$;

-- Built or relayed, and certain never to reach the chain: the daemon has
-- not got it (neither pool nor chain) and one of its key images is spent
-- on chain by another transaction.  The ledger gets the amounts and the
-- fee back, each part is earmarked again (one new hold for the part and
-- what the settlement's hold had left) and queued after a backoff; the
-- payments' tx hash goes back to their latest payout still standing.
-- What comes back repays the payee's clawbacks first, as a settlement's
-- earnings do (a dispute refunded since the part was built clawed it
-- back); a settlement left with nothing to pay and no part open is
-- completed.
CREATE FUNCTION compay.record_payout_voided(payout_id bigint, reason text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_tx_hash text;
    v_rest compay.credit;
    v_net compay.credit;
    v_settlement compay.settlements;
    s record;
BEGIN
    UPDATE compay.payout_transactions SET status = 'failed', last_error = reason, failed_at = now(),
                              attempts = attempts + 1
    WHERE id = payout_id AND status IN ('built', 'relayed')
    RETURNING tx_hash INTO v_tx_hash;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM compay.payout_return(payout_id);
    FOR s IN SELECT st.id, st.payee, st.earmark_hold_id, pp.amount
             FROM compay.payout_parts pp JOIN compay.settlements st ON st.id = pp.settlement_id
             WHERE pp.payout_id = record_payout_voided.payout_id ORDER BY st.id
             FOR UPDATE OF st
    LOOP
        SELECT CASE WHEN h.status = 'pending' THEN h.remaining ELSE '0' END INTO v_rest
        FROM compay.holds h WHERE h.id = s.earmark_hold_id;
        IF v_rest > '0' THEN
            PERFORM compay.release(s.earmark_hold_id);
        END IF;
        SELECT * INTO v_settlement FROM compay.settlements st WHERE st.id = s.id;
        v_net := compay.repay_clawbacks(v_settlement, coalesce(v_rest, '0') + s.amount);
        UPDATE compay.settlements st
        SET payout_id = (SELECT max(pp.payout_id) FROM compay.payout_parts pp
                         JOIN compay.payout_transactions p ON p.id = pp.payout_id
                         WHERE pp.settlement_id = st.id AND p.status <> 'failed'),
            next_attempt_at = now() + interval '10 seconds',
            earmark_hold_id = CASE WHEN v_net > '0'
                                   THEN compay.reserve(s.payee, v_net, 'settlement:' || s.id,
                                                       NULL, NULL, 'XMR')
                                   ELSE st.earmark_hold_id END
        WHERE st.id = s.id;
        IF v_net = '0' THEN
            UPDATE compay.settlements st SET status = 'completed', completed_at = now()
            WHERE st.id = s.id AND st.status = 'processing'
              AND NOT EXISTS (SELECT 1 FROM compay.payout_parts pp
                              JOIN compay.payout_transactions p ON p.id = pp.payout_id
                              WHERE pp.settlement_id = st.id
                                AND p.status IN ('queued', 'built', 'relayed'));
        END IF;
    END LOOP;
    UPDATE compay.payments y
    SET tx_hash = (SELECT p.tx_hash FROM compay.payout_parts pp
                   JOIN compay.payout_transactions p ON p.id = pp.payout_id
                   WHERE pp.settlement_id = compay.payment_settlement(y)
                     AND p.status IN ('built', 'relayed', 'confirmed')
                   ORDER BY p.id DESC LIMIT 1)
    WHERE y.tx_hash = v_tx_hash;
END $$;

-- A key image of the payout's transaction is spent on chain by another
-- transaction, seen at the daemon's height: remembers the first height
-- and says whether compay.payout_confirmations blocks have passed since,
-- so that the payout may be voided.
CREATE FUNCTION compay.record_payout_conflict(payout_id bigint, height bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_first bigint;
BEGIN
    UPDATE compay.payout_transactions
    SET conflict_height = coalesce(conflict_height, height),
        last_error = 'conflict: a key image is spent by another transaction on chain',
        next_attempt_at = now() + interval '10 seconds'
    WHERE id = payout_id AND status IN ('built', 'relayed')
    RETURNING conflict_height INTO v_first;
    RETURN v_first IS NOT NULL
       AND height - v_first >= compay.setting('compay.payout_confirmations')::integer;
END $$;

-- Outcome unknown or the wallet unreachable: stay in the state, retry later.
CREATE FUNCTION compay.record_payout_retry(payout_id bigint, reason text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    UPDATE compay.payout_transactions
    SET attempts = attempts + 1, last_error = reason,
        next_attempt_at = now() + least(interval '10 seconds' * power(2, least(attempts, 10)),
                                        interval '10 minutes')
    WHERE id = payout_id
$$;

CREATE FUNCTION compay.record_payout_relayed(payout_id bigint) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    UPDATE compay.payout_transactions SET status = 'relayed', relayed_at = now(), last_error = NULL,
                              next_attempt_at = NULL, conflict_height = NULL
    WHERE id = payout_id AND status = 'built'
$$;

CREATE FUNCTION compay.record_payout_confirmations(payout_id bigint, confirmations integer)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    UPDATE compay.payout_transactions SET confirmations = record_payout_confirmations.confirmations
    WHERE id = payout_id AND status = 'relayed';
    IF confirmations >= compay.setting('compay.payout_confirmations')::integer THEN
        UPDATE compay.payout_transactions SET status = 'confirmed', confirmed_at = now()
        WHERE id = payout_id AND status = 'relayed';
        -- A settlement is paid in full when its hold has nothing left and
        -- every part of it that did not fail is confirmed.
        UPDATE compay.settlements s SET status = 'completed', completed_at = now()
        WHERE s.id IN (SELECT pp.settlement_id FROM compay.payout_parts pp
                       WHERE pp.payout_id = record_payout_confirmations.payout_id)
          AND s.status = 'processing'
          AND NOT EXISTS (SELECT 1 FROM compay.holds h
                          WHERE h.id = s.earmark_hold_id AND h.status = 'pending'
                            AND h.remaining > '0')
          AND NOT EXISTS (SELECT 1 FROM compay.payout_parts pp
                          JOIN compay.payout_transactions p ON p.id = pp.payout_id
                          WHERE pp.settlement_id = s.id
                            AND p.status IN ('queued', 'built', 'relayed'));
    END IF;
END $$;

CREATE VIEW compay.payouts AS
    SELECT i.node_id, p.id AS payout_id, i.amount, p.fee, p.tx_hash, p.confirmations, p.status,
           p.created_at, p.confirmed_at
    FROM compay.payout_items i JOIN compay.payout_transactions p ON p.id = i.payout_id;
COMMENT ON VIEW compay.payouts IS 'payouts per node: amount, fee of the transaction, tx hash, confirmations, status';
GRANT SELECT ON compay.payouts TO compay_reader;

REVOKE ALL ON FUNCTION compay.queue_payouts(), compay.payout_transfer_params(bigint, compay.credit),
    compay.payout_fee_shares(bigint, compay.credit),
    compay.record_payout_built(bigint, jsonb, boolean), compay.record_payout_failed(bigint, text),
    compay.record_payout_retry(bigint, text), compay.record_payout_relayed(bigint),
    compay.record_payout_voided(bigint, text), compay.record_payout_conflict(bigint, bigint),
    compay.record_payout_confirmations(bigint, integer), compay.payable_settlements(text),
    compay.payout_paid_today(text), compay.queue_payout_parts(bigint, text, compay.credit, boolean),
    compay.lock_payable_settlements(text), compay.request_payout(text, compay.credit, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.request_payout(text, compay.credit, text) TO compay_app, compay_node;
GRANT EXECUTE ON FUNCTION compay.payable_settlements(text) TO compay_reader;

-- From a job to the chain: one row per payment attempt of the task, and
-- per payout part of its settlement once queued (a settlement over the
-- daily cap is paid in several parts).  tx_hash and confirmations are the
-- payout's.
CREATE FUNCTION compay.payment_trace(task_id text)
RETURNS TABLE (job_id bigint, job_status compay.job_status, payment_id bigint,
               payment_status compay.payment_status, amount compay.credit, currency text,
               settlement_id bigint, settlement_status compay.settlement_status,
               payout_id bigint, part_amount compay.credit, payout_status compay.payout_status,
               tx_hash text, confirmations integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF payment_trace.task_id IS NULL THEN
        RAISE EXCEPTION 'task_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN QUERY
    SELECT j.id, j.status, y.id, y.status, y.amount, y.currency,
           s.id, s.status, p.id, pp.amount, p.status, p.tx_hash, p.confirmations
    FROM (SELECT payment_trace.task_id AS id) t
    LEFT JOIN compay.jobs j ON j.task_id = t.id
    LEFT JOIN compay.payments y ON y.task_id = t.id
    LEFT JOIN compay.settlements s ON s.id = compay.payment_settlement(y)
    LEFT JOIN compay.payout_parts pp ON pp.settlement_id = s.id
    LEFT JOIN compay.payout_transactions p ON p.id = pp.payout_id
    WHERE j.id IS NOT NULL OR y.id IS NOT NULL
    ORDER BY y.id, p.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task "%" does not exist', left(payment_trace.task_id, 64)
            USING ERRCODE = 'PY010';
    END IF;
END $$;
COMMENT ON FUNCTION compay.payment_trace(text) IS
    'follows a task from its job and payment through its settlement to each payout part, its tx hash and confirmations';
REVOKE ALL ON FUNCTION compay.payment_trace(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.payment_trace(text) TO compay_reader;

-- Checks a payout on chain: what each payee's address received by the
-- transaction, from its tx key (check_tx_key).  Calls the wallet: use it
-- outside transactions that hold ledger locks.
CREATE FUNCTION compay.verify_payout(payout_id bigint)
RETURNS TABLE (node_id text, address text, amount compay.credit, received compay.credit,
               confirmations integer, in_pool boolean, ok boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payout_transactions;
    i compay.payout_items;
    r jsonb;
BEGIN
    SELECT * INTO p FROM compay.payout_transactions WHERE id = payout_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payout % does not exist', payout_id USING ERRCODE = 'PY016';
    END IF;
    IF p.tx_hash IS NULL THEN
        RAISE EXCEPTION 'payout % has no transaction yet: it is %', payout_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR i IN SELECT * FROM compay.payout_items WHERE payout_items.payout_id = p.id ORDER BY 2 LOOP
        r := compay.wallet_rpc('check_tx_key', jsonb_build_object(
                 'txid', p.tx_hash, 'tx_key', p.tx_key, 'address', i.address));
        node_id := i.node_id;
        address := i.address;
        amount := i.amount - i.fee;
        received := compay.credit_from_atomic((r->>'received')::numeric);
        confirmations := (r->>'confirmations')::integer;
        in_pool := (r->>'in_pool')::boolean;
        ok := received = i.amount - i.fee;
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION compay.verify_payout(bigint) IS
    'asks the wallet (check_tx_key) what each payee address received by the payout''s transaction';

CREATE FUNCTION compay.payout_proof(payout_id bigint, message text DEFAULT '')
RETURNS TABLE (node_id text, address text, tx_hash text, signature text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payout_transactions;
    i compay.payout_items;
BEGIN
    SELECT * INTO p FROM compay.payout_transactions WHERE id = payout_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payout % does not exist', payout_id USING ERRCODE = 'PY016';
    END IF;
    IF p.status NOT IN ('relayed', 'confirmed') THEN
        RAISE EXCEPTION 'payout % was not sent: it is %', payout_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR i IN SELECT * FROM compay.payout_items WHERE payout_items.payout_id = p.id ORDER BY 2 LOOP
        node_id := i.node_id;
        address := i.address;
        tx_hash := p.tx_hash;
        signature := compay.wallet_rpc('get_tx_proof', jsonb_build_object(
                         'txid', p.tx_hash, 'address', i.address,
                         'message', coalesce(message, '')))->>'signature';
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION compay.payout_proof(bigint, text) IS
    'a proof per payee (get_tx_proof) that the payout''s transaction paid its address; payees check it with their own wallet (check_tx_proof)';
