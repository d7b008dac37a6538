--------------------------------------------------------------------------
-- Payouts marked in the wallet and adopted from it (src/payout_reconcile.c).
--
-- Every transaction a payout round builds gets a note in the treasury
-- wallet (set_tx_notes, then store) before its built record commits and
-- long before it is relayed:
--   compay:v1:db=<system identifier>.<database oid>:payout=<id>:
--   fee=<network|payee>:parts=<settlement>x<atomic>@<destination>,...
-- The system identifier is the formation's (a physical standby has the
-- primary's), so a promoted standby recognises its old primary's notes.
-- Before its first build after a start, a promotion or a failed round,
-- the round lists the wallet's outgoing transactions (get_transfers: out
-- and pending since compay.payout_reconcile_blocks blocks) and adopts each
-- one that carries such a note and that no payout has (by tx hash): a
-- payout recorded as the wallet sent it, its items and parts from the
-- note, the ledger debited as a build would, its settlements no longer
-- payable.  What the wallet has sent is never built again.
--------------------------------------------------------------------------

ALTER TABLE compay.payout_transactions ADD COLUMN wallet_note text;
ALTER TABLE compay.payout_transactions ADD COLUMN adopted_at timestamptz;
COMMENT ON COLUMN compay.payout_transactions.wallet_note IS
    'the note compay set on the transaction in the treasury wallet before relaying it (set_tx_notes): database, payout, settlement parts';
COMMENT ON COLUMN compay.payout_transactions.adopted_at IS
    'when the payout was adopted from the wallet (compay.reconcile_wallet): its records were lost, for example with a failover, after the wallet sent it';
GRANT SELECT (wallet_note, adopted_at) ON compay.payout_transactions TO compay_reader;

-- The start of every note of this database: its formation (system
-- identifier, shared by physical standbys) and the database's oid.
CREATE FUNCTION compay.payout_note_prefix() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT 'compay:v1:db=' || c.system_identifier || '.' || d.oid || ':'
    FROM pg_control_system() c, pg_database d
    WHERE d.datname = current_database()
$$;

-- The wallet note of a payout about to be built: its id, who pays the
-- fee and each part (settlement, atomic amount, index of its destination
-- in compay.payout_transfer_params' order).
CREATE FUNCTION compay.payout_wallet_note(payout_id bigint, payees_pay_fee boolean) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH i AS (
        SELECT i.node_id, i.address, row_number() OVER (ORDER BY i.node_id, i.address) - 1 AS k
        FROM compay.payout_items i WHERE i.payout_id = $1
    )
    SELECT compay.payout_note_prefix() || 'payout=' || $1
           || ':fee=' || CASE WHEN $2 THEN 'payee' ELSE 'network' END
           || ':parts=' || string_agg(pp.settlement_id || 'x' || compay.atomic(pp.amount) || '@' || i.k,
                                      ',' ORDER BY pp.settlement_id)
    FROM compay.payout_parts pp
    JOIN i ON i.node_id = pp.node_id AND i.address = pp.address
    WHERE pp.payout_id = $1
$$;

CREATE FUNCTION compay.record_payout_noted(payout_id bigint, note text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    UPDATE compay.payout_transactions SET wallet_note = $2 WHERE id = $1
$$;

-- The tx key of an adopted payout, asked of the wallet (get_tx_key) after
-- its adoption, so that compay.verify_payout and the proofs work for it.
CREATE FUNCTION compay.record_payout_tx_key(payout_id bigint, tx_key text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    UPDATE compay.payout_transactions SET tx_key = $2
    WHERE id = $1 AND tx_key IS NULL AND $2 ~ '^([0-9a-f]{64})+$'
$$;

-- The get_transfers parameters of a reconciliation at wallet height h.
CREATE FUNCTION compay.payout_reconcile_params(height bigint) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT jsonb_build_object('out', true, 'pending', true, 'account_index', 0,
                              'filter_by_height', true,
                              'min_height', greatest(coalesce($1, 0)
                                  - compay.setting('compay.payout_reconcile_blocks')::bigint, 0))
$$;

-- Adopts one outgoing transaction of the wallet (an entry of
-- get_transfers, out or pending) that carries a note of this database and
-- that no payout has: returns the new payout's id, or NULL when the
-- transaction is known or not compay's.  Queued payouts with parts of the
-- same settlements fail first (nothing of theirs was sent; what is left
-- payable is queued again).  Each part is then withdrawn from its
-- settlement's earmark hold, the fee from $fees (network pays) as
-- compay.record_payout_built would, and the payout is relayed, or
-- confirmed when the wallet counts compay.payout_confirmations.  A note
-- this database cannot match (a settlement it does not have or not
-- processing, an earmark with less left than the part, a destination
-- missing, amounts that differ from the transaction's) raises PY022 and
-- adopts nothing: the round builds nothing until an operator resolves it.
CREATE FUNCTION compay.adopt_wallet_transfer(transfer jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_prefix text := compay.payout_note_prefix();
    v_note text := transfer->>'note';
    v_tx text := transfer->>'txid';
    v_m text[];
    v_fee compay.credit;
    v_payees boolean;
    v_conf integer := coalesce((transfer->>'confirmations')::integer, 0);
    v_payout bigint;
    v_sids bigint[];
    v_bad text;
    v_holds bigint[];
    v_amounts compay.credit[];
    v_sent numeric;
    q record;
BEGIN
    IF v_note IS NULL OR NOT starts_with(v_note, v_prefix)
       OR EXISTS (SELECT 1 FROM compay.payout_transactions p WHERE p.tx_hash = v_tx) THEN
        RETURN NULL;
    END IF;
    v_m := regexp_match(substr(v_note, length(v_prefix) + 1),
                        '^payout=(\d+):fee=(network|payee):parts=(\d+x\d+@\d+(,\d+x\d+@\d+)*)$');
    IF v_m IS NULL OR coalesce(v_tx, '') !~ '^[0-9a-f]{64}$'
       OR coalesce(transfer->>'fee', '') !~ '^\d+$' OR coalesce(transfer->>'amount', '') !~ '^\d+$' THEN
        RAISE EXCEPTION 'wallet transaction % carries a compay note that cannot be read', left(coalesce(v_tx, ''), 64)
            USING ERRCODE = 'PY022',
                  DETAIL = format('The note is "%s".', left(v_note, 200)),
                  HINT = 'Nothing was adopted and no payout is built until it is resolved; see "Payouts at failover" in docs/operations.md.';
    END IF;
    v_payees := v_m[2] = 'payee';
    v_fee := compay.credit_from_atomic((transfer->>'fee')::numeric);
    CREATE TEMP TABLE IF NOT EXISTS compay_adopted_parts
        (settlement_id bigint, amount numeric, k integer) ON COMMIT DROP;
    TRUNCATE compay_adopted_parts;
    INSERT INTO compay_adopted_parts
    SELECT m[1]::bigint, m[2]::numeric, m[3]::integer
    FROM regexp_matches(v_m[3], '(\d+)x(\d+)@(\d+)', 'g') m;
    SELECT array_agg(settlement_id ORDER BY settlement_id) INTO v_sids FROM compay_adopted_parts;
    -- One queue at a time (queue_payouts, request_payout), then the rows.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
    PERFORM NULL FROM compay.settlements s WHERE s.id = ANY (v_sids) ORDER BY s.id FOR UPDATE;
    SELECT string_agg(a.settlement_id::text, ', ' ORDER BY a.settlement_id) INTO v_bad
    FROM compay_adopted_parts a
    LEFT JOIN compay.settlements s ON s.id = a.settlement_id
    LEFT JOIN compay.holds h ON h.id = s.earmark_hold_id AND h.status = 'pending'
    WHERE s.id IS NULL OR s.currency <> 'XMR' OR s.status <> 'processing' OR h.id IS NULL
       OR compay.atomic(h.remaining) < a.amount OR a.amount <= 0
       OR transfer->'destinations'->a.k->>'address' IS NULL;
    IF v_bad IS NOT NULL OR (SELECT count(DISTINCT settlement_id) <> count(*) FROM compay_adopted_parts) THEN
        RAISE EXCEPTION 'wallet transaction % pays compay settlements this database cannot match', v_tx
            USING ERRCODE = 'PY022',
                  DETAIL = format('Settlements %s are missing, not processing, or have less earmarked than the transaction paid of them; the note is "%s".',
                                  coalesce(v_bad, 'listed twice'), left(v_note, 200)),
                  HINT = 'Nothing was adopted and no payout is built until it is resolved; see "Payouts at failover" in docs/operations.md.';
    END IF;
    FOR q IN SELECT DISTINCT p.id FROM compay.payout_parts pp
             JOIN compay.payout_transactions p ON p.id = pp.payout_id
             WHERE p.status = 'queued' AND pp.settlement_id = ANY (v_sids) ORDER BY p.id
    LOOP
        PERFORM compay.record_payout_failed(q.id,
            format('superseded: the wallet''s transaction %s pays its settlements (adopted)', v_tx));
    END LOOP;
    INSERT INTO compay.payout_transactions
        (status, amount, fee, fee_from, tx_hash, tx_metadata, key_images, confirmations,
         built_at, relayed_at, wallet_note, adopted_at)
    VALUES ('relayed', '0', v_fee, CASE WHEN v_payees THEN 'payees' ELSE '$fees' END, v_tx, '',
            '{}', v_conf, now(), now(), v_note, now())
    RETURNING id INTO v_payout;
    INSERT INTO compay.payout_items (payout_id, node_id, address, amount, settlement_ids)
    SELECT v_payout, s.payee, transfer->'destinations'->a.k->>'address',
           compay.credit_from_atomic(sum(a.amount)), array_agg(s.id ORDER BY s.id)
    FROM compay_adopted_parts a JOIN compay.settlements s ON s.id = a.settlement_id
    GROUP BY s.payee, transfer->'destinations'->a.k->>'address';
    INSERT INTO compay.payout_parts (payout_id, settlement_id, node_id, address, amount)
    SELECT v_payout, s.id, s.payee, transfer->'destinations'->a.k->>'address',
           compay.credit_from_atomic(a.amount)
    FROM compay_adopted_parts a JOIN compay.settlements s ON s.id = a.settlement_id;
    UPDATE compay.payout_transactions p
    SET amount = (SELECT compay.sum(i.amount) FROM compay.payout_items i WHERE i.payout_id = p.id)
    WHERE p.id = v_payout;
    IF v_payees THEN
        UPDATE compay.payout_items i SET fee = f.share
        FROM compay.payout_fee_shares(v_payout, v_fee) f
        WHERE i.payout_id = v_payout AND i.node_id = f.node_id AND i.address = f.address;
    END IF;
    SELECT sum(compay.atomic(i.amount) - compay.atomic(i.fee)) INTO v_sent
    FROM compay.payout_items i WHERE i.payout_id = v_payout;
    IF v_sent IS DISTINCT FROM (transfer->>'amount')::numeric THEN
        RAISE EXCEPTION 'wallet transaction % pays compay settlements this database cannot match', v_tx
            USING ERRCODE = 'PY022',
                  DETAIL = format('Its note says %s atomic units, the transaction sends %s.', v_sent, transfer->>'amount'),
                  HINT = 'Nothing was adopted and no payout is built until it is resolved; see "Payouts at failover" in docs/operations.md.';
    END IF;
    UPDATE compay.settlements s SET payout_id = v_payout WHERE s.id = ANY (v_sids);
    SELECT array_agg(s.earmark_hold_id ORDER BY s.earmark_hold_id),
           array_agg(pp.amount ORDER BY s.earmark_hold_id)
    INTO v_holds, v_amounts
    FROM compay.payout_parts pp JOIN compay.settlements s ON s.id = pp.settlement_id
    WHERE pp.payout_id = v_payout;
    PERFORM compay.payout_withdraw(v_holds, v_amounts, CASE WHEN v_payees THEN '0' ELSE v_fee END,
                                   '$fees', 'payout:' || v_payout);
    UPDATE compay.payments y SET tx_hash = v_tx
    WHERE y.id IN (SELECT sp.id FROM compay.settlements s
                   CROSS JOIN LATERAL compay.settlement_payments(s) sp
                   WHERE s.id = ANY (v_sids))
      AND y.status = 'completed';
    PERFORM compay.record_payout_confirmations(v_payout, v_conf);
    RAISE LOG 'compay: adopted wallet transaction % as payout % (its note names payout %)',
        v_tx, v_payout, v_m[1];
    RETURN v_payout;
END $$;

-- Adopts every outgoing transaction of a get_transfers reply (out and
-- pending) that carries a note of this database and that no payout has,
-- oldest first; returns what it adopted.
CREATE FUNCTION compay.adopt_wallet_transfers(reply jsonb)
RETURNS TABLE (payout_id bigint, tx_hash text, amount compay.credit, fee compay.credit,
               status compay.payout_status, settlement_ids bigint[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_id bigint;
    e jsonb;
BEGIN
    FOR e IN SELECT x FROM jsonb_array_elements(coalesce(reply->'out', '[]') || coalesce(reply->'pending', '[]')) x
             WHERE starts_with(x->>'note', compay.payout_note_prefix())
               AND NOT EXISTS (SELECT 1 FROM compay.payout_transactions p WHERE p.tx_hash = x->>'txid')
             ORDER BY coalesce((x->>'height')::bigint, 0) = 0, (x->>'height')::bigint,
                      (x->>'timestamp')::bigint, x->>'txid'
    LOOP
        v_id := compay.adopt_wallet_transfer(e);
        CONTINUE WHEN v_id IS NULL;
        RETURN QUERY
        SELECT p.id, p.tx_hash, p.amount, p.fee, p.status,
               ARRAY(SELECT pp.settlement_id FROM compay.payout_parts pp
                     WHERE pp.payout_id = p.id ORDER BY 1)
        FROM compay.payout_transactions p WHERE p.id = v_id;
    END LOOP;
END $$;

-- The reconciliation on an operator's demand: the wallet's outgoing
-- transfers since compay.payout_reconcile_blocks blocks, each one of this
-- database's that no payout has adopted.  Calls the wallet before it
-- takes any lock, inside the caller's transaction: not inside one that
-- holds ledger locks.  The worker and CALL compay.run_payouts() reconcile
-- by themselves, between transactions, before their first build.
CREATE FUNCTION compay.reconcile_wallet()
RETURNS TABLE (payout_id bigint, tx_hash text, amount compay.credit, fee compay.credit,
               status compay.payout_status, settlement_ids bigint[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_height bigint;
    v_reply jsonb;
BEGIN
    -- An admin's write: refused on a standby (25006) before any wallet call.
    PERFORM compay.require_node(NULL);
    PERFORM compay.wallet_rpc('refresh');
    v_height := (compay.wallet_rpc('get_height')->>'height')::bigint;
    v_reply := compay.wallet_rpc('get_transfers', compay.payout_reconcile_params(v_height));
    RETURN QUERY SELECT * FROM compay.adopt_wallet_transfers(v_reply);
END $$;
COMMENT ON FUNCTION compay.reconcile_wallet() IS
    'adopts the treasury wallet''s outgoing transactions that carry this database''s payout note and that no payout has (records, debits, settlements paid); returns them (calls the wallet; not inside a transaction that holds ledger locks)';

REVOKE ALL ON FUNCTION compay.payout_note_prefix(), compay.payout_wallet_note(bigint, boolean),
    compay.record_payout_noted(bigint, text), compay.record_payout_tx_key(bigint, text),
    compay.payout_reconcile_params(bigint), compay.adopt_wallet_transfer(jsonb),
    compay.adopt_wallet_transfers(jsonb), compay.reconcile_wallet() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.reconcile_wallet() TO compay_admin;
