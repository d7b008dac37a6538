# A slow wallet: one that answers, a byte a second (test/monero/fault_proxy.pl
# in "trickle" mode, a fault the real wallet cannot produce on demand; no
# real wallet is needed, the proxy answers by itself).  Every figure is
# printed (diag) for the record.
#
#  1. A client's wallet call stops within about a second of a cancel:
#     a. statement_timeout = 3s on compay.deposit_address() as compay_app:
#        57014 after about 3 s, its advisory lock released, nothing kept;
#     b. pg_cancel_backend() on compay.wallet_rpc(): 57014 at once.
#  2. The worker waiting on the trickling wallet (its deposit poll) still
#     expires a 1-second hold and times out a 1-second job on time: the
#     ledger steps go on every compay.worker_naptime while the call waits.
#  3. pg_ctl stop -m fast while the worker waits on the wallet: the worker
#     leaves the call at once, the server stops within a few seconds.
#
# compay.wallet_rpc_timeout is 10 minutes here, so only a cancel, a
# shutdown or the ledger's own clock can explain what is measured.
#
# Run: PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl:test/t
#      PATH=/usr/lib/postgresql/15/bin:$PATH
#      PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
#      prove test/t/035_wallet_slow.pl   (as a non-root user, from the source
#      root: the proxy is started as test/monero/fault_proxy.pl)

use strict;
use warnings;

use CompayFaultProxy;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

# The proxy answers by itself in trickle mode: its upstream port (1) is
# never connected to.
my $proxy = CompayFaultProxy->start(1, '035');
$proxy->set_mode('trickle');
my $proxy_port = $proxy->{port};

my $node = PostgreSQL::Test::Cluster->new('slow');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'compay'
compay.database = 'postgres'
compay.worker_naptime = '1s'
compay.wallet_rpc_url = 'http://127.0.0.1:$proxy_port'
compay.wallet_rpc_timeout = '600s'
});
$node->start;

sub sql { return $node->safe_psql('postgres', shift); }

sub proxy_log { return $proxy->log; }

# Runs psql with $query in the background; returns the harness and a ref
# to its stderr.
sub start_psql
{
	my ($query) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-d',
			$node->connstr('postgres'), '-c', $query ],
		'>', \$out, '2>', \$err);
	return ($h, \$err);
}

# Waits until the proxy's log has $n lines about $method; dies after 60 s.
sub wait_calls
{
	my ($method, $n) = @_;
	for (1 .. 600)
	{
		my @hits = proxy_log() =~ /#\d+\.\d+ \Q$method\E \[trickle\]: trickling/g;
		return if @hits >= $n;
		sleep 0.1;
	}
	die "no call of $method reached the proxy";
}

sql(q{CREATE EXTENSION compay; CREATE ROLE app LOGIN IN ROLE compay_app});
# The deposit_address() calls below fail: none may make the worker look
# for orphaned subaddresses (a get_address call that would trickle too and
# hold the proxy), so the orphan check is marked done far ahead.
sql(q{INSERT INTO compay.deposit_scan (scanned_height, checked_calls) VALUES (0, 1000)});

# 1a. statement_timeout on deposit_address(), as the application.
my $t0 = time;
my ($rc, $out, $err) = $node->psql('postgres',
	qq{\\set VERBOSITY verbose
SET ROLE app; SET statement_timeout = '3s'; SELECT compay.deposit_address('slow-node')});
my $took = time - $t0;
like($err, qr/57014: canceling statement due to statement timeout/,
	'1a: statement_timeout stops deposit_address() on a trickling wallet: 57014');
ok($took >= 2.9 && $took < 4.5,
	sprintf('1a: stopped %.2f s after the start, statement_timeout 3 s', $took));
diag(sprintf('slow wallet: statement_timeout 3 s stopped deposit_address() after %.2f s', $took));
# (The worker's own session locks, held while it waits for the same slow
# wallet, are not deposit_address()'s.)
is(sql(q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		 WHERE l.locktype = 'advisory' AND a.backend_type = 'client backend'}), '0',
	'1a: its advisory lock is released');
is(sql(q{SELECT count(*) FROM compay.deposit_addresses}), '0', '1a: no deposit address kept');

# 1b. pg_cancel_backend() on compay.wallet_rpc().
my $calls = () = proxy_log() =~ /get_balance \[trickle\]: trickling/g;
my ($h, $herr) = start_psql(q{SELECT compay.wallet_rpc('get_balance')});
wait_calls('get_balance', $calls + 1);
my $pid = sql(q{SELECT pid FROM pg_stat_activity WHERE query LIKE '%wallet_rpc(''get_balance'')%'
	AND pid <> pg_backend_pid()});
ok($pid =~ /^\d+$/, '1b: the call waits on the trickling wallet');
sleep 1;
$t0 = time;
is(sql(qq{SELECT pg_cancel_backend($pid)}), 't', '1b: pg_cancel_backend()');
$h->finish;
$took = time - $t0;
like($$herr, qr/57014: canceling statement due to user request/,
	'1b: the wallet call is cancelled: 57014');
ok($took < 1.5, sprintf('1b: the call ended %.2f s after the cancel', $took));
diag(sprintf('slow wallet: pg_cancel_backend() ended compay.wallet_rpc() after %.2f s', $took));

# 2. The worker waits on the trickling wallet; the ledger goes on.  A
# deposit address makes the worker read deposits (refresh first).
sql(q{INSERT INTO compay.deposit_addresses (node_id, address, address_index)
	VALUES ('slow-node', 'placeholder', 1)});
wait_calls('refresh', 1);
sleep 1.5;
like(sql(q{SELECT query FROM pg_stat_activity WHERE backend_type = 'compay settlement worker'}),
	qr/waiting for the wallet/, '2: the worker is in a wallet call');
sql(q{SELECT compay.deposit('payer', '10'); SELECT compay.deposit('requester', '10')});
$t0 = time;
my $hold = sql(q{SELECT compay.reserve('payer', '1', 'slow', '1 second')});
sql(q{SELECT compay.submit_job('slow-job', 'requester', 'render', '1', '1 second')});
ok( $node->poll_query_until('postgres',
		qq{SELECT status = 'expired' FROM compay.holds WHERE id = $hold}),
	'2: the 1-second hold expires while the wallet trickles');
my $hold_took = time - $t0;
ok( $node->poll_query_until('postgres',
		q{SELECT status = 'timed_out' FROM compay.jobs WHERE task_id = 'slow-job'}),
	'2: the 1-second job times out while the wallet trickles');
my $job_took = time - $t0;
ok($hold_took < 4, sprintf('2: the hold expired %.2f s after it was made (timeout 1 s, naptime 1 s)',
		$hold_took));
ok($job_took < 4, sprintf('2: the job timed out %.2f s after it was submitted', $job_took));
diag(sprintf('slow wallet: a 1-second hold expired after %.2f s, a 1-second job timed out after %.2f s',
		$hold_took, $job_took));
my @refresh = proxy_log() =~ /refresh \[trickle\]: trickling/g;
is(scalar @refresh, 1, '2: meanwhile the worker is still in its one wallet call');
is(sql(q{SELECT state FROM compay.worker_status}), 'running', '2: the worker round is still running');

# 3. A fast shutdown while the worker waits on the wallet.
$t0 = time;
$node->stop('fast');
$took = time - $t0;
ok($took < 5, sprintf('3: pg_ctl stop -m fast took %.2f s with the worker in a wallet call', $took));
diag(sprintf('slow wallet: pg_ctl stop -m fast took %.2f s', $took));
ok($node->log_contains(qr/terminating background worker "compay settlement worker" due to administrator command/),
	'3: the worker was terminated by the shutdown');

done_testing();
