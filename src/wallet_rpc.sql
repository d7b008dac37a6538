--------------------------------------------------------------------------
-- The treasury wallet: monero-wallet-rpc over JSON-RPC (src/wallet_rpc.c).
--------------------------------------------------------------------------

CREATE FUNCTION compay.wallet_rpc(method text, params jsonb DEFAULT '{}') RETURNS jsonb
    AS 'MODULE_PATHNAME', 'compay_wallet_rpc' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.wallet_rpc(text, jsonb) IS
    'one JSON-RPC call to compay.wallet_rpc_url, returning its result; PY014 when the wallet cannot be reached or refuses the login, PY015 when it answers with an error (superuser only; not inside a transaction that holds ledger locks)';
REVOKE ALL ON FUNCTION compay.wallet_rpc(text, jsonb) FROM PUBLIC;

CREATE FUNCTION compay.daemon_rpc(path text, params jsonb DEFAULT '{}') RETURNS jsonb
    AS 'MODULE_PATHNAME', 'compay_daemon_rpc' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION compay.daemon_rpc(text, jsonb) IS
    'one call to a read-only endpoint of compay.daemon_rpc_url (/get_height, /get_info, /get_transactions, /get_transaction_pool_hashes, /is_key_image_spent), returning the whole reply; PY014 when the daemon cannot be reached or is not set, PY015 when it answers with an error (superuser only; not inside a transaction that holds ledger locks)';
REVOKE ALL ON FUNCTION compay.daemon_rpc(text, jsonb) FROM PUBLIC;
