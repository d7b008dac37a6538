--------------------------------------------------------------------------
-- Monero addresses, checked locally (src/monero_address.c): base58, the
-- Keccak-256 checksum, the network byte and the length of each kind.  No
-- wallet is asked, so these are IMMUTABLE; a regtest wallet's addresses
-- are mainnet addresses.
--------------------------------------------------------------------------

CREATE FUNCTION compay.monero_address_info(address text)
RETURNS TABLE (valid boolean, network text, kind text, reason text)
    AS 'MODULE_PATHNAME', 'compay_monero_address_info'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 1;
COMMENT ON FUNCTION compay.monero_address_info(text) IS
    'one row: whether the text is a valid Monero address, its network and kind (standard, subaddress, integrated), or the reason it is not; never raises an error for a bad address';

CREATE FUNCTION compay.check_monero_address(address text, network text) RETURNS text
    AS 'MODULE_PATHNAME', 'compay_check_monero_address'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION compay.check_monero_address(text, text) IS
    'the kind (standard, subaddress, integrated) of a valid address of the network (mainnet, testnet, stagenet); 22023 for a bad address, an address of another network or an unknown network';

REVOKE ALL ON FUNCTION compay.monero_address_info(text),
    compay.check_monero_address(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.monero_address_info(text),
    compay.check_monero_address(text, text) TO compay_reader;
