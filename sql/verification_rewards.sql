-- Verification that pays honesty: the votes that match the outcome, pass
-- or fail, are rewarded from $rewards (base x compay.verification_reward_ratio
-- x the vote's quality factor, kept within 10-20 %); votes against it earn
-- nothing and lower the verifier's credit score.  Verifiers need the
-- minimum stake and score and stay within a daily vote limit; with
-- compay.verification_distinct_regions one vote per region counts, none
-- from the provider's.  Operators require a minimum score for assignment
-- and verification, and raise credit limits by an admin-set policy.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP ROLE IF EXISTS vr_node;
RESET client_min_messages;

CREATE OR REPLACE FUNCTION show(VARIADIC nodes text[]) RETURNS TABLE (node text,
    balance compay.credit, score numeric)
LANGUAGE sql AS $$
    SELECT node_id, balance, credit_score FROM compay.accounts
    WHERE node_id = ANY (nodes) AND currency = 'CREDIT' ORDER BY node_id
$$;
CREATE OR REPLACE FUNCTION ledger_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(ok) FROM compay.verify_ledger()
$$;
-- A completed job of the default model, 1 CPU-second: price 1100.
CREATE OR REPLACE FUNCTION ready(task text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM compay.submit_job(task, 'vr-r', 'render', '5000');
    PERFORM compay.assign_job(task, 'vr-p');
    PERFORM compay.record_usage(task, 'vr-p', 's1', now(), compay.metrics(cpu_seconds => 1));
    PERFORM compay.complete_job(task, now() - interval '1 minute', now());
END $$;
CREATE OR REPLACE FUNCTION votes(task text) RETURNS TABLE (verifier text, passed boolean,
    quality numeric, counted boolean, reward compay.credit)
LANGUAGE sql AS $$
    SELECT v.verifier, v.passed, v.quality_factor, v.counted, v.reward_amount
    FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id
    WHERE j.task_id = task ORDER BY v.verifier
$$;

-- Accounts without credit limits (for the policy in section 7).
SELECT open_account(n, 'CREDIT', '0') > 0 AS opened
FROM unnest(ARRAY['vr-r', 'vr-p', 'vr-a', 'vr-b', 'vr-c', 'vr-d', 'vr-e']) n;
SELECT deposit('vr-r', '100000') > 0 AS funded;

-- 1. Pass: vr-a (no factor: 1) and vr-c (1.5) pass, vr-b fails.  The
-- default model has no quality term: the price is 1100 whatever the
-- factors.  vr-a earns 15 % of 1100 = 165, vr-c 15 % x 1.5 = 22.5 %, kept
-- to 20 % = 220; vr-b nothing, and its score drops 5 % while the others
-- rise 1 % of the way to 1.
SELECT ready('vr-1');
SELECT verify_job('vr-1', 'vr-a', true);
SELECT verify_job('vr-1', 'vr-b', false);
SELECT verify_job('vr-1', 'vr-c', true, 1.5);
SELECT * FROM votes('vr-1');
SELECT amount, metadata->'verifiers' AS verifiers, metadata->'verifier_rewards' AS rewards
FROM payments WHERE task_id = 'vr-1';
SELECT * FROM show('vr-a', 'vr-b', 'vr-c', '$rewards');
SELECT ledger_ok();

-- 2. Fail: vr-a and vr-d (factor 0.8) fail, vr-b passes.  The escrow goes
-- back to vr-r in full; the fail voters are paid from $rewards on the
-- price the job would have had (1100): vr-a 165, vr-d 15 % x 0.8 = 12 % =
-- 132; vr-b, against the outcome, nothing and a lower score; the
-- provider's score drops.
SELECT ready('vr-2');
SELECT * FROM show('vr-r', 'vr-p');
SELECT verify_job('vr-2', 'vr-a', false);
SELECT verify_job('vr-2', 'vr-b', true);
SELECT verify_job('vr-2', 'vr-d', false, 0.8);
SELECT status, amount FROM jobs WHERE task_id = 'vr-2';
SELECT count(*) AS payments FROM payments WHERE task_id = 'vr-2';
SELECT * FROM votes('vr-2');
SELECT * FROM show('vr-r', 'vr-p', 'vr-a', 'vr-b', 'vr-d', '$rewards');
SELECT status FROM holds WHERE id = (SELECT escrow_hold_id FROM jobs WHERE task_id = 'vr-2');
SELECT ledger_ok();
-- Settlement gathers the rewards of failed jobs as of passed ones.
SELECT count(*) > 0 AS settled FROM run_settlement('hourly', now() + interval '2 hours');
SELECT payee, purpose, payment_count, total_amount FROM settlements
WHERE purpose = 'verification' ORDER BY payee;

-- 3. The ratio bounds the scaling: at 0.10 a factor of 0.8 still earns
-- 10 % (110), at 0.20 a factor of 1.2 still 20 % (220).
SET compay.verification_reward_ratio = '0.10';
SELECT ready('vr-3');
SELECT verify_job('vr-3', 'vr-a', true, 0.8), verify_job('vr-3', 'vr-c', true, 1.0);
SELECT * FROM votes('vr-3');
SET compay.verification_reward_ratio = '0.20';
SELECT ready('vr-4');
SELECT verify_job('vr-4', 'vr-a', true, 1.2), verify_job('vr-4', 'vr-c', true, 0.8);
SELECT * FROM votes('vr-4');
RESET compay.verification_reward_ratio;
SELECT ledger_ok();

-- 4. The daily limit: floor((compay.verifier_votes_per_day
-- + floor(stake / compay.verifier_stake_per_vote)) x 2 x score) votes in
-- any 24 hours.  vr-e (score 0.5, no stake) with base 1 may vote once; a
-- second vote is PY021 and writes nothing.
-- The score scales it: with base 10, vr-b (score below 0.5 after its votes
-- against the outcome) gets fewer than 10, vr-a (above 0.5) 10 or more.
SET compay.verifier_votes_per_day = 10;
SELECT node_id, credit_score, verifier_daily_limit(node_id) FROM accounts
WHERE node_id IN ('vr-a', 'vr-b', 'vr-e') ORDER BY node_id;
SET compay.verifier_votes_per_day = 1;
SELECT verifier_daily_limit('vr-e'), verifier_daily_limit('vr-a');
SELECT ready('vr-5');
SELECT ready('vr-6');
SELECT verify_job('vr-5', 'vr-e', true);
SELECT verify_job('vr-6', 'vr-e', true); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS votes_of_vr_e FROM verifications WHERE verifier = 'vr-e';
-- Stake raises it: 120 staked at 50 per vote adds 2, (1 + 2) x 2 x 0.5 = 3.
SET compay.verifier_stake_per_vote = '50';
SELECT deposit('vr-e', '120') > 0 AS funded, stake('vr-e', '120') AS staked;
SELECT verifier_daily_limit('vr-e');
SELECT verify_job('vr-6', 'vr-e', true);
SELECT count(*) AS votes_of_vr_e FROM verifications WHERE verifier = 'vr-e';
-- Votes older than 24 hours no longer count.
UPDATE verifications SET created_at = created_at - interval '25 hours' WHERE verifier = 'vr-e';
SET compay.verifier_stake_per_vote = '0';
SELECT ready('vr-7');
SELECT verify_job('vr-7', 'vr-e', true);
-- Bad settings are refused when set (22023); 0 turns the limit off.
SET compay.verifier_votes_per_day = -1; \echo :LAST_ERROR_SQLSTATE
SET compay.verifier_stake_per_vote = '-1'; \echo :LAST_ERROR_SQLSTATE
SET compay.verifier_stake_per_vote = 'abc'; \echo :LAST_ERROR_SQLSTATE
RESET compay.verifier_votes_per_day;
RESET compay.verifier_stake_per_vote;
SELECT verifier_daily_limit('vr-e') IS NULL AS no_limit;
SELECT verifier_daily_limit(NULL); \echo :LAST_ERROR_SQLSTATE

-- 5. Regions: a node declares its own (compay.set_node_region); bad names
-- are 22023, NULL clears it.
SELECT set_node_region('vr-p', 'eu-west');
SELECT set_node_region('vr-a', 'eu-west'), set_node_region('vr-b', 'us-east'),
       set_node_region('vr-c', 'us-east'), set_node_region('vr-d', 'ap-south');
SELECT set_node_region('vr-e', 'tmp'), set_node_region('vr-e', NULL);
SELECT set_node_region('vr-e', ''); \echo :LAST_ERROR_SQLSTATE
SELECT set_node_region('vr-e', 'a b'); \echo :LAST_ERROR_SQLSTATE
SELECT set_node_region('vr-e', repeat('x', 65)); \echo :LAST_ERROR_SQLSTATE
SELECT set_node_region(NULL, 'eu'); \echo :LAST_ERROR_SQLSTATE
SELECT set_node_region('$fees', 'eu'); \echo :LAST_ERROR_SQLSTATE
SELECT node_id, region FROM node_regions ORDER BY node_id;
-- With distinct regions, vr-a (the provider's region), vr-e (none) and
-- vr-c (us-east, already counted through vr-b) do not count; vr-d does,
-- and makes the quorum.  Only counted votes for the outcome are rewarded.
SET compay.verification_distinct_regions = on;
SELECT ready('vr-8');
SELECT verify_job('vr-8', 'vr-a', true);
SELECT verify_job('vr-8', 'vr-e', true);
SELECT verify_job('vr-8', 'vr-b', true);
SELECT verify_job('vr-8', 'vr-c', true);
SELECT verify_job('vr-8', 'vr-d', true);
SELECT * FROM votes('vr-8');
RESET compay.verification_distinct_regions;
SELECT ledger_ok();

-- 6. Minimum stake (compay.min_stake) and score: a verifier below them is
-- refused (PY011, PY020) and nothing is written; so is a provider below
-- compay.min_score_assign.
SELECT ready('vr-9');
SET compay.min_stake = '100';
SELECT verify_job('vr-9', 'vr-a', true); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('vr-9', 'vr-e', true);        -- 120 staked
RESET compay.min_stake;
SELECT * FROM show('vr-b');
SET compay.min_score_verify = 0.5;
SELECT verify_job('vr-9', 'vr-b', false); \echo :LAST_ERROR_SQLSTATE
SELECT verify_job('vr-9', 'vr-new', false);        -- no account: the new score 0.5
SELECT count(*) AS votes FROM verifications v JOIN jobs j ON j.id = v.job_id
WHERE j.task_id = 'vr-9';
RESET compay.min_score_verify;
SELECT submit_job('vr-10', 'vr-r', 'render', '5000') > 0 AS submitted;
SET compay.min_score_assign = 0.9;
SELECT assign_job('vr-10', 'vr-p'); \echo :LAST_ERROR_SQLSTATE
SELECT status, provider FROM jobs WHERE task_id = 'vr-10';
SET compay.min_score_assign = 0.4;
SELECT assign_job('vr-10', 'vr-p');
RESET compay.min_score_assign;
SET compay.min_score_verify = 1.5; \echo :LAST_ERROR_SQLSTATE
SET compay.min_score_assign = -0.1; \echo :LAST_ERROR_SQLSTATE

-- 7. The credit-limit policy: compay_admin sets the rows and applies them;
-- each account gets the highest limit its score and paid jobs reach,
-- never a lower one, journaled in compay.admin_journal.
INSERT INTO credit_limit_policy (currency, min_score, min_paid_jobs, credit_limit)
VALUES ('CREDIT', 0.45, 0, '10'), ('CREDIT', 0.5, 1, '100'), ('CREDIT', 0.51, 3, '1000'),
       ('CREDIT', 0.9, 0, '50000');
\set VERBOSITY terse
INSERT INTO credit_limit_policy VALUES ('CREDIT', 1.5, 0, '1'); \echo :LAST_ERROR_SQLSTATE
INSERT INTO credit_limit_policy VALUES ('CREDIT', 0.5, -1, '1'); \echo :LAST_ERROR_SQLSTATE
INSERT INTO credit_limit_policy VALUES ('CREDIT', 0.5, 0, '-1'); \echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT set_credit_limit('vr-c', '5000');
SELECT a.node_id, a.credit_score,
       (SELECT count(*) FROM jobs j WHERE j.status = 'paid' AND a.node_id IN (j.requester, j.provider)) AS paid_jobs,
       a.credit_limit
FROM accounts a WHERE a.node_id IN ('vr-r', 'vr-p', 'vr-b', 'vr-c') AND a.currency = 'CREDIT'
ORDER BY a.node_id;
CREATE ROLE vr_node LOGIN IN ROLE compay_node;
SET ROLE compay_app;
SELECT * FROM apply_credit_limit_policy(); \echo :LAST_ERROR_SQLSTATE
INSERT INTO credit_limit_policy VALUES ('CREDIT', 0, 0, '1'); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE compay_admin;
SELECT * FROM apply_credit_limit_policy('CREDIT') ORDER BY node_id;
SELECT * FROM apply_credit_limit_policy('CREDIT');
SELECT * FROM apply_credit_limit_policy(NULL); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT node_id, amount, role_name FROM admin_journal
WHERE action = 'credit_limit' AND role_name = 'compay_admin' ORDER BY id;
-- A node role declares its own region only (42501 for another node's).
SELECT add_node_role('vr_node', 'vr-e') AS mapped;
SET ROLE vr_node;
SELECT set_node_region('vr-e', 'sa-east');
SELECT set_node_region('vr-a', 'sa-east'); \echo :LAST_ERROR_SQLSTATE
SELECT verifier_daily_limit('vr-e') IS NULL AS no_limit;
RESET ROLE;
SELECT node_id, region FROM node_regions WHERE node_id IN ('vr-a', 'vr-e') ORDER BY node_id;

SELECT * FROM verify_ledger();
DROP ROLE vr_node;
