--------------------------------------------------------------------------
-- verify_ledger(): last, because it reads the tables of every section.
-- Sums are exact numeric counts of atomic units (compay.sum_atomic), so no
-- check can fail with an overflow: a total out of the credit range is a
-- mismatch to report, not an error that hides the other checks.
--------------------------------------------------------------------------

CREATE FUNCTION compay.verify_ledger()
RETURNS TABLE (check_name text, ok boolean, detail text)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    -- 1. Per currency, all balances (system accounts included) sum to zero.
    SELECT 'balances_sum_to_zero', bool_and(total = 0),
           coalesce(string_agg(currency || ' sums to ' || trim_scale(total * 0.000000000001)::text, ', ')
                    FILTER (WHERE total <> 0), 'every currency sums to zero')
    FROM (SELECT currency, compay.sum_atomic(balance) AS total FROM compay.accounts GROUP BY currency
          UNION ALL SELECT NULL, 0 WHERE NOT EXISTS (SELECT 1 FROM compay.accounts)) s
    UNION ALL
    -- 2. Every balance equals the sum of its journal, and so does reserved.
    SELECT 'balances_match_journal', count(*) = 0,
           coalesce('accounts ' || string_agg(a.id::text, ', ' ORDER BY a.id), 'all accounts match')
    FROM compay.accounts a
    LEFT JOIN (SELECT account_id,
                      compay.sum_atomic(amount) FILTER (WHERE kind IN ('debit', 'credit', 'refund')) AS b,
                      compay.sum_atomic(amount) FILTER (WHERE kind IN ('reserve', 'release')) AS r,
                      max(seq) AS last_seq, count(*) AS n
               FROM compay.journal GROUP BY account_id) j ON j.account_id = a.id
    WHERE compay.atomic(a.balance) <> coalesce(j.b, 0)
       OR compay.atomic(a.reserved) <> coalesce(j.r, 0)
       OR coalesce(j.last_seq, 0) <> coalesce(j.n, 0)
    UNION ALL
    -- 3. Every reserved amount equals the remaining of its pending holds.
    SELECT 'reserved_matches_holds', count(*) = 0,
           coalesce('accounts ' || string_agg(a.id::text, ', ' ORDER BY a.id), 'all accounts match')
    FROM compay.accounts a
    LEFT JOIN (SELECT account_id, compay.sum_atomic(remaining) AS r FROM compay.holds
               WHERE status = 'pending' GROUP BY account_id) h ON h.account_id = a.id
    WHERE compay.atomic(a.reserved) <> coalesce(h.r, 0)
    UNION ALL
    -- 4. No ordinary account is past its credit limit.
    SELECT 'accounts_within_limits', count(*) = 0,
           coalesce('accounts ' || string_agg(id::text, ', ' ORDER BY id), 'all accounts within limits')
    FROM compay.accounts
    WHERE (flags & 1) = 0
      AND compay.atomic(balance) - compay.atomic(reserved) + compay.atomic(credit_limit) < 0
    UNION ALL
    -- 5. Every entry's hash chains from the one before.  The newest is the
    -- chain head the account's next entry chains from; an entry removed from
    -- the end is found by the sums (checks 2, 6 and 7: every entry moves money).
    SELECT 'hash_chains_intact', count(*) = 0,
           coalesce('entries ' || string_agg(account_id || '/' || seq, ', ' ORDER BY account_id, seq),
                    'all chains intact')
    FROM (SELECT j.account_id, j.seq, j.hash,
                 compay.journal_entry_hash(
                     coalesce(lag(j.hash) OVER w,
                              '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea),
                     j.account_id, j.seq, j.kind::text, j.amount, j.balance_after, j.reserved_after,
                     j.transfer_id, j.hold_id, j.counterparty, j.created_at) AS expected,
                 lag(j.seq) OVER w AS prev_seq
          FROM compay.journal j
          WINDOW w AS (PARTITION BY j.account_id ORDER BY j.seq)) e
    LEFT JOIN compay.accounts a ON a.id = e.account_id
    WHERE e.hash <> e.expected OR e.seq <> coalesce(e.prev_seq, 0) + 1
       OR a.id IS NULL
    UNION ALL
    -- 6. Every transfer's balance entries net to zero, and each has its entries.
    SELECT 'transfers_balanced', count(*) = 0,
           coalesce('transfers ' || string_agg(id::text, ', ' ORDER BY id), 'all transfers balanced')
    FROM (SELECT t.id
          FROM compay.transfers t
          LEFT JOIN compay.journal j ON j.transfer_id = t.id
          GROUP BY t.id, t.amount, t.barter_amount, t.kind
          HAVING coalesce(compay.sum_atomic(j.amount) FILTER (WHERE j.kind <> 'barter'), 0) <> 0
              OR coalesce(compay.sum_atomic(j.amount) FILTER (WHERE j.kind <> 'barter'
                                                               AND j.amount OPERATOR(compay.>) '0'), 0)
                 <> CASE WHEN t.kind = 'barter' THEN 0
                         ELSE compay.atomic(t.amount) - compay.atomic(t.barter_amount) END) bad
    UNION ALL
    -- 7. Barter positions in the journal match compay.barter_credits.
    SELECT 'barter_matches_journal', count(*) = 0,
           coalesce('accounts ' || string_agg(id::text, ', ' ORDER BY id), 'all barter positions match')
    FROM (SELECT a.id
          FROM compay.accounts a
          LEFT JOIN (SELECT account_id, compay.sum_atomic(amount) AS j FROM compay.journal
                     WHERE kind = 'barter' GROUP BY account_id) j ON j.account_id = a.id
          LEFT JOIN (SELECT holder_account AS id, amount FROM compay.barter_credits
                     UNION ALL
                     SELECT counterparty_account, OPERATOR(compay.-) amount FROM compay.barter_credits) b
                 ON b.id = a.id
          GROUP BY a.id, j.j
          HAVING coalesce(j.j, 0) <> coalesce(compay.sum_atomic(b.amount), 0)) bad
    UNION ALL
    -- 8. Every settlement's count and total are those of its payments
    --     (compay.payment_settlement, set-based: stamped, or found in the
    --     settlements of its payee, currency and period by the period kinds
    --     runs used, then by the window of the settlement's run; hash joins,
    --     linear in the payments).
    SELECT 'settlements_match_payments', count(*) = 0,
           coalesce('settlements ' || string_agg(id::text, ', ' ORDER BY id), 'all settlements match')
    FROM (SELECT s.id
          FROM compay.settlements s
          LEFT JOIN (SELECT settlement_id, amount, 'primary' AS purpose FROM compay.payments
                     WHERE settlement_id IS NOT NULL
                     UNION ALL
                     SELECT w.settlement_id, w.amount, 'primary'
                     FROM (SELECT s.id AS settlement_id, p.amount, p.id, j.task_type, s.run_id,
                                  s.payee, s.currency, s.period_start, s.job_type
                           -- Each payment's period start per period kind first
                           -- (OFFSET 0: planned apart), so that the settlements
                           -- are joined on all of payee, currency and period.
                           FROM (SELECT p.id, p.amount, p.to_node, p.currency, p.task_id,
                                        p.completed_at, k.period,
                                        compay.period_start(k.period, p.completed_at) AS ps
                                 FROM compay.payments p
                                 CROSS JOIN (SELECT DISTINCT period FROM compay.settlement_runs) k
                                 WHERE p.settlement_id IS NULL AND p.status <> 'failed'
                                   AND NOT EXISTS (SELECT 1 FROM compay.settlement_exceptions x
                                                   WHERE x.payment_id = p.id)
                                 OFFSET 0) p
                           JOIN (SELECT s.id, s.run_id, s.payee, s.currency, s.period,
                                        s.period_start, s.job_type, r.window_start, r.window_end
                                 FROM compay.settlements s
                                 JOIN compay.settlement_runs r ON r.id = s.run_id
                                 WHERE s.purpose = 'primary'
                                 OFFSET 0) s
                             ON s.payee = p.to_node AND s.currency = p.currency
                            AND s.period = p.period AND s.period_start = p.ps
                            AND p.completed_at >= s.window_start AND p.completed_at < s.window_end
                           LEFT JOIN compay.jobs j ON j.task_id = p.task_id) w
                     -- Of its job type's settlement when the run made one, else of the other.
                     WHERE w.job_type = w.task_type
                        OR (w.job_type IS NULL
                            AND NOT EXISTS (SELECT 1 FROM compay.settlements o
                                            WHERE o.run_id = w.run_id AND o.payee = w.payee
                                              AND o.currency = w.currency
                                              AND o.period_start = w.period_start
                                              AND o.purpose = 'primary'
                                              AND w.task_type IS NOT NULL
                                              AND o.job_type = w.task_type))
                     UNION ALL
                     SELECT settlement_id, reward_amount, 'verification' FROM compay.verifications
                     WHERE settlement_id IS NOT NULL
                     UNION ALL
                     SELECT settlement_id, reward_amount, 'verification' FROM compay.clearing_rewards
                     WHERE settlement_id IS NOT NULL) p
            ON p.settlement_id = s.id AND p.purpose = s.purpose
          WHERE s.purpose <> 'operational'          -- withdrawals: check 18
          GROUP BY s.id, s.payment_count, s.total_amount
          HAVING count(p.amount) <> s.payment_count
              OR coalesce(compay.sum_atomic(p.amount), 0) <> compay.atomic(s.total_amount)) bad
    UNION ALL
    -- 9. The requesters' daily volumes match their paid payments.
    SELECT 'requester_volume_matches_payments', count(*) = 0,
           coalesce('requesters ' || string_agg(DISTINCT from_node, ', '), 'all requester volumes match')
    FROM (SELECT coalesce(v.from_node, p.from_node) AS from_node
          FROM compay.requester_volume v
          FULL JOIN (SELECT from_node, (completed_at AT TIME ZONE 'UTC')::date AS day,
                            count(*) AS payments
                     FROM compay.payments
                     WHERE status IN ('completed', 'disputed') AND completed_at IS NOT NULL
                     GROUP BY 1, 2) p
            ON p.from_node = v.from_node AND p.day = v.day
          WHERE coalesce(v.payments, 0) <> coalesce(p.payments, 0)) bad
    UNION ALL
    -- 10. Every payout's amount is the sum of its items, and every item's
    --     the sum of its parts (what it pays of each settlement).
    SELECT 'payouts_match_parts', count(*) = 0,
           coalesce('payouts ' || string_agg(DISTINCT id::text, ', '), 'all payouts match their parts')
    FROM (SELECT p.id
          FROM compay.payout_transactions p
          LEFT JOIN (SELECT payout_id, compay.sum_atomic(amount) AS a FROM compay.payout_items
                     GROUP BY payout_id) i ON i.payout_id = p.id
          WHERE compay.atomic(p.amount) <> coalesce(i.a, 0)
          UNION ALL
          SELECT i.payout_id
          FROM compay.payout_items i
          LEFT JOIN (SELECT payout_id, node_id, address, compay.sum_atomic(amount) AS a
                     FROM compay.payout_parts GROUP BY payout_id, node_id, address) pp
            ON pp.payout_id = i.payout_id AND pp.node_id = i.node_id AND pp.address = i.address
          WHERE compay.atomic(i.amount) <> coalesce(pp.a, 0)) bad
    UNION ALL
    -- 11. The parts of a settlement (in payouts that did not fail) never
    --     exceed its total, and are its payee's, in XMR.
    SELECT 'payout_parts_within_settlements', count(*) = 0,
           coalesce('settlements ' || string_agg(id::text, ', ' ORDER BY id),
                    'no settlement paid out beyond its total')
    FROM (SELECT s.id
          FROM compay.settlements s
          JOIN compay.payout_parts pp ON pp.settlement_id = s.id
          JOIN compay.payout_transactions p ON p.id = pp.payout_id
          GROUP BY s.id, s.total_amount, s.currency, s.payee
          HAVING coalesce(compay.sum_atomic(pp.amount) FILTER (WHERE p.status <> 'failed'), 0)
                 > compay.atomic(s.total_amount)
              OR s.currency <> 'XMR' OR bool_or(pp.node_id <> s.payee)) bad
    UNION ALL
    -- 12. A completed XMR settlement has nothing left earmarked and no part
    --     still open, and its total is accounted for exactly: its confirmed
    --     parts, what it repaid of its payee's clawbacks (references
    --     'clawback:<id> settlement:<id>') and what its payee refunded of
    --     its payments until it completed (from the balance before it was
    --     earmarked, from its earmark hold after: compay.resolve_dispute).
    SELECT 'completed_settlements_paid_out', count(*) = 0,
           coalesce('settlements ' || string_agg(id::text, ', ' ORDER BY id),
                    'every completed XMR settlement is paid out')
    FROM (SELECT s.id
          FROM compay.settlements s
          LEFT JOIN compay.holds h ON h.id = s.earmark_hold_id
          LEFT JOIN (SELECT pp.settlement_id,
                            compay.sum_atomic(pp.amount) FILTER (WHERE p.status = 'confirmed') AS confirmed,
                            count(*) FILTER (WHERE p.status IN ('queued', 'built', 'relayed')) AS open
                     FROM compay.payout_parts pp
                     JOIN compay.payout_transactions p ON p.id = pp.payout_id
                     GROUP BY pp.settlement_id) c ON c.settlement_id = s.id
          LEFT JOIN (SELECT substring(reference FROM ' settlement:([0-9]+)$')::bigint AS settlement_id,
                            compay.sum_atomic(amount) AS repaid
                     FROM compay.transfers WHERE reference LIKE 'clawback:% settlement:%'
                     GROUP BY 1) r ON r.settlement_id = s.id
          LEFT JOIN LATERAL (
              SELECT compay.sum_atomic(t.amount) AS refunded
              FROM compay.settlement_payments(s) y
              JOIN compay.transfers t ON t.refund_of = y.transfer_id AND t.kind = 'refund'
              JOIN compay.accounts a ON a.id = t.from_account
              WHERE a.node_id = s.payee
                AND t.created_at <= s.completed_at) f ON true
          WHERE s.currency = 'XMR' AND s.status = 'completed'
            AND ((h.status = 'pending' AND h.remaining OPERATOR(compay.>) '0')
                 OR coalesce(c.open, 0) > 0
                 OR coalesce(c.confirmed, 0) + coalesce(r.repaid, 0) + coalesce(f.refunded, 0)
                    <> compay.atomic(s.total_amount))) bad
    UNION ALL
    -- 13. A built, relayed or confirmed payout's withdrawals in the ledger
    --     are its amount (and its fee, when $fees paid it); a queued one
    --     has none; a voided one got all of them back.
    SELECT 'payouts_match_ledger', count(*) = 0,
           coalesce('payouts ' || string_agg(id::text, ', ' ORDER BY id), 'all payouts match the ledger')
    FROM (SELECT p.id
          FROM compay.payout_transactions p
          LEFT JOIN LATERAL (
              SELECT coalesce(compay.sum_atomic(t.amount) FILTER (WHERE t.reference = 'payout:' || p.id), 0) AS paid,
                     coalesce(compay.sum_atomic(t.amount) FILTER (WHERE t.reference = 'payout:' || p.id || ' fee'), 0) AS fee,
                     coalesce(compay.sum_atomic(t.amount), 0) AS total
              FROM compay.transfers t
              WHERE t.kind = 'withdrawal' AND t.reference IN ('payout:' || p.id, 'payout:' || p.id || ' fee')) w
            ON true
          LEFT JOIN LATERAL (
              SELECT coalesce(compay.sum_atomic(t.amount), 0) AS returned
              FROM compay.transfers t
              WHERE t.kind = 'deposit' AND t.reference = 'payout:' || p.id || ' returned') r
            ON true
          WHERE CASE WHEN p.status IN ('built', 'relayed', 'confirmed') THEN
                         w.paid <> compay.atomic(p.amount)
                         OR w.fee <> CASE WHEN p.fee_from = '$fees' THEN compay.atomic(p.fee) ELSE 0 END
                     WHEN p.status = 'queued' THEN w.total <> 0
                     ELSE w.total <> r.returned END) bad
    UNION ALL
    -- 14. What each shortfall says was collected is what its payments
    -- moved: transfers of its currency from the requester to the provider,
    -- each of its payment's amount.
    SELECT 'shortfalls_match_transfers', count(*) = 0,
           coalesce('shortfalls ' || string_agg(id::text, ', ' ORDER BY id), 'all shortfalls match')
    FROM (SELECT s.id
          FROM compay.shortfalls s
          LEFT JOIN (SELECT p.metadata ->> 'shortfall_id' AS shortfall_id, p.amount AS paid,
                            t.amount, t.kind, t.currency, fa.node_id AS from_node,
                            ta.node_id AS to_node
                     FROM compay.payments p
                     LEFT JOIN compay.transfers t ON t.id = p.transfer_id
                     LEFT JOIN compay.accounts fa ON fa.id = t.from_account
                     LEFT JOIN compay.accounts ta ON ta.id = t.to_account
                     WHERE p.metadata ? 'shortfall_id') c ON c.shortfall_id = s.id::text
          GROUP BY s.id, s.collected
          HAVING coalesce(compay.sum_atomic(c.amount), 0) <> compay.atomic(s.collected)
              OR coalesce(bool_or(c.shortfall_id IS NOT NULL
                                  AND (c.amount IS NULL OR c.amount <> c.paid
                                       OR c.kind <> 'transfer' OR c.currency <> s.currency
                                       OR c.from_node <> s.requester OR c.to_node <> s.provider)),
                          false)) bad
    UNION ALL
    -- 15. What the payees owe of their clawbacks is what $clawbacks fronted
    --     and has not got back: per currency its balance is minus what is
    --     owed; each clawback's amount is its refund's, its repaid the sum of
    --     its repayments (references 'clawback:<id> settlement:<id>').
    SELECT 'clawbacks_match_ledger', count(*) = 0,
           coalesce(string_agg(what, ', '), 'all clawbacks match')
    FROM (SELECT 'currency ' || coalesce(a.currency, c.currency) AS what
          FROM (SELECT currency, sum(compay.atomic(balance)) AS b FROM compay.accounts
                WHERE node_id = ANY (compay.system_account_rows('$clawbacks'))
                GROUP BY currency) a
          FULL JOIN (SELECT currency, sum(compay.atomic(amount) - compay.atomic(repaid)) AS owed
                     FROM compay.clawbacks GROUP BY currency) c ON c.currency = a.currency
          WHERE coalesce(a.b, 0) <> -coalesce(c.owed, 0)
          UNION ALL
          SELECT 'clawback ' || c.id
          FROM compay.clawbacks c
          LEFT JOIN compay.transfers t ON t.id = c.transfer_id
          LEFT JOIN (SELECT substring(reference FROM '^clawback:([0-9]+) ')::bigint AS id,
                            compay.sum_atomic(amount) AS repaid
                     FROM compay.transfers WHERE reference LIKE 'clawback:%' GROUP BY 1) r
            ON r.id = c.id
          WHERE t.id IS NULL OR compay.atomic(t.amount) <> compay.atomic(c.amount)
             OR compay.atomic(c.repaid) <> coalesce(r.repaid, 0)) bad
    UNION ALL
    -- 16. A settlement holds back exactly its disputed payments.
    SELECT 'held_back_matches_disputes', count(*) = 0,
           coalesce('settlements ' || string_agg(id::text, ', ' ORDER BY id), 'all settlements match')
    FROM (SELECT s.id
          FROM compay.settlements s
          LEFT JOIN (SELECT compay.payment_settlement(p) AS settlement_id, p.amount
                     FROM compay.payments p WHERE p.status = 'disputed') p
            ON p.settlement_id = s.id
          GROUP BY s.id, s.held_back
          HAVING coalesce(compay.sum_atomic(p.amount), 0) <> compay.atomic(s.held_back)) bad
    UNION ALL
    -- 17. Deposits match the wallet's outputs: each compay.xmr_deposits row
    -- (an output, by tx hash and global output index, credited once) has a
    -- credit of its own, of exactly its amount, to its node's XMR account;
    -- every wallet deposit credit in the ledger (an XMR deposit with
    -- reference xmr:<tx hash> that compay_admin did not make) has its row.
    SELECT 'deposits_match_wallet_outputs', count(*) = 0,
           coalesce(string_agg(what, ', ' ORDER BY what), 'all deposits match their outputs')
    FROM (SELECT 'output ' || x.tx_hash || ':' || x.global_index AS what
          FROM (SELECT x.*, count(*) OVER (PARTITION BY x.transfer_id) AS per_transfer,
                       count(*) OVER (PARTITION BY x.global_index) AS per_output
                FROM compay.xmr_deposits x) x
          LEFT JOIN compay.transfers t ON t.id = x.transfer_id
          LEFT JOIN compay.accounts a ON a.id = t.to_account
          WHERE t.id IS NULL OR t.kind <> 'deposit' OR t.currency <> 'XMR'
             OR t.amount OPERATOR(compay.<>) x.amount
             OR t.reference IS DISTINCT FROM 'xmr:' || x.tx_hash
             OR a.node_id IS DISTINCT FROM x.node_id OR a.currency IS DISTINCT FROM 'XMR'
             OR x.per_transfer > 1 OR x.per_output > 1
          UNION ALL
          SELECT 'transfer ' || t.id
          FROM compay.transfers t
          WHERE t.kind = 'deposit' AND t.currency = 'XMR' AND t.reference LIKE 'xmr:%'
            AND NOT EXISTS (SELECT 1 FROM compay.admin_journal j WHERE j.transfer_id = t.id)
            AND NOT EXISTS (SELECT 1 FROM compay.xmr_deposits x WHERE x.transfer_id = t.id)) bad
    UNION ALL
    -- 18. A withdrawal (a settlement of purpose operational, no payments
    --     behind it) is of XMR and its total is what its first earmark
    --     hold (reference settlement:<id>) took from its payee's account.
    SELECT 'withdrawals_match_holds', count(*) = 0,
           coalesce('settlements ' || string_agg(id::text, ', ' ORDER BY id),
                    'all withdrawals match their holds')
    FROM (SELECT s.id
          FROM compay.settlements s
          LEFT JOIN LATERAL (
              SELECT h.amount, a.node_id, a.currency
              FROM compay.holds h JOIN compay.accounts a ON a.id = h.account_id
              WHERE h.reference = 'settlement:' || s.id
              ORDER BY h.id LIMIT 1) h ON true
          WHERE s.purpose = 'operational'
            AND (s.payment_count <> 0 OR s.currency <> 'XMR' OR h.amount IS NULL
                 OR h.amount OPERATOR(compay.<>) s.total_amount
                 OR h.node_id <> s.payee OR h.currency <> 'XMR'
                 OR EXISTS (SELECT 1 FROM compay.payments p WHERE p.settlement_id = s.id)
                 OR EXISTS (SELECT 1 FROM compay.verifications v WHERE v.settlement_id = s.id))) bad
    UNION ALL
    -- 19. A deposit request (src/deposit_request.sql) has received exactly
    -- the outputs credited to its subaddress, which no node's static
    -- deposit address shares; it is confirmed once they cover its amount
    -- (unless it expired first); a job awaiting its deposit has an open
    -- request.
    SELECT 'deposit_requests_match_outputs', count(*) = 0,
           coalesce(string_agg(what, ', ' ORDER BY what), 'all deposit requests match their outputs')
    FROM (SELECT 'request ' || r.id AS what
          FROM compay.deposit_requests r
          LEFT JOIN (SELECT x.address_index, compay.sum_atomic(x.amount) AS total
                     FROM compay.xmr_deposits x GROUP BY x.address_index) x
                 ON x.address_index = r.address_index
          WHERE compay.atomic(r.received) <> coalesce(x.total, 0)
             OR (r.state <> 'expired' AND (r.state = 'confirmed') <> (r.received >= r.amount))
             OR EXISTS (SELECT 1 FROM compay.deposit_addresses d WHERE d.address_index = r.address_index)
          UNION ALL
          SELECT 'job ' || j.task_id
          FROM compay.jobs j
          WHERE j.status::text = 'awaiting_deposit'
            AND NOT EXISTS (SELECT 1 FROM compay.deposit_requests r
                            WHERE r.job_id = j.id AND r.state IN ('pending', 'seen', 'partial'))) bad
    UNION ALL
    -- 20. Every stripe row of a system account ('$name#1' to '$name#63',
    --     src/ledger_stripes.c) is a system account with no credit limit and
    --     nothing reserved; with checks 1, 2 and 5 each row, and so each
    --     system account's sum (compay.system_balances), is proved.
    SELECT 'system_account_stripes', count(*) = 0,
           coalesce('accounts ' || string_agg(id::text, ', ' ORDER BY id), 'all stripe rows well formed')
    FROM compay.accounts
    WHERE node_id LIKE '$%#%'
      AND (node_id !~ '^[$][^#]+#([1-9]|[1-5][0-9]|6[0-3])$' OR (flags & 1) = 0
           OR compay.atomic(credit_limit) <> 0 OR compay.atomic(reserved) <> 0)
    UNION ALL
    -- 21. Cross-shard clearing (src/shard.sql): each '$clearing:N' account
    --     holds what this shard sent to shard N (compay.clearing_sent) less
    --     what it applied from N (compay.clearing_applied), and each of those
    --     rows is the transfer it names, into or out of that account.  With
    --     no shard configured there is neither row nor account.
    SELECT 'clearing_accounts_match_events', count(*) = 0,
           coalesce(string_agg(what, ', ' ORDER BY what), 'all clearing accounts match their events')
    FROM (SELECT k.node_id || ' ' || k.currency AS what
          FROM (SELECT node_id, currency FROM compay.system_balances WHERE node_id LIKE '$clearing:%'
                UNION SELECT '$clearing:' || to_shard, currency FROM compay.clearing_sent
                UNION SELECT '$clearing:' || from_shard, currency FROM compay.clearing_applied) k
          LEFT JOIN compay.system_balances b ON b.node_id = k.node_id AND b.currency = k.currency
          WHERE coalesce(b.balance, '0') <>
                coalesce((SELECT compay.sum(s.amount) FROM compay.clearing_sent s
                          WHERE '$clearing:' || s.to_shard = k.node_id AND s.currency = k.currency), '0')
                - coalesce((SELECT compay.sum(p.amount) FROM compay.clearing_applied p
                            WHERE '$clearing:' || p.from_shard = k.node_id AND p.currency = k.currency), '0')
          UNION ALL
          SELECT 'sent transfer ' || s.transfer_id
          FROM compay.clearing_sent s
          WHERE NOT EXISTS (SELECT 1 FROM compay.transfers t JOIN compay.accounts a ON a.id = t.to_account
                            WHERE t.id = s.transfer_id AND t.amount = s.amount AND t.currency = s.currency
                              AND split_part(a.node_id, '#', 1) = '$clearing:' || s.to_shard)
          UNION ALL
          SELECT 'applied event ' || p.from_shard || '/' || p.event_id
          FROM compay.clearing_applied p
          WHERE NOT EXISTS (SELECT 1 FROM compay.transfers t
                            JOIN compay.accounts f ON f.id = t.from_account
                            JOIN compay.accounts a ON a.id = t.to_account
                            WHERE t.id = p.transfer_id AND t.amount = p.amount
                              AND t.currency = p.currency AND a.node_id = p.payee
                              AND split_part(f.node_id, '#', 1) = '$clearing:' || p.from_shard)) bad
$$;
COMMENT ON FUNCTION compay.verify_ledger() IS
    'checks every ledger invariant; each row is one check';
REVOKE ALL ON FUNCTION compay.verify_ledger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.verify_ledger() TO compay_reader;
