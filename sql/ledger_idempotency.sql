-- Ledger: idempotency keys on every money-moving call.  A retry with the
-- same key and arguments returns the first result and moves nothing; other
-- arguments under the same key are PY005.
SET search_path = public, compay;
-- A fresh ledger, so that ids and totals do not depend on other tests.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
SELECT open_account('li_a', 'CREDIT', '0') IS NOT NULL AS ok;
SELECT deposit('li_a', '100', idempotency_key => 'li-dep-1') AS d1 \gset
SELECT deposit('li_a', '100', idempotency_key => 'li-dep-1') = :d1 AS same_result;
SELECT balance FROM balance('li_a');

SELECT transfer('li_a', 'li_b', '10', 'x', 'li-t-1') AS t1 \gset
SELECT transfer('li_a', 'li_b', '10', 'x', 'li-t-1') = :t1 AS same_result;
SELECT count(*) AS transfers_with_key FROM transfers WHERE idempotency_key = 'li-t-1';
SELECT balance FROM balance('li_a');
-- Same key, other arguments: each differing argument is a conflict.
SELECT transfer('li_a', 'li_b', '11', 'x', 'li-t-1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('li_a', 'li_c', '10', 'x', 'li-t-1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('li_a', 'li_b', '10', 'y', 'li-t-1'); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('li_a', 'li_b', '10', 'x', 'li-t-1', 'XMR'); \echo :LAST_ERROR_SQLSTATE
-- Same key on another operation is a conflict too.
SELECT deposit('li_a', '10', idempotency_key => 'li-t-1'); \echo :LAST_ERROR_SQLSTATE
-- A call that fails leaves its key unused: the retry can succeed.
SELECT transfer('li_a', 'li_b', '1000', idempotency_key => 'li-t-2'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS keys_after_failure FROM idempotency_keys WHERE key = 'li-t-2';
SELECT deposit('li_a', '1000') IS NOT NULL AS topped_up;
SELECT transfer('li_a', 'li_b', '1000', idempotency_key => 'li-t-2') IS NOT NULL AS retried;
-- Bad keys.
SELECT transfer('li_a', 'li_b', '1', idempotency_key => ''); \echo :LAST_ERROR_SQLSTATE
SELECT transfer('li_a', 'li_b', '1', idempotency_key => repeat('k', 201)); \echo :LAST_ERROR_SQLSTATE

-- Holds: reserve, capture and release.
SELECT reserve('li_a', '5', idempotency_key => 'li-r-1') AS h1 \gset
SELECT reserve('li_a', '5', idempotency_key => 'li-r-1') = :h1 AS same_hold;
SELECT count(*) FROM holds WHERE idempotency_key = 'li-r-1';
SELECT capture(:h1, 'li_b', '2', false, 'li-c-1') AS c1 \gset
SELECT capture(:h1, 'li_b', '2', false, 'li-c-1') = :c1 AS same_capture;
SELECT remaining FROM holds WHERE id = :h1;
SELECT capture(:h1, 'li_b', '3', false, 'li-c-1'); \echo :LAST_ERROR_SQLSTATE
SELECT release(:h1, 'li-rel-1');
SELECT release(:h1, 'li-rel-1');
SELECT status FROM holds WHERE id = :h1;
SELECT release(:h1); \echo :LAST_ERROR_SQLSTATE

-- Refunds and barter grants.
SELECT refund(:t1, '1', 'r', 'li-ref-1') AS r1 \gset
SELECT refund(:t1, '1', 'r', 'li-ref-1') = :r1 AS same_refund;
SELECT count(*) FROM transfers WHERE refund_of = :t1;
SELECT grant_barter('li_b', 'li_a', '3', NULL, 'li-g-1') AS g1 \gset
SELECT grant_barter('li_b', 'li_a', '3', NULL, 'li-g-1') = :g1 AS same_grant;
SELECT barter_balance('li_b', 'li_a');

-- transfer_batch: elements already done return their first ids.
SELECT array_agg(id ORDER BY ord) AS first_ids
FROM transfer_batch(ARRAY['li_a', 'li_a'], ARRAY['li_b', 'li_c'], ARRAY['1', '2']::credit[],
                    NULL, ARRAY['li-b-1', 'li-b-2']) WITH ORDINALITY AS x(id, ord) \gset
SELECT array_agg(id ORDER BY ord) = :'first_ids'::bigint[] AS same_ids
FROM transfer_batch(ARRAY['li_a', 'li_a'], ARRAY['li_b', 'li_c'], ARRAY['1', '2']::credit[],
                    NULL, ARRAY['li-b-1', 'li-b-2']) WITH ORDINALITY AS x(id, ord);
SELECT count(*) FROM transfers WHERE idempotency_key IN ('li-b-1', 'li-b-2');
SELECT * FROM transfer_batch(ARRAY['li_a'], ARRAY['li_b'], ARRAY['9']::credit[], NULL, ARRAY['li-b-1']); \echo :LAST_ERROR_SQLSTATE

-- A key given twice in one batch for the same transfer is done once and
-- both elements return its id; for different transfers it is PY005.
SELECT array_agg(id ORDER BY ord) AS dup_ids
FROM transfer_batch(ARRAY['li_a', 'li_a', 'li_a'], ARRAY['li_b', 'li_b', 'li_c'],
                    ARRAY['1', '1', '2']::credit[], NULL, ARRAY['li-d-1', 'li-d-1', 'li-d-2'])
     WITH ORDINALITY AS x(id, ord) \gset
SELECT (:'dup_ids'::bigint[])[1] = (:'dup_ids'::bigint[])[2] AS same_id,
       (:'dup_ids'::bigint[])[1] <> (:'dup_ids'::bigint[])[3] AS other_id;
SELECT count(*) FROM transfers WHERE idempotency_key IN ('li-d-1', 'li-d-2');
SELECT * FROM transfer_batch(ARRAY['li_a', 'li_a'], ARRAY['li_b', 'li_c'], ARRAY['1', '1']::credit[],
                             NULL, ARRAY['li-d-3', 'li-d-3']); \echo :LAST_ERROR_SQLSTATE

SELECT check_name, ok FROM verify_ledger();

-- The kept plans follow the extension when it is dropped and created again
-- in the same session.
\i sql/include/fresh_extension.sql
-- (The new extension has no accounts: li_a, the payer, is opened first.)
SELECT open_account('li_a') IS NOT NULL AS opened;
SELECT transfer('li_a', 'li_b', '1', idempotency_key => 'li-after-recreate') IS NOT NULL AS works_after_recreate;

-- stake and unstake take a key too: a retried stake('li_s', '10', ..., key)
-- stakes 10 once and returns the first call's stake; other arguments under
-- the key are PY005 (the numeric twin's 10 is the same request as '10');
-- an unstake retried after more staking still returns its first result.
SELECT deposit('li_s', '100') IS NOT NULL AS funded;
SELECT stake('li_s', '10', 'CREDIT', 'li-stake-1') AS first_stake;
SELECT stake('li_s', '10', 'CREDIT', 'li-stake-1') AS retried;
SELECT stake('li_s', 10, idempotency_key => 'li-stake-1') AS retried_numeric;
SELECT amount FROM stakes WHERE node_id = 'li_s';
SELECT reserved FROM balance('li_s');
SELECT stake('li_s', '11', 'CREDIT', 'li-stake-1'); \echo :LAST_ERROR_SQLSTATE
SELECT stake('li_b', '10', 'CREDIT', 'li-stake-1'); \echo :LAST_ERROR_SQLSTATE
SELECT unstake('li_s', '10', 'CREDIT', 'li-stake-1'); \echo :LAST_ERROR_SQLSTATE
SELECT stake('li_s', '5', 'CREDIT', 'li-stake-2') AS second_stake;
SELECT unstake('li_s', '3', 'CREDIT', 'li-unstake-1') AS unstaked;
SELECT stake('li_s', '1', 'CREDIT', 'li-stake-3') AS third_stake;
SELECT unstake('li_s', '3', 'CREDIT', 'li-unstake-1') AS unstake_retried;
SELECT unstake('li_s', 3, idempotency_key => 'li-unstake-1') AS unstake_retried_numeric;
SELECT unstake('li_s', '4', 'CREDIT', 'li-unstake-1'); \echo :LAST_ERROR_SQLSTATE
-- An unstake of everything returns 0 on a retry too; a failed call
-- (more than is staked) claims nothing, so its key is free afterwards.
SELECT unstake('li_s', '13', 'CREDIT', 'li-unstake-2') AS all_unstaked;
SELECT unstake('li_s', '13', 'CREDIT', 'li-unstake-2') AS all_unstaked_retried;
SELECT unstake('li_s', '1', 'CREDIT', 'li-unstake-3'); \echo :LAST_ERROR_SQLSTATE
SELECT stake('li_s', '1', 'CREDIT', 'li-unstake-3') AS key_free_after_failure;
SELECT amount, (SELECT reserved FROM balance('li_s')) AS reserved FROM stakes WHERE node_id = 'li_s';
SELECT stake('li_s', '1', 'CREDIT', ''); \echo :LAST_ERROR_SQLSTATE
SELECT operation, count(*) FROM idempotency_keys WHERE key LIKE 'li-%stake-%' GROUP BY 1 ORDER BY 1;
SELECT check_name, ok FROM verify_ledger();
