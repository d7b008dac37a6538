--------------------------------------------------------------------------
-- Jobs: escrow, metering, verification, task payments, disputes.
--
-- The orchestration is PL/pgSQL; every money movement is one call of a C
-- ledger function.  Lock order: the job row (FOR UPDATE) first, then the
-- stake row, then the ledger's accounts and holds inside that one C call.
-- Nothing locks a job row while holding account locks, so the order holds
-- across the whole extension.
--------------------------------------------------------------------------

CREATE TYPE compay.job_status AS ENUM
    ('submitted', 'assigned', 'completed', 'paid', 'failed', 'timed_out');
CREATE TYPE compay.payment_method AS ENUM ('credit', 'barter', 'crypto', 'fiat');
CREATE TYPE compay.payment_status AS ENUM
    ('pending', 'processing', 'completed', 'failed', 'refunded', 'disputed');

CREATE SEQUENCE compay.jobs_id_seq;
CREATE TABLE compay.jobs (
    id              bigint PRIMARY KEY DEFAULT pg_catalog.nextval('compay.jobs_id_seq'),
    task_id         text NOT NULL UNIQUE,
    requester       text NOT NULL,
    provider        text,
    task_type       text NOT NULL,
    currency        text NOT NULL,
    status          compay.job_status NOT NULL,
    max_amount      compay.credit,          -- the escrow; NULL: a task without escrow
    escrow_hold_id  bigint,
    timeout_at      timestamptz,
    started_at      timestamptz,
    completed_at    timestamptz,
    gpu_utilization numeric,
    amount          compay.credit,          -- what was paid
    payment_id      bigint,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    timeout         interval,               -- as submitted: a retry must match it
    payment_error   text,                   -- why the payment at quorum failed
    CONSTRAINT jobs_escrow CHECK ((max_amount IS NULL) = (escrow_hold_id IS NULL)),
    CONSTRAINT jobs_parties CHECK (provider IS NULL OR provider <> requester),
    CONSTRAINT jobs_times CHECK (completed_at IS NULL OR completed_at >= started_at)
);
ALTER SEQUENCE compay.jobs_id_seq OWNED BY compay.jobs.id;
CREATE INDEX jobs_open_timeout ON compay.jobs (timeout_at)
    WHERE status IN ('submitted', 'assigned', 'completed') AND timeout_at IS NOT NULL;
CREATE INDEX jobs_open_provider ON compay.jobs (provider)
    WHERE status IN ('submitted', 'assigned', 'completed');
COMMENT ON TABLE compay.jobs IS
    'compute jobs and tasks: requester, provider, escrow hold, state, what was paid';

CREATE TABLE compay.verifications (
    job_id         bigint NOT NULL REFERENCES compay.jobs (id),
    verifier       text NOT NULL,
    passed         boolean NOT NULL,
    quality_factor numeric,
    reward_amount  compay.credit,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rewarded_at    timestamptz,             -- when the reward moved from $rewards
    settlement_id  bigint,                  -- the settlement that gathered the reward
    region         text,                    -- the verifier's region when it voted
    counted        boolean NOT NULL DEFAULT true,   -- counted toward the quorum
    PRIMARY KEY (job_id, verifier)
);
CREATE INDEX verifications_unsettled ON compay.verifications (rewarded_at)
    WHERE settlement_id IS NULL AND reward_amount > '0';
CREATE INDEX verifications_settlement ON compay.verifications (settlement_id)
    WHERE settlement_id IS NOT NULL;
-- A verifier's votes of the last 24 hours (its daily limit).
CREATE INDEX verifications_verifier ON compay.verifications (verifier, created_at);
COMMENT ON TABLE compay.verifications IS 'one vote per verifier and job';

CREATE TABLE compay.usage_samples (
    job_id             bigint NOT NULL REFERENCES compay.jobs (id),
    sample_id          text NOT NULL,
    node_id            text NOT NULL,
    sampled_at         timestamptz NOT NULL,
    cpu_seconds        numeric NOT NULL,
    memory_byte_hours  numeric NOT NULL,
    storage_byte_hours numeric NOT NULL,
    network_bytes_in   bigint NOT NULL,
    network_bytes_out  bigint NOT NULL,
    gpu_seconds        numeric NOT NULL,
    custom             jsonb,
    recorded_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (job_id, sample_id)
);
COMMENT ON TABLE compay.usage_samples IS
    'usage pushed by nodes: each sample is the usage since the node''s previous one';

CREATE TABLE compay.stakes (
    node_id    text NOT NULL,
    currency   text NOT NULL,
    amount     compay.credit NOT NULL,
    hold_id    bigint,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (node_id, currency),
    CONSTRAINT stakes_amount CHECK (amount >= '0' AND (amount = '0') = (hold_id IS NULL))
);
COMMENT ON TABLE compay.stakes IS 'stake of each provider, held on its account by one ledger hold';

SELECT pg_catalog.pg_extension_config_dump('compay.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('compay.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('compay.verifications', '');
SELECT pg_catalog.pg_extension_config_dump('compay.usage_samples', '');
SELECT pg_catalog.pg_extension_config_dump('compay.stakes', '');
REVOKE ALL ON compay.jobs, compay.verifications, compay.usage_samples, compay.stakes,
    compay.jobs_id_seq FROM PUBLIC;
GRANT SELECT ON compay.jobs, compay.verifications, compay.usage_samples, compay.stakes
    TO compay_reader;

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

-- One ledger call that pays a verified job (src/ledger_holds.c).
CREATE FUNCTION compay.settle_escrow(hold_id bigint, provider text, amount compay.credit,
    verifiers text[], verifier_reward compay.credit, reference text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_settle_escrow'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
REVOKE ALL ON FUNCTION compay.settle_escrow(bigint, text, compay.credit, text[], compay.credit, text)
    FROM PUBLIC;
-- The same with a reward per verifier (rewards[i] to verifiers[i]).
CREATE FUNCTION compay.settle_job(hold_id bigint, provider text, amount compay.credit,
    verifiers text[], rewards compay.credit[], reference text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'compay_settle_job'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
REVOKE ALL ON FUNCTION compay.settle_job(bigint, text, compay.credit, text[], compay.credit[], text)
    FROM PUBLIC;

CREATE FUNCTION compay.compute_reward(job_type text, duration interval,
    utilization_factor numeric, quality_factors numeric[]) RETURNS compay.credit
    AS 'MODULE_PATHNAME', 'compay_compute_reward_mean'
    LANGUAGE C STABLE PARALLEL SAFE SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.compute_reward(text, interval, numeric, numeric[]) IS
    'compute_reward() with the exact mean of several quality factors (empty or all NULL: the job type''s multiplier)';
REVOKE ALL ON FUNCTION compay.compute_reward(text, interval, numeric, numeric[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.compute_reward(text, interval, numeric, numeric[]) TO compay_reader;

CREATE FUNCTION compay.check_metrics(metrics compay.resource_metrics) RETURNS void
    AS 'MODULE_PATHNAME', 'compay_check_metrics'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION compay.check_metrics(compay.resource_metrics) IS
    'raises 22023 unless every quantity is a finite number >= 0 and custom is an object of such numbers';

CREATE FUNCTION compay.check_price(metrics compay.resource_metrics, task_type text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'compay_check_price'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION compay.check_price(compay.resource_metrics, text) IS
    'raises 22023 unless price() can price the metrics for the task type: known custom metrics, a price (before any volume discount) within the credit range';
REVOKE ALL ON FUNCTION compay.check_price(compay.resource_metrics, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.check_price(compay.resource_metrics, text) TO compay_reader;

-- The job row, locked; PY010 if there is none.
CREATE FUNCTION compay.lock_job(task_id text, share boolean DEFAULT false) RETURNS compay.jobs
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

-- 55000 if the job's timeout has passed; compay.expire_jobs() releases it.
CREATE FUNCTION compay.require_not_timed_out(j compay.jobs) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF j.timeout_at IS NOT NULL AND j.timeout_at <= now() THEN
        RAISE EXCEPTION 'job "%" timed out', left(j.task_id, 64)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Its timeout was %s.', j.timeout_at),
                  HINT = 'compay.expire_jobs() releases its escrow to the requester.';
    END IF;
END $$;

CREATE FUNCTION compay.require_job_status(j compay.jobs, wanted compay.job_status, action text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF j.status <> wanted THEN
        RAISE EXCEPTION 'cannot % job "%": it is %', action, left(j.task_id, 64), j.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This needs a job in state %s.', wanted);
    END IF;
END $$;

-- The currency a task type is paid in: its job type's, else its model's.
CREATE FUNCTION compay.task_currency(task_type text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT c FROM (
        SELECT 1, currency FROM compay.job_types WHERE job_type = $1
        UNION ALL
        SELECT 2, m.currency FROM compay.task_type_models t
        JOIN compay.pricing_models m ON m.id = t.model_id WHERE t.task_type = $1
        UNION ALL
        SELECT 3, currency FROM compay.pricing_models WHERE name = 'default') s (o, c)
    ORDER BY o LIMIT 1
$$;

-- Moves a node's credit score after a payment outcome, as the ledger does:
-- up 1 % of the way to 1, or down 5 %.
CREATE FUNCTION compay.move_credit_score(node_id text, currency text, up boolean) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    UPDATE compay.accounts
    SET credit_score = round(CASE WHEN up THEN credit_score + (1 - credit_score) * 0.01
                                  ELSE credit_score * 0.95 END, 5)
    WHERE accounts.node_id = $1 AND accounts.currency = $2 AND (flags & 1) = 0
$$;

CREATE FUNCTION compay.submit_job(task_id text, requester text, task_type text,
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
COMMENT ON FUNCTION compay.submit_job(text, text, text, compay.credit, interval) IS
    'records a job and holds max_amount of the requester as escrow until verification or timeout';

CREATE FUNCTION compay.submit_task(task_id text, requester text, provider text, task_type text)
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
COMMENT ON FUNCTION compay.submit_task(text, text, text, text) IS
    'records a task without escrow, already assigned; paid by compay.process_task_payment()';

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

CREATE FUNCTION compay.assign_job(task_id text, provider text) RETURNS void
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

CREATE FUNCTION compay.complete_job(task_id text, started_at timestamptz,
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
COMMENT ON FUNCTION compay.complete_job(text, timestamptz, timestamptz, numeric) IS
    'marks an assigned job completed, with its run time and GPU utilization (0..1)';

-- The task's usage totals with one more sample; 22023 unless they can
-- still be summed (task_metrics) and priced: byte counts within bigint,
-- and, for a task priced by its metered usage (not a job type's reward),
-- known custom metrics and a price within the credit range
-- (compay.check_price).  So what payment at quorum does with the sum is
-- checked as each sample arrives; the caller holds the job row, so no
-- sample slips in between.
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

-- In C (src/metering.c, through the table access method: src/metering_heap.c);
-- the checks of lock_job() and check_usage() above, in the same order, same errors.
CREATE FUNCTION compay.record_usage(task_id text, node_id text, sample_id text,
    sampled_at timestamptz, metrics compay.resource_metrics) RETURNS boolean
    AS 'MODULE_PATHNAME', 'compay_record_usage'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp;
COMMENT ON FUNCTION compay.record_usage(text, text, text, timestamptz, compay.resource_metrics) IS
    'records one usage sample (the usage since the node''s previous one); the same sample_id again changes nothing and returns false';

CREATE FUNCTION compay.task_metrics(task_id text) RETURNS compay.resource_metrics
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
COMMENT ON FUNCTION compay.task_metrics(text) IS 'the sum of a task''s usage samples';

-- What a completed job earns: compute_reward() for the Monero network's job
-- types (quality: the exact mean of the factors given), else price() of its
-- metered usage.  A NULL GPU utilization counts as utilization factor 1.
CREATE FUNCTION compay.job_amount(j compay.jobs, quality_factors numeric[]) RETURNS compay.credit
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM compay.job_types WHERE job_type = j.task_type) THEN
        RETURN compay.compute_reward(j.task_type, j.completed_at - j.started_at,
            CASE WHEN j.gpu_utilization IS NULL THEN 1.0
                 ELSE compay.utilization_factor(j.gpu_utilization) END,
            quality_factors);
    END IF;
    RETURN compay.price(compay.task_metrics(j.task_id), j.task_type, j.requester);
END $$;

-- A node's credit score in a currency; a node without an account there has
-- the score a new account starts with (0.5).
CREATE FUNCTION compay.node_score(node_id text, currency text) RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT coalesce((SELECT credit_score FROM compay.accounts a
                     WHERE a.node_id = $1 AND a.currency = $2), 0.5)
$$;

-- PY020 unless the node's credit score in the currency is at least the
-- setting's minimum (compay.min_score_assign, compay.min_score_verify).
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

-- PY011 unless the node has staked at least compay.min_stake in the
-- currency; takes the stake row FOR SHARE (after the job row).
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

-- How many votes a verifier may cast in any 24 hours: with
-- base = compay.verifier_votes_per_day and per = compay.verifier_stake_per_vote,
--   floor((base + floor(stake / per)) x 2 x credit score)
-- (no stake term when per is 0), the stake and score those of its account
-- in the currency.  A new node (score 0.5) without stake gets the base;
-- NULL: no limit (base 0).
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

-- The rewards of a decided job: each counted vote for the outcome earns
-- base x ratio x its quality factor (1 when it gave none), the product
-- kept within 0.10 to 0.20, exact, rounded once half to even; ratio is
-- compay.verification_reward_ratio.  Votes against the outcome, and votes
-- the quorum did not count, earn nothing.
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

-- The accounts a decided job moves money or scores on, locked in
-- ascending id as the ledger does: requester, provider and every voter.
-- The ledger calls that follow then lock no ordinary account anew, so two
-- jobs between the same nodes cannot deadlock; $rewards is not locked
-- here: the ledger takes a stripe row of it no one else holds
-- (src/ledger_stripes.c), so verified jobs do not queue on it.
CREATE FUNCTION compay.lock_job_accounts(j compay.jobs) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT 1 FROM compay.accounts a
    WHERE a.currency = j.currency
      AND (a.node_id IN (j.requester, j.provider)
           OR a.node_id IN (SELECT v.verifier FROM compay.verifications v WHERE v.job_id = j.id))
    ORDER BY a.id FOR UPDATE
$$;

-- After a job is decided: each counted vote for the outcome raises its
-- verifier's credit score, each vote against it lowers it
-- (compay.move_credit_score); a verifier without an account in the
-- currency gets one, so that the lower score sticks.
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

-- Pays a job whose quorum passed: one ledger call (compay.settle_job)
-- captures the verified price, at most the escrow, to the provider and
-- rewards the verifiers; a price above the escrow is a shortfall
-- (compay.record_shortfall).
CREATE FUNCTION compay.pay_verified_job(j compay.jobs) RETURNS bigint
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

-- Fails a job whose quorum failed: one ledger call (compay.settle_job with
-- amount 0) returns the escrow to the requester and pays the verifiers who
-- voted fail their rewards from $rewards, on the job's price (at most the
-- escrow; a price that cannot be computed rewards nothing).
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

CREATE FUNCTION compay.verify_job(task_id text, verifier text, passed boolean,
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

CREATE FUNCTION compay.expire_jobs() RETURNS integer
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
COMMENT ON FUNCTION compay.expire_jobs() IS
    'releases the escrow of every open job past its timeout to the requester; returns how many';

--------------------------------------------------------------------------
-- Shortfalls (the table is above): charged at once as far as the
-- requester can pay, the rest collected from its next deposits.
--------------------------------------------------------------------------

-- Collects amount of a shortfall: a transfer from the requester to the
-- provider and a completed payment of the task that settlement pays out.
-- The caller has locked the shortfall and both accounts.
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

-- Records what a verified job cost beyond its escrow and charges the
-- requester at once as much of it as its funds and credit limit allow
-- (compay.pay_verified_job, which has locked both accounts).
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

-- Before a deposit of node in currency locks its accounts (src/ledger_accounts.c):
-- locks the node's owed shortfalls (oldest 100), then the accounts their
-- collection moves money between, in ascending id ($external is not
-- locked here: the deposit takes a stripe row of it no one else holds,
-- src/ledger_stripes.c).  Returns whether the node owes any.
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
      AND (a.node_id = lock_shortfalls.node_id OR a.node_id = ANY (v_providers))
    ORDER BY a.id FOR UPDATE;
    RETURN true;
END $$;

-- After a deposit of amount to node (src/ledger_accounts.c): collects the
-- node's owed shortfalls in currency, oldest first, from at most that
-- amount (and what the node has available); returns what it collected.
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

-- What a node owes others and is owed by them, for the node itself.
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

--------------------------------------------------------------------------
-- Regions and the credit-limit policy.
--------------------------------------------------------------------------

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

-- Raises the credit limit of every ordinary account in currency to the
-- highest limit of the policy rows it qualifies for: credit score at least
-- min_score and at least min_paid_jobs paid jobs in that currency, as
-- requester or provider.  Never lowers a limit.  Each change goes through
-- compay.set_credit_limit (journaled in compay.admin_journal).
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

-- Internal helpers: no role may call them directly.
REVOKE ALL ON FUNCTION compay.lock_job(text, boolean), compay.require_not_timed_out(compay.jobs),
    compay.task_currency(text),
    compay.require_job_status(compay.jobs, compay.job_status, text),
    compay.move_credit_score(text, text, boolean), compay.job_amount(compay.jobs, numeric[]),
    compay.pay_verified_job(compay.jobs),
    compay.check_usage(compay.jobs, compay.resource_metrics),
    compay.node_score(text, text), compay.require_score(text, text, text, text),
    compay.require_stake(text, text),
    compay.verifier_rewards(compay.jobs, boolean, compay.credit),
    compay.lock_job_accounts(compay.jobs), compay.score_votes(compay.jobs, boolean),
    compay.fail_verified_job(compay.jobs),
    compay.collect_shortfall(bigint, compay.credit), compay.record_shortfall(compay.jobs, compay.credit),
    compay.lock_shortfalls(text, text), compay.collect_shortfalls(text, text, compay.credit)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION compay.submit_job(text, text, text, compay.credit, interval),
    compay.submit_task(text, text, text, text),
    compay.stake(text, compay.credit, text, text), compay.unstake(text, compay.credit, text, text),
    compay.assign_job(text, text),
    compay.complete_job(text, timestamptz, timestamptz, numeric),
    compay.record_usage(text, text, text, timestamptz, compay.resource_metrics),
    compay.task_metrics(text), compay.verify_job(text, text, boolean, numeric),
    compay.expire_jobs(),
    compay.verifier_daily_limit(text, text), compay.node_shortfalls(text, text),
    compay.set_node_region(text, text), compay.apply_credit_limit_policy(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.task_metrics(text) TO compay_reader;
GRANT EXECUTE ON FUNCTION compay.verifier_daily_limit(text, text),
    compay.node_shortfalls(text, text) TO compay_reader, compay_node;
GRANT EXECUTE ON FUNCTION compay.set_node_region(text, text) TO compay_app, compay_node;
GRANT EXECUTE ON FUNCTION compay.apply_credit_limit_policy(text) TO compay_admin;
GRANT EXECUTE ON FUNCTION compay.submit_job(text, text, text, compay.credit, interval),
    compay.submit_task(text, text, text, text),
    compay.stake(text, compay.credit, text, text), compay.unstake(text, compay.credit, text, text),
    compay.assign_job(text, text),
    compay.complete_job(text, timestamptz, timestamptz, numeric),
    compay.record_usage(text, text, text, timestamptz, compay.resource_metrics),
    compay.verify_job(text, text, boolean, numeric),
    compay.expire_jobs()
    TO compay_app;
-- A node role pushes the usage of the tasks it runs.
GRANT EXECUTE ON FUNCTION compay.record_usage(text, text, text, timestamptz, compay.resource_metrics)
    TO compay_node;
