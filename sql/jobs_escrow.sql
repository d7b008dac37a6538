-- Jobs with escrow: submit (escrow hold), stake and assign, complete,
-- verify by quorum, then payment from the escrow with verifier rewards;
-- failure, timeout, duplicate votes, parties who try to verify, stakes too
-- low.  Balances and verify_ledger() are checked after each step.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE OR REPLACE FUNCTION show(VARIADIC nodes text[]) RETURNS TABLE (node text, currency text,
    balance compay.credit, reserved compay.credit, score numeric)
LANGUAGE sql AS $$
    SELECT node_id, currency, balance, reserved, credit_score FROM compay.accounts
    WHERE node_id = ANY (nodes) ORDER BY currency, node_id
$$;
CREATE OR REPLACE FUNCTION ledger_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(ok) FROM compay.verify_ledger()
$$;

-- Accounts without credit limits, so that only deposits can be spent.
SELECT open_account(n, 'CREDIT', '0') > 0 AS opened FROM unnest(ARRAY['alice', 'dave']) n;
SELECT deposit('alice', '10000') > 0 AS funded;

-- 1. The whole flow, metered task type 'render' (the default model).
SELECT submit_job('job-1', 'alice', 'render', '5000', '1 hour') AS job1 \gset
SELECT status, max_amount, escrow_hold_id IS NOT NULL AS escrowed, timeout_at > now() AS open
FROM jobs WHERE id = :job1;
-- The escrow is a hold: 5000 reserved, nothing moved.
SELECT * FROM show('alice');
-- Submitting again with the same arguments is a retry; other ones are not (PY005).
SELECT submit_job('job-1', 'alice', 'render', '5000', '1 hour') = :job1 AS same_job;
SELECT submit_job('job-1', 'alice', 'render', '4000'); \echo :LAST_ERROR_SQLSTATE
SELECT reserved FROM balance('alice');
-- Bad submissions.
SELECT submit_job('job-x', 'alice', 'render', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('job-x', 'alice', 'render', '5', '-1 hour'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job(NULL, 'alice', 'render', '5'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('', 'alice', 'render', '5'); \echo :LAST_ERROR_SQLSTATE
SELECT submit_job('job-x', 'alice', 'render', '5000.000000000001'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS jobs FROM jobs;

-- Usage cannot come before a provider is assigned.
SELECT record_usage('job-1', 'bob', 's0', now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
-- Assign: the provider is not the requester; verifying needs completion.
SELECT assign_job('job-1', 'alice'); \echo :LAST_ERROR_SQLSTATE
SELECT assign_job('job-1', '$fees'); \echo :LAST_ERROR_SQLSTATE
SELECT assign_job('no-such-job', 'bob'); \echo :LAST_ERROR_SQLSTATE
SELECT assign_job('job-1', 'bob');
SELECT assign_job('job-1', 'bob');                  -- a retry changes nothing
SELECT assign_job('job-1', 'carol'); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('job-1', 'v1', true); \echo :LAST_ERROR_SQLSTATE

-- bob reports 1.5 CPU-seconds and 0.5 GB-hours of memory in two samples.
SELECT record_usage('job-1', 'bob', 's1', now(), metrics(cpu_seconds => 1.25));
SELECT record_usage('job-1', 'bob', 's2', now(), metrics(cpu_seconds => 0.25, memory_byte_hours => 536870912));
SELECT * FROM task_metrics('job-1');

-- Complete: times must be in order, utilization within [0, 1].
\set VERBOSITY terse
SELECT complete_job('job-1', now(), now() - interval '1 second'); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT complete_job('job-1', now() - interval '1 hour', now(), 1.5); \echo :LAST_ERROR_SQLSTATE
SELECT complete_job('job-1', now() - interval '1 hour', now(), 0.9);
SELECT complete_job('job-1', now() - interval '1 hour', now()); \echo :LAST_ERROR_SQLSTATE

-- Verify: neither party may vote; factors within [0.8, 1.5]; one vote each.
SELECT verify_job('job-1', 'bob', true); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('job-1', 'alice', true); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('job-1', 'v1', true, 2.0); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('job-1', 'v1', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('job-1', 'v1', true);
SELECT verify_job('job-1', 'v1', true); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('job-1', 'v1', false); \echo :LAST_ERROR_SQLSTATE
-- One failing vote does not decide; the second pass reaches the quorum of 2.
SELECT verify_job('job-1', 'v2', false);
SELECT verify_job('job-1', 'v3', true);
-- Paid: 100 + 1.5 x 1000 + 0.5 x 100 = 1650 to bob, the rest of the escrow
-- back to alice; v1 and v3 get 15 % of 1650 = 247.5 each from $rewards and
-- a higher score; v2, against the outcome, nothing and a lower score.
SELECT status, amount FROM jobs WHERE id = :job1;
SELECT task_id, from_node, to_node, amount, currency, method, status,
       completed_at IS NOT NULL AS completed, transfer_id IS NOT NULL AS has_transfer,
       metadata->'verifiers' AS verifiers, metadata->'verifier_rewards' AS rewards
FROM payments WHERE task_id = 'job-1';
SELECT verifier, passed, reward_amount FROM verifications WHERE job_id = :job1 ORDER BY verifier;
SELECT * FROM show('alice', 'bob', 'v1', 'v2', 'v3', '$rewards');
SELECT status, remaining FROM holds WHERE id = (SELECT escrow_hold_id FROM jobs WHERE id = :job1);
SELECT ledger_ok();
-- Paid is final: no more votes, no more usage, no payment by another path.
SELECT verify_job('job-1', 'v4', true); \echo :LAST_ERROR_SQLSTATE
SELECT record_usage('job-1', 'bob', 's3', now(), metrics(cpu_seconds => 1)); \echo :LAST_ERROR_SQLSTATE
SELECT id, status FROM process_task_payment('job-1');

-- 2. The escrow caps what it pays: 2 CPU-seconds cost 2100, the escrow is
-- 1000; the shortfall of 1100 is charged to alice at once (she has the
-- funds) as a second payment of the task (sql/job_shortfall.sql has the rest).
SELECT submit_job('job-2', 'alice', 'render', '1000') > 0 AS submitted;
SELECT assign_job('job-2', 'bob');
SELECT record_usage('job-2', 'bob', 's1', now(), metrics(cpu_seconds => 2));
SELECT complete_job('job-2', now() - interval '1 minute', now());
SELECT verify_job('job-2', 'v1', true);
SELECT verify_job('job-2', 'v2', true);
SELECT amount, metadata ? 'shortfall_id' AS shortfall FROM payments WHERE task_id = 'job-2' ORDER BY id;
SELECT amount, collected, collected_at IS NOT NULL AS collected_all FROM shortfalls;
SELECT * FROM show('alice', 'bob', '$rewards');
SELECT ledger_ok();

-- 3. Failed verification: the quorum of failures returns the escrow in
-- full, and the provider's credit score drops 5 %.
SELECT submit_job('job-3', 'alice', 'render', '3000') > 0 AS submitted;
SELECT assign_job('job-3', 'bob');
SELECT complete_job('job-3', now() - interval '1 minute', now());
SELECT * FROM show('alice', 'bob');
SELECT verify_job('job-3', 'v1', false);
SELECT verify_job('job-3', 'v2', true);
SELECT verify_job('job-3', 'v3', false);
SELECT status, amount FROM jobs WHERE task_id = 'job-3';
SELECT count(*) AS payments FROM payments WHERE task_id = 'job-3';
SELECT * FROM show('alice', 'bob');
SELECT ledger_ok();
SELECT verify_job('job-3', 'v4', true); \echo :LAST_ERROR_SQLSTATE

-- 4. Timeout: compay.expire_jobs() releases the escrow of every open job
-- past its timeout, whatever its state; late calls are refused (55000).
SELECT submit_job('job-4', 'alice', 'render', '700') > 0 AS submitted;
SELECT submit_job('job-5', 'alice', 'render', '800') > 0 AS submitted;
SELECT assign_job('job-5', 'bob');
SELECT submit_job('job-6', 'alice', 'render', '900') > 0 AS submitted;
SELECT reserved FROM balance('alice');
-- Time passes for jobs 4 and 5 (their timeout is moved into the past).
UPDATE jobs SET timeout_at = now() - interval '1 second' WHERE task_id IN ('job-4', 'job-5');
\set VERBOSITY terse
SELECT complete_job('job-5', now() - interval '1 minute', now()); \echo :LAST_ERROR_SQLSTATE
SELECT assign_job('job-4', 'bob'); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT expire_jobs();
SELECT expire_jobs();
SELECT task_id, status FROM jobs WHERE task_id IN ('job-4', 'job-5', 'job-6') ORDER BY task_id;
SELECT reserved FROM balance('alice');
SELECT ledger_ok();
SELECT verify_job('job-4', 'v1', true); \echo :LAST_ERROR_SQLSTATE

-- 5. Stakes: with compay.min_stake set, only a provider with enough stake
-- is assigned (PY011); stake is held on its account; no unstaking below
-- the minimum while one of its jobs is open (55000).
SET compay.min_stake = '100';
SELECT assign_job('job-6', 'dave'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit('dave', '500') > 0 AS funded;
SELECT stake('dave', '60');
SELECT assign_job('job-6', 'dave'); \echo :LAST_ERROR_SQLSTATE
SELECT stake('dave', '60');
SELECT * FROM show('dave');
SELECT amount, hold_id IS NOT NULL AS held FROM stakes WHERE node_id = 'dave';
SELECT assign_job('job-6', 'dave');
SELECT unstake('dave', '30'); \echo :LAST_ERROR_SQLSTATE
SELECT unstake('dave', '20');
SELECT unstake('dave', '1000'); \echo :LAST_ERROR_SQLSTATE
SELECT stake('dave', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT stake('dave', '10000'); \echo :LAST_ERROR_SQLSTATE
SELECT unstake('nobody', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM show('dave');
-- Once the job is decided, dave may unstake everything.  Its verifiers
-- need the minimum stake too (PY011).
SELECT complete_job('job-6', now() - interval '1 minute', now());
SELECT verify_job('job-6', 'v1', true); \echo :LAST_ERROR_SQLSTATE
SELECT deposit(v, '100') > 0 AS funded, stake(v, '100') AS staked FROM unnest(ARRAY['v1', 'v2']) v;
SELECT verify_job('job-6', 'v1', true);
SELECT verify_job('job-6', 'v2', true);
SELECT unstake('dave', '100');
SELECT amount, hold_id FROM stakes WHERE node_id = 'dave';
SELECT * FROM show('dave');
RESET compay.min_stake;
SET compay.min_stake = '-1'; \echo :LAST_ERROR_SQLSTATE
SELECT ledger_ok();

-- 6. A Monero job type, paid in XMR by the reward formula: 24 hours of
-- Fine-tuning at GPU utilization 5/7 (factor 0.5 + 0.7 x 5/7 = 1.0), with
-- the verifiers' quality factors 1.0 and 1.2 (mean 1.1):
-- 0.0012 x 24 x 1.0 x 1.1 = 0.03168 XMR, the published figure.
SELECT admin_deposit('xreq', '1', 'XMR', 'test funds') > 0 AS funded;
SELECT submit_job('xmr-1', 'xreq', 'Fine-tuning', '0.05') > 0 AS submitted;
SELECT currency FROM jobs WHERE task_id = 'xmr-1';
SELECT assign_job('xmr-1', 'gpu-node');
SELECT complete_job('xmr-1', '2026-11-01 00:00+00', '2026-11-02 00:00+00', 0.714285714285714285714285714286);
SELECT verify_job('xmr-1', 'xv1', true, 1.0);
SELECT verify_job('xmr-1', 'xv2', true, 1.2);
SELECT amount, currency, method, status, metadata->'verifier_rewards' AS rewards
FROM payments WHERE task_id = 'xmr-1';
SELECT * FROM show('xreq', 'gpu-node', 'xv1', 'xv2', '$rewards') WHERE currency = 'XMR';
SELECT ledger_ok();

-- 7. Settings: the quorum and the reward ratio (0.10 to 0.20).
SET compay.verification_quorum = 1;
SET compay.verification_reward_ratio = '0.1';
SELECT submit_job('job-7', 'alice', 'render', '500') > 0 AS submitted;
SELECT assign_job('job-7', 'bob');
SELECT complete_job('job-7', now() - interval '1 minute', now());
SELECT verify_job('job-7', 'v9', true);
SELECT p.amount, v.reward_amount FROM payments p JOIN jobs j ON j.task_id = p.task_id
JOIN verifications v ON v.job_id = j.id WHERE p.task_id = 'job-7';
RESET compay.verification_quorum;
RESET compay.verification_reward_ratio;
SET compay.verification_reward_ratio = '0.25'; \echo :LAST_ERROR_SQLSTATE
SET compay.verification_reward_ratio = '0.09'; \echo :LAST_ERROR_SQLSTATE
SET compay.verification_quorum = 0; \echo :LAST_ERROR_SQLSTATE
SELECT ledger_ok();
