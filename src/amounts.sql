--------------------------------------------------------------------------
-- Amounts from every client: each public money function has a twin that
-- takes its amounts as numeric, so that a driver's typed parameter
-- (psycopg's Decimal or int, JDBC's setBigDecimal, any integer: integers
-- reach numeric by an implicit cast) finds a function.  The twin converts
-- with the numeric -> credit cast, exactly: more than 12 decimals is an
-- error (22023), as '1.0000000000001' is for text (22P02), never a
-- rounding; NaN and infinities are refused (22023).  float4 and float8
-- reach numeric only on assignment, so a float still finds no function
-- (42883).
--
-- An untyped literal (compay.deposit('a', '5'), a NULL, an unknown-typed
-- parameter from node-postgres or psycopg's str) still calls the credit
-- function and reads the text with credit_in: credit is in the string
-- type category (src/credit.sql), and PostgreSQL resolves an unknown
-- argument to the string category when a candidate takes one.  Were
-- credit and numeric both in category N, neither being its preferred type
-- (float8 is), such a call would be ambiguous (42725).
--
-- transfer_batch has no twin: an untyped array literal ('{1,2}') would
-- be ambiguous between credit[] and numeric[] (both in category A); pass
-- its amounts as credit[] (docs/clients.md).
--
-- A twin has no default for its amount (nor for the parameters before
-- it): two functions callable with the same leading arguments would make
-- every call that omits the amount ambiguous.  It runs as its caller and
-- calls the credit function, whose own privileges, checks and errors
-- apply; it gets the same grants.
--------------------------------------------------------------------------

CREATE FUNCTION compay.open_account(node_id text, currency text, credit_limit numeric)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.open_account(node_id, currency, credit_limit::compay.credit);

CREATE FUNCTION compay.deposit(node_id text, amount numeric, currency text DEFAULT 'CREDIT',
                               reference text DEFAULT NULL, idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.deposit(node_id, amount::compay.credit, currency, reference, idempotency_key);

CREATE FUNCTION compay.admin_deposit(node_id text, amount numeric, currency text, reason text,
                                     idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.admin_deposit(node_id, amount::compay.credit, currency, reason, idempotency_key);

CREATE FUNCTION compay.transfer(from_node text, to_node text, amount numeric,
                                reference text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                currency text DEFAULT 'CREDIT')
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.transfer(from_node, to_node, amount::compay.credit, reference, idempotency_key,
                           currency);

CREATE FUNCTION compay.reserve(node_id text, amount numeric, reference text DEFAULT NULL,
                               timeout interval DEFAULT NULL, idempotency_key text DEFAULT NULL,
                               currency text DEFAULT 'CREDIT')
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.reserve(node_id, amount::compay.credit, reference, timeout, idempotency_key,
                          currency);

CREATE FUNCTION compay.capture(hold_id bigint, to_node text, amount numeric,
                               final boolean DEFAULT true, idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.capture(hold_id, to_node, amount::compay.credit, final, idempotency_key);

CREATE FUNCTION compay.refund(transfer_id bigint, amount numeric, reason text DEFAULT NULL,
                              idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.refund(transfer_id, amount::compay.credit, reason, idempotency_key);

CREATE FUNCTION compay.grant_barter(holder text, counterparty text, amount numeric,
                                    reference text DEFAULT NULL, idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.grant_barter(holder, counterparty, amount::compay.credit, reference,
                               idempotency_key);

CREATE FUNCTION compay.set_credit_limit(node_id text, credit_limit numeric,
                                        currency text DEFAULT 'CREDIT')
    RETURNS void LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.set_credit_limit(node_id, credit_limit::compay.credit, currency);

CREATE FUNCTION compay.submit_job(task_id text, requester text, task_type text, max_amount numeric,
                                  timeout interval DEFAULT '24 hours')
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.submit_job(task_id, requester, task_type, max_amount::compay.credit, timeout);

CREATE FUNCTION compay.stake(node_id text, amount numeric, currency text DEFAULT 'CREDIT',
                             idempotency_key text DEFAULT NULL)
    RETURNS compay.credit LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.stake(node_id, amount::compay.credit, currency, idempotency_key);

CREATE FUNCTION compay.unstake(node_id text, amount numeric, currency text DEFAULT 'CREDIT',
                               idempotency_key text DEFAULT NULL)
    RETURNS compay.credit LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.unstake(node_id, amount::compay.credit, currency, idempotency_key);

CREATE FUNCTION compay.resolve_dispute(payment_id bigint, refund_amount numeric)
    RETURNS compay.payments LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.resolve_dispute(payment_id, refund_amount::compay.credit);

CREATE FUNCTION compay.set_payout_policy(node_id text, auto_payout boolean, min_payout numeric,
                                         payout_interval interval, max_per_day numeric)
    RETURNS void LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.set_payout_policy(node_id, auto_payout, min_payout::compay.credit,
                                    payout_interval, max_per_day::compay.credit);

REVOKE ALL ON FUNCTION
    compay.open_account(text, text, numeric),
    compay.deposit(text, numeric, text, text, text),
    compay.admin_deposit(text, numeric, text, text, text),
    compay.transfer(text, text, numeric, text, text, text),
    compay.reserve(text, numeric, text, interval, text, text),
    compay.capture(bigint, text, numeric, boolean, text),
    compay.refund(bigint, numeric, text, text),
    compay.grant_barter(text, text, numeric, text, text),
    compay.set_credit_limit(text, numeric, text),
    compay.submit_job(text, text, text, numeric, interval),
    compay.stake(text, numeric, text, text),
    compay.unstake(text, numeric, text, text),
    compay.resolve_dispute(bigint, numeric),
    compay.set_payout_policy(text, boolean, numeric, interval, numeric)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    compay.open_account(text, text, numeric),
    compay.deposit(text, numeric, text, text, text),
    compay.transfer(text, text, numeric, text, text, text),
    compay.reserve(text, numeric, text, interval, text, text),
    compay.capture(bigint, text, numeric, boolean, text),
    compay.refund(bigint, numeric, text, text),
    compay.grant_barter(text, text, numeric, text, text),
    compay.submit_job(text, text, text, numeric, interval),
    compay.stake(text, numeric, text, text),
    compay.unstake(text, numeric, text, text),
    compay.set_payout_policy(text, boolean, numeric, interval, numeric)
    TO compay_app;
GRANT EXECUTE ON FUNCTION
    compay.transfer(text, text, numeric, text, text, text),
    compay.set_payout_policy(text, boolean, numeric, interval, numeric)
    TO compay_node;
GRANT EXECUTE ON FUNCTION
    compay.admin_deposit(text, numeric, text, text, text),
    compay.set_credit_limit(text, numeric, text),
    compay.resolve_dispute(bigint, numeric)
    TO compay_admin;

CREATE FUNCTION compay.request_payout(node_id text, amount numeric, idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.request_payout(node_id, amount::compay.credit, idempotency_key);
REVOKE ALL ON FUNCTION compay.request_payout(text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.request_payout(text, numeric, text) TO compay_app, compay_node;

CREATE FUNCTION compay.request_withdrawal(node_id text, amount numeric,
                                          idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp
    RETURN compay.request_withdrawal(node_id, amount::compay.credit, idempotency_key);
REVOKE ALL ON FUNCTION compay.request_withdrawal(text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.request_withdrawal(text, numeric, text) TO compay_app, compay_node;
-- Deposit requests (src/deposit_request.sql).
CREATE FUNCTION compay.request_deposit(node_id text, amount numeric,
    expires_in interval DEFAULT '1 hour', confirmations integer DEFAULT NULL,
    idempotency_key text DEFAULT NULL)
    RETURNS TABLE (request_id bigint, address text, amount_due compay.credit, expires_at timestamptz)
    LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT * FROM compay.request_deposit(node_id, amount::compay.credit, expires_in, confirmations,
                                         idempotency_key)
$$;
CREATE FUNCTION compay.submit_job_funded_by_deposit(task_id text, requester text, task_type text,
    max_amount numeric, timeout interval DEFAULT '24 hours', expires_in interval DEFAULT '1 hour',
    confirmations integer DEFAULT NULL)
    RETURNS TABLE (job_id bigint, request_id bigint, address text, amount_due compay.credit,
                   expires_at timestamptz)
    LANGUAGE sql SET search_path = pg_catalog, compay, pg_temp AS $$
    SELECT * FROM compay.submit_job_funded_by_deposit(task_id, requester, task_type,
                                                      max_amount::compay.credit, timeout, expires_in,
                                                      confirmations)
$$;
REVOKE ALL ON FUNCTION compay.request_deposit(text, numeric, interval, integer, text),
    compay.submit_job_funded_by_deposit(text, text, text, numeric, interval, interval, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.request_deposit(text, numeric, interval, integer, text)
    TO compay_app, compay_node;
GRANT EXECUTE ON FUNCTION
    compay.submit_job_funded_by_deposit(text, text, text, numeric, interval, interval, integer)
    TO compay_app;
