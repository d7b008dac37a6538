# No lost acknowledged transfer across automatic failovers: a real
# pg_auto_failover formation (test/t/CompayFormation.pm, monitor and two
# nodes, synchronous replication as pg_auto_failover sets it up) runs four
# clients that send keyed transfers and hold + capture pairs through the
# formation's multi-host URI (target_session_attrs=read-write), reconnect
# after every error and log each key whose commit was acknowledged.  The
# primary's machine is "crashed" (kill -9 of its keeper and postmaster) at
# random moments three times; pg_auto_failover promotes the standby each
# time, and the killed node rejoins as standby before the next kill.
# Afterwards: every acknowledged key is on the primary with the id the
# client got; re-sending every unacknowledged key gives each exactly once
# (a second re-send returns the same ids, the balances count each key
# once); verify_ledger() is all ok on the primary and on the standby; the
# settlement worker runs on the primary only and resumes by itself on
# each promoted node.
#
# Run: bash /work/tools/runperl.sh REPO PG test/t/050_failover_transfers.pl
# (as postgres; pg_autoctl, from pg-auto-failover-cli, on PATH).

use strict;
use warnings;

use CompayFormation;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $clients = 4;
my $seed = $ENV{COMPAY_FAILOVER_SEED} // time % 100000;
srand($seed);
note "random seed $seed (COMPAY_FAILOVER_SEED)";

my $f = CompayFormation->up(
	conf => "compay.worker_naptime = 1\n",
	init_sql => join(';', map {
			"SELECT compay.deposit('payer-$_', '1000000', idempotency_key => 'seed-$_')"
		} 1 .. $clients));
my $uri = $f->uri;
like($uri, qr/^postgres:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/postgres\?.*target_session_attrs=read-write/,
	'the formation has a multi-host read-write URI');

# The worker: state running or idle where the node is primary, standby on
# the standby; $since: it started a round after that time (epoch).
sub worker_state
{
	my ($node) = @_;
	return $f->psql($node, 'SELECT state FROM compay.worker_status');
}

sub worker_resumed
{
	my ($node, $since) = @_;
	my $t0 = time;
	while (time - $t0 < 30)
	{
		my ($rc, $out) = $f->try_psql($node,
			qq{SELECT state IN ('running', 'idle')
                    AND last_round_start > to_timestamp($since)
               FROM compay.worker_status});
		return 1 if $rc == 0 && $out eq 't';
		sleep 0.25;
	}
	return 0;
}

like($f->psql_primary('SHOW synchronous_standby_names'), qr/pgautofailover_standby/,
	'the primary commits synchronously to the standby');
ok(worker_resumed($f->primary, 0), 'the worker runs rounds on the primary');
like(worker_state($f->secondary), qr/^(standby|not started)$/,
	'the worker runs no rounds on the standby');

my $dir = PostgreSQL::Test::Utils::tempdir();
my $stop = "$dir/stop";

# Key N-I: transfer of 1 when I is even; else a hold of 3 captured for 2
# (final: 1 released), in one statement so that one key is one commit.
sub op_sql
{
	my ($key) = @_;
	my ($n, $i) = $key =~ /^c(\d+)-(\d+)$/ or die "bad key $key";
	return $i % 2 == 0
	  ? "SELECT compay.transfer('payer-$n', 'payee-$n', '1', '$key', '$key')"
	  : "SELECT compay.capture(compay.reserve('payer-$n', '3', '$key', NULL, '$key-h'),"
	  . " 'payee-$n', '2', true, '$key-c')";
}

sub send_sql
{
	my ($conn, $sql) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGCONNECT_TIMEOUT} = 3;
	my $ok = eval {
		IPC::Run::run([ 'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $conn,
				'-c', $sql ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	};
	chomp $out;
	return ($ok && $out =~ /^\d+$/) ? $out : undef;
}

# A client: a new key each time; a key whose call failed (no answer, no
# primary, connection lost at commit) stays unacknowledged, its outcome
# unknown to the client, and is re-sent at the end.
sub client
{
	my ($n) = @_;
	open my $sent, '>>', "$dir/sent-$n" or die $!;
	open my $ack, '>>', "$dir/ack-$n" or die $!;
	$_->autoflush(1) for $sent, $ack;
	for (my $i = 1; !-e $stop; $i++)
	{
		my $key = "c$n-$i";
		print $sent "$key\n";
		my $id = send_sql($uri, op_sql($key));
		if (defined $id) { print $ack "$key $id\n" }
		else { sleep 0.2 }
		sleep 0.02;
	}
	return;
}

my @pids;
for my $n (1 .. $clients)
{
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		client($n);
		POSIX::_exit(0);
	}
	push @pids, $pid;
}

sub acked
{
	my %ack;
	for my $n (1 .. $clients)
	{
		open my $fh, '<', "$dir/ack-$n" or next;
		while (<$fh>) { $ack{$1} = $2 if /^(\S+) (\d+)$/ }
	}
	return \%ack;
}

my @failover;
for my $round (1 .. 3)
{
	my $before = scalar keys %{ acked() };
	sleep 2 + rand 4;
	my $during = scalar keys %{ acked() };
	cmp_ok($during, '>', $before, "round $round: the clients commit through the URI");
	my $old = $f->kill_primary;
	my $killed_at = time;
	my $seconds = $f->wait_promoted(90);
	push @failover, $seconds;
	my $new = $f->primary;
	note sprintf 'round %d: %s killed, %s promoted in %.1f s', $round, $old, $new->{name},
	  $seconds;
	ok(worker_resumed($new, $killed_at), "round $round: the worker resumed on $new->{name}");
	my $rejoin = $f->rejoin_old(180);
	note sprintf 'round %d: %s back as standby in %.1f s', $round, $old, $rejoin;
	like(worker_state($f->secondary), qr/^(standby|not started)$/,
		"round $round: the worker runs no rounds on the rejoined $old");
	like($f->psql_primary('SHOW synchronous_standby_names'), qr/pgautofailover_standby/,
		"round $round: synchronous replication to $old again");
}
sleep 2;
open my $touch, '>', $stop or die $!;
close $touch;
waitpid($_, 0) for @pids;

# Every acknowledged key is on the primary, with the id its client got.
my $ack = acked();
my @sent;
for my $n (1 .. $clients)
{
	open my $fh, '<', "$dir/sent-$n" or die $!;
	push @sent, map { chomp; $_ } <$fh>;
}
my $idem = sub { my ($k) = @_; $k =~ /-(\d+)$/ && $1 % 2 ? "$k-c" : $k };
my $values = join ",\n", map { "('" . $idem->($_) . "', $ack->{$_})" } sort keys %$ack;
my $lost = $f->psql_primary(qq{
SELECT count(*) FROM (VALUES $values) AS a(key, id)
WHERE NOT EXISTS (SELECT 1 FROM compay.idempotency_keys k
                  JOIN compay.transfers t ON t.id = k.result_id
                  WHERE k.key = a.key AND k.result_id = a.id)});
my $acked = scalar keys %$ack;
note sprintf 'acknowledged: %d of %d keys sent; failover times: %s s', $acked,
  scalar @sent, join(', ', map { sprintf '%.1f', $_ } @failover);
note "transfers lost: $lost";
cmp_ok($acked, '>=', 50, 'the clients had many commits acknowledged');
is($lost, '0', 'transfers lost: 0 (every acknowledged key is on the primary with its id)');

# Re-send every unacknowledged key, twice: the same ids both times.
my @unacked = grep { !exists $ack->{$_} } @sent;
note scalar(@unacked) . ' keys unacknowledged, re-sent';
my $unacked_values = join ",\n", map { "('" . $idem->($_) . "')" } @unacked;
my $committed = @unacked ? $f->psql_primary(qq{
SELECT count(*) FROM (VALUES $unacked_values) AS u(key)
JOIN compay.idempotency_keys k USING (key)}) : 0;
note "$committed of them had committed without their client knowing";
my $script = join ";\n", map { op_sql($_) } @unacked;
my @first = @unacked ? split /\n/, $f->psql_primary($script) : ();
my @second = @unacked ? split /\n/, $f->psql_primary($script) : ();
is(scalar @first, scalar @unacked, 'every unacknowledged key got an id when re-sent');
is_deeply(\@second, \@first, 'a second re-send returns the same ids');

# Exactly once: each payee has 1 per transfer key and 2 per capture key,
# and there is one transfer per transfer key and one hold per capture key.
my (%expect, $transfers, $holds);
for my $key (@sent)
{
	my ($n, $i) = $key =~ /^c(\d+)-(\d+)$/;
	$expect{"payee-$n"} += $i % 2 ? 2 : 1;
	$i % 2 ? $holds++ : $transfers++;
}
my $expect = join ' ', map { "$_:$expect{$_}" } sort keys %expect;
is( $f->psql_primary(
		q{SELECT string_agg(node_id || ':' || (balance::numeric)::text, ' ' ORDER BY node_id)
          FROM compay.accounts WHERE node_id LIKE 'payee-%'}),
	$expect, 'each payee received every key exactly once');
is( $f->psql_primary(
		q{SELECT count(*) FILTER (WHERE kind = 'transfer') || ' ' || count(*) FILTER (WHERE kind = 'capture')
          FROM compay.transfers t JOIN compay.accounts a ON a.id = t.to_account
          WHERE a.node_id LIKE 'payee-%'}),
	"$transfers $holds", "one transfer per transfer key ($transfers), one capture per hold key ($holds)");
is($f->psql_primary(q{SELECT count(*) FROM compay.holds WHERE reference ~ '^c\d+-\d+$'}),
	$holds, 'one hold per hold key');

is($f->psql_primary('SELECT count(*) FILTER (WHERE NOT ok) FROM compay.verify_ledger()'),
	'0', 'verify_ledger: all ok on the primary');
# The standby (the node killed last) replays up to the primary's position,
# then checks the same ledger read-only.
my $lsn = $f->psql_primary('SELECT pg_current_wal_lsn()');
my $standby = $f->secondary;
my $t0 = time;
sleep 0.2
  while time - $t0 < 60
  && $f->psql($standby, "SELECT pg_last_wal_replay_lsn() >= '$lsn'") ne 't';
is($f->psql($standby, 'SELECT count(*) FILTER (WHERE NOT ok) FROM compay.verify_ledger()'),
	'0', "verify_ledger: all ok on the standby $standby->{name}, read-only");
is($f->psql($standby, q{SELECT count(*) FROM compay.transfers}),
	$f->psql_primary(q{SELECT count(*) FROM compay.transfers}),
	'the standby has every transfer');

diag sprintf 'failover times: %s s; acknowledged transfers: %d; transfers lost: %d',
  join(', ', map { sprintf '%.1f', $_ } @failover), $acked, $lost;
$f->down;
done_testing();
