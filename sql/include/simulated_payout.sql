-- Included (\i sql/include/simulated_payout.sql) by the regression tests
-- that pay out without a wallet.  pg_temp.fake_build(id) records what the
-- wallet would answer to transfer for a queued payout: the items' amounts,
-- a fee of 0.0001 paid by $fees.  pg_temp.pay_on_chain(id) builds, relays
-- and confirms it.
CREATE FUNCTION pg_temp.fake_build(id bigint) RETURNS void LANGUAGE sql AS $$
    SELECT compay.record_payout_built(id, jsonb_build_object(
        'tx_hash', encode(sha256(('tx' || id)::bytea), 'hex'),
        'tx_key', encode(sha256(('key' || id)::bytea), 'hex'),
        'tx_metadata', 'abcd',
        'spent_key_images', jsonb_build_object('key_images',
            jsonb_build_array(encode(sha256(('ki' || id)::bytea), 'hex'))),
        'fee', 100000000,
        'amount', (SELECT sum(compay.atomic(i.amount)) FROM compay.payout_items i
                   WHERE i.payout_id = id)))
$$;
CREATE FUNCTION pg_temp.pay_on_chain(id bigint) RETURNS void LANGUAGE sql AS $$
    SELECT pg_temp.fake_build(id);
    SELECT compay.record_payout_relayed(id);
    SELECT compay.record_payout_confirmations(id, 10);
$$;
