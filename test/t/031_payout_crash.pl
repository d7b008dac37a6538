# Payouts survive crashes without paying twice, against the real regtest
# wallet.  Each case pays its own payee (a subaddress of the provider
# wallet), kills something at a chosen point, lets the worker reconcile,
# mines, and then counts what that subaddress received: exactly one output
# of exactly the amount.
#
#  A. kill -9 of the worker after the wallet built the transaction and
#     before the build was committed (the worker waits on a row lock);
#  B. kill -9 after the build was committed and before the relay
#     (compay.payout_auto_relay off holds it at built);
#  C. kill -9 after the relay and before it was recorded (a row lock);
#  D. kill -9 of the wallet RPC after the relay, before it stored the
#     wallet; the wallet is started again and refreshed.
#
# Run: PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl:test/t
#      PATH=/usr/lib/postgresql/15/bin:$PATH
#      PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
#      prove test/t/031_payout_crash.pl   (as a non-root user)

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rt = CompayRegtest->up;
my $node = $rt->node('crash', "compay.payout_confirmations = 5\nrestart_after_crash = on\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub set_and_reload { $rt->set($node, @_); }

sub worker_pid
{
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'compay settlement worker'});
	return sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'compay settlement worker'});
}

sub kill_worker_and_recover
{
	my ($what) = @_;
	my $pid = worker_pid();
	ok($pid, "$what: worker pid $pid");
	kill 'KILL', $pid;
	$node->poll_query_until('postgres', 'SELECT 1', '1');
	worker_pid();
}

sub payout_of
{
	my ($payee) = @_;
	return sql(qq{SELECT payout_id FROM compay.payouts WHERE node_id = '$payee'});
}

sub confirm_and_check
{
	my ($what, $payee, $index, $atomic) = @_;
	ok( $node->poll_query_until('postgres',
			qq{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = '$payee' AND status = 'relayed'}),
		"$what: relayed after recovery");
	$rt->run('mine', 5);
	ok( $node->poll_query_until('postgres',
			qq{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = '$payee' AND status = 'confirmed'}),
		"$what: confirmed");
	is($rt->received_amounts($index), $atomic, "$what: the payee's address received exactly one output of $atomic");
	is( sql(qq{SELECT count(*) FROM compay.payout_items WHERE node_id = '$payee'}),
		'1', "$what: one payout row");
	is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', "$what: verify_ledger() ok");
}

# A. After the build, before its commit.
set_and_reload('compay.worker_enabled', 'off');
my $ia = $rt->earn_at($node, 'crash-a', '0.1');
is(sql(q{SELECT compay.queue_payouts()}), '1', 'A: one payout queued');
my $pa = payout_of('crash-a');
my $lock = $node->background_psql('postgres', on_error_stop => 0);
$lock->query_safe(qq{BEGIN; SELECT 1 FROM compay.payout_transactions WHERE id = $pa FOR UPDATE});
set_and_reload('compay.worker_enabled', 'on');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'compay settlement worker' AND wait_event_type = 'Lock'}),
	'A: the worker built the transaction and waits to record it');
kill_worker_and_recover('A');
eval { $lock->quit };
confirm_and_check('A', 'crash-a', $ia, '100000000000');

# B. After the build was committed, before the relay.
set_and_reload('compay.payout_auto_relay', 'off');
my $ib = $rt->earn_at($node, 'crash-b', '0.2');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'crash-b' AND status = 'built'}),
	'B: built, not relayed');
my $txb = sql(qq{SELECT tx_hash FROM compay.payout_transactions WHERE id = } . payout_of('crash-b'));
kill_worker_and_recover('B');
like($rt->run('rpc', 'treasury', 'get_transfer_by_txid', qq({"txid":"$txb"})),
	qr/"code"\s*:\s*-8/, 'B: the built transaction was never sent');
set_and_reload('compay.payout_auto_relay', 'on');
confirm_and_check('B', 'crash-b', $ib, '200000000000');

# C. After the relay, before it was recorded.
set_and_reload('compay.payout_auto_relay', 'off');
my $ic = $rt->earn_at($node, 'crash-c', '0.3');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'crash-c' AND status = 'built'}),
	'C: built');
my $pc = payout_of('crash-c');
$lock = $node->background_psql('postgres', on_error_stop => 0);
$lock->query_safe(qq{BEGIN; SELECT 1 FROM compay.payout_transactions WHERE id = $pc FOR UPDATE});
set_and_reload('compay.payout_auto_relay', 'on');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'compay settlement worker' AND wait_event_type = 'Lock'}),
	'C: the worker relayed and waits to record it');
my $txc = sql(qq{SELECT tx_hash FROM compay.payout_transactions WHERE id = $pc});
like($rt->run('rpc', 'treasury', 'get_transfer_by_txid', qq({"txid":"$txc"})),
	qr/"txid"/, 'C: the wallet has sent it');
kill_worker_and_recover('C');
eval { $lock->quit };
confirm_and_check('C', 'crash-c', $ic, '300000000000');
is(sql(qq{SELECT tx_hash FROM compay.payout_transactions WHERE id = $pc}), $txc,
	'C: the recorded transaction is the one relayed before the crash');

# D. The wallet RPC killed after the relay, before it stored the wallet.
my $id = $rt->earn_at($node, 'crash-d', '0.05');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'crash-d' AND status = 'relayed'}),
	'D: relayed');
$rt->run('stop-wallet', 'treasury', 'KILL');
$rt->run('start-wallet', 'treasury');
confirm_and_check('D', 'crash-d', $id, '50000000000');

$node->stop;
done_testing();
