-- Setup of test/bench/ledger.sh: 10,000 funded compay accounts, and the
-- naive peer: a PL/pgSQL transfer over numeric balances that locks both
-- rows FOR UPDATE in id order, updates both and inserts two journal rows.
\set ON_ERROR_STOP on
CREATE EXTENSION compay;
SELECT count(compay.open_account('n' || i, 'CREDIT', '0')) AS accounts
FROM generate_series(1, 10000) AS i;
SELECT count(compay.deposit('n' || i, '1000000000')) AS deposits FROM generate_series(1, 10000) AS i;

CREATE TABLE peer_accounts (id bigint PRIMARY KEY, balance numeric NOT NULL);
CREATE TABLE peer_journal (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL,
    amount numeric NOT NULL,
    balance_after numeric NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO peer_accounts SELECT i, 1000000000 FROM generate_series(1, 10000) AS i;
CREATE FUNCTION peer_transfer(a bigint, b bigint, amount numeric) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    balance_a numeric;
    balance_b numeric;
BEGIN
    PERFORM 1 FROM peer_accounts WHERE id IN (a, b) ORDER BY id FOR UPDATE;
    UPDATE peer_accounts SET balance = balance - amount WHERE id = a
        RETURNING balance INTO balance_a;
    IF balance_a < 0 THEN
        RAISE EXCEPTION 'insufficient funds';
    END IF;
    UPDATE peer_accounts SET balance = balance + amount WHERE id = b
        RETURNING balance INTO balance_b;
    INSERT INTO peer_journal (account_id, amount, balance_after)
    VALUES (a, -amount, balance_a), (b, amount, balance_b);
END $$;
VACUUM ANALYZE;
