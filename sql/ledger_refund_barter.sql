-- Ledger: refunds (never more than the original less earlier refunds),
-- barter credits, credit scores; bad inputs next to good ones.
SET search_path = public, compay;
-- A fresh ledger, so that ids and totals do not depend on other tests.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
SELECT open_account('lr_buyer', 'CREDIT', '0') IS NOT NULL AS ok;
SELECT open_account('lr_seller', 'CREDIT', '0') IS NOT NULL AS ok;
SELECT deposit('lr_buyer', '100') AS dep \gset
SELECT transfer('lr_buyer', 'lr_seller', '60') AS t1 \gset

-- Partial refunds, up to the original amount.
SELECT refund(:t1, '10', 'late') AS r1 \gset
SELECT kind, amount, refund_of = :t1 AS of_t1, reference FROM transfers WHERE id = :r1;
SELECT a.node_id, j.kind, j.amount FROM journal j JOIN accounts a ON a.id = j.account_id
WHERE j.transfer_id = :r1 ORDER BY a.node_id;
SELECT refund(:t1, '50.000000000001'); \echo :LAST_ERROR_SQLSTATE
SELECT refund(:t1) IS NOT NULL AS refunded_rest;
SELECT refund(:t1, '0.000000000001'); \echo :LAST_ERROR_SQLSTATE
SELECT refund(:t1); \echo :LAST_ERROR_SQLSTATE
SELECT (SELECT balance FROM balance('lr_buyer')) AS buyer, (SELECT balance FROM balance('lr_seller')) AS seller;
-- A refund needs the payee's funds (PY001).
SELECT transfer('lr_buyer', 'lr_seller', '30') AS t2 \gset
SELECT transfer('lr_seller', 'lr_buyer', '25') IS NOT NULL AS seller_spent;
SELECT refund(:t2, '6'); \echo :LAST_ERROR_SQLSTATE
SELECT refund(:t2, '5') IS NOT NULL AS refunded_what_is_there;
-- Deposits can be refunded (back to $external); refunds cannot.
SELECT refund(:dep, '1') IS NOT NULL AS deposit_refunded;
SELECT refund(:r1); \echo :LAST_ERROR_SQLSTATE
-- Bad arguments.
SELECT refund(999999999); \echo :LAST_ERROR_SQLSTATE
SELECT refund(:t2, '0'); \echo :LAST_ERROR_SQLSTATE
SELECT refund(:t2, '-1'); \echo :LAST_ERROR_SQLSTATE
SELECT refund(NULL); \echo :LAST_ERROR_SQLSTATE

-- Credit scores: payers move up 1 % of the way to 1 per payment; a payee
-- that refunds moves down 5 %.
SELECT node_id, credit_score FROM accounts WHERE node_id IN ('lr_buyer', 'lr_seller') ORDER BY 1;

-- Barter: credits the holder can spend only with the counterparty, spent
-- first by a transfer from holder to counterparty.
SELECT deposit('lr_seller', '20') IS NOT NULL AS ok;
SELECT grant_barter('lr_seller', 'lr_buyer', '8', 'compute swap') AS g1 \gset
SELECT kind, amount, barter_amount, reference FROM transfers WHERE id = :g1;
SELECT barter_balance('lr_seller', 'lr_buyer') AS seller_with_buyer,
       barter_balance('lr_buyer', 'lr_seller') AS buyer_with_seller,
       barter_balance('lr_seller', 'lr_nobody') AS with_stranger;
SELECT balance FROM balance('lr_seller');
-- Spending 5 of 8: all barter, no money moves.
SELECT transfer('lr_seller', 'lr_buyer', '5') AS b1 \gset
SELECT amount, barter_amount FROM transfers WHERE id = :b1;
SELECT barter_balance('lr_seller', 'lr_buyer'), (SELECT balance FROM balance('lr_seller')) AS seller;
-- Spending 10 more: 3 barter, 7 money.
SELECT transfer('lr_seller', 'lr_buyer', '10') AS b2 \gset
SELECT amount, barter_amount FROM transfers WHERE id = :b2;
SELECT barter_balance('lr_seller', 'lr_buyer'), (SELECT balance FROM balance('lr_seller')) AS seller;
-- Barter with one counterparty does not pay another.
SELECT grant_barter('lr_seller', 'lr_buyer', '4') IS NOT NULL AS granted;
SELECT transfer('lr_seller', 'lr_third', '1') AS b3 \gset
SELECT barter_amount FROM transfers WHERE id = :b3;
-- Only the money part of a transfer can be refunded.
SELECT grant_barter('lr_buyer', 'lr_seller', '2') IS NOT NULL AS granted;
SELECT transfer('lr_buyer', 'lr_seller', '3') AS b4 \gset
SELECT refund(:b4, '1.000000000001'); \echo :LAST_ERROR_SQLSTATE
SELECT refund(:b4) IS NOT NULL AS refunded_money_part;
-- Bad arguments.
SELECT grant_barter('lr_seller', 'lr_seller', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT grant_barter('lr_seller', 'lr_buyer', '0'); \echo :LAST_ERROR_SQLSTATE
SELECT grant_barter('lr_seller', '$fees', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT grant_barter(NULL, 'lr_buyer', '1'); \echo :LAST_ERROR_SQLSTATE
SELECT refund(:g1); \echo :LAST_ERROR_SQLSTATE

-- history(): newest first, paged by before_seq.
SELECT seq, kind, amount, balance_after, counterparty, transfer_kind, reference
FROM history('lr_buyer', max_rows => 4);
SELECT seq, kind FROM history('lr_buyer', max_rows => 2, before_seq => 3);
SELECT count(*) FROM history('lr_nobody');

SELECT check_name, ok FROM verify_ledger();
