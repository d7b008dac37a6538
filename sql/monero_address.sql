-- Monero addresses checked locally: monero_address_info() and
-- check_monero_address().  The good addresses were made by
-- monero-wallet-rpc 0.18 (--offline) on each network; the bad ones sit
-- beside them, each with its reason or its SQLSTATE.
SET search_path = public, compay;
\set VERBOSITY default

-- Wallet-made addresses of every kind and network (integrated ones with
-- payment id 0123456789abcdef), and the Monero general fund's public
-- subaddress.  A regtest wallet's addresses are mainnet addresses.
CREATE TEMP TABLE wallet_addresses (network text, kind text, address text);
INSERT INTO wallet_addresses VALUES
    ('mainnet', 'standard', '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'),
    ('mainnet', 'subaddress', '87uLzB6ynrvKyBeU5FLigJDdfYCMN9YueeFZH3S6XWhqTAD84p1CYZwHTQribxUCAvGParmc6hZPNEzfDMve9k5DESF2ucw'),
    ('mainnet', 'integrated', '4L1cF8Eauvy2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1qYs7cpBQtcTzyj287'),
    ('testnet', 'standard', '9vomGw5H6Bd6qwEBBZ3bCDWVTEcvG1GrTFv3fhmhveg1UF8xfJvjj95FdP4AAuNkBwEVyx4sHNQCdNtLMTaP3Uv9DoQD4dJ'),
    ('testnet', 'subaddress', 'BfggHhsXyLXTjy58e9iSgWiYMshYVvrm5jmgXS6q3ZtVLXZBA9p82oZhoSmGUJo6uHQWDPHoagXC8UX7tKN1UWYP8cD1j5W'),
    ('testnet', 'integrated', 'A6WSHjtmhT96qwEBBZ3bCDWVTEcvG1GrTFv3fhmhveg1UF8xfJvjj95FdP4AAuNkBwEVyx4sHNQCdNtLMTaP3Uv9KuHWcoFT5nUU5BMZBc'),
    ('stagenet', 'standard', '57ZGYZRWf244UQYVjNWHBAV8zkP7CbnhCS2TtTgysaEKgesAuLxUW7HSyvBLmcNQBwQK1FJtryEsYVceN4Xp9zuDPkxk5xW'),
    ('stagenet', 'subaddress', '72LddAhbRMrfkTtiuqrgRdibLSpnKYW1b7bmGsNRGmbpiwpJokAxbCKZNYjJ3Hz2aP77cLrxDuHFd7YPU9jpbteE6giAUfQ'),
    ('stagenet', 'integrated', '5HFwZNF1GHa4UQYVjNWHBAV8zkP7CbnhCS2TtTgysaEKgesAuLxUW7HSyvBLmcNQBwQK1FJtryEsYVceN4Xp9zuDaczhqqJrbKzU2syrCq'),
    ('mainnet', 'subaddress', '888tNkZrPN6JsEgekjMnABU4TBzc2Dt29EPAvkRxbANsAnjyPbb3iQ1YBRk1UXcdRsiKc9dhwMVgN5S9cQUiyoogDavup3H');
SELECT w.network, w.kind, length(w.address) AS length, i.valid,
       i.network AS found_network, i.kind AS found_kind, i.reason
FROM wallet_addresses w, LATERAL monero_address_info(w.address) AS i
ORDER BY w.network, w.kind, w.address;
SELECT network, kind, check_monero_address(address, network) AS checked
FROM wallet_addresses ORDER BY network, kind, address;

-- Bad addresses, derived from the mainnet standard and integrated ones.
-- integrated_95, standard_106 and network_byte_17 keep the keys and carry
-- a correct checksum: only their network byte or length is wrong.
\set std '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'
\set integrated '4L1cF8Eauvy2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1qYs7cpBQtcTzyj287'
\set integrated_95 '4L1cF8Eauvy2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1fmbteZ'
\set standard_106 '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1qYs7cpBQtcTzhMD9v'
\set network_byte_17 '3zcGDWbbhPw2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1cafPjf'
SELECT label, length(address) AS length, i.valid, i.network, i.kind, i.reason
FROM (VALUES
    ('one character changed', overlay(:'std' placing 'C' from 51 for 1)),
    ('zero', overlay(:'std' placing '0' from 11 for 1)),
    ('capital o', overlay(:'std' placing 'O' from 11 for 1)),
    ('capital i', overlay(:'std' placing 'I' from 11 for 1)),
    ('small L', overlay(:'std' placing 'l' from 11 for 1)),
    ('leading space', ' ' || left(:'std', 94)),
    ('trailing space', left(:'std', 94) || ' '),
    ('truncated', left(:'std', 94)),
    ('one character too many', :'std' || '1'),
    ('integrated cut to 95', left(:'integrated', 95)),
    ('integrated with 95', :'integrated_95'),
    ('standard with 106', :'standard_106'),
    ('network byte 17', :'network_byte_17'),
    ('last block overflows', left(:'std', 88) || 'zzzzzzz'),
    ('empty', ''),
    ('bitcoin', '1BoatSLRHtKNngkdXEeobR76b53LETtpyT'),
    ('100000 ones', repeat('1', 100000))) AS t(label, address),
    LATERAL monero_address_info(address) AS i;

-- check_monero_address() raises 22023, with the reason as detail.
SELECT check_monero_address(overlay(:'std' placing 'C' from 51 for 1), 'mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(overlay(:'std' placing '0' from 11 for 1), 'mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(left(:'std', 94), 'mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(:'std' || '1', 'mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address('', 'mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(:'integrated_95', 'mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(:'standard_106', 'mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(:'network_byte_17', 'mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(left(:'std', 88) || 'zzzzzzz', 'mainnet'); \echo :LAST_ERROR_SQLSTATE

-- A valid address of another network: 22023.
SELECT check_monero_address(address, 'mainnet') FROM wallet_addresses
WHERE network = 'testnet' AND kind = 'standard'; \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(address, 'stagenet') FROM wallet_addresses
WHERE network = 'mainnet' AND kind = 'subaddress' AND address LIKE '87%'; \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(address, 'testnet') FROM wallet_addresses
WHERE network = 'stagenet' AND kind = 'integrated'; \echo :LAST_ERROR_SQLSTATE

-- Unknown network names: 22023, checked before the address.
SELECT check_monero_address(:'std', 'regtest'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address(:'std', 'Mainnet'); \echo :LAST_ERROR_SQLSTATE
SELECT check_monero_address('', ''); \echo :LAST_ERROR_SQLSTATE

-- STRICT: NULL in, no row or NULL out.
SELECT count(*) AS rows_for_null FROM monero_address_info(NULL);
SELECT check_monero_address(NULL, 'mainnet') IS NULL AS null_address,
       check_monero_address(:'std', NULL) IS NULL AS null_network;

-- Declared IMMUTABLE STRICT PARALLEL SAFE; compay_reader may call both.
SELECT p.oid::regprocedure AS function, p.provolatile, p.proisstrict, p.proparallel,
       has_function_privilege('compay_reader', p.oid, 'EXECUTE') AS reader,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
FROM pg_proc p
WHERE p.pronamespace = 'compay'::regnamespace
  AND p.proname IN ('monero_address_info', 'check_monero_address')
ORDER BY p.proname;
