# Payouts reconciled with the daemon, against the real regtest: the worker
# asks the daemon by tx hash (compay.daemon_rpc_url) before it takes a
# payout for lost, and fails one only when it is certain it can never be
# mined.
#
#  E. A relayed transaction dropped from the daemon's pool (flush_txpool)
#     is relayed again, the same transaction, and paid once.
#  F. A built transaction whose input the treasury spends elsewhere first
#     (sweep_single of one of its key images, mined) can never be mined:
#     once that conflict is compay.payout_confirmations blocks deep the
#     payout fails, the ledger gets the amount and the fee back, and the
#     settlement is paid by a new transaction, once.
#  G. compay.payout_fee_payer = 'payee': two payees in one transaction
#     pay the network fee out of their amounts, in proportion; each
#     receives exactly its amount less its share, $fees pays nothing.
#  H. Verifier rewards of an XMR job are settled apart (purpose
#     verification) and paid to the verifier's verification address, or
#     to its primary address when it has none.
#
# Run: as test/t/031_payout_crash.pl.

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rt = CompayRegtest->up;
my $node = $rt->node('reconcile', "compay.payout_confirmations = 5\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub set_and_reload { $rt->set($node, @_); }

sub in_pool
{
	my ($hash) = @_;
	my $pool = $rt->rpc('daemon', '/get_transaction_pool_hashes');
	return index($pool, $hash) >= 0;
}

sub wait_status
{
	my ($payee, $status, $what) = @_;
	ok( $node->poll_query_until('postgres',
			qq{SELECT count(*) >= 1 FROM compay.payouts WHERE node_id = '$payee' AND status = '$status'}),
		"$what: $status");
}

sub xmr_balance
{
	my ($who) = @_;
	return sql(qq{SELECT balance FROM compay.accounts WHERE node_id = '$who' AND currency = 'XMR'});
}

# E. Dropped from the pool after the relay.
my $ie = $rt->earn_at($node, 'drop-e', '0.07');
wait_status('drop-e', 'relayed', 'E');
my $txe = sql(q{SELECT tx_hash FROM compay.payouts WHERE node_id = 'drop-e'});
ok(in_pool($txe), 'E: the transaction is in the daemon pool');
my $log_offset = -s $node->logfile;
$rt->rpc('daemon', 'flush_txpool', qq({"txids":["$txe"]}));
ok( $node->wait_for_log(qr/payout \d+ \($txe\) was dropped by the daemon; relaying it again/,
		$log_offset),
	'E: the worker saw it missing from the daemon and relayed it again');
my $back = 0;
for (1 .. 60) { $back = in_pool($txe) and last; sleep 1; }
ok($back, 'E: the same transaction is back in the pool');
$rt->run('mine', 5);
wait_status('drop-e', 'confirmed', 'E');
is($rt->received_amounts($ie), '70000000000', 'E: the payee received exactly one output of 0.07 XMR');
is(sql(q{SELECT count(*) FROM compay.payout_items WHERE node_id = 'drop-e'}), '1', 'E: one payout');

# F. An input of a built payout spent elsewhere first.
set_and_reload('compay.payout_auto_relay', 'off');
my $fees_before = xmr_balance('$fees');
my $if = $rt->earn_at($node, 'void-f', '0.09');
wait_status('void-f', 'built', 'F');
my ($pf, $txf, $ki, $fee) = split /\|/,
  sql(q{SELECT p.id, p.tx_hash, p.key_images[1], p.fee FROM compay.payout_transactions p
		JOIN compay.payout_items i ON i.payout_id = p.id WHERE i.node_id = 'void-f'});
is(xmr_balance('void-f'), '0', 'F: built: the amount has left the payee account');
ok(!in_pool($txf), 'F: built, nothing sent');
like($rt->rpc('treasury', 'sweep_single',
		qq({"address":"$rt->{env}{XMR_TREASURY_ADDRESS}","key_image":"$ki"}), 'result.tx_hash'),
	qr/^[0-9a-f]{64}$/, 'F: the treasury spends one of its inputs in another transaction');
$rt->run('mine', 1);
set_and_reload('compay.payout_auto_relay', 'on');
ok( $node->poll_query_until('postgres',
		qq{SELECT conflict_height IS NOT NULL AND last_error LIKE 'conflict:%'
		   FROM compay.payout_transactions WHERE id = $pf}),
	'F: the worker saw the conflict on chain');
sleep 3;
is(sql(qq{SELECT status FROM compay.payout_transactions WHERE id = $pf}), 'built',
	'F: not voided while the conflict is less than 5 blocks deep');
$rt->run('mine', 5);
ok( $node->poll_query_until('postgres',
		qq{SELECT status = 'failed' AND last_error LIKE 'void:%' FROM compay.payout_transactions WHERE id = $pf}),
	'F: 5 blocks later the payout failed: it can never be mined');
is( xmr_balance('void-f'),
	sql(qq{SELECT amount FROM compay.payout_items WHERE payout_id = $pf}),
	'F: the amount is back in the payee account');
is( sql(q{SELECT count(*) FROM compay.holds h JOIN compay.settlements s ON s.earmark_hold_id = h.id
		  WHERE s.payee = 'void-f' AND h.status = 'pending'}),
	'1', 'F: the settlement is earmarked again');
is(xmr_balance('$fees'), $fees_before, 'F: the fee is back with $fees');
is( sql(qq{SELECT count(*) FROM compay.transfers WHERE reference LIKE 'payout:$pf returned%'}),
	$fee eq '0' ? '1' : '2', 'F: returned by one deposit for the payee and one for the fee');
wait_status('void-f', 'relayed', 'F: a new transaction');
isnt(sql(q{SELECT tx_hash FROM compay.payouts WHERE node_id = 'void-f' AND status = 'relayed'}),
	$txf, 'F: the new transaction is another one');
$rt->run('mine', 5);
wait_status('void-f', 'confirmed', 'F');
is($rt->received_amounts($if), '90000000000', 'F: the payee received exactly one output of 0.09 XMR');
is( sql(q{SELECT string_agg(p.status::text, ',' ORDER BY p.id) FROM compay.payout_transactions p
		  JOIN compay.payout_items i ON i.payout_id = p.id WHERE i.node_id = 'void-f'}),
	'failed,confirmed', 'F: one failed payout, one confirmed');
is(sql(q{SELECT count(*) FROM compay.settlements WHERE payee = 'void-f' AND status = 'completed'}),
	'1', 'F: the settlement is completed');

# G. The payees pay the fee.
set_and_reload('compay.worker_enabled', 'off');
set_and_reload('compay.payout_fee_payer', 'payee');
$fees_before = xmr_balance('$fees');
my $ig1 = $rt->earn_at($node, 'fee-g1', '0.05');
my $ig2 = $rt->earn_at($node, 'fee-g2', '0.15');
is(sql(q{SELECT compay.queue_payouts()}), '1', 'G: one payout for both payees');
set_and_reload('compay.worker_enabled', 'on');
wait_status('fee-g2', 'relayed', 'G');
my ($pg, $fee_g) = split /\|/,
  sql(q{SELECT payout_id, compay.atomic(fee) FROM compay.payouts WHERE node_id = 'fee-g2'});
ok($fee_g > 0, "G: the transaction's fee is $fee_g piconero");
my $share2 = int($fee_g * 15 / 20);    # fee-g2: 0.15 of 0.20, rounded down
my $share1 = $fee_g - $share2;         # fee-g1: its share and the remainder
is( sql(qq{SELECT string_agg(compay.atomic(fee)::text, ',' ORDER BY node_id)
		  FROM compay.payout_items WHERE payout_id = $pg}),
	"$share1,$share2", 'G: the shares are in proportion to the amounts and add up to the fee');
is(xmr_balance('$fees'), $fees_before, 'G: $fees paid nothing');
is(xmr_balance('fee-g1') . ',' . xmr_balance('fee-g2'), '0,0', 'G: both amounts left the payees');
$rt->run('mine', 5);
wait_status('fee-g2', 'confirmed', 'G');
is($rt->received_amounts($ig1), 50000000000 - $share1, 'G: fee-g1 received 0.05 XMR less its share');
is($rt->received_amounts($ig2), 150000000000 - $share2, 'G: fee-g2 received 0.15 XMR less its share');
is(sql(qq{SELECT string_agg(ok::text, ',') FROM compay.verify_payout($pg)}), 'true,true',
	'G: verify_payout finds each payee paid its amount less its share');
set_and_reload('compay.payout_fee_payer', 'network');

# H. Verifier rewards.
my ($ih_primary, $ah_primary) = $rt->subaddress;
my ($ih_verify, $ah_verify) = $rt->subaddress;
my ($ih2, $ah2) = $rt->subaddress;
sql(qq{SELECT compay.set_payout_address('ver-h1', '$ah_primary');
  SELECT compay.set_payout_address('ver-h1', '$ah_verify', 'verification');
  SELECT compay.set_payout_address('ver-h2', '$ah2');
  SELECT compay.set_payout_policy(v, true, '0.000001', '1 minute', '1') FROM unnest(ARRAY['ver-h1', 'ver-h2']) v;
  SELECT compay.admin_deposit('req-h', '1', 'XMR', 'test funds');
  SELECT compay.submit_job('hjob', 'req-h', 'Basic Training', '1') > 0;
  SELECT compay.assign_job('hjob', 'prov-h');
  SELECT compay.complete_job('hjob', now() - interval '100 seconds', now());
  SELECT compay.verify_job('hjob', 'ver-h1', true);
  SELECT compay.verify_job('hjob', 'ver-h2', true);});
my $reward = sql(q{SELECT compay.atomic(reward_amount) FROM compay.verifications v
	JOIN compay.jobs j ON j.id = v.job_id WHERE j.task_id = 'hjob' AND v.verifier = 'ver-h1'});
ok($reward > 0, "H: each verifier earned $reward piconero");
sql(q{SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '1 hour')});
is( sql(q{SELECT string_agg(payee || ':' || purpose, ',' ORDER BY payee) FROM compay.settlements
		  WHERE payee IN ('ver-h1', 'ver-h2', 'prov-h')}),
	'prov-h:primary,ver-h1:verification,ver-h2:verification',
	'H: the rewards are settled apart from the provider\'s earnings');
wait_status('ver-h1', 'relayed', 'H: ver-h1');
wait_status('ver-h2', 'relayed', 'H: ver-h2');
$rt->run('mine', 5);
wait_status('ver-h1', 'confirmed', 'H: ver-h1');
wait_status('ver-h2', 'confirmed', 'H: ver-h2');
is($rt->received_amounts($ih_verify), $reward, 'H: ver-h1 was paid its reward at its verification address');
is($rt->received_amounts($ih_primary), '', 'H: nothing went to its primary address');
is($rt->received_amounts($ih2), $reward, 'H: ver-h2, without a verification address, was paid at its primary one');

is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok');

$node->stop;
done_testing();
