-- Ledger: two-phase holds (reserve, capture in full or in parts, release,
-- expiry); bad inputs next to good ones, with their SQLSTATEs.
SET search_path = public, compay;
-- A fresh ledger, so that ids and totals do not depend on other tests.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
SELECT open_account('lh_payer', 'CREDIT', '0') IS NOT NULL AS ok;
SELECT deposit('lh_payer', '100') IS NOT NULL AS ok;

-- A reserve moves nothing but makes the amount unavailable.
SELECT reserve('lh_payer', '40', 'job-1', '1 hour') AS h1 \gset
SELECT amount, remaining, status, reference, expires_at > now() AS expires_later, resolved_at
FROM holds WHERE id = :h1;
SELECT balance, reserved, available FROM balance('lh_payer');
SELECT j.kind, j.amount, j.balance_after, j.reserved_after, j.hold_id = :h1 AS this_hold
FROM journal j JOIN accounts a ON a.id = j.account_id
WHERE a.node_id = 'lh_payer' ORDER BY j.seq DESC LIMIT 1;
-- The reserved part cannot be spent or reserved again (PY001).
SELECT transfer('lh_payer', 'lh_provider', '60.000000000001'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('lh_payer', '60.000000000001'); \echo :LAST_ERROR_SQLSTATE

-- Streaming: partial captures keep the hold pending.
SELECT capture(:h1, 'lh_provider', '10', final => false) IS NOT NULL AS captured;
SELECT capture(:h1, 'lh_provider', '5', final => false) IS NOT NULL AS captured;
SELECT remaining, status FROM holds WHERE id = :h1;
SELECT balance, reserved, available FROM balance('lh_payer');
SELECT balance FROM balance('lh_provider');
-- More than remains is refused (22023); nothing changes.
SELECT capture(:h1, 'lh_provider', '25.000000000001', final => false); \echo :LAST_ERROR_SQLSTATE
-- A final capture takes what it names and releases the rest.
SELECT capture(:h1, 'lh_provider', '5') AS t_final \gset
SELECT remaining, status, resolved_at IS NOT NULL AS resolved FROM holds WHERE id = :h1;
SELECT kind, amount, hold_id = :h1 AS this_hold FROM transfers WHERE id = :t_final;
SELECT balance, reserved, available FROM balance('lh_payer');
SELECT balance FROM balance('lh_provider');
-- A posted hold cannot be captured or released again (PY004).
SELECT capture(:h1, 'lh_provider'); \echo :LAST_ERROR_SQLSTATE
SELECT release(:h1); \echo :LAST_ERROR_SQLSTATE

-- capture with no amount takes all that remains; capturing to zero posts it.
SELECT reserve('lh_payer', '20') AS h2 \gset
SELECT capture(:h2, 'lh_provider', final => false) IS NOT NULL AS captured;
SELECT remaining, status FROM holds WHERE id = :h2;

-- release voids the hold and frees the amount.
SELECT reserve('lh_payer', '30') AS h3 \gset
SELECT capture(:h3, 'lh_provider', '1', final => false) IS NOT NULL AS captured;
SELECT release(:h3);
SELECT remaining, status FROM holds WHERE id = :h3;
SELECT balance, reserved, available FROM balance('lh_payer');
SELECT release(:h3); \echo :LAST_ERROR_SQLSTATE
SELECT capture(:h3, 'lh_provider'); \echo :LAST_ERROR_SQLSTATE

-- Expiry: a hold past expires_at cannot be captured even before
-- expire_holds() runs; expire_holds() releases it and says how many.
SELECT reserve('lh_payer', '7', timeout => '1 millisecond') AS h4 \gset
SELECT reserve('lh_payer', '3', timeout => '1 hour') AS h5 \gset
SELECT pg_sleep(0.05);
SELECT capture(:h4, 'lh_provider'); \echo :LAST_ERROR_SQLSTATE
SELECT status FROM holds WHERE id = :h4;
SELECT expire_holds();
SELECT id = :h4 AS is_h4, status, remaining FROM holds WHERE id IN (:h4, :h5) ORDER BY id;
SELECT expire_holds();
SELECT capture(:h4, 'lh_provider'); \echo :LAST_ERROR_SQLSTATE
SELECT release(:h5);
SELECT balance, reserved, available FROM balance('lh_payer');

-- Bad arguments.
SELECT reserve('lh_payer', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('lh_payer', '-1'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('lh_payer', '1', timeout => '0 seconds'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('lh_payer', '1', timeout => '-1 hour'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve(NULL, '1'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('$rewards', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('lh_payer', '1', currency => 'x'); \echo :LAST_ERROR_SQLSTATE
SELECT capture(999999999, 'lh_provider'); \echo :LAST_ERROR_SQLSTATE
SELECT release(999999999); \echo :LAST_ERROR_SQLSTATE
SELECT reserve('lh_payer', '5') AS h6 \gset
SELECT capture(:h6, 'lh_payer'); \echo :LAST_ERROR_SQLSTATE
SELECT capture(:h6, 'lh_provider', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT capture(:h6, 'lh_provider', '-1'); \echo :LAST_ERROR_SQLSTATE
SELECT capture(:h6, NULL); \echo :LAST_ERROR_SQLSTATE
SELECT capture(:h6, 'lh_provider', final => NULL); \echo :LAST_ERROR_SQLSTATE
SELECT release(NULL); \echo :LAST_ERROR_SQLSTATE
SELECT status, remaining FROM holds WHERE id = :h6;

-- A hold in XMR captures to the payee's XMR account.
SELECT admin_deposit('lh_payer', '2', 'XMR', 'test funds') IS NOT NULL AS ok;
SELECT reserve('lh_payer', '1.5', currency => 'XMR') AS h7 \gset
SELECT capture(:h7, 'lh_provider') IS NOT NULL AS captured;
SELECT currency, balance FROM accounts WHERE node_id = 'lh_provider' ORDER BY currency;

SELECT check_name, ok FROM verify_ledger();
