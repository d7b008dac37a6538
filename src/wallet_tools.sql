--------------------------------------------------------------------------
-- The operator's wallet tools and the payment diagnostic: the treasury
-- wallet's balance and transfers, the payouts still open, what a tx hash
-- is (compay.verify_tx), and compay.diagnose(): one row per check of what
-- payments need (a runner, the wallet, its sync, its balance, payouts,
-- settlements, the ledger, the settings).
--
-- The wallet tools call the wallet (compay.wallet_rpc) and the daemon
-- (compay.daemon_rpc) inside the caller's transaction: never inside a
-- transaction that holds ledger locks.  They show no credential: only
-- balances, heights, tx hashes and amounts.  compay.pending_payouts reads
-- no wallet and works on a hot standby.
--------------------------------------------------------------------------

CREATE FUNCTION compay.wallet_balance(OUT balance compay.credit, OUT unlocked_balance compay.credit,
    OUT blocks_to_unlock bigint, OUT wallet_height bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    b jsonb := compay.wallet_rpc('get_balance', '{"account_index":0}');
BEGIN
    balance := compay.credit_from_atomic((b->>'balance')::numeric);
    unlocked_balance := compay.credit_from_atomic((b->>'unlocked_balance')::numeric);
    blocks_to_unlock := coalesce((b->>'blocks_to_unlock')::bigint, 0);
    wallet_height := (compay.wallet_rpc('get_height')->>'height')::bigint;
END $$;
COMMENT ON FUNCTION compay.wallet_balance() IS
    'the treasury wallet''s balance, unlocked balance, blocks until all is unlocked and its height (calls the wallet; not inside a transaction that holds ledger locks)';

CREATE FUNCTION compay.wallet_transfers(max_rows integer DEFAULT 50)
RETURNS TABLE (direction text, kind text, txid text, amount compay.credit, fee compay.credit,
               height bigint, confirmations bigint, at timestamptz, payout_id bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
#variable_conflict use_column
DECLARE
    r jsonb;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 10000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 10000, not %', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := compay.wallet_rpc('get_transfers',
             '{"in":true,"out":true,"pending":true,"failed":true,"pool":true,"account_index":0}');
    RETURN QUERY
    SELECT CASE WHEN e->>'type' IN ('out', 'pending', 'failed') THEN 'out' ELSE 'in' END,
           e->>'type', e->>'txid',
           compay.credit_from_atomic((e->>'amount')::numeric),
           compay.credit_from_atomic(coalesce((e->>'fee')::numeric, 0)),
           coalesce((e->>'height')::bigint, 0), coalesce((e->>'confirmations')::bigint, 0),
           to_timestamp((e->>'timestamp')::bigint), p.id
    FROM jsonb_each(r) k
    CROSS JOIN LATERAL jsonb_array_elements(k.value) e
    LEFT JOIN compay.payout_transactions p ON p.tx_hash = e->>'txid'
    WHERE jsonb_typeof(k.value) = 'array'
    ORDER BY coalesce((e->>'height')::bigint, 0) = 0 DESC, (e->>'timestamp')::bigint DESC,
             coalesce((e->>'height')::bigint, 0) DESC, e->>'txid'
    LIMIT max_rows;
END $$;
COMMENT ON FUNCTION compay.wallet_transfers(integer) IS
    'the treasury wallet''s newest transfers in and out (at most max_rows, 1 to 10000), with the payout each outgoing one is (calls the wallet; not inside a transaction that holds ledger locks)';

CREATE VIEW compay.pending_payouts AS
    SELECT p.id AS payout_id, p.status, p.amount, p.fee,
           (SELECT count(*) FROM compay.payout_items i WHERE i.payout_id = p.id) AS payees,
           p.tx_hash, p.confirmations, p.attempts, p.last_error, p.next_attempt_at,
           p.created_at, p.built_at, p.relayed_at
    FROM compay.payout_transactions p
    WHERE p.status IN ('queued', 'built', 'relayed');
COMMENT ON VIEW compay.pending_payouts IS
    'payouts not yet confirmed nor failed: queued (not built), built (debited, not sent), relayed (sent, confirming), with their last error';
REVOKE ALL ON compay.pending_payouts FROM PUBLIC;
GRANT SELECT ON compay.pending_payouts TO compay_admin;

-- Where a transaction is, from the wallet's transfer (the daemon's view
-- when the wallet does not know it).
CREATE FUNCTION compay.verify_tx(txid text)
RETURNS TABLE (ours boolean, payout_id bigint, payout_status compay.payout_status, location text,
               height bigint, confirmations bigint, tx_amount compay.credit, tx_fee compay.credit,
               node_id text, address text, amount compay.credit, received compay.credit,
               settlement_ids bigint[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
#variable_conflict use_column
DECLARE
    h text := lower(txid);
    p compay.payout_transactions;
    w jsonb;
    d jsonb;
    loc text := 'unknown';
    hgt bigint;
    conf bigint;
BEGIN
    IF h IS NULL OR h !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'a txid is 64 hexadecimal digits, not %', coalesce(quote_literal(txid), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO p FROM compay.payout_transactions t WHERE t.tx_hash = h;
    BEGIN
        w := compay.wallet_rpc('get_transfer_by_txid', jsonb_build_object('txid', h))->'transfer';
    EXCEPTION WHEN SQLSTATE 'PY015' THEN
        w := NULL;              -- the wallet does not know it
    END;
    IF w IS NOT NULL THEN
        hgt := coalesce((w->>'height')::bigint, 0);
        conf := coalesce((w->>'confirmations')::bigint, 0);
        loc := CASE WHEN w->>'type' = 'failed' THEN 'failed'
                    WHEN hgt > 0 THEN 'chain' ELSE 'pool' END;
    ELSIF compay.setting('compay.daemon_rpc_url') <> '' THEN
        d := compay.daemon_rpc('/get_transactions', jsonb_build_object('txs_hashes', jsonb_build_array(h)))
                 ->'txs'->0;
        IF d IS NOT NULL AND (d->>'in_pool')::boolean THEN
            loc := 'pool';
            hgt := 0;
            conf := 0;
        ELSIF d IS NOT NULL THEN
            loc := 'chain';
            hgt := (d->>'block_height')::bigint;
            conf := (compay.daemon_rpc('/get_height')->>'height')::bigint - hgt;
        END IF;
    END IF;
    -- A payout built but not relayed is known to nobody yet.
    IF loc = 'unknown' AND p.status IN ('queued', 'built') THEN
        loc := 'not sent';
    END IF;
    ours := p.id IS NOT NULL OR w IS NOT NULL;
    payout_id := p.id;
    payout_status := p.status;
    location := loc;
    height := hgt;
    confirmations := conf;
    tx_amount := coalesce(compay.credit_from_atomic((w->>'amount')::numeric), p.amount);
    tx_fee := coalesce(compay.credit_from_atomic((w->>'fee')::numeric), p.fee);
    IF p.id IS NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT ours, p.id, p.status, loc, hgt, conf, verify_tx.tx_amount, verify_tx.tx_fee,
           i.node_id, i.address, i.amount - i.fee, v.received,
           coalesce((SELECT array_agg(pp.settlement_id ORDER BY pp.settlement_id)
                     FROM compay.payout_parts pp
                     WHERE pp.payout_id = i.payout_id AND pp.node_id = i.node_id
                       AND pp.address = i.address), i.settlement_ids)
    FROM compay.payout_items i
    LEFT JOIN compay.verify_payout(p.id) v
           ON loc IN ('chain', 'pool') AND p.tx_key IS NOT NULL
          AND v.node_id = i.node_id AND v.address = i.address
    WHERE i.payout_id = p.id
    ORDER BY i.node_id, i.address;
END $$;
COMMENT ON FUNCTION compay.verify_tx(text) IS
    'what a tx hash is: ours or not, the payout and its payees (amount, what each received by the tx key, settlements), on chain or in the pool, height and confirmations (calls the wallet and the daemon; not inside a transaction that holds ledger locks)';

--------------------------------------------------------------------------
-- compay.diagnose(): one row per check, in a fixed order; status ok, warn
-- or fail; advice is one sentence saying what to do; detail the figures.
-- The wallet checks catch the wallet's errors (a stopped wallet is a
-- fail row, not an error).
--------------------------------------------------------------------------

-- The smallest fee compay.diagnose() takes for a payout when the last
-- payouts show none: 0.0001 XMR, above a one-payee transaction's fee at
-- the default priority.
CREATE FUNCTION compay.typical_payout_fee() RETURNS compay.credit
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT coalesce(max(per_payee), '0.0001')
    FROM (SELECT p.fee / greatest((SELECT count(*) FROM compay.payout_items i
                                   WHERE i.payout_id = p.id), 1) AS per_payee
          FROM compay.payout_transactions p
          WHERE p.fee IS NOT NULL
          ORDER BY p.id DESC LIMIT 20) f
$$;
COMMENT ON FUNCTION compay.typical_payout_fee() IS
    'the largest fee per payee of the last 20 payouts with a fee, or 0.0001 XMR when there are none';

-- Settings that contradict each other, one line each (empty: none).
CREATE FUNCTION compay.settings_contradictions() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT format('compay.payout_min (%s XMR) is not above the typical payout fee (%s XMR): a payout would be mostly fee',
                  compay.setting('compay.payout_min'), compay.typical_payout_fee())
    WHERE compay.setting('compay.payout_min')::compay.credit <= compay.typical_payout_fee()
    UNION ALL
    SELECT format('compay.payout_max_per_day (%s XMR) is below compay.payout_min (%s XMR): no default payout can go',
                  compay.setting('compay.payout_max_per_day'), compay.setting('compay.payout_min'))
    WHERE compay.setting('compay.payout_max_per_day')::compay.credit
          < compay.setting('compay.payout_min')::compay.credit
    UNION ALL
    SELECT format('%s node(s) have a minimum payout above their daily maximum: %s', count(*),
                  string_agg(q.node_id, ', ' ORDER BY q.node_id) FILTER (WHERE q.n <= 5))
    FROM (SELECT pp.node_id, row_number() OVER (ORDER BY pp.node_id) AS n
          FROM compay.payout_policies pp
          WHERE coalesce(pp.min_payout, compay.setting('compay.payout_min')::compay.credit)
                > coalesce(pp.max_per_day, compay.setting('compay.payout_max_per_day')::compay.credit)) q
    HAVING count(*) > 0
    UNION ALL
    SELECT 'compay.payout_auto_relay is off: payouts stop at built until it is on again'
    WHERE NOT compay.setting('compay.payout_auto_relay')::boolean
$$;
COMMENT ON FUNCTION compay.settings_contradictions() IS
    'settings that contradict each other, one sentence each (compay.diagnose() reports them)';

CREATE FUNCTION compay.diagnose()
RETURNS TABLE (name text, status text, advice text, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
#variable_conflict use_column
DECLARE
    w record;
    cron_jobs text;
    wallet_error text;
    wallet_height bigint;
    daemon_height bigint;
    bal jsonb;
    total compay.credit;
    unlocked compay.credit;
    ph record;
    n_failed bigint;
    n_adopted bigint;
    n_gave_up bigint;
    bad text;
    top_index integer;
    lookahead integer;
BEGIN
    -- 1. A runner: the worker, or pg_cron jobs for settlements and payouts.
    SELECT * INTO w FROM compay.worker_status() ws;
    IF to_regclass('cron.job') IS NOT NULL THEN
        EXECUTE $q$SELECT string_agg(j.jobname || ': ' || j.command, '; ' ORDER BY j.jobid)
                   FROM cron.job j
                   WHERE j.active AND j.database = current_database()
                     AND j.command ~ '(run_payouts|run_settlement|process_due_settlements)'$q$
            INTO cron_jobs;
    END IF;
    name := 'runner';
    IF w.state IN ('running', 'idle', 'starting') THEN
        status := 'ok';
        advice := 'The worker runs settlements and payouts.';
        detail := format('worker %s, pid %s, last round %s', w.state, w.pid, w.last_round_end);
    ELSIF cron_jobs IS NOT NULL AND cron_jobs ~ 'run_payouts' AND cron_jobs ~ '(run_settlement|process_due_settlements)' THEN
        status := 'ok';
        advice := 'pg_cron jobs run settlements and payouts.';
        detail := cron_jobs;
    ELSIF cron_jobs IS NOT NULL THEN
        status := 'warn';
        advice := 'Schedule both settlement and CALL compay.run_payouts() with pg_cron (docs/operations.md), or start the worker.';
        detail := cron_jobs;
    ELSE
        status := 'fail';
        advice := 'Nothing settles or pays out: start the worker (compay.worker_enabled, compay.database) or schedule the pg_cron jobs of docs/operations.md.';
        detail := format('worker %s, no pg_cron job for settlements or payouts', w.state);
    END IF;
    RETURN NEXT;

    -- 2. The wallet answers.
    BEGIN
        wallet_height := (compay.wallet_rpc('get_height')->>'height')::bigint;
        bal := compay.wallet_rpc('get_balance', '{"account_index":0}');
        total := compay.credit_from_atomic((bal->>'balance')::numeric);
        unlocked := compay.credit_from_atomic((bal->>'unlocked_balance')::numeric);
    EXCEPTION WHEN SQLSTATE 'PY014' OR SQLSTATE 'PY015' THEN
        wallet_error := SQLERRM;
    END;
    name := 'wallet';
    IF wallet_error IS NULL THEN
        status := 'ok';
        advice := 'The treasury wallet answers.';
        detail := format('height %s', wallet_height);
    ELSE
        status := 'fail';
        advice := 'Start monero-wallet-rpc or fix compay.wallet_rpc_url and its login: no payout or deposit moves meanwhile.';
        detail := wallet_error;
    END IF;
    RETURN NEXT;

    -- 3. The wallet is synced with the daemon.
    name := 'wallet sync';
    IF wallet_error IS NOT NULL THEN
        status := 'warn';
        advice := 'Cannot compare heights while the wallet does not answer: see the wallet check.';
        detail := NULL;
    ELSIF compay.setting('compay.daemon_rpc_url') = '' THEN
        status := 'warn';
        advice := 'Set compay.daemon_rpc_url so that payouts and this check can ask the daemon.';
        detail := format('wallet height %s, no daemon configured', wallet_height);
    ELSE
        BEGIN
            daemon_height := (compay.daemon_rpc('/get_height')->>'height')::bigint;
        EXCEPTION WHEN SQLSTATE 'PY014' OR SQLSTATE 'PY015' THEN
            bad := SQLERRM;
        END;
        IF bad IS NOT NULL THEN
            status := 'fail';
            advice := 'Start monerod or fix compay.daemon_rpc_url: the wallet cannot send nor see confirmations without it.';
            detail := bad;
        ELSIF wallet_height + 2 < daemon_height THEN
            status := 'warn';
            advice := 'The wallet lags behind the daemon: check that it refreshes (auto_refresh) and uses this daemon; payouts and deposits wait meanwhile.';
            detail := format('wallet height %s, daemon height %s: %s blocks behind',
                             wallet_height, daemon_height, daemon_height - wallet_height);
        ELSIF wallet_height > daemon_height + 2 THEN
            status := 'fail';
            advice := 'The wallet is ahead of the daemon: it follows another daemon or chain than compay.daemon_rpc_url.';
            detail := format('wallet height %s, daemon height %s', wallet_height, daemon_height);
        ELSE
            status := 'ok';
            advice := 'The wallet is synced with the daemon.';
            detail := format('wallet height %s, daemon height %s', wallet_height, daemon_height);
        END IF;
    END IF;
    RETURN NEXT;

    -- 4. The unlocked balance covers the payouts queued or built.
    SELECT * INTO ph FROM compay.payout_health(unlocked) h;
    name := 'unlocked balance';
    IF wallet_error IS NOT NULL THEN
        status := 'warn';
        advice := 'Cannot read the balance while the wallet does not answer: see the wallet check.';
        detail := format('queued %s XMR', ph.queued);
    ELSIF unlocked >= ph.queued THEN
        status := 'ok';
        advice := 'The unlocked balance covers the payouts queued.';
        detail := format('unlocked %s XMR of %s XMR, queued %s XMR', unlocked, total, ph.queued);
    ELSIF total >= ph.queued THEN
        status := 'warn';
        advice := 'Part of the balance is still locked: the queued payouts go once it unlocks (10 blocks).';
        detail := format('unlocked %s XMR of %s XMR, queued %s XMR', unlocked, total, ph.queued);
    ELSE
        status := 'fail';
        advice := 'Fund the treasury wallet: its balance does not cover the payouts queued.';
        detail := format('unlocked %s XMR of %s XMR, queued %s XMR', unlocked, total, ph.queued);
    END IF;
    RETURN NEXT;

    -- 5. Payouts stuck or failing.
    SELECT count(*) INTO n_failed FROM compay.payout_transactions p
    WHERE p.status = 'failed' AND p.failed_at > now() - interval '1 day';
    SELECT count(*) INTO n_adopted FROM compay.payout_transactions p
    WHERE p.adopted_at > now() - interval '1 day';
    name := 'payouts';
    IF ph.stuck_payout IS NOT NULL THEN
        SELECT CASE WHEN p.last_error IS NOT NULL THEN 'fail' ELSE 'warn' END INTO status
        FROM compay.payout_transactions p WHERE p.id = ph.stuck_payout;
        advice := CASE WHEN status = 'fail'
                       THEN 'A payout keeps failing: read its last_error in compay.pending_payouts and fix the wallet or the daemon.'
                       ELSE 'A payout waits for the unlocked balance: fund the wallet or wait for it to unlock.' END;
        detail := format('payout %s: %s', ph.stuck_payout, ph.stuck_reason);
    ELSIF n_adopted > 0 THEN
        status := 'warn';
        advice := 'Payouts were adopted from the wallet in the last day: their records had been lost (a failover?); nothing was paid twice, but check what else the lost records held.';
        detail := format('%s payout(s) adopted from the wallet in the last day', n_adopted);
    ELSIF n_failed > 0 THEN
        status := 'warn';
        advice := 'Payouts failed in the last day: their earnings were queued again; read compay.payment_trace for why.';
        detail := format('%s payout(s) failed in the last day', n_failed);
    ELSE
        status := 'ok';
        advice := 'No payout is stuck.';
        detail := format('%s open', (SELECT count(*) FROM compay.pending_payouts));
    END IF;
    RETURN NEXT;

    -- 6. Settlements failed (retrying, or given up).
    SELECT count(*), count(*) FILTER (WHERE f.gave_up) INTO n_failed, n_gave_up
    FROM compay.failed_settlements f;
    name := 'settlements';
    IF n_gave_up > 0 THEN
        status := 'fail';
        advice := 'Settlements gave up retrying: read compay.failed_settlements and call compay.retry_settlement() once fixed.';
    ELSIF n_failed > 0 THEN
        status := 'warn';
        advice := 'Settlements failed and will be retried: read their last_error in compay.failed_settlements.';
    ELSE
        status := 'ok';
        advice := 'No settlement failed.';
    END IF;
    detail := format('%s failed, %s given up', n_failed, n_gave_up);
    RETURN NEXT;

    -- 7. The ledger's invariants (compay.verify_ledger()).
    SELECT string_agg(v.check_name || ': ' || v.detail, '; ' ORDER BY v.check_name) FILTER (WHERE NOT v.ok),
           count(*) FILTER (WHERE NOT v.ok), count(*)
    INTO bad, n_failed, n_gave_up
    FROM compay.verify_ledger() v;
    name := 'ledger';
    IF n_failed > 0 THEN
        status := 'fail';
        advice := 'The ledger breaks an invariant: stop payouts (compay.payout_auto_relay = off) and read compay.verify_ledger().';
        detail := format('%s of %s checks fail: %s', n_failed, n_gave_up, bad);
    ELSE
        status := 'ok';
        advice := 'Every compay.verify_ledger() check holds.';
        detail := format('%s checks ok', n_gave_up);
    END IF;
    RETURN NEXT;

    -- 8. Settings that contradict each other.
    SELECT string_agg(c, '; ') INTO bad FROM compay.settings_contradictions() c;
    name := 'settings';
    IF bad IS NOT NULL THEN
        status := 'warn';
        advice := 'Settings contradict each other: change them as the detail says.';
        detail := bad;
    ELSE
        status := 'ok';
        advice := 'The payout settings agree with each other.';
        detail := NULL;
    END IF;
    RETURN NEXT;

    -- 9. A restore from seed sees every deposit subaddress (issue 16):
    -- the highest index compay used is not within a tenth of the lookahead.
    name := 'subaddresses';
    top_index := (SELECT max(s.address_index) FROM compay.deposit_subaddresses s);
    lookahead := compay.setting('compay.subaddress_lookahead')::integer;
    detail := format('highest deposit subaddress index %s, compay.subaddress_lookahead %s',
                     coalesce(top_index, 0), lookahead);
    IF coalesce(top_index, 0) >= lookahead - lookahead / 10 THEN
        status := 'warn';
        advice := format('Restore the treasury wallet with --subaddress-lookahead 50:%s or more (docs/operations.md), then raise compay.subaddress_lookahead to match.',
                         (coalesce(top_index, 0) + 1) * 2);
    ELSE
        status := 'ok';
        advice := 'A restore of the treasury wallet with compay.subaddress_lookahead sees every deposit subaddress.';
    END IF;
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION compay.diagnose() IS
    'one row per check of what payments need (runner, wallet, wallet sync, unlocked balance, payouts, settlements, ledger, settings, subaddresses): ok, warn or fail with one sentence of advice and the figures (calls the wallet and the daemon; not inside a transaction that holds ledger locks)';

REVOKE ALL ON FUNCTION compay.wallet_balance(), compay.wallet_transfers(integer),
    compay.verify_tx(text), compay.diagnose(), compay.typical_payout_fee(),
    compay.settings_contradictions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.wallet_balance(), compay.wallet_transfers(integer),
    compay.verify_tx(text), compay.diagnose() TO compay_admin;
