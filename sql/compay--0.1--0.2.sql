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
-- Overflow: running totals never overflow.  sum() and avg() carry past the
-- int128 range (only the result must fit); sum_atomic() gives any total as
-- a numeric count of atomic units; verify_ledger() sums with it, and
-- balance() caps available at the largest credit.
--------------------------------------------------------------------------

CREATE FUNCTION compay.credit_sum_atomic_final(internal) RETURNS numeric
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE compay.sum_atomic(compay.credit) (
    SFUNC = compay.credit_sum_accum, STYPE = internal, SSPACE = 32,
    FINALFUNC = compay.credit_sum_atomic_final,
    COMBINEFUNC = compay.credit_sum_combine,
    SERIALFUNC = compay.credit_sum_serialize,
    DESERIALFUNC = compay.credit_sum_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE compay.sum_atomic(compay.credit) IS
    'the exact sum as a numeric count of atomic units; never out of range';

CREATE OR REPLACE FUNCTION compay.verify_ledger()
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
       OR a.journal_seq <> coalesce(j.last_seq, 0) OR a.journal_seq <> coalesce(j.n, 0)
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
    -- 5. Every entry's hash chains from the one before; the newest is on the account.
    SELECT 'hash_chains_intact', count(*) = 0,
           coalesce('entries ' || string_agg(account_id || '/' || seq, ', ' ORDER BY account_id, seq),
                    'all chains intact')
    FROM (SELECT j.account_id, j.seq, j.hash,
                 compay.journal_entry_hash(
                     coalesce(lag(j.hash) OVER w,
                              '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea),
                     j.account_id, j.seq, j.kind::text, j.amount, j.balance_after, j.reserved_after,
                     j.transfer_id, j.hold_id, j.counterparty, j.created_at) AS expected,
                 lag(j.seq) OVER w AS prev_seq,
                 lead(j.seq) OVER w IS NULL AS newest
          FROM compay.journal j
          WINDOW w AS (PARTITION BY j.account_id ORDER BY j.seq)) e
    LEFT JOIN compay.accounts a ON a.id = e.account_id
    WHERE e.hash <> e.expected OR e.seq <> coalesce(e.prev_seq, 0) + 1
       OR a.id IS NULL OR (e.newest AND a.journal_hash <> e.hash)
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
    -- 8. Every settlement's count and total are those of its payments.
    SELECT 'settlements_match_payments', count(*) = 0,
           coalesce('settlements ' || string_agg(id::text, ', ' ORDER BY id), 'all settlements match')
    FROM (SELECT s.id
          FROM compay.settlements s
          LEFT JOIN (SELECT settlement_id, amount, 'primary' AS purpose FROM compay.payments
                     WHERE settlement_id IS NOT NULL
                     UNION ALL
                     SELECT settlement_id, reward_amount, 'verification' FROM compay.verifications
                     WHERE settlement_id IS NOT NULL) p
            ON p.settlement_id = s.id AND p.purpose = s.purpose
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
$$;

CREATE OR REPLACE FUNCTION compay.balance(node_id text, currency text DEFAULT 'CREDIT',
    OUT balance compay.credit, OUT reserved compay.credit, OUT available compay.credit,
    OUT credit_limit compay.credit, OUT credit_score numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT a.balance, a.reserved,
           -- balance - reserved fits for an ordinary account (it is at least
           -- -credit_limit); adding the limit may not: then the largest credit.
           CASE WHEN (a.flags & 1) <> 0 THEN NULL
                WHEN (a.balance OPERATOR(compay.-) a.reserved)
                     OPERATOR(compay.>) ('170141183460469231731687303.715884105727'::compay.credit
                                         OPERATOR(compay.-) a.credit_limit)
                THEN '170141183460469231731687303.715884105727'::compay.credit
                ELSE a.balance OPERATOR(compay.-) a.reserved OPERATOR(compay.+) a.credit_limit END,
           a.credit_limit, a.credit_score
    FROM compay.accounts a WHERE a.node_id = $1 AND a.currency = $2
$$;

