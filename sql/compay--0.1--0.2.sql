-- compay 0.1 -> 0.2: ALTER EXTENSION compay UPDATE TO '0.2'.
-- Every change of 0.2 to what 0.1 created; a fresh 0.2 install
-- (src/*.sql) and a 0.1 database updated by this script give the same
-- database (test/t/012_upgrade.pl compares them from the catalogs).

\echo Use "ALTER EXTENSION compay UPDATE TO '0.2'" to load this file. \quit

-- compay.setting(): first, since the functions and views below read the
-- compay.* settings with it (see the section on settings further down).
CREATE FUNCTION compay.setting(name text) RETURNS text
    AS 'MODULE_PATHNAME', 'compay_setting' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.setting(text) IS
    'current_setting() of a compay.* setting, with the library loaded first: works as the first call of a session';

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

--------------------------------------------------------------------------
-- Inputs: node ids without blanks or control characters everywhere
-- (compay.check_node_id, the ledger's rule); over-long task and sample ids,
-- references and reasons, and infinite times are 22023; submit_job keeps
-- its timeout so that a resubmission with another one is PY005.
-- Metering: record_usage refuses (22023) a sample that pricing could not
-- price (compay.check_price, compay.check_usage, against running totals in
-- compay.usage_totals); a payment at quorum that still fails fails the job
-- at once, returns the escrow and keeps the error in jobs.payment_error.
--------------------------------------------------------------------------

ALTER TABLE compay.jobs ADD COLUMN timeout interval, ADD COLUMN payment_error text;
-- Jobs of 0.1 were held for timeout_at - created_at (both now() of the
-- submitting transaction).
UPDATE compay.jobs SET timeout = timeout_at - created_at
WHERE max_amount IS NOT NULL AND timeout_at IS NOT NULL;

-- Running totals of each task's samples, kept by record_usage under the
-- job row lock: a sample is checked against the sum so far in constant
-- time, not by reading every sample before it.  Numeric throughout (byte
-- counts too); record_usage keeps them within what task_metrics() and
-- price() can take.
CREATE TABLE compay.usage_totals (
    job_id             bigint PRIMARY KEY REFERENCES compay.jobs (id),
    cpu_seconds        numeric NOT NULL,
    memory_byte_hours  numeric NOT NULL,
    storage_byte_hours numeric NOT NULL,
    network_bytes_in   numeric NOT NULL,
    network_bytes_out  numeric NOT NULL,
    gpu_seconds        numeric NOT NULL,
    custom             jsonb NOT NULL
);
COMMENT ON TABLE compay.usage_totals IS
    'the sum of each task''s usage samples, kept as they are recorded';
SELECT pg_catalog.pg_extension_config_dump('compay.usage_totals', '');
REVOKE ALL ON compay.usage_totals FROM PUBLIC;
GRANT SELECT ON compay.usage_totals TO compay_reader;
-- The totals of the samples recorded under 0.1 (which may be past what
-- 0.2 accepts: such a task fails at payment, with the error on the job).
INSERT INTO compay.usage_totals
SELECT s.job_id, sum(s.cpu_seconds), sum(s.memory_byte_hours), sum(s.storage_byte_hours),
       sum(s.network_bytes_in), sum(s.network_bytes_out), sum(s.gpu_seconds),
       coalesce((SELECT jsonb_object_agg(c.key, c.q)
                 FROM (SELECT e.key, sum(e.value::numeric) AS q
                       FROM compay.usage_samples x, jsonb_each(x.custom) e
                       WHERE x.job_id = s.job_id GROUP BY e.key) c), '{}')
FROM compay.usage_samples s GROUP BY s.job_id;

CREATE FUNCTION compay.check_node_id(node_id text) RETURNS text
    AS 'MODULE_PATHNAME', 'compay_check_node_id'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION compay.check_node_id(text) IS
    'returns the node id, or raises 22023 unless it has 1 to 200 characters, no control character, no white space at either end and no leading $';

CREATE FUNCTION compay.check_price(metrics compay.resource_metrics, task_type text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'compay_check_price'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION compay.check_price(compay.resource_metrics, text) IS
    'raises 22023 unless price() can price the metrics for the task type: known custom metrics, a price (before any volume discount) within the credit range';
REVOKE ALL ON FUNCTION compay.check_price(compay.resource_metrics, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.check_price(compay.resource_metrics, text) TO compay_reader;

CREATE FUNCTION compay.check_usage(j compay.jobs, metrics compay.resource_metrics)
RETURNS compay.usage_totals
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    t compay.usage_totals;
BEGIN
    SELECT * INTO t FROM compay.usage_totals WHERE job_id = j.id;
    IF NOT FOUND THEN
        t := ROW(j.id, 0, 0, 0, 0, 0, 0, '{}');
    END IF;
    t.cpu_seconds := t.cpu_seconds + coalesce(metrics.cpu_seconds, 0);
    t.memory_byte_hours := t.memory_byte_hours + coalesce(metrics.memory_byte_hours, 0);
    t.storage_byte_hours := t.storage_byte_hours + coalesce(metrics.storage_byte_hours, 0);
    t.network_bytes_in := t.network_bytes_in + coalesce(metrics.network_bytes_in, 0);
    t.network_bytes_out := t.network_bytes_out + coalesce(metrics.network_bytes_out, 0);
    t.gpu_seconds := t.gpu_seconds + coalesce(metrics.gpu_seconds, 0);
    t.custom := (SELECT coalesce(jsonb_object_agg(c.key, c.q), '{}')
                 FROM (SELECT e.key, sum(e.value::numeric) AS q
                       FROM (SELECT * FROM jsonb_each(t.custom)
                             UNION ALL
                             SELECT * FROM jsonb_each(metrics.custom)) e
                       GROUP BY e.key) c);
    IF t.network_bytes_in > 9223372036854775807 OR t.network_bytes_out > 9223372036854775807 THEN
        RAISE EXCEPTION 'usage of task "%" would exceed 2^63 - 1 network bytes', left(j.task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('With this sample the task would total %s bytes in and %s out.',
                                  t.network_bytes_in, t.network_bytes_out);
    END IF;
    -- A job type's reward (compute_reward()) does not price the usage.
    IF NOT EXISTS (SELECT 1 FROM compay.job_types WHERE job_type = j.task_type) THEN
        PERFORM compay.check_price(
            ROW(t.cpu_seconds, t.memory_byte_hours, t.storage_byte_hours, t.network_bytes_in,
                t.network_bytes_out, t.gpu_seconds, t.custom)::compay.resource_metrics,
            j.task_type);
    END IF;
    RETURN t;
END $$;

REVOKE ALL ON FUNCTION compay.check_usage(compay.jobs, compay.resource_metrics) FROM PUBLIC;

CREATE OR REPLACE FUNCTION compay.lock_job(task_id text, share boolean DEFAULT false) RETURNS compay.jobs
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(task_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a task id has 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF share THEN
        SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = lock_job.task_id FOR SHARE;
    ELSE
        SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = lock_job.task_id FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task "%" does not exist', left(task_id, 64) USING ERRCODE = 'PY010',
            HINT = 'Submit it first with compay.submit_job() or compay.submit_task().';
    END IF;
    RETURN j;
END $$;

CREATE OR REPLACE FUNCTION compay.task_metrics(task_id text) RETURNS compay.resource_metrics
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_job bigint;
    m compay.resource_metrics;
BEGIN
    IF length(task_id) > 200 THEN
        RAISE EXCEPTION 'a task id has 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT id INTO v_job FROM compay.jobs WHERE jobs.task_id = task_metrics.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task "%" does not exist', left(coalesce(task_id, 'NULL'), 64)
            USING ERRCODE = 'PY010';
    END IF;
    SELECT coalesce(sum(cpu_seconds), 0), coalesce(sum(memory_byte_hours), 0),
           coalesce(sum(storage_byte_hours), 0), coalesce(sum(network_bytes_in), 0),
           coalesce(sum(network_bytes_out), 0), coalesce(sum(gpu_seconds), 0),
           coalesce((SELECT jsonb_object_agg(key, total ORDER BY key)
                     FROM (SELECT c.key, sum(c.value::numeric) AS total
                           FROM compay.usage_samples s, jsonb_each(s.custom) c
                           WHERE s.job_id = v_job GROUP BY c.key) t), '{}')
    INTO m
    FROM compay.usage_samples WHERE job_id = v_job;
    RETURN m;
END $$;

COMMENT ON FUNCTION compay.verify_job(text, text, boolean, numeric) IS
    'records one verifier''s vote; at compay.verification_quorum passes the job is paid from its escrow and the passing verifiers rewarded, at as many failures the escrow goes back to the requester; a payment that fails with a data error fails the job (payment_error) and returns the escrow';

--------------------------------------------------------------------------
-- Security: wallet-backed currencies (XMR) are credited only by the
-- wallet's deposits (compay.deposit_from_wallet, called by
-- compay.record_deposits) or by compay_admin with a reason journaled in
-- compay.admin_journal (compay.admin_deposit); a credit limit other than
-- the default needs compay_admin.  Node roles: compay_node, the mapping
-- compay.node_roles, and the check compay.require_node() inside every
-- money function.
--------------------------------------------------------------------------

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'compay_node') THEN
        CREATE ROLE compay_node NOLOGIN;
    END IF;
END
$roles$;

CREATE TABLE compay.node_roles (
    role_name  name NOT NULL,
    node_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (role_name, node_id)
);
CREATE INDEX node_roles_node ON compay.node_roles (node_id);
COMMENT ON TABLE compay.node_roles IS
    'the nodes each role that is not compay_app (a compay_node role) may act for';
SELECT pg_catalog.pg_extension_config_dump('compay.node_roles', '');
REVOKE ALL ON compay.node_roles FROM PUBLIC;
GRANT SELECT ON compay.node_roles TO compay_reader;

CREATE FUNCTION compay.require_node(node_id text, write boolean DEFAULT true) RETURNS void
    AS 'MODULE_PATHNAME', 'compay_require_node'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION compay.require_node(text, boolean) IS
    '42501 unless the session''s role may act for the node (to write, or to read); NULL node: only compay_app (compay_reader to read) and superusers pass';

CREATE FUNCTION compay.add_node_role(role_name name, node_id text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF role_name IS NULL OR node_id IS NULL THEN
        RAISE EXCEPTION 'role_name and node_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM compay.check_node_id(node_id);      -- the ledger's node id rule (22023)
    INSERT INTO compay.node_roles AS n (role_name, node_id)
    VALUES (add_node_role.role_name, add_node_role.node_id) ON CONFLICT DO NOTHING;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION compay.add_node_role(name, text) IS
    'lets a role (granted compay_node) act for a node; false if it already could';

CREATE FUNCTION compay.remove_node_role(role_name name, node_id text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    DELETE FROM compay.node_roles n
    WHERE n.role_name = remove_node_role.role_name AND n.node_id = remove_node_role.node_id;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION compay.remove_node_role(name, text) IS
    'stops a role acting for a node; false if it did not';

REVOKE ALL ON FUNCTION compay.require_node(text, boolean), compay.add_node_role(name, text),
    compay.remove_node_role(name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.add_node_role(name, text), compay.remove_node_role(name, text)
    TO compay_admin;

-- What compay_admin did beyond the application's rights: credits of a
-- wallet-backed currency (XMR) and credit limits other than the default.
CREATE SEQUENCE compay.admin_journal_id_seq;
CREATE TABLE compay.admin_journal (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.admin_journal_id_seq'),
    action      text NOT NULL,              -- 'deposit' or 'credit_limit'
    node_id     text NOT NULL,
    currency    text NOT NULL,
    amount      compay.credit NOT NULL,     -- the deposit, or the new credit limit
    reason      text,
    transfer_id bigint,                     -- the deposit's transfer
    role_name   text NOT NULL,              -- the session's role (after SET ROLE)
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER SEQUENCE compay.admin_journal_id_seq OWNED BY compay.admin_journal.id;
COMMENT ON TABLE compay.admin_journal IS
    'who credited a wallet-backed currency or set a credit limit, and why; append-only';
CREATE TRIGGER admin_journal_append_only BEFORE UPDATE OR DELETE ON compay.admin_journal
    FOR EACH ROW EXECUTE FUNCTION compay.reject_change();
CREATE TRIGGER admin_journal_no_truncate BEFORE TRUNCATE ON compay.admin_journal
    FOR EACH STATEMENT EXECUTE FUNCTION compay.reject_change();
SELECT pg_catalog.pg_extension_config_dump('compay.admin_journal', '');
SELECT pg_catalog.pg_extension_config_dump('compay.admin_journal_id_seq', '');
REVOKE ALL ON compay.admin_journal, compay.admin_journal_id_seq FROM PUBLIC;
GRANT SELECT ON compay.admin_journal TO compay_reader;

-- XMR (wallet-backed) that reaches an account other than by the wallet:
-- compay_admin only, with a reason kept in compay.admin_journal.
CREATE FUNCTION compay.admin_deposit(node_id text, amount compay.credit, currency text,
    reason text, idempotency_key text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_admin_deposit'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.admin_deposit(text, compay.credit, text, text, text) IS
    'credits an account from $external in any currency, XMR included; the reason is the transfer''s reference and is journaled in compay.admin_journal';

-- The wallet's deposits (compay.record_deposits); no role may call it.
CREATE FUNCTION compay.deposit_from_wallet(node_id text, amount compay.credit, currency text,
    reference text, idempotency_key text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_deposit_from_wallet'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
REVOKE ALL ON FUNCTION compay.admin_deposit(text, compay.credit, text, text, text),
    compay.deposit_from_wallet(text, compay.credit, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.admin_deposit(text, compay.credit, text, text, text) TO compay_admin;

-- Read functions: SECURITY DEFINER, checking the node.
CREATE OR REPLACE FUNCTION compay.balance(node_id text, currency text DEFAULT 'CREDIT',
    OUT balance compay.credit, OUT reserved compay.credit, OUT available compay.credit,
    OUT credit_limit compay.credit, OUT credit_score numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
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

CREATE OR REPLACE FUNCTION compay.barter_balance(holder text, counterparty text) RETURNS compay.credit
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT coalesce((SELECT b.amount FROM compay.barter_credits b
                     JOIN compay.accounts h ON h.id = b.holder_account
                     JOIN compay.accounts c ON c.id = b.counterparty_account
                     WHERE h.node_id = $1 AND c.node_id = $2
                       AND h.currency = 'CREDIT' AND c.currency = 'CREDIT'), '0'::compay.credit)
$$;

CREATE OR REPLACE FUNCTION compay.history(node_id text, currency text DEFAULT 'CREDIT',
    max_rows integer DEFAULT 100, before_seq bigint DEFAULT NULL)
RETURNS TABLE (seq bigint, created_at timestamptz, kind compay.entry_kind,
    amount compay.credit, balance_after compay.credit, reserved_after compay.credit,
    transfer_id bigint, hold_id bigint, counterparty text, transfer_kind compay.transfer_kind,
    reference text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT j.seq, j.created_at, j.kind, j.amount, j.balance_after, j.reserved_after,
           j.transfer_id, j.hold_id, c.node_id, t.kind, coalesce(t.reference, h.reference)
    FROM compay.accounts a
    JOIN compay.journal j ON j.account_id = a.id
    LEFT JOIN compay.accounts c ON c.id = j.counterparty
    LEFT JOIN compay.transfers t ON t.id = j.transfer_id
    LEFT JOIN compay.holds h ON h.id = j.hold_id
    WHERE a.node_id = $1 AND a.currency = $2 AND ($4 IS NULL OR j.seq < $4)
    ORDER BY j.seq DESC
    LIMIT greatest(least($3, 10000), 0)
$$;

GRANT EXECUTE ON FUNCTION compay.balance(text, text), compay.barter_balance(text, text),
    compay.history(text, text, integer, bigint),
    compay.transfer(text, text, compay.credit, text, text, text)
    TO compay_node;

-- The check inside the money functions of jobs, payments, settlement,
-- payouts and deposits.
CREATE OR REPLACE FUNCTION compay.submit_job(task_id text, requester text, task_type text,
    max_amount compay.credit, timeout interval DEFAULT '24 hours') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    v_currency text;
    v_hold bigint;
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
    SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = submit_job.task_id FOR UPDATE;
    IF FOUND THEN
        -- A retry of the same submission returns the same job.
        IF j.requester = requester AND j.task_type = task_type AND j.max_amount = max_amount
           AND j.timeout = timeout THEN
            RETURN j.id;
        END IF;
        RAISE EXCEPTION 'task "%" was already submitted with other arguments', left(task_id, 64)
            USING ERRCODE = 'PY005',
                  DETAIL = 'A retry returns the job only with the same requester, task type, amount and timeout.';
    END IF;
    v_currency := compay.task_currency(task_type);
    v_hold := compay.reserve(requester, max_amount, 'escrow:' || task_id, NULL, NULL, v_currency);
    INSERT INTO compay.jobs (task_id, requester, task_type, currency, status, max_amount,
                             escrow_hold_id, timeout_at, timeout)
    VALUES (task_id, requester, task_type, v_currency, 'submitted', max_amount, v_hold,
            now() + timeout, timeout)
    RETURNING id INTO j.id;
    RETURN j.id;
END $$;

CREATE OR REPLACE FUNCTION compay.submit_task(task_id text, requester text, provider text, task_type text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
BEGIN
    IF task_id IS NULL OR requester IS NULL OR provider IS NULL OR task_type IS NULL THEN
        RAISE EXCEPTION 'task_id, requester, provider and task_type must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_node(requester);
    IF length(task_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a task id has 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.check_node_id(requester), compay.check_node_id(provider);
    IF provider = requester THEN
        RAISE EXCEPTION 'a node cannot run its own task' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO j FROM compay.jobs WHERE jobs.task_id = submit_task.task_id FOR UPDATE;
    IF FOUND THEN
        IF j.requester = requester AND j.provider = provider AND j.task_type = task_type
           AND j.max_amount IS NULL THEN
            RETURN j.id;
        END IF;
        RAISE EXCEPTION 'task "%" was already submitted with other arguments', left(task_id, 64)
            USING ERRCODE = 'PY005';
    END IF;
    INSERT INTO compay.jobs (task_id, requester, provider, task_type, currency, status)
    VALUES (task_id, requester, provider, task_type, compay.task_currency(task_type), 'assigned')
    RETURNING id INTO j.id;
    RETURN j.id;
END $$;

CREATE OR REPLACE FUNCTION compay.stake(node_id text, amount compay.credit, currency text DEFAULT 'CREDIT')
RETURNS compay.credit
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.stakes;
BEGIN
    IF node_id IS NULL OR amount IS NULL OR currency IS NULL THEN
        RAISE EXCEPTION 'node_id, amount and currency must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF amount <= '0' THEN
        RAISE EXCEPTION 'a stake must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.require_node(node_id);
    INSERT INTO compay.stakes (node_id, currency, amount) VALUES (node_id, currency, '0')
    ON CONFLICT DO NOTHING;
    SELECT * INTO STRICT s FROM compay.stakes
    WHERE stakes.node_id = stake.node_id AND stakes.currency = stake.currency FOR UPDATE;
    -- One hold carries the whole stake: free the old one, hold the new total.
    IF s.hold_id IS NOT NULL THEN
        PERFORM compay.release(s.hold_id);
    END IF;
    s.amount := s.amount + amount;
    s.hold_id := compay.reserve(node_id, s.amount, 'stake', NULL, NULL, currency);
    UPDATE compay.stakes SET amount = s.amount, hold_id = s.hold_id, updated_at = now()
    WHERE stakes.node_id = stake.node_id AND stakes.currency = stake.currency;
    RETURN s.amount;
END $$;

CREATE OR REPLACE FUNCTION compay.unstake(node_id text, amount compay.credit, currency text DEFAULT 'CREDIT')
RETURNS compay.credit
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.stakes;
    v_min compay.credit := compay.setting('compay.min_stake')::compay.credit;
BEGIN
    IF node_id IS NULL OR amount IS NULL OR currency IS NULL THEN
        RAISE EXCEPTION 'node_id, amount and currency must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF amount <= '0' THEN
        RAISE EXCEPTION 'an unstake amount must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.require_node(node_id);
    SELECT * INTO s FROM compay.stakes
    WHERE stakes.node_id = unstake.node_id AND stakes.currency = unstake.currency FOR UPDATE;
    IF NOT FOUND OR s.amount < amount THEN
        RAISE EXCEPTION 'cannot unstake % %: node "%" has % staked', amount, currency,
            left(node_id, 64), coalesce(s.amount, '0')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s.amount - amount < v_min AND EXISTS (
        SELECT 1 FROM compay.jobs
        WHERE provider = node_id AND jobs.currency = unstake.currency
          AND status IN ('submitted', 'assigned', 'completed')) THEN
        RAISE EXCEPTION 'cannot unstake below compay.min_stake % while a job of node "%" is open',
            v_min, left(node_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Unstake after the node''s open jobs are paid, failed or timed out.';
    END IF;
    PERFORM compay.release(s.hold_id);
    s.amount := s.amount - amount;
    s.hold_id := CASE WHEN s.amount > '0'
                      THEN compay.reserve(node_id, s.amount, 'stake', NULL, NULL, currency) END;
    UPDATE compay.stakes SET amount = s.amount, hold_id = s.hold_id, updated_at = now()
    WHERE stakes.node_id = unstake.node_id AND stakes.currency = unstake.currency;
    RETURN s.amount;
END $$;

CREATE OR REPLACE FUNCTION compay.assign_job(task_id text, provider text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    v_min compay.credit := compay.setting('compay.min_stake')::compay.credit;
    v_stake compay.credit;
BEGIN
    PERFORM compay.require_node(NULL);          -- the application assigns jobs
    j := compay.lock_job(task_id);      -- after the check: no lock for a refused caller
    IF provider IS NULL THEN
        RAISE EXCEPTION 'provider must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF j.status = 'assigned' AND j.provider = provider THEN
        RETURN;                                 -- a retry
    END IF;
    PERFORM compay.require_job_status(j, 'submitted', 'assign');
    PERFORM compay.require_not_timed_out(j);
    PERFORM compay.check_node_id(provider);
    IF provider = j.requester OR left(provider, 1) = '$' OR length(provider) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'node "%" cannot run job "%"', left(provider, 64), left(task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The provider must be a node other than the requester.';
    END IF;
    IF v_min > '0' THEN
        SELECT amount INTO v_stake FROM compay.stakes
        WHERE node_id = provider AND currency = j.currency FOR SHARE;
        IF coalesce(v_stake, '0') < v_min THEN
            RAISE EXCEPTION 'node "%" has staked % %, less than compay.min_stake %',
                left(provider, 64), coalesce(v_stake, '0'), j.currency, v_min
                USING ERRCODE = 'PY011', HINT = 'Stake more with compay.stake().';
        END IF;
    END IF;
    UPDATE compay.jobs SET provider = assign_job.provider, status = 'assigned', updated_at = now()
    WHERE id = j.id;
END $$;

CREATE OR REPLACE FUNCTION compay.complete_job(task_id text, started_at timestamptz,
    completed_at timestamptz, gpu_utilization numeric DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
BEGIN
    PERFORM compay.require_node(NULL);          -- the application completes jobs
    j := compay.lock_job(task_id);      -- after the check: no lock for a refused caller
    IF started_at IS NULL OR completed_at IS NULL THEN
        RAISE EXCEPTION 'started_at and completed_at must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_job_status(j, 'assigned', 'complete');
    PERFORM compay.require_not_timed_out(j);
    IF completed_at < started_at OR NOT isfinite(started_at) OR NOT isfinite(completed_at) THEN
        RAISE EXCEPTION 'a job cannot complete before it starts'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('started_at is %s, completed_at %s.', started_at, completed_at);
    END IF;
    IF gpu_utilization IS NOT NULL THEN
        PERFORM compay.utilization_factor(gpu_utilization);   -- 22023 outside [0, 1]
    END IF;
    UPDATE compay.jobs
    SET status = 'completed', started_at = complete_job.started_at,
        completed_at = complete_job.completed_at, gpu_utilization = complete_job.gpu_utilization,
        updated_at = now()
    WHERE id = j.id;
END $$;

CREATE OR REPLACE FUNCTION compay.record_usage(task_id text, node_id text, sample_id text,
    sampled_at timestamptz, metrics compay.resource_metrics) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    t compay.usage_totals;
BEGIN
    IF task_id IS NULL OR node_id IS NULL OR sample_id IS NULL OR sampled_at IS NULL
       OR metrics IS NULL THEN
        RAISE EXCEPTION 'task_id, node_id, sample_id, sampled_at and metrics must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    IF length(sample_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a sample id has 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(sampled_at) THEN
        RAISE EXCEPTION 'sampled_at must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.require_node(node_id);       -- and below: the task's provider
    PERFORM compay.check_metrics(metrics);
    -- The row locked FOR UPDATE: samples of one task go in one at a time,
    -- each checked against the sum of those before it, and not while the
    -- task is being paid.
    j := compay.lock_job(task_id);
    IF j.status = 'paid' THEN
        RAISE EXCEPTION 'task "%" is already paid', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Usage of a paid task can no longer change what it cost.';
    END IF;
    IF j.status IN ('failed', 'timed_out') THEN
        RAISE EXCEPTION 'task "%" is closed: it is %', left(task_id, 64), j.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF j.provider IS DISTINCT FROM node_id THEN
        RAISE EXCEPTION 'node "%" does not run task "%"', left(node_id, 64), left(task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only the task''s provider reports its usage.';
    END IF;
    IF EXISTS (SELECT 1 FROM compay.usage_samples s
               WHERE s.job_id = j.id AND s.sample_id = record_usage.sample_id) THEN
        RETURN false;                           -- a retry
    END IF;
    t := compay.check_usage(j, metrics);
    INSERT INTO compay.usage_samples (job_id, sample_id, node_id, sampled_at, cpu_seconds,
        memory_byte_hours, storage_byte_hours, network_bytes_in, network_bytes_out,
        gpu_seconds, custom)
    VALUES (j.id, sample_id, node_id, sampled_at, coalesce(metrics.cpu_seconds, 0),
        coalesce(metrics.memory_byte_hours, 0), coalesce(metrics.storage_byte_hours, 0),
        coalesce(metrics.network_bytes_in, 0), coalesce(metrics.network_bytes_out, 0),
        coalesce(metrics.gpu_seconds, 0), nullif(metrics.custom, '{}'));
    INSERT INTO compay.usage_totals VALUES (t.*)
    ON CONFLICT (job_id) DO UPDATE
    SET cpu_seconds = EXCLUDED.cpu_seconds, memory_byte_hours = EXCLUDED.memory_byte_hours,
        storage_byte_hours = EXCLUDED.storage_byte_hours,
        network_bytes_in = EXCLUDED.network_bytes_in,
        network_bytes_out = EXCLUDED.network_bytes_out,
        gpu_seconds = EXCLUDED.gpu_seconds, custom = EXCLUDED.custom;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION compay.verify_job(task_id text, verifier text, passed boolean,
    quality_factor numeric DEFAULT NULL) RETURNS compay.job_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    v_quorum integer := compay.setting('compay.verification_quorum')::integer;
    v_passes integer;
    v_fails integer;
    v_error text;
BEGIN
    PERFORM compay.require_node(NULL);          -- a vote moves other nodes' money
    j := compay.lock_job(task_id);      -- after the check: no lock for a refused caller
    IF verifier IS NULL OR passed IS NULL THEN
        RAISE EXCEPTION 'verifier and passed must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF j.max_amount IS NULL THEN
        RAISE EXCEPTION 'task "%" has no escrow to verify', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Pay a task without escrow with compay.process_task_payment().';
    END IF;
    PERFORM compay.require_job_status(j, 'completed', 'verify');
    PERFORM compay.require_not_timed_out(j);
    PERFORM compay.check_node_id(verifier);
    IF verifier IN (j.requester, j.provider) OR left(verifier, 1) = '$'
       OR length(verifier) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'node "%" cannot verify job "%"', left(verifier, 64), left(task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A verifier is neither the requester nor the provider of the job.';
    END IF;
    IF quality_factor IS NOT NULL AND NOT quality_factor BETWEEN 0.8 AND 1.5 THEN
        RAISE EXCEPTION 'quality factor % is outside [0.8, 1.5]', quality_factor
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO compay.verifications (job_id, verifier, passed, quality_factor)
    VALUES (j.id, verifier, passed, quality_factor)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node "%" has already voted on job "%"', left(verifier, 64), left(task_id, 64)
            USING ERRCODE = 'unique_violation';
    END IF;
    SELECT count(*) FILTER (WHERE v.passed), count(*) FILTER (WHERE NOT v.passed)
    INTO v_passes, v_fails
    FROM compay.verifications v WHERE v.job_id = j.id;
    IF v_passes >= v_quorum THEN
        BEGIN
            PERFORM compay.pay_verified_job(j);
            RETURN 'paid';
        EXCEPTION WHEN data_exception THEN
            -- The job cannot be paid as recorded (its usage cannot be
            -- priced, say, after a price change): it fails now rather than
            -- at its timeout, the escrow goes back to the requester, and
            -- the error stays on the job.  Other errors (a lock timeout, a
            -- missing pricing model) undo the vote, to be retried.
            GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
            v_error := SQLSTATE || ': ' || v_error;
        END;
        PERFORM compay.release(j.escrow_hold_id);
        UPDATE compay.jobs SET status = 'failed', payment_error = v_error, updated_at = now()
        WHERE id = j.id;
        RAISE WARNING 'job "%" could not be paid; its escrow went back to the requester',
            left(task_id, 64)
            USING DETAIL = format('The payment failed with %s.', v_error),
                  HINT = 'compay.jobs.payment_error keeps the error.';
        RETURN 'failed';
    ELSIF v_fails >= v_quorum THEN
        -- Two calls touch the requester's and the provider's accounts:
        -- lock both first, in ascending id as the ledger does, so that two
        -- jobs failing between the same nodes in opposite roles cannot
        -- deadlock.
        PERFORM 1 FROM compay.accounts
        WHERE currency = j.currency AND node_id IN (j.requester, j.provider)
        ORDER BY id FOR UPDATE;
        PERFORM compay.release(j.escrow_hold_id);
        PERFORM compay.move_credit_score(j.provider, j.currency, false);
        UPDATE compay.jobs SET status = 'failed', updated_at = now() WHERE id = j.id;
        RETURN 'failed';
    END IF;
    RETURN 'completed';
END $$;

CREATE OR REPLACE FUNCTION compay.expire_jobs() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    n integer := 0;
BEGIN
    PERFORM compay.require_node(NULL);
    -- In ascending order of the requester's account, so that the account
    -- locks the releases gather follow the ledger's order; SKIP LOCKED, so
    -- a job row held by another call is left for the next run.
    FOR j IN SELECT jobs.* FROM compay.jobs
             JOIN compay.accounts a ON a.node_id = jobs.requester AND a.currency = jobs.currency
             WHERE jobs.status IN ('submitted', 'assigned', 'completed') AND jobs.timeout_at <= now()
             ORDER BY a.id, jobs.id LIMIT 10000
             FOR UPDATE OF jobs SKIP LOCKED
    LOOP
        PERFORM compay.release(j.escrow_hold_id);
        UPDATE compay.jobs SET status = 'timed_out', updated_at = now() WHERE id = j.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

GRANT EXECUTE ON FUNCTION compay.record_usage(text, text, text, timestamptz, compay.resource_metrics)
    TO compay_node;

CREATE OR REPLACE FUNCTION compay.process_task_payment(task_id text,
    method compay.payment_method DEFAULT 'credit') RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    p compay.payments;
    v_currency text;
BEGIN
    PERFORM compay.require_node(NULL);
    j := compay.lock_job(task_id);      -- after the check: no lock for a refused caller
    IF method IS NULL THEN
        RAISE EXCEPTION 'method must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Paid at most once: a retry, of any method, gets the payment made.
    SELECT * INTO p FROM compay.payments
    WHERE payments.task_id = process_task_payment.task_id AND status <> 'failed';
    IF FOUND THEN
        RETURN p;
    END IF;
    IF j.max_amount IS NOT NULL THEN
        RAISE EXCEPTION 'job "%" is paid from its escrow after verification', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Use compay.verify_job().';
    END IF;
    IF method = 'fiat' THEN
        RAISE EXCEPTION 'fiat payments are not supported' USING ERRCODE = 'feature_not_supported',
            HINT = 'Pay with credit, barter or crypto.';
    END IF;
    PERFORM compay.require_job_status(j, 'completed', 'pay');
    v_currency := CASE method WHEN 'crypto' THEN 'XMR' WHEN 'barter' THEN 'CREDIT' ELSE j.currency END;
    IF v_currency <> j.currency THEN
        RAISE EXCEPTION 'task "%" is priced in %, not %', left(task_id, 64), j.currency, v_currency
            USING ERRCODE = 'PY003',
                  DETAIL = format('A %s payment moves %s.', method, v_currency),
                  HINT = 'Map the task type to a pricing model in that currency.';
    END IF;
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 resource_metrics)
    VALUES (task_id, j.requester, j.provider, compay.job_amount(j, NULL), v_currency, method,
            'processing', compay.task_metrics(task_id))
    RETURNING * INTO p;
    BEGIN
        IF p.amount > '0' THEN
            IF method = 'barter' THEN
                p.transfer_id := compay.grant_barter(j.provider, j.requester, p.amount,
                                                     'payment:' || p.id);
            ELSE
                p.transfer_id := compay.transfer(j.requester, j.provider, p.amount,
                                                 'payment:' || p.id, NULL, v_currency);
            END IF;
        END IF;
        UPDATE compay.payments SET status = 'completed', completed_at = now(),
                                   transfer_id = p.transfer_id
        WHERE id = p.id RETURNING * INTO p;
        UPDATE compay.jobs SET status = 'paid', amount = p.amount, payment_id = p.id,
                               updated_at = now()
        WHERE id = j.id;
    EXCEPTION WHEN SQLSTATE 'PY001' OR SQLSTATE 'PY002' THEN
        UPDATE compay.payments
        SET status = 'failed', completed_at = now(),
            metadata = metadata || jsonb_build_object('sqlstate', SQLSTATE, 'error', SQLERRM)
        WHERE id = p.id RETURNING * INTO p;
        PERFORM compay.move_credit_score(j.requester, v_currency, false);
    END;
    RETURN p;
END $$;

CREATE OR REPLACE FUNCTION compay.dispute_payment(payment_id bigint, reason text) RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
    v_window interval := compay.setting('compay.dispute_window')::interval;
BEGIN
    PERFORM compay.require_node(NULL);
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
    IF reason IS NULL OR length(reason) = 0 THEN
        RAISE EXCEPTION 'a dispute needs a reason' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(reason) > 1000 THEN
        RAISE EXCEPTION 'a dispute reason has at most 1000 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p.status <> 'completed' THEN
        RAISE EXCEPTION 'cannot dispute payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF now() > p.completed_at + v_window THEN
        RAISE EXCEPTION 'the dispute window of payment % has closed', payment_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Payments can be disputed for %s after they complete (compay.dispute_window).',
                                  compay.setting('compay.dispute_window'));
    END IF;
    UPDATE compay.payments SET status = 'disputed', dispute_reason = reason, disputed_at = now()
    WHERE id = payment_id RETURNING * INTO p;
    PERFORM compay.move_credit_score(p.to_node, p.currency, false);
    RETURN p;
END $$;

CREATE OR REPLACE FUNCTION compay.resolve_dispute(payment_id bigint, refund_amount compay.credit)
RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
BEGIN
    PERFORM compay.require_node(NULL);
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
    IF refund_amount IS NULL THEN
        RAISE EXCEPTION 'refund_amount must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p.status <> 'disputed' THEN
        RAISE EXCEPTION 'cannot resolve payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF refund_amount < '0' THEN
        RAISE EXCEPTION 'a refund cannot be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF refund_amount > p.amount THEN
        RAISE EXCEPTION 'refund of % exceeds payment % of %', refund_amount, payment_id, p.amount
            USING ERRCODE = 'PY008';
    END IF;
    IF refund_amount = '0' THEN
        UPDATE compay.payments SET status = 'completed' WHERE id = payment_id RETURNING * INTO p;
        RETURN p;
    END IF;
    IF p.method = 'barter' THEN
        RAISE EXCEPTION 'barter payments cannot be refunded' USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Barter credits are not money the ledger can move back.',
            HINT = 'Resolve with refund 0, or grant barter credits back with compay.grant_barter().';
    END IF;
    UPDATE compay.payments
    SET status = 'refunded',
        refund_transfer_id = compay.refund(p.transfer_id, refund_amount, 'dispute:' || payment_id),
        metadata = metadata || jsonb_build_object('refund_amount', refund_amount::text)
    WHERE id = payment_id RETURNING * INTO p;
    RETURN p;
END $$;

CREATE OR REPLACE FUNCTION compay.process_due_settlements(as_of timestamptz DEFAULT now())
RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_max integer := compay.setting('compay.settlement_max_attempts')::integer;
    v_id bigint;
BEGIN
    IF as_of IS NULL OR NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.require_node(NULL);
    FOR v_id IN
        SELECT id FROM compay.settlements
        WHERE status = 'pending'
           OR (status = 'failed' AND attempts < v_max AND next_attempt_at <= as_of)
        ORDER BY id
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM compay.process_settlement(v_id, as_of);
        RETURN NEXT v_id;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION compay.run_settlement(period compay.settlement_period DEFAULT 'hourly',
    as_of timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_cutoff timestamptz;
BEGIN
    PERFORM compay.require_node(NULL);
    IF period IS NULL OR as_of IS NULL THEN
        RAISE EXCEPTION 'period and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Only closed periods: everything completed before the start of the
    -- period that holds as_of.
    v_cutoff := compay.period_start(period, as_of);
    -- One run at a time.  A second run waits here, then reads the payments
    -- again and finds them settled; a payment committed after this point is
    -- left for the next run.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.run_settlement'));
    WITH eligible AS (
        SELECT p.id, p.to_node, p.currency, p.amount,
               compay.period_start(run_settlement.period, p.completed_at) AS ps
        FROM compay.payments p
        WHERE p.status = 'completed' AND p.settlement_id IS NULL AND p.completed_at < v_cutoff
        FOR UPDATE
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee,
                                        payment_count, total_amount)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, to_node, count(*), compay.sum(amount)
        FROM eligible GROUP BY ps, currency, to_node
        RETURNING id, period_start, currency, payee
    )
    UPDATE compay.payments p SET settlement_id = g.id
    FROM eligible e JOIN groups g
      ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.to_node
    WHERE p.id = e.id;
    -- Verifier rewards: their own settlements (purpose verification), paid
    -- out to the verifier's verification address when it has one.
    WITH eligible AS (
        SELECT v.job_id, v.verifier, j.currency, v.reward_amount AS amount,
               compay.period_start(run_settlement.period, v.rewarded_at) AS ps
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.settlement_id IS NULL AND v.reward_amount > '0' AND v.rewarded_at < v_cutoff
        FOR UPDATE OF v
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                        payment_count, total_amount)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, verifier, 'verification', count(*), compay.sum(amount)
        FROM eligible GROUP BY ps, currency, verifier
        RETURNING id, period_start, currency, payee
    )
    UPDATE compay.verifications v SET settlement_id = g.id
    FROM eligible e JOIN groups g
      ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
    WHERE v.job_id = e.job_id AND v.verifier = e.verifier;
    RETURN QUERY SELECT compay.process_due_settlements(as_of);
END $$;

CREATE OR REPLACE FUNCTION compay.retry_settlement(settlement_id bigint) RETURNS compay.settlement_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
BEGIN
    PERFORM compay.require_node(NULL);
    SELECT * INTO s FROM compay.settlements WHERE id = settlement_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'settlement % does not exist', settlement_id USING ERRCODE = 'PY013';
    END IF;
    IF s.status <> 'failed' THEN
        RAISE EXCEPTION 'cannot retry settlement %: it is %', settlement_id, s.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN compay.process_settlement(settlement_id);
END $$;

CREATE OR REPLACE FUNCTION compay.set_payout_address(node_id text, address text,
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

CREATE OR REPLACE FUNCTION compay.set_payout_policy(node_id text, auto_payout boolean,
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

CREATE OR REPLACE FUNCTION compay.payout_policy(node_id text, OUT auto_payout boolean,
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

GRANT EXECUTE ON FUNCTION compay.set_payout_address(text, text, compay.address_purpose),
    compay.set_payout_policy(text, boolean, compay.credit, interval, compay.credit),
    compay.payout_policy(text) TO compay_node;

GRANT EXECUTE ON FUNCTION compay.deposit_address(text) TO compay_node;

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

CREATE OR REPLACE FUNCTION compay.record_deposits(reply jsonb, height bigint) RETURNS integer
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

--------------------------------------------------------------------------
-- What 0.2 refuses that a 0.1 database may hold, reported (not changed)
-- by a WARNING each: credit limits on XMR accounts (0.1 let the
-- application set any limit; an XMR limit lets settlement pay out coins
-- nobody deposited), and node ids the node id rule now refuses (their
-- accounts can no longer pay or be paid until the money is moved).
--------------------------------------------------------------------------

DO $report$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT node_id, credit_limit FROM compay.accounts
             WHERE currency = 'XMR' AND (flags & 1) = 0
               AND credit_limit OPERATOR(compay.<>) '0'
             ORDER BY id
    LOOP
        RAISE WARNING 'the XMR account of node "%" keeps its credit limit %',
            left(r.node_id, 64), r.credit_limit
            USING DETAIL = 'Since 0.2 only compay_admin sets credit limits; an XMR limit lets settlement pay out coins nobody deposited.',
                  HINT = 'Unless it is intended, set it to 0 with compay.set_credit_limit().';
    END LOOP;
    FOR r IN SELECT DISTINCT node_id FROM compay.accounts WHERE (flags & 1) = 0 ORDER BY node_id
    LOOP
        BEGIN
            PERFORM compay.check_node_id(r.node_id);
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE WARNING 'node id "%" breaks the node id rule of 0.2: %', left(r.node_id, 64), SQLERRM
                USING DETAIL = 'Its accounts keep their money, but no call can name the node any more.',
                      HINT = 'An operator moves the money to a valid node id (docs/operations.md, Upgrading from 0.1).';
        END;
    END LOOP;
END
$report$;

-- Settings from every session (issue 12, item 4): the SQL reads the
-- compay.* settings with compay.setting(), a C function whose call loads
-- the library (and so defines every compay.* setting), never with
-- current_setting(), which fails with "unrecognized configuration
-- parameter" in a session that has not loaded compay yet.

CREATE OR REPLACE FUNCTION compay.pay_verified_job(j compay.jobs) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_ratio numeric := compay.setting('compay.verification_reward_ratio')::numeric;
    v_verifiers text[];
    v_factors numeric[];
    v_amount compay.credit;
    v_reward compay.credit;
    v_payment bigint;
    v_transfer bigint;
BEGIN
    SELECT array_agg(verifier ORDER BY created_at, verifier), array_agg(quality_factor)
    INTO v_verifiers, v_factors
    FROM compay.verifications WHERE job_id = j.id AND passed;
    v_amount := least(compay.job_amount(j, v_factors), j.max_amount);
    v_reward := v_amount * v_ratio;             -- exact, rounded once half to even
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 resource_metrics, metadata)
    VALUES (j.task_id, j.requester, j.provider, v_amount, j.currency,
            (CASE WHEN j.currency = 'XMR' THEN 'crypto' ELSE 'credit' END)::compay.payment_method,
            'processing',
            compay.task_metrics(j.task_id),
            jsonb_build_object('escrow_hold_id', j.escrow_hold_id, 'verifiers', v_verifiers,
                               'verifier_reward', v_reward::text))
    RETURNING id INTO v_payment;
    v_transfer := compay.settle_escrow(j.escrow_hold_id, j.provider, v_amount, v_verifiers,
                                       v_reward, 'job:' || j.task_id);
    UPDATE compay.payments SET status = 'completed', completed_at = now(), transfer_id = v_transfer
    WHERE id = v_payment;
    UPDATE compay.verifications SET reward_amount = v_reward, rewarded_at = now()
    WHERE job_id = j.id AND passed;
    UPDATE compay.jobs SET status = 'paid', amount = v_amount, payment_id = v_payment,
                           updated_at = now()
    WHERE id = j.id;
    RETURN v_payment;
END $$;

CREATE OR REPLACE FUNCTION compay.queue_payouts() RETURNS integer
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
            SELECT s.id, s.payee, s.total_amount, coalesce(v.address, a.address) AS address,
                   compay.sum(s.total_amount) OVER (PARTITION BY s.payee ORDER BY s.id) AS running
            FROM compay.settlements s
            JOIN compay.payout_addresses a ON a.node_id = s.payee AND a.purpose = 'primary'
            LEFT JOIN compay.payout_addresses v
              ON v.node_id = s.payee AND v.purpose = 'verification' AND s.purpose = 'verification'
            WHERE s.currency = 'XMR' AND s.status = 'processing' AND s.payout_id IS NULL
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

CREATE OR REPLACE FUNCTION compay.record_payout_conflict(payout_id bigint, height bigint) RETURNS boolean
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

CREATE OR REPLACE FUNCTION compay.record_payout_confirmations(payout_id bigint, confirmations integer)
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

CREATE OR REPLACE VIEW compay.failed_settlements AS
    SELECT id, period, period_start, currency, payee, payment_count, total_amount, attempts,
           last_error, next_attempt_at,
           attempts >= compay.setting('compay.settlement_max_attempts')::integer AS gave_up
    FROM compay.settlements WHERE status = 'failed';
-- Amounts from every client (issue 12 item 5): credit in the string type
-- category, so that untyped literals keep resolving to credit beside the
-- numeric twins of the money functions (src/credit.sql, src/amounts.sql).
-- ALTER TYPE cannot change a category; this is the one catalog update.
UPDATE pg_catalog.pg_type SET typcategory = 'S' WHERE oid = 'compay.credit'::pg_catalog.regtype;

--------------------------------------------------------------------------
-- Amounts from every client: each public money function has a twin that
-- takes its amounts as numeric, so that a driver's typed parameter
-- (psycopg's Decimal or int, JDBC's setBigDecimal, any integer: integers
-- reach numeric by an implicit cast) finds a function.  The twin converts
-- with the numeric -> credit cast, exactly: more than 12 decimals is an
-- error (22023), as '1.0000000000001' is for text (22P02), never a
-- rounding; NaN and infinities are refused (22023).  float4 and float8
-- reach numeric only on assignment, so a float still finds no function
-- (42883).
--
-- An untyped literal (compay.deposit('a', '5'), a NULL, an unknown-typed
-- parameter from node-postgres or psycopg's str) still calls the credit
-- function and reads the text with credit_in: credit is in the string
-- type category (src/credit.sql), and PostgreSQL resolves an unknown
-- argument to the string category when a candidate takes one.  Were
-- credit and numeric both in category N, neither being its preferred type
-- (float8 is), such a call would be ambiguous (42725).
--
-- transfer_batch has no twin: an untyped array literal ('{1,2}') would
-- be ambiguous between credit[] and numeric[] (both in category A); pass
-- its amounts as credit[] (docs/clients.md).
--
-- A twin has no default for its amount (nor for the parameters before
-- it): two functions callable with the same leading arguments would make
-- every call that omits the amount ambiguous.  It runs as its caller and
-- calls the credit function, whose own privileges, checks and errors
-- apply; it gets the same grants.
--------------------------------------------------------------------------

CREATE FUNCTION compay.open_account(node_id text, currency text, credit_limit numeric)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.open_account(node_id, currency, credit_limit::compay.credit);

CREATE FUNCTION compay.deposit(node_id text, amount numeric, currency text DEFAULT 'CREDIT',
                               reference text DEFAULT NULL, idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.deposit(node_id, amount::compay.credit, currency, reference, idempotency_key);

CREATE FUNCTION compay.admin_deposit(node_id text, amount numeric, currency text, reason text,
                                     idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.admin_deposit(node_id, amount::compay.credit, currency, reason, idempotency_key);

CREATE FUNCTION compay.transfer(from_node text, to_node text, amount numeric,
                                reference text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                currency text DEFAULT 'CREDIT')
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.transfer(from_node, to_node, amount::compay.credit, reference, idempotency_key,
                           currency);

CREATE FUNCTION compay.reserve(node_id text, amount numeric, reference text DEFAULT NULL,
                               timeout interval DEFAULT NULL, idempotency_key text DEFAULT NULL,
                               currency text DEFAULT 'CREDIT')
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.reserve(node_id, amount::compay.credit, reference, timeout, idempotency_key,
                          currency);

CREATE FUNCTION compay.capture(hold_id bigint, to_node text, amount numeric,
                               final boolean DEFAULT true, idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.capture(hold_id, to_node, amount::compay.credit, final, idempotency_key);

CREATE FUNCTION compay.refund(transfer_id bigint, amount numeric, reason text DEFAULT NULL,
                              idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.refund(transfer_id, amount::compay.credit, reason, idempotency_key);

CREATE FUNCTION compay.grant_barter(holder text, counterparty text, amount numeric,
                                    reference text DEFAULT NULL, idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.grant_barter(holder, counterparty, amount::compay.credit, reference,
                               idempotency_key);

CREATE FUNCTION compay.set_credit_limit(node_id text, credit_limit numeric,
                                        currency text DEFAULT 'CREDIT')
    RETURNS void LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.set_credit_limit(node_id, credit_limit::compay.credit, currency);

CREATE FUNCTION compay.submit_job(task_id text, requester text, task_type text, max_amount numeric,
                                  timeout interval DEFAULT '24 hours')
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.submit_job(task_id, requester, task_type, max_amount::compay.credit, timeout);

CREATE FUNCTION compay.stake(node_id text, amount numeric, currency text DEFAULT 'CREDIT')
    RETURNS compay.credit LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.stake(node_id, amount::compay.credit, currency);

CREATE FUNCTION compay.unstake(node_id text, amount numeric, currency text DEFAULT 'CREDIT')
    RETURNS compay.credit LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.unstake(node_id, amount::compay.credit, currency);

CREATE FUNCTION compay.resolve_dispute(payment_id bigint, refund_amount numeric)
    RETURNS compay.payments LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.resolve_dispute(payment_id, refund_amount::compay.credit);

CREATE FUNCTION compay.set_payout_policy(node_id text, auto_payout boolean, min_payout numeric,
                                         payout_interval interval, max_per_day numeric)
    RETURNS void LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.set_payout_policy(node_id, auto_payout, min_payout::compay.credit,
                                    payout_interval, max_per_day::compay.credit);

REVOKE ALL ON FUNCTION
    compay.open_account(text, text, numeric),
    compay.deposit(text, numeric, text, text, text),
    compay.admin_deposit(text, numeric, text, text, text),
    compay.transfer(text, text, numeric, text, text, text),
    compay.reserve(text, numeric, text, interval, text, text),
    compay.capture(bigint, text, numeric, boolean, text),
    compay.refund(bigint, numeric, text, text),
    compay.grant_barter(text, text, numeric, text, text),
    compay.set_credit_limit(text, numeric, text),
    compay.submit_job(text, text, text, numeric, interval),
    compay.stake(text, numeric, text),
    compay.unstake(text, numeric, text),
    compay.resolve_dispute(bigint, numeric),
    compay.set_payout_policy(text, boolean, numeric, interval, numeric)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    compay.open_account(text, text, numeric),
    compay.deposit(text, numeric, text, text, text),
    compay.transfer(text, text, numeric, text, text, text),
    compay.reserve(text, numeric, text, interval, text, text),
    compay.capture(bigint, text, numeric, boolean, text),
    compay.refund(bigint, numeric, text, text),
    compay.grant_barter(text, text, numeric, text, text),
    compay.submit_job(text, text, text, numeric, interval),
    compay.stake(text, numeric, text),
    compay.unstake(text, numeric, text),
    compay.set_payout_policy(text, boolean, numeric, interval, numeric)
    TO compay_app;
GRANT EXECUTE ON FUNCTION
    compay.transfer(text, text, numeric, text, text, text),
    compay.set_payout_policy(text, boolean, numeric, interval, numeric)
    TO compay_node;
GRANT EXECUTE ON FUNCTION
    compay.admin_deposit(text, numeric, text, text, text),
    compay.set_credit_limit(text, numeric, text),
    compay.resolve_dispute(bigint, numeric)
    TO compay_admin;

--------------------------------------------------------------------------
-- Issue 13: payouts exactly once.
--------------------------------------------------------------------------

ALTER TABLE compay.settlements ADD COLUMN held_back compay.credit NOT NULL DEFAULT '0'
    CONSTRAINT settlements_held_back CHECK (held_back >= '0');

--------------------------------------------------------------------------
-- Issue 13 (payouts): payouts in parts under the daily cap (a settlement
-- may be split across payouts: compay.payout_parts), payouts on request,
-- payments' tx hash and payment_trace, verify_ledger() checks 10-13.
--------------------------------------------------------------------------

COMMENT ON COLUMN compay.settlements.payout_id IS
    'XMR: the latest payout that carries a part of it (compay.payout_parts lists them all); NULL while no part is queued or paid';

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

-- 0.1's payouts: each item paid its settlements in full, one part each.
INSERT INTO compay.payout_parts (payout_id, settlement_id, node_id, address, amount)
SELECT i.payout_id, s.id, i.node_id, i.address, s.total_amount
FROM compay.payout_items i
CROSS JOIN LATERAL unnest(i.settlement_ids) AS u(settlement_id)
JOIN compay.settlements s ON s.id = u.settlement_id;

-- Their payments get the tx hash of the payout that carried them.
UPDATE compay.payments y SET tx_hash = p.tx_hash
FROM compay.payout_parts pp
JOIN compay.payout_transactions p ON p.id = pp.payout_id
WHERE pp.settlement_id = y.settlement_id AND y.status = 'completed'
  AND p.status IN ('built', 'relayed', 'confirmed');

SELECT pg_catalog.pg_extension_config_dump('compay.payout_parts', '');

REVOKE ALL ON compay.payout_parts FROM PUBLIC;

GRANT SELECT ON compay.payout_parts TO compay_reader;

DROP FUNCTION compay.payout_withdraw(bigint[], compay.credit, text, text);

CREATE FUNCTION compay.payout_withdraw(hold_ids bigint[], amounts compay.credit[],
    fee compay.credit, fee_from text, reference text) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_payout_withdraw'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;

REVOKE ALL ON FUNCTION compay.payout_withdraw(bigint[], compay.credit[], compay.credit, text, text)
    FROM PUBLIC;

CREATE FUNCTION compay.idempotency_claim(key text, operation text, request text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_idempotency_claim' LANGUAGE C VOLATILE;

CREATE FUNCTION compay.idempotency_record(key text, result_id bigint) RETURNS void
    AS 'MODULE_PATHNAME', 'compay_idempotency_record' LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION compay.idempotency_claim(text, text, text),
    compay.idempotency_record(text, bigint) FROM PUBLIC;

CREATE FUNCTION compay.payable_settlements(node_id text)
RETURNS TABLE (settlement_id bigint, payee text, address text, payable compay.credit,
               started boolean, next_attempt_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT s.id, s.payee, coalesce(v.address, a.address),
           compay.credit_from_atomic(r.rest), r.started, s.next_attempt_at
    FROM compay.settlements s
    JOIN compay.holds h ON h.id = s.earmark_hold_id AND h.status = 'pending'
    JOIN compay.payout_addresses a ON a.node_id = s.payee AND a.purpose = 'primary'
    -- Verifier rewards go to the verification address when there is one.
    LEFT JOIN compay.payout_addresses v
      ON v.node_id = s.payee AND v.purpose = 'verification' AND s.purpose = 'verification'
    CROSS JOIN LATERAL (
        SELECT compay.atomic(h.remaining) - compay.atomic(s.held_back)
               - coalesce(compay.sum_atomic(pp.amount) FILTER (WHERE p.status = 'queued'), 0) AS rest,
               count(*) FILTER (WHERE p.status <> 'failed') > 0 AS started
        FROM compay.payout_parts pp JOIN compay.payout_transactions p ON p.id = pp.payout_id
        WHERE pp.settlement_id = s.id) r
    WHERE s.currency = 'XMR' AND s.status = 'processing'
      AND ($1 IS NULL OR s.payee = $1)
      AND r.rest > 0
$$;

CREATE FUNCTION compay.payout_paid_today(node_id text) RETURNS compay.credit
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT coalesce(compay.sum(i.amount), '0')
    FROM compay.payout_items i JOIN compay.payout_transactions p ON p.id = i.payout_id
    WHERE i.node_id = $1 AND p.status <> 'failed' AND p.created_at > now() - interval '1 day'
$$;

CREATE FUNCTION compay.queue_payout_parts(payout_id bigint, node_id text, amount compay.credit,
    due_only boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_left compay.credit := amount;
    v_part compay.credit;
    r record;
BEGIN
    FOR r IN SELECT * FROM compay.payable_settlements(queue_payout_parts.node_id) s
             WHERE NOT due_only OR s.next_attempt_at IS NULL OR s.next_attempt_at <= now()
             ORDER BY s.started DESC, s.settlement_id
    LOOP
        EXIT WHEN v_left <= '0';
        v_part := least(r.payable, v_left);
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

CREATE FUNCTION compay.lock_payable_settlements(node_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM NULL FROM compay.settlements s
    WHERE s.payee = lock_payable_settlements.node_id AND s.currency = 'XMR'
      AND s.status = 'processing'
    ORDER BY s.id FOR UPDATE;
END $$;

COMMENT ON FUNCTION compay.payable_settlements(text) IS
    'the payable rest of each processing XMR settlement: its earmark hold''s remaining less held_back less its queued parts';

CREATE OR REPLACE FUNCTION compay.queue_payouts() RETURNS integer
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
                   WHERE a.node_id = request_payout.node_id AND a.purpose = 'primary') THEN
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

CREATE OR REPLACE FUNCTION compay.record_payout_built(payout_id bigint, reply jsonb,
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
    WHERE y.settlement_id IN (SELECT pp.settlement_id FROM compay.payout_parts pp
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

CREATE OR REPLACE FUNCTION compay.record_payout_failed(payout_id bigint, reason text) RETURNS void
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

CREATE OR REPLACE FUNCTION compay.record_payout_voided(payout_id bigint, reason text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_tx_hash text;
    v_rest compay.credit;
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
        UPDATE compay.settlements st
        SET payout_id = (SELECT max(pp.payout_id) FROM compay.payout_parts pp
                         JOIN compay.payout_transactions p ON p.id = pp.payout_id
                         WHERE pp.settlement_id = st.id AND p.status <> 'failed'),
            next_attempt_at = now() + interval '10 seconds',
            earmark_hold_id = compay.reserve(s.payee, coalesce(v_rest, '0') + s.amount,
                                             'settlement:' || s.id, NULL, NULL, 'XMR')
        WHERE st.id = s.id;
    END LOOP;
    UPDATE compay.payments y
    SET tx_hash = (SELECT p.tx_hash FROM compay.payout_parts pp
                   JOIN compay.payout_transactions p ON p.id = pp.payout_id
                   WHERE pp.settlement_id = y.settlement_id
                     AND p.status IN ('built', 'relayed', 'confirmed')
                   ORDER BY p.id DESC LIMIT 1)
    WHERE y.tx_hash = v_tx_hash;
END $$;

CREATE OR REPLACE FUNCTION compay.record_payout_confirmations(payout_id bigint, confirmations integer)
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
    LEFT JOIN compay.settlements s ON s.id = y.settlement_id
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

CREATE FUNCTION compay.request_payout(node_id text, amount numeric, idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.request_payout(node_id, amount::compay.credit, idempotency_key);

REVOKE ALL ON FUNCTION compay.request_payout(text, numeric, text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION compay.request_payout(text, numeric, text) TO compay_app, compay_node;

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
    --     still open, and its confirmed parts cover its total exactly
    --     unless a dispute touched it (held_back, or a payment of it no
    --     longer completed).
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
          WHERE s.currency = 'XMR' AND s.status = 'completed'
            AND ((h.status = 'pending' AND h.remaining OPERATOR(compay.>) '0')
                 OR coalesce(c.open, 0) > 0
                 OR (coalesce(c.confirmed, 0) <> compay.atomic(s.total_amount)
                     AND s.held_back OPERATOR(compay.=) '0'
                     AND NOT EXISTS (SELECT 1 FROM compay.payments y
                                     WHERE y.settlement_id = s.id AND y.status <> 'completed')))) bad
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
$$;

--------------------------------------------------------------------------
-- Issue 13 (verifiers): shortfalls, verification rewards for both
-- outcomes, regions, daily vote limits, minimum scores, the credit-limit
-- policy.
--------------------------------------------------------------------------

ALTER TABLE compay.verifications ADD COLUMN region text,
    ADD COLUMN counted boolean NOT NULL DEFAULT true;
-- A verifier's votes of the last 24 hours (its daily limit).
CREATE INDEX verifications_verifier ON compay.verifications (verifier, created_at);
-- The region each node declares (compay.set_node_region): with
-- compay.verification_distinct_regions on, a job's quorum counts one vote
-- per region and none from the provider's region.
CREATE TABLE compay.node_regions (
    node_id    text PRIMARY KEY,
    region     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT node_regions_region CHECK (region ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$')
);
COMMENT ON TABLE compay.node_regions IS 'the region each node declared, for distinct-region quorums';

-- The credit-limit policy (compay.apply_credit_limit_policy): a node whose
-- credit score and paid jobs reach a row's minimums may have that row's
-- credit limit.  Rows are set by compay_admin.
CREATE TABLE compay.credit_limit_policy (
    currency      text NOT NULL DEFAULT 'CREDIT',
    min_score     numeric(6,5) NOT NULL,
    min_paid_jobs integer NOT NULL,
    credit_limit  compay.credit NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (currency, min_score, min_paid_jobs),
    CONSTRAINT credit_limit_policy_score CHECK (min_score BETWEEN 0 AND 1),
    CONSTRAINT credit_limit_policy_jobs CHECK (min_paid_jobs >= 0),
    CONSTRAINT credit_limit_policy_limit CHECK (credit_limit >= '0')
);
COMMENT ON TABLE compay.credit_limit_policy IS
    'credit limit a node may reach with a credit score and paid jobs of at least these; applied by compay.apply_credit_limit_policy()';

-- Shortfalls: what a verified job cost beyond its escrow.  Charged to the
-- requester at once as far as its funds and credit limit allow; the rest
-- is owed to the provider and collected from the requester's next
-- deposits, oldest first.  Each collection is a transfer from requester to
-- provider (reference 'shortfall:<id>') and a completed payment of the
-- task (metadata shortfall_id), which settlement pays out as any other.
CREATE SEQUENCE compay.shortfalls_id_seq;
CREATE TABLE compay.shortfalls (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.shortfalls_id_seq'),
    job_id       bigint NOT NULL UNIQUE REFERENCES compay.jobs (id),
    requester    text NOT NULL,
    provider     text NOT NULL,
    currency     text NOT NULL,
    amount       compay.credit NOT NULL,    -- the verified price less the escrow
    collected    compay.credit NOT NULL DEFAULT '0',
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    collected_at timestamptz,               -- when the last of it was collected
    CONSTRAINT shortfalls_amounts CHECK (amount > '0' AND collected >= '0' AND collected <= amount),
    CONSTRAINT shortfalls_collected CHECK ((collected = amount) = (collected_at IS NOT NULL))
);
ALTER SEQUENCE compay.shortfalls_id_seq OWNED BY compay.shortfalls.id;
CREATE INDEX shortfalls_owed ON compay.shortfalls (requester, currency, id)
    WHERE collected_at IS NULL;
COMMENT ON TABLE compay.shortfalls IS
    'what verified jobs cost beyond their escrow: owed by the requester to the provider, collected from its deposits';

SELECT pg_catalog.pg_extension_config_dump('compay.node_regions', '');
SELECT pg_catalog.pg_extension_config_dump('compay.credit_limit_policy', '');
SELECT pg_catalog.pg_extension_config_dump('compay.shortfalls', '');
SELECT pg_catalog.pg_extension_config_dump('compay.shortfalls_id_seq', '');
REVOKE ALL ON compay.node_regions, compay.credit_limit_policy, compay.shortfalls,
    compay.shortfalls_id_seq FROM PUBLIC;
GRANT SELECT ON compay.node_regions, compay.credit_limit_policy, compay.shortfalls
    TO compay_reader;
GRANT INSERT, UPDATE, DELETE ON compay.credit_limit_policy TO compay_admin;

-- The collections of a job's shortfall are further payments of the task.
DROP INDEX compay.payments_task_once;
CREATE UNIQUE INDEX payments_task_once ON compay.payments (task_id)
    WHERE status <> 'failed' AND (metadata -> 'shortfall_id') IS NULL;

-- The same with a reward per verifier (rewards[i] to verifiers[i]).
CREATE FUNCTION compay.settle_job(hold_id bigint, provider text, amount compay.credit,
    verifiers text[], rewards compay.credit[], reference text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_settle_job'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
REVOKE ALL ON FUNCTION compay.settle_job(bigint, text, compay.credit, text[], compay.credit[], text)
    FROM PUBLIC;

CREATE FUNCTION compay.node_score(node_id text, currency text) RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT coalesce((SELECT credit_score FROM compay.accounts a
                     WHERE a.node_id = $1 AND a.currency = $2), 0.5)
$$;

CREATE FUNCTION compay.require_score(node_id text, currency text, setting text, action text)
RETURNS void LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_min numeric := compay.setting(setting)::numeric;
    v_score numeric := compay.node_score(node_id, currency);
BEGIN
    IF v_score < v_min THEN
        RAISE EXCEPTION 'node "%" has credit score %, less than % %', left(node_id, 64), v_score,
            setting, v_min
            USING ERRCODE = 'PY020',
                  DETAIL = format('A node needs a %s credit score of at least %s to %s.',
                                  currency, v_min, action),
                  HINT = 'The score rises with paid jobs and votes that match the outcome.';
    END IF;
END $$;

CREATE FUNCTION compay.require_stake(node_id text, currency text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_min compay.credit := compay.setting('compay.min_stake')::compay.credit;
    v_stake compay.credit;
BEGIN
    IF v_min > '0' THEN
        SELECT amount INTO v_stake FROM compay.stakes s
        WHERE s.node_id = require_stake.node_id AND s.currency = require_stake.currency FOR SHARE;
        IF coalesce(v_stake, '0') < v_min THEN
            RAISE EXCEPTION 'node "%" has staked % %, less than compay.min_stake %',
                left(node_id, 64), coalesce(v_stake, '0'), currency, v_min
                USING ERRCODE = 'PY011', HINT = 'Stake more with compay.stake().';
        END IF;
    END IF;
END $$;

CREATE FUNCTION compay.verifier_daily_limit(node_id text, currency text DEFAULT 'CREDIT')
RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_base integer := compay.setting('compay.verifier_votes_per_day')::integer;
    v_per compay.credit := compay.setting('compay.verifier_stake_per_vote')::compay.credit;
    v_stake compay.credit;
    v_votes numeric;
BEGIN
    IF node_id IS NULL OR currency IS NULL THEN
        RAISE EXCEPTION 'node_id and currency must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_node(node_id, false);
    IF v_base = 0 THEN
        RETURN NULL;
    END IF;
    v_votes := v_base;
    IF v_per > '0' THEN
        SELECT amount INTO v_stake FROM compay.stakes s
        WHERE s.node_id = verifier_daily_limit.node_id AND s.currency = verifier_daily_limit.currency;
        v_votes := v_votes + floor(compay.atomic(coalesce(v_stake, '0')) / compay.atomic(v_per));
    END IF;
    RETURN least(floor(v_votes * 2 * compay.node_score(node_id, currency)), 2147483647)::integer;
END $$;
COMMENT ON FUNCTION compay.verifier_daily_limit(text, text) IS
    'votes a verifier may cast in any 24 hours: floor((compay.verifier_votes_per_day + floor(stake / compay.verifier_stake_per_vote)) x 2 x credit score); NULL: no limit';

CREATE FUNCTION compay.verifier_rewards(j compay.jobs, outcome boolean, base compay.credit,
    OUT verifiers text[], OUT rewards compay.credit[])
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT coalesce(array_agg(v.verifier ORDER BY v.created_at, v.verifier), '{}'),
           coalesce(array_agg(base OPERATOR(compay.*)
                              least(greatest(compay.setting('compay.verification_reward_ratio')::numeric
                                             * coalesce(v.quality_factor, 1), 0.10), 0.20)
                              ORDER BY v.created_at, v.verifier), '{}')
    FROM compay.verifications v
    WHERE v.job_id = j.id AND v.passed = outcome AND v.counted
$$;

CREATE FUNCTION compay.lock_job_accounts(j compay.jobs) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT 1 FROM compay.accounts a
    WHERE a.currency = j.currency
      AND (a.node_id IN (j.requester, j.provider, '$rewards')
           OR a.node_id IN (SELECT v.verifier FROM compay.verifications v WHERE v.job_id = j.id))
    ORDER BY a.id FOR UPDATE
$$;

CREATE FUNCTION compay.score_votes(j compay.jobs, outcome boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v compay.verifications;
BEGIN
    FOR v IN SELECT * FROM compay.verifications WHERE job_id = j.id ORDER BY verifier LOOP
        IF v.passed <> outcome THEN
            PERFORM compay.open_account(v.verifier, j.currency);
            PERFORM compay.move_credit_score(v.verifier, j.currency, false);
        ELSIF v.counted THEN
            PERFORM compay.move_credit_score(v.verifier, j.currency, true);
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION compay.fail_verified_job(j compay.jobs) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_base compay.credit;
    r record;
BEGIN
    BEGIN
        v_base := least(compay.job_amount(j, NULL), j.max_amount);
    EXCEPTION WHEN data_exception THEN
        v_base := '0';
    END;
    r := compay.verifier_rewards(j, false, v_base);
    PERFORM compay.settle_job(j.escrow_hold_id, j.provider, '0', r.verifiers, r.rewards,
                              'job:' || j.task_id);
    UPDATE compay.verifications v SET reward_amount = x.reward, rewarded_at = now()
    FROM unnest(r.verifiers, r.rewards) x (verifier, reward)
    WHERE v.job_id = j.id AND v.verifier = x.verifier;
    PERFORM compay.move_credit_score(j.provider, j.currency, false);
    UPDATE compay.jobs SET status = 'failed', updated_at = now() WHERE id = j.id;
END $$;

CREATE FUNCTION compay.collect_shortfall(shortfall_id bigint, amount compay.credit)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.shortfalls;
    v_transfer bigint;
    v_payment bigint;
BEGIN
    SELECT * INTO STRICT s FROM compay.shortfalls WHERE id = shortfall_id;
    ASSERT collect_shortfall.amount > '0' AND collect_shortfall.amount <= s.amount - s.collected,
        'a collection within what is owed';
    v_transfer := compay.transfer(s.requester, s.provider, collect_shortfall.amount,
                                  'shortfall:' || s.id, NULL, s.currency);
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 completed_at, transfer_id, metadata)
    SELECT j.task_id, s.requester, s.provider, collect_shortfall.amount, s.currency,
           (CASE WHEN s.currency = 'XMR' THEN 'crypto' ELSE 'credit' END)::compay.payment_method,
           'completed', now(), v_transfer, jsonb_build_object('shortfall_id', s.id)
    FROM compay.jobs j WHERE j.id = s.job_id
    RETURNING id INTO v_payment;
    UPDATE compay.shortfalls
    SET collected = shortfalls.collected + collect_shortfall.amount,
        collected_at = CASE WHEN shortfalls.collected + collect_shortfall.amount = shortfalls.amount
                            THEN now() END
    WHERE id = s.id;
    RETURN v_payment;
END $$;

CREATE FUNCTION compay.record_shortfall(j compay.jobs, amount compay.credit) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_id bigint;
    v_available compay.credit;
BEGIN
    INSERT INTO compay.shortfalls (job_id, requester, provider, currency, amount)
    VALUES (j.id, j.requester, j.provider, j.currency, record_shortfall.amount)
    RETURNING id INTO v_id;
    SELECT b.available INTO v_available FROM compay.balance(j.requester, j.currency) b;
    IF coalesce(v_available, '0') > '0' THEN
        PERFORM compay.collect_shortfall(v_id, least(record_shortfall.amount, v_available));
    END IF;
    RETURN v_id;
END $$;

CREATE FUNCTION compay.lock_shortfalls(node_id text, currency text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_providers text[];
BEGIN
    SELECT array_agg(provider) INTO v_providers
    FROM (SELECT s.provider FROM compay.shortfalls s
          WHERE s.requester = lock_shortfalls.node_id AND s.currency = lock_shortfalls.currency
            AND s.collected_at IS NULL
          ORDER BY s.id LIMIT 100 FOR UPDATE) o;
    IF v_providers IS NULL THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM compay.accounts a
    WHERE a.currency = lock_shortfalls.currency
      AND (a.node_id IN (lock_shortfalls.node_id, '$external') OR a.node_id = ANY (v_providers))
    ORDER BY a.id FOR UPDATE;
    RETURN true;
END $$;

CREATE FUNCTION compay.collect_shortfalls(node_id text, currency text, amount compay.credit)
RETURNS compay.credit
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.shortfalls;
    v_budget compay.credit;
    v_part compay.credit;
    v_total compay.credit := '0';
BEGIN
    SELECT least(collect_shortfalls.amount, b.available) INTO v_budget
    FROM compay.balance(node_id, currency) b;
    FOR s IN SELECT * FROM compay.shortfalls sf
             WHERE sf.requester = collect_shortfalls.node_id
               AND sf.currency = collect_shortfalls.currency AND sf.collected_at IS NULL
             ORDER BY sf.id LIMIT 100
    LOOP
        EXIT WHEN coalesce(v_budget, '0') <= '0';
        v_part := least(s.amount - s.collected, v_budget);
        PERFORM compay.collect_shortfall(s.id, v_part);
        v_budget := v_budget - v_part;
        v_total := v_total + v_part;
    END LOOP;
    RETURN v_total;
END $$;

CREATE FUNCTION compay.node_shortfalls(node_id text, currency text DEFAULT NULL)
RETURNS TABLE (shortfall_id bigint, task_id text, role text, requester text, provider text,
    currency text, amount compay.credit, collected compay.credit, owed compay.credit,
    created_at timestamptz, collected_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT s.id, j.task_id, CASE WHEN s.requester = $1 THEN 'requester' ELSE 'provider' END,
           s.requester, s.provider, s.currency, s.amount, s.collected,
           s.amount OPERATOR(compay.-) s.collected, s.created_at, s.collected_at
    FROM compay.shortfalls s JOIN compay.jobs j ON j.id = s.job_id
    WHERE (s.requester = $1 OR s.provider = $1) AND ($2 IS NULL OR s.currency = $2)
    ORDER BY s.id
$$;
COMMENT ON FUNCTION compay.node_shortfalls(text, text) IS
    'the shortfalls a node owes (role requester) or is owed (role provider): amount, collected, owed';

CREATE FUNCTION compay.set_node_region(node_id text, region text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    IF region IS NULL THEN
        DELETE FROM compay.node_regions r WHERE r.node_id = set_node_region.node_id;
        RETURN;
    END IF;
    IF region !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' THEN
        RAISE EXCEPTION 'region "%" is not a region name', left(region, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A region has 1 to 64 letters, digits, "_", ".", ":" or "-", and starts with a letter or digit.';
    END IF;
    INSERT INTO compay.node_regions AS r (node_id, region) VALUES (node_id, region)
    ON CONFLICT ON CONSTRAINT node_regions_pkey
    DO UPDATE SET region = EXCLUDED.region, updated_at = now();
END $$;
COMMENT ON FUNCTION compay.set_node_region(text, text) IS
    'declares the node''s region (NULL: none), for compay.verification_distinct_regions';

CREATE FUNCTION compay.apply_credit_limit_policy(currency text DEFAULT 'CREDIT')
RETURNS TABLE (node_id text, old_limit compay.credit, new_limit compay.credit)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    r record;
BEGIN
    IF currency IS NULL THEN
        RAISE EXCEPTION 'currency must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR r IN
        SELECT a.node_id, a.credit_limit AS old_limit,
               (SELECT max(p.credit_limit) FROM compay.credit_limit_policy p
                WHERE p.currency = a.currency AND p.min_score <= a.credit_score
                  AND p.min_paid_jobs <= (SELECT count(*) FROM compay.jobs j
                                          WHERE j.currency = a.currency AND j.status = 'paid'
                                            AND a.node_id IN (j.requester, j.provider))) AS new_limit
        FROM compay.accounts a
        WHERE a.currency = apply_credit_limit_policy.currency AND (a.flags & 1) = 0
        ORDER BY a.id
    LOOP
        CONTINUE WHEN r.new_limit IS NULL OR r.new_limit <= r.old_limit;
        PERFORM compay.set_credit_limit(r.node_id, r.new_limit, apply_credit_limit_policy.currency);
        node_id := r.node_id;
        old_limit := r.old_limit;
        new_limit := r.new_limit;
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION compay.apply_credit_limit_policy(text) IS
    'raises each account''s credit limit to the highest compay.credit_limit_policy row its credit score and paid jobs reach; never lowers one; returns what it changed';

CREATE OR REPLACE FUNCTION compay.assign_job(task_id text, provider text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
BEGIN
    PERFORM compay.require_node(NULL);          -- the application assigns jobs
    j := compay.lock_job(task_id);      -- after the check: no lock for a refused caller
    IF provider IS NULL THEN
        RAISE EXCEPTION 'provider must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF j.status = 'assigned' AND j.provider = provider THEN
        RETURN;                                 -- a retry
    END IF;
    PERFORM compay.require_job_status(j, 'submitted', 'assign');
    PERFORM compay.require_not_timed_out(j);
    PERFORM compay.check_node_id(provider);
    IF provider = j.requester OR left(provider, 1) = '$' OR length(provider) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'node "%" cannot run job "%"', left(provider, 64), left(task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The provider must be a node other than the requester.';
    END IF;
    PERFORM compay.require_stake(provider, j.currency);
    PERFORM compay.require_score(provider, j.currency, 'compay.min_score_assign', 'run jobs');
    UPDATE compay.jobs SET provider = assign_job.provider, status = 'assigned', updated_at = now()
    WHERE id = j.id;
END $$;
COMMENT ON FUNCTION compay.assign_job(text, text) IS
    'assigns a submitted job to a provider whose stake is at least compay.min_stake and credit score at least compay.min_score_assign';

CREATE OR REPLACE FUNCTION compay.pay_verified_job(j compay.jobs) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_factors numeric[];
    v_price compay.credit;
    v_amount compay.credit;
    r record;
    v_payment bigint;
    v_transfer bigint;
BEGIN
    SELECT array_agg(quality_factor) INTO v_factors
    FROM compay.verifications WHERE job_id = j.id AND passed AND counted;
    v_price := compay.job_amount(j, v_factors);
    v_amount := least(v_price, j.max_amount);
    r := compay.verifier_rewards(j, true, v_amount);
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 resource_metrics, metadata)
    VALUES (j.task_id, j.requester, j.provider, v_amount, j.currency,
            (CASE WHEN j.currency = 'XMR' THEN 'crypto' ELSE 'credit' END)::compay.payment_method,
            'processing',
            compay.task_metrics(j.task_id),
            jsonb_build_object('escrow_hold_id', j.escrow_hold_id, 'verifiers', r.verifiers,
                               'verifier_rewards', r.rewards::text[], 'price', v_price::text))
    RETURNING id INTO v_payment;
    v_transfer := compay.settle_job(j.escrow_hold_id, j.provider, v_amount, r.verifiers,
                                    r.rewards, 'job:' || j.task_id);
    UPDATE compay.payments SET status = 'completed', completed_at = now(), transfer_id = v_transfer
    WHERE id = v_payment;
    UPDATE compay.verifications v SET reward_amount = x.reward, rewarded_at = now()
    FROM unnest(r.verifiers, r.rewards) x (verifier, reward)
    WHERE v.job_id = j.id AND v.verifier = x.verifier;
    UPDATE compay.jobs SET status = 'paid', amount = v_amount, payment_id = v_payment,
                           updated_at = now()
    WHERE id = j.id;
    IF v_price > v_amount THEN
        PERFORM compay.record_shortfall(j, v_price - v_amount);
    END IF;
    RETURN v_payment;
END $$;

CREATE OR REPLACE FUNCTION compay.verify_job(task_id text, verifier text, passed boolean,
    quality_factor numeric DEFAULT NULL) RETURNS compay.job_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    v_quorum integer := compay.setting('compay.verification_quorum')::integer;
    v_limit integer;
    v_region text;
    v_counted boolean := true;
    v_passes integer;
    v_fails integer;
    v_error text;
BEGIN
    PERFORM compay.require_node(NULL);          -- a vote moves other nodes' money
    j := compay.lock_job(task_id);      -- after the check: no lock for a refused caller
    IF verifier IS NULL OR passed IS NULL THEN
        RAISE EXCEPTION 'verifier and passed must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF j.max_amount IS NULL THEN
        RAISE EXCEPTION 'task "%" has no escrow to verify', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Pay a task without escrow with compay.process_task_payment().';
    END IF;
    PERFORM compay.require_job_status(j, 'completed', 'verify');
    PERFORM compay.require_not_timed_out(j);
    PERFORM compay.check_node_id(verifier);
    IF verifier IN (j.requester, j.provider) OR left(verifier, 1) = '$'
       OR length(verifier) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'node "%" cannot verify job "%"', left(verifier, 64), left(task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A verifier is neither the requester nor the provider of the job.';
    END IF;
    IF quality_factor IS NOT NULL AND NOT quality_factor BETWEEN 0.8 AND 1.5 THEN
        RAISE EXCEPTION 'quality factor % is outside [0.8, 1.5]', quality_factor
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM compay.verifications v
               WHERE v.job_id = j.id AND v.verifier = verify_job.verifier) THEN
        RAISE EXCEPTION 'node "%" has already voted on job "%"', left(verifier, 64), left(task_id, 64)
            USING ERRCODE = 'unique_violation';
    END IF;
    -- Who may vote: the minimum stake and score, within the daily limit.
    -- One verifier's votes go in one at a time (an advisory lock after the
    -- job row), so two votes at once on different jobs cannot both pass
    -- the limit.
    PERFORM compay.require_stake(verifier, j.currency);
    PERFORM compay.require_score(verifier, j.currency, 'compay.min_score_verify', 'verify jobs');
    v_limit := compay.verifier_daily_limit(verifier, j.currency);
    IF v_limit IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.verifier_votes'),
                                      pg_catalog.hashtext(verifier));
        IF (SELECT count(*) FROM compay.verifications v
            WHERE v.verifier = verify_job.verifier
              AND v.created_at > pg_catalog.statement_timestamp() - interval '24 hours') >= v_limit THEN
            RAISE EXCEPTION 'node "%" has cast its % votes of the last 24 hours', left(verifier, 64),
                v_limit
                USING ERRCODE = 'PY021',
                      DETAIL = 'compay.verifier_daily_limit() gives the limit from the node''s stake and credit score.',
                      HINT = 'Vote again later, or stake more.';
        END IF;
    END IF;
    -- Distinct regions: one vote per region and outcome counts, none from
    -- the provider's region or from a node without one.
    SELECT region INTO v_region FROM compay.node_regions WHERE node_id = verifier;
    IF compay.setting('compay.verification_distinct_regions')::boolean THEN
        v_counted := v_region IS NOT NULL
            AND v_region IS DISTINCT FROM (SELECT region FROM compay.node_regions
                                           WHERE node_id = j.provider)
            AND NOT EXISTS (SELECT 1 FROM compay.verifications v
                            WHERE v.job_id = j.id AND v.passed = verify_job.passed
                              AND v.counted AND v.region = v_region);
    END IF;
    INSERT INTO compay.verifications (job_id, verifier, passed, quality_factor, region, counted,
                                      created_at)
    VALUES (j.id, verifier, passed, quality_factor, v_region, v_counted,
            pg_catalog.statement_timestamp());
    SELECT count(*) FILTER (WHERE v.passed), count(*) FILTER (WHERE NOT v.passed)
    INTO v_passes, v_fails
    FROM compay.verifications v WHERE v.job_id = j.id AND v.counted;
    IF v_passes >= v_quorum THEN
        BEGIN
            PERFORM compay.lock_job_accounts(j);
            PERFORM compay.pay_verified_job(j);
            PERFORM compay.score_votes(j, true);
            RETURN 'paid';
        EXCEPTION WHEN data_exception THEN
            -- The job cannot be paid as recorded (its usage cannot be
            -- priced, say, after a price change): it fails now rather than
            -- at its timeout, the escrow goes back to the requester, and
            -- the error stays on the job.  Other errors (a lock timeout, a
            -- missing pricing model) undo the vote, to be retried.
            GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
            v_error := SQLSTATE || ': ' || v_error;
        END;
        PERFORM compay.release(j.escrow_hold_id);
        UPDATE compay.jobs SET status = 'failed', payment_error = v_error, updated_at = now()
        WHERE id = j.id;
        RAISE WARNING 'job "%" could not be paid; its escrow went back to the requester',
            left(task_id, 64)
            USING DETAIL = format('The payment failed with %s.', v_error),
                  HINT = 'compay.jobs.payment_error keeps the error.';
        RETURN 'failed';
    ELSIF v_fails >= v_quorum THEN
        PERFORM compay.lock_job_accounts(j);
        PERFORM compay.fail_verified_job(j);
        PERFORM compay.score_votes(j, false);
        RETURN 'failed';
    END IF;
    RETURN 'completed';
END $$;
COMMENT ON FUNCTION compay.verify_job(text, text, boolean, numeric) IS
    'records one verifier''s vote (minimum stake and score, daily limit); at compay.verification_quorum counted passes the job is paid from its escrow (a price above it is a shortfall), at as many counted failures the escrow goes back to the requester; the verifiers whose vote matches the outcome are rewarded from $rewards, those against it lose score; a payment that fails with a data error fails the job (payment_error) and returns the escrow';

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
    --     still open, and its confirmed parts cover its total exactly
    --     unless a dispute touched it (held_back, or a payment of it no
    --     longer completed).
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
          WHERE s.currency = 'XMR' AND s.status = 'completed'
            AND ((h.status = 'pending' AND h.remaining OPERATOR(compay.>) '0')
                 OR coalesce(c.open, 0) > 0
                 OR (coalesce(c.confirmed, 0) <> compay.atomic(s.total_amount)
                     AND s.held_back OPERATOR(compay.=) '0'
                     AND NOT EXISTS (SELECT 1 FROM compay.payments y
                                     WHERE y.settlement_id = s.id AND y.status <> 'completed')))) bad
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
$$;

-- A retry of process_task_payment returns the task's payment, not a shortfall collection.
CREATE OR REPLACE FUNCTION compay.process_task_payment(task_id text,
    method compay.payment_method DEFAULT 'credit') RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j compay.jobs;
    p compay.payments;
    v_currency text;
BEGIN
    PERFORM compay.require_node(NULL);
    j := compay.lock_job(task_id);      -- after the check: no lock for a refused caller
    IF method IS NULL THEN
        RAISE EXCEPTION 'method must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Paid at most once: a retry, of any method, gets the payment made
    -- (not a collection of the job's shortfall, src/jobs.sql).
    SELECT * INTO p FROM compay.payments
    WHERE payments.task_id = process_task_payment.task_id AND status <> 'failed'
      AND (payments.metadata -> 'shortfall_id') IS NULL;
    IF FOUND THEN
        RETURN p;
    END IF;
    IF j.max_amount IS NOT NULL THEN
        RAISE EXCEPTION 'job "%" is paid from its escrow after verification', left(task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Use compay.verify_job().';
    END IF;
    IF method = 'fiat' THEN
        RAISE EXCEPTION 'fiat payments are not supported' USING ERRCODE = 'feature_not_supported',
            HINT = 'Pay with credit, barter or crypto.';
    END IF;
    PERFORM compay.require_job_status(j, 'completed', 'pay');
    v_currency := CASE method WHEN 'crypto' THEN 'XMR' WHEN 'barter' THEN 'CREDIT' ELSE j.currency END;
    IF v_currency <> j.currency THEN
        RAISE EXCEPTION 'task "%" is priced in %, not %', left(task_id, 64), j.currency, v_currency
            USING ERRCODE = 'PY003',
                  DETAIL = format('A %s payment moves %s.', method, v_currency),
                  HINT = 'Map the task type to a pricing model in that currency.';
    END IF;
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 resource_metrics)
    VALUES (task_id, j.requester, j.provider, compay.job_amount(j, NULL), v_currency, method,
            'processing', compay.task_metrics(task_id))
    RETURNING * INTO p;
    BEGIN
        IF p.amount > '0' THEN
            IF method = 'barter' THEN
                p.transfer_id := compay.grant_barter(j.provider, j.requester, p.amount,
                                                     'payment:' || p.id);
            ELSE
                p.transfer_id := compay.transfer(j.requester, j.provider, p.amount,
                                                 'payment:' || p.id, NULL, v_currency);
            END IF;
        END IF;
        UPDATE compay.payments SET status = 'completed', completed_at = now(),
                                   transfer_id = p.transfer_id
        WHERE id = p.id RETURNING * INTO p;
        UPDATE compay.jobs SET status = 'paid', amount = p.amount, payment_id = p.id,
                               updated_at = now()
        WHERE id = j.id;
    EXCEPTION WHEN SQLSTATE 'PY001' OR SQLSTATE 'PY002' THEN
        UPDATE compay.payments
        SET status = 'failed', completed_at = now(),
            metadata = metadata || jsonb_build_object('sqlstate', SQLSTATE, 'error', SQLERRM)
        WHERE id = p.id RETURNING * INTO p;
        PERFORM compay.move_credit_score(j.requester, v_currency, false);
    END;
    RETURN p;
END $$;

REVOKE ALL ON FUNCTION compay.node_score(text, text), compay.require_score(text, text, text, text),
    compay.require_stake(text, text),
    compay.verifier_rewards(compay.jobs, boolean, compay.credit),
    compay.lock_job_accounts(compay.jobs), compay.score_votes(compay.jobs, boolean),
    compay.fail_verified_job(compay.jobs),
    compay.collect_shortfall(bigint, compay.credit), compay.record_shortfall(compay.jobs, compay.credit),
    compay.lock_shortfalls(text, text), compay.collect_shortfalls(text, text, compay.credit),
    compay.verifier_daily_limit(text, text), compay.node_shortfalls(text, text),
    compay.set_node_region(text, text), compay.apply_credit_limit_policy(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.verifier_daily_limit(text, text),
    compay.node_shortfalls(text, text) TO compay_reader, compay_node;
GRANT EXECUTE ON FUNCTION compay.set_node_region(text, text) TO compay_app, compay_node;
GRANT EXECUTE ON FUNCTION compay.apply_credit_limit_policy(text) TO compay_admin;

--------------------------------------------------------------------------
-- Issue 13 (disputes): disputes hold money; refunds at every stage;
-- clawbacks repaid from the payee's next settlements.
--------------------------------------------------------------------------
-- Refunded in part before settlement: the rest is settled too (rare).
CREATE INDEX payments_unsettled_refunded ON compay.payments (completed_at)
    WHERE status = 'refunded' AND settlement_id IS NULL;

CREATE SEQUENCE compay.clawbacks_id_seq;
CREATE TABLE compay.clawbacks (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.clawbacks_id_seq'),
    node_id     text NOT NULL,                  -- the payee who owes it
    currency    text NOT NULL,
    payment_id  bigint NOT NULL,                -- the refunded payment
    amount      compay.credit NOT NULL,         -- what $clawbacks fronted to the payer
    repaid      compay.credit NOT NULL DEFAULT '0',
    transfer_id bigint NOT NULL,                -- the refund from $clawbacks
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    repaid_at   timestamptz,                    -- when the last of it was repaid
    CONSTRAINT clawbacks_amounts CHECK (amount > '0' AND repaid >= '0' AND repaid <= amount),
    CONSTRAINT clawbacks_repaid_at CHECK ((repaid_at IS NOT NULL) = (repaid = amount))
);
ALTER SEQUENCE compay.clawbacks_id_seq OWNED BY compay.clawbacks.id;
CREATE INDEX clawbacks_open ON compay.clawbacks (node_id, currency, id) WHERE repaid_at IS NULL;
CREATE INDEX clawbacks_payment ON compay.clawbacks (payment_id);
COMMENT ON TABLE compay.clawbacks IS
    'refunds of payments whose money had left on chain: fronted by $clawbacks, owed by the payee, repaid first from its next settlements';
SELECT pg_catalog.pg_extension_config_dump('compay.clawbacks', '');
SELECT pg_catalog.pg_extension_config_dump('compay.clawbacks_id_seq', '');
REVOKE ALL ON compay.clawbacks, compay.clawbacks_id_seq FROM PUBLIC;
GRANT SELECT ON compay.clawbacks TO compay_reader;

CREATE FUNCTION compay.dispute_refund(transfer_id bigint, amount compay.credit, hold_id bigint,
    reason text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_dispute_refund'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.dispute_refund(bigint, compay.credit, bigint, text) IS
    'refunds part of a transfer to its payer from a pending hold of its payee, or, with no hold, fronted by $clawbacks; for compay.resolve_dispute()';

CREATE FUNCTION compay.clawback_repay(node_id text, amount compay.credit, currency text,
    reference text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_clawback_repay'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.clawback_repay(text, compay.credit, text, text) IS
    'moves what a node repays of a clawback from its balance to $clawbacks; for compay.process_settlement()';

CREATE FUNCTION compay.clawbacks_owed(node_id text, currency text DEFAULT 'XMR')
RETURNS compay.credit
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT coalesce(compay.sum(c.amount OPERATOR(compay.-) c.repaid), '0'::compay.credit)
    FROM compay.clawbacks c
    WHERE c.node_id = $1 AND c.currency = $2 AND c.repaid_at IS NULL
$$;
COMMENT ON FUNCTION compay.clawbacks_owed(text, text) IS
    'what a node still owes of refunds fronted by $clawbacks; its next settlements repay it first';

CREATE OR REPLACE FUNCTION compay.dispute_payment(payment_id bigint, reason text) RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
    v_window interval := compay.setting('compay.dispute_window')::interval;
BEGIN
    PERFORM compay.require_node(NULL);
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
    IF reason IS NULL OR length(reason) = 0 THEN
        RAISE EXCEPTION 'a dispute needs a reason' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(reason) > 1000 THEN
        RAISE EXCEPTION 'a dispute reason has at most 1000 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p.status <> 'completed' THEN
        RAISE EXCEPTION 'cannot dispute payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF now() > p.completed_at + v_window THEN
        RAISE EXCEPTION 'the dispute window of payment % has closed', payment_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Payments can be disputed for %s after they complete (compay.dispute_window).',
                                  compay.setting('compay.dispute_window'));
    END IF;
    -- Settled already: its settlement holds the amount back from payouts.
    -- The payment row is locked first, then the settlement, as
    -- compay.run_settlement does.  A payout queue run in progress is waited
    -- for (its lock), and one after this commit sees held_back: a payout
    -- never takes a payment disputed before it was queued.
    IF p.settlement_id IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
        UPDATE compay.settlements SET held_back = held_back + p.amount
        WHERE id = p.settlement_id;
    END IF;
    UPDATE compay.payments SET status = 'disputed', dispute_reason = reason, disputed_at = now()
    WHERE id = payment_id RETURNING * INTO p;
    PERFORM compay.move_credit_score(p.to_node, p.currency, false);
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.dispute_payment(bigint, text) IS
    'disputes a completed payment within compay.dispute_window: unsettled, it is kept out of settlement; settled, its settlement holds it back from payouts';

CREATE FUNCTION compay.refund_disputed(p compay.payments, refund_amount compay.credit)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_reason text := 'dispute:' || p.id;
    v_hold bigint;
    v_unpaid compay.credit;
    v_part compay.credit;
    v_transfer bigint;
BEGIN
    IF p.currency <> 'XMR' THEN
        RETURN compay.refund(p.transfer_id, refund_amount, v_reason);
    END IF;
    IF p.settlement_id IS NOT NULL THEN
        SELECT * INTO s FROM compay.settlements WHERE id = p.settlement_id FOR UPDATE;
        IF s.status IN ('pending', 'failed') THEN
            -- Not earmarked yet: earmark it now, so that its unpaid rest is in its hold.
            PERFORM compay.process_settlement(s.id);
            SELECT * INTO s FROM compay.settlements WHERE id = p.settlement_id;
        END IF;
        IF s.status = 'processing' THEN
            -- What its hold keeps that no payout carries yet (parts of a
            -- queued payout are paid as queued; built ones left the hold).
            v_hold := s.earmark_hold_id;
            SELECT h.remaining - coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                                           JOIN compay.payout_transactions t ON t.id = pp.payout_id
                                           WHERE pp.settlement_id = s.id AND t.status = 'queued'), '0')
            INTO v_unpaid FROM compay.holds h
            WHERE h.id = v_hold AND h.status = 'pending';
            v_unpaid := coalesce(v_unpaid, '0');
        ELSIF s.status = 'completed' THEN
            v_unpaid := '0';           -- paid out
        END IF;
    END IF;
    IF v_unpaid IS NULL AND v_hold IS NULL THEN
        -- Unsettled, or a settlement the payee's balance could not earmark.
        SELECT a.balance - a.reserved INTO v_unpaid FROM compay.accounts a
        WHERE a.node_id = p.to_node AND a.currency = p.currency;
    END IF;
    v_part := least(refund_amount, greatest(coalesce(v_unpaid, '0'), '0'));
    IF v_part > '0' AND v_hold IS NULL THEN
        v_transfer := compay.refund(p.transfer_id, v_part, v_reason);
    ELSIF v_part > '0' THEN
        v_transfer := compay.dispute_refund(p.transfer_id, v_part, v_hold, v_reason);
        -- Its hold refunded to the last piconero and no part open: nothing
        -- is left to pay out, whatever other disputes still hold back (a
        -- refund of theirs is a clawback now).  A part still built or
        -- relayed completes it when confirmed.
        UPDATE compay.settlements SET status = 'completed', completed_at = now()
        WHERE id = s.id
          AND NOT EXISTS (SELECT FROM compay.holds h WHERE h.id = v_hold AND h.status = 'pending')
          AND NOT EXISTS (SELECT FROM compay.payout_parts pp
                          JOIN compay.payout_transactions t ON t.id = pp.payout_id
                          WHERE pp.settlement_id = s.id AND t.status IN ('queued', 'built', 'relayed'));
    END IF;
    v_part := refund_amount - v_part;
    IF v_part > '0' THEN
        v_transfer := compay.dispute_refund(p.transfer_id, v_part, NULL, v_reason);
        INSERT INTO compay.clawbacks (node_id, currency, payment_id, amount, transfer_id)
        VALUES (p.to_node, p.currency, p.id, v_part, v_transfer);
    END IF;
    RETURN v_transfer;
END $$;

CREATE OR REPLACE FUNCTION compay.resolve_dispute(payment_id bigint, refund_amount compay.credit)
RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
BEGIN
    PERFORM compay.require_node(NULL);
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
    IF refund_amount IS NULL THEN
        RAISE EXCEPTION 'refund_amount must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p.status <> 'disputed' THEN
        RAISE EXCEPTION 'cannot resolve payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF refund_amount < '0' THEN
        RAISE EXCEPTION 'a refund cannot be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF refund_amount > p.amount THEN
        RAISE EXCEPTION 'refund of % exceeds payment % of %', refund_amount, payment_id, p.amount
            USING ERRCODE = 'PY008';
    END IF;
    IF refund_amount > '0' AND p.method = 'barter' THEN
        RAISE EXCEPTION 'barter payments cannot be refunded' USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Barter credits are not money the ledger can move back.',
            HINT = 'Resolve with refund 0, or grant barter credits back with compay.grant_barter().';
    END IF;
    -- The settlement no longer holds it back: what is not refunded is paid out.
    IF p.settlement_id IS NOT NULL THEN
        UPDATE compay.settlements SET held_back = held_back - p.amount
        WHERE id = p.settlement_id;
    END IF;
    IF refund_amount = '0' THEN
        UPDATE compay.payments SET status = 'completed' WHERE id = payment_id RETURNING * INTO p;
        RETURN p;
    END IF;
    UPDATE compay.payments
    SET status = 'refunded',
        refund_transfer_id = compay.refund_disputed(p, refund_amount),
        metadata = metadata || jsonb_build_object('refund_amount', refund_amount::text)
    WHERE id = payment_id RETURNING * INTO p;
    RETURN p;
END $$;
COMMENT ON FUNCTION compay.resolve_dispute(bigint, compay.credit) IS
    'ends a dispute: refund 0 puts the payment back to completed; more refunds it from the unpaid rest and claws back what has left on chain';
REVOKE ALL ON FUNCTION compay.refund_disputed(compay.payments, compay.credit),
    compay.dispute_refund(bigint, compay.credit, bigint, text),
    compay.clawback_repay(text, compay.credit, text, text),
    compay.clawbacks_owed(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.clawbacks_owed(text, text) TO compay_reader, compay_node;

CREATE FUNCTION compay.repay_clawbacks(s compay.settlements, amount compay.credit)
RETURNS compay.credit
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.clawbacks;
    v_part compay.credit;
BEGIN
    FOR c IN SELECT * FROM compay.clawbacks
             WHERE node_id = s.payee AND currency = s.currency AND repaid_at IS NULL
             ORDER BY id FOR UPDATE
    LOOP
        EXIT WHEN amount = '0';
        v_part := least(amount, c.amount - c.repaid);
        PERFORM compay.clawback_repay(s.payee, v_part, s.currency,
                                      'clawback:' || c.id || ' settlement:' || s.id);
        UPDATE compay.clawbacks
        SET repaid = repaid + v_part,
            repaid_at = CASE WHEN repaid + v_part = c.amount THEN now() END
        WHERE id = c.id;
        amount := amount - v_part;
    END LOOP;
    RETURN amount;
END $$;
REVOKE ALL ON FUNCTION compay.repay_clawbacks(compay.settlements, compay.credit) FROM PUBLIC;

CREATE OR REPLACE FUNCTION compay.process_settlement(settlement_id bigint, as_of timestamptz DEFAULT now())
RETURNS compay.settlement_status
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_count bigint;
    v_total compay.credit;
    v_net compay.credit;
BEGIN
    SELECT * INTO s FROM compay.settlements WHERE id = settlement_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'settlement % does not exist', settlement_id USING ERRCODE = 'PY013';
    END IF;
    IF s.status IN ('processing', 'completed') THEN
        RETURN s.status;
    END IF;
    BEGIN
        IF s.purpose = 'verification' THEN
            SELECT count(*), coalesce(compay.sum(reward_amount), '0') INTO v_count, v_total
            FROM compay.verifications v WHERE v.settlement_id = s.id;
        ELSE
            SELECT count(*), coalesce(compay.sum(amount), '0') INTO v_count, v_total
            FROM compay.payments p WHERE p.settlement_id = s.id;
        END IF;
        IF v_count <> s.payment_count OR v_total <> s.total_amount THEN
            RAISE EXCEPTION 'settlement % records % payments of %, its payments are % of %',
                s.id, s.payment_count, s.total_amount, v_count, v_total
                USING ERRCODE = 'data_corrupted';
        END IF;
        IF s.currency = 'XMR' THEN
            -- Earmarked: what its payments kept (refunds before settlement
            -- came from the payee's balance), less what repays its clawbacks.
            v_net := compay.repay_clawbacks(s, s.total_amount OPERATOR(compay.-) coalesce(
                (SELECT compay.sum(t.amount) FROM compay.payments p
                 JOIN compay.transfers t ON t.refund_of = p.transfer_id AND t.kind = 'refund'
                 JOIN compay.accounts a ON a.id = t.from_account
                 WHERE p.settlement_id = s.id AND a.node_id = s.payee), '0'));
            IF v_net > '0' THEN
                s.earmark_hold_id := compay.reserve(s.payee, v_net, 'settlement:' || s.id,
                                                    NULL, NULL, 'XMR');
                s.status := 'processing';
            ELSE
                s.status := 'completed';        -- all of it repaid clawbacks
            END IF;
        ELSE
            s.status := 'completed';
        END IF;
        UPDATE compay.settlements
        SET status = s.status, attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL,
            earmark_hold_id = s.earmark_hold_id,
            completed_at = CASE WHEN s.status = 'completed' THEN now() END
        WHERE id = s.id;
    EXCEPTION WHEN OTHERS THEN
        -- Backoff: 1, 2, 4, ... minutes after each failure, at most an hour.
        UPDATE compay.settlements
        SET status = 'failed', attempts = attempts + 1,
            last_error = SQLSTATE || ': ' || SQLERRM,
            next_attempt_at = as_of + least(interval '1 minute' * power(2, attempts), interval '1 hour')
        WHERE id = s.id;
        RETURN 'failed';
    END;
    RETURN s.status;
END $$;

CREATE OR REPLACE FUNCTION compay.run_settlement(period compay.settlement_period DEFAULT 'hourly',
    as_of timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_cutoff timestamptz;
BEGIN
    PERFORM compay.require_node(NULL);
    IF period IS NULL OR as_of IS NULL THEN
        RAISE EXCEPTION 'period and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Only closed periods: everything completed before the start of the
    -- period that holds as_of.
    v_cutoff := compay.period_start(period, as_of);
    -- One run at a time.  A second run waits here, then reads the payments
    -- again and finds them settled; a payment committed after this point is
    -- left for the next run.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.run_settlement'));
    WITH eligible AS (
        SELECT p.id, p.to_node, p.currency, p.amount,
               compay.period_start(run_settlement.period, p.completed_at) AS ps
        FROM compay.payments p
        WHERE p.settlement_id IS NULL AND p.completed_at < v_cutoff
          AND (p.status = 'completed'
               -- Partly refunded by a dispute before settlement: the rest is the payee's.
               OR (p.status = 'refunded' AND p.amount > coalesce(
                      (SELECT compay.sum(t.amount) FROM compay.transfers t
                       WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'), '0')))
        FOR UPDATE
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee,
                                        payment_count, total_amount)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, to_node, count(*), compay.sum(amount)
        FROM eligible GROUP BY ps, currency, to_node
        RETURNING id, period_start, currency, payee
    )
    UPDATE compay.payments p SET settlement_id = g.id
    FROM eligible e JOIN groups g
      ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.to_node
    WHERE p.id = e.id;
    -- Verifier rewards: their own settlements (purpose verification), paid
    -- out to the verifier's verification address when it has one.
    WITH eligible AS (
        SELECT v.job_id, v.verifier, j.currency, v.reward_amount AS amount,
               compay.period_start(run_settlement.period, v.rewarded_at) AS ps
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.settlement_id IS NULL AND v.reward_amount > '0' AND v.rewarded_at < v_cutoff
        FOR UPDATE OF v
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                        payment_count, total_amount)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, verifier, 'verification', count(*), compay.sum(amount)
        FROM eligible GROUP BY ps, currency, verifier
        RETURNING id, period_start, currency, payee
    )
    UPDATE compay.verifications v SET settlement_id = g.id
    FROM eligible e JOIN groups g
      ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
    WHERE v.job_id = e.job_id AND v.verifier = e.verifier;
    RETURN QUERY SELECT compay.process_due_settlements(as_of);
END $$;

CREATE OR REPLACE FUNCTION compay.queue_payouts() RETURNS integer
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

CREATE OR REPLACE FUNCTION compay.record_payout_voided(payout_id bigint, reason text) RETURNS void
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
                   WHERE pp.settlement_id = y.settlement_id
                     AND p.status IN ('built', 'relayed', 'confirmed')
                   ORDER BY p.id DESC LIMIT 1)
    WHERE y.tx_hash = v_tx_hash;
END $$;

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
    --     still open, and its confirmed parts cover its total exactly
    --     unless a dispute touched it (held_back, or a payment of it no
    --     longer completed).
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
          WHERE s.currency = 'XMR' AND s.status = 'completed'
            AND ((h.status = 'pending' AND h.remaining OPERATOR(compay.>) '0')
                 OR coalesce(c.open, 0) > 0
                 OR (coalesce(c.confirmed, 0) <> compay.atomic(s.total_amount)
                     AND s.held_back OPERATOR(compay.=) '0'
                     AND NOT EXISTS (SELECT 1 FROM compay.payments y
                                     WHERE y.settlement_id = s.id AND y.status <> 'completed')))) bad
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
          FROM (SELECT currency, compay.atomic(balance) AS b FROM compay.accounts
                WHERE node_id = '$clawbacks') a
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
          LEFT JOIN compay.payments p ON p.settlement_id = s.id AND p.status = 'disputed'
          GROUP BY s.id, s.held_back
          HAVING coalesce(compay.sum_atomic(p.amount), 0) <> compay.atomic(s.held_back)) bad
$$;

-- 0.1's disputed payments: one not settled stays out of settlement (as in
-- 0.1); one settled is held back by its settlement from now on.
UPDATE compay.settlements s SET held_back = d.amount
FROM (SELECT settlement_id, compay.sum(amount) AS amount FROM compay.payments
      WHERE status = 'disputed' AND settlement_id IS NOT NULL GROUP BY settlement_id) d
WHERE s.id = d.settlement_id;

--------------------------------------------------------------------------
-- Issue 13 (deposits): no orphaned deposit subaddress (item 8), idempotent
-- stake and unstake (item 9), verify_ledger() check 17: deposits match the
-- wallet's outputs.
--------------------------------------------------------------------------

-- The idempotency claim and record (created with request_payout above)
-- serve stake and unstake too.
COMMENT ON FUNCTION compay.idempotency_claim(text, text, text) IS
    'claims an idempotency key: NULL, do the work and record its result; or the first call''s result id; another request with the key: PY005';
COMMENT ON FUNCTION compay.idempotency_record(text, bigint) IS
    'records the result id of the work done under a key claimed with compay.idempotency_claim()';

-- stake and unstake take an idempotency key: the old signatures go, and
-- their numeric twins with them; the grants are given again.
DROP FUNCTION compay.stake(text, numeric, text), compay.unstake(text, numeric, text),
    compay.stake(text, compay.credit, text), compay.unstake(text, compay.credit, text);

CREATE FUNCTION compay.stake(node_id text, amount compay.credit, currency text DEFAULT 'CREDIT',
                             idempotency_key text DEFAULT NULL)
RETURNS compay.credit
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.stakes;
    v_done bigint;
BEGIN
    IF node_id IS NULL OR amount IS NULL OR currency IS NULL THEN
        RAISE EXCEPTION 'node_id, amount and currency must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF amount <= '0' THEN
        RAISE EXCEPTION 'a stake must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.require_node(node_id);
    -- A retry returns the first call's new stake: the amount of the hold it made.
    IF idempotency_key IS NOT NULL THEN
        v_done := compay.idempotency_claim(idempotency_key, 'stake',
                                           jsonb_build_array(node_id, amount::text, currency)::text);
        IF v_done IS NOT NULL THEN
            RETURN (SELECT h.amount FROM compay.holds h WHERE h.id = v_done);
        END IF;
    END IF;
    INSERT INTO compay.stakes (node_id, currency, amount) VALUES (node_id, currency, '0')
    ON CONFLICT DO NOTHING;
    SELECT * INTO STRICT s FROM compay.stakes
    WHERE stakes.node_id = stake.node_id AND stakes.currency = stake.currency FOR UPDATE;
    -- One hold carries the whole stake: free the old one, hold the new total.
    IF s.hold_id IS NOT NULL THEN
        PERFORM compay.release(s.hold_id);
    END IF;
    s.amount := s.amount + amount;
    s.hold_id := compay.reserve(node_id, s.amount, 'stake', NULL, NULL, currency);
    UPDATE compay.stakes SET amount = s.amount, hold_id = s.hold_id, updated_at = now()
    WHERE stakes.node_id = stake.node_id AND stakes.currency = stake.currency;
    IF idempotency_key IS NOT NULL THEN
        PERFORM compay.idempotency_record(idempotency_key, s.hold_id);
    END IF;
    RETURN s.amount;
END $$;
COMMENT ON FUNCTION compay.stake(text, compay.credit, text, text) IS
    'adds to a node''s stake, held on its account; returns the new stake (a retry with the same idempotency key: the first call''s)';

CREATE FUNCTION compay.unstake(node_id text, amount compay.credit, currency text DEFAULT 'CREDIT',
                               idempotency_key text DEFAULT NULL)
RETURNS compay.credit
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.stakes;
    v_min compay.credit := compay.setting('compay.min_stake')::compay.credit;
    v_done bigint;
BEGIN
    IF node_id IS NULL OR amount IS NULL OR currency IS NULL THEN
        RAISE EXCEPTION 'node_id, amount and currency must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF amount <= '0' THEN
        RAISE EXCEPTION 'an unstake amount must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.require_node(node_id);
    -- A retry returns the first call's new stake: the amount of the hold it
    -- made, or 0 (recorded as result 0) when it freed the whole stake.
    IF idempotency_key IS NOT NULL THEN
        v_done := compay.idempotency_claim(idempotency_key, 'unstake',
                                           jsonb_build_array(node_id, amount::text, currency)::text);
        IF v_done IS NOT NULL THEN
            RETURN coalesce((SELECT h.amount FROM compay.holds h WHERE h.id = v_done), '0');
        END IF;
    END IF;
    SELECT * INTO s FROM compay.stakes
    WHERE stakes.node_id = unstake.node_id AND stakes.currency = unstake.currency FOR UPDATE;
    IF NOT FOUND OR s.amount < amount THEN
        RAISE EXCEPTION 'cannot unstake % %: node "%" has % staked', amount, currency,
            left(node_id, 64), coalesce(s.amount, '0')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s.amount - amount < v_min AND EXISTS (
        SELECT 1 FROM compay.jobs
        WHERE provider = node_id AND jobs.currency = unstake.currency
          AND status IN ('submitted', 'assigned', 'completed')) THEN
        RAISE EXCEPTION 'cannot unstake below compay.min_stake % while a job of node "%" is open',
            v_min, left(node_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Unstake after the node''s open jobs are paid, failed or timed out.';
    END IF;
    PERFORM compay.release(s.hold_id);
    s.amount := s.amount - amount;
    s.hold_id := CASE WHEN s.amount > '0'
                      THEN compay.reserve(node_id, s.amount, 'stake', NULL, NULL, currency) END;
    UPDATE compay.stakes SET amount = s.amount, hold_id = s.hold_id, updated_at = now()
    WHERE stakes.node_id = unstake.node_id AND stakes.currency = unstake.currency;
    IF idempotency_key IS NOT NULL THEN
        PERFORM compay.idempotency_record(idempotency_key, coalesce(s.hold_id, 0));
    END IF;
    RETURN s.amount;
END $$;
COMMENT ON FUNCTION compay.unstake(text, compay.credit, text, text) IS
    'frees part of a node''s stake; not below compay.min_stake while one of its jobs is open; returns the new stake (a retry with the same idempotency key: the first call''s)';
REVOKE ALL ON FUNCTION compay.stake(text, compay.credit, text, text),
    compay.unstake(text, compay.credit, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.stake(text, compay.credit, text, text),
    compay.unstake(text, compay.credit, text, text) TO compay_app;

CREATE FUNCTION compay.stake(node_id text, amount numeric, currency text DEFAULT 'CREDIT',
                             idempotency_key text DEFAULT NULL)
    RETURNS compay.credit LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.stake(node_id, amount::compay.credit, currency, idempotency_key);

CREATE FUNCTION compay.unstake(node_id text, amount numeric, currency text DEFAULT 'CREDIT',
                               idempotency_key text DEFAULT NULL)
    RETURNS compay.credit LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.unstake(node_id, amount::compay.credit, currency, idempotency_key);
REVOKE ALL ON FUNCTION compay.stake(text, numeric, text, text),
    compay.unstake(text, numeric, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.stake(text, numeric, text, text),
    compay.unstake(text, numeric, text, text) TO compay_app;

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

-- A deposit subaddress carries the label compay.deposit_label's prefix
-- || node_id (0.1 labelled it with the bare node id).  create_address is a wallet
-- call inside the caller's transaction: if that transaction rolls back,
-- the wallet keeps the subaddress and compay forgets it.  Such an orphan
-- is adopted (compay.recover_deposit_addresses) by this node's next call,
-- or by the next deposit poll, so deposits to it are credited too.
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
              FROM compay.payments y
              JOIN compay.transfers t ON t.refund_of = y.transfer_id AND t.kind = 'refund'
              JOIN compay.accounts a ON a.id = t.from_account
              WHERE y.settlement_id = s.id AND a.node_id = s.payee
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
          FROM (SELECT currency, compay.atomic(balance) AS b FROM compay.accounts
                WHERE node_id = '$clawbacks') a
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
          LEFT JOIN compay.payments p ON p.settlement_id = s.id AND p.status = 'disputed'
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
$$;

--------------------------------------------------------------------------
-- Issue 13 (runner): payouts and deposits without the worker
-- (CALL compay.run_payouts(), CALL compay.poll_deposits()), what each
-- runner did last and the wallet health it saw (compay.runner_status,
-- compay.worker_status).
--------------------------------------------------------------------------

CREATE PROCEDURE compay.run_payouts()
    AS 'MODULE_PATHNAME', 'compay_run_payouts' LANGUAGE C;
COMMENT ON PROCEDURE compay.run_payouts() IS
    'one payout round (queue, build, relay, confirm), committing after each step; not inside a transaction block (2D000); returns at once when another runner holds its lock (superuser only)';
CREATE PROCEDURE compay.poll_deposits()
    AS 'MODULE_PATHNAME', 'compay_poll_deposits' LANGUAGE C;
COMMENT ON PROCEDURE compay.poll_deposits() IS
    'one deposit poll (read the wallet, credit new deposits), committing after each step; not inside a transaction block (2D000); returns at once when another runner holds its lock (superuser only)';
REVOKE ALL ON PROCEDURE compay.run_payouts(), compay.poll_deposits() FROM PUBLIC;

CREATE TABLE compay.runner_status (
    runner              text PRIMARY KEY
                        CONSTRAINT runner_status_runner
                        CHECK (runner IN ('worker', 'run_payouts', 'poll_deposits')),
    state               text NOT NULL,
    pid                 integer,
    started_at          timestamptz,
    finished_at         timestamptz,
    moved               bigint,
    skipped             bigint NOT NULL DEFAULT 0,
    last_skipped_at     timestamptz,
    last_error          text,
    last_error_at       timestamptz,
    wallet_error        text,
    wallet_error_at     timestamptz,
    wallet_height       bigint,
    daemon_height       bigint,
    unlocked_balance    compay.credit,
    queued_payouts      compay.credit,
    oldest_stuck_payout bigint,
    oldest_stuck_reason text,
    health_at           timestamptz
);
COMMENT ON TABLE compay.runner_status IS
    'what each runner of payouts and deposits (the worker, CALL compay.run_payouts(), CALL compay.poll_deposits()) did last, and the wallet health it saw';
SELECT pg_catalog.pg_extension_config_dump('compay.runner_status', '');
REVOKE ALL ON compay.runner_status FROM PUBLIC;
GRANT SELECT ON compay.runner_status TO compay_reader;

CREATE FUNCTION compay.record_runner_start(runner text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    INSERT INTO compay.runner_status AS s (runner, state, pid, started_at)
    VALUES (record_runner_start.runner, 'running', pg_backend_pid(), now())
    ON CONFLICT (runner) DO UPDATE
    SET state = 'running', pid = excluded.pid, started_at = excluded.started_at,
        finished_at = NULL, moved = NULL
$$;

CREATE FUNCTION compay.record_runner_skipped(runner text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    INSERT INTO compay.runner_status AS s (runner, state, skipped, last_skipped_at)
    VALUES (record_runner_skipped.runner, 'never run', 1, now())
    ON CONFLICT (runner) DO UPDATE
    SET skipped = s.skipped + 1, last_skipped_at = excluded.last_skipped_at
$$;

CREATE FUNCTION compay.record_runner_failed(runner text, message text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    INSERT INTO compay.runner_status AS s (runner, state, finished_at, last_error, last_error_at)
    VALUES (record_runner_failed.runner, 'failed', now(), message, now())
    ON CONFLICT (runner) DO UPDATE
    SET state = 'failed', finished_at = excluded.finished_at, last_error = excluded.last_error,
        last_error_at = excluded.last_error_at
$$;

-- What the wallet's unlocked balance must cover: the payouts queued or
-- built (a built transaction that is not relayed reserves nothing in the
-- wallet).  The oldest stuck payout: the oldest open one with an error
-- recorded, or the first queued or built one the unlocked balance does
-- not cover (with those before it).
CREATE FUNCTION compay.record_runner_status(runner text, health jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    unlocked compay.credit := compay.credit_from_atomic((health->>'unlocked_atomic')::numeric);
    queued compay.credit;
    stuck_id bigint;
    stuck_reason text;
BEGIN
    SELECT coalesce(compay.sum(amount), '0') INTO queued
    FROM compay.payout_transactions WHERE status IN ('queued', 'built');
    SELECT p.id, CASE WHEN p.last_error IS NOT NULL THEN p.last_error
                      ELSE format('the wallet''s unlocked balance (%s XMR) does not cover it: %s XMR are queued up to it',
                                  unlocked, p.upto) END
    INTO stuck_id, stuck_reason
    FROM (SELECT t.id, t.status, t.last_error,
                 compay.sum(t.amount) FILTER (WHERE t.status IN ('queued', 'built'))
                     OVER (ORDER BY t.id) AS upto
          FROM compay.payout_transactions t
          WHERE t.status IN ('queued', 'built', 'relayed')) p
    WHERE p.last_error IS NOT NULL
       OR (p.status IN ('queued', 'built') AND unlocked IS NOT NULL AND p.upto > unlocked)
    ORDER BY p.id LIMIT 1;
    INSERT INTO compay.runner_status AS s (runner, state) VALUES (record_runner_status.runner, 'done')
    ON CONFLICT ON CONSTRAINT runner_status_pkey DO NOTHING;
    UPDATE compay.runner_status AS s
    SET state = health->>'state',
        finished_at = now(),
        moved = (health->>'moved')::bigint,
        last_error = coalesce(health->>'error', s.last_error),
        last_error_at = CASE WHEN health->>'error' IS NULL THEN s.last_error_at ELSE now() END,
        wallet_error = coalesce(health->>'wallet_error', s.wallet_error),
        wallet_error_at = coalesce((health->>'wallet_error_at')::timestamptz, s.wallet_error_at),
        wallet_height = (health->>'wallet_height')::bigint,
        daemon_height = (health->>'daemon_height')::bigint,
        unlocked_balance = unlocked,
        queued_payouts = queued,
        oldest_stuck_payout = stuck_id,
        oldest_stuck_reason = stuck_reason,
        health_at = now()
    WHERE s.runner = record_runner_status.runner;
END
$$;
COMMENT ON FUNCTION compay.record_runner_status(text, jsonb) IS
    'records a runner''s outcome and the wallet health it saw (called by the worker and the procedures)';
REVOKE ALL ON FUNCTION compay.record_runner_start(text), compay.record_runner_skipped(text),
    compay.record_runner_failed(text, text), compay.record_runner_status(text, jsonb) FROM PUBLIC;

CREATE OR REPLACE VIEW compay.worker_status AS
SELECT w.*, r.wallet_error, r.wallet_error_at, r.wallet_height, r.daemon_height,
       r.unlocked_balance, r.queued_payouts, r.oldest_stuck_payout, r.oldest_stuck_reason,
       r.health_at
FROM compay.worker_status() w
LEFT JOIN compay.runner_status r ON r.runner = 'worker';
COMMENT ON VIEW compay.worker_status IS
    'the settlement worker: state, last round, next settlement, what the last round did, last error, and the wallet health it saw last';

--------------------------------------------------------------------------
-- Issue 15 (reports): compay.payment_report() (daily, monthly, tax) and
-- compay.exchange_rates (src/reports.sql).
--------------------------------------------------------------------------

-- Operator-supplied rates: one unit of currency is worth rate units of
-- quote_currency from valid_from on (until the next row of the pair).
-- Exact numeric, never a float.
CREATE TABLE compay.exchange_rates (
    currency       text NOT NULL,
    quote_currency text NOT NULL,
    rate           numeric NOT NULL,
    valid_from     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (currency, quote_currency, valid_from),
    CONSTRAINT exchange_rates_rate CHECK (rate > 0 AND rate < 'Infinity'),
    CONSTRAINT exchange_rates_pair CHECK (currency <> quote_currency
                                          AND currency <> '' AND quote_currency <> '')
);
COMMENT ON TABLE compay.exchange_rates IS
    'operator-supplied exact rates: one unit of currency is worth rate quote_currency from valid_from on';
SELECT pg_catalog.pg_extension_config_dump('compay.exchange_rates', '');
REVOKE ALL ON compay.exchange_rates FROM PUBLIC;
GRANT SELECT ON compay.exchange_rates TO compay_reader;
GRANT INSERT, UPDATE, DELETE ON compay.exchange_rates TO compay_admin;

-- The rows of a daily or monthly report over [period_start, period_end),
-- for one node (node_id) or the network (NULL).  Sections:
--   payment  payments created in the period, by currency, method, current
--            status and, for a node, direction (received: it is the
--            payee; paid: the payer);
--   refund   refund transfers made in the period, by the refunded
--            payment's currency and method (count: payments refunded);
--   dispute  payments disputed in the period, by currency, method and
--            current status (disputed, completed again, refunded);
--   clawback            refunds fronted by $clawbacks in the period (a
--            refund after the XMR left on chain), by the payment's method
--            and the clawback's status now (owed, repaid);
--   clawback_repaid     what payees repaid of clawbacks in the period;
--   clawback_owed       what was still owed of clawbacks at the period's end;
--   shortfall           shortfalls recorded in the period, by status now
--            (owed, collected); for a node, received as the provider;
--   shortfall_collected collections in the period (payments with
--            metadata shortfall_id, also in the payment section);
--   shortfall_owed      what was still owed of shortfalls at the period's end;
--   payout   payouts queued in the period, by status: network-wide one
--            row per Monero transaction (amount, network fee); for a node
--            its payout items (amount, its share of the fee).
-- Then one totals row (is_total) per currency and section whose count,
-- amount and fee are the sums of that section's rows.
CREATE FUNCTION compay.payment_report_rows(period_start timestamptz, period_end timestamptz,
    node_id text)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH r AS (
        SELECT p.currency, 'payment' AS section, p.method, p.status::text AS status,
               CASE WHEN $3 IS NULL THEN NULL WHEN p.to_node = $3 THEN 'received' ELSE 'paid' END
                   AS direction,
               pg_catalog.count(*) AS count, compay.sum(p.amount) AS amount,
               NULL::compay.credit AS fee
        FROM compay.payments p
        WHERE p.created_at >= $1 AND p.created_at < $2
          AND ($3 IS NULL OR p.to_node = $3 OR p.from_node = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT p.currency, 'refund', p.method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL WHEN p.to_node = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(DISTINCT p.id), compay.sum(t.amount), NULL
        FROM compay.payments p JOIN compay.transfers t ON t.refund_of = p.transfer_id
        WHERE t.created_at >= $1 AND t.created_at < $2
          AND ($3 IS NULL OR p.to_node = $3 OR p.from_node = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT p.currency, 'dispute', p.method, p.status::text,
               CASE WHEN $3 IS NULL THEN NULL WHEN p.to_node = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(p.amount), NULL
        FROM compay.payments p
        WHERE p.disputed_at >= $1 AND p.disputed_at < $2
          AND ($3 IS NULL OR p.to_node = $3 OR p.from_node = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- Clawbacks: refunds fronted by $clawbacks in the period (their
        -- refund transfers are in the refund section too), by the status
        -- they have now (owed, repaid); the node is the payee who owes it.
        SELECT c.currency, 'clawback', p.method,
               CASE WHEN c.repaid_at IS NULL THEN 'owed' ELSE 'repaid' END,
               CASE WHEN $3 IS NULL THEN NULL ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(c.amount), NULL
        FROM compay.clawbacks c JOIN compay.payments p ON p.id = c.payment_id
        WHERE c.created_at >= $1 AND c.created_at < $2 AND ($3 IS NULL OR c.node_id = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- What payees repaid in the period (their transfers to $clawbacks,
        -- 'clawback:<id> settlement:<id>'; count: repayments).
        SELECT c.currency, 'clawback_repaid', p.method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(t.amount), NULL
        FROM compay.clawbacks c JOIN compay.payments p ON p.id = c.payment_id
        JOIN compay.transfers t ON t.reference LIKE 'clawback:' || c.id || ' %'
        WHERE t.created_at >= $1 AND t.created_at < $2 AND ($3 IS NULL OR c.node_id = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- Still owed at the period's end: each clawback fronted before it
        -- less what was repaid before it (count: clawbacks owed).
        SELECT o.currency, 'clawback_owed', o.method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(o.owed), NULL
        FROM (SELECT c.currency, p.method,
                     c.amount OPERATOR(compay.-) coalesce(
                         (SELECT compay.sum(t.amount) FROM compay.transfers t
                          WHERE t.reference LIKE 'clawback:' || c.id || ' %'
                            AND t.created_at < $2), '0'::compay.credit) AS owed
              FROM compay.clawbacks c JOIN compay.payments p ON p.id = c.payment_id
              WHERE c.created_at < $2 AND ($3 IS NULL OR c.node_id = $3)) o
        WHERE o.owed > '0'
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- Shortfalls: what verified jobs cost beyond their escrow, recorded
        -- in the period, by the status they have now (owed, collected); for
        -- a node: paid as the requester, received as the provider.
        SELECT s.currency, 'shortfall', NULL::compay.payment_method,
               CASE WHEN s.collected_at IS NULL THEN 'owed' ELSE 'collected' END,
               CASE WHEN $3 IS NULL THEN NULL WHEN s.provider = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(s.amount), NULL
        FROM compay.shortfalls s
        WHERE s.created_at >= $1 AND s.created_at < $2
          AND ($3 IS NULL OR s.requester = $3 OR s.provider = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- What was collected of them in the period: the collection payments
        -- (metadata shortfall_id), also counted in the payment section.
        SELECT p.currency, 'shortfall_collected', p.method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL WHEN p.to_node = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(p.amount), NULL
        FROM compay.payments p
        WHERE p.metadata ? 'shortfall_id' AND p.created_at >= $1 AND p.created_at < $2
          AND ($3 IS NULL OR p.to_node = $3 OR p.from_node = $3)
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        -- Still owed at the period's end: each shortfall recorded before it
        -- less what was collected before it (count: shortfalls owed).
        SELECT o.currency, 'shortfall_owed', NULL::compay.payment_method, NULL::text,
               CASE WHEN $3 IS NULL THEN NULL WHEN o.provider = $3 THEN 'received' ELSE 'paid' END,
               pg_catalog.count(*), compay.sum(o.owed), NULL
        FROM (SELECT s.currency, s.provider,
                     s.amount OPERATOR(compay.-) coalesce(
                         (SELECT compay.sum(p.amount) FROM compay.payments p
                          WHERE p.metadata ? 'shortfall_id'
                            AND p.metadata->>'shortfall_id' = s.id::text
                            AND p.created_at < $2), '0'::compay.credit) AS owed
              FROM compay.shortfalls s
              WHERE s.created_at < $2 AND ($3 IS NULL OR s.requester = $3 OR s.provider = $3)) o
        WHERE o.owed > '0'
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT 'XMR', 'payout', NULL::compay.payment_method, t.status::text, NULL,
               pg_catalog.count(*), compay.sum(t.amount), compay.sum(t.fee)
        FROM compay.payout_transactions t
        WHERE $3 IS NULL AND t.created_at >= $1 AND t.created_at < $2
        GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT 'XMR', 'payout', NULL::compay.payment_method, t.status::text, 'received',
               pg_catalog.count(*), compay.sum(i.amount), compay.sum(i.fee)
        FROM compay.payout_items i JOIN compay.payout_transactions t ON t.id = i.payout_id
        WHERE i.node_id = $3 AND t.created_at >= $1 AND t.created_at < $2
        GROUP BY 1, 2, 3, 4, 5
    )
    SELECT u.* FROM (
        SELECT r.currency, r.section, r.method, r.status, r.direction, r.count, r.amount, r.fee,
               false AS is_total
        FROM r
        UNION ALL
        SELECT r.currency, r.section, NULL, NULL, NULL, pg_catalog.sum(r.count)::bigint,
               compay.sum(r.amount), compay.sum(r.fee), true
        FROM r GROUP BY r.currency, r.section
    ) u
    ORDER BY u.currency,
             pg_catalog.array_position(ARRAY['payment', 'refund', 'dispute', 'clawback', 'clawback_repaid',
                                        'clawback_owed', 'shortfall', 'shortfall_collected',
                                        'shortfall_owed', 'payout'], u.section),
             u.is_total, u.method, u.status, u.direction
$$;

-- The checks every report makes: kind is the one this call serves; the
-- caller may read the node (NULL: the network, compay_reader).
CREATE FUNCTION compay.payment_report_check(kind text, expected text, node_id text)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF kind IS NULL THEN
        RAISE EXCEPTION 'kind must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF kind NOT IN ('daily', 'monthly', 'tax') THEN
        RAISE EXCEPTION 'unknown report kind "%"', kind USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use payment_report(''daily'', day date), payment_report(''monthly'', year, month) or payment_report(''tax'', year).';
    END IF;
    IF kind <> expected THEN
        RAISE EXCEPTION 'a % report takes other arguments', kind
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = pg_catalog.format('These arguments are those of a %s report.', expected),
            HINT = 'Use payment_report(''daily'', day date), payment_report(''monthly'', year, month) or payment_report(''tax'', year).';
    END IF;
    PERFORM compay.require_node(node_id, false);
END $$;

CREATE FUNCTION compay.payment_report_year(year integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF year IS NULL THEN
        RAISE EXCEPTION 'year must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF year < 1970 OR year > 9999 THEN
        RAISE EXCEPTION 'year % is out of range', year USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A report year is from 1970 to 9999.';
    END IF;
END $$;

-- payment_report('daily', day [, node_id]): the UTC day.
CREATE FUNCTION compay.payment_report(kind text, day date, node_id text DEFAULT NULL)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.payment_report_check(kind, 'daily', node_id);
    IF day IS NULL THEN
        RAISE EXCEPTION 'day must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_catalog.isfinite(day) OR day < date '1970-01-01' OR day > date '9999-12-31' THEN
        RAISE EXCEPTION 'day % is out of range', CASE WHEN pg_catalog.isfinite(day)
            THEN pg_catalog.to_char(day, 'YYYY-MM-DD') ELSE day::text END
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A report day is from 1970-01-01 to 9999-12-31.';
    END IF;
    RETURN QUERY SELECT * FROM compay.payment_report_rows(
        day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC', node_id);
END $$;
COMMENT ON FUNCTION compay.payment_report(text, date, text) IS
    'the daily report of a UTC day, for a node or (NULL) the network: payments, refunds, disputes, clawbacks (fronted, repaid, owed), shortfalls (recorded, collected, owed), payouts by currency, method and status, with a totals row per currency and section';

-- payment_report('monthly', year, month [, node_id]): the UTC month.
CREATE FUNCTION compay.payment_report(kind text, year integer, month integer,
    node_id text DEFAULT NULL)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_start timestamp;
BEGIN
    PERFORM compay.payment_report_check(kind, 'monthly', node_id);
    PERFORM compay.payment_report_year(year);
    IF month IS NULL THEN
        RAISE EXCEPTION 'month must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF month < 1 OR month > 12 THEN
        RAISE EXCEPTION 'month % is out of range', month USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A month is from 1 to 12.';
    END IF;
    v_start := pg_catalog.make_date(year, month, 1);
    RETURN QUERY SELECT * FROM compay.payment_report_rows(
        v_start AT TIME ZONE 'UTC', (v_start + interval '1 month') AT TIME ZONE 'UTC', node_id);
END $$;
COMMENT ON FUNCTION compay.payment_report(text, integer, integer, text) IS
    'the monthly report of a UTC month, for a node or (NULL) the network: payments, refunds, disputes, clawbacks (fronted, repaid, owed), shortfalls (recorded, collected, owed), payouts by currency, method and status, with a totals row per currency and section';

-- The value of amount of currency in quote at ts: the rate valid at or
-- before ts; 1 in its own currency; NULL when no rate is known.
CREATE FUNCTION compay.exchange_rate(currency text, quote text, ts timestamptz)
RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT CASE WHEN $1 = $2 THEN 1::numeric ELSE
        (SELECT r.rate FROM compay.exchange_rates r
         WHERE r.currency = $1 AND r.quote_currency = $2 AND r.valid_from <= $3
         ORDER BY r.valid_from DESC LIMIT 1) END
$$;
COMMENT ON FUNCTION compay.exchange_rate(text, text, timestamptz) IS
    'the rate of currency in quote valid at ts (compay.exchange_rates): the latest at or before ts; 1 for the same currency; NULL if none';

-- payment_report('tax', year [, node_id [, reporting_currency]]): the
-- receipts of a provider in the UTC year.  A receipt is what the node
-- earned, when it earned it: a payment it received (not barter) that
-- completed in the year (its current status: completed, disputed or
-- refunded), and a verifier reward moved to it in the year.  A refund in
-- the year of such a payment is a negative receipt (receipt 'refund').
-- Payouts are not receipts: they carry to the node's wallet what it has
-- earned already; tx_hash names the payout that carried it (NULL while
-- not paid out).  value = amount x the rate at or before the receipt,
-- exact (trailing zeros trimmed); a missing rate gives NULL value and rate_missing.  Totals rows
-- (is_total): one per node and currency (amount, value of the rows whose
-- rate is known, rate_missing if any is missing), and one per node in
-- the reporting currency (currency NULL, value only).
CREATE FUNCTION compay.payment_report(kind text, year integer, node_id text DEFAULT NULL,
    reporting_currency text DEFAULT 'EUR')
RETURNS TABLE (node text, received_at timestamptz, receipt text, reference bigint,
               task_id text, amount compay.credit, currency text, tx_hash text,
               value_currency text, rate numeric, value numeric, rate_missing boolean,
               is_total boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_start timestamptz;
    v_end timestamptz;
BEGIN
    PERFORM compay.payment_report_check(kind, 'tax', node_id);
    PERFORM compay.payment_report_year(year);
    IF reporting_currency IS NULL OR reporting_currency = '' THEN
        RAISE EXCEPTION 'reporting_currency must be a currency code'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_start := pg_catalog.make_date(year, 1, 1)::timestamp AT TIME ZONE 'UTC';
    v_end := pg_catalog.make_date(year + 1, 1, 1)::timestamp AT TIME ZONE 'UTC';
    RETURN QUERY
    WITH rc AS (
        SELECT p.to_node AS node, p.completed_at AS at, 'payment' AS receipt, p.id AS reference,
               p.task_id, p.amount, p.currency,
               coalesce(p.tx_hash, (SELECT t.tx_hash FROM compay.settlements s
                                    JOIN compay.payout_transactions t ON t.id = s.payout_id
                                    WHERE s.id = compay.payment_settlement(p))) AS tx_hash
        FROM compay.payments p
        WHERE p.completed_at >= v_start AND p.completed_at < v_end
          AND p.status IN ('completed', 'disputed', 'refunded') AND p.method <> 'barter'
          AND (payment_report.node_id IS NULL OR p.to_node = payment_report.node_id)
        UNION ALL
        SELECT p.to_node, t.created_at, 'refund', p.id, p.task_id,
               '0'::compay.credit OPERATOR(compay.-) t.amount, p.currency, NULL
        FROM compay.payments p JOIN compay.transfers t ON t.refund_of = p.transfer_id
        WHERE t.created_at >= v_start AND t.created_at < v_end AND p.method <> 'barter'
          AND (payment_report.node_id IS NULL OR p.to_node = payment_report.node_id)
        UNION ALL
        SELECT v.verifier, v.rewarded_at, 'verifier_reward', v.job_id, j.task_id,
               v.reward_amount, j.currency,
               (SELECT t.tx_hash FROM compay.settlements s
                JOIN compay.payout_transactions t ON t.id = s.payout_id
                WHERE s.id = v.settlement_id)
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.rewarded_at >= v_start AND v.rewarded_at < v_end AND v.reward_amount > '0'
          AND (payment_report.node_id IS NULL OR v.verifier = payment_report.node_id)
    ), valued AS (
        SELECT rc.*, compay.exchange_rate(rc.currency, reporting_currency, rc.at) AS rate
        FROM rc
    )
    SELECT x.node, x.at, x.receipt, x.reference, x.task_id, x.amount, x.currency, x.tx_hash,
           reporting_currency, x.rate, pg_catalog.trim_scale(x.amount::numeric * x.rate),
           x.rate IS NULL, false
    FROM valued x
    UNION ALL
    SELECT x.node, NULL, NULL, NULL, NULL, compay.sum(x.amount), x.currency, NULL,
           reporting_currency, NULL, pg_catalog.trim_scale(pg_catalog.sum(x.amount::numeric * x.rate)),
           pg_catalog.bool_or(x.rate IS NULL), true
    FROM valued x GROUP BY x.node, x.currency
    UNION ALL
    SELECT x.node, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           reporting_currency, NULL, pg_catalog.trim_scale(pg_catalog.sum(x.amount::numeric * x.rate)),
           pg_catalog.bool_or(x.rate IS NULL), true
    FROM valued x GROUP BY x.node
    ORDER BY 1, 13, 7 NULLS LAST, 2, 3, 4;
END $$;
COMMENT ON FUNCTION compay.payment_report(text, integer, text, text) IS
    'the tax report of a UTC year: each receipt (payment received, verifier reward, refund as negative) with date, amount, currency, tx hash and value in the reporting currency from compay.exchange_rates (NULL and rate_missing when no rate), with totals per node and currency and per node';

REVOKE ALL ON FUNCTION compay.payment_report_rows(timestamptz, timestamptz, text),
    compay.payment_report_check(text, text, text), compay.payment_report_year(integer),
    compay.payment_report(text, date, text), compay.payment_report(text, integer, integer, text),
    compay.payment_report(text, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.payment_report(text, date, text),
    compay.payment_report(text, integer, integer, text),
    compay.payment_report(text, integer, text, text) TO compay_reader, compay_node;


-- Issue 15 (dashboard): compay.earnings_dashboard and compay.network_dashboard
-- (src/dashboard.sql), with compay.html_escape and their internal helpers.

-- The five characters HTML gives a meaning, as entities.  NULL is the
-- empty string: a missing value must not erase the page it is put in.
CREATE FUNCTION compay.html_escape(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
           pg_catalog.replace(COALESCE(value, ''), '&', '&amp;'),
           '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;
COMMENT ON FUNCTION compay.html_escape(text) IS
    'the text with & < > " and '' as HTML entities; NULL gives the empty string';

-- The range of a dashboard: both ends given, from before to, at most 366
-- days (one bar per day).
CREATE FUNCTION compay.dashboard_check_range(from_ts timestamptz, to_ts timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL THEN
        RAISE EXCEPTION 'the range must have both ends' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'from and to must not be NULL.';
    END IF;
    IF NOT pg_catalog.isfinite(from_ts) OR NOT pg_catalog.isfinite(to_ts) THEN
        RAISE EXCEPTION 'the range must be finite' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'from and to must not be infinity or -infinity.';
    END IF;
    IF from_ts >= to_ts THEN
        RAISE EXCEPTION 'the range is empty' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = pg_catalog.format('from (%s) must be before to (%s).', from_ts, to_ts);
    END IF;
    IF to_ts - from_ts > interval '366 days' THEN
        RAISE EXCEPTION 'the range is longer than 366 days' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A dashboard shows one bar per day.',
            HINT = 'Make one page per year.';
    END IF;
END $$;

-- A timestamp as the pages show it: UTC to the minute.
CREATE FUNCTION compay.dashboard_time(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT COALESCE(pg_catalog.to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC', '')
$$;

-- The UTC days of a range, oldest first.
CREATE FUNCTION compay.dashboard_days(from_ts timestamptz, to_ts timestamptz) RETURNS SETOF date
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT d::date FROM pg_catalog.generate_series((from_ts AT TIME ZONE 'UTC')::date::timestamp,
        ((to_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date::timestamp, interval '1 day') d
$$;

-- One earning of a node: a payment it received (completed or disputed) or
-- a verification reward, with its job type and how far it has gone:
-- 'unsettled', 'disputed', 'settling' (settled, the payout not complete)
-- or 'completed' (its settlement completed: paid out on chain for XMR).
CREATE FUNCTION compay.dashboard_earnings(node_id text, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (earned_at timestamptz, currency text, amount compay.credit, job_type text,
               stage text, refunded compay.credit)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT p.completed_at, p.currency, p.amount - r.refunded, COALESCE(j.task_type, '(no job)'),
           CASE WHEN p.status = 'disputed' THEN 'disputed'
                WHEN s.id IS NULL THEN 'unsettled'
                WHEN s.status = 'completed' THEN 'completed'
                ELSE 'settling' END,
           r.refunded
    FROM compay.payments p
    CROSS JOIN LATERAL (SELECT COALESCE(compay.sum(t.amount), '0'::compay.credit) AS refunded
                        FROM compay.transfers t
                        WHERE t.refund_of = p.transfer_id AND t.kind = 'refund') r
    LEFT JOIN compay.jobs j ON j.task_id = p.task_id
    LEFT JOIN compay.settlements s ON s.id = p.settlement_id
    WHERE p.to_node = dashboard_earnings.node_id
      AND p.status IN ('completed', 'disputed', 'refunded')
      AND p.completed_at >= from_ts AND p.completed_at < to_ts
    UNION ALL
    SELECT v.rewarded_at, j.currency, v.reward_amount, 'verification',
           CASE WHEN s.id IS NULL THEN 'unsettled'
                WHEN s.status = 'completed' THEN 'completed'
                ELSE 'settling' END,
           '0'::compay.credit
    FROM compay.verifications v
    JOIN compay.jobs j ON j.id = v.job_id
    LEFT JOIN compay.settlements s ON s.id = v.settlement_id
    WHERE v.verifier = dashboard_earnings.node_id AND v.reward_amount > '0'
      AND v.rewarded_at >= from_ts AND v.rewarded_at < to_ts
$$;

-- Bars per day with the running total as a line (its own scale, on the
-- right).  Heights are drawn from numeric; every figure written is the
-- exact compay.credit text.
CREATE FUNCTION compay.dashboard_day_chart(title text, days date[], amounts compay.credit[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    n integer := pg_catalog.cardinality(days);
    plot_w constant numeric := 850;
    plot_h constant numeric := 220;
    left_x constant numeric := 110;
    top_y constant numeric := 50;
    max_day compay.credit := '0';
    total compay.credit := '0';
    running compay.credit := '0';
    bar_w numeric;
    x numeric;
    h numeric;
    label_every integer;
    bars text := '';
    points text := '';
    labels text := '';
BEGIN
    IF n IS NULL OR n = 0 THEN
        RETURN '';
    END IF;
    FOR i IN 1 .. n LOOP
        max_day := GREATEST(max_day, amounts[i]);
        total := total + amounts[i];
    END LOOP;
    bar_w := plot_w / n;
    label_every := pg_catalog.ceil(n / 10.0)::integer;
    FOR i IN 1 .. n LOOP
        running := running + amounts[i];
        x := left_x + (i - 1) * bar_w;
        h := CASE WHEN max_day = '0' THEN 0
                  ELSE plot_h * amounts[i]::numeric / max_day::numeric END;
        bars := bars || pg_catalog.format(
            '<rect class="bar" x="%s" y="%s" width="%s" height="%s"><title>%s: %s</title></rect>',
            pg_catalog.round(x + bar_w * 0.1, 1), pg_catalog.round(top_y + plot_h - h, 1),
            pg_catalog.round(bar_w * 0.8, 1), pg_catalog.round(h, 1), days[i], amounts[i]);
        points := points || pg_catalog.format('%s,%s ', pg_catalog.round(x + bar_w / 2, 1),
            pg_catalog.round(top_y + plot_h - CASE WHEN total = '0' THEN 0
                ELSE plot_h * running::numeric / total::numeric END, 1));
        IF (i - 1) % label_every = 0 THEN
            labels := labels || pg_catalog.format(
                '<text class="tick" x="%s" y="%s" text-anchor="middle">%s</text>',
                pg_catalog.round(x + bar_w / 2, 1), top_y + plot_h + 18,
                pg_catalog.to_char(days[i], 'MM-DD'));
        END IF;
    END LOOP;
    RETURN pg_catalog.format(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="1100" height="320" viewBox="0 0 1100 320">'
        '<text class="ctitle" x="%s" y="24">%s</text>'
        '<rect class="key-bar" x="640" y="12" width="14" height="14"/><text class="tick" x="660" y="24">per day (left scale)</text>'
        '<line class="key-line" x1="810" y1="19" x2="834" y2="19"/><text class="tick line-label" x="840" y="24">running total (right scale)</text>'
        '<line class="axis" x1="%s" y1="%s" x2="%s" y2="%s"/>'
        '<line class="axis" x1="%s" y1="%s" x2="%s" y2="%s"/>'
        '<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>'
        '<text class="tick" x="%s" y="%s" text-anchor="end">%s</text>'
        '<text class="tick" x="%s" y="%s" text-anchor="end">0</text>'
        '%s<polyline class="line" points="%s"/>%s'
        '<line class="right-axis" x1="%s" y1="%s" x2="%s" y2="%s"/>'
        '<text class="tick line-label" x="%s" y="%s">%s</text>'
        '<text class="tick line-label" x="%s" y="%s">0</text></svg>',
        left_x, compay.html_escape(title),
        left_x, top_y + plot_h, left_x + plot_w, top_y + plot_h,
        left_x, top_y, left_x, top_y + plot_h,
        left_x, top_y, left_x + plot_w, top_y,
        left_x - 6, top_y + 4, max_day,
        left_x - 6, top_y + plot_h + 4,
        bars, pg_catalog.rtrim(points), labels,
        left_x + plot_w, top_y, left_x + plot_w, top_y + plot_h,
        left_x + plot_w + 6, top_y + 4, total,
        left_x + plot_w + 6, top_y + plot_h + 4);
END $$;

-- Horizontal bars, one per label, each with its exact amount.
CREATE FUNCTION compay.dashboard_bar_chart(title text, labels text[], amounts compay.credit[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    n integer := COALESCE(pg_catalog.cardinality(labels), 0);
    bar_max constant numeric := 560;
    left_x constant numeric := 300;
    max_amount compay.credit := '0';
    rows text := '';
    w numeric;
    y numeric;
BEGIN
    FOR i IN 1 .. n LOOP
        max_amount := GREATEST(max_amount, amounts[i]);
    END LOOP;
    FOR i IN 1 .. n LOOP
        y := 40 + (i - 1) * 30;
        w := CASE WHEN max_amount = '0' THEN 0
                  ELSE bar_max * amounts[i]::numeric / max_amount::numeric END;
        rows := rows || pg_catalog.format(
            '<text class="tick" x="%s" y="%s" text-anchor="end">%s</text>'
            '<rect class="bar bar-%s" x="%s" y="%s" width="%s" height="20"/>'
            '<text class="tick" x="%s" y="%s">%s</text>',
            left_x - 8, y + 15, compay.html_escape(pg_catalog.left(labels[i], 40)),
            i % 6, left_x, y, pg_catalog.round(w, 1),
            left_x + pg_catalog.round(w, 1) + 8, y + 15, amounts[i]);
    END LOOP;
    RETURN pg_catalog.format(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="1100" height="%s" viewBox="0 0 1100 %s">'
        '<text class="ctitle" x="20" y="24">%s</text>%s%s</svg>',
        50 + n * 30, 50 + n * 30, compay.html_escape(title), rows,
        CASE WHEN n = 0 THEN '<text class="tick" x="20" y="48">nothing in this range</text>' ELSE '' END);
END $$;

-- A table from rows of already escaped cells.
CREATE FUNCTION compay.dashboard_table(headers text[], cells text[]) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT '<table><tr>' ||
           (SELECT pg_catalog.string_agg('<th>' || compay.html_escape(h) || '</th>', '' ORDER BY o)
            FROM pg_catalog.unnest(headers) WITH ORDINALITY AS t(h, o)) || '</tr>' ||
           COALESCE((SELECT pg_catalog.string_agg(c, '' ORDER BY o)
                                FROM pg_catalog.unnest(cells) WITH ORDINALITY AS t(c, o)),
                               '<tr><td colspan="' || pg_catalog.cardinality(headers) ||
                               '">none in this range</td></tr>') ||
           '</table>'
$$;

-- One table row of escaped values.
CREATE FUNCTION compay.dashboard_row(VARIADIC cells text[]) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT '<tr>' || pg_catalog.string_agg('<td>' || compay.html_escape(c) || '</td>', '' ORDER BY o)
           || '</tr>'
    FROM pg_catalog.unnest(cells) WITH ORDINALITY AS t(c, o)
$$;

-- The page around the sections: inline style, system fonts, no script.
CREATE FUNCTION compay.dashboard_page(title text, subtitle text, body text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''; img-src data:">'
        '<title>' || compay.html_escape(title) || '</title><style>'
        'body{font-family:sans-serif;margin:24px;color:#1b1f24;background:#fff;width:1120px}'
        'h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:28px 0 8px;border-bottom:2px solid #d0d7de}'
        'h3{font-size:16px;margin:12px 0 4px}'
        'p.sub{color:#57606a;margin:0 0 16px}'
        'table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}'
        'th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left}th{background:#f6f8fa}'
        'td.num{text-align:right;font-family:monospace}'
        '.chart{display:block;margin:8px 0;background:#fbfcfd;border:1px solid #d0d7de}'
        '.ctitle{font-size:16px;font-weight:bold;fill:#1b1f24}.tick{font-size:12px;fill:#1b1f24}'
        '.bar,.key-bar{fill:#4c78a8}.bar-1{fill:#4c78a8}.bar-2{fill:#f58518}.bar-3{fill:#54a24b}'
        '.bar-4{fill:#e45756}.bar-5{fill:#72b7b2}.bar-0{fill:#b279a2}'
        '.line,.key-line{fill:none;stroke:#f58518;stroke-width:3}.line-label{fill:#c45f00;font-weight:bold}'
        '.right-axis{stroke:#f58518;stroke-width:2}'
        '.axis{stroke:#57606a;stroke-width:1}.grid{stroke:#d0d7de;stroke-dasharray:4 4}'
        '</style></head><body><h1>' || compay.html_escape(title) || '</h1><p class="sub">' ||
        compay.html_escape(subtitle) || ' &middot; generated ' ||
        compay.html_escape(compay.dashboard_time(pg_catalog.now())) || '</p>' || body ||
        '</body></html>'
$$;

-- One currency's section of a provider's page: totals, the day chart,
-- job types, how far the money has gone.
CREATE FUNCTION compay.dashboard_earnings_section(node_id text, currency text,
    from_ts timestamptz, to_ts timestamptz) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    e record;
    tot record;
    d record;
    s record;
    st record;
    out text;
BEGIN
    SELECT pg_catalog.count(*) AS n, compay.sum(x.amount) AS total, compay.sum(x.refunded) AS refunded
    INTO e FROM compay.dashboard_earnings(node_id, from_ts, to_ts) x
    WHERE x.currency = dashboard_earnings_section.currency;
    SELECT pg_catalog.array_agg(day ORDER BY day) AS days,
           pg_catalog.array_agg(COALESCE(amt, '0'::compay.credit) ORDER BY day) AS amounts
    INTO d
    FROM compay.dashboard_days(from_ts, to_ts) day
    LEFT JOIN (SELECT (x.earned_at AT TIME ZONE 'UTC')::date AS dd, compay.sum(x.amount) AS amt
               FROM compay.dashboard_earnings(node_id, from_ts, to_ts) x
               WHERE x.currency = dashboard_earnings_section.currency GROUP BY 1) g ON g.dd = day;
    SELECT pg_catalog.array_agg(k.stage ORDER BY k.o) AS labels,
           pg_catalog.array_agg(COALESCE(t.amt, '0'::compay.credit) ORDER BY k.o) AS amounts
    INTO st
    FROM pg_catalog.unnest(ARRAY['unsettled', 'disputed', 'settling', 'completed'])
         WITH ORDINALITY AS k(stage, o)
    LEFT JOIN (SELECT x.stage, compay.sum(x.amount) AS amt
               FROM compay.dashboard_earnings(node_id, from_ts, to_ts) x
               WHERE x.currency = dashboard_earnings_section.currency GROUP BY 1) t
      ON t.stage = k.stage;
    out := '<h2>' || compay.html_escape(currency) || '</h2><h3>In this range</h3>' ||
        compay.dashboard_table(ARRAY['earned (net of refunds)', 'earnings', 'refunded',
                                     'unsettled', 'disputed', 'settling (payout pending)',
                                     'completed (paid out)'],
            ARRAY[compay.dashboard_row(COALESCE(e.total, '0'::compay.credit)::text, e.n::text,
                  COALESCE(e.refunded, '0'::compay.credit)::text, st.amounts[1]::text, st.amounts[2]::text, st.amounts[3]::text,
                  st.amounts[4]::text)]);
    SELECT * INTO tot FROM compay.earnings(node_id, currency);
    out := out || '<h3>All time, now</h3>' ||
        compay.dashboard_table(ARRAY['earned (net of refunds)', 'refunded', 'verification rewards',
                                     'pending', 'settled, not paid out', 'in flight', 'paid',
                                     'clawbacks owed', 'shortfalls owed to the node',
                                     'shortfalls owed by the node'],
            ARRAY[compay.dashboard_row(tot.earned::text, tot.refunded::text, tot.rewards::text,
                  tot.pending::text, tot.settled_unpaid::text, tot.in_flight::text, tot.paid::text,
                  tot.clawbacks_owed::text, tot.shortfalls_owed_to::text,
                  tot.shortfalls_owed_by::text)]);
    out := out || compay.dashboard_day_chart('Earnings per day (UTC), ' || currency, d.days, d.amounts);
    SELECT pg_catalog.array_agg(job_type ORDER BY amt DESC, job_type) AS labels,
           pg_catalog.array_agg(amt ORDER BY amt DESC, job_type) AS amounts
    INTO s
    FROM (SELECT x.job_type, compay.sum(x.amount) AS amt
          FROM compay.dashboard_earnings(node_id, from_ts, to_ts) x
          WHERE x.currency = dashboard_earnings_section.currency GROUP BY 1
          ORDER BY 2 DESC, 1 LIMIT 20) t;
    out := out || compay.dashboard_bar_chart('Earnings by job type, ' || currency, s.labels, s.amounts);
    RETURN out || compay.dashboard_bar_chart('Pending and paid, all time, ' || currency,
        ARRAY['pending', 'settled, not paid out', 'in flight', 'paid', 'refunded',
              'clawbacks owed', 'shortfalls owed to the node', 'shortfalls owed by the node'],
        ARRAY[tot.pending, tot.settled_unpaid, tot.in_flight, tot.paid, tot.refunded, tot.clawbacks_owed,
              tot.shortfalls_owed_to, tot.shortfalls_owed_by]);
END $$;

-- A provider's page: per currency its earnings per day with the running
-- total, by job type, pending against paid; its recent jobs and payouts
-- with their tx hashes.
CREATE FUNCTION compay.earnings_dashboard(node_id text, "from" timestamptz, "to" timestamptz)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    body text := '';
    c text;
    jobs text[];
    payouts text[];
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.dashboard_check_range("from", "to");
    PERFORM compay.require_node(node_id, false);
    FOR c IN SELECT x.currency FROM compay.dashboard_earnings(node_id, "from", "to") x
             UNION SELECT a.currency_code FROM compay.earnings(node_id) a
             ORDER BY 1 LIMIT 10 LOOP
        body := body || compay.dashboard_earnings_section(node_id, c, "from", "to");
    END LOOP;
    IF body = '' THEN
        body := '<h2>Earnings</h2><p>No earnings in this range.</p>';
    END IF;
    SELECT pg_catalog.array_agg(compay.dashboard_row(j.task_id, j.task_type, j.status::text,
               j.currency, j.amount::text, compay.dashboard_time(j.created_at),
               compay.dashboard_time(j.completed_at), p.tx_hash) ORDER BY j.created_at DESC, j.id DESC)
    INTO jobs
    FROM (SELECT * FROM compay.jobs j
          WHERE j.provider = earnings_dashboard.node_id
            AND j.created_at >= "from" AND j.created_at < "to"
          ORDER BY j.created_at DESC, j.id DESC LIMIT 25) j
    LEFT JOIN compay.payments p ON p.id = j.payment_id;
    SELECT pg_catalog.array_agg(compay.dashboard_row(t.id::text, compay.dashboard_time(t.created_at),
               t.status::text, i.amount::text, i.fee::text, t.confirmations::text, t.tx_hash)
               ORDER BY t.created_at DESC, t.id DESC)
    INTO payouts
    FROM (SELECT t.* FROM compay.payout_transactions t
          WHERE t.created_at >= "from" AND t.created_at < "to"
            AND EXISTS (SELECT 1 FROM compay.payout_items i
                        WHERE i.payout_id = t.id AND i.node_id = earnings_dashboard.node_id)
          ORDER BY t.created_at DESC, t.id DESC LIMIT 25) t
    JOIN (SELECT i.payout_id, compay.sum(i.amount) AS amount, compay.sum(i.fee) AS fee
          FROM compay.payout_items i WHERE i.node_id = earnings_dashboard.node_id
          GROUP BY 1) i ON i.payout_id = t.id;
    body := body || '<h2>Recent jobs</h2>' ||
        compay.dashboard_table(ARRAY['task', 'job type', 'status', 'currency', 'paid', 'created',
                                     'completed', 'payment tx hash'], jobs) ||
        '<h2>Payouts</h2>' ||
        compay.dashboard_table(ARRAY['payout', 'created', 'status', 'amount (XMR)', 'fee share',
                                     'confirmations', 'tx hash'], payouts);
    RETURN compay.dashboard_page('Earnings of ' || node_id,
        compay.dashboard_time("from") || ' to ' || compay.dashboard_time("to"), body);
END $$;
COMMENT ON FUNCTION compay.earnings_dashboard(text, timestamptz, timestamptz) IS
    'a self-contained HTML page of a node''s earnings in [from, to): per day with the running total, by job type; its totals now as compay.earnings reports them (refunds, clawbacks, shortfalls); recent jobs and payouts';

-- The operator's page: volume, failure and dispute rates, payouts,
-- treasury, top providers.
CREATE FUNCTION compay.network_dashboard("from" timestamptz, "to" timestamptz) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    body text;
    c text;
    d record;
    s record;
    cells text[];
BEGIN
    PERFORM compay.dashboard_check_range("from", "to");
    -- Payments per currency: the failure rate of all, the dispute rate of
    -- those that completed (refunded ones included), shown to 0.01 %.
    SELECT pg_catalog.array_agg(compay.dashboard_row(t.currency, t.n::text, t.paid::text,
               t.volume::text, t.failed::text,
               pg_catalog.round(100.0 * t.failed / t.n, 2)::text || ' %',
               t.disputed::text,
               CASE WHEN t.completed = 0 THEN '-'
                    ELSE pg_catalog.round(100.0 * t.disputed / t.completed, 2)::text || ' %' END,
               t.refunded::text) ORDER BY t.currency)
    INTO cells
    FROM (SELECT p.currency, pg_catalog.count(*) AS n,
                 pg_catalog.count(*) FILTER (WHERE p.status IN ('completed', 'disputed')) AS paid,
                 COALESCE(compay.sum(p.amount) FILTER (WHERE p.status IN ('completed', 'disputed')),
                                     '0') AS volume,
                 pg_catalog.count(*) FILTER (WHERE p.completed_at IS NOT NULL) AS completed,
                 pg_catalog.count(*) FILTER (WHERE p.status = 'failed') AS failed,
                 pg_catalog.count(*) FILTER (WHERE p.disputed_at IS NOT NULL) AS disputed,
                 pg_catalog.count(*) FILTER (WHERE p.status = 'refunded') AS refunded
          FROM compay.payments p
          WHERE p.created_at >= "from" AND p.created_at < "to"
          GROUP BY 1) t;
    body := '<h2>Payments</h2>' || compay.dashboard_table(ARRAY['currency', 'payments', 'paid',
        'volume', 'failed', 'failure rate', 'disputed', 'dispute rate', 'refunded'], cells);
    FOR c IN SELECT DISTINCT p.currency FROM compay.payments p
             WHERE p.status IN ('completed', 'disputed')
               AND p.completed_at >= "from" AND p.completed_at < "to" ORDER BY 1 LIMIT 10 LOOP
        SELECT pg_catalog.array_agg(day ORDER BY day) AS days,
               pg_catalog.array_agg(COALESCE(amt, '0'::compay.credit) ORDER BY day) AS amounts
        INTO d
        FROM compay.dashboard_days("from", "to") day
        LEFT JOIN (SELECT (p.completed_at AT TIME ZONE 'UTC')::date AS dd, compay.sum(p.amount) AS amt
                   FROM compay.payments p
                   WHERE p.currency = c AND p.status IN ('completed', 'disputed')
                     AND p.completed_at >= "from" AND p.completed_at < "to" GROUP BY 1) g
          ON g.dd = day;
        body := body || compay.dashboard_day_chart('Volume per day (UTC), ' || c, d.days, d.amounts);
        SELECT pg_catalog.array_agg(t.to_node ORDER BY t.amt DESC, t.to_node) AS labels,
               pg_catalog.array_agg(t.amt ORDER BY t.amt DESC, t.to_node) AS amounts,
               pg_catalog.array_agg(compay.dashboard_row(t.to_node, t.n::text, t.amt::text)
                                    ORDER BY t.amt DESC, t.to_node) AS cells
        INTO s
        FROM (SELECT p.to_node, pg_catalog.count(*) AS n, compay.sum(p.amount) AS amt
              FROM compay.payments p
              WHERE p.currency = c AND p.status IN ('completed', 'disputed')
                AND p.completed_at >= "from" AND p.completed_at < "to"
              GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 10) t;
        body := body || compay.dashboard_bar_chart('Top providers, ' || c, s.labels, s.amounts) ||
            compay.dashboard_table(ARRAY['provider', 'payments', 'earned'], s.cells);
    END LOOP;
    -- Jobs.
    SELECT pg_catalog.array_agg(compay.dashboard_row(t.n::text, t.failed::text,
               CASE WHEN t.n = 0 THEN '-'
                    ELSE pg_catalog.round(100.0 * t.failed / t.n, 2)::text || ' %' END))
    INTO cells
    FROM (SELECT pg_catalog.count(*) AS n,
                 pg_catalog.count(*) FILTER (WHERE j.status IN ('failed', 'timed_out')) AS failed
          FROM compay.jobs j WHERE j.created_at >= "from" AND j.created_at < "to") t;
    body := body || '<h2>Jobs</h2>' ||
        compay.dashboard_table(ARRAY['jobs', 'failed or timed out', 'failure rate'], cells);
    -- Payouts (XMR) by status.
    SELECT pg_catalog.array_agg(k.status::text ORDER BY k.status) AS labels,
           pg_catalog.array_agg(COALESCE(t.amt, '0'::compay.credit) ORDER BY k.status) AS amounts,
           pg_catalog.array_agg(compay.dashboard_row(k.status::text, COALESCE(t.n, 0)::text,
               COALESCE(t.amt, '0'::compay.credit)::text,
               COALESCE(t.fee, '0'::compay.credit)::text) ORDER BY k.status) AS cells
    INTO s
    FROM pg_catalog.unnest(pg_catalog.enum_range(NULL::compay.payout_status)) k(status)
    LEFT JOIN (SELECT p.status, pg_catalog.count(*) AS n, compay.sum(p.amount) AS amt,
                      compay.sum(p.fee) AS fee
               FROM compay.payout_transactions p
               WHERE p.created_at >= "from" AND p.created_at < "to" GROUP BY 1) t
      ON t.status = k.status;
    body := body || '<h2>Payouts (XMR)</h2>' ||
        compay.dashboard_bar_chart('Payouts by status, XMR', s.labels, s.amounts) ||
        compay.dashboard_table(ARRAY['status', 'payouts', 'amount', 'network fees'], s.cells);
    SELECT pg_catalog.array_agg(compay.dashboard_row(t.id::text, compay.dashboard_time(t.created_at),
               t.status::text, t.amount::text, t.fee::text, t.confirmations::text, t.tx_hash)
               ORDER BY t.created_at DESC, t.id DESC)
    INTO cells
    FROM (SELECT * FROM compay.payout_transactions p
          WHERE p.created_at >= "from" AND p.created_at < "to"
          ORDER BY p.created_at DESC, p.id DESC LIMIT 25) t;
    body := body || compay.dashboard_table(ARRAY['payout', 'created', 'status', 'amount', 'fee',
        'confirmations', 'tx hash'], cells);
    -- Treasury: the wallet health the runners recorded last, no wallet call.
    SELECT pg_catalog.array_agg(compay.dashboard_row(r.runner, compay.dashboard_time(r.health_at),
               r.unlocked_balance::text, r.queued_payouts::text, r.wallet_height::text,
               r.daemon_height::text, r.wallet_error))
    INTO cells
    FROM (SELECT * FROM compay.runner_status r WHERE r.health_at IS NOT NULL
          ORDER BY r.health_at DESC LIMIT 1) r;
    body := body || '<h2>Treasury</h2>' || compay.dashboard_table(ARRAY['seen by', 'at',
        'unlocked balance (XMR)', 'queued payouts (XMR)', 'wallet height', 'daemon height',
        'wallet error'], cells);
    RETURN compay.dashboard_page('compay network',
        compay.dashboard_time("from") || ' to ' || compay.dashboard_time("to"), body);
END $$;
COMMENT ON FUNCTION compay.network_dashboard(timestamptz, timestamptz) IS
    'the operator''s self-contained HTML page for [from, to): payment volume, failure and dispute rates, top providers, jobs, payouts, treasury';

REVOKE ALL ON FUNCTION compay.dashboard_check_range(timestamptz, timestamptz),
    compay.dashboard_time(timestamptz), compay.dashboard_days(timestamptz, timestamptz),
    compay.dashboard_earnings(text, timestamptz, timestamptz),
    compay.dashboard_day_chart(text, date[], compay.credit[]),
    compay.dashboard_bar_chart(text, text[], compay.credit[]),
    compay.dashboard_table(text[], text[]), compay.dashboard_row(text[]),
    compay.dashboard_page(text, text, text),
    compay.dashboard_earnings_section(text, text, timestamptz, timestamptz),
    compay.earnings_dashboard(text, timestamptz, timestamptz),
    compay.network_dashboard(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.earnings_dashboard(text, timestamptz, timestamptz)
    TO compay_reader, compay_node;
GRANT EXECUTE ON FUNCTION compay.network_dashboard(timestamptz, timestamptz) TO compay_reader;

--------------------------------------------------------------------------
-- Issue 15 (walletdiag): the operator's wallet tools and compay.diagnose()
-- (src/wallet_tools.sql), compay.daemon_rpc() (src/wallet_rpc.c), and
-- compay.payout_health() shared by the runners' health
-- (src/payout_run.sql).
--------------------------------------------------------------------------

CREATE FUNCTION compay.daemon_rpc(path text, params jsonb DEFAULT '{}') RETURNS jsonb
    AS 'MODULE_PATHNAME', 'compay_daemon_rpc' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.daemon_rpc(text, jsonb) IS
    'one call to a read-only endpoint of compay.daemon_rpc_url (/get_height, /get_info, /get_transactions, /get_transaction_pool_hashes, /is_key_image_spent), returning the whole reply; PY014 when the daemon cannot be reached or is not set, PY015 when it answers with an error (superuser only; not inside a transaction that holds ledger locks)';
REVOKE ALL ON FUNCTION compay.daemon_rpc(text, jsonb) FROM PUBLIC;

CREATE FUNCTION compay.payout_health(unlocked compay.credit, OUT queued compay.credit,
    OUT stuck_payout bigint, OUT stuck_reason text)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT (SELECT coalesce(compay.sum(amount), '0') FROM compay.payout_transactions
            WHERE status IN ('queued', 'built')),
           s.id, s.reason
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (
        SELECT p.id, CASE WHEN p.last_error IS NOT NULL THEN p.last_error
                          ELSE format('the wallet''s unlocked balance (%s XMR) does not cover it: %s XMR are queued up to it',
                                      unlocked, p.upto) END AS reason
        FROM (SELECT t.id, t.status, t.last_error,
                     compay.sum(t.amount) FILTER (WHERE t.status IN ('queued', 'built'))
                         OVER (ORDER BY t.id) AS upto
              FROM compay.payout_transactions t
              WHERE t.status IN ('queued', 'built', 'relayed')) p
        WHERE p.last_error IS NOT NULL
           OR (p.status IN ('queued', 'built') AND unlocked IS NOT NULL AND p.upto > unlocked)
        ORDER BY p.id LIMIT 1) s ON true
$$;
COMMENT ON FUNCTION compay.payout_health(compay.credit) IS
    'what the unlocked balance must cover (payouts queued or built) and the oldest stuck payout with its reason';
REVOKE ALL ON FUNCTION compay.payout_health(compay.credit) FROM PUBLIC;

CREATE OR REPLACE FUNCTION compay.record_runner_status(runner text, health jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    unlocked compay.credit := compay.credit_from_atomic((health->>'unlocked_atomic')::numeric);
    queued compay.credit;
    stuck_id bigint;
    stuck_reason text;
BEGIN
    SELECT h.queued, h.stuck_payout, h.stuck_reason INTO queued, stuck_id, stuck_reason
    FROM compay.payout_health(unlocked) h;
    INSERT INTO compay.runner_status AS s (runner, state) VALUES (record_runner_status.runner, 'done')
    ON CONFLICT ON CONSTRAINT runner_status_pkey DO NOTHING;
    UPDATE compay.runner_status AS s
    SET state = health->>'state',
        finished_at = now(),
        moved = (health->>'moved')::bigint,
        last_error = coalesce(health->>'error', s.last_error),
        last_error_at = CASE WHEN health->>'error' IS NULL THEN s.last_error_at ELSE now() END,
        wallet_error = coalesce(health->>'wallet_error', s.wallet_error),
        wallet_error_at = coalesce((health->>'wallet_error_at')::timestamptz, s.wallet_error_at),
        wallet_height = (health->>'wallet_height')::bigint,
        daemon_height = (health->>'daemon_height')::bigint,
        unlocked_balance = unlocked,
        queued_payouts = queued,
        oldest_stuck_payout = stuck_id,
        oldest_stuck_reason = stuck_reason,
        health_at = now()
    WHERE s.runner = record_runner_status.runner;
END
$$;

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
    n_gave_up bigint;
    bad text;
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
    name := 'payouts';
    IF ph.stuck_payout IS NOT NULL THEN
        SELECT CASE WHEN p.last_error IS NOT NULL THEN 'fail' ELSE 'warn' END INTO status
        FROM compay.payout_transactions p WHERE p.id = ph.stuck_payout;
        advice := CASE WHEN status = 'fail'
                       THEN 'A payout keeps failing: read its last_error in compay.pending_payouts and fix the wallet or the daemon.'
                       ELSE 'A payout waits for the unlocked balance: fund the wallet or wait for it to unlock.' END;
        detail := format('payout %s: %s', ph.stuck_payout, ph.stuck_reason);
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
END $$;
COMMENT ON FUNCTION compay.diagnose() IS
    'one row per check of what payments need (runner, wallet, wallet sync, unlocked balance, payouts, settlements, ledger, settings): ok, warn or fail with one sentence of advice and the figures (calls the wallet and the daemon; not inside a transaction that holds ledger locks)';

REVOKE ALL ON FUNCTION compay.wallet_balance(), compay.wallet_transfers(integer),
    compay.verify_tx(text), compay.diagnose(), compay.typical_payout_fee(),
    compay.settings_contradictions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.wallet_balance(), compay.wallet_transfers(integer),
    compay.verify_tx(text), compay.diagnose() TO compay_admin;


-- Issue 15 (earnings): compay.earnings, earnings_breakdown, earnings_history and
-- payment_history (src/earnings.sql).
--------------------------------------------------------------------------
-- Earnings: what a node earned, where each amount is now (pending,
-- settled, in flight on chain, paid) and what it owes or is owed, read
-- from the payments, verifier rewards, settlements, payout parts,
-- clawbacks and shortfalls.  Read-only (STABLE, no temporary tables):
-- every function here works on a hot standby.  Node-scoped: a node role
-- reads its own, compay_reader every node's.
--
-- An earning event is a payment received (completed, disputed or
-- refunded) or a verifier reward moved from $rewards.  Its net is its
-- amount less what refunds gave back (transfers of kind refund of its
-- transfer, from the payee, its settlement's earmark hold or $clawbacks).
--------------------------------------------------------------------------

-- Every earning event of a node, with its settlement and payout parts.
-- Internal: the node-scoped functions below check the caller first.
CREATE FUNCTION compay.earning_events(node_id text)
RETURNS TABLE (earned_at timestamptz, kind text, purpose text, job_id bigint, task_id text,
               job_type text, payer text, payment_id bigint, currency text,
               amount compay.credit, refunded compay.credit, earned compay.credit,
               settlement_id bigint, payout_ids bigint[], tx_hashes text[], status text)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH events AS (
        SELECT p.completed_at AS earned_at, 'payment'::text AS kind, 'compute'::text AS purpose,
               j.id AS job_id, p.task_id, j.task_type AS job_type, p.from_node AS payer,
               p.id AS payment_id, p.currency, p.amount,
               coalesce((SELECT compay.sum(t.amount) FROM compay.transfers t
                         WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'),
                        '0'::compay.credit) AS refunded,
               p.settlement_id, p.status = 'disputed' AS disputed
        FROM compay.payments p
        LEFT JOIN compay.jobs j ON j.task_id = p.task_id
        WHERE p.to_node = $1 AND p.status IN ('completed', 'disputed', 'refunded')
        UNION ALL
        SELECT v.rewarded_at, 'reward', 'verification', j.id, j.task_id, j.task_type, '$rewards',
               NULL, j.currency, v.reward_amount, '0'::compay.credit, v.settlement_id, false
        FROM compay.verifications v
        JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.verifier = $1 AND v.reward_amount OPERATOR(compay.>) '0'::compay.credit
          AND v.rewarded_at IS NOT NULL
    )
    SELECT e.earned_at, e.kind, e.purpose, e.job_id, e.task_id, e.job_type, e.payer,
           e.payment_id, e.currency, e.amount, e.refunded, e.amount OPERATOR(compay.-) e.refunded,
           e.settlement_id, o.payout_ids, o.tx_hashes,
           CASE WHEN e.refunded OPERATOR(compay.>) '0'::compay.credit
                     AND e.refunded OPERATOR(compay.=) e.amount THEN 'refunded'
                WHEN e.disputed THEN 'disputed'
                WHEN e.settlement_id IS NULL THEN 'pending'
                WHEN s.status = 'completed' THEN 'paid'
                WHEN o.in_flight THEN 'in_flight'
                ELSE 'settled' END
    FROM events e
    LEFT JOIN compay.settlements s ON s.id = e.settlement_id
    LEFT JOIN LATERAL (
        SELECT array_agg(t.id ORDER BY t.id) AS payout_ids,
               array_agg(t.tx_hash ORDER BY t.id) AS tx_hashes,
               coalesce(bool_or(t.status IN ('built', 'relayed')), false) AS in_flight
        FROM compay.payout_parts pp
        JOIN compay.payout_transactions t ON t.id = pp.payout_id
        WHERE pp.settlement_id = e.settlement_id AND t.status <> 'failed'
    ) o ON true
$$;
REVOKE ALL ON FUNCTION compay.earning_events(text) FROM PUBLIC;

-- The caller may read node_id's earnings; a NULL node_id is refused.
CREATE FUNCTION compay.require_earnings_node(node_id text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_node(node_id, false);
END $$;
REVOKE ALL ON FUNCTION compay.require_earnings_node(text) FROM PUBLIC;

-- Per currency: what the node earned and where it is now.  earned =
-- pending + settled_unpaid + in_flight + paid - clawbacks_owed (see
-- docs/reference.md for each column).
CREATE FUNCTION compay.earnings(node_id text, currency text DEFAULT NULL)
RETURNS TABLE (currency_code text, earned compay.credit, refunded compay.credit,
               rewards compay.credit, pending compay.credit, settled_unpaid compay.credit,
               in_flight compay.credit, paid compay.credit, clawbacks_owed compay.credit,
               shortfalls_owed_to compay.credit, shortfalls_owed_by compay.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := earnings.node_id;
    v_currency text := earnings.currency;
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM compay.earning_events(v_node) e
        WHERE v_currency IS NULL OR e.currency = v_currency
    ), st AS (
        -- Each settlement of the node: its net, and where that net is now.
        SELECT s.id, s.currency, s.status,
               coalesce((SELECT compay.sum(e.earned) FROM ev e WHERE e.settlement_id = s.id),
                        '0'::compay.credit) AS net,
               coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                         JOIN compay.payout_transactions t ON t.id = pp.payout_id
                         WHERE pp.settlement_id = s.id AND t.status IN ('built', 'relayed')),
                        '0'::compay.credit) AS flying,
               coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                         JOIN compay.payout_transactions t ON t.id = pp.payout_id
                         WHERE pp.settlement_id = s.id AND t.status = 'confirmed'),
                        '0'::compay.credit) AS confirmed,
               coalesce((SELECT h.remaining FROM compay.holds h
                         WHERE h.id = s.earmark_hold_id AND h.status = 'pending'),
                        '0'::compay.credit) AS kept
        FROM compay.settlements s
        WHERE s.payee = v_node AND (v_currency IS NULL OR s.currency = v_currency)
    ), per_settlement AS (
        SELECT st.currency,
               CASE WHEN st.currency <> 'XMR' THEN
                        CASE WHEN st.status = 'completed' THEN '0'::compay.credit ELSE st.net END
                    WHEN st.status IN ('pending', 'failed') THEN st.net
                    WHEN st.status = 'processing' THEN st.kept
                    ELSE '0'::compay.credit END AS settled_unpaid,
               CASE WHEN st.currency <> 'XMR' THEN '0'::compay.credit ELSE st.flying END AS in_flight,
               CASE WHEN st.currency <> 'XMR' THEN
                        CASE WHEN st.status = 'completed' THEN st.net ELSE '0'::compay.credit END
                    ELSE st.confirmed END AS paid
        FROM st
    ), owed AS (
        SELECT c.currency, compay.sum(c.amount OPERATOR(compay.-) c.repaid) AS clawbacks
        FROM compay.clawbacks c
        WHERE c.node_id = v_node AND c.repaid_at IS NULL
          AND (v_currency IS NULL OR c.currency = v_currency)
        GROUP BY c.currency
    ), shortfalls AS (
        SELECT f.currency,
               compay.sum(f.amount OPERATOR(compay.-) f.collected)
                   FILTER (WHERE f.provider = v_node) AS owed_to,
               compay.sum(f.amount OPERATOR(compay.-) f.collected)
                   FILTER (WHERE f.requester = v_node) AS owed_by
        FROM compay.shortfalls f
        WHERE (f.provider = v_node OR f.requester = v_node) AND f.collected_at IS NULL
          AND (v_currency IS NULL OR f.currency = v_currency)
        GROUP BY f.currency
    ), currencies AS (
        SELECT ev.currency FROM ev
        UNION SELECT per_settlement.currency FROM per_settlement
        UNION SELECT owed.currency FROM owed
        UNION SELECT shortfalls.currency FROM shortfalls
        UNION SELECT v_currency WHERE v_currency IS NOT NULL
    )
    SELECT c.currency,
           coalesce((SELECT compay.sum(e.earned) FROM ev e WHERE e.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.refunded) FROM ev e WHERE e.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.earned) FROM ev e
                     WHERE e.currency = c.currency AND e.purpose = 'verification'),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.earned) FROM ev e
                     WHERE e.currency = c.currency AND e.settlement_id IS NULL),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(x.settled_unpaid) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT compay.sum(x.in_flight) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT compay.sum(x.paid) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT o.clawbacks FROM owed o WHERE o.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT f.owed_to FROM shortfalls f WHERE f.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT f.owed_by FROM shortfalls f WHERE f.currency = c.currency),
                    '0'::compay.credit)
    FROM currencies c
    ORDER BY c.currency;
END $$;
COMMENT ON FUNCTION compay.earnings(text, text) IS
    'per currency: what a node earned (net of refunds), pending, settled not paid out, in flight, paid, its verifier rewards, and clawbacks and shortfalls owed';

-- Checks a [from, to) range: NULL ends are open; from after to is refused.
CREATE FUNCTION compay.check_earnings_range("from" timestamptz, "to" timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF "from" > "to" THEN
        RAISE EXCEPTION 'from (%) is after to (%)', "from", "to"
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the start of the range first; the range is [from, to).';
    END IF;
END $$;
REVOKE ALL ON FUNCTION compay.check_earnings_range(timestamptz, timestamptz) FROM PUBLIC;

-- What a node earned in [from, to), grouped by job type, purpose, payer,
-- or UTC day, week (starting Monday) or month.
CREATE FUNCTION compay.earnings_breakdown(node_id text, "from" timestamptz, "to" timestamptz,
    by text)
RETURNS TABLE (key text, currency text, events bigint, amount compay.credit,
               refunded compay.credit, earned compay.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := earnings_breakdown.node_id;
    v_from timestamptz := earnings_breakdown."from";
    v_to timestamptz := earnings_breakdown."to";
    v_by text := earnings_breakdown.by;
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    IF v_by IS NULL OR v_by NOT IN ('job_type', 'purpose', 'payer', 'day', 'week', 'month') THEN
        RAISE EXCEPTION 'cannot break earnings down by "%"', left(v_by, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use job_type, purpose, payer, day, week or month.';
    END IF;
    PERFORM compay.check_earnings_range(v_from, v_to);
    RETURN QUERY
    SELECT k.key, e.currency, count(*), compay.sum(e.amount), compay.sum(e.refunded),
           compay.sum(e.earned)
    FROM compay.earning_events(v_node) e
    CROSS JOIN LATERAL (SELECT CASE v_by
        WHEN 'job_type' THEN e.job_type
        WHEN 'purpose' THEN e.purpose
        WHEN 'payer' THEN e.payer
        ELSE to_char(date_trunc(v_by, e.earned_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') END AS key) k
    WHERE (v_from IS NULL OR e.earned_at >= v_from) AND (v_to IS NULL OR e.earned_at < v_to)
    GROUP BY k.key, e.currency
    ORDER BY k.key, e.currency;
END $$;
COMMENT ON FUNCTION compay.earnings_breakdown(text, timestamptz, timestamptz, text) IS
    'what a node earned in [from, to) by job_type, purpose, payer, or UTC day, week or month, per currency';

-- One row per earning event in [from, to), oldest first.
CREATE FUNCTION compay.earnings_history(node_id text, "from" timestamptz DEFAULT NULL,
    "to" timestamptz DEFAULT NULL)
RETURNS TABLE (earned_at timestamptz, kind text, purpose text, job_id bigint, task_id text,
               job_type text, payer text, payment_id bigint, currency text,
               amount compay.credit, refunded compay.credit, earned compay.credit,
               settlement_id bigint, payout_ids bigint[], tx_hashes text[], status text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := earnings_history.node_id;
    v_from timestamptz := earnings_history."from";
    v_to timestamptz := earnings_history."to";
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    PERFORM compay.check_earnings_range(v_from, v_to);
    RETURN QUERY
    SELECT e.* FROM compay.earning_events(v_node) e
    WHERE (v_from IS NULL OR e.earned_at >= v_from) AND (v_to IS NULL OR e.earned_at < v_to)
    ORDER BY e.earned_at, e.kind, e.payment_id, e.job_id;
END $$;
COMMENT ON FUNCTION compay.earnings_history(text, timestamptz, timestamptz) IS
    'one row per earning event (payment received or verifier reward) of a node in [from, to), with its settlement, payouts and tx hashes';

-- The payments a node made (out) and received (in), newest first.
CREATE FUNCTION compay.payment_history(node_id text, max_rows integer DEFAULT 100)
RETURNS TABLE (created_at timestamptz, completed_at timestamptz, direction text,
               payment_id bigint, task_id text, counterparty text, amount compay.credit,
               refunded compay.credit, currency text, method compay.payment_method,
               status compay.payment_status, settlement_id bigint, tx_hash text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := payment_history.node_id;
    v_max integer := payment_history.max_rows;
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    IF v_max IS NULL OR v_max < 1 OR v_max > 10000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 10000, not %', coalesce(v_max::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT p.created_at, p.completed_at,
           CASE WHEN p.to_node = v_node THEN 'in' ELSE 'out' END,
           p.id, p.task_id,
           CASE WHEN p.to_node = v_node THEN p.from_node ELSE p.to_node END,
           p.amount,
           coalesce((SELECT compay.sum(t.amount) FROM compay.transfers t
                     WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'),
                    '0'::compay.credit),
           p.currency, p.method, p.status, p.settlement_id, p.tx_hash
    FROM compay.payments p
    WHERE p.to_node = v_node OR p.from_node = v_node
    ORDER BY p.created_at DESC, p.id DESC
    LIMIT v_max;
END $$;
COMMENT ON FUNCTION compay.payment_history(text, integer) IS
    'the payments a node made (direction out) and received (in), newest first, at most max_rows (1 to 10000)';

REVOKE ALL ON FUNCTION compay.earnings(text, text),
    compay.earnings_breakdown(text, timestamptz, timestamptz, text),
    compay.earnings_history(text, timestamptz, timestamptz),
    compay.payment_history(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.earnings(text, text),
    compay.earnings_breakdown(text, timestamptz, timestamptz, text),
    compay.earnings_history(text, timestamptz, timestamptz),
    compay.payment_history(text, integer) TO compay_reader, compay_node;

--------------------------------------------------------------------------
-- Issue 16 (addresses): several payout addresses per node and purpose,
-- addresses for one job type, and rotation (src/payout_addresses.sql).
-- The 0.1 addresses are kept: each is its node's only address of its
-- purpose, for any job type.
--------------------------------------------------------------------------
ALTER TABLE compay.payout_addresses DROP CONSTRAINT payout_addresses_pkey;
ALTER TABLE compay.payout_addresses ADD COLUMN job_type text;
ALTER TABLE compay.payout_addresses ADD COLUMN last_payout_id bigint;
ALTER TABLE compay.payout_addresses
    ADD CONSTRAINT payout_addresses_key UNIQUE NULLS NOT DISTINCT (node_id, purpose, job_type, address),
    ADD CONSTRAINT payout_addresses_job_type CHECK (length(job_type) BETWEEN 1 AND 200);
COMMENT ON TABLE compay.payout_addresses IS
    'where each node is paid: primary, operational, and verification (verifier rewards) addresses, checked when set; several per purpose, optionally for one job type';
ALTER TABLE compay.payout_policies ADD COLUMN rotate_addresses boolean NOT NULL DEFAULT false;
ALTER TABLE compay.settlements ADD COLUMN job_type text;

CREATE OR REPLACE FUNCTION compay.set_payout_address(node_id text, address text,
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
-- any job type, the primary addresses for any job type.  In the set:
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
        JOIN (VALUES (1, CASE WHEN $2 = 'verification' THEN 'verification'
                              ELSE 'primary' END::compay.address_purpose, $3),
                     (2, CASE WHEN $2 = 'verification' THEN 'verification'
                              ELSE 'primary' END::compay.address_purpose, NULL),
                     (3, 'primary'::compay.address_purpose, NULL)) t (tier, purpose, job_type)
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

-- Functions redefined for job types and rotation (texts as in the pieces).
CREATE OR REPLACE FUNCTION compay.payable_settlements(node_id text)
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
    WHERE s.currency = 'XMR' AND s.status = 'processing'
      AND ($1 IS NULL OR s.payee = $1)
      AND r.rest > 0 AND a.address IS NOT NULL
$$;
CREATE OR REPLACE FUNCTION compay.queue_payout_parts(payout_id bigint, node_id text, amount compay.credit,
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
CREATE OR REPLACE FUNCTION compay.request_payout(node_id text, amount compay.credit DEFAULT NULL,
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
CREATE OR REPLACE FUNCTION compay.run_settlement(period compay.settlement_period DEFAULT 'hourly',
    as_of timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_cutoff timestamptz;
BEGIN
    PERFORM compay.require_node(NULL);
    IF period IS NULL OR as_of IS NULL THEN
        RAISE EXCEPTION 'period and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Only closed periods: everything completed before the start of the
    -- period that holds as_of.
    v_cutoff := compay.period_start(period, as_of);
    -- One run at a time.  A second run waits here, then reads the payments
    -- again and finds them settled; a payment committed after this point is
    -- left for the next run.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.run_settlement'));
    -- Earnings of a job type the payee has an address for (primary or
    -- verification) are settled apart (job_type), to be paid there.
    WITH eligible AS (
        SELECT p.id, p.to_node, p.currency, p.amount,
               compay.period_start(run_settlement.period, p.completed_at) AS ps,
               (SELECT j.task_type FROM compay.jobs j
                WHERE j.task_id = p.task_id
                  AND EXISTS (SELECT 1 FROM compay.payout_addresses a
                              WHERE a.node_id = p.to_node AND a.job_type = j.task_type
                                AND a.purpose <> 'operational')) AS jt
        FROM compay.payments p
        WHERE p.settlement_id IS NULL AND p.completed_at < v_cutoff
          AND (p.status = 'completed'
               -- Partly refunded by a dispute before settlement: the rest is the payee's.
               OR (p.status = 'refunded' AND p.amount > coalesce(
                      (SELECT compay.sum(t.amount) FROM compay.transfers t
                       WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'), '0')))
        FOR UPDATE
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee,
                                        payment_count, total_amount, job_type)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, to_node, count(*), compay.sum(amount), jt
        FROM eligible GROUP BY ps, currency, to_node, jt
        ORDER BY ps, to_node, currency, jt NULLS FIRST   -- ids in a stable order
        RETURNING id, period_start, currency, payee, job_type
    )
    UPDATE compay.payments p SET settlement_id = g.id
    FROM eligible e JOIN groups g
      ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.to_node
     AND g.job_type IS NOT DISTINCT FROM e.jt
    WHERE p.id = e.id;
    -- Verifier rewards: their own settlements (purpose verification), paid
    -- out to the verifier's verification address when it has one.
    WITH eligible AS (
        SELECT v.job_id, v.verifier, j.currency, v.reward_amount AS amount,
               compay.period_start(run_settlement.period, v.rewarded_at) AS ps,
               CASE WHEN EXISTS (SELECT 1 FROM compay.payout_addresses a
                                 WHERE a.node_id = v.verifier AND a.job_type = j.task_type
                                   AND a.purpose <> 'operational')
                    THEN j.task_type END AS jt
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.settlement_id IS NULL AND v.reward_amount > '0' AND v.rewarded_at < v_cutoff
        FOR UPDATE OF v
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                        payment_count, total_amount, job_type)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, verifier, 'verification', count(*), compay.sum(amount), jt
        FROM eligible GROUP BY ps, currency, verifier, jt
        ORDER BY ps, verifier, currency, jt NULLS FIRST
        RETURNING id, period_start, currency, payee, job_type
    )
    UPDATE compay.verifications v SET settlement_id = g.id
    FROM eligible e JOIN groups g
      ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
     AND g.job_type IS NOT DISTINCT FROM e.jt
    WHERE v.job_id = e.job_id AND v.verifier = e.verifier;
    RETURN QUERY SELECT compay.process_due_settlements(as_of);
END $$;

--------------------------------------------------------------------------
-- Several payout addresses per node and purpose, addresses for one job
-- type, and rotation (issue 16).  The table and the choice of an address
-- for a payout (compay.payout_address_for) are in src/payout.sql; the
-- settlements keep the earnings of a job type with an address apart
-- (src/settlement.sql).  compay.set_payout_address (0.1) replaces; the
-- functions here add, remove, list and turn rotation on or off.
--------------------------------------------------------------------------

-- Checks what add/remove_payout_address take; raises as set_payout_address.
CREATE FUNCTION compay.check_payout_address_args(node_id text, address text,
    purpose compay.address_purpose, job_type text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF node_id IS NULL OR address IS NULL OR purpose IS NULL THEN
        RAISE EXCEPTION 'node_id, address and purpose must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(node_id) NOT BETWEEN 1 AND 200 OR left(node_id, 1) = '$' THEN
        RAISE EXCEPTION 'node id "%" cannot be paid', left(node_id, 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF job_type IS NOT NULL AND (length(job_type) NOT BETWEEN 1 AND 200 OR btrim(job_type) = '') THEN
        RAISE EXCEPTION 'a job type is 1 to 200 characters, not blank'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.check_node_id(node_id);
END $$;
REVOKE ALL ON FUNCTION compay.check_payout_address_args(text, text, compay.address_purpose, text)
    FROM PUBLIC;

-- Adds an address to the node's addresses of a purpose (for one job type
-- when job_type is set), checked for compay.monero_network; adding one
-- it has is a no-op.  At most 100 addresses per node.
CREATE FUNCTION compay.add_payout_address(node_id text, address text,
    purpose compay.address_purpose DEFAULT 'primary', job_type text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_network text := compay.setting('compay.monero_network');
    v_kind text;
BEGIN
    PERFORM compay.check_payout_address_args(node_id, address, purpose, job_type);
    PERFORM compay.require_node(node_id);
    v_kind := compay.check_monero_address(address, v_network);   -- 22023 with the reason
    -- One writer per node at a time, so that the bound holds.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.payout_addresses:' || node_id));
    IF (SELECT count(*) FROM compay.payout_addresses a
        WHERE a.node_id = add_payout_address.node_id) >= 100
       AND NOT EXISTS (SELECT 1 FROM compay.payout_addresses a
                       WHERE a.node_id = add_payout_address.node_id
                         AND a.purpose = add_payout_address.purpose
                         AND a.job_type IS NOT DISTINCT FROM add_payout_address.job_type
                         AND a.address = add_payout_address.address) THEN
        RAISE EXCEPTION 'node "%" has 100 payout addresses already', node_id
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Remove one with compay.remove_payout_address().';
    END IF;
    INSERT INTO compay.payout_addresses AS a (node_id, purpose, address, kind, network, job_type)
    VALUES (node_id, purpose, address, v_kind, v_network, job_type)
    ON CONFLICT ON CONSTRAINT payout_addresses_key DO NOTHING;
    RETURN v_kind;
END $$;
COMMENT ON FUNCTION compay.add_payout_address(text, text, compay.address_purpose, text) IS
    'adds a payout address of a purpose (for one job type when job_type is set) to a node''s addresses, checked for compay.monero_network; returns its kind';

-- Removes one of the node's addresses.  Payouts already queued keep the
-- address they took.
CREATE FUNCTION compay.remove_payout_address(node_id text, address text,
    purpose compay.address_purpose DEFAULT 'primary', job_type text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.check_payout_address_args(node_id, address, purpose, job_type);
    PERFORM compay.require_node(node_id);
    DELETE FROM compay.payout_addresses a
    WHERE a.node_id = remove_payout_address.node_id AND a.purpose = remove_payout_address.purpose
      AND a.job_type IS NOT DISTINCT FROM remove_payout_address.job_type
      AND a.address = remove_payout_address.address;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node "%" has no % payout address % for %', left(node_id, 64), purpose,
            left(address, 16) || '...', coalesce('job type "' || left(job_type, 64) || '"', 'any job type')
            USING ERRCODE = 'PY027';
    END IF;
END $$;
COMMENT ON FUNCTION compay.remove_payout_address(text, text, compay.address_purpose, text) IS
    'removes one of a node''s payout addresses; payouts already queued keep theirs';

-- Turns rotation on or off in the node's payout policy: with it on,
-- successive payouts take the addresses of a set in turn.
CREATE FUNCTION compay.set_payout_rotation(node_id text, rotate boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF node_id IS NULL OR rotate IS NULL THEN
        RAISE EXCEPTION 'node_id and rotate must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    INSERT INTO compay.payout_policies AS p (node_id, rotate_addresses) VALUES (node_id, rotate)
    ON CONFLICT ON CONSTRAINT payout_policies_pkey DO UPDATE
    SET rotate_addresses = EXCLUDED.rotate_addresses, updated_at = now();
END $$;
COMMENT ON FUNCTION compay.set_payout_rotation(text, boolean) IS
    'turns address rotation on or off in a node''s payout policy: successive payouts take its addresses in turn';

-- A node's payout addresses; next: the one the next payout of its set
-- (purpose and job type) takes.
CREATE FUNCTION compay.payout_address_list(node_id text)
RETURNS TABLE (purpose compay.address_purpose, job_type text, address text, kind text,
               network text, created_at timestamptz, last_payout_id bigint, next boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF payout_address_list.node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.require_node(payout_address_list.node_id, false);
    RETURN QUERY
    SELECT a.purpose, a.job_type, a.address, a.kind, a.network, a.created_at, a.last_payout_id,
           row_number() OVER (PARTITION BY a.purpose, a.job_type
                              ORDER BY CASE WHEN coalesce(p.rotate_addresses, false)
                                            THEN a.last_payout_id END NULLS FIRST,
                                       a.created_at, a.address) = 1
    FROM compay.payout_addresses a
    LEFT JOIN compay.payout_policies p ON p.node_id = a.node_id
    WHERE a.node_id = payout_address_list.node_id
    ORDER BY a.purpose, a.job_type NULLS FIRST, a.created_at, a.address;
END $$;
COMMENT ON FUNCTION compay.payout_address_list(text) IS
    'a node''s payout addresses by purpose and job type; next: the one its next payout of that set takes';

REVOKE ALL ON FUNCTION compay.add_payout_address(text, text, compay.address_purpose, text),
    compay.remove_payout_address(text, text, compay.address_purpose, text),
    compay.set_payout_rotation(text, boolean), compay.payout_address_list(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.payout_address_list(text) TO compay_reader, compay_node;
GRANT EXECUTE ON FUNCTION compay.add_payout_address(text, text, compay.address_purpose, text),
    compay.remove_payout_address(text, text, compay.address_purpose, text),
    compay.set_payout_rotation(text, boolean) TO compay_app, compay_node;

-- Issue 14 (haform): writes refused on a hot standby with 25006 before any
-- work (compay.require_node, C NodeRequire); adopt_deposit_address asks
-- before it calls the wallet.
CREATE OR REPLACE FUNCTION compay.adopt_deposit_address(node_id text, address_index integer) RETURNS text
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

-- Issue 16 (withdraw): withdrawals of what is not earnings (returned stake, deposits
-- a node no longer needs) paid on chain to its operational address(es): settlements of
-- purpose operational with no payments behind them, paid by the payout machinery.
-- Withdrawals go to operational addresses only; earnings payouts leave them out.

CREATE OR REPLACE FUNCTION compay.payout_address_for(node_id text, settlement_purpose text, job_type text,
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

CREATE OR REPLACE FUNCTION compay.payable_settlements(node_id text)
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

CREATE OR REPLACE FUNCTION compay.queue_payouts() RETURNS integer
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

CREATE OR REPLACE FUNCTION compay.earnings(node_id text, currency text DEFAULT NULL)
RETURNS TABLE (currency_code text, earned compay.credit, refunded compay.credit,
               rewards compay.credit, pending compay.credit, settled_unpaid compay.credit,
               in_flight compay.credit, paid compay.credit, clawbacks_owed compay.credit,
               shortfalls_owed_to compay.credit, shortfalls_owed_by compay.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := earnings.node_id;
    v_currency text := earnings.currency;
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM compay.earning_events(v_node) e
        WHERE v_currency IS NULL OR e.currency = v_currency
    ), st AS (
        -- Each settlement of the node: its net, and where that net is now.
        SELECT s.id, s.currency, s.status,
               coalesce((SELECT compay.sum(e.earned) FROM ev e WHERE e.settlement_id = s.id),
                        '0'::compay.credit) AS net,
               coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                         JOIN compay.payout_transactions t ON t.id = pp.payout_id
                         WHERE pp.settlement_id = s.id AND t.status IN ('built', 'relayed')),
                        '0'::compay.credit) AS flying,
               coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                         JOIN compay.payout_transactions t ON t.id = pp.payout_id
                         WHERE pp.settlement_id = s.id AND t.status = 'confirmed'),
                        '0'::compay.credit) AS confirmed,
               coalesce((SELECT h.remaining FROM compay.holds h
                         WHERE h.id = s.earmark_hold_id AND h.status = 'pending'),
                        '0'::compay.credit) AS kept
        FROM compay.settlements s
        WHERE s.payee = v_node AND (v_currency IS NULL OR s.currency = v_currency)
          AND s.purpose <> 'operational'           -- withdrawals are no earnings
    ), per_settlement AS (
        SELECT st.currency,
               CASE WHEN st.currency <> 'XMR' THEN
                        CASE WHEN st.status = 'completed' THEN '0'::compay.credit ELSE st.net END
                    WHEN st.status IN ('pending', 'failed') THEN st.net
                    WHEN st.status = 'processing' THEN st.kept
                    ELSE '0'::compay.credit END AS settled_unpaid,
               CASE WHEN st.currency <> 'XMR' THEN '0'::compay.credit ELSE st.flying END AS in_flight,
               CASE WHEN st.currency <> 'XMR' THEN
                        CASE WHEN st.status = 'completed' THEN st.net ELSE '0'::compay.credit END
                    ELSE st.confirmed END AS paid
        FROM st
    ), owed AS (
        SELECT c.currency, compay.sum(c.amount OPERATOR(compay.-) c.repaid) AS clawbacks
        FROM compay.clawbacks c
        WHERE c.node_id = v_node AND c.repaid_at IS NULL
          AND (v_currency IS NULL OR c.currency = v_currency)
        GROUP BY c.currency
    ), shortfalls AS (
        SELECT f.currency,
               compay.sum(f.amount OPERATOR(compay.-) f.collected)
                   FILTER (WHERE f.provider = v_node) AS owed_to,
               compay.sum(f.amount OPERATOR(compay.-) f.collected)
                   FILTER (WHERE f.requester = v_node) AS owed_by
        FROM compay.shortfalls f
        WHERE (f.provider = v_node OR f.requester = v_node) AND f.collected_at IS NULL
          AND (v_currency IS NULL OR f.currency = v_currency)
        GROUP BY f.currency
    ), currencies AS (
        SELECT ev.currency FROM ev
        UNION SELECT per_settlement.currency FROM per_settlement
        UNION SELECT owed.currency FROM owed
        UNION SELECT shortfalls.currency FROM shortfalls
        UNION SELECT v_currency WHERE v_currency IS NOT NULL
    )
    SELECT c.currency,
           coalesce((SELECT compay.sum(e.earned) FROM ev e WHERE e.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.refunded) FROM ev e WHERE e.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.earned) FROM ev e
                     WHERE e.currency = c.currency AND e.purpose = 'verification'),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(e.earned) FROM ev e
                     WHERE e.currency = c.currency AND e.settlement_id IS NULL),
                    '0'::compay.credit),
           coalesce((SELECT compay.sum(x.settled_unpaid) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT compay.sum(x.in_flight) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT compay.sum(x.paid) FROM per_settlement x
                     WHERE x.currency = c.currency), '0'::compay.credit),
           coalesce((SELECT o.clawbacks FROM owed o WHERE o.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT f.owed_to FROM shortfalls f WHERE f.currency = c.currency),
                    '0'::compay.credit),
           coalesce((SELECT f.owed_by FROM shortfalls f WHERE f.currency = c.currency),
                    '0'::compay.credit)
    FROM currencies c
    ORDER BY c.currency;
END $$;

ALTER TABLE compay.settlements
    DROP CONSTRAINT settlements_purpose,
    ADD CONSTRAINT settlements_purpose
        CHECK (purpose IN ('primary', 'verification', 'operational')),
    DROP CONSTRAINT settlements_totals,
    ADD CONSTRAINT settlements_totals CHECK (CASE WHEN purpose = 'operational'
        THEN payment_count = 0 AND total_amount > '0' AND currency = 'XMR'
        ELSE payment_count > 0 AND total_amount >= '0' END);

-- What the node may withdraw: its available XMR (balance less holds: its
-- stake, escrows, earmarks) less what it earned and is not settled yet
-- (payments to it and verifier rewards with no settlement, less what was
-- refunded of them) and less what it owes of clawbacks; never below 0.
CREATE FUNCTION compay.withdrawable(node_id text) RETURNS compay.credit
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT compay.credit_from_atomic(greatest(0,
        coalesce((SELECT compay.atomic(a.balance) - compay.atomic(a.reserved)
                  FROM compay.accounts a WHERE a.node_id = $1 AND a.currency = 'XMR'), 0)
        - coalesce((SELECT sum(compay.atomic(p.amount) - coalesce(
                              (SELECT compay.sum_atomic(t.amount) FROM compay.transfers t
                               WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'), 0))
                    FROM compay.payments p
                    WHERE p.to_node = $1 AND p.currency = 'XMR' AND p.settlement_id IS NULL
                      AND p.status IN ('completed', 'disputed', 'refunded')), 0)
        - coalesce((SELECT compay.sum_atomic(v.reward_amount)
                    FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
                    WHERE v.verifier = $1 AND j.currency = 'XMR' AND v.settlement_id IS NULL
                      AND v.reward_amount > '0'), 0)
        - coalesce((SELECT sum(compay.atomic(c.amount) - compay.atomic(c.repaid))
                    FROM compay.clawbacks c
                    WHERE c.node_id = $1 AND c.currency = 'XMR' AND c.repaid_at IS NULL), 0)))
$$;
COMMENT ON FUNCTION compay.withdrawable(text) IS
    'what a node may withdraw to its operational address: its available XMR less its unsettled earnings and what it owes of clawbacks';

-- Adds a withdrawal's amount to a queued payout, to the node's operational
-- address (chosen once, here, and kept; with rotation on, the next payout
-- takes the next one).  The caller holds the queue lock.
CREATE FUNCTION compay.queue_withdrawal(payout_id bigint, settlement_id bigint,
    amount compay.credit) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_address compay.payout_addresses;
BEGIN
    SELECT * INTO STRICT s FROM compay.settlements st WHERE st.id = queue_withdrawal.settlement_id;
    v_address := compay.payout_address_for(s.payee, 'operational', NULL, queue_withdrawal.payout_id);
    IF v_address.address IS NULL OR s.purpose <> 'operational' THEN
        RAISE EXCEPTION 'settlement % is no withdrawal to an operational address', s.id
            USING ERRCODE = 'internal_error';
    END IF;
    UPDATE compay.payout_addresses a SET last_payout_id = queue_withdrawal.payout_id
    WHERE a.node_id = v_address.node_id AND a.purpose = v_address.purpose
      AND a.job_type IS NOT DISTINCT FROM v_address.job_type AND a.address = v_address.address;
    INSERT INTO compay.payout_items AS i (payout_id, node_id, address, amount, settlement_ids)
    VALUES (queue_withdrawal.payout_id, s.payee, v_address.address, amount, ARRAY[s.id])
    ON CONFLICT ON CONSTRAINT payout_items_pkey DO UPDATE
    SET amount = i.amount + EXCLUDED.amount, settlement_ids = i.settlement_ids || EXCLUDED.settlement_ids;
    INSERT INTO compay.payout_parts (payout_id, settlement_id, node_id, address, amount)
    VALUES (queue_withdrawal.payout_id, s.id, s.payee, v_address.address, amount);
    UPDATE compay.settlements st SET payout_id = queue_withdrawal.payout_id WHERE st.id = s.id;
    UPDATE compay.payout_transactions p SET amount = p.amount + queue_withdrawal.amount
    WHERE p.id = queue_withdrawal.payout_id;
END $$;
REVOKE ALL ON FUNCTION compay.queue_withdrawal(bigint, bigint, compay.credit) FROM PUBLIC;

-- Queues again the withdrawals whose payout failed, once their backoff
-- has passed (whatever the node's payout policy: the node asked for
-- them), at most compay.payout_batch_max payees a payout; returns the
-- payouts queued.  Called by compay.queue_payouts, under its lock.
CREATE FUNCTION compay.queue_withdrawals() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_batch integer := compay.setting('compay.payout_batch_max')::integer;
    v_payout bigint;
    v_n integer := 0;
    r record;
BEGIN
    PERFORM NULL FROM compay.settlements s
    WHERE s.purpose = 'operational' AND s.status = 'processing'
    ORDER BY s.id FOR UPDATE;
    FOR r IN
        SELECT s.id, s.payee,
               compay.credit_from_atomic(compay.atomic(h.remaining) - coalesce(
                   (SELECT compay.sum_atomic(pp.amount) FROM compay.payout_parts pp
                    JOIN compay.payout_transactions p ON p.id = pp.payout_id
                    WHERE pp.settlement_id = s.id AND p.status = 'queued'), 0)) AS rest
        FROM compay.settlements s
        JOIN compay.holds h ON h.id = s.earmark_hold_id AND h.status = 'pending'
        WHERE s.purpose = 'operational' AND s.status = 'processing'
          AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
          AND (compay.payout_address_for(s.payee, 'operational', NULL, NULL)).address IS NOT NULL
        ORDER BY s.id
    LOOP
        CONTINUE WHEN r.rest <= '0';
        IF v_payout IS NULL OR (SELECT count(*) FROM compay.payout_items i
                                WHERE i.payout_id = v_payout) >= v_batch THEN
            INSERT INTO compay.payout_transactions (amount) VALUES ('0') RETURNING id INTO v_payout;
            v_n := v_n + 1;
        END IF;
        PERFORM compay.queue_withdrawal(v_payout, r.id, r.rest);
    END LOOP;
    RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION compay.queue_withdrawals() FROM PUBLIC;

-- A withdrawal on the node's request: amount of what it may withdraw
-- (compay.withdrawable) paid on chain to its operational address(es).
-- Earmarked by a hold at once and queued as a payout of its own, which
-- the payout round builds, relays and confirms.  It counts toward, and is
-- bounded by, the node's daily cap (max_per_day); min_payout and
-- payout_interval do not apply.  Returns the payout id; the same
-- idempotency key with the same arguments returns the same id.
CREATE FUNCTION compay.request_withdrawal(node_id text, amount compay.credit,
    idempotency_key text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    pol record;
    v_paid compay.credit;
    v_can compay.credit;
    v_start timestamptz := compay.period_start('hourly', now());
    v_settlement bigint;
    v_payout bigint;
BEGIN
    IF node_id IS NULL OR amount IS NULL THEN
        RAISE EXCEPTION 'node_id and amount must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.require_node(node_id);
    IF amount <= '0' THEN
        RAISE EXCEPTION 'a withdrawal amount must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF idempotency_key IS NOT NULL THEN
        v_payout := compay.idempotency_claim(idempotency_key, 'request_withdrawal',
                                             node_id || E'\n' || amount::text);
        IF v_payout IS NOT NULL THEN
            RETURN v_payout;
        END IF;
    END IF;
    IF (compay.payout_address_for(node_id, 'operational', NULL, NULL)).address IS NULL THEN
        RAISE EXCEPTION 'node "%" has no operational address', node_id
            USING ERRCODE = 'PY034',
                  HINT = 'Add one with compay.add_payout_address(node_id, address, ''operational'').';
    END IF;
    -- One queue at a time (compay.queue_payouts and request_payout take the
    -- same lock): two withdrawals of a node never both count the same money.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
    v_can := compay.withdrawable(node_id);
    IF amount > v_can THEN
        RAISE EXCEPTION 'a withdrawal of % exceeds the % node "%" can withdraw', amount, v_can, node_id
            USING ERRCODE = 'PY035',
                  DETAIL = 'A node withdraws its available XMR less its earnings not yet settled and what it owes of clawbacks; settled earnings are paid by compay.request_payout().';
    END IF;
    SELECT * INTO pol FROM compay.payout_policy(node_id);
    v_paid := compay.payout_paid_today(node_id);
    IF amount > pol.max_per_day - v_paid THEN
        RAISE EXCEPTION 'a withdrawal of % is over the daily cap of node "%"', amount, node_id
            USING ERRCODE = 'PY018',
                  DETAIL = format('Its max_per_day is %s and it was paid %s in the last 24 hours.',
                                  pol.max_per_day, v_paid),
                  HINT = 'Ask for less, or again once its earlier payouts are 24 hours old.';
    END IF;
    INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                    payment_count, total_amount, status, attempts)
    VALUES ('hourly', v_start, compay.period_end('hourly', v_start), 'XMR', node_id,
            'operational', 0, amount, 'processing', 1)
    RETURNING id INTO v_settlement;
    UPDATE compay.settlements s
    SET earmark_hold_id = compay.reserve(node_id, amount, 'settlement:' || v_settlement,
                                         NULL, NULL, 'XMR')
    WHERE s.id = v_settlement;
    INSERT INTO compay.payout_transactions (amount) VALUES ('0') RETURNING id INTO v_payout;
    PERFORM compay.queue_withdrawal(v_payout, v_settlement, amount);
    IF idempotency_key IS NOT NULL THEN
        PERFORM compay.idempotency_record(idempotency_key, v_payout);
    END IF;
    RETURN v_payout;
END $$;
COMMENT ON FUNCTION compay.request_withdrawal(text, compay.credit, text) IS
    'queues a payout of amount of what a node may withdraw (not its earnings) to its operational address, within its daily cap; returns the payout id';

REVOKE ALL ON FUNCTION compay.withdrawable(text),
    compay.request_withdrawal(text, compay.credit, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.withdrawable(text) TO compay_reader, compay_node;
GRANT EXECUTE ON FUNCTION compay.request_withdrawal(text, compay.credit, text)
    TO compay_app, compay_node;

CREATE FUNCTION compay.request_withdrawal(node_id text, amount numeric,
                                          idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.request_withdrawal(node_id, amount::compay.credit, idempotency_key);
REVOKE ALL ON FUNCTION compay.request_withdrawal(text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.request_withdrawal(text, numeric, text) TO compay_app, compay_node;

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
              FROM compay.payments y
              JOIN compay.transfers t ON t.refund_of = y.transfer_id AND t.kind = 'refund'
              JOIN compay.accounts a ON a.id = t.from_account
              WHERE y.settlement_id = s.id AND a.node_id = s.payee
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
          FROM (SELECT currency, compay.atomic(balance) AS b FROM compay.accounts
                WHERE node_id = '$clawbacks') a
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
          LEFT JOIN compay.payments p ON p.settlement_id = s.id AND p.status = 'disputed'
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
$$;

-- Issue 14 (hapay): payouts noted in the wallet before relay and adopted from it
-- after a lost end of WAL (src/payout_reconcile.sql).
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
    WHERE y.settlement_id = ANY (v_sids) AND y.status = 'completed';
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

-- Issue 14 (hapay): compay.diagnose() warns of payouts adopted from the wallet.
CREATE OR REPLACE FUNCTION compay.diagnose()
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
END $$;

--------------------------------------------------------------------------
-- Issue 16 (events): compay.events, emit_event, publish_events,
-- events_since, and the triggers that emit job, payment and payout events.
--------------------------------------------------------------------------

--------------------------------------------------------------------------
-- Events: what applications LISTEN to (channel compay_events) and read
-- back from an append-only outbox after a disconnection.
--
-- Interface (for every emitter, in compay or in an application):
--
--   compay.emit_event(kind text, payload jsonb) RETURNS void
--     Queues one event in the calling transaction: it is published (given
--     its id in compay.events, notified on compay_events) only if and
--     after that transaction commits; a rollback emits nothing.  kind is
--     'family.name' in lower case ('job.state', 'payout.built',
--     'deposit.seen'), at most 64 characters; payload a JSON object of at
--     most 4,000 bytes, amounts as exact text.  Cost on the emitter: one
--     INSERT of a small row.  compay_admin (and compay's own functions,
--     which run as its owner).
--   compay.publish_events(max_events integer DEFAULT 1000) RETURNS bigint
--     Moves up to max_events committed queued events into compay.events,
--     in the order they were emitted, gives each the next id and sends
--     pg_notify('compay_events', {"id", "kind", "at", "payload"}); then
--     deletes published events older than compay.event_retention.  Run by
--     the worker right after each emitting commit; without the worker,
--     from pg_cron.
--   compay.events_since(last_id bigint, max_events integer DEFAULT 1000)
--     Published events with id > last_id, by id: exact for resuming, also
--     on a hot standby (see below).  compay_reader.
--
-- Why ids are exact for resuming.  An id handed out when an event is
-- emitted would follow the emitting transactions' starts, not their
-- commits: a transaction holding id 9 may commit after one holding 10, and
-- a consumer that read 10 and asks for events after 10 would never get 9.
-- So emitters only queue (compay.event_queue), and ids are given when
-- events are published: publishers are serialized by a transaction-level
-- advisory lock held until their commit, and each takes its ids from a
-- sequence after the previous publisher committed.  Every event that
-- becomes visible later therefore has a larger id than every event visible
-- now, and events_since(last_id) misses nothing.  A queued event whose
-- transaction has not committed is invisible to the publisher and simply
-- waits for the next one (no long transaction elsewhere holds back the
-- others).  The events of one object (a job, a payout) come in the order
-- its changes were made: each change locks the object's row, so the next
-- change queues its event after the previous change committed.
--------------------------------------------------------------------------

CREATE SEQUENCE compay.event_queue_id_seq;
CREATE TABLE compay.event_queue (
    id      bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.event_queue_id_seq'),
    at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    kind    text NOT NULL,
    payload jsonb NOT NULL
);
ALTER SEQUENCE compay.event_queue_id_seq OWNED BY compay.event_queue.id;
COMMENT ON TABLE compay.event_queue IS
    'events emitted and not yet published (compay.publish_events moves them to compay.events)';

CREATE SEQUENCE compay.events_id_seq;
CREATE TABLE compay.events (
    id           bigint PRIMARY KEY,
    at           timestamptz NOT NULL,   -- when emitted
    published_at timestamptz NOT NULL,
    kind         text NOT NULL,
    payload      jsonb NOT NULL
);
ALTER SEQUENCE compay.events_id_seq OWNED BY compay.events.id;
CREATE INDEX events_published_at ON compay.events (published_at);
COMMENT ON TABLE compay.events IS
    'published events, append-only, ids in publication order; kept for compay.event_retention';

-- The highest id retention deleted: events_since() from below it would
-- miss events, and says so (PY026).  At most one row.
CREATE TABLE compay.events_deleted (
    only_row boolean PRIMARY KEY DEFAULT true CONSTRAINT events_deleted_one CHECK (only_row),
    through_id bigint NOT NULL
);
COMMENT ON TABLE compay.events_deleted IS
    'the highest event id compay.event_retention deleted';

SELECT pg_catalog.pg_extension_config_dump('compay.event_queue', '');
SELECT pg_catalog.pg_extension_config_dump('compay.event_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.events', '');
SELECT pg_catalog.pg_extension_config_dump('compay.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.events_deleted', '');
REVOKE ALL ON compay.event_queue, compay.event_queue_id_seq, compay.events,
    compay.events_id_seq, compay.events_deleted FROM PUBLIC;
GRANT SELECT ON compay.events, compay.events_deleted TO compay_reader;

CREATE FUNCTION compay.event_wake() RETURNS void
    AS 'MODULE_PATHNAME', 'compay_event_wake' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.event_wake() IS
    'when the calling transaction commits, the worker publishes the events it emitted';
REVOKE ALL ON FUNCTION compay.event_wake() FROM PUBLIC;

CREATE FUNCTION compay.emit_event(kind text, payload jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF kind IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'kind and payload of an event must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(kind) > 64 OR kind !~ '^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$' THEN
        RAISE EXCEPTION 'invalid event kind "%"', left(kind, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An event kind is a family and a name in lower case, such as job.state, of at most 64 characters.';
    END IF;
    IF jsonb_typeof(payload) <> 'object' THEN
        RAISE EXCEPTION 'the payload of an event must be a JSON object, not %', jsonb_typeof(payload)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(payload::text) > 4000 THEN
        RAISE EXCEPTION 'the payload of an event is % bytes, over 4000', octet_length(payload::text)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Put ids in the event and let consumers read the rest from the tables.';
    END IF;
    INSERT INTO compay.event_queue (kind, payload) VALUES (emit_event.kind, emit_event.payload);
    PERFORM compay.event_wake();
END $$;
COMMENT ON FUNCTION compay.emit_event(text, jsonb) IS
    'queues an event, published with its id and notified on compay_events once this transaction commits';
REVOKE ALL ON FUNCTION compay.emit_event(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.emit_event(text, jsonb) TO compay_admin;

CREATE FUNCTION compay.publish_events(max_events integer DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    e          record;
    v_id       bigint;
    v_note     text;
    v_count    bigint := 0;
    v_keep     interval;
    v_deleted  bigint;
BEGIN
    IF max_events IS NULL OR max_events < 1 OR max_events > 100000 THEN
        RAISE EXCEPTION 'max_events must be between 1 and 100000, not %', coalesce(max_events::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot publish events on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'The primary publishes them; events_since() reads them here.';
    END IF;
    IF current_setting('transaction_read_only') = 'on' THEN
        RAISE EXCEPTION 'cannot publish events in a read-only transaction'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    -- One publisher at a time, until its commit: the next one takes its
    -- ids after this one's events are visible (see the header).  Each
    -- statement below takes a new snapshot, after the lock.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.publish_events'));
    FOR e IN SELECT q.id, q.at, q.kind, q.payload FROM compay.event_queue q
             ORDER BY q.id LIMIT max_events LOOP
        v_id := nextval('compay.events_id_seq');
        INSERT INTO compay.events (id, at, published_at, kind, payload)
        VALUES (v_id, e.at, clock_timestamp(), e.kind, e.payload);
        DELETE FROM compay.event_queue WHERE id = e.id;
        -- Under PostgreSQL's 8000 bytes: emit_event caps payloads at 4000.
        v_note := jsonb_build_object('id', v_id, 'kind', e.kind, 'at', e.at, 'payload', e.payload)::text;
        PERFORM pg_notify('compay_events', v_note);
        v_count := v_count + 1;
    END LOOP;

    v_keep := compay.setting('compay.event_retention')::interval;
    IF v_keep > interval '0' THEN
        WITH gone AS (
            DELETE FROM compay.events
            WHERE id IN (SELECT id FROM compay.events
                         WHERE published_at < clock_timestamp() - v_keep
                         ORDER BY id LIMIT 10000)
            RETURNING id)
        SELECT max(id) INTO v_deleted FROM gone;
        IF v_deleted IS NOT NULL THEN
            INSERT INTO compay.events_deleted (through_id) VALUES (v_deleted)
            ON CONFLICT (only_row) DO UPDATE
                SET through_id = greatest(compay.events_deleted.through_id, EXCLUDED.through_id);
        END IF;
    END IF;
    RETURN v_count;
END $$;
COMMENT ON FUNCTION compay.publish_events(integer) IS
    'publishes up to max_events committed queued events (ids, notifications on compay_events) and applies compay.event_retention';
REVOKE ALL ON FUNCTION compay.publish_events(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.publish_events(integer) TO compay_app;

CREATE FUNCTION compay.events_since(last_id bigint, max_events integer DEFAULT 1000)
RETURNS TABLE (id bigint, at timestamptz, kind text, payload jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_through bigint;
BEGIN
    IF last_id IS NULL THEN
        RAISE EXCEPTION 'last_id must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Start with 0 for every event still kept.';
    END IF;
    IF last_id < 0 THEN
        RAISE EXCEPTION 'last_id must be 0 or more, not %', last_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_events IS NULL OR max_events < 1 OR max_events > 100000 THEN
        RAISE EXCEPTION 'max_events must be between 1 and 100000, not %', coalesce(max_events::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A STABLE function reads with one snapshot: the events and the
    -- retention mark below agree.
    RETURN QUERY
    SELECT e.id, e.at, e.kind, e.payload FROM compay.events e
    WHERE e.id > last_id ORDER BY e.id LIMIT max_events;
    SELECT d.through_id INTO v_through FROM compay.events_deleted d;
    IF last_id < v_through THEN
        RAISE EXCEPTION 'events after % were deleted by retention', last_id
            USING ERRCODE = 'PY026',
                  DETAIL = format('Events up to id %s are gone (compay.event_retention is %s).',
                                  v_through, compay.setting('compay.event_retention')),
                  HINT = format('Read the current state from the tables, then resume with events_since(%s).', v_through);
    END IF;
END $$;
COMMENT ON FUNCTION compay.events_since(bigint, integer) IS
    'published events after last_id, by id, at most max_events: what a consumer missed while disconnected';
REVOKE ALL ON FUNCTION compay.events_since(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.events_since(bigint, integer) TO compay_reader;

--------------------------------------------------------------------------
-- What compay emits.  Triggers on the owning tables, so that every change
-- is emitted whichever function makes it; each adds one queued row.
--------------------------------------------------------------------------

-- job.state: every job's first state and each change of it.  Only rows
-- this transaction created emit on INSERT (created_at is now()): a
-- restore (pg_restore COPYs the rows back) or a bulk load of earlier rows
-- emits nothing.  A restore fires no UPDATE trigger.
CREATE FUNCTION compay.jobs_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.emit_event('job.state', jsonb_build_object(
        'job_id', NEW.id, 'task_id', NEW.task_id, 'requester', NEW.requester,
        'provider', NEW.provider, 'task_type', NEW.task_type, 'currency', NEW.currency,
        'status', NEW.status,
        'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status::text END,
        'amount', NEW.amount::text, 'payment_id', NEW.payment_id));
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_emit_insert AFTER INSERT ON compay.jobs
    FOR EACH ROW WHEN (NEW.created_at = pg_catalog.now())
    EXECUTE FUNCTION compay.jobs_emit_event();
CREATE TRIGGER jobs_emit_status AFTER UPDATE OF status ON compay.jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION compay.jobs_emit_event();

-- payment.completed: a payment that reached completed.
CREATE FUNCTION compay.payments_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.emit_event('payment.completed', jsonb_build_object(
        'payment_id', NEW.id, 'task_id', NEW.task_id, 'from_node', NEW.from_node,
        'to_node', NEW.to_node, 'amount', NEW.amount::text, 'currency', NEW.currency,
        'method', NEW.method, 'transfer_id', NEW.transfer_id));
    RETURN NULL;
END $$;
CREATE TRIGGER payments_emit_insert AFTER INSERT ON compay.payments
    FOR EACH ROW WHEN (NEW.status = 'completed' AND NEW.created_at = pg_catalog.now())
    EXECUTE FUNCTION compay.payments_emit_event();
CREATE TRIGGER payments_emit_status AFTER UPDATE OF status ON compay.payments
    FOR EACH ROW WHEN (NEW.status = 'completed' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION compay.payments_emit_event();

-- payout.built, payout.relayed, payout.confirmed, payout.failed: a payout
-- transaction reaching that state (queued is not an event).
CREATE FUNCTION compay.payouts_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.emit_event('payout.' || NEW.status::text, jsonb_build_object(
        'payout_id', NEW.id, 'status', NEW.status, 'previous_status', OLD.status,
        'amount', NEW.amount::text, 'fee', NEW.fee::text, 'tx_hash', NEW.tx_hash,
        'confirmations', NEW.confirmations, 'last_error', NEW.last_error,
        'nodes', (SELECT jsonb_agg(DISTINCT i.node_id) FROM compay.payout_items i
                  WHERE i.payout_id = NEW.id)));
    RETURN NULL;
END $$;
CREATE TRIGGER payouts_emit_status AFTER UPDATE OF status ON compay.payout_transactions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'queued')
    EXECUTE FUNCTION compay.payouts_emit_event();

REVOKE ALL ON FUNCTION compay.jobs_emit_event(), compay.payments_emit_event(),
    compay.payouts_emit_event() FROM PUBLIC;
-- Issue 16 (deposits): deposit requests (a fresh treasury subaddress per
-- request, an amount, an expiry, confirmations; seen, partial, confirmed,
-- expired, late), jobs funded by a deposit request (job states
-- awaiting_deposit and cancelled), record_deposits crediting the
-- requests' subaddresses, verify_ledger check 18.
--------------------------------------------------------------------------
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

-- record_deposits credits the requests' subaddresses too, each with its
-- confirmations (text: src/deposit.sql).
CREATE OR REPLACE FUNCTION compay.record_deposits(reply jsonb, height bigint) RETURNS integer
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

-- verify_ledger check 18 (text: src/verify.sql).
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
              FROM compay.payments y
              JOIN compay.transfers t ON t.refund_of = y.transfer_id AND t.kind = 'refund'
              JOIN compay.accounts a ON a.id = t.from_account
              WHERE y.settlement_id = s.id AND a.node_id = s.payee
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
          FROM (SELECT currency, compay.atomic(balance) AS b FROM compay.accounts
                WHERE node_id = '$clawbacks') a
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
          LEFT JOIN compay.payments p ON p.settlement_id = s.id AND p.status = 'disputed'
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
$$;

-- Deposit requests (src/deposit_request.sql).
CREATE FUNCTION compay.request_deposit(node_id text, amount numeric,
    expires_in interval DEFAULT '1 hour', confirmations integer DEFAULT NULL,
    idempotency_key text DEFAULT NULL)
    RETURNS TABLE (request_id bigint, address text, amount_due compay.credit, expires_at timestamptz)
    LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT * FROM compay.request_deposit(node_id, amount::compay.credit, expires_in, confirmations,
                                         idempotency_key)
$$;
CREATE FUNCTION compay.submit_job_funded_by_deposit(task_id text, requester text, task_type text,
    max_amount numeric, timeout interval DEFAULT '24 hours', expires_in interval DEFAULT '1 hour',
    confirmations integer DEFAULT NULL)
    RETURNS TABLE (job_id bigint, request_id bigint, address text, amount_due compay.credit,
                   expires_at timestamptz)
    LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT * FROM compay.submit_job_funded_by_deposit(task_id, requester, task_type,
                                                      max_amount::compay.credit, timeout, expires_in,
                                                      confirmations)
$$;
REVOKE ALL ON FUNCTION compay.request_deposit(text, numeric, interval, integer, text),
    compay.submit_job_funded_by_deposit(text, text, text, numeric, interval, interval, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.request_deposit(text, numeric, interval, integer, text)
    TO compay_app, compay_node;
GRANT EXECUTE ON FUNCTION
    compay.submit_job_funded_by_deposit(text, text, text, numeric, interval, interval, integer)
    TO compay_app;

-- compay.diagnose() check 9: subaddresses near the restore lookahead
-- (text: src/wallet_tools.sql).
CREATE OR REPLACE FUNCTION compay.diagnose()
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
-- Issue 17 (ingest17): compay.record_usage() in C, one statement a sample
-- (src/metering.c); the bulk path compay.record_usage_batch() and its
-- helpers (src/metering.sql).
-- In C (src/metering.c): one prepared statement; the checks of
-- lock_job() and check_usage() above, in the same order, same errors.
CREATE OR REPLACE FUNCTION compay.record_usage(task_id text, node_id text, sample_id text,
    sampled_at timestamptz, metrics compay.resource_metrics) RETURNS boolean
    AS 'MODULE_PATHNAME', 'compay_record_usage'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.record_usage(text, text, text, timestamptz, compay.resource_metrics) IS
    'records one usage sample (the usage since the node''s previous one); the same sample_id again changes nothing and returns false';

-- Two objects of custom metrics summed per name.
CREATE FUNCTION compay.add_custom_metrics(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(c.key, c.q), '{}')
    FROM (SELECT e.key, pg_catalog.sum(e.value::numeric) AS q
          FROM (SELECT * FROM pg_catalog.jsonb_each(a)
                UNION ALL
                SELECT * FROM pg_catalog.jsonb_each(b)) e
          GROUP BY e.key) c
$$;
COMMENT ON FUNCTION compay.add_custom_metrics(jsonb, jsonb) IS
    'the sum per name of two objects of custom metrics (usage totals)';
REVOKE ALL ON FUNCTION compay.add_custom_metrics(jsonb, jsonb) FROM PUBLIC;

-- 22004/22023/54000 for the first bad sample of a batch, in batch order.
CREATE FUNCTION compay.check_usage_batch(task_ids text[], sample_ids text[],
    sampled_at timestamptz[], metrics compay.resource_metrics[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    n integer := cardinality(task_ids);
    null_at integer := array_position(metrics, NULL);
    bad record;
BEGIN
    IF cardinality(sample_ids) <> n OR cardinality(sampled_at) <> n OR cardinality(metrics) <> n THEN
        RAISE EXCEPTION 'task_ids, sample_ids, sampled_at and metrics must have as many elements'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('They have %s, %s, %s and %s.', n, cardinality(sample_ids),
                                  cardinality(sampled_at), cardinality(metrics));
    END IF;
    IF n > 10000 THEN
        RAISE EXCEPTION 'a batch has at most 10000 samples, not %', n
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Send the samples in several batches.';
    END IF;
    SELECT u.i, u.t IS NULL OR u.s IS NULL OR u.at IS NULL OR u.i = null_at
               AS null_value,
           length(u.t) NOT BETWEEN 1 AND 200 AS bad_task,
           length(u.s) NOT BETWEEN 1 AND 200 AS bad_sample
    INTO bad
    FROM unnest(task_ids, sample_ids, sampled_at) WITH ORDINALITY AS u(t, s, at, i)
    WHERE u.t IS NULL OR u.s IS NULL OR u.at IS NULL OR u.i = null_at
       OR length(u.t) NOT BETWEEN 1 AND 200 OR length(u.s) NOT BETWEEN 1 AND 200
       OR NOT isfinite(u.at)
    ORDER BY u.i LIMIT 1;
    IF bad.null_value THEN
        RAISE EXCEPTION 'sample % of the batch has a NULL task id, sample id, time or metrics', bad.i
            USING ERRCODE = 'null_value_not_allowed';
    ELSIF bad.bad_task THEN
        RAISE EXCEPTION 'a task id has 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Sample %s of the batch.', bad.i);
    ELSIF bad.bad_sample THEN
        RAISE EXCEPTION 'a sample id has 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Sample %s of the batch.', bad.i);
    ELSIF bad.i IS NOT NULL THEN
        RAISE EXCEPTION 'sampled_at must be a finite time'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Sample %s of the batch.', bad.i);
    END IF;
    PERFORM count(compay.check_metrics(m)) FROM unnest(metrics) AS m;
    SELECT u.t, u.s INTO bad
    FROM unnest(task_ids, sample_ids) AS u(t, s)
    GROUP BY u.t, u.s HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'sample "%" of task "%" is twice in the batch', left(bad.s, 64), left(bad.t, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A sample id names one sample of a task.';
    END IF;
END $$;
REVOKE ALL ON FUNCTION compay.check_usage_batch(text[], text[], timestamptz[],
    compay.resource_metrics[]) FROM PUBLIC;

-- The bulk path of compay.record_usage(): the samples of one node, for
-- one or more of its tasks, in one call.  The same checks, all made
-- before anything is written; the job rows locked FOR UPDATE in id order
-- (so concurrent batches wait for each other, never deadlock); one INSERT
-- ... ON CONFLICT DO NOTHING of every sample (a sample id recorded before
-- is a retry, skipped) and one upsert of the totals of the tasks that got
-- new samples, whose sums are then checked as record_usage checks them.
-- Each total only grows, so checking the sum of the whole batch is
-- checking every sample of it in turn.  Returns how many were new.
CREATE FUNCTION compay.record_usage_batch(task_ids text[], node_id text, sample_ids text[],
    sampled_at timestamptz[], metrics compay.resource_metrics[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j record;
    tasks text[];
    locked integer := 0;
    recorded integer;
    changed bigint[];
    missing text;
BEGIN
    IF task_ids IS NULL OR node_id IS NULL OR sample_ids IS NULL OR sampled_at IS NULL
       OR metrics IS NULL THEN
        RAISE EXCEPTION 'task_ids, node_id, sample_ids, sampled_at and metrics must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.check_usage_batch(task_ids, sample_ids, sampled_at, metrics);
    PERFORM compay.require_node(node_id);       -- and below: the tasks' provider
    -- Each task once: a node's batch names few tasks, many times each.
    tasks := ARRAY(SELECT DISTINCT t FROM unnest(task_ids) AS t);
    FOR j IN SELECT jobs.task_id, jobs.status, jobs.provider FROM compay.jobs
             WHERE jobs.task_id = ANY (tasks) ORDER BY jobs.id FOR UPDATE LOOP
        locked := locked + 1;
        IF j.status = 'paid' THEN
            RAISE EXCEPTION 'task "%" is already paid', left(j.task_id, 64)
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Usage of a paid task can no longer change what it cost.';
        END IF;
        IF j.status IN ('failed', 'timed_out') THEN
            RAISE EXCEPTION 'task "%" is closed: it is %', left(j.task_id, 64), j.status
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        IF j.provider IS DISTINCT FROM node_id THEN
            RAISE EXCEPTION 'node "%" does not run task "%"', left(node_id, 64), left(j.task_id, 64)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Only the task''s provider reports its usage.';
        END IF;
    END LOOP;
    IF locked < cardinality(tasks) THEN
        SELECT u.t INTO missing FROM unnest(task_ids) WITH ORDINALITY AS u(t, i)
        WHERE NOT EXISTS (SELECT 1 FROM compay.jobs WHERE jobs.task_id = u.t)
        ORDER BY u.i LIMIT 1;
        RAISE EXCEPTION 'task "%" does not exist', left(missing, 64) USING ERRCODE = 'PY010',
            HINT = 'Submit it first with compay.submit_job() or compay.submit_task().';
    END IF;

    WITH ins AS (
        INSERT INTO compay.usage_samples (job_id, sample_id, node_id, sampled_at, cpu_seconds,
            memory_byte_hours, storage_byte_hours, network_bytes_in, network_bytes_out,
            gpu_seconds, custom)
        SELECT jobs.id, u.s, record_usage_batch.node_id, u.at, coalesce(u.cpu, 0),
            coalesce(u.mem, 0), coalesce(u.sto, 0), coalesce(u.nin, 0), coalesce(u.nout, 0),
            coalesce(u.gpu, 0), nullif(u.custom, '{}')
        FROM unnest(task_ids, sample_ids, sampled_at, metrics)
                 AS u(t, s, at, cpu, mem, sto, nin, nout, gpu, custom)
        JOIN compay.jobs ON jobs.task_id = u.t
        ON CONFLICT (job_id, sample_id) DO NOTHING
        RETURNING usage_samples.*),
    cust AS (
        SELECT c.job_id, jsonb_object_agg(c.key, c.q) AS custom
        FROM (SELECT ins.job_id, e.key, sum(e.value::numeric) AS q
              FROM ins, jsonb_each(ins.custom) e GROUP BY ins.job_id, e.key) c
        GROUP BY c.job_id),
    totals AS (
        INSERT INTO compay.usage_totals AS t
        SELECT ins.job_id, sum(ins.cpu_seconds), sum(ins.memory_byte_hours),
            sum(ins.storage_byte_hours), sum(ins.network_bytes_in::numeric),
            sum(ins.network_bytes_out::numeric), sum(ins.gpu_seconds),
            coalesce(cust.custom, '{}')
        FROM ins LEFT JOIN cust ON cust.job_id = ins.job_id
        GROUP BY ins.job_id, cust.custom
        ON CONFLICT (job_id) DO UPDATE
        SET cpu_seconds = t.cpu_seconds + EXCLUDED.cpu_seconds,
            memory_byte_hours = t.memory_byte_hours + EXCLUDED.memory_byte_hours,
            storage_byte_hours = t.storage_byte_hours + EXCLUDED.storage_byte_hours,
            network_bytes_in = t.network_bytes_in + EXCLUDED.network_bytes_in,
            network_bytes_out = t.network_bytes_out + EXCLUDED.network_bytes_out,
            gpu_seconds = t.gpu_seconds + EXCLUDED.gpu_seconds,
            custom = CASE WHEN EXCLUDED.custom = '{}' THEN t.custom
                          ELSE compay.add_custom_metrics(t.custom, EXCLUDED.custom) END)
    SELECT count(*), array_agg(DISTINCT ins.job_id) INTO recorded, changed FROM ins;

    SELECT jobs.task_id, t.network_bytes_in, t.network_bytes_out INTO j
    FROM compay.usage_totals t JOIN compay.jobs ON jobs.id = t.job_id
    WHERE t.job_id = ANY (changed)
      AND greatest(t.network_bytes_in, t.network_bytes_out) > 9223372036854775807
    ORDER BY t.job_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'usage of task "%" would exceed 2^63 - 1 network bytes', left(j.task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('With this batch the task would total %s bytes in and %s out.',
                                  j.network_bytes_in, j.network_bytes_out);
    END IF;
    -- A job type's reward (compute_reward()) does not price the usage.
    PERFORM count(compay.check_price(
                ROW(t.cpu_seconds, t.memory_byte_hours, t.storage_byte_hours, t.network_bytes_in,
                    t.network_bytes_out, t.gpu_seconds, t.custom)::compay.resource_metrics,
                jobs.task_type))
    FROM compay.usage_totals t JOIN compay.jobs ON jobs.id = t.job_id
    WHERE t.job_id = ANY (changed)
      AND NOT EXISTS (SELECT 1 FROM compay.job_types WHERE job_type = jobs.task_type);
    RETURN recorded;
END $$;
COMMENT ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) IS
    'records the usage samples of one node (element i of each array: one sample), all or none; a sample id recorded before is skipped; returns how many were new';
REVOKE ALL ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) TO compay_app, compay_node;

-- Issue 17 (hot17): system accounts striped over rows, so that no flow
-- through $external, $rewards or $fees waits for another's; a 0.1 ledger's
-- system account rows are stripe 0 and keep their balances and chains.
-- System accounts are striped (src/ledger_stripes.c): '$name' and
-- '$name#1' to '$name#63' are rows of one account, each with its own lock,
-- balance and hash chain; a flow takes a row no other transaction holds,
-- so that no flow through $external, $rewards or $fees waits for another's.
-- The account's balance is the exact sum of its rows.
CREATE FUNCTION compay.system_account_rows(node_id text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT CASE WHEN left($1, 1) = '$'
                THEN ARRAY[$1] || ARRAY(SELECT $1 || '#' || g FROM generate_series(1, 63) g)
                ELSE ARRAY[$1] END
$$;
COMMENT ON FUNCTION compay.system_account_rows(text) IS
    'the node ids of the rows that make up an account: a system account''s 64 possible stripes, or the node id itself';

CREATE VIEW compay.system_balances AS
    SELECT split_part(a.node_id, '#', 1) AS node_id, a.currency,
           compay.sum(a.balance) AS balance, count(*) AS stripes,
           sum(a.journal_seq) AS entries
    FROM compay.accounts a
    WHERE left(a.node_id, 1) = '$'
    GROUP BY 1, 2;
COMMENT ON VIEW compay.system_balances IS
    'each system account''s balance: the exact sum of its stripe rows';
GRANT SELECT ON compay.system_balances TO compay_reader;

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
              FROM compay.payments y
              JOIN compay.transfers t ON t.refund_of = y.transfer_id AND t.kind = 'refund'
              JOIN compay.accounts a ON a.id = t.from_account
              WHERE y.settlement_id = s.id AND a.node_id = s.payee
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
          LEFT JOIN compay.payments p ON p.settlement_id = s.id AND p.status = 'disputed'
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
$$;
CREATE OR REPLACE FUNCTION compay.balance(node_id text, currency text DEFAULT 'CREDIT',
    OUT balance compay.credit, OUT reserved compay.credit, OUT available compay.credit,
    OUT credit_limit compay.credit, OUT credit_score numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
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
    -- A system account's balance is the sum of its stripe rows.
    FROM (SELECT compay.sum(r.balance) AS balance, compay.sum(r.reserved) AS reserved,
                 (array_agg(r.credit_limit))[1] AS credit_limit,
                 (array_agg(r.credit_score))[1] AS credit_score, bit_or(r.flags) AS flags
          FROM compay.accounts r
          WHERE r.node_id = ANY (compay.system_account_rows($1)) AND r.currency = $2
          HAVING count(*) > 0) a
$$;
CREATE OR REPLACE FUNCTION compay.lock_job_accounts(j compay.jobs) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT 1 FROM compay.accounts a
    WHERE a.currency = j.currency
      AND (a.node_id IN (j.requester, j.provider)
           OR a.node_id IN (SELECT v.verifier FROM compay.verifications v WHERE v.job_id = j.id))
    ORDER BY a.id FOR UPDATE
$$;
CREATE OR REPLACE FUNCTION compay.lock_shortfalls(node_id text, currency text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_providers text[];
BEGIN
    SELECT array_agg(provider) INTO v_providers
    FROM (SELECT s.provider FROM compay.shortfalls s
          WHERE s.requester = lock_shortfalls.node_id AND s.currency = lock_shortfalls.currency
            AND s.collected_at IS NULL
          ORDER BY s.id LIMIT 100 FOR UPDATE) o;
    IF v_providers IS NULL THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM compay.accounts a
    WHERE a.currency = lock_shortfalls.currency
      AND (a.node_id = lock_shortfalls.node_id OR a.node_id = ANY (v_providers))
    ORDER BY a.id FOR UPDATE;
    RETURN true;
END $$;
CREATE OR REPLACE FUNCTION compay.history(node_id text, currency text DEFAULT 'CREDIT',
    max_rows integer DEFAULT 100, before_seq bigint DEFAULT NULL)
RETURNS TABLE (seq bigint, created_at timestamptz, kind compay.entry_kind,
    amount compay.credit, balance_after compay.credit, reserved_after compay.credit,
    transfer_id bigint, hold_id bigint, counterparty text, transfer_kind compay.transfer_kind,
    reference text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    -- A system account's stripe row ('$rewards#3') is named as the account.
    SELECT j.seq, j.created_at, j.kind, j.amount, j.balance_after, j.reserved_after,
           j.transfer_id, j.hold_id,
           CASE WHEN left(c.node_id, 1) = '$' THEN split_part(c.node_id, '#', 1) ELSE c.node_id END,
           t.kind, coalesce(t.reference, h.reference)
    FROM compay.accounts a
    JOIN compay.journal j ON j.account_id = a.id
    LEFT JOIN compay.accounts c ON c.id = j.counterparty
    LEFT JOIN compay.transfers t ON t.id = j.transfer_id
    LEFT JOIN compay.holds h ON h.id = j.hold_id
    WHERE a.node_id = $1 AND a.currency = $2 AND ($4 IS NULL OR j.seq < $4)
    ORDER BY j.seq DESC
    LIMIT greatest(least($3, 10000), 0)
$$;

-- Issue 17 (meter17): compay.record_usage_batch() in C, through the table
-- access method as compay.record_usage() (src/metering_batch.c,
-- src/metering_heap.c); its checks moved into C with it.
CREATE OR REPLACE FUNCTION compay.record_usage_batch(task_ids text[], node_id text, sample_ids text[],
    sampled_at timestamptz[], metrics compay.resource_metrics[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'compay_record_usage_batch'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
DROP FUNCTION compay.check_usage_batch(text[], text[], timestamptz[], compay.resource_metrics[]);

-- Issue 18 (shards18): shards behind a PL/Proxy router; cross-shard
-- payments through $clearing:N accounts and PgQ (src/shard.sql, docs/scaling.md);
-- verify_ledger check 21, clearing_accounts_match_events.
--------------------------------------------------------------------------
-- Shards (docs/scaling.md).  A database configured by
-- compay.shard_configure() is one shard of several behind a router
-- (extension compay_router, PL/Proxy): it holds the accounts of the nodes
-- that hash to it.  A payment to a node on another shard N credits the
-- system account '$clearing:N' here and queues a PgQ event in the same
-- transaction (shard.c, compay.clearing_queue); compay.clearing_consume()
-- on shard N applies it there from its '$clearing:<this shard>', exactly
-- once by (source shard, event id).  PgQ (extension pgq) and dblink are
-- needed only by a shard: a database never configured is no shard, and
-- every call behaves as on a single server.
--------------------------------------------------------------------------

CREATE TABLE compay.shard_config (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    shard         integer NOT NULL,
    shards        integer NOT NULL,
    partitions    integer NOT NULL,
    connstrs      text[] NOT NULL,
    configured_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT shard_config_range CHECK (shard >= 0 AND shard < shards
        AND partitions >= shards AND (partitions & (partitions - 1)) = 0
        AND pg_catalog.array_length(connstrs, 1) = shards)
);
COMMENT ON TABLE compay.shard_config IS
    'this database''s place among the shards: one row once compay.shard_configure() ran';

CREATE TABLE compay.clearing_sent (
    transfer_id bigint PRIMARY KEY,
    to_shard    integer NOT NULL,
    payee       text NOT NULL,
    amount      compay.credit NOT NULL,
    currency    text NOT NULL,
    event_id    bigint NOT NULL,
    txid        bigint NOT NULL DEFAULT pg_catalog.txid_current(),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX clearing_sent_to_shard ON compay.clearing_sent (to_shard, event_id);
COMMENT ON TABLE compay.clearing_sent IS
    'payments to nodes on other shards: the transfer into $clearing:<to_shard> and its PgQ event';

CREATE TABLE compay.clearing_applied (
    from_shard  integer NOT NULL,
    event_id    bigint NOT NULL,
    source_transfer_id bigint NOT NULL,
    transfer_id bigint,
    payee       text NOT NULL,
    amount      compay.credit NOT NULL,
    currency    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (from_shard, event_id)
);
COMMENT ON TABLE compay.clearing_applied IS
    'credits applied here from other shards'' clearing events, one row per (source shard, event id)';

SELECT pg_catalog.pg_extension_config_dump('compay.shard_config', '');
SELECT pg_catalog.pg_extension_config_dump('compay.clearing_sent', '');
SELECT pg_catalog.pg_extension_config_dump('compay.clearing_applied', '');
REVOKE ALL ON compay.shard_config, compay.clearing_sent, compay.clearing_applied FROM PUBLIC;
GRANT SELECT ON compay.shard_config, compay.clearing_sent, compay.clearing_applied
    TO compay_reader;

CREATE FUNCTION compay.shard_config_changed() RETURNS void
    AS 'MODULE_PATHNAME', 'compay_shard_config_changed' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.shard_config_changed() IS
    'makes every backend read compay.shard_config again; compay.shard_configure() calls it';
REVOKE ALL ON FUNCTION compay.shard_config_changed() FROM PUBLIC;

-- The one row of compay.shard_config, or PY036.
CREATE FUNCTION compay.shard_require() RETURNS compay.shard_config
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config;
BEGIN
    SELECT * INTO c FROM compay.shard_config;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this database is not a compay shard' USING ERRCODE = 'PY036',
              DETAIL = 'compay.shard_config has no row.',
              HINT = 'Run compay.shard_configure(shard, connstrs, partitions) on every shard first.';
    END IF;
    RETURN c;
END $$;
REVOKE ALL ON FUNCTION compay.shard_require() FROM PUBLIC;

CREATE FUNCTION compay.shard_of(node_id text) RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
BEGIN
    IF node_id IS NULL THEN
        RAISE EXCEPTION 'node_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN (pg_catalog.hashtext(node_id) & (c.partitions - 1)) % c.shards;
END $$;
COMMENT ON FUNCTION compay.shard_of(text) IS
    'the shard that owns node_id: (hashtext(node_id) & (partitions - 1)) % shards, the partition PL/Proxy''s RUN ON hashtext(node_id) picks';

CREATE FUNCTION compay.shard_configure(shard integer, connstrs text[], partitions integer DEFAULT 8)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_shards integer := pg_catalog.array_length(connstrs, 1);
    v_old compay.shard_config;
    v_stray text;
    v_start bigint;
BEGIN
    PERFORM compay.require_node(NULL);
    IF shard IS NULL OR connstrs IS NULL OR partitions IS NULL THEN
        RAISE EXCEPTION 'shard, connstrs and partitions must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_shards IS NULL OR pg_catalog.array_position(connstrs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'connstrs must list one connection string per shard'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An empty array or a NULL element names no shard.';
    END IF;
    IF shard < 0 OR shard >= v_shards THEN
        RAISE EXCEPTION 'shard % is not one of the % shards connstrs lists', shard, v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Shards are numbered from 0, in the order of connstrs.';
    END IF;
    IF partitions < v_shards OR partitions > 65536 OR (partitions & (partitions - 1)) <> 0 THEN
        RAISE EXCEPTION 'partitions must be a power of two from the number of shards (%) up to 65536', v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('%s partitions were asked for.', partitions),
                  HINT = 'PL/Proxy maps hashtext(node_id) & (partitions - 1) to a partition.';
    END IF;
    -- The lock first: on a standby this is the read-only error.
    SELECT * INTO v_old FROM compay.shard_config FOR UPDATE;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgq')
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        RAISE EXCEPTION 'a compay shard needs the extensions pgq and dblink' USING ERRCODE = 'PY036',
              DETAIL = 'Cross-shard payments are PgQ events, which the payee''s shard reads with dblink.',
              HINT = 'CREATE EXTENSION pgq; CREATE EXTENSION dblink; (Debian: postgresql-15-pgq3), and run pgqd.';
    END IF;
    IF v_old.shard IS NOT NULL AND (v_old.shard, v_old.shards, v_old.partitions) IS DISTINCT FROM
                 (shard, v_shards, partitions) THEN
        RAISE EXCEPTION 'this database is already shard % of % with % partitions',
                        v_old.shard, v_old.shards, v_old.partitions
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Moving partitions between shards is not supported yet.',
                  HINT = 'Call it again with the same shard, shard count and partitions to change connection strings only.';
    END IF;
    -- Every account here must be one this shard owns.
    SELECT a.node_id INTO v_stray FROM compay.accounts a
    WHERE a.node_id NOT LIKE '$%'
      AND (pg_catalog.hashtext(a.node_id) & (partitions - 1)) % v_shards <> shard
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'node "%" has an account here but would live on shard %', v_stray,
                        (pg_catalog.hashtext(v_stray) & (partitions - 1)) % v_shards
            USING ERRCODE = 'PY037',
                  DETAIL = 'A shard holds only the accounts of the nodes that hash to it.',
                  HINT = 'Configure an empty database, or one whose nodes all hash to this shard.';
    END IF;
    INSERT INTO compay.shard_config (shard, shards, partitions, connstrs)
    VALUES (shard, v_shards, partitions, connstrs)
    ON CONFLICT (singleton) DO UPDATE SET connstrs = EXCLUDED.connstrs, configured_at = pg_catalog.now();
    -- Hold and transfer ids name their shard: id & (partitions - 1) = shard,
    -- so the router runs capture(hold_id) and refund(transfer_id) there.
    IF v_old.shard IS NULL THEN
        v_start := (SELECT pg_catalog.max(id) FROM compay.holds);
        v_start := (coalesce(v_start, 0) / partitions + 1) * partitions + shard;
        EXECUTE pg_catalog.format('ALTER SEQUENCE compay.holds_id_seq INCREMENT BY %s RESTART WITH %s',
                                  partitions, v_start);
        v_start := (SELECT pg_catalog.max(id) FROM compay.transfers);
        v_start := (coalesce(v_start, 0) / partitions + 1) * partitions + shard;
        EXECUTE pg_catalog.format('ALTER SEQUENCE compay.transfers_id_seq INCREMENT BY %s RESTART WITH %s',
                                  partitions, v_start);
    END IF;
    -- One outgoing queue per peer, read by the peer's consumer.
    FOR i IN 0 .. v_shards - 1 LOOP
        CONTINUE WHEN i = shard;
        IF NOT EXISTS (SELECT FROM pgq.get_queue_info() q
                       WHERE q.queue_name = 'compay_clearing_to_' || i) THEN
            PERFORM pgq.create_queue('compay_clearing_to_' || i);
        END IF;
        PERFORM pgq.register_consumer('compay_clearing_to_' || i, 'compay_clearing');
    END LOOP;
    PERFORM compay.shard_config_changed();
END $$;
COMMENT ON FUNCTION compay.shard_configure(integer, text[], integer) IS
    'makes this database shard number shard (from 0) of the shards connstrs lists, with partitions (a power of two) mapped to shards as partition % shards; creates the PgQ queues of outgoing clearing events and registers their consumer';

-- The payer's half of a cross-shard payment: called by the ledger's C
-- (shard.c) in the payment's transaction.
CREATE FUNCTION compay.clearing_queue(to_shard integer, transfer_id bigint, payee text,
    amount compay.credit, currency text, reference text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_event bigint;
BEGIN
    v_event := pgq.insert_event('compay_clearing_to_' || to_shard, 'credit',
        pg_catalog.jsonb_build_object('transfer_id', transfer_id, 'payee', payee,
            'amount', amount::text, 'currency', currency, 'reference', reference)::text);
    INSERT INTO compay.clearing_sent (transfer_id, to_shard, payee, amount, currency, event_id)
    VALUES (transfer_id, to_shard, payee, amount, currency, v_event);
    RETURN v_event;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_queue(integer, bigint, text, compay.credit, text, text)
    FROM PUBLIC;

CREATE FUNCTION compay.clearing_credit(from_shard integer, payee text, amount compay.credit,
    currency text, reference text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_clearing_credit' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.clearing_credit(integer, text, compay.credit, text, text) IS
    'credits payee from $clearing:<from_shard>: the payee''s half of a cross-shard payment (compay.clearing_apply makes it once per event)';
REVOKE ALL ON FUNCTION compay.clearing_credit(integer, text, compay.credit, text, text) FROM PUBLIC;

-- The payee's half: one event of from_shard, applied once.
CREATE FUNCTION compay.clearing_apply(from_shard integer, event_id bigint, event_type text,
    event_data text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    e jsonb := event_data::jsonb;
    v_transfer bigint;
BEGIN
    IF event_type IS DISTINCT FROM 'credit' THEN
        RAISE EXCEPTION 'clearing event % of shard % has unknown type %', event_id, from_shard, event_type
            USING ERRCODE = 'PY037';
    END IF;
    IF compay.shard_of(e->>'payee') <> c.shard THEN
        RAISE EXCEPTION 'clearing event % of shard % pays node "%", which is not on shard %',
                        event_id, from_shard, e->>'payee', c.shard
            USING ERRCODE = 'PY037',
                  HINT = 'Every shard must be configured with the same connstrs and partitions.';
    END IF;
    INSERT INTO compay.clearing_applied (from_shard, event_id, source_transfer_id, payee,
                                         amount, currency)
    VALUES (from_shard, event_id, (e->>'transfer_id')::bigint, e->>'payee',
            (e->>'amount')::compay.credit, e->>'currency')
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;               -- applied before: a batch seen again
    END IF;
    v_transfer := compay.clearing_credit(from_shard, e->>'payee', (e->>'amount')::compay.credit,
                                         e->>'currency', e->>'reference');
    UPDATE compay.clearing_applied a SET transfer_id = v_transfer
    WHERE a.from_shard = clearing_apply.from_shard AND a.event_id = clearing_apply.event_id;
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_apply(integer, bigint, text, text) FROM PUBLIC;

-- The next batch of peer's queue for this shard, over dblink; a peer that
-- cannot be reached gives no batch (a warning), so one shard down does not
-- stop the others' clearing.
CREATE FUNCTION compay.clearing_fetch(peer integer, OUT batch_id bigint, OUT events jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    v_conn text := 'compay_clearing_' || peer;
    v_schema name := (SELECT n.nspname FROM pg_catalog.pg_extension x
                      JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
                      WHERE x.extname = 'dblink');
BEGIN
    BEGIN
        IF NOT v_conn = ANY (coalesce(compay.clearing_dblink(v_schema, 'dblink_get_connections()'), '{}')) THEN
            EXECUTE pg_catalog.format('SELECT %I.dblink_connect($1, $2)', v_schema)
                USING v_conn, c.connstrs[peer + 1];
        END IF;
        EXECUTE pg_catalog.format('SELECT b FROM %I.dblink($1, $2) AS t(b bigint)', v_schema)
            INTO batch_id
            USING v_conn, pg_catalog.format('SELECT pgq.next_batch(%L, %L)',
                                            'compay_clearing_to_' || c.shard, 'compay_clearing');
        IF batch_id IS NOT NULL THEN
            EXECUTE pg_catalog.format(
                'SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(''id'', ev_id, ''type'', ev_type, ''data'', ev_data) ORDER BY ev_id), ''[]'')
                 FROM %I.dblink($1, $2) AS t(ev_id bigint, ev_type text, ev_data text)', v_schema)
                INTO events
                USING v_conn, pg_catalog.format(
                    'SELECT ev_id, ev_type, ev_data FROM pgq.get_batch_events(%s)', batch_id);
        END IF;
    -- Only remote reads above: any failure (unreachable, restarting,
    -- crashed mid-query) means no batch this round.
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'clearing: no batch from shard %: % (%)', peer, SQLERRM, SQLSTATE;
        BEGIN
            EXECUTE pg_catalog.format('SELECT %I.dblink_disconnect($1)', v_schema) USING v_conn;
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
        batch_id := NULL;
        events := NULL;
    END;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_fetch(integer) FROM PUBLIC;

CREATE FUNCTION compay.clearing_dblink(dblink_schema name, call text) RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v text[];
BEGIN
    EXECUTE pg_catalog.format('SELECT %I.%s', dblink_schema, call) INTO v;
    RETURN v;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_dblink(name, text) FROM PUBLIC;

-- Tells peer the batch is done (after the local commit); an unreachable
-- peer keeps the batch and gives it again: its events are then no-ops.
CREATE FUNCTION compay.clearing_finish(peer integer, batch_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    v_schema name := (SELECT n.nspname FROM pg_catalog.pg_extension x
                      JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
                      WHERE x.extname = 'dblink');
BEGIN
    EXECUTE pg_catalog.format('SELECT 1 FROM %I.dblink($1, $2) AS t(r integer)', v_schema)
        USING 'compay_clearing_' || peer, pg_catalog.format('SELECT pgq.finish_batch(%s)', batch_id);
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'clearing: batch % of shard % not finished: % (%)', batch_id, peer, SQLERRM, SQLSTATE;
    BEGIN
        EXECUTE pg_catalog.format('SELECT %I.dblink_disconnect($1)', v_schema)
            USING 'compay_clearing_' || peer;
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    RETURN false;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_finish(integer, bigint) FROM PUBLIC;

-- One round: for each peer shard, its batches of events for this shard
-- (one per PgQ tick, at most 64 a round), each applied and committed
-- here, then finished there.  A procedure (it commits), so neither
-- SECURITY DEFINER nor SET: what it calls is.
CREATE PROCEDURE compay.clearing_consume(INOUT applied integer DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    f record;
    ev jsonb;
BEGIN
    applied := 0;
    FOR peer IN 0 .. c.shards - 1 LOOP
        CONTINUE WHEN peer = c.shard;
        FOR b IN 1 .. 64 LOOP
            f := compay.clearing_fetch(peer);
            EXIT WHEN f.batch_id IS NULL;
            FOR ev IN SELECT * FROM pg_catalog.jsonb_array_elements(f.events) LOOP
                IF compay.clearing_apply(peer, (ev->>'id')::bigint, ev->>'type', ev->>'data') THEN
                    applied := applied + 1;
                END IF;
            END LOOP;
            COMMIT;
            EXIT WHEN NOT compay.clearing_finish(peer, f.batch_id);
            COMMIT;
        END LOOP;
    END LOOP;
END $$;
COMMENT ON PROCEDURE compay.clearing_consume(integer) IS
    'applies each peer shard''s PgQ batches of clearing events for this shard (at most 64 a peer a round), each committed here, then finished at the peer; a batch given again after a crash is a no-op by (shard, event id); returns the events applied';

CREATE PROCEDURE compay.clearing_consume_loop(pause interval DEFAULT '100 milliseconds',
    rounds integer DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    i integer := 0;
BEGIN
    IF pause IS NULL OR pause < '0' OR rounds < 0 THEN
        RAISE EXCEPTION 'pause must be a non-negative interval and rounds non-negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM compay.shard_require();
    WHILE rounds IS NULL OR i < rounds LOOP
        n := NULL;
        CALL compay.clearing_consume(n);
        COMMIT;
        i := i + 1;
        IF n = 0 THEN
            PERFORM pg_catalog.pg_sleep(extract(epoch FROM pause));
        END IF;
    END LOOP;
END $$;
COMMENT ON PROCEDURE compay.clearing_consume_loop(interval, integer) IS
    'runs compay.clearing_consume() for ever (or rounds times), pausing when a round applied nothing; run it in a session of its own on every shard';

-- What this shard sent to and received from each peer, and what it sent
-- that the peer's consumer has not yet finished (by the txid snapshot of
-- the consumer's last finished PgQ tick).  The router's
-- compay.cluster_check() compares both sides.
CREATE FUNCTION compay.clearing_totals()
RETURNS TABLE (shard integer, peer integer, currency text, sent_events bigint,
               sent compay.credit, received_events bigint, received compay.credit,
               in_flight_events bigint, in_flight compay.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
BEGIN
    RETURN QUERY
    WITH snap AS (
        SELECT pg_catalog.substr(q.queue_name, 20)::integer AS to_shard, t.tick_snapshot
        FROM pgq.queue q
        JOIN pgq.subscription s ON s.sub_queue = q.queue_id
        JOIN pgq.consumer co ON co.co_id = s.sub_consumer AND co.co_name = 'compay_clearing'
        JOIN pgq.tick t ON t.tick_queue = q.queue_id AND t.tick_id = s.sub_last_tick
        WHERE q.queue_name LIKE 'compay\_clearing\_to\_%'),
    sent AS (
        SELECT s.to_shard AS peer, s.currency, pg_catalog.count(*) AS n,
               sum(s.amount) AS amount,
               pg_catalog.count(*) FILTER (WHERE NOT coalesce(pg_catalog.txid_visible_in_snapshot(
                   s.txid, snap.tick_snapshot), false)) AS f_n,
               sum(s.amount) FILTER (WHERE NOT coalesce(pg_catalog.txid_visible_in_snapshot(
                   s.txid, snap.tick_snapshot), false)) AS f_amount
        FROM compay.clearing_sent s LEFT JOIN snap ON snap.to_shard = s.to_shard
        GROUP BY s.to_shard, s.currency),
    recv AS (
        SELECT a.from_shard AS peer, a.currency, pg_catalog.count(*) AS n,
               sum(a.amount) AS amount
        FROM compay.clearing_applied a GROUP BY a.from_shard, a.currency)
    SELECT c.shard, p.peer, p.currency,
           coalesce(sent.n, 0), coalesce(sent.amount, '0'),
           coalesce(recv.n, 0), coalesce(recv.amount, '0'),
           coalesce(sent.f_n, 0), coalesce(sent.f_amount, '0')
    FROM (SELECT sent.peer, sent.currency FROM sent UNION SELECT recv.peer, recv.currency FROM recv) p
    LEFT JOIN sent ON sent.peer = p.peer AND sent.currency = p.currency
    LEFT JOIN recv ON recv.peer = p.peer AND recv.currency = p.currency
    ORDER BY 2, 3;
END $$;
COMMENT ON FUNCTION compay.clearing_totals() IS
    'per peer shard and currency: what this shard sent (count, amount), received, and sent that the peer''s consumer has not finished yet';

GRANT EXECUTE ON FUNCTION compay.shard_of(text), compay.clearing_totals() TO compay_reader;
REVOKE ALL ON FUNCTION compay.shard_configure(integer, text[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.shard_configure(integer, text[], integer) TO compay_admin;
REVOKE ALL ON PROCEDURE compay.clearing_consume(integer) FROM PUBLIC;
REVOKE ALL ON PROCEDURE compay.clearing_consume_loop(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE compay.clearing_consume(integer),
    compay.clearing_consume_loop(interval, integer) TO compay_admin;
-- The procedures run as their caller (a procedure that commits can be
-- neither SECURITY DEFINER nor SET): its steps are granted with them.
GRANT EXECUTE ON FUNCTION compay.clearing_fetch(integer),
    compay.clearing_apply(integer, bigint, text, text),
    compay.clearing_finish(integer, bigint) TO compay_admin;

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
              FROM compay.payments y
              JOIN compay.transfers t ON t.refund_of = y.transfer_id AND t.kind = 'refund'
              JOIN compay.accounts a ON a.id = t.from_account
              WHERE y.settlement_id = s.id AND a.node_id = s.payee
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
          LEFT JOIN compay.payments p ON p.settlement_id = s.id AND p.status = 'disputed'
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

--------------------------------------------------------------------------
-- Issue 17 (wal17): a narrower account update per transfer.  The chain
-- head (the newest entry's seq and hash) is read from the journal, not
-- kept in the account row; verify_ledger() (above) proves the chains.
--------------------------------------------------------------------------
CREATE OR REPLACE VIEW compay.system_balances AS
    SELECT split_part(a.node_id, '#', 1) AS node_id, a.currency,
           compay.sum(a.balance) AS balance, count(*) AS stripes,
           sum((SELECT count(*) FROM compay.journal j WHERE j.account_id = a.id)) AS entries
    FROM compay.accounts a
    WHERE left(a.node_id, 1) = '$'
    GROUP BY 1, 2;
ALTER TABLE compay.accounts DROP COLUMN journal_seq, DROP COLUMN journal_hash;
-- More room for HOT updates of batches (pages written from now on).
ALTER TABLE compay.accounts SET (fillfactor = 30);

-- Issue 18 (xmr18): an XMR payment to a node on another shard moves there
-- with its clearing credit (the event carries it, compay.clearing_apply
-- records it under its id), is settled and paid out there; the payer's
-- shard deletes its row once it completed.  Payment ids name their shard.
ALTER TABLE compay.clearing_sent ADD COLUMN payment_id bigint;
CREATE INDEX clearing_sent_payment ON compay.clearing_sent (payment_id) WHERE payment_id IS NOT NULL;

CREATE OR REPLACE FUNCTION compay.shard_configure(shard integer, connstrs text[], partitions integer DEFAULT 8)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_shards integer := pg_catalog.array_length(connstrs, 1);
    v_old compay.shard_config;
    v_stray text;
    v_start bigint;
BEGIN
    PERFORM compay.require_node(NULL);
    IF shard IS NULL OR connstrs IS NULL OR partitions IS NULL THEN
        RAISE EXCEPTION 'shard, connstrs and partitions must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_shards IS NULL OR pg_catalog.array_position(connstrs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'connstrs must list one connection string per shard'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An empty array or a NULL element names no shard.';
    END IF;
    IF shard < 0 OR shard >= v_shards THEN
        RAISE EXCEPTION 'shard % is not one of the % shards connstrs lists', shard, v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Shards are numbered from 0, in the order of connstrs.';
    END IF;
    IF partitions < v_shards OR partitions > 65536 OR (partitions & (partitions - 1)) <> 0 THEN
        RAISE EXCEPTION 'partitions must be a power of two from the number of shards (%) up to 65536', v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('%s partitions were asked for.', partitions),
                  HINT = 'PL/Proxy maps hashtext(node_id) & (partitions - 1) to a partition.';
    END IF;
    -- The lock first: on a standby this is the read-only error.
    SELECT * INTO v_old FROM compay.shard_config FOR UPDATE;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgq')
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        RAISE EXCEPTION 'a compay shard needs the extensions pgq and dblink' USING ERRCODE = 'PY036',
              DETAIL = 'Cross-shard payments are PgQ events, which the payee''s shard reads with dblink.',
              HINT = 'CREATE EXTENSION pgq; CREATE EXTENSION dblink; (Debian: postgresql-15-pgq3), and run pgqd.';
    END IF;
    IF v_old.shard IS NOT NULL AND (v_old.shard, v_old.shards, v_old.partitions) IS DISTINCT FROM
                 (shard, v_shards, partitions) THEN
        RAISE EXCEPTION 'this database is already shard % of % with % partitions',
                        v_old.shard, v_old.shards, v_old.partitions
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Moving partitions between shards is not supported yet.',
                  HINT = 'Call it again with the same shard, shard count and partitions to change connection strings only.';
    END IF;
    -- Every account here must be one this shard owns.
    SELECT a.node_id INTO v_stray FROM compay.accounts a
    WHERE a.node_id NOT LIKE '$%'
      AND (pg_catalog.hashtext(a.node_id) & (partitions - 1)) % v_shards <> shard
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'node "%" has an account here but would live on shard %', v_stray,
                        (pg_catalog.hashtext(v_stray) & (partitions - 1)) % v_shards
            USING ERRCODE = 'PY037',
                  DETAIL = 'A shard holds only the accounts of the nodes that hash to it.',
                  HINT = 'Configure an empty database, or one whose nodes all hash to this shard.';
    END IF;
    INSERT INTO compay.shard_config (shard, shards, partitions, connstrs)
    VALUES (shard, v_shards, partitions, connstrs)
    ON CONFLICT (singleton) DO UPDATE SET connstrs = EXCLUDED.connstrs, configured_at = pg_catalog.now();
    -- Hold and transfer ids name their shard: id & (partitions - 1) = shard,
    -- so the router runs capture(hold_id) and refund(transfer_id) there.
    -- Payment ids too: an XMR payment moved to the payee's shard keeps its
    -- id there (compay.clearing_apply), which no other shard hands out.
    IF v_old.shard IS NULL THEN
        v_start := (SELECT pg_catalog.max(id) FROM compay.payments);
        v_start := (coalesce(v_start, 0) / partitions + 1) * partitions + shard;
        EXECUTE pg_catalog.format('ALTER SEQUENCE compay.payments_id_seq INCREMENT BY %s RESTART WITH %s',
                                  partitions, v_start);
        v_start := (SELECT pg_catalog.max(id) FROM compay.holds);
        v_start := (coalesce(v_start, 0) / partitions + 1) * partitions + shard;
        EXECUTE pg_catalog.format('ALTER SEQUENCE compay.holds_id_seq INCREMENT BY %s RESTART WITH %s',
                                  partitions, v_start);
        v_start := (SELECT pg_catalog.max(id) FROM compay.transfers);
        v_start := (coalesce(v_start, 0) / partitions + 1) * partitions + shard;
        EXECUTE pg_catalog.format('ALTER SEQUENCE compay.transfers_id_seq INCREMENT BY %s RESTART WITH %s',
                                  partitions, v_start);
    END IF;
    -- One outgoing queue per peer, read by the peer's consumer.
    FOR i IN 0 .. v_shards - 1 LOOP
        CONTINUE WHEN i = shard;
        IF NOT EXISTS (SELECT FROM pgq.get_queue_info() q
                       WHERE q.queue_name = 'compay_clearing_to_' || i) THEN
            PERFORM pgq.create_queue('compay_clearing_to_' || i);
        END IF;
        PERFORM pgq.register_consumer('compay_clearing_to_' || i, 'compay_clearing');
    END LOOP;
    PERFORM compay.shard_config_changed();
END $$;

CREATE OR REPLACE FUNCTION compay.clearing_queue(to_shard integer, transfer_id bigint, payee text,
    amount compay.credit, currency text, reference text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_event bigint;
    v_data jsonb := pg_catalog.jsonb_build_object('transfer_id', transfer_id, 'payee', payee,
            'amount', amount::text, 'currency', currency, 'reference', reference);
    p compay.payments;
BEGIN
    -- The XMR payment this credit pays (a task payment 'payment:<id>', a
    -- verified job's provider 'job:<task id>'), still processing in this
    -- transaction: the event carries it, the payee's shard records it, and
    -- compay.clearing_payment_moved() deletes it here once it completed.
    IF currency = 'XMR' AND reference ~ '^payment:[0-9]+$' THEN
        SELECT * INTO p FROM compay.payments y
        WHERE y.id = pg_catalog.substr(reference, 9)::bigint;
    ELSIF currency = 'XMR' AND reference LIKE 'job:%' THEN
        SELECT * INTO p FROM compay.payments y
        WHERE y.task_id = pg_catalog.substr(reference, 5) AND y.status = 'processing'
          AND (y.metadata -> 'shortfall_id') IS NULL;
    END IF;
    IF p.id IS NOT NULL AND p.to_node = payee AND p.status = 'processing' AND p.amount = amount
       AND p.currency = currency THEN
        v_data := v_data || pg_catalog.jsonb_build_object('payment', pg_catalog.jsonb_build_object(
            'id', p.id, 'kind', 'payment', 'task_id', p.task_id, 'from_node', p.from_node,
            'amount', p.amount::text, 'currency', p.currency, 'method', p.method,
            'created_at', p.created_at, 'completed_at', pg_catalog.now(),
            'resource_metrics', p.resource_metrics, 'metadata', p.metadata,
            'source_shard', (compay.shard_require()).shard, 'source_payment_id', p.id));
    ELSE
        p.id := NULL;
    END IF;
    v_event := pgq.insert_event('compay_clearing_to_' || to_shard, 'credit', v_data::text);
    INSERT INTO compay.clearing_sent (transfer_id, to_shard, payee, amount, currency, event_id,
                                      payment_id)
    VALUES (transfer_id, to_shard, payee, amount, currency, v_event, p.id);
    RETURN v_event;
END $$;

CREATE FUNCTION compay.clearing_payment_moved() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM compay.clearing_sent s
               WHERE s.payment_id = NEW.id AND s.transfer_id = NEW.transfer_id) THEN
        DELETE FROM compay.payments WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION compay.clearing_payment_moved() FROM PUBLIC;
CREATE TRIGGER payments_clearing_moved AFTER UPDATE OF status ON compay.payments
    FOR EACH ROW WHEN (NEW.status = 'completed' AND NEW.currency = 'XMR'
                       AND OLD.status = 'processing')
    EXECUTE FUNCTION compay.clearing_payment_moved();

CREATE OR REPLACE FUNCTION compay.clearing_apply(from_shard integer, event_id bigint, event_type text,
    event_data text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    e jsonb := event_data::jsonb;
    v_transfer bigint;
BEGIN
    IF event_type IS DISTINCT FROM 'credit' THEN
        RAISE EXCEPTION 'clearing event % of shard % has unknown type %', event_id, from_shard, event_type
            USING ERRCODE = 'PY037';
    END IF;
    IF compay.shard_of(e->>'payee') <> c.shard THEN
        RAISE EXCEPTION 'clearing event % of shard % pays node "%", which is not on shard %',
                        event_id, from_shard, e->>'payee', c.shard
            USING ERRCODE = 'PY037',
                  HINT = 'Every shard must be configured with the same connstrs and partitions.';
    END IF;
    INSERT INTO compay.clearing_applied (from_shard, event_id, source_transfer_id, payee,
                                         amount, currency)
    VALUES (from_shard, event_id, (e->>'transfer_id')::bigint, e->>'payee',
            (e->>'amount')::compay.credit, e->>'currency')
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;               -- applied before: a batch seen again
    END IF;
    v_transfer := compay.clearing_credit(from_shard, e->>'payee', (e->>'amount')::compay.credit,
                                         e->>'currency', e->>'reference');
    UPDATE compay.clearing_applied a SET transfer_id = v_transfer
    WHERE a.from_shard = clearing_apply.from_shard AND a.event_id = clearing_apply.event_id;
    -- An XMR payment that moved here with its credit: recorded completed,
    -- under its id, its transfer the credit; settled and paid out here.
    IF e ? 'payment' THEN
        INSERT INTO compay.payments (id, task_id, from_node, to_node, amount, currency, method,
                                     status, resource_metrics, created_at, completed_at,
                                     transfer_id, metadata)
        SELECT (m->>'id')::bigint, m->>'task_id', m->>'from_node', e->>'payee',
               (m->>'amount')::compay.credit, m->>'currency',
               (m->>'method')::compay.payment_method, 'completed',
               CASE WHEN pg_catalog.jsonb_typeof(m->'resource_metrics') = 'object' THEN
                    pg_catalog.jsonb_populate_record(NULL::compay.resource_metrics,
                                                     m->'resource_metrics') END,
               (m->>'created_at')::timestamptz, (m->>'completed_at')::timestamptz, v_transfer,
               (m->'metadata') || pg_catalog.jsonb_build_object(
                   'source_shard', from_shard, 'source_payment_id', (m->>'id')::bigint,
                   'source_transfer_id', (e->>'transfer_id')::bigint, 'clearing_event_id', event_id)
        FROM (SELECT e->'payment' AS m) x;
    END IF;
    RETURN true;
END $$;

--------------------------------------------------------------------------
-- Issue 17 (settle17): settlement without writing the payments.  A run
-- takes the window of completion times after the last run's and settles
-- its payments by key (compay.settlement_runs, compay.payment_settlement);
-- only late payments are stamped (compay.settlement_exceptions).  Payments
-- settled before keep their stamped settlement_id; the first run's window
-- starts at -infinity, so the unsettled ones of 0.1 are settled by it.
--------------------------------------------------------------------------
DROP INDEX compay.payments_unsettled, compay.payments_unsettled_refunded;
-- A settlement run's window (src/settlement_runs.sql): the payments it
-- settles without writing them.
CREATE INDEX payments_settle_window ON compay.payments (completed_at) WHERE settlement_id IS NULL;
-- A settlement's payments, by payee and period (compay.settlement_payments).
CREATE INDEX payments_payee ON compay.payments (to_node, completed_at);

CREATE SEQUENCE compay.settlement_runs_id_seq;
CREATE TABLE compay.settlement_runs (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.settlement_runs_id_seq'),
    period       compay.settlement_period NOT NULL,
    window_start timestamptz NOT NULL,      -- completed_at >= window_start
    window_end   timestamptz NOT NULL,      -- completed_at < window_end
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT settlement_runs_window CHECK (window_end > window_start)
);
ALTER SEQUENCE compay.settlement_runs_id_seq OWNED BY compay.settlement_runs.id;
CREATE INDEX settlement_runs_end ON compay.settlement_runs (window_end);
COMMENT ON TABLE compay.settlement_runs IS
    'one row per compay.run_settlement() that took a window: the completion times whose payments it settled, each window after the last';
SELECT pg_catalog.pg_extension_config_dump('compay.settlement_runs', '');
SELECT pg_catalog.pg_extension_config_dump('compay.settlement_runs_id_seq', '');
REVOKE ALL ON compay.settlement_runs, compay.settlement_runs_id_seq FROM PUBLIC;
GRANT SELECT ON compay.settlement_runs TO compay_reader;

-- Payments whose settlement is not their window's: written into a window
-- already taken (late), or in their run's window but not eligible then
-- (disputed, refunded).  The next run whose cutoff is past them settles
-- the eligible ones by stamping compay.payments.settlement_id, and
-- forgets them.
CREATE TABLE compay.settlement_exceptions (
    payment_id bigint PRIMARY KEY,
    run_id     bigint,                      -- the run that kept it out; NULL: late
    noted_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE compay.settlement_exceptions IS
    'payments not settled with their window''s run (late, or disputed then): a later run stamps their settlement';
SELECT pg_catalog.pg_extension_config_dump('compay.settlement_exceptions', '');
REVOKE ALL ON compay.settlement_exceptions FROM PUBLIC;
GRANT SELECT ON compay.settlement_exceptions TO compay_reader;

ALTER TABLE compay.settlements ADD COLUMN run_id bigint;
COMMENT ON COLUMN compay.settlements.run_id IS
    'the compay.settlement_runs row that made it; its payments are found by that run''s window (compay.settlement_payments)';
-- Found by payee, currency and period start (settlements_payee), then run.

-- The settlement of payment p: stamped (late, or settled before 0.2),
-- else the one its window's run made for its payee, currency and period
-- (of its job type when the run settled that apart); NULL: not settled.
CREATE FUNCTION compay.payment_settlement(p compay.payments) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT coalesce(p.settlement_id, (
        SELECT s.id
        FROM (SELECT r.id, r.period FROM compay.settlement_runs r
              WHERE r.window_end > p.completed_at AND r.window_start <= p.completed_at
              ORDER BY r.window_end LIMIT 1) r
        JOIN compay.settlements s
          ON s.run_id = r.id AND s.payee = p.to_node AND s.currency = p.currency
         AND s.period_start = compay.period_start(r.period, p.completed_at)
         AND s.purpose = 'primary'
        WHERE p.status <> 'failed'
          AND NOT EXISTS (SELECT 1 FROM compay.settlement_exceptions x WHERE x.payment_id = p.id)
          AND (s.job_type IS NULL
               OR s.job_type = (SELECT j.task_type FROM compay.jobs j WHERE j.task_id = p.task_id))
        ORDER BY s.job_type NULLS LAST
        LIMIT 1))
$$;
COMMENT ON FUNCTION compay.payment_settlement(compay.payments) IS
    'the settlement that gathered payment p, NULL while unsettled (replaces reading compay.payments.settlement_id)';
GRANT EXECUTE ON FUNCTION compay.payment_settlement(compay.payments) TO compay_reader;

-- The payments settlement s gathered: stamped ones, and those of its
-- run's window with its payee, currency and period.  A settlement of a
-- job type (job_type) has the payments of jobs of that type; one without
-- has the others.
CREATE FUNCTION compay.settlement_payments(s compay.settlements) RETURNS SETOF compay.payments
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT p.* FROM compay.payments p WHERE p.settlement_id = s.id
    UNION ALL
    SELECT p.*
    FROM compay.settlement_runs r
    JOIN compay.payments p
      ON p.to_node = s.payee
     AND p.completed_at >= greatest(r.window_start, s.period_start)
     AND p.completed_at < least(r.window_end, s.period_end)
    WHERE r.id = s.run_id AND s.purpose = 'primary' AND p.currency = s.currency
      AND p.settlement_id IS NULL AND p.status <> 'failed'
      AND NOT EXISTS (SELECT 1 FROM compay.settlement_exceptions x WHERE x.payment_id = p.id)
      AND CASE WHEN s.job_type IS NOT NULL
               THEN EXISTS (SELECT 1 FROM compay.jobs j
                            WHERE j.task_id = p.task_id AND j.task_type = s.job_type)
               ELSE NOT EXISTS (SELECT 1 FROM compay.jobs j JOIN compay.settlements o
                                  ON o.run_id = s.run_id AND o.payee = s.payee
                                 AND o.currency = s.currency AND o.period_start = s.period_start
                                 AND o.purpose = 'primary' AND o.job_type = j.task_type
                                WHERE j.task_id = p.task_id) END
$$;
COMMENT ON FUNCTION compay.settlement_payments(compay.settlements) IS
    'the payments settlement s gathered (primary settlements; verifier rewards are in compay.verifications)';
GRANT EXECUTE ON FUNCTION compay.settlement_payments(compay.settlements) TO compay_reader;

-- Statement triggers on compay.payments: rows written with a completion
-- time in a window a run has taken, or while a run is under way (its
-- window unknown), are late.  Every writing statement holds the run's
-- lock shared until it commits, so a run waits for the writers before it
-- reads.  In repeatable read the committed runs may be newer than the
-- snapshot: every row written with a completion time is late then.
CREATE FUNCTION compay.note_late_payments() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_end timestamptz;
BEGIN
    -- A COPY into the table is a load (pg_restore, a reload of a dump):
    -- compay's functions never COPY.  It brings payments that a restored
    -- run already counted, and the exceptions as they were: none is late.
    IF pg_catalog.current_query() ~* '^\s*COPY\s' THEN
        RETURN NULL;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock_shared(pg_catalog.hashtext('compay.run_settlement')) THEN
        v_end := 'infinity';
    ELSE
        SELECT max(window_end) INTO v_end FROM compay.settlement_runs;
    END IF;
    IF v_end IS NULL THEN
        RETURN NULL;                    -- no run yet
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO compay.settlement_exceptions (payment_id)
        SELECT n.id FROM new_rows n
        WHERE n.completed_at < v_end AND n.settlement_id IS NULL AND n.status <> 'failed'
          AND EXISTS (SELECT 1 FROM compay.payments p WHERE p.id = n.id)   -- not moved away
        ON CONFLICT DO NOTHING;
    ELSE
        INSERT INTO compay.settlement_exceptions (payment_id)
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.completed_at < v_end AND n.settlement_id IS NULL AND n.status <> 'failed'
          AND n.completed_at IS DISTINCT FROM o.completed_at
          AND EXISTS (SELECT 1 FROM compay.payments p WHERE p.id = n.id)   -- not moved away
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_late_insert AFTER INSERT ON compay.payments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.note_late_payments();
CREATE TRIGGER payments_late_update AFTER UPDATE ON compay.payments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION compay.note_late_payments();

CREATE OR REPLACE FUNCTION compay.dashboard_earnings(node_id text, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (earned_at timestamptz, currency text, amount compay.credit, job_type text,
               stage text, refunded compay.credit)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT p.completed_at, p.currency, p.amount - r.refunded, COALESCE(j.task_type, '(no job)'),
           CASE WHEN p.status = 'disputed' THEN 'disputed'
                WHEN s.id IS NULL THEN 'unsettled'
                WHEN s.status = 'completed' THEN 'completed'
                ELSE 'settling' END,
           r.refunded
    FROM compay.payments p
    CROSS JOIN LATERAL (SELECT COALESCE(compay.sum(t.amount), '0'::compay.credit) AS refunded
                        FROM compay.transfers t
                        WHERE t.refund_of = p.transfer_id AND t.kind = 'refund') r
    LEFT JOIN compay.jobs j ON j.task_id = p.task_id
    LEFT JOIN compay.settlements s ON s.id = compay.payment_settlement(p)
    WHERE p.to_node = dashboard_earnings.node_id
      AND p.status IN ('completed', 'disputed', 'refunded')
      AND p.completed_at >= from_ts AND p.completed_at < to_ts
    UNION ALL
    SELECT v.rewarded_at, j.currency, v.reward_amount, 'verification',
           CASE WHEN s.id IS NULL THEN 'unsettled'
                WHEN s.status = 'completed' THEN 'completed'
                ELSE 'settling' END,
           '0'::compay.credit
    FROM compay.verifications v
    JOIN compay.jobs j ON j.id = v.job_id
    LEFT JOIN compay.settlements s ON s.id = v.settlement_id
    WHERE v.verifier = dashboard_earnings.node_id AND v.reward_amount > '0'
      AND v.rewarded_at >= from_ts AND v.rewarded_at < to_ts
$$;

CREATE OR REPLACE FUNCTION compay.earning_events(node_id text)
RETURNS TABLE (earned_at timestamptz, kind text, purpose text, job_id bigint, task_id text,
               job_type text, payer text, payment_id bigint, currency text,
               amount compay.credit, refunded compay.credit, earned compay.credit,
               settlement_id bigint, payout_ids bigint[], tx_hashes text[], status text)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH events AS (
        SELECT p.completed_at AS earned_at, 'payment'::text AS kind, 'compute'::text AS purpose,
               j.id AS job_id, p.task_id, j.task_type AS job_type, p.from_node AS payer,
               p.id AS payment_id, p.currency, p.amount,
               coalesce((SELECT compay.sum(t.amount) FROM compay.transfers t
                         WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'),
                        '0'::compay.credit) AS refunded,
               compay.payment_settlement(p) AS settlement_id, p.status = 'disputed' AS disputed
        FROM compay.payments p
        LEFT JOIN compay.jobs j ON j.task_id = p.task_id
        WHERE p.to_node = $1 AND p.status IN ('completed', 'disputed', 'refunded')
        UNION ALL
        SELECT v.rewarded_at, 'reward', 'verification', j.id, j.task_id, j.task_type, '$rewards',
               NULL, j.currency, v.reward_amount, '0'::compay.credit, v.settlement_id, false
        FROM compay.verifications v
        JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.verifier = $1 AND v.reward_amount OPERATOR(compay.>) '0'::compay.credit
          AND v.rewarded_at IS NOT NULL
    )
    SELECT e.earned_at, e.kind, e.purpose, e.job_id, e.task_id, e.job_type, e.payer,
           e.payment_id, e.currency, e.amount, e.refunded, e.amount OPERATOR(compay.-) e.refunded,
           e.settlement_id, o.payout_ids, o.tx_hashes,
           CASE WHEN e.refunded OPERATOR(compay.>) '0'::compay.credit
                     AND e.refunded OPERATOR(compay.=) e.amount THEN 'refunded'
                WHEN e.disputed THEN 'disputed'
                WHEN e.settlement_id IS NULL THEN 'pending'
                WHEN s.status = 'completed' THEN 'paid'
                WHEN o.in_flight THEN 'in_flight'
                ELSE 'settled' END
    FROM events e
    LEFT JOIN compay.settlements s ON s.id = e.settlement_id
    LEFT JOIN LATERAL (
        SELECT array_agg(t.id ORDER BY t.id) AS payout_ids,
               array_agg(t.tx_hash ORDER BY t.id) AS tx_hashes,
               coalesce(bool_or(t.status IN ('built', 'relayed')), false) AS in_flight
        FROM compay.payout_parts pp
        JOIN compay.payout_transactions t ON t.id = pp.payout_id
        WHERE pp.settlement_id = e.settlement_id AND t.status <> 'failed'
    ) o ON true
$$;

CREATE OR REPLACE FUNCTION compay.payment_history(node_id text, max_rows integer DEFAULT 100)
RETURNS TABLE (created_at timestamptz, completed_at timestamptz, direction text,
               payment_id bigint, task_id text, counterparty text, amount compay.credit,
               refunded compay.credit, currency text, method compay.payment_method,
               status compay.payment_status, settlement_id bigint, tx_hash text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_node text := payment_history.node_id;
    v_max integer := payment_history.max_rows;
BEGIN
    PERFORM compay.require_earnings_node(v_node);
    IF v_max IS NULL OR v_max < 1 OR v_max > 10000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 10000, not %', coalesce(v_max::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT p.created_at, p.completed_at,
           CASE WHEN p.to_node = v_node THEN 'in' ELSE 'out' END,
           p.id, p.task_id,
           CASE WHEN p.to_node = v_node THEN p.from_node ELSE p.to_node END,
           p.amount,
           coalesce((SELECT compay.sum(t.amount) FROM compay.transfers t
                     WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'),
                    '0'::compay.credit),
           p.currency, p.method, p.status, compay.payment_settlement(p), p.tx_hash
    FROM compay.payments p
    WHERE p.to_node = v_node OR p.from_node = v_node
    ORDER BY p.created_at DESC, p.id DESC
    LIMIT v_max;
END $$;

CREATE OR REPLACE FUNCTION compay.dispute_payment(payment_id bigint, reason text) RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
    v_window interval := compay.setting('compay.dispute_window')::interval;
    v_settlement bigint;
BEGIN
    PERFORM compay.require_node(NULL);
    -- A settlement run in progress is waited for (its lock), and one after
    -- this commit sees the payment disputed: a run finds a payment's
    -- settlement by key, without locking its row (src/settlement_runs.sql).
    PERFORM pg_advisory_xact_lock_shared(pg_catalog.hashtext('compay.run_settlement'));
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
    v_settlement := compay.payment_settlement(p);
    IF reason IS NULL OR length(reason) = 0 THEN
        RAISE EXCEPTION 'a dispute needs a reason' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(reason) > 1000 THEN
        RAISE EXCEPTION 'a dispute reason has at most 1000 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p.status <> 'completed' THEN
        RAISE EXCEPTION 'cannot dispute payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF now() > p.completed_at + v_window THEN
        RAISE EXCEPTION 'the dispute window of payment % has closed', payment_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Payments can be disputed for %s after they complete (compay.dispute_window).',
                                  compay.setting('compay.dispute_window'));
    END IF;
    -- Settled already: its settlement holds the amount back from payouts.
    -- The payment row is locked first, then the settlement.  A payout
    -- queue run in progress is waited for (its lock), and one after this
    -- commit sees held_back: a payout never takes a payment disputed
    -- before it was queued.
    IF v_settlement IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.queue_payouts'));
        UPDATE compay.settlements SET held_back = held_back + p.amount
        WHERE id = v_settlement;
    END IF;
    UPDATE compay.payments SET status = 'disputed', dispute_reason = reason, disputed_at = now()
    WHERE id = payment_id RETURNING * INTO p;
    PERFORM compay.move_credit_score(p.to_node, p.currency, false);
    RETURN p;
END $$;

CREATE OR REPLACE FUNCTION compay.refund_disputed(p compay.payments, refund_amount compay.credit)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_reason text := 'dispute:' || p.id;
    v_hold bigint;
    v_unpaid compay.credit;
    v_part compay.credit;
    v_transfer bigint;
BEGIN
    IF p.currency <> 'XMR' THEN
        RETURN compay.refund(p.transfer_id, refund_amount, v_reason);
    END IF;
    SELECT * INTO s FROM compay.settlements WHERE id = compay.payment_settlement(p) FOR UPDATE;
    IF FOUND THEN
        IF s.status IN ('pending', 'failed') THEN
            -- Not earmarked yet: earmark it now, so that its unpaid rest is in its hold.
            PERFORM compay.process_settlement(s.id);
            SELECT * INTO s FROM compay.settlements WHERE id = s.id;
        END IF;
        IF s.status = 'processing' THEN
            -- What its hold keeps that no payout carries yet (parts of a
            -- queued payout are paid as queued; built ones left the hold).
            v_hold := s.earmark_hold_id;
            SELECT h.remaining - coalesce((SELECT compay.sum(pp.amount) FROM compay.payout_parts pp
                                           JOIN compay.payout_transactions t ON t.id = pp.payout_id
                                           WHERE pp.settlement_id = s.id AND t.status = 'queued'), '0')
            INTO v_unpaid FROM compay.holds h
            WHERE h.id = v_hold AND h.status = 'pending';
            v_unpaid := coalesce(v_unpaid, '0');
        ELSIF s.status = 'completed' THEN
            v_unpaid := '0';           -- paid out
        END IF;
    END IF;
    IF v_unpaid IS NULL AND v_hold IS NULL THEN
        -- Unsettled, or a settlement the payee's balance could not earmark.
        SELECT a.balance - a.reserved INTO v_unpaid FROM compay.accounts a
        WHERE a.node_id = p.to_node AND a.currency = p.currency;
    END IF;
    v_part := least(refund_amount, greatest(coalesce(v_unpaid, '0'), '0'));
    IF v_part > '0' AND v_hold IS NULL THEN
        v_transfer := compay.refund(p.transfer_id, v_part, v_reason);
    ELSIF v_part > '0' THEN
        v_transfer := compay.dispute_refund(p.transfer_id, v_part, v_hold, v_reason);
        -- Its hold refunded to the last piconero and no part open: nothing
        -- is left to pay out, whatever other disputes still hold back (a
        -- refund of theirs is a clawback now).  A part still built or
        -- relayed completes it when confirmed.
        UPDATE compay.settlements SET status = 'completed', completed_at = now()
        WHERE id = s.id
          AND NOT EXISTS (SELECT FROM compay.holds h WHERE h.id = v_hold AND h.status = 'pending')
          AND NOT EXISTS (SELECT FROM compay.payout_parts pp
                          JOIN compay.payout_transactions t ON t.id = pp.payout_id
                          WHERE pp.settlement_id = s.id AND t.status IN ('queued', 'built', 'relayed'));
    END IF;
    v_part := refund_amount - v_part;
    IF v_part > '0' THEN
        v_transfer := compay.dispute_refund(p.transfer_id, v_part, NULL, v_reason);
        INSERT INTO compay.clawbacks (node_id, currency, payment_id, amount, transfer_id)
        VALUES (p.to_node, p.currency, p.id, v_part, v_transfer);
    END IF;
    RETURN v_transfer;
END $$;

CREATE OR REPLACE FUNCTION compay.resolve_dispute(payment_id bigint, refund_amount compay.credit)
RETURNS compay.payments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    p compay.payments;
BEGIN
    PERFORM compay.require_node(NULL);
    p := compay.lock_payment(payment_id);      -- after the check: no lock for a refused caller
    IF refund_amount IS NULL THEN
        RAISE EXCEPTION 'refund_amount must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p.status <> 'disputed' THEN
        RAISE EXCEPTION 'cannot resolve payment %: it is %', payment_id, p.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF refund_amount < '0' THEN
        RAISE EXCEPTION 'a refund cannot be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF refund_amount > p.amount THEN
        RAISE EXCEPTION 'refund of % exceeds payment % of %', refund_amount, payment_id, p.amount
            USING ERRCODE = 'PY008';
    END IF;
    IF refund_amount > '0' AND p.method = 'barter' THEN
        RAISE EXCEPTION 'barter payments cannot be refunded' USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Barter credits are not money the ledger can move back.',
            HINT = 'Resolve with refund 0, or grant barter credits back with compay.grant_barter().';
    END IF;
    -- The settlement no longer holds it back: what is not refunded is paid out.
    UPDATE compay.settlements SET held_back = held_back - p.amount
    WHERE id = compay.payment_settlement(p);
    IF refund_amount = '0' THEN
        UPDATE compay.payments SET status = 'completed' WHERE id = payment_id RETURNING * INTO p;
        RETURN p;
    END IF;
    UPDATE compay.payments
    SET status = 'refunded',
        refund_transfer_id = compay.refund_disputed(p, refund_amount),
        metadata = metadata || jsonb_build_object('refund_amount', refund_amount::text)
    WHERE id = payment_id RETURNING * INTO p;
    RETURN p;
END $$;

CREATE OR REPLACE FUNCTION compay.record_payout_built(payout_id bigint, reply jsonb,
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

CREATE OR REPLACE FUNCTION compay.record_payout_voided(payout_id bigint, reason text) RETURNS void
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

CREATE OR REPLACE FUNCTION compay.payment_trace(task_id text)
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

CREATE OR REPLACE FUNCTION compay.adopt_wallet_transfer(transfer jsonb) RETURNS bigint
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

CREATE OR REPLACE FUNCTION compay.payment_report(kind text, day date, node_id text DEFAULT NULL)
RETURNS TABLE (currency text, section text, method compay.payment_method, status text,
               direction text, count bigint, amount compay.credit, fee compay.credit,
               is_total boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    PERFORM compay.payment_report_check(kind, 'daily', node_id);
    IF day IS NULL THEN
        RAISE EXCEPTION 'day must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_catalog.isfinite(day) OR day < date '1970-01-01' OR day > date '9999-12-31' THEN
        RAISE EXCEPTION 'day % is out of range', CASE WHEN pg_catalog.isfinite(day)
            THEN pg_catalog.to_char(day, 'YYYY-MM-DD') ELSE day::text END
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A report day is from 1970-01-01 to 9999-12-31.';
    END IF;
    RETURN QUERY SELECT * FROM compay.payment_report_rows(
        day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC', node_id);
END $$;

CREATE OR REPLACE FUNCTION compay.process_settlement(settlement_id bigint, as_of timestamptz DEFAULT now())
RETURNS compay.settlement_status
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_count bigint;
    v_total compay.credit;
    v_net compay.credit;
BEGIN
    SELECT * INTO s FROM compay.settlements WHERE id = settlement_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'settlement % does not exist', settlement_id USING ERRCODE = 'PY013';
    END IF;
    IF s.status IN ('processing', 'completed') THEN
        RETURN s.status;
    END IF;
    BEGIN
        IF s.purpose = 'verification' THEN
            SELECT count(*), coalesce(compay.sum(reward_amount), '0') INTO v_count, v_total
            FROM compay.verifications v WHERE v.settlement_id = s.id;
        ELSE
            SELECT count(*), coalesce(compay.sum(amount), '0') INTO v_count, v_total
            FROM compay.settlement_payments(s) p;
        END IF;
        IF v_count <> s.payment_count OR v_total <> s.total_amount THEN
            RAISE EXCEPTION 'settlement % records % payments of %, its payments are % of %',
                s.id, s.payment_count, s.total_amount, v_count, v_total
                USING ERRCODE = 'data_corrupted';
        END IF;
        IF s.currency = 'XMR' THEN
            -- Earmarked: what its payments kept (refunds before settlement
            -- came from the payee's balance), less what repays its clawbacks.
            v_net := compay.repay_clawbacks(s, s.total_amount OPERATOR(compay.-) coalesce(
                (SELECT compay.sum(t.amount) FROM compay.settlement_payments(s) p
                 JOIN compay.transfers t ON t.refund_of = p.transfer_id AND t.kind = 'refund'
                 JOIN compay.accounts a ON a.id = t.from_account
                 WHERE a.node_id = s.payee), '0'));
            IF v_net > '0' THEN
                s.earmark_hold_id := compay.reserve(s.payee, v_net, 'settlement:' || s.id,
                                                    NULL, NULL, 'XMR');
                s.status := 'processing';
            ELSE
                s.status := 'completed';        -- all of it repaid clawbacks
            END IF;
        ELSE
            s.status := 'completed';
        END IF;
        UPDATE compay.settlements
        SET status = s.status, attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL,
            earmark_hold_id = s.earmark_hold_id,
            completed_at = CASE WHEN s.status = 'completed' THEN now() END
        WHERE id = s.id;
    EXCEPTION WHEN OTHERS THEN
        -- Backoff: 1, 2, 4, ... minutes after each failure, at most an hour.
        UPDATE compay.settlements
        SET status = 'failed', attempts = attempts + 1,
            last_error = SQLSTATE || ': ' || SQLERRM,
            next_attempt_at = as_of + least(interval '1 minute' * power(2, attempts), interval '1 hour')
        WHERE id = s.id;
        RETURN 'failed';
    END;
    RETURN s.status;
END $$;

CREATE OR REPLACE FUNCTION compay.run_settlement(period compay.settlement_period DEFAULT 'hourly',
    as_of timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp
-- Compiling the run's statement costs seconds on a loaded machine and saves
-- less than that at a million payments (measured: docs/performance.md).
SET jit = off AS $$
DECLARE
    v_cutoff timestamptz;
    v_start timestamptz;
    v_run bigint;
    v_ids bigint[];
BEGIN
    PERFORM compay.require_node(NULL);
    IF period IS NULL OR as_of IS NULL THEN
        RAISE EXCEPTION 'period and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The run reads the payments once, after the lock below: a snapshot
    -- taken before it would miss what the writers it waited for committed.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'compay.run_settlement() needs the read committed isolation level'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This transaction is %s.', current_setting('transaction_isolation')),
                  HINT = 'Run it in a transaction of its own, or BEGIN ISOLATION LEVEL READ COMMITTED.';
    END IF;
    -- Only closed periods: everything completed before the start of the
    -- period that holds as_of.
    v_cutoff := compay.period_start(period, as_of);
    -- One run at a time, and no payment writer half done: every statement
    -- that writes payments holds this lock shared until it commits
    -- (compay.note_late_payments), so the run waits for them here and
    -- reads all they wrote.  What is written later into a window already
    -- taken is recorded as late (compay.settlement_exceptions) and stamped
    -- by the next run.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.run_settlement'));
    -- This run's window continues the last one's: payments completed in
    -- it are settled without writing them (compay.payment_settlement()
    -- finds each one's settlement by its run, payee, currency and period).
    -- A cutoff at or before the last run's end leaves this one no window
    -- (and no row: a run every minute adds none): it settles late
    -- payments only, whose settlements (run_id NULL) are all stamped.
    SELECT coalesce(max(window_end), '-infinity') INTO v_start FROM compay.settlement_runs;
    IF v_cutoff > v_start THEN
        INSERT INTO compay.settlement_runs (period, window_start, window_end)
        VALUES (period, v_start, v_cutoff) RETURNING id INTO v_run;
    END IF;
    -- Earnings of a job type the payee has an address for (primary or
    -- verification) are settled apart (job_type), to be paid there.
    WITH found AS (
        SELECT p.id, p.to_node, p.currency, p.amount, p.status, p.transfer_id, p.task_id,
               p.completed_at, false AS late
        FROM compay.payments p
        WHERE p.completed_at >= v_start AND p.completed_at < v_cutoff
          AND p.settlement_id IS NULL AND p.status <> 'failed'
          AND NOT EXISTS (SELECT 1 FROM compay.settlement_exceptions x WHERE x.payment_id = p.id)
        UNION ALL
        SELECT p.id, p.to_node, p.currency, p.amount, p.status, p.transfer_id, p.task_id,
               p.completed_at, true
        FROM compay.settlement_exceptions x JOIN compay.payments p ON p.id = x.payment_id
        WHERE p.settlement_id IS NULL AND p.completed_at < v_cutoff
    ), eligible AS (
        -- Joins, not a subquery a payment: one pass over each table.
        SELECT f.id, f.to_node, f.currency, f.amount, f.late,
               compay.period_start(run_settlement.period, f.completed_at) AS ps,
               a.job_type AS jt,
               (f.status = 'completed'
                -- Partly refunded by a dispute before settlement: the rest is the payee's.
                OR (f.status = 'refunded' AND f.amount > coalesce(
                       (SELECT compay.sum(t.amount) FROM compay.transfers t
                        WHERE t.refund_of = f.transfer_id AND t.kind = 'refund'), '0'))) AS ok
        FROM found f
        LEFT JOIN compay.jobs j ON j.task_id = f.task_id
        LEFT JOIN (SELECT DISTINCT node_id, job_type FROM compay.payout_addresses
                   WHERE purpose <> 'operational') a
          ON a.node_id = f.to_node AND a.job_type = j.task_type
    ), kept_out AS (
        -- In the window but not settled now (disputed, refunded): settled,
        -- if ever, by a later run, which stamps it.
        INSERT INTO compay.settlement_exceptions (payment_id, run_id)
        SELECT id, v_run FROM eligible WHERE NOT ok AND NOT late
        ON CONFLICT DO NOTHING
    ), groups AS (
        -- Other currencies than XMR complete at once (what
        -- compay.process_settlement would do: the money moved when each
        -- payment was made); XMR ones are processed below (earmark holds).
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee,
                                        payment_count, total_amount, job_type, run_id,
                                        status, attempts, completed_at)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, to_node, n, total, jt, v_run,
               CASE WHEN currency = 'XMR' THEN 'pending' ELSE 'completed' END::compay.settlement_status,
               CASE WHEN currency = 'XMR' THEN 0 ELSE 1 END,
               CASE WHEN currency <> 'XMR' THEN now() END
        FROM (SELECT ps, currency, to_node, jt, count(*) AS n, compay.sum(amount) AS total
              FROM eligible WHERE ok GROUP BY ps, currency, to_node, jt) g
        ORDER BY ps, to_node, currency, jt NULLS FIRST   -- ids in a stable order
        RETURNING id, period_start, currency, payee, job_type, status
    ), stamped AS (
        -- Only late payments are stamped (few): the window's are found by key.
        UPDATE compay.payments p SET settlement_id = g.id
        FROM eligible e JOIN groups g
          ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.to_node
         AND g.job_type IS NOT DISTINCT FROM e.jt
        WHERE p.id = e.id AND e.ok AND e.late
    )
    SELECT array_agg(id) INTO v_ids FROM groups WHERE status = 'completed';
    DELETE FROM compay.settlement_exceptions x
    USING compay.payments p WHERE p.id = x.payment_id AND p.settlement_id IS NOT NULL;
    -- Verifier rewards: their own settlements (purpose verification), paid
    -- out to the verifier's verification address when it has one.
    WITH eligible AS (
        SELECT v.job_id, v.verifier, j.currency, v.reward_amount AS amount,
               compay.period_start(run_settlement.period, v.rewarded_at) AS ps,
               CASE WHEN EXISTS (SELECT 1 FROM compay.payout_addresses a
                                 WHERE a.node_id = v.verifier AND a.job_type = j.task_type
                                   AND a.purpose <> 'operational')
                    THEN j.task_type END AS jt
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.settlement_id IS NULL AND v.reward_amount > '0' AND v.rewarded_at < v_cutoff
        FOR UPDATE OF v
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                        payment_count, total_amount, job_type, run_id,
                                        status, attempts, completed_at)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, verifier, 'verification', count(*), compay.sum(amount), jt, v_run,
               CASE WHEN currency = 'XMR' THEN 'pending' ELSE 'completed' END::compay.settlement_status,
               CASE WHEN currency = 'XMR' THEN 0 ELSE 1 END,
               CASE WHEN currency <> 'XMR' THEN now() END
        FROM eligible GROUP BY ps, currency, verifier, jt
        ORDER BY ps, verifier, currency, jt NULLS FIRST
        RETURNING id, period_start, currency, payee, job_type, status
    ), stamped AS (
        UPDATE compay.verifications v SET settlement_id = g.id
        FROM eligible e JOIN groups g
          ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
         AND g.job_type IS NOT DISTINCT FROM e.jt
        WHERE v.job_id = e.job_id AND v.verifier = e.verifier
    )
    SELECT v_ids || array_agg(id) INTO v_ids FROM groups WHERE status = 'completed';
    RETURN QUERY
    SELECT u.id FROM (SELECT unnest(v_ids) AS id
                      UNION ALL
                      SELECT compay.process_due_settlements(as_of)) u
    ORDER BY u.id;
END $$;

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

CREATE OR REPLACE FUNCTION compay.withdrawable(node_id text) RETURNS compay.credit
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT compay.credit_from_atomic(greatest(0,
        coalesce((SELECT compay.atomic(a.balance) - compay.atomic(a.reserved)
                  FROM compay.accounts a WHERE a.node_id = $1 AND a.currency = 'XMR'), 0)
        - coalesce((SELECT sum(compay.atomic(p.amount) - coalesce(
                              (SELECT compay.sum_atomic(t.amount) FROM compay.transfers t
                               WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'), 0))
                    FROM compay.payments p
                    WHERE p.to_node = $1 AND p.currency = 'XMR' AND compay.payment_settlement(p) IS NULL
                      AND p.status IN ('completed', 'disputed', 'refunded')), 0)
        - coalesce((SELECT compay.sum_atomic(v.reward_amount)
                    FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
                    WHERE v.verifier = $1 AND j.currency = 'XMR' AND v.settlement_id IS NULL
                      AND v.reward_amount > '0'), 0)
        - coalesce((SELECT sum(compay.atomic(c.amount) - compay.atomic(c.repaid))
                    FROM compay.clawbacks c
                    WHERE c.node_id = $1 AND c.currency = 'XMR' AND c.repaid_at IS NULL), 0)))
$$;

--------------------------------------------------------------------------
-- Issue 18 (fix18): money guards of the shards.  A source transfer is
-- credited once whatever event carries it; compay_reader no longer reads
-- the connection strings; shard_configure() is superuser only and resets
-- the id sequences on every call; system_balances counts entries by the
-- last seq.  (The C guards need no SQL.)
--------------------------------------------------------------------------
ALTER TABLE compay.clearing_applied
    ADD CONSTRAINT clearing_applied_source UNIQUE (from_shard, source_transfer_id);
REVOKE SELECT ON compay.shard_config FROM compay_reader;
GRANT SELECT (singleton, shard, shards, partitions, configured_at) ON compay.shard_config
    TO compay_reader;
REVOKE EXECUTE ON FUNCTION compay.shard_configure(integer, text[], integer) FROM compay_admin;
CREATE OR REPLACE FUNCTION compay.shard_configure(shard integer, connstrs text[], partitions integer DEFAULT 8)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_shards integer := pg_catalog.array_length(connstrs, 1);
    v_old compay.shard_config;
    v_stray text;
    v_start bigint;
    v_table text;
BEGIN
    PERFORM compay.require_node(NULL);
    IF shard IS NULL OR connstrs IS NULL OR partitions IS NULL THEN
        RAISE EXCEPTION 'shard, connstrs and partitions must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_shards IS NULL OR pg_catalog.array_position(connstrs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'connstrs must list one connection string per shard'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An empty array or a NULL element names no shard.';
    END IF;
    IF shard < 0 OR shard >= v_shards THEN
        RAISE EXCEPTION 'shard % is not one of the % shards connstrs lists', shard, v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Shards are numbered from 0, in the order of connstrs.';
    END IF;
    IF partitions < v_shards OR partitions > 65536 OR (partitions & (partitions - 1)) <> 0 THEN
        RAISE EXCEPTION 'partitions must be a power of two from the number of shards (%) up to 65536', v_shards
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('%s partitions were asked for.', partitions),
                  HINT = 'PL/Proxy maps hashtext(node_id) & (partitions - 1) to a partition.';
    END IF;
    -- The lock first: on a standby this is the read-only error.
    SELECT * INTO v_old FROM compay.shard_config FOR UPDATE;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgq')
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        RAISE EXCEPTION 'a compay shard needs the extensions pgq and dblink' USING ERRCODE = 'PY036',
              DETAIL = 'Cross-shard payments are PgQ events, which the payee''s shard reads with dblink.',
              HINT = 'CREATE EXTENSION pgq; CREATE EXTENSION dblink; (Debian: postgresql-15-pgq3), and run pgqd.';
    END IF;
    IF v_old.shard IS NOT NULL AND (v_old.shard, v_old.shards, v_old.partitions) IS DISTINCT FROM
                 (shard, v_shards, partitions) THEN
        RAISE EXCEPTION 'this database is already shard % of % with % partitions',
                        v_old.shard, v_old.shards, v_old.partitions
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Moving partitions between shards is not supported yet.',
                  HINT = 'Call it again with the same shard, shard count and partitions to change connection strings only.';
    END IF;
    -- Every account here must be one this shard owns.
    SELECT a.node_id INTO v_stray FROM compay.accounts a
    WHERE a.node_id NOT LIKE '$%'
      AND (pg_catalog.hashtext(a.node_id) & (partitions - 1)) % v_shards <> shard
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'node "%" has an account here but would live on shard %', v_stray,
                        (pg_catalog.hashtext(v_stray) & (partitions - 1)) % v_shards
            USING ERRCODE = 'PY037',
                  DETAIL = 'A shard holds only the accounts of the nodes that hash to it.',
                  HINT = 'Configure an empty database, or one whose nodes all hash to this shard.';
    END IF;
    INSERT INTO compay.shard_config (shard, shards, partitions, connstrs)
    VALUES (shard, v_shards, partitions, connstrs)
    ON CONFLICT (singleton) DO UPDATE SET connstrs = EXCLUDED.connstrs, configured_at = pg_catalog.now();
    -- Hold and transfer ids name their shard: id & (partitions - 1) = shard,
    -- so the router runs capture(hold_id) and refund(transfer_id) there.
    -- Payment ids too: an XMR payment moved to the payee's shard keeps its
    -- id there (compay.clearing_apply), which no other shard hands out.
    -- Set again on every call, which repairs a sequence altered by hand
    -- (the ledger refuses an id that does not name this shard); past both
    -- the table's ids and the sequence's, so no id is drawn twice.
    FOREACH v_table IN ARRAY ARRAY['payments', 'holds', 'transfers'] LOOP
        EXECUTE pg_catalog.format('SELECT GREATEST((SELECT pg_catalog.max(id) FROM compay.%I), '
                                  '(SELECT last_value FROM compay.%I))', v_table, v_table || '_id_seq')
            INTO v_start;
        v_start := (coalesce(v_start, 0) / partitions + 1) * partitions + shard;
        EXECUTE pg_catalog.format('ALTER SEQUENCE compay.%I INCREMENT BY %s RESTART WITH %s',
                                  v_table || '_id_seq', partitions, v_start);
    END LOOP;
    -- One outgoing queue per peer, read by the peer's consumer.
    FOR i IN 0 .. v_shards - 1 LOOP
        CONTINUE WHEN i = shard;
        IF NOT EXISTS (SELECT FROM pgq.get_queue_info() q
                       WHERE q.queue_name = 'compay_clearing_to_' || i) THEN
            PERFORM pgq.create_queue('compay_clearing_to_' || i);
        END IF;
        PERFORM pgq.register_consumer('compay_clearing_to_' || i, 'compay_clearing');
    END LOOP;
    PERFORM compay.shard_config_changed();
END $$;
CREATE OR REPLACE FUNCTION compay.clearing_apply(from_shard integer, event_id bigint, event_type text,
    event_data text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    e jsonb := event_data::jsonb;
    v_transfer bigint;
    v_seen compay.clearing_applied;
BEGIN
    IF event_type IS DISTINCT FROM 'credit' THEN
        RAISE EXCEPTION 'clearing event % of shard % has unknown type %', event_id, from_shard, event_type
            USING ERRCODE = 'PY037';
    END IF;
    IF compay.shard_of(e->>'payee') <> c.shard THEN
        RAISE EXCEPTION 'clearing event % of shard % pays node "%", which is not on shard %',
                        event_id, from_shard, e->>'payee', c.shard
            USING ERRCODE = 'PY037',
                  HINT = 'Every shard must be configured with the same connstrs and partitions.';
    END IF;
    INSERT INTO compay.clearing_applied (from_shard, event_id, source_transfer_id, payee,
                                         amount, currency)
    VALUES (from_shard, event_id, (e->>'transfer_id')::bigint, e->>'payee',
            (e->>'amount')::compay.credit, e->>'currency')
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        -- Applied before (a batch seen again): the same event, or its
        -- source transfer under another event id (a no-op too).  The same
        -- event id with other contents is a peer whose queue was remade.
        SELECT * INTO v_seen FROM compay.clearing_applied a
        WHERE a.from_shard = clearing_apply.from_shard AND a.event_id = clearing_apply.event_id;
        IF FOUND AND (v_seen.payee, v_seen.amount, v_seen.currency, v_seen.source_transfer_id)
                     IS DISTINCT FROM (e->>'payee', (e->>'amount')::compay.credit, e->>'currency',
                                       (e->>'transfer_id')::bigint) THEN
            RAISE EXCEPTION 'clearing event % of shard % differs from the one applied under that id',
                            event_id, from_shard
                USING ERRCODE = 'PY037',
                      DETAIL = pg_catalog.format('Applied: transfer %s, %s %s to "%s"; now: transfer %s, %s %s to "%s".',
                          v_seen.source_transfer_id, v_seen.amount, v_seen.currency, v_seen.payee,
                          e->>'transfer_id', e->>'amount', e->>'currency', e->>'payee'),
                      HINT = 'The peer''s PgQ queue was recreated or the shards'' connstrs disagree: stop its consumer and compare compay.clearing_sent there with compay.clearing_applied here.';
        END IF;
        RETURN false;
    END IF;
    v_transfer := compay.clearing_credit(from_shard, e->>'payee', (e->>'amount')::compay.credit,
                                         e->>'currency', e->>'reference');
    UPDATE compay.clearing_applied a SET transfer_id = v_transfer
    WHERE a.from_shard = clearing_apply.from_shard AND a.event_id = clearing_apply.event_id;
    -- An XMR payment that moved here with its credit: recorded completed,
    -- under its id, its transfer the credit; settled and paid out here.
    IF e ? 'payment' THEN
        INSERT INTO compay.payments (id, task_id, from_node, to_node, amount, currency, method,
                                     status, resource_metrics, created_at, completed_at,
                                     transfer_id, metadata)
        SELECT (m->>'id')::bigint, m->>'task_id', m->>'from_node', e->>'payee',
               (m->>'amount')::compay.credit, m->>'currency',
               (m->>'method')::compay.payment_method, 'completed',
               CASE WHEN pg_catalog.jsonb_typeof(m->'resource_metrics') = 'object' THEN
                    pg_catalog.jsonb_populate_record(NULL::compay.resource_metrics,
                                                     m->'resource_metrics') END,
               (m->>'created_at')::timestamptz, (m->>'completed_at')::timestamptz, v_transfer,
               (m->'metadata') || pg_catalog.jsonb_build_object(
                   'source_shard', from_shard, 'source_payment_id', (m->>'id')::bigint,
                   'source_transfer_id', (e->>'transfer_id')::bigint, 'clearing_event_id', event_id)
        FROM (SELECT e->'payment' AS m) x;
    END IF;
    RETURN true;
END $$;
CREATE OR REPLACE VIEW compay.system_balances AS
    SELECT split_part(a.node_id, '#', 1) AS node_id, a.currency,
           compay.sum(a.balance) AS balance, count(*) AS stripes,
           -- Seqs run 1..n (verify_ledger check 2): the last is the count,
           -- one probe of the journal's primary key per stripe.
           sum(coalesce((SELECT j.seq FROM compay.journal j WHERE j.account_id = a.id
                         ORDER BY j.seq DESC LIMIT 1), 0)) AS entries
    FROM compay.accounts a
    WHERE left(a.node_id, 1) = '$'
    GROUP BY 1, 2;

-- Issue 18 (xmrv18): an XMR verifier reward to a verifier on another shard
-- moves there: the verifier's shard records it (compay.clearing_rewards)
-- and settles it; the job's shard never settles a remote verifier.
-- An XMR verifier reward to a verifier on another shard moves there too:
-- the job's shard keeps the vote (compay.verifications) but never settles
-- it (compay.run_settlement skips remote verifiers); the verifier's shard
-- records the reward here, once per event, and settles and pays it out
-- (a settlement of purpose verification, as for a local vote).
CREATE TABLE compay.clearing_rewards (
    from_shard     integer NOT NULL,        -- the job's shard
    event_id       bigint NOT NULL,         -- its clearing event
    task_id        text NOT NULL,           -- the job's task (on from_shard)
    job_type       text,                    -- the job's task type
    verifier       text NOT NULL,
    currency       text NOT NULL,
    reward_amount  compay.credit NOT NULL,
    rewarded_at    timestamptz NOT NULL,
    transfer_id    bigint NOT NULL,         -- the credit here
    settlement_id  bigint,                  -- the settlement that gathered the reward
    PRIMARY KEY (from_shard, event_id),
    CONSTRAINT clearing_rewards_amount CHECK (reward_amount > '0')
);
CREATE INDEX clearing_rewards_unsettled ON compay.clearing_rewards (rewarded_at)
    WHERE settlement_id IS NULL;
CREATE INDEX clearing_rewards_settlement ON compay.clearing_rewards (settlement_id)
    WHERE settlement_id IS NOT NULL;
COMMENT ON TABLE compay.clearing_rewards IS
    'XMR verifier rewards of jobs on other shards, credited here by clearing and settled here';
SELECT pg_catalog.pg_extension_config_dump('compay.clearing_rewards', '');
REVOKE ALL ON compay.clearing_rewards FROM PUBLIC;
GRANT SELECT ON compay.clearing_rewards TO compay_reader;

CREATE OR REPLACE FUNCTION compay.clearing_queue(to_shard integer, transfer_id bigint, payee text,
    amount compay.credit, currency text, reference text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    v_event bigint;
    v_data jsonb := pg_catalog.jsonb_build_object('transfer_id', transfer_id, 'payee', payee,
            'amount', amount::text, 'currency', currency, 'reference', reference);
    p compay.payments;
BEGIN
    -- The XMR payment this credit pays (a task payment 'payment:<id>', a
    -- verified job's provider 'job:<task id>'), still processing in this
    -- transaction: the event carries it, the payee's shard records it, and
    -- compay.clearing_payment_moved() deletes it here once it completed.
    IF currency = 'XMR' AND reference ~ '^payment:[0-9]+$' THEN
        SELECT * INTO p FROM compay.payments y
        WHERE y.id = pg_catalog.substr(reference, 9)::bigint;
    ELSIF currency = 'XMR' AND reference LIKE 'job:%' THEN
        SELECT * INTO p FROM compay.payments y
        WHERE y.task_id = pg_catalog.substr(reference, 5) AND y.status = 'processing'
          AND (y.metadata -> 'shortfall_id') IS NULL;
    END IF;
    IF p.id IS NOT NULL AND p.to_node = payee AND p.status = 'processing' AND p.amount = amount
       AND p.currency = currency THEN
        v_data := v_data || pg_catalog.jsonb_build_object('payment', pg_catalog.jsonb_build_object(
            'id', p.id, 'kind', 'payment', 'task_id', p.task_id, 'from_node', p.from_node,
            'amount', p.amount::text, 'currency', p.currency, 'method', p.method,
            'created_at', p.created_at, 'completed_at', pg_catalog.now(),
            'resource_metrics', p.resource_metrics, 'metadata', p.metadata,
            'source_shard', (compay.shard_require()).shard, 'source_payment_id', p.id));
    ELSE
        p.id := NULL;
        -- A verifier's reward of an XMR job (reference 'job:<task id>'):
        -- the event names it, the verifier's shard records and settles it.
        IF currency = 'XMR' AND reference LIKE 'job:%' THEN
            v_data := v_data || coalesce((
                SELECT pg_catalog.jsonb_build_object('reward', pg_catalog.jsonb_build_object(
                           'task_id', j.task_id, 'job_type', j.task_type,
                           'rewarded_at', pg_catalog.now()))
                FROM compay.jobs j JOIN compay.verifications v ON v.job_id = j.id
                WHERE j.task_id = pg_catalog.substr(reference, 5) AND v.verifier = payee), '{}');
        END IF;
    END IF;
    v_event := pgq.insert_event('compay_clearing_to_' || to_shard, 'credit', v_data::text);
    INSERT INTO compay.clearing_sent (transfer_id, to_shard, payee, amount, currency, event_id,
                                      payment_id)
    VALUES (transfer_id, to_shard, payee, amount, currency, v_event, p.id);
    RETURN v_event;
END $$;

CREATE OR REPLACE FUNCTION compay.clearing_apply(from_shard integer, event_id bigint, event_type text,
    event_data text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    c compay.shard_config := compay.shard_require();
    e jsonb := event_data::jsonb;
    v_transfer bigint;
    v_seen compay.clearing_applied;
BEGIN
    IF event_type IS DISTINCT FROM 'credit' THEN
        RAISE EXCEPTION 'clearing event % of shard % has unknown type %', event_id, from_shard, event_type
            USING ERRCODE = 'PY037';
    END IF;
    IF compay.shard_of(e->>'payee') <> c.shard THEN
        RAISE EXCEPTION 'clearing event % of shard % pays node "%", which is not on shard %',
                        event_id, from_shard, e->>'payee', c.shard
            USING ERRCODE = 'PY037',
                  HINT = 'Every shard must be configured with the same connstrs and partitions.';
    END IF;
    INSERT INTO compay.clearing_applied (from_shard, event_id, source_transfer_id, payee,
                                         amount, currency)
    VALUES (from_shard, event_id, (e->>'transfer_id')::bigint, e->>'payee',
            (e->>'amount')::compay.credit, e->>'currency')
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        -- Applied before (a batch seen again): the same event, or its
        -- source transfer under another event id (a no-op too).  The same
        -- event id with other contents is a peer whose queue was remade.
        SELECT * INTO v_seen FROM compay.clearing_applied a
        WHERE a.from_shard = clearing_apply.from_shard AND a.event_id = clearing_apply.event_id;
        IF FOUND AND (v_seen.payee, v_seen.amount, v_seen.currency, v_seen.source_transfer_id)
                     IS DISTINCT FROM (e->>'payee', (e->>'amount')::compay.credit, e->>'currency',
                                       (e->>'transfer_id')::bigint) THEN
            RAISE EXCEPTION 'clearing event % of shard % differs from the one applied under that id',
                            event_id, from_shard
                USING ERRCODE = 'PY037',
                      DETAIL = pg_catalog.format('Applied: transfer %s, %s %s to "%s"; now: transfer %s, %s %s to "%s".',
                          v_seen.source_transfer_id, v_seen.amount, v_seen.currency, v_seen.payee,
                          e->>'transfer_id', e->>'amount', e->>'currency', e->>'payee'),
                      HINT = 'The peer''s PgQ queue was recreated or the shards'' connstrs disagree: stop its consumer and compare compay.clearing_sent there with compay.clearing_applied here.';
        END IF;
        RETURN false;
    END IF;
    v_transfer := compay.clearing_credit(from_shard, e->>'payee', (e->>'amount')::compay.credit,
                                         e->>'currency', e->>'reference');
    UPDATE compay.clearing_applied a SET transfer_id = v_transfer
    WHERE a.from_shard = clearing_apply.from_shard AND a.event_id = clearing_apply.event_id;
    -- An XMR payment that moved here with its credit: recorded completed,
    -- under its id, its transfer the credit; settled and paid out here.
    IF e ? 'payment' THEN
        INSERT INTO compay.payments (id, task_id, from_node, to_node, amount, currency, method,
                                     status, resource_metrics, created_at, completed_at,
                                     transfer_id, metadata)
        SELECT (m->>'id')::bigint, m->>'task_id', m->>'from_node', e->>'payee',
               (m->>'amount')::compay.credit, m->>'currency',
               (m->>'method')::compay.payment_method, 'completed',
               CASE WHEN pg_catalog.jsonb_typeof(m->'resource_metrics') = 'object' THEN
                    pg_catalog.jsonb_populate_record(NULL::compay.resource_metrics,
                                                     m->'resource_metrics') END,
               (m->>'created_at')::timestamptz, (m->>'completed_at')::timestamptz, v_transfer,
               (m->'metadata') || pg_catalog.jsonb_build_object(
                   'source_shard', from_shard, 'source_payment_id', (m->>'id')::bigint,
                   'source_transfer_id', (e->>'transfer_id')::bigint, 'clearing_event_id', event_id)
        FROM (SELECT e->'payment' AS m) x;
    END IF;
    -- An XMR verifier reward of a job on from_shard: settled here.
    IF e ? 'reward' AND (e->>'amount')::compay.credit > '0' THEN
        INSERT INTO compay.clearing_rewards (from_shard, event_id, task_id, job_type, verifier,
                                             currency, reward_amount, rewarded_at, transfer_id)
        VALUES (from_shard, event_id, e->'reward'->>'task_id', e->'reward'->>'job_type',
                e->>'payee', e->>'currency', (e->>'amount')::compay.credit,
                (e->'reward'->>'rewarded_at')::timestamptz, v_transfer);
    END IF;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION compay.process_settlement(settlement_id bigint, as_of timestamptz DEFAULT now())
RETURNS compay.settlement_status
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    s compay.settlements;
    v_count bigint;
    v_total compay.credit;
    v_net compay.credit;
BEGIN
    SELECT * INTO s FROM compay.settlements WHERE id = settlement_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'settlement % does not exist', settlement_id USING ERRCODE = 'PY013';
    END IF;
    IF s.status IN ('processing', 'completed') THEN
        RETURN s.status;
    END IF;
    BEGIN
        IF s.purpose = 'verification' THEN
            SELECT count(*), coalesce(compay.sum(reward_amount), '0') INTO v_count, v_total
            FROM (SELECT v.reward_amount FROM compay.verifications v WHERE v.settlement_id = s.id
                  UNION ALL
                  SELECT r.reward_amount FROM compay.clearing_rewards r
                  WHERE r.settlement_id = s.id) v;
        ELSE
            SELECT count(*), coalesce(compay.sum(amount), '0') INTO v_count, v_total
            FROM compay.settlement_payments(s) p;
        END IF;
        IF v_count <> s.payment_count OR v_total <> s.total_amount THEN
            RAISE EXCEPTION 'settlement % records % payments of %, its payments are % of %',
                s.id, s.payment_count, s.total_amount, v_count, v_total
                USING ERRCODE = 'data_corrupted';
        END IF;
        IF s.currency = 'XMR' THEN
            -- Earmarked: what its payments kept (refunds before settlement
            -- came from the payee's balance), less what repays its clawbacks.
            v_net := compay.repay_clawbacks(s, s.total_amount OPERATOR(compay.-) coalesce(
                (SELECT compay.sum(t.amount) FROM compay.settlement_payments(s) p
                 JOIN compay.transfers t ON t.refund_of = p.transfer_id AND t.kind = 'refund'
                 JOIN compay.accounts a ON a.id = t.from_account
                 WHERE a.node_id = s.payee), '0'));
            IF v_net > '0' THEN
                s.earmark_hold_id := compay.reserve(s.payee, v_net, 'settlement:' || s.id,
                                                    NULL, NULL, 'XMR');
                s.status := 'processing';
            ELSE
                s.status := 'completed';        -- all of it repaid clawbacks
            END IF;
        ELSE
            s.status := 'completed';
        END IF;
        UPDATE compay.settlements
        SET status = s.status, attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL,
            earmark_hold_id = s.earmark_hold_id,
            completed_at = CASE WHEN s.status = 'completed' THEN now() END
        WHERE id = s.id;
    EXCEPTION WHEN OTHERS THEN
        -- Backoff: 1, 2, 4, ... minutes after each failure, at most an hour.
        UPDATE compay.settlements
        SET status = 'failed', attempts = attempts + 1,
            last_error = SQLSTATE || ': ' || SQLERRM,
            next_attempt_at = as_of + least(interval '1 minute' * power(2, attempts), interval '1 hour')
        WHERE id = s.id;
        RETURN 'failed';
    END;
    RETURN s.status;
END $$;

CREATE OR REPLACE FUNCTION compay.run_settlement(period compay.settlement_period DEFAULT 'hourly',
    as_of timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp
-- Compiling the run's statement costs seconds on a loaded machine and saves
-- less than that at a million payments (measured: docs/performance.md).
SET jit = off AS $$
DECLARE
    v_cutoff timestamptz;
    v_start timestamptz;
    v_run bigint;
    v_ids bigint[];
BEGIN
    PERFORM compay.require_node(NULL);
    IF period IS NULL OR as_of IS NULL THEN
        RAISE EXCEPTION 'period and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The run reads the payments once, after the lock below: a snapshot
    -- taken before it would miss what the writers it waited for committed.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'compay.run_settlement() needs the read committed isolation level'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This transaction is %s.', current_setting('transaction_isolation')),
                  HINT = 'Run it in a transaction of its own, or BEGIN ISOLATION LEVEL READ COMMITTED.';
    END IF;
    -- Only closed periods: everything completed before the start of the
    -- period that holds as_of.
    v_cutoff := compay.period_start(period, as_of);
    -- One run at a time, and no payment writer half done: every statement
    -- that writes payments holds this lock shared until it commits
    -- (compay.note_late_payments), so the run waits for them here and
    -- reads all they wrote.  What is written later into a window already
    -- taken is recorded as late (compay.settlement_exceptions) and stamped
    -- by the next run.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('compay.run_settlement'));
    -- This run's window continues the last one's: payments completed in
    -- it are settled without writing them (compay.payment_settlement()
    -- finds each one's settlement by its run, payee, currency and period).
    -- A cutoff at or before the last run's end leaves this one no window
    -- (and no row: a run every minute adds none): it settles late
    -- payments only, whose settlements (run_id NULL) are all stamped.
    SELECT coalesce(max(window_end), '-infinity') INTO v_start FROM compay.settlement_runs;
    IF v_cutoff > v_start THEN
        INSERT INTO compay.settlement_runs (period, window_start, window_end)
        VALUES (period, v_start, v_cutoff) RETURNING id INTO v_run;
    END IF;
    -- Earnings of a job type the payee has an address for (primary or
    -- verification) are settled apart (job_type), to be paid there.
    WITH found AS (
        SELECT p.id, p.to_node, p.currency, p.amount, p.status, p.transfer_id, p.task_id,
               p.completed_at, false AS late
        FROM compay.payments p
        WHERE p.completed_at >= v_start AND p.completed_at < v_cutoff
          AND p.settlement_id IS NULL AND p.status <> 'failed'
          AND NOT EXISTS (SELECT 1 FROM compay.settlement_exceptions x WHERE x.payment_id = p.id)
        UNION ALL
        SELECT p.id, p.to_node, p.currency, p.amount, p.status, p.transfer_id, p.task_id,
               p.completed_at, true
        FROM compay.settlement_exceptions x JOIN compay.payments p ON p.id = x.payment_id
        WHERE p.settlement_id IS NULL AND p.completed_at < v_cutoff
    ), eligible AS (
        -- Joins, not a subquery a payment: one pass over each table.
        SELECT f.id, f.to_node, f.currency, f.amount, f.late,
               compay.period_start(run_settlement.period, f.completed_at) AS ps,
               a.job_type AS jt,
               (f.status = 'completed'
                -- Partly refunded by a dispute before settlement: the rest is the payee's.
                OR (f.status = 'refunded' AND f.amount > coalesce(
                       (SELECT compay.sum(t.amount) FROM compay.transfers t
                        WHERE t.refund_of = f.transfer_id AND t.kind = 'refund'), '0'))) AS ok
        FROM found f
        LEFT JOIN compay.jobs j ON j.task_id = f.task_id
        LEFT JOIN (SELECT DISTINCT node_id, job_type FROM compay.payout_addresses
                   WHERE purpose <> 'operational') a
          ON a.node_id = f.to_node AND a.job_type = j.task_type
    ), kept_out AS (
        -- In the window but not settled now (disputed, refunded): settled,
        -- if ever, by a later run, which stamps it.
        INSERT INTO compay.settlement_exceptions (payment_id, run_id)
        SELECT id, v_run FROM eligible WHERE NOT ok AND NOT late
        ON CONFLICT DO NOTHING
    ), groups AS (
        -- Other currencies than XMR complete at once (what
        -- compay.process_settlement would do: the money moved when each
        -- payment was made); XMR ones are processed below (earmark holds).
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee,
                                        payment_count, total_amount, job_type, run_id,
                                        status, attempts, completed_at)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, to_node, n, total, jt, v_run,
               CASE WHEN currency = 'XMR' THEN 'pending' ELSE 'completed' END::compay.settlement_status,
               CASE WHEN currency = 'XMR' THEN 0 ELSE 1 END,
               CASE WHEN currency <> 'XMR' THEN now() END
        FROM (SELECT ps, currency, to_node, jt, count(*) AS n, compay.sum(amount) AS total
              FROM eligible WHERE ok GROUP BY ps, currency, to_node, jt) g
        ORDER BY ps, to_node, currency, jt NULLS FIRST   -- ids in a stable order
        RETURNING id, period_start, currency, payee, job_type, status
    ), stamped AS (
        -- Only late payments are stamped (few): the window's are found by key.
        UPDATE compay.payments p SET settlement_id = g.id
        FROM eligible e JOIN groups g
          ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.to_node
         AND g.job_type IS NOT DISTINCT FROM e.jt
        WHERE p.id = e.id AND e.ok AND e.late
    )
    SELECT array_agg(id) INTO v_ids FROM groups WHERE status = 'completed';
    DELETE FROM compay.settlement_exceptions x
    USING compay.payments p WHERE p.id = x.payment_id AND p.settlement_id IS NOT NULL;
    -- Verifier rewards: their own settlements (purpose verification), paid
    -- out to the verifier's verification address when it has one.  On a
    -- shard (src/shard.sql), a verifier of another shard is settled there
    -- (compay.clearing_rewards), never here.
    WITH local_votes AS (
        SELECT v.job_id, NULL::integer AS from_shard, NULL::bigint AS event_id, v.verifier,
               j.currency, v.reward_amount AS amount, v.rewarded_at, j.task_type
        FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.settlement_id IS NULL AND v.reward_amount > '0' AND v.rewarded_at < v_cutoff
          AND NOT EXISTS (SELECT 1 FROM compay.shard_config c
                          WHERE (pg_catalog.hashtext(v.verifier) & (c.partitions - 1)) % c.shards
                                <> c.shard)
        FOR UPDATE OF v
    ), remote_jobs AS (
        SELECT NULL::bigint AS job_id, r.from_shard, r.event_id, r.verifier, r.currency,
               r.reward_amount AS amount, r.rewarded_at, r.job_type AS task_type
        FROM compay.clearing_rewards r
        WHERE r.settlement_id IS NULL AND r.rewarded_at < v_cutoff
        FOR UPDATE
    ), eligible AS (
        SELECT x.job_id, x.from_shard, x.event_id, x.verifier, x.currency, x.amount,
               compay.period_start(run_settlement.period, x.rewarded_at) AS ps,
               CASE WHEN EXISTS (SELECT 1 FROM compay.payout_addresses a
                                 WHERE a.node_id = x.verifier AND a.job_type = x.task_type
                                   AND a.purpose <> 'operational')
                    THEN x.task_type END AS jt
        FROM (SELECT * FROM local_votes UNION ALL SELECT * FROM remote_jobs) x
    ), groups AS (
        INSERT INTO compay.settlements (period, period_start, period_end, currency, payee, purpose,
                                        payment_count, total_amount, job_type, run_id,
                                        status, attempts, completed_at)
        SELECT run_settlement.period, ps, compay.period_end(run_settlement.period, ps),
               currency, verifier, 'verification', count(*), compay.sum(amount), jt, v_run,
               CASE WHEN currency = 'XMR' THEN 'pending' ELSE 'completed' END::compay.settlement_status,
               CASE WHEN currency = 'XMR' THEN 0 ELSE 1 END,
               CASE WHEN currency <> 'XMR' THEN now() END
        FROM eligible GROUP BY ps, currency, verifier, jt
        ORDER BY ps, verifier, currency, jt NULLS FIRST
        RETURNING id, period_start, currency, payee, job_type, status
    ), stamped AS (
        UPDATE compay.verifications v SET settlement_id = g.id
        FROM eligible e JOIN groups g
          ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
         AND g.job_type IS NOT DISTINCT FROM e.jt
        WHERE v.job_id = e.job_id AND v.verifier = e.verifier
    ), stamped_remote AS (
        UPDATE compay.clearing_rewards r SET settlement_id = g.id
        FROM eligible e JOIN groups g
          ON g.period_start = e.ps AND g.currency = e.currency AND g.payee = e.verifier
         AND g.job_type IS NOT DISTINCT FROM e.jt
        WHERE r.from_shard = e.from_shard AND r.event_id = e.event_id
    )
    SELECT v_ids || array_agg(id) INTO v_ids FROM groups WHERE status = 'completed';
    RETURN QUERY
    SELECT u.id FROM (SELECT unnest(v_ids) AS id
                      UNION ALL
                      SELECT compay.process_due_settlements(as_of)) u
    ORDER BY u.id;
END $$;

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

-- Issue 18 (rewards18): an XMR reward of a verifier on another shard is an
-- earning of the verifier's shard only (compay.earning_events reads
-- compay.clearing_rewards there and leaves it out on the job's shard), and
-- compay.withdrawable keeps it back until it is settled.
CREATE OR REPLACE FUNCTION compay.earning_events(node_id text)
RETURNS TABLE (earned_at timestamptz, kind text, purpose text, job_id bigint, task_id text,
               job_type text, payer text, payment_id bigint, currency text,
               amount compay.credit, refunded compay.credit, earned compay.credit,
               settlement_id bigint, payout_ids bigint[], tx_hashes text[], status text)
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    WITH events AS (
        SELECT p.completed_at AS earned_at, 'payment'::text AS kind, 'compute'::text AS purpose,
               j.id AS job_id, p.task_id, j.task_type AS job_type, p.from_node AS payer,
               p.id AS payment_id, p.currency, p.amount,
               coalesce((SELECT compay.sum(t.amount) FROM compay.transfers t
                         WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'),
                        '0'::compay.credit) AS refunded,
               compay.payment_settlement(p) AS settlement_id, p.status = 'disputed' AS disputed
        FROM compay.payments p
        LEFT JOIN compay.jobs j ON j.task_id = p.task_id
        WHERE p.to_node = $1 AND p.status IN ('completed', 'disputed', 'refunded')
        UNION ALL
        SELECT v.rewarded_at, 'reward', 'verification', j.id, j.task_id, j.task_type, '$rewards',
               NULL, j.currency, v.reward_amount, '0'::compay.credit, v.settlement_id, false
        FROM compay.verifications v
        JOIN compay.jobs j ON j.id = v.job_id
        WHERE v.verifier = $1 AND v.reward_amount OPERATOR(compay.>) '0'::compay.credit
          AND v.rewarded_at IS NOT NULL
          -- On a shard, an XMR reward of a verifier of another shard is that
          -- shard's earning (compay.clearing_rewards, below), not this one's.
          AND NOT (j.currency = 'XMR' AND EXISTS (
                   SELECT 1 FROM compay.shard_config c
                   WHERE (pg_catalog.hashtext(v.verifier) & (c.partitions - 1)) % c.shards
                         <> c.shard))
        UNION ALL
        SELECT r.rewarded_at, 'reward', 'verification', NULL, r.task_id, r.job_type, '$rewards',
               NULL, r.currency, r.reward_amount, '0'::compay.credit, r.settlement_id, false
        FROM compay.clearing_rewards r
        WHERE r.verifier = $1
    )
    SELECT e.earned_at, e.kind, e.purpose, e.job_id, e.task_id, e.job_type, e.payer,
           e.payment_id, e.currency, e.amount, e.refunded, e.amount OPERATOR(compay.-) e.refunded,
           e.settlement_id, o.payout_ids, o.tx_hashes,
           CASE WHEN e.refunded OPERATOR(compay.>) '0'::compay.credit
                     AND e.refunded OPERATOR(compay.=) e.amount THEN 'refunded'
                WHEN e.disputed THEN 'disputed'
                WHEN e.settlement_id IS NULL THEN 'pending'
                WHEN s.status = 'completed' THEN 'paid'
                WHEN o.in_flight THEN 'in_flight'
                ELSE 'settled' END
    FROM events e
    LEFT JOIN compay.settlements s ON s.id = e.settlement_id
    LEFT JOIN LATERAL (
        SELECT array_agg(t.id ORDER BY t.id) AS payout_ids,
               array_agg(t.tx_hash ORDER BY t.id) AS tx_hashes,
               coalesce(bool_or(t.status IN ('built', 'relayed')), false) AS in_flight
        FROM compay.payout_parts pp
        JOIN compay.payout_transactions t ON t.id = pp.payout_id
        WHERE pp.settlement_id = e.settlement_id AND t.status <> 'failed'
    ) o ON true
$$;

CREATE OR REPLACE FUNCTION compay.withdrawable(node_id text) RETURNS compay.credit
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT compay.require_node($1, false);
    SELECT compay.credit_from_atomic(greatest(0,
        coalesce((SELECT compay.atomic(a.balance) - compay.atomic(a.reserved)
                  FROM compay.accounts a WHERE a.node_id = $1 AND a.currency = 'XMR'), 0)
        - coalesce((SELECT sum(compay.atomic(p.amount) - coalesce(
                              (SELECT compay.sum_atomic(t.amount) FROM compay.transfers t
                               WHERE t.refund_of = p.transfer_id AND t.kind = 'refund'), 0))
                    FROM compay.payments p
                    WHERE p.to_node = $1 AND p.currency = 'XMR' AND compay.payment_settlement(p) IS NULL
                      AND p.status IN ('completed', 'disputed', 'refunded')), 0)
        - coalesce((SELECT compay.sum_atomic(v.reward_amount)
                    FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
                    WHERE v.verifier = $1 AND j.currency = 'XMR' AND v.settlement_id IS NULL
                      AND v.reward_amount > '0'), 0)
        - coalesce((SELECT compay.sum_atomic(r.reward_amount)
                    FROM compay.clearing_rewards r
                    WHERE r.verifier = $1 AND r.currency = 'XMR' AND r.settlement_id IS NULL), 0)
        - coalesce((SELECT sum(compay.atomic(c.amount) - compay.atomic(c.repaid))
                    FROM compay.clawbacks c
                    WHERE c.node_id = $1 AND c.currency = 'XMR' AND c.repaid_at IS NULL), 0)))
$$;
