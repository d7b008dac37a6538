-- compay 0.1 -> 0.2: ALTER EXTENSION compay UPDATE TO '0.2'.
-- Every change of 0.2 to what 0.1 created; a fresh 0.2 install
-- (src/*.sql) and a 0.1 database updated by this script give the same
-- database (test/t/012_upgrade.pl compares them from the catalogs).

\echo Use "ALTER EXTENSION compay UPDATE TO '0.2'" to load this file. \quit

--------------------------------------------------------------------------
-- Security: every function that pins its search_path ends it with
-- pg_temp.  Left out, PostgreSQL searches the session's temporary schema
-- first for relations and types, so a caller's pg_temp.text domain would
-- run its check as the function's owner.
--------------------------------------------------------------------------

DO $pin$
DECLARE
    f regprocedure;
    v_path text;
BEGIN
    FOR f, v_path IN
        SELECT p.oid::regprocedure, substr(c, length('search_path=') + 1)
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass
             AND d.objid = p.oid AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'compay'
        CROSS JOIN LATERAL unnest(p.proconfig) c
        WHERE c LIKE 'search\_path=%' AND c NOT LIKE '%pg\_temp'
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = %s, pg_temp', f, v_path);
    END LOOP;
END
$pin$;

--------------------------------------------------------------------------
-- Wallet and secrets (issue 11, items 4, 5 and 8): deposits read
-- incrementally (compay.deposit_scan), the wallet's replies checked before
-- they are stored (PY015), tx_key and tx_metadata for compay_admin only.
--------------------------------------------------------------------------

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

REVOKE ALL ON FUNCTION compay.record_deposit_scan(bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION compay.deposit_address(node_id text) RETURNS text
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
       OR a.network IS DISTINCT FROM current_setting('compay.monero_network')
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

CREATE OR REPLACE FUNCTION compay.record_deposits(reply jsonb, height bigint) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_min integer := current_setting('compay.deposit_confirmations')::integer;
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
        v_transfer := compay.deposit(t.node_id, t.amount, 'XMR', 'xmr:' || t.txid,
                                     'xmr-deposit:' || t.txid || ':' || t.output);
        INSERT INTO compay.xmr_deposits (tx_hash, global_index, address_index, node_id, amount,
                                         block_height, transfer_id)
        VALUES (t.txid, t.output, t.idx, t.node_id, t.amount, t.block_height, v_transfer);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END $$;

CREATE OR REPLACE FUNCTION compay.record_payout_built(payout_id bigint, reply jsonb,
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

REVOKE SELECT ON compay.payout_transactions FROM compay_reader;
-- The tx key proves the payment to any address (check_tx_key) and the
-- metadata is the signed transaction: compay_admin only.
GRANT SELECT (id, status, amount, fee, fee_from, tx_hash, key_images, confirmations, attempts,
              last_error, next_attempt_at, conflict_height, created_at, built_at, relayed_at,
              confirmed_at, failed_at)
    ON compay.payout_transactions TO compay_reader;
GRANT SELECT ON compay.payout_transactions TO compay_admin;
