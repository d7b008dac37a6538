# The wallet RPC client and the payouts against the faults a real wallet
# cannot produce on demand.  test/monero/fault_proxy.pl sits between the
# node (compay.wallet_rpc_url points at it) and the real regtest treasury
# wallet, and injects them; the daemon is asked directly.  Each payout case
# pays its own payee (a subaddress of the provider wallet), mines, and then
# counts what that subaddress received: exactly one output of exactly the
# amount, from the payout's transaction.
#
#  1. pass: a call works through the proxy, digest login included;
#  2. hang: PY014 "timeout" after compay.wallet_rpc_timeout (2 s);
#  3. cut (half the reply, then the connection closes): PY014 "no reply";
#  4. huge (a 6 MB reply): PY014 "bad reply", over
#     compay.wallet_rpc_reply_max; accepted once the cap is 8MB;
#  5. the reply to a payout's relay_tx lost after the wallet relayed it:
#     a. the connection closed before one byte of the reply (libcurl may
#        then re-send the request on a new connection),
#     b. closed after the reply's headers (no re-send: the worker gets
#        "no reply" and must ask the wallet by hash);
#     each payout is still relayed, confirmed and paid once;
#  6. the wallet hanging on a payout's transfer: the payout stays queued,
#     last_error "timeout", nothing paid; once the wallet answers, paid once.
#
# Run: PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl:test/t
#      PATH=/usr/lib/postgresql/15/bin:$PATH
#      PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
#      prove test/t/033_wallet_rpc_faults.pl   (as a non-root user, from the
#      source root: the proxy is started as test/monero/fault_proxy.pl)

use strict;
use warnings;

use CompayRegtest;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $started = time;
my $rt = CompayRegtest->up;

# The proxy, on a free port, in front of the treasury wallet; its log is
# one line per exchange ("#CONN.REQ METHOD [MODE]: STATUS what it did").
my $mode_file = PostgreSQL::Test::Utils::tempdir() . '/proxy.mode';
my $proxy_log = "$PostgreSQL::Test::Utils::log_path/033_fault_proxy.log";
my $proxy_pid;
my $proxy_port;
{
	pipe(my $from_proxy, my $to_test) or die "pipe: $!";
	$proxy_pid = fork // die "fork: $!";
	if ($proxy_pid == 0)
	{
		close $from_proxy;
		open STDOUT, '>&', $to_test or POSIX::_exit(127);
		open STDERR, '>', $proxy_log or POSIX::_exit(127);
		exec($^X, 'test/monero/fault_proxy.pl', 0, $rt->{env}{XMR_TREASURY_PORT}, $mode_file)
		  or POSIX::_exit(127);
	}
	close $to_test;
	my $ready = <$from_proxy> // '';
	close $from_proxy;
	($proxy_port) = $ready =~ /^fault_proxy pid \d+ port (\d+)$/m
	  or BAIL_OUT("the fault proxy did not start; see $proxy_log");
}

END
{
	if ($proxy_pid)
	{
		local $?;
		kill 'TERM', $proxy_pid;
		waitpid $proxy_pid, 0;
	}
}

my $node = $rt->node('faults', qq{compay.payout_confirmations = 5
compay.wallet_rpc_url = 'http://127.0.0.1:$proxy_port'
});
note(sprintf('regtest, proxy (port %d) and node up in %.1f s', $proxy_port, time - $started));

sub sql { return $node->safe_psql('postgres', shift); }

sub poll { return $node->poll_query_until('postgres', @_); }

# SQLSTATE and message of a statement expected to fail; '' if it worked.
sub sql_error
{
	my ($query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$query", on_error_stop => 1);
	return $rc ? $err : '';
}

# A SIGHUP setting: ALTER SYSTEM (RESET when $value is undef), reloaded;
# waits until new sessions show $shown, then a moment for the worker.
sub set_and_reload
{
	my ($setting, $value, $shown) = @_;
	sql(defined $value
		? qq{ALTER SYSTEM SET $setting = '$value'}
		: qq{ALTER SYSTEM RESET $setting});
	$node->reload;
	poll(qq{SELECT current_setting('$setting')}, $shown)
	  or die "$setting did not become $shown";
	sleep 1;
}

sub set_mode
{
	my ($mode) = @_;
	open my $fh, '>', "$mode_file.tmp" or die "$mode_file.tmp: $!";
	print $fh "$mode\n";
	close $fh or die "$mode_file.tmp: $!";
	rename "$mode_file.tmp", $mode_file or die "rename to $mode_file: $!";
}

sub mode
{
	open my $fh, '<', $mode_file or return 'pass';
	my $mode = <$fh> // '';
	chomp $mode;
	return $mode;
}

# The proxy's log from byte $from on (log_size() taken before a case).
sub log_size { return -s $proxy_log // 0; }

sub proxy_log_since
{
	my ($from) = @_;
	my $log = slurp_file($proxy_log);
	return substr($log, $from);
}

# How many exchanges of the log text were calls of $method answered $status.
sub exchanges
{
	my ($log, $method, $status) = @_;
	my @hits = $log =~ /^\S+ fault_proxy: #\d+\.\d+ \Q$method\E \[\w+\]: $status /mg;
	return scalar @hits;
}

# The payee's earnings, paid to a new subaddress of the provider wallet
# (CompayRegtest: earn_at); returns the subaddress index.
sub earn { return $rt->earn_at($node, @_); }

# What the provider wallet received at a subaddress index, in the pool or
# mined: "txid:amount" for each output, comma-separated.
sub received
{
	return join(',', map { "$_->{txid}:$_->{amount}" } $rt->incoming(shift));
}

sub payout_status
{
	my ($payee, $status) = @_;
	return poll(qq{SELECT count(*) = 1 FROM compay.payouts
	  WHERE node_id = '$payee' AND status = '$status'});
}

# Relayed, mined, confirmed; the payee received exactly one output of
# $atomic from the payout's transaction, nothing was paid to it twice,
# and the ledger is sound.
sub confirm_and_check
{
	my ($what, $payee, $index, $atomic) = @_;
	ok(payout_status($payee, 'relayed'), "$what: relayed");
	my $tx = sql(qq{SELECT tx_hash FROM compay.payouts WHERE node_id = '$payee'});
	$rt->run('mine', 5);
	ok(payout_status($payee, 'confirmed'), "$what: confirmed after 5 blocks");
	is(received($index), "$tx:$atomic",
		"$what: the payee's address received exactly one output of $atomic, from $tx");
	is(sql(qq{SELECT count(*) FROM compay.payout_items WHERE node_id = '$payee'}),
		'1', "$what: one payout for the payee");
	is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', "$what: verify_ledger() ok");
	return $tx;
}

# 1. pass: the wallet answers through the proxy, digest login included.
set_mode('pass');
my $from = log_size();
like(sql(q{SELECT compay.wallet_rpc('get_version')->>'version'}), qr/^\d+$/,
	'pass: get_version answers through the proxy');
my $log = proxy_log_since($from);
ok( $log =~ /\(no body\) \[pass\]: 401 passed/ && exchanges($log, 'get_version', 200) == 1,
	'pass: the 401 digest challenge and the authenticated call both went through the proxy');

# 2. hang: the call gives up after compay.wallet_rpc_timeout.
set_and_reload('compay.wallet_rpc_timeout', '2s', '2s');
set_mode('hang');
my $t0 = time;
my $err = sql_error(q{SELECT compay.wallet_rpc('get_version')});
my $took = time - $t0;
like($err, qr/PY014: wallet RPC timeout: /, 'hang: PY014 wallet RPC timeout');
ok($took >= 1.5 && $took < 10, sprintf('hang: gave up after %.1f s (timeout 2 s)', $took));
set_and_reload('compay.wallet_rpc_timeout', undef, '30s');

# 3. cut: half a reply, then the connection closes.
set_mode('cut');
like(sql_error(q{SELECT compay.wallet_rpc('get_balance')}),
	qr/PY014: wallet RPC no reply: /, 'cut: PY014 wallet RPC no reply');

# 4. huge: a 6 MB reply is over the 4 MB default cap, within an 8 MB one.
set_mode('huge');
like(sql_error(q{SELECT compay.wallet_rpc('get_version')}),
	qr/PY014: wallet RPC bad reply: the reply exceeds compay\.wallet_rpc_reply_max \(4096 kB\)/,
	'huge: PY014 bad reply, the reply exceeds compay.wallet_rpc_reply_max (4096 kB)');
set_and_reload('compay.wallet_rpc_reply_max', '8MB', '8MB');
is(sql(q{SELECT length(compay.wallet_rpc('get_version')->>'pad')}), '6000000',
	'huge: accepted whole with compay.wallet_rpc_reply_max = 8MB');
set_and_reload('compay.wallet_rpc_reply_max', undef, '4MB');
set_mode('pass');
like(sql(q{SELECT compay.wallet_rpc('get_version')->>'version'}), qr/^\d+$/,
	'pass again: the wallet answers');

# 5a. The relay_tx reply lost: the connection closes before a byte of it.
$from = log_size();
set_mode('drop_relay');
my $i5a = earn('lost-a', '0.1');
ok(payout_status('lost-a', 'relayed'), '5a: relayed although a relay_tx reply was lost');
$log = proxy_log_since($from);
is(mode(), 'pass', '5a: the proxy dropped a relay_tx reply and went back to pass');
like($log, qr/relay_tx \[drop_relay\]: 200 dropped the reply/,
	'5a: the wallet answered the relay_tx whose reply was dropped');
is(exchanges($log, 'relay_tx', 200), 2,
	'5a: libcurl sent the relay_tx again by itself, on a new connection');
ok($node->log_contains(qr/the HTTP client sent a request to \S+ again on a new connection/),
	'5a: the server log says the request was sent again');
is(exchanges($log, 'transfer', 200), 1, '5a: the wallet built one transaction');
confirm_and_check('5a', 'lost-a', $i5a, '100000000000');

# 5b. The relay_tx reply lost after its headers: no re-send is possible,
# the worker itself sees "no reply".
$from = log_size();
set_mode('cut_relay');
my $i5b = earn('lost-b', '0.2');
ok(payout_status('lost-b', 'relayed'), '5b: relayed although the relay_tx reply was lost');
$log = proxy_log_since($from);
is(mode(), 'pass', '5b: the proxy cut a relay_tx reply and went back to pass');
is(exchanges($log, 'relay_tx', 200), 1,
	'5b: one relay_tx reached the wallet, its reply cut after the headers');
my ($after_cut) = $log =~ /relay_tx \[cut_relay\]: 200 sent only the headers[^\n]*\n(.*)/s;
my ($next_call) = ($after_cut // '') =~ /#\d+\.\d+ (\w+) \[/;    # (\w+ skips the "(no body)" digest probes)
is($next_call, 'get_transfer_by_txid',
	'5b: after the lost reply the worker asked the wallet by tx hash (not relay, not transfer)');
is(exchanges($log, 'transfer', 200), 1, '5b: the wallet built one transaction');
confirm_and_check('5b', 'lost-b', $i5b, '200000000000');

# 6. The wallet hangs on the payout's transfer: nothing is built, nothing
# paid; the payout stays queued until the wallet answers again.
set_and_reload('compay.wallet_rpc_timeout', '2s', '2s');
$from = log_size();
set_mode('hang');
my $i6 = earn('hang', '0.05');
ok( poll(
		q{SELECT p.status = 'queued' AND p.attempts > 0 AND p.tx_hash IS NULL
		         AND p.last_error LIKE 'timeout:%'
		  FROM compay.payout_items i JOIN compay.payout_transactions p ON p.id = i.payout_id
		  WHERE i.node_id = 'hang'}),
	'6: the payout stays queued, no transaction, attempts > 0, last_error timeout');
note('6: ' . sql(q{SELECT attempts || ' attempt(s), last_error ' || last_error
	  FROM compay.payout_transactions p JOIN compay.payout_items i ON p.id = i.payout_id
	  WHERE i.node_id = 'hang'}));
like(proxy_log_since($from), qr/\[hang\]: the client closed/, '6: the proxy held the call until the worker gave up');
is(received($i6), '', '6: nothing reached the payee');
set_mode('pass');
set_and_reload('compay.wallet_rpc_timeout', undef, '30s');
confirm_and_check('6', 'hang', $i6, '50000000000');
is(exchanges(proxy_log_since($from), 'transfer', 200), 1, '6: the wallet built one transaction');
is(sql(q{SELECT count(*) FROM compay.payout_transactions}), '3',
	'three payouts in all, one per payee');

$node->stop;
note(sprintf('done in %.1f s', time - $started));
done_testing();
