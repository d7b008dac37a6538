--------------------------------------------------------------------------
-- Deposits: XMR sent to a node's subaddress credits its XMR account once,
-- after compay.deposit_confirmations, so jobs can be escrowed in XMR.
--------------------------------------------------------------------------

CREATE TABLE compay.deposit_addresses (
    node_id       text PRIMARY KEY,
    address       text NOT NULL UNIQUE,
    address_index integer NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE compay.xmr_deposits (
    tx_hash       text NOT NULL,
    global_index  bigint NOT NULL,           -- the output's index on chain
    address_index integer NOT NULL,
    node_id       text NOT NULL,
    amount        compay.credit NOT NULL,
    block_height  bigint,
    transfer_id   bigint NOT NULL,
    credited_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (tx_hash, global_index)
);
COMMENT ON TABLE compay.deposit_addresses IS 'one treasury subaddress per node for its XMR deposits';
COMMENT ON TABLE compay.xmr_deposits IS
    'XMR deposits credited, once per output (transaction and global output index), after compay.deposit_confirmations';
SELECT pg_catalog.pg_extension_config_dump('compay.deposit_addresses', '');
SELECT pg_catalog.pg_extension_config_dump('compay.xmr_deposits', '');
REVOKE ALL ON compay.deposit_addresses, compay.xmr_deposits FROM PUBLIC;
GRANT SELECT ON compay.deposit_addresses, compay.xmr_deposits TO compay_reader;

-- A deposit subaddress carries the label compay.deposit_label's prefix
-- || node_id (0.1 labelled it with the bare node id).  create_address is a wallet
-- call inside the caller's transaction: if that transaction rolls back,
-- the wallet keeps the subaddress and compay forgets it.  Such an orphan
-- is adopted (compay.recover_deposit_addresses) by this node's next call,
-- or by the next deposit poll, so deposits to it are credited too.
CREATE FUNCTION compay.deposit_address(node_id text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_address text;
    r jsonb;
    a record;
BEGIN
    IF node_id IS NULL OR length(node_id) NOT BETWEEN 1 AND 200 OR left(node_id, 1) = '$' THEN
        RAISE EXCEPTION 'node id "%" cannot have a deposit address', left(coalesce(node_id, 'NULL'), 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    -- One address per node, even for two calls at once.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.deposit_address:' || node_id));
    SELECT address INTO v_address FROM compay.deposit_addresses d WHERE d.node_id = deposit_address.node_id;
    IF FOUND THEN
        RETURN v_address;
    END IF;
    -- A subaddress an earlier call made for this node and rolled back is
    -- adopted, not made a second time.
    IF EXISTS (SELECT 1 FROM compay.deposit_address_calls c
               WHERE c.is_called AND c.last_value > coalesce((SELECT checked_calls FROM compay.deposit_scan), 0)) THEN
        PERFORM compay.recover_deposit_addresses(compay.wallet_rpc('get_address', '{"account_index": 0}'));
        SELECT address INTO v_address FROM compay.deposit_addresses d WHERE d.node_id = deposit_address.node_id;
        IF FOUND THEN
            RETURN v_address;
        END IF;
    END IF;
    -- Counted before the wallet call, and never rolled back: the poll looks
    -- for orphans only after such a call (compay.deposit_recovery_due).  The
    -- shared lock tells the poll a call is still under way.
    PERFORM pg_advisory_xact_lock_shared(pg_catalog.hashtext('compay.deposit_address_calls'));
    PERFORM nextval('compay.deposit_address_calls');
    r := compay.wallet_rpc('create_address', jsonb_build_object('account_index', 0, 'label',
                           (SELECT l.label_prefix FROM compay.deposit_label l) || node_id));
    -- What the wallet answered is checked before it is kept.
    SELECT * INTO a FROM compay.monero_address_info(coalesce(r->>'address', ''));
    IF jsonb_typeof(r->'address') IS DISTINCT FROM 'string' OR NOT a.valid
       OR a.network IS DISTINCT FROM compay.setting('compay.monero_network')
       OR a.kind IS DISTINCT FROM 'subaddress'
       OR coalesce(r->>'address_index', '') !~ '^[1-9][0-9]{0,8}$' THEN
        RAISE EXCEPTION 'bad reply from the wallet to create_address'
            USING ERRCODE = 'PY015',
                  DETAIL = 'A deposit address is a subaddress of compay.monero_network with a positive address_index; the wallet answered '
                           || left(r::text, 200) || '.';
    END IF;
    PERFORM compay.wallet_rpc('store');
    INSERT INTO compay.deposit_addresses (node_id, address, address_index)
    VALUES (node_id, r->>'address', (r->>'address_index')::integer);
    RETURN r->>'address';
END $$;
COMMENT ON FUNCTION compay.deposit_address(text) IS
    'the node''s deposit subaddress of the treasury wallet, made (create_address, then store) on first use, or adopted if a rolled-back call made it';

-- Credits the outputs the worker read (incoming_transfers, at the
-- wallet's height) that reached compay.deposit_confirmations (a deposit
-- request's: its own confirmations) and were not credited yet: once per
-- output, by tx hash and global output index.
-- Returns how many.
CREATE FUNCTION compay.record_deposits(reply jsonb, height bigint) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_min integer := compay.setting('compay.deposit_confirmations')::integer;
    t record;
    v_n integer := 0;
    v_transfer bigint;
BEGIN
    -- Every output's tx hash is a hash before anything is credited.
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(reply->'transfers', '[]')) e
               WHERE coalesce(e->>'tx_hash', '') !~ '^[0-9a-f]{64}$') THEN
        RAISE EXCEPTION 'bad reply from the wallet to incoming_transfers'
            USING ERRCODE = 'PY015',
                  DETAIL = 'Every output''s tx_hash is 64 lower-case hexadecimal digits; nothing was credited.';
    END IF;
    FOR t IN
        SELECT e->>'tx_hash' AS txid, (e->>'global_index')::bigint AS output,
               (e->'subaddr_index'->>'minor')::integer AS idx,
               compay.credit_from_atomic((e->>'amount')::numeric) AS amount,
               (e->>'block_height')::bigint AS block_height, d.node_id, d.request_id
        FROM jsonb_array_elements(coalesce(reply->'transfers', '[]')) e
        JOIN compay.deposit_subaddresses d
          ON d.address_index = (e->'subaddr_index'->>'minor')::integer
        WHERE (e->'subaddr_index'->>'major')::integer = 0
          AND (e->>'block_height')::bigint > 0
          AND record_deposits.height - (e->>'block_height')::bigint >= coalesce(d.confirmations, v_min)
        ORDER BY 1, 2
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM compay.xmr_deposits x
                              WHERE x.tx_hash = t.txid AND x.global_index = t.output);
        -- Each output on its own: one that cannot be credited (a node id
        -- the ledger refuses, a second runner that credited it first) is
        -- left for the next round, with a warning, and the others are
        -- credited.  No idempotency key: xmr_deposits' primary key is what
        -- credits an output once, and a key (public: tx hash and output
        -- index) could be claimed first by anyone who may call a money
        -- function with a key.
        BEGIN
            -- A deposit request's row and its job's first (src/deposit_request.sql).
            PERFORM 1 FROM compay.deposit_requests r WHERE r.id = t.request_id FOR UPDATE;
            PERFORM 1 FROM compay.jobs j
            WHERE j.id = (SELECT r.job_id FROM compay.deposit_requests r WHERE r.id = t.request_id)
            FOR UPDATE;
            v_transfer := compay.deposit_from_wallet(t.node_id, t.amount, 'XMR', 'xmr:' || t.txid,
                                                     NULL);
            INSERT INTO compay.xmr_deposits (tx_hash, global_index, address_index, node_id, amount,
                                             block_height, transfer_id)
            VALUES (t.txid, t.output, t.idx, t.node_id, t.amount, t.block_height, v_transfer);
            IF t.request_id IS NOT NULL THEN
                PERFORM compay.deposit_request_credited(t.request_id, t.amount);
            END IF;
            v_n := v_n + 1;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'deposit output %:% to node "%" is not credited: %',
                t.txid, t.output, left(t.node_id, 64), SQLERRM
                USING DETAIL = 'It stays listed by the wallet and is credited by a later round once the cause is gone.';
        END;
    END LOOP;
    RETURN v_n;
END $$;

-- How far the worker has read the wallet's incoming transfers: every
-- output mined at or below scanned_height with compay.deposit_confirmations
-- is credited (src/payout.c, PollDeposits).  No row: nothing read yet.
CREATE TABLE compay.deposit_scan (
    wallet         boolean PRIMARY KEY DEFAULT true CHECK (wallet),
    scanned_height bigint NOT NULL CHECK (scanned_height >= 0),
    scanned_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE compay.deposit_scan IS
    'one row: the treasury wallet height up to which the worker has credited every confirmed deposit output (it reads only what is newer, less compay.deposit_rescan_blocks)';
SELECT pg_catalog.pg_extension_config_dump('compay.deposit_scan', '');
REVOKE ALL ON compay.deposit_scan FROM PUBLIC;
GRANT SELECT ON compay.deposit_scan TO compay_reader;

CREATE FUNCTION compay.record_deposit_scan(height bigint) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    INSERT INTO compay.deposit_scan AS s (scanned_height) VALUES (greatest(height, 0))
    ON CONFLICT (wallet) DO UPDATE
    SET scanned_height = greatest(s.scanned_height, excluded.scanned_height), scanned_at = now();
$$;
COMMENT ON FUNCTION compay.record_deposit_scan(bigint) IS
    'the worker: every confirmed deposit output at or below height is credited (the scanned height never goes down)';

--------------------------------------------------------------------------
-- Orphaned deposit subaddresses (issue 13, item 8).  compay.deposit_address()
-- counts its create_address calls in a sequence (not rolled back); the
-- deposit poll, when a call was made since it last looked and none is
-- under way, lists the wallet's subaddresses (get_address) and adopts every
-- one labelled with this installation's prefix and a node id that compay
-- does not know, for a node without a deposit address.  Other labels are
-- never adopted: 0.1's bare node id labels only by
-- compay.adopt_deposit_address() (compay_admin).
--------------------------------------------------------------------------

-- The prefix is random per installation, so that a treasury wallet that
-- served another database (or this one before DROP EXTENSION) never has
-- its subaddresses, and their deposits, adopted here.  Not dumped: a
-- restored database gets a prefix of its own.
CREATE TABLE compay.deposit_label (
    wallet       boolean PRIMARY KEY DEFAULT true CHECK (wallet),
    label_prefix text NOT NULL CHECK (label_prefix ~ '^compay:[0-9a-f]{16}:$')
);
COMMENT ON TABLE compay.deposit_label IS
    'one row: the label prefix of this installation''s deposit subaddresses (the label is prefix || node id)';
INSERT INTO compay.deposit_label (label_prefix)
VALUES ('compay:' || left(replace(pg_catalog.gen_random_uuid()::text, '-', ''), 16) || ':');
REVOKE ALL ON compay.deposit_label FROM PUBLIC;
GRANT SELECT ON compay.deposit_label TO compay_reader;

CREATE SEQUENCE compay.deposit_address_calls;
COMMENT ON SEQUENCE compay.deposit_address_calls IS
    'create_address calls compay.deposit_address() made, committed or rolled back';
SELECT pg_catalog.pg_extension_config_dump('compay.deposit_address_calls', '');
ALTER TABLE compay.deposit_scan
    ADD COLUMN checked_calls bigint NOT NULL DEFAULT 0,
    ADD COLUMN checked_height bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN compay.deposit_scan.checked_calls IS
    'compay.deposit_address_calls when the wallet''s subaddresses were last looked through for orphans';
COMMENT ON COLUMN compay.deposit_scan.checked_height IS
    'scanned_height then: an orphan made later has no deposit below it, so adopting one rescans from there';

-- One subaddress the wallet listed, adopted for node_id if it is a valid
-- deposit subaddress compay does not know and the node has none; the scan
-- goes back to rescan_from so that deposits already made to it are read.
-- Returns whether it was adopted; a warning says why not.
CREATE FUNCTION compay.adopt_subaddress(node_id text, address text, address_index text,
                                        rescan_from bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    a record;
BEGIN
    SELECT * INTO a FROM compay.monero_address_info(coalesce(address, ''));
    IF NOT a.valid OR a.network IS DISTINCT FROM compay.setting('compay.monero_network')
       OR a.kind IS DISTINCT FROM 'subaddress' OR coalesce(address_index, '') !~ '^[1-9][0-9]{0,8}$'
       OR node_id IS NULL OR compay.check_node_id(node_id) IS NULL THEN
        RAISE WARNING 'wallet subaddress % labelled for node "%" is not adopted: not a deposit subaddress',
            left(coalesce(address_index, 'NULL'), 20), left(node_id, 64)
            USING DETAIL = 'A deposit address is a subaddress of compay.monero_network with a positive address_index.';
        RETURN false;
    END IF;
    INSERT INTO compay.deposit_addresses AS d (node_id, address, address_index)
    VALUES (node_id, address, address_index::integer) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE WARNING 'wallet subaddress % labelled for node "%" is not adopted: the node has another deposit address',
            address_index, left(node_id, 64)
            USING DETAIL = 'Deposits to it are not credited; credit them with compay.admin_deposit().';
        RETURN false;
    END IF;
    UPDATE compay.deposit_scan SET scanned_height = least(scanned_height, greatest(rescan_from, 0));
    RAISE LOG 'compay: adopted wallet subaddress % as the deposit address of node "%"',
        address_index, left(node_id, 64);
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE WARNING 'wallet subaddress % labelled for node "%" is not adopted: %',
        left(coalesce(address_index, 'NULL'), 20), left(node_id, 64), SQLERRM;
    RETURN false;
END $$;

-- The poll: the count of deposit_address() calls to look for orphans of,
-- or NULL when there is none, or when a call is still under way (its
-- subaddress might not be listed yet: the next round looks).
CREATE FUNCTION compay.deposit_recovery_due() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_calls bigint;
BEGIN
    SELECT c.last_value INTO v_calls FROM compay.deposit_address_calls c
    WHERE c.is_called AND c.last_value > coalesce((SELECT checked_calls FROM compay.deposit_scan), 0);
    IF v_calls IS NULL
       OR NOT pg_try_advisory_xact_lock(pg_catalog.hashtext('compay.deposit_address_calls')) THEN
        RETURN NULL;
    END IF;
    -- No call under way: every one counted so far has made its subaddress.
    RETURN (SELECT c.last_value FROM compay.deposit_address_calls c);
END $$;

-- Adopts the orphans in the wallet's get_address reply (account 0): every
-- subaddress labelled with compay.deposit_label's prefix and a node id
-- that compay does not know.
-- A node whose deposit_address() call is under way is left to it.  With
-- checked_calls (the poll, from compay.deposit_recovery_due()), and every
-- candidate looked at, records that those calls are checked.  Returns how
-- many were adopted.
CREATE FUNCTION compay.recover_deposit_addresses(reply jsonb, checked_calls bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c record;
    v_n integer := 0;
    v_all boolean := true;
    v_from bigint := coalesce((SELECT s.checked_height FROM compay.deposit_scan s), 0);
    v_prefix text := (SELECT l.label_prefix FROM compay.deposit_label l);
BEGIN
    IF jsonb_typeof(reply->'addresses') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'bad reply from the wallet to get_address'
            USING ERRCODE = 'PY015',
                  DETAIL = 'The reply lists the subaddresses in "addresses"; nothing was adopted.';
    END IF;
    FOR c IN
        SELECT substr(e->>'label', length(v_prefix) + 1) AS node_id, e->>'address' AS address,
               e->>'address_index' AS idx
        FROM jsonb_array_elements(reply->'addresses') e
        WHERE jsonb_typeof(e) = 'object' AND left(e->>'label', length(v_prefix)) = v_prefix
          AND NOT EXISTS (SELECT 1 FROM compay.deposit_addresses d
                          WHERE d.address = e->>'address' OR d.address_index::text = e->>'address_index')
        ORDER BY e->'address_index'
        LIMIT 1000
    LOOP
        IF NOT pg_try_advisory_xact_lock(pg_catalog.hashtext('compay.deposit_address:' || c.node_id)) THEN
            v_all := false;
            CONTINUE;
        END IF;
        IF compay.adopt_subaddress(c.node_id, c.address, c.idx, v_from) THEN
            v_n := v_n + 1;
        END IF;
    END LOOP;
    IF checked_calls IS NOT NULL AND v_all THEN
        INSERT INTO compay.deposit_scan AS s (scanned_height, checked_calls) VALUES (0, checked_calls)
        ON CONFLICT (wallet) DO UPDATE
        SET checked_calls = greatest(s.checked_calls, excluded.checked_calls),
            checked_height = s.scanned_height;
    END IF;
    RETURN v_n;
END $$;
COMMENT ON FUNCTION compay.recover_deposit_addresses(jsonb, bigint) IS
    'the deposit poll: adopts the wallet subaddresses labelled with compay.deposit_label''s prefix that a rolled-back compay.deposit_address() left; returns how many';

-- 0.1 labelled a deposit subaddress with the bare node id, which the
-- operator's own subaddresses may carry too: such an orphan is adopted
-- only by compay_admin, by index, after checking it (the wallet's label
-- must be the node id).  The whole chain is read again for it.
CREATE FUNCTION compay.adopt_deposit_address(node_id text, address_index integer) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    r jsonb;
    e jsonb;
BEGIN
    IF node_id IS NULL OR address_index IS NULL THEN
        RAISE EXCEPTION 'node_id and address_index must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(NULL);          -- a write: 25006 on a standby, before the wallet
    IF left(node_id, 1) = '$' OR address_index < 1 THEN
        RAISE EXCEPTION 'subaddress % cannot be the deposit address of node "%"', address_index, left(node_id, 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.deposit_address:' || node_id));
    IF EXISTS (SELECT 1 FROM compay.deposit_addresses d WHERE d.node_id = adopt_deposit_address.node_id) THEN
        RAISE EXCEPTION 'node "%" already has a deposit address', left(node_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT 1 FROM compay.deposit_addresses d WHERE d.address_index = adopt_deposit_address.address_index) THEN
        RAISE EXCEPTION 'subaddress % is already the deposit address of another node', address_index
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    r := compay.wallet_rpc('get_address', jsonb_build_object('account_index', 0,
                                                             'address_index', jsonb_build_array(address_index)));
    e := r->'addresses'->0;
    IF e->>'label' IS DISTINCT FROM node_id
       AND e->>'label' IS DISTINCT FROM (SELECT l.label_prefix FROM compay.deposit_label l) || node_id THEN
        RAISE EXCEPTION 'subaddress % is not labelled for node "%"', address_index, left(node_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The wallet labels it %s; compay labels a deposit subaddress with the node id (0.1) or compay.deposit_label''s prefix and the node id.',
                                  left(coalesce(e->>'label', 'NULL'), 64));
    END IF;
    IF NOT compay.adopt_subaddress(node_id, e->>'address', e->>'address_index', 0) THEN
        RAISE EXCEPTION 'subaddress % cannot be the deposit address of node "%"', address_index, left(node_id, 64)
            USING ERRCODE = 'PY015', DETAIL = 'The wallet answered ' || left(r::text, 200) || '.';
    END IF;
    RETURN e->>'address';
END $$;
COMMENT ON FUNCTION compay.adopt_deposit_address(text, integer) IS
    'compay_admin: makes a wallet subaddress labelled with the node id (a 0.1 deposit_address() that rolled back) the node''s deposit address; deposits are read again from the first block';

REVOKE ALL ON FUNCTION compay.adopt_subaddress(text, text, text, bigint),
    compay.deposit_recovery_due(), compay.recover_deposit_addresses(jsonb, bigint),
    compay.adopt_deposit_address(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.adopt_deposit_address(text, integer) TO compay_admin;

REVOKE ALL ON FUNCTION compay.verify_payout(bigint), compay.payout_proof(bigint, text),
    compay.deposit_address(text), compay.record_deposits(jsonb, bigint),
    compay.record_deposit_scan(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.verify_payout(bigint), compay.payout_proof(bigint, text)
    TO compay_reader;
GRANT EXECUTE ON FUNCTION compay.deposit_address(text) TO compay_app, compay_node;
