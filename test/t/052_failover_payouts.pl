# No double payout at failover, whatever the replication mode: a real
# pg_auto_failover formation (test/t/CompayFormation.pm: a monitor and two
# nodes) paying from the real regtest treasury wallet.  The primary is
# killed with kill -9 (its keeper and postmaster) at the worst moments of
# a payout, found with the test-only setting compay.test_payout_pause
# (the round logs and sleeps after that step; ALTER SYSTEM on the primary
# only, so the promoted node does not pause):
#
#  S1. synchronous, killed right after the built commit: the promoted node
#      has the payout built and relays the same transaction.
#  S2. synchronous, killed after relay_tx (the wallet sent it) before
#      relayed is recorded: the promoted node finds it by hash and records
#      it relayed; nothing is built again.
#  A.  asynchronous: the standby is cut off from the primary's WAL
#      (CompayFormation::cut_standby) before the payout is requested, so
#      every record of it is really lost at promotion; the old primary
#      builds, notes and relays it, is killed; on the new primary the
#      payee asks again (request_payout): the round reconciles with the
#      wallet before it builds, adopts the wallet's transaction (debited
#      once, the settlement paid) and fails the new request unbuilt.
#
# Each payee's address must receive exactly one output, verify_ledger()
# be all ok on the new primary, and a reconciliation then adopt nothing
# (the ledger and the wallet agree).  Figures: failover times, adoption
# time after promotion, payouts paid twice (must be 0).

use strict;
use warnings;

use CompayFormation;
use CompayRegtest;
use Test::More;
use Time::HiRes qw(time sleep);

my $rt = CompayRegtest->up;
my $e = $rt->{env};
# COMPAY_HA_PORTS=monitor,node1,node2 pins the ports (else free ones).
my $f = CompayFormation->up(
	ports => $ENV{COMPAY_HA_PORTS} ? [ split /,/, $ENV{COMPAY_HA_PORTS} ] : undef,
	conf => qq{
compay.wallet_rpc_url = '$e->{XMR_TREASURY_URL}'
compay.wallet_rpc_user = '$e->{XMR_TREASURY_USER}'
compay.wallet_rpc_password_file = '$e->{XMR_TREASURY_PASSWORD_FILE}'
compay.wallet_rpc_timeout = '30s'
compay.daemon_rpc_url = '$e->{XMR_DAEMON_URL}'
compay.worker_naptime = '1s'
compay.payout_confirmations = 2
});

# CompayRegtest's helpers take a node with safe_psql: the primary of the
# moment.
{
	package PrimaryOf;
	sub new { my ($class, $f) = @_; return bless { f => $f }, $class; }
	sub safe_psql { my ($self, $db, $sql) = @_; return $self->{f}->psql_primary($sql); }
}
my $primary = PrimaryOf->new($f);

sub sql { return $f->psql_primary(shift); }

# Polls sql on the primary until it returns want (at most timeout s).
sub wait_for
{
	my ($query, $want, $timeout) = @_;
	my $end = time + ($timeout // 90);
	while (time < $end)
	{
		my ($rc, $out) = $f->try_psql($f->primary // 'node1', $query);
		return 1 if $rc == 0 && $out eq $want;
		sleep 0.3;
	}
	diag("timed out waiting for '$want' from: $query; states " . $f->states);
	return 0;
}

# The primary (only) pauses its payout round after step; reloaded.
sub pause_after
{
	my ($node, $step) = @_;
	$f->psql($node, "ALTER SYSTEM SET compay.test_payout_pause = '$step'");
	$f->psql($node, 'SELECT pg_reload_conf()');
	sleep 1.5;		# the worker reloads between rounds
}

sub unpause
{
	my ($node) = @_;
	$f->psql($node, 'ALTER SYSTEM RESET compay.test_payout_pause');
	$f->psql($node, 'SELECT pg_reload_conf()');
}

# Whether the treasury wallet has the transaction (pool or chain).
sub wallet_has
{
	my ($tx) = @_;
	my $got = eval { $rt->rpc('treasury', 'get_transfer_by_txid', qq({"txid":"$tx"}), 'result.transfer.txid') };
	return defined $got && $got eq $tx;
}

# A payee with its own subaddress, earnings of amount settled, paid only
# on request.
sub payee
{
	my ($name, $amount) = @_;
	my $index = $rt->pay_to($primary, $name);
	sql(qq{SELECT compay.set_payout_policy('$name', false, '0.01', '1 day', '1')});
	my $settlement = $rt->earn($primary, $name, $amount);
	return ($index, $settlement);
}

my $paid_twice = 0;
my @outputs;

# Each payee's address received exactly one output of atomic.
sub one_output
{
	my ($what, $index, $atomic) = @_;
	my $got = $rt->received_amounts($index);
	my $n = () = split /,/, $got;
	$paid_twice += $n - 1 if $n > 1;
	push @outputs, "$what: $n";
	is($got, $atomic, "$what: the payee's address received exactly one output of $atomic");
}

# S1: synchronous, killed right after the built commit.
my ($i1, $s1) = payee('ha-s1', '0.02');
my $p1_node = $f->primary;
pause_after($p1_node, 'built');
my $p1 = sql(q{SELECT compay.request_payout('ha-s1')});
ok(wait_for("SELECT status FROM compay.payout_transactions WHERE id = $p1", 'built'),
	'S1: the payout is built (its commit waited for the synchronous standby)');
my $tx1 = sql("SELECT tx_hash FROM compay.payout_transactions WHERE id = $p1");
ok(!wallet_has($tx1), 'S1: nothing was relayed when the primary is killed');
my $killed_at = time;
my $old = $f->kill_primary;
my $t = $f->wait_promoted(60);
note(sprintf('S1: failover in %.1f s', $t));
ok(wait_for("SELECT status FROM compay.payout_transactions WHERE id = $p1", 'relayed'),
	'S1: the new primary has the payout and relays it');
is(sql("SELECT relayed_at > to_timestamp($killed_at) FROM compay.payout_transactions WHERE id = $p1"), 't',
	'S1: relayed after the kill, by the new primary');
is(sql("SELECT tx_hash FROM compay.payout_transactions WHERE id = $p1"), $tx1,
	'S1: the same transaction');
$f->rejoin_old(180);
unpause($old);

# S2: synchronous again, killed after the relay, before relayed is recorded.
my ($i2, $s2) = payee('ha-s2', '0.03');
my $p2_node = $f->primary;
pause_after($p2_node, 'relayed');
my $p2 = sql(q{SELECT compay.request_payout('ha-s2')});
ok(wait_for("SELECT status FROM compay.payout_transactions WHERE id = $p2", 'built'),
	'S2: the payout is built');
my $tx2 = sql("SELECT tx_hash FROM compay.payout_transactions WHERE id = $p2");
my $end = time + 60;
sleep 0.3 until wallet_has($tx2) || time > $end;
ok(wallet_has($tx2), 'S2: the wallet relayed it');
sleep 1;		# the round notes it again, stores, and pauses
is(sql("SELECT status FROM compay.payout_transactions WHERE id = $p2"), 'built',
	'S2: relayed is not recorded when the primary is killed');
$killed_at = time;
$old = $f->kill_primary;
$t = $f->wait_promoted(60);
note(sprintf('S2: failover in %.1f s', $t));
ok(wait_for("SELECT status FROM compay.payout_transactions WHERE id = $p2", 'relayed'),
	'S2: the new primary records it relayed');
is(sql("SELECT relayed_at > to_timestamp($killed_at) FROM compay.payout_transactions WHERE id = $p2"), 't',
	'S2: recorded after the kill, by the new primary');
is(sql("SELECT tx_hash FROM compay.payout_transactions WHERE id = $p2"), $tx2,
	'S2: the same transaction');
$f->rejoin_old(180);
unpause($old);

# A: asynchronous, the standby cut off from the WAL before the payout.
my ($i3, $s3) = payee('ha-a', '0.04');
my $standby = $f->secondary;
ok(wait_for("SELECT count(*) FROM pg_stat_replication WHERE replay_lsn = pg_current_wal_lsn()", '1'),
	'A: the standby has replayed the earnings');
$f->cut_standby;
my $p3 = sql(q{SELECT compay.request_payout('ha-a')});
ok(wait_for("SELECT status FROM compay.payout_transactions WHERE id = $p3", 'relayed'),
	'A: the old primary built, noted and relayed the payout');
my ($tx3, $note3) = split /\|/, sql("SELECT tx_hash, wallet_note FROM compay.payout_transactions WHERE id = $p3");
like($note3, qr/:payout=$p3:fee=network:parts=${s3}x40000000000\@0$/, 'A: its note names the payout and the settlement part');
$old = $f->kill_primary;
$t = $f->wait_promoted(60);
note(sprintf('A: failover in %.1f s', $t));
my $promoted = time;
is(sql("SELECT count(*) FROM compay.payout_transactions WHERE tx_hash = '$tx3' OR id = $p3"), '0',
	'A: the new primary lost every record of the payout');
is(sql("SELECT status FROM compay.settlements WHERE id = $s3"), 'processing',
	'A: its settlement looks unpaid there');
# The payee asks again: the double payout the reconciliation prevents.
my $again = sql(q{SELECT compay.request_payout('ha-a')});
ok(wait_for("SELECT count(*) FROM compay.payout_transactions WHERE tx_hash = '$tx3' AND adopted_at IS NOT NULL", '1'),
	'A: the new primary adopted the wallet transaction');
my $adopt_s = time - $promoted;
note(sprintf('A: adopted %.1f s after the promotion', $adopt_s));
ok(wait_for("SELECT status FROM compay.payout_transactions WHERE id = $again", 'failed'),
	'A: the new request failed without being built');
is(sql("SELECT count(*) FROM compay.payout_transactions p JOIN compay.payout_parts pp ON pp.payout_id = p.id WHERE pp.settlement_id = $s3 AND p.tx_hash IS NOT NULL"),
	'1', 'A: one transaction pays the settlement');

# Confirmations, then the payees' wallets and the ledger.
sleep 3;
$rt->run('mine', 3);
ok(wait_for("SELECT string_agg(status::text, ',' ORDER BY id) FROM compay.settlements WHERE id IN ($s1, $s2, $s3)",
		'completed,completed,completed'), 'every settlement completed once its payout is confirmed');
one_output('S1', $i1, '20000000000');
one_output('S2', $i2, '30000000000');
one_output('A', $i3, '40000000000');
is(sql("SELECT count(*) FROM compay.transfers WHERE kind = 'withdrawal' AND reference ~ '^payout:[0-9]+\$'"), '3',
	'the ledger is debited once per payout');
is(sql('SELECT count(*) FROM compay.verify_ledger() WHERE NOT ok'), '0', 'verify_ledger on the new primary: all ok');
is(sql('SELECT count(*) FROM compay.reconcile_wallet()'), '0', 'the ledger and the wallet agree: nothing left to adopt');
is(sql("SELECT count(*) FROM compay.wallet_transfers(10000) w WHERE w.direction = 'out' AND w.payout_id IS NULL AND w.txid IN ('$tx1', '$tx2', '$tx3')"),
	'0', "each of the three transactions is a payout's");
my $rejoin = $f->rejoin_old(180);
is($f->psql_secondary('SELECT count(*) FROM compay.verify_ledger() WHERE NOT ok'), '0',
	'verify_ledger on the old primary, rejoined as a standby: all ok');
is($paid_twice, 0, 'payouts paid twice: 0');
note(sprintf('failover times: %s s; adoption %.1f s after promotion; outputs per payee: %s; paid twice: %d',
	join(', ', map { sprintf('%.1f', $_) } $f->failover_times), $adopt_s, join(', ', @outputs), $paid_twice));

$f->down;
done_testing();
