-- Amounts from every client (src/amounts.sql): each public money function
-- takes its amounts as numeric too (Decimal, int, BigDecimal from a
-- driver), exactly, with the same errors as text; untyped literals still
-- call the credit function; floats are still refused.
\set VERBOSITY default

-- Numeric and integer amounts, exactly: 2^100 atomic units, one atomic
-- unit, integers of every width.
SELECT compay.deposit('am-a', 1267650600228229401.496703205376) > 0 AS numeric_2_100;
SELECT compay.deposit('am-a', 0.000000000001::numeric) > 0 AS one_unit;
SELECT compay.deposit('am-a', 7) > 0 AS int4, compay.deposit('am-a', 7::bigint) > 0 AS int8,
       compay.deposit('am-a', 7::smallint) > 0 AS int2;
SELECT compay.deposit(node_id => 'am-a', amount => 0.5) > 0 AS named;
SELECT balance FROM compay.accounts WHERE node_id = 'am-a';

-- More than 12 decimals and NaN: 22023; infinities and beyond the range:
-- 22003; nothing written.
SELECT compay.deposit('am-a', 1.0000000000001); \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit('am-a', 'NaN'::numeric); \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit('am-a', 'Infinity'::numeric); \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit('am-a', 1e30); \echo :LAST_ERROR_SQLSTATE
-- Floats find no function: 42883.
SELECT compay.deposit('am-a', 2.5::float8); \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit('am-a', 2.5::real); \echo :LAST_ERROR_SQLSTATE
SELECT compay.transfer('am-a', 'am-b', 1::float8); \echo :LAST_ERROR_SQLSTATE
SELECT balance FROM compay.accounts WHERE node_id = 'am-a';

-- Untyped literals call the credit function and keep credit_in's errors
-- (22P02, with the literal's position); NULL is the credit function's.
SELECT compay.deposit('am-a', 'abc'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit('am-a', '1.0000000000001'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit('am-a', '1e3'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.deposit('am-a', NULL); \echo :LAST_ERROR_SQLSTATE
PREPARE am_dep(text, unknown) AS SELECT compay.deposit($1, $2) > 0 AS prepared_unknown;
EXECUTE am_dep('am-a', '0.25');
-- A call that omits a defaulted amount is not ambiguous.
SELECT compay.capture(-1, 'am-b'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.refund(-1); \echo :LAST_ERROR_SQLSTATE
SELECT balance FROM compay.accounts WHERE node_id = 'am-a';

-- The other twins reach their credit function (its checks, its result).
SELECT compay.transfer('am-a', 'am-b', 1.5) > 0 AS transfer,
       compay.grant_barter('am-a', 'am-b', 2) > 0 AS grant_barter;
SELECT compay.reserve('am-a', 0.75, 'am-hold') AS hold \gset
SELECT compay.capture(:hold, 'am-b', 0.5) > 0 AS capture;
SELECT compay.refund((SELECT max(id) FROM compay.transfers WHERE kind = 'capture'), 0.25) > 0 AS refund;
SELECT compay.open_account('am-c', 'CREDIT', 10) > 0 AS open_account;
SELECT compay.set_credit_limit('am-c', 20);
SELECT node_id, balance, reserved, credit_limit FROM compay.accounts
WHERE node_id LIKE 'am-%' ORDER BY node_id;
SELECT compay.stake('am-a', 1) AS staked;

-- Each twin has its credit function's grants, and every public money
-- function but transfer_batch (an untyped '{1,2}' would be ambiguous
-- between credit[] and numeric[]) has a twin.
SELECT c.oid::regprocedure AS credit_function, t.oid::regprocedure AS numeric_twin,
       c.proacl = t.proacl AS same_grants
FROM pg_proc c
LEFT JOIN pg_proc t ON t.pronamespace = c.pronamespace AND t.proname = c.proname
     AND t.oid::regprocedure::text = replace(c.oid::regprocedure::text, 'compay.credit', 'numeric')
WHERE c.pronamespace = 'compay'::regnamespace
  AND 'compay.credit'::regtype = ANY (c.proargtypes::oid[])
  AND EXISTS (SELECT FROM aclexplode(c.proacl) x
              WHERE x.grantee IN ('compay_app'::regrole, 'compay_node'::regrole,
                                  'compay_admin'::regrole))
ORDER BY 1::text;

-- Operators with compay on the search_path (README's setting): the
-- category change leaves numeric arithmetic alone.
SET search_path = "$user", public, compay;
SELECT pg_typeof(2.5::numeric * 2) AS numeric_times_int, pg_typeof(2.5 * '2') AS numeric_times_literal,
       pg_typeof(2.5::numeric / 2::bigint) AS numeric_by_int8,
       pg_typeof('1'::credit * 2) AS credit_times_int, pg_typeof('1'::credit + '1') AS credit_plus_literal,
       pg_typeof('3'::credit / '2') AS credit_by_literal, '1'::credit + '1' AS two;
SELECT balance + reserved AS total, balance = '1.75' AS eq, balance IN ('1', '1.75') AS in_list,
       balance BETWEEN '0' AND '5' AS between
FROM compay.accounts WHERE node_id = 'am-b';
SELECT sum(a.balance), count(*) FROM compay.accounts a JOIN compay.accounts b USING (balance)
WHERE a.node_id LIKE 'am-%';
-- An untyped literal given to a name that compay overloads for credit
-- now picks credit (it picked double precision before 0.2).
SELECT pg_typeof(abs('-5')) AS abs_literal, abs('-5') AS abs;
RESET search_path;
