-- Payout addresses (checked for compay.monero_network when set) and payout
-- policies (a node's own, or the compay.* defaults), bad inputs beside
-- good ones.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
\set main_std '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'
\set main_sub '87uLzB6ynrvKyBeU5FLigJDdfYCMN9YueeFZH3S6XWhqTAD84p1CYZwHTQribxUCAvGParmc6hZPNEzfDMve9k5DESF2ucw'
\set main_int '4L1cF8Eauvy2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1qYs7cpBQtcTzyj287'
\set stage_std '57ZGYZRWf244UQYVjNWHBAV8zkP7CbnhCS2TtTgysaEKgesAuLxUW7HSyvBLmcNQBwQK1FJtryEsYVceN4Xp9zuDPkxk5xW'

SHOW compay.monero_network;
SELECT set_payout_address('gpu-1', :'main_std');
SELECT set_payout_address('gpu-1', :'main_sub', 'operational');
SELECT set_payout_address('gpu-1', :'main_int', 'verification');
SELECT node_id, purpose, kind, network, address = :'main_std' AS is_std
FROM payout_addresses ORDER BY purpose;
-- Setting a purpose again replaces its address.
SELECT set_payout_address('gpu-1', :'main_sub');
SELECT purpose, kind FROM payout_addresses WHERE node_id = 'gpu-1' ORDER BY purpose;
-- Bad addresses (22023, with the reason) change nothing.
SELECT set_payout_address('gpu-2', :'stage_std'); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_address('gpu-2', left(:'main_std', 94) || 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_address('gpu-2', 'not an address'); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_address('gpu-2', left(:'main_std', 60)); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_address('gpu-2', :'main_std', 'savings'); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_address('$fees', :'main_std'); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_address(NULL, :'main_std'); \echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS gpu2_addresses FROM payout_addresses WHERE node_id = 'gpu-2';
-- On stagenet, stagenet addresses are the valid ones.
SET compay.monero_network = 'stagenet';
SELECT set_payout_address('gpu-2', :'stage_std');
SELECT set_payout_address('gpu-3', :'main_std'); \echo :LAST_ERROR_SQLSTATE
SET compay.monero_network = 'regtest'; \echo :LAST_ERROR_SQLSTATE
RESET compay.monero_network;

-- Policies: the defaults (auto, 0.01 XMR, 24 h, 0.5 XMR a day), a node's
-- own, and NULL keeping a default.
SELECT * FROM payout_policy('gpu-1');
SELECT set_payout_policy('gpu-1', false, '0.1', '7 days', '2');
SELECT * FROM payout_policy('gpu-1');
SELECT set_payout_policy('gpu-1', NULL, '0.05', NULL, NULL);
SELECT * FROM payout_policy('gpu-1');
SET compay.payout_max_per_day = '1.25';
SELECT max_per_day FROM payout_policy('gpu-1');
RESET compay.payout_max_per_day;
SELECT set_payout_policy('gpu-1', true, '-1', NULL, NULL); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_policy('gpu-1', true, NULL, '0 seconds', NULL); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_policy('gpu-1', true, NULL, NULL, '0'); \echo :LAST_ERROR_SQLSTATE
SELECT set_payout_policy(NULL, true, NULL, NULL, NULL); \echo :LAST_ERROR_SQLSTATE
SET compay.payout_min = '-0.5'; \echo :LAST_ERROR_SQLSTATE
SET compay.payout_interval = '10s'; \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payout_policy('gpu-1');

-- The payout and deposit helpers refuse what they cannot use before any
-- wallet is asked: an unknown payout (PY016), a node that cannot have a
-- deposit address (22023).
SELECT * FROM verify_payout(999999); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payout_proof(999999, 'm'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit_address('$fees'); \echo :LAST_ERROR_SQLSTATE
SELECT deposit_address(''); \echo :LAST_ERROR_SQLSTATE
SELECT deposit_address(NULL); \echo :LAST_ERROR_SQLSTATE
-- A payout that was never built has no transaction to verify or prove (55000).
INSERT INTO payout_transactions (id, amount) VALUES (1, '0.5');
SELECT * FROM verify_payout(1); \echo :LAST_ERROR_SQLSTATE
SELECT * FROM payout_proof(1); \echo :LAST_ERROR_SQLSTATE
-- wallet_rpc checks its arguments before it calls the wallet.
SELECT wallet_rpc('get_balance', '[]'); \echo :LAST_ERROR_SQLSTATE
SELECT wallet_rpc(NULL); \echo :LAST_ERROR_SQLSTATE
