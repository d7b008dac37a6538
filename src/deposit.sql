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
    r := compay.wallet_rpc('create_address', jsonb_build_object('account_index', 0, 'label', node_id));
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
    'the node''s deposit subaddress of the treasury wallet, made (create_address, then store) on first use';

-- Credits the outputs the worker read (incoming_transfers, at the
-- wallet's height) that reached compay.deposit_confirmations and were not
-- credited yet: once per output, by tx hash and global output index.
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
               (e->>'block_height')::bigint AS block_height, d.node_id
        FROM jsonb_array_elements(coalesce(reply->'transfers', '[]')) e
        JOIN compay.deposit_addresses d
          ON d.address_index = (e->'subaddr_index'->>'minor')::integer
        WHERE (e->'subaddr_index'->>'major')::integer = 0
          AND (e->>'block_height')::bigint > 0
          AND record_deposits.height - (e->>'block_height')::bigint >= v_min
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
            v_transfer := compay.deposit_from_wallet(t.node_id, t.amount, 'XMR', 'xmr:' || t.txid,
                                                     NULL);
            INSERT INTO compay.xmr_deposits (tx_hash, global_index, address_index, node_id, amount,
                                             block_height, transfer_id)
            VALUES (t.txid, t.output, t.idx, t.node_id, t.amount, t.block_height, v_transfer);
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

REVOKE ALL ON FUNCTION compay.verify_payout(bigint), compay.payout_proof(bigint, text),
    compay.deposit_address(text), compay.record_deposits(jsonb, bigint),
    compay.record_deposit_scan(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.verify_payout(bigint), compay.payout_proof(bigint, text)
    TO compay_reader;
GRANT EXECUTE ON FUNCTION compay.deposit_address(text) TO compay_app, compay_node;
