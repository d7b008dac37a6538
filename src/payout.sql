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
    PRIMARY KEY (node_id, purpose)
);
COMMENT ON TABLE compay.payout_addresses IS
    'where each node is paid: primary, operational, and verification (verifier rewards) addresses, checked when set';

CREATE TABLE compay.payout_policies (
    node_id         text PRIMARY KEY,
    auto_payout     boolean,
    min_payout      compay.credit,
    payout_interval interval,
    max_per_day     compay.credit,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
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
    INSERT INTO compay.payout_addresses AS a (node_id, purpose, address, kind, network)
    VALUES (node_id, purpose, address, v_kind, v_network)
    ON CONFLICT ON CONSTRAINT payout_addresses_pkey DO UPDATE
    SET address = EXCLUDED.address, kind = EXCLUDED.kind, network = EXCLUDED.network,
        updated_at = now();
    RETURN v_kind;
END $$;
COMMENT ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose) IS
    'sets a node''s payout address for a purpose after checking it for compay.monero_network; returns its kind';

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
-- by the worker (src/payout.c) through a state machine kept here:
--   queued -> built (transfer with do_not_relay; the tx and its metadata
--   committed, the ledger debited) -> relayed (relay_tx, then store)
--   -> confirmed (compay.payout_confirmations), or failed (only when the
--   wallet refused to build it: nothing reached the network).
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
SELECT pg_catalog.pg_extension_config_dump('compay.payout_transactions', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_transactions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.payout_items', '');
REVOKE ALL ON compay.payout_transactions, compay.payout_items, compay.payout_transactions_id_seq FROM PUBLIC;
-- The tx key proves the payment to any address (check_tx_key) and the
-- metadata is the signed transaction: compay_admin only.
GRANT SELECT (id, status, amount, fee, fee_from, tx_hash, key_images, confirmations, attempts,
              last_error, next_attempt_at, conflict_height, created_at, built_at, relayed_at,
              confirmed_at, failed_at)
    ON compay.payout_transactions TO compay_reader;
GRANT SELECT ON compay.payout_transactions TO compay_admin;
GRANT SELECT ON compay.payout_items TO compay_reader;

CREATE FUNCTION compay.payout_withdraw(hold_ids bigint[], fee compay.credit, fee_from text,
    reference text) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_payout_withdraw'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
REVOKE ALL ON FUNCTION compay.payout_withdraw(bigint[], compay.credit, text, text) FROM PUBLIC;

CREATE FUNCTION compay.payout_return(payout_id bigint) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_payout_return'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
REVOKE ALL ON FUNCTION compay.payout_return(bigint) FROM PUBLIC;

-- Gathers each payee's earmarked XMR settlements into queued payouts,
-- by its policy (auto payout, minimum, interval since its last payout,
-- daily cap: what is over waits), at most compay.payout_batch_max payees
-- a payout.  Returns the payouts queued.
CREATE FUNCTION compay.queue_payouts() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_batch integer := compay.setting('compay.payout_batch_max')::integer;
    v_payout bigint;
    v_n integer := 0;
    v_items integer := 0;
    r record;
BEGIN
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
    FOR r IN
        WITH open AS (
            -- Verifier rewards go to the verification address when there is one.
            -- What is earmarked (clawback repayments and refunds leave the
            -- hold below the total); a settlement holding back a disputed
            -- payment waits until the dispute is resolved.
            SELECT s.id, s.payee, h.remaining AS total_amount,
                   coalesce(v.address, a.address) AS address,
                   compay.sum(h.remaining) OVER (PARTITION BY s.payee ORDER BY s.id) AS running
            FROM compay.settlements s
            JOIN compay.holds h ON h.id = s.earmark_hold_id AND h.status = 'pending'
            JOIN compay.payout_addresses a ON a.node_id = s.payee AND a.purpose = 'primary'
            LEFT JOIN compay.payout_addresses v
              ON v.node_id = s.payee AND v.purpose = 'verification' AND s.purpose = 'verification'
            WHERE s.currency = 'XMR' AND s.status = 'processing' AND s.payout_id IS NULL
              AND s.held_back = '0'
              AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
        ), node AS (
            SELECT o.payee, pol.*,
                   coalesce((SELECT compay.sum(i.amount) FROM compay.payout_items i
                             JOIN compay.payout_transactions p ON p.id = i.payout_id
                             WHERE i.node_id = o.payee AND p.status <> 'failed'
                               AND p.created_at > now() - interval '1 day'), '0') AS paid_today,
                   (SELECT max(p.created_at) FROM compay.payout_items i
                    JOIN compay.payout_transactions p ON p.id = i.payout_id
                    WHERE i.node_id = o.payee AND p.status <> 'failed') AS last_payout
            FROM (SELECT DISTINCT payee FROM open) o
            CROSS JOIN LATERAL compay.payout_policy(o.payee) pol
        )
        SELECT n.payee, o.address, array_agg(o.id ORDER BY o.id) AS ids,
               compay.sum(o.total_amount) AS amount
        FROM node n JOIN open o ON o.payee = n.payee
        WHERE n.auto_payout
          AND (n.last_payout IS NULL OR n.last_payout <= now() - n.payout_interval)
          AND n.paid_today + o.running <= n.max_per_day
        GROUP BY n.payee, o.address, n.min_payout
        HAVING compay.sum(o.total_amount) >= n.min_payout
        ORDER BY n.payee, o.address
    LOOP
        IF v_payout IS NULL OR v_items >= v_batch THEN
            INSERT INTO compay.payout_transactions (amount) VALUES ('0') RETURNING id INTO v_payout;
            v_n := v_n + 1;
            v_items := 0;
        END IF;
        INSERT INTO compay.payout_items (payout_id, node_id, address, amount, settlement_ids)
        VALUES (v_payout, r.payee, r.address, r.amount, r.ids);
        UPDATE compay.payout_transactions SET amount = amount + r.amount WHERE id = v_payout;
        UPDATE compay.settlements SET payout_id = v_payout WHERE id = ANY (r.ids);
        v_items := v_items + 1;
    END LOOP;
    RETURN v_n;
END $$;

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
-- the ledger in the same transaction, before anything is sent.  With
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
    SELECT array_agg(s.earmark_hold_id ORDER BY s.earmark_hold_id) INTO v_holds
    FROM compay.settlements s WHERE s.payout_id = record_payout_built.payout_id;
    PERFORM compay.payout_withdraw(v_holds, CASE WHEN payees_pay_fee THEN '0' ELSE v_fee END,
                                   '$fees', 'payout:' || p.id);
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
    -- by how many payouts of the settlement have failed.
    UPDATE compay.settlements s
    SET payout_id = NULL,
        next_attempt_at = now() + least(interval '10 seconds' * power(2, least(
            (SELECT count(*) - 1 FROM compay.payout_items i
             JOIN compay.payout_transactions p ON p.id = i.payout_id
             WHERE p.status = 'failed' AND s.id = ANY (i.settlement_ids)), 10)),
            interval '10 minutes')
    WHERE s.payout_id = record_payout_failed.payout_id;
END $$;

-- Built or relayed, and certain never to reach the chain: the daemon has
-- not got it (neither pool nor chain) and one of its key images is spent
-- on chain by another transaction.  The ledger gets the amounts and the
-- fee back, the settlements are earmarked again and queued after a
-- backoff.
CREATE FUNCTION compay.record_payout_voided(payout_id bigint, reason text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s record;
BEGIN
    UPDATE compay.payout_transactions SET status = 'failed', last_error = reason, failed_at = now(),
                              attempts = attempts + 1
    WHERE id = payout_id AND status IN ('built', 'relayed');
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM compay.payout_return(payout_id);
    -- Each earmarked again with what its hold had when it was withdrawn.
    FOR s IN SELECT settlements.id, settlements.payee, h.amount FROM compay.settlements
             JOIN compay.transfers h ON h.hold_id = settlements.earmark_hold_id
                                    AND h.kind = 'withdrawal'
             WHERE settlements.payout_id = record_payout_voided.payout_id ORDER BY settlements.id
    LOOP
        UPDATE compay.settlements
        SET payout_id = NULL, next_attempt_at = now() + interval '10 seconds',
            earmark_hold_id = compay.reserve(s.payee, s.amount, 'settlement:' || s.id,
                                             NULL, NULL, 'XMR')
        WHERE id = s.id;
    END LOOP;
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
        UPDATE compay.settlements SET status = 'completed', completed_at = now()
        WHERE settlements.payout_id = record_payout_confirmations.payout_id
          AND status = 'processing';
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
    compay.record_payout_confirmations(bigint, integer) FROM PUBLIC;

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
