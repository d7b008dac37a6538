-- The demo's Monero part (run by test/demo.sh against a local regtest):
-- an XMR job from submission to verified payment, then settlement; the
-- worker then pays it out through the treasury wallet.
SET search_path = public, compay;

\echo
\echo '== 13. Monero: an XMR job, paid to the provider''s wallet on the local regtest'
SELECT set_payout_address('gpu-node-x', :'provider_address') AS address_kind;
SELECT admin_deposit('requester-x', '1', 'XMR', 'demo funds') > 0 AS funded_with_1_xmr;
SELECT submit_job('llm-finetune-1', 'requester-x', 'Fine-tuning', '0.05', '2 hours') AS job_id;
SELECT assign_job('llm-finetune-1', 'gpu-node-x');
SELECT complete_job('llm-finetune-1', now() - interval '24 hours', now(), 5.0 / 7);
SELECT verify_job('llm-finetune-1', 'verifier-a', true, 1.0) AS after_vote_1;
SELECT verify_job('llm-finetune-1', 'verifier-b', true, 1.2) AS after_vote_2;
\echo '24 h of Fine-tuning at utilization factor 1.0, quality (1.0 + 1.2) / 2: 0.0012 x 24 x 1.1 = 0.03168 XMR'
SELECT task_id, to_node, amount, currency, method, status FROM payments WHERE task_id = 'llm-finetune-1';
\echo 'the verifiers'' rewards are settled apart (purpose verification), for their verification addresses'
SELECT count(*) AS settlements FROM run_settlement('hourly', date_trunc('hour', now()) + interval '1 hour');
SELECT id, currency, payee, purpose, total_amount, status, earmark_hold_id IS NOT NULL AS earmarked
FROM settlements WHERE currency = 'XMR';
SELECT wake_worker();
