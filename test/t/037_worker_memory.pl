# The worker's memory stays flat over hundreds of rounds with a treasury
# wallet that has received well over a thousand deposit outputs (issue
# 11, item 4), against the real regtest: the provider wallet pays, in
# COMPAY_MEMORY_TRANSFERS transfers (default 100) of 15 outputs each (a
# Monero transaction has at most 16 outputs, one is the change), to 15
# nodes' deposit subaddresses of the treasury; mined; credited once per
# output.  Then:
#
#  A. incremental: rounds with nothing new ask the wallet for its height
#     and the transfers of the last compay.deposit_rescan_blocks blocks
#     only (small replies, no incoming_transfers), and credit nothing more;
#  B. heavy: compay.deposit_rescan_blocks so large that every round reads
#     every incoming transfer again (the whole history, as 0.1 did each
#     round): hundreds of rounds, and the worker's private memory (RssAnon
#     in /proc/PID/status; VmRSS also counts the shared buffers the worker
#     touches, so it is printed but not judged) does not grow.
#
# The rounds are driven by compay.wake_worker().  The memory per round is
# printed (diag).  The wallet is reached through test/monero/fault_proxy.pl
# in pass mode, whose log gives the size of each reply.
#
# Run: as test/t/031_payout_crash.pl (COMPAY_XMR_DIR for a shared regtest).

use strict;
use warnings;

use CompayFaultProxy;
use CompayRegtest;
use HTTP::Tiny;
use JSON::PP;
use List::Util ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $started = time;
my $transfers = $ENV{COMPAY_MEMORY_TRANSFERS} // 100;
my $nodes = 15;
my $outputs = $transfers * $nodes;
my $rounds_a = 100;
my $rounds_b = 150;

my $rt = CompayRegtest->up;
my $proxy = CompayFaultProxy->start($rt->{env}{XMR_TREASURY_PORT}, '037');
$proxy->set_mode('pass');
my $node = $rt->node('memory', qq{compay.wallet_rpc_url = 'http://127.0.0.1:$proxy->{port}'
});

sub sql { return $node->safe_psql('postgres', shift); }

my $http = HTTP::Tiny->new(timeout => 120);

# One call to the provider wallet (no login); its result.
sub provider
{
	my ($method, $params) = @_;
	my $res = $http->post(
		"$rt->{env}{XMR_PROVIDER_URL}/json_rpc",
		{
			headers => { 'Content-Type' => 'application/json' },
			content => encode_json({ jsonrpc => '2.0', id => '0', method => $method,
					params => $params // {} })
		});
	die "provider $method: HTTP $res->{status}" unless $res->{success};
	my $reply = decode_json($res->{content});
	die "provider $method: " . encode_json($reply->{error}) if $reply->{error};
	return $reply->{result};
}

# Mines $n blocks to $address, then refreshes both wallets.  In batches
# of at most 50, the height checked after each: monerod sometimes refuses
# a block it mined itself ("mined block failed verification", seen while
# it grew its LMDB map and after a hundred transactions entered its pool),
# and a batch then stops early; the rest is mined again.
sub mine
{
	my ($n, $address) = @_;
	my $height = sub { return $rt->rpc('daemon', '/get_height', '{}', 'height'); };
	my $target = $height->() + $n;
	for (my $tries = 0; (my $h = $height->()) < $target; $tries++)
	{
		die "monerod does not mine ($h of $target)" if $tries > $n / 50 + 10;
		eval {
			$rt->rpc('daemon', 'generateblocks',
				encode_json({ amount_of_blocks => List::Util::min(50, $target - $h),
						wallet_address => $address }));
		};
		note("generateblocks: $@") if $@;
	}
	provider('refresh');
	$rt->rpc('treasury', 'refresh');
}

# The deposit addresses.
my @addresses = map { sql(qq{SELECT compay.deposit_address('mem-$_')}) } 1 .. $nodes;
is(scalar(grep { /^8/ } @addresses), $nodes, "$nodes deposit subaddresses of the treasury");

# The provider's coins: a transfer spends one or two unlocked coinbase
# outputs (the wallet takes two when it can) and its change stays locked
# for 10 blocks, so two outputs a transfer, unlocked after 60 blocks.
my $t0 = time;
mine(2 * $transfers + 60, $rt->{env}{XMR_PROVIDER_ADDRESS});
my $t_mined = time - $t0;
$t0 = time;
for my $i (1 .. $transfers)
{
	provider('transfer', {
			destinations => [ map { { amount => 1000000000, address => $_ } } @addresses ],
			account_index => 0, priority => 0 });
}
my $t_sent = time - $t0;
# A hundred transactions fill more than one block (a block holds about
# twice the median weight): mine until the pool is empty, then 10 more.
my $pool = sub { return () = $rt->rpc('daemon', '/get_transaction_pool_hashes') =~ /"[0-9a-f]{64}"/g; };
for (my $i = 0; $pool->() > 0; $i++)
{
	die 'the pool does not empty' if $i > 20;
	mine(1, $rt->{env}{XMR_TREASURY_ADDRESS});
}
mine(10, $rt->{env}{XMR_TREASURY_ADDRESS});
ok( $node->poll_query_until('postgres',
		qq{SELECT count(*) = $outputs FROM compay.xmr_deposits}),
	"all $outputs outputs credited");
diag(sprintf('worker memory: %d blocks mined to the provider in %.1f s, %d transfers of %d outputs sent in %.1f s, %d outputs credited %.1f s after the start',
		2 * $transfers + 60, $t_mined, $transfers, $nodes, $t_sent, $outputs, time - $started));
is( sql(q{SELECT count(DISTINCT node_id) || ' ' || count(DISTINCT tx_hash) || ' ' || compay.sum(amount)
		  FROM compay.xmr_deposits}),
	"$nodes $transfers " . ($outputs / 1000), 'one credit per output, 0.001 XMR each');
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok');

my $wpid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'compay settlement worker'});

# Private and resident memory of the worker, in kB.
sub memory
{
	my $status = slurp_file("/proc/$wpid/status");
	my ($anon) = $status =~ /^RssAnon:\s+(\d+) kB/m;
	my ($rss) = $status =~ /^VmRSS:\s+(\d+) kB/m;
	return ($anon, $rss);
}

# The bytes held by all the worker's memory contexts (the "Grand total"
# pg_log_backend_memory_contexts() writes to the server log).
sub contexts_total
{
	my $offset = -s $node->logfile;
	sql(qq{SELECT pg_log_backend_memory_contexts($wpid)});
	$node->wait_for_log(qr/\[$wpid\][^\n]*LOG:  Grand total: \d+ bytes/, $offset);
	my ($total) = substr(slurp_file($node->logfile), $offset) =~ /\[$wpid\][^\n]*LOG:  Grand total: (\d+) bytes/;
	return $total;
}

# Runs $n rounds, each woken by compay.wake_worker(), one psql session.
sql(q{CREATE FUNCTION wait_round(after bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
    LOOP
        SELECT rounds INTO r FROM compay.worker_status;
        EXIT WHEN r > after;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN r;
END $$});

sub rounds
{
	my ($n) = @_;
	my $before = sql(q{SELECT rounds FROM compay.worker_status});
	sql(join("\n",
		map { "SELECT rounds AS r FROM compay.worker_status \\gset\nSELECT compay.wake_worker();\nSELECT wait_round(:r);" }
		  1 .. $n));
	return sql(q{SELECT rounds FROM compay.worker_status}) - $before;
}

# The wallet calls the proxy passed since byte $from of its log:
# method => [count, largest reply].
sub calls_since
{
	my ($from) = @_;
	my %calls;
	my $log = substr($proxy->log, $from);
	while ($log =~ /#\d+\.\d+ (\w+) \[pass\]: 200 passed \((\d+) body bytes\)/g)
	{
		$calls{$1}[0]++;
		$calls{$1}[1] = $2 if ($calls{$1}[1] // 0) < $2;
	}
	return \%calls;
}

# A. Incremental.
rounds(10);    # the worker has reached the top
my $scanned = sql(q{SELECT scanned_height FROM compay.deposit_scan});
# The deposits below the rescan window: compay.deposit_confirmations (10)
# + compay.deposit_rescan_blocks (10) + 1 blocks above the last of them.
mine(21, $rt->{env}{XMR_TREASURY_ADDRESS});
rounds(5);
my $from = length $proxy->log;
my ($anon0, $rss0) = memory();
my $done = rounds($rounds_a);
my ($anon1, $rss1) = memory();
my $calls = calls_since($from);
ok($done >= $rounds_a, "A: $done rounds");
ok(sql(q{SELECT scanned_height FROM compay.deposit_scan}) > $scanned,
	'A: the scanned height moved up');
ok(!$calls->{incoming_transfers}, 'A: no incoming_transfers call: nothing new to read');
ok(($calls->{get_transfers}[1] // 0) < 1000,
	sprintf('A: the largest get_transfers reply was %d bytes (%d calls)',
		$calls->{get_transfers}[1] // 0, $calls->{get_transfers}[0] // 0));
is(sql(q{SELECT count(*) FROM compay.xmr_deposits}), $outputs, 'A: nothing credited twice');
diag(sprintf('worker memory, incremental: %d rounds, RssAnon %d -> %d kB (%+.1f kB a round), VmRSS %d -> %d kB; largest get_transfers reply %d bytes',
		$done, $anon0, $anon1, ($anon1 - $anon0) / $done, $rss0, $rss1,
		$calls->{get_transfers}[1] // 0));

# B. Every round reads every incoming transfer again.
$rt->set($node, 'compay.deposit_rescan_blocks', '100000');
rounds(20);    # warm up: caches, the allocator's high-water mark
$from = length $proxy->log;
($anon0, $rss0) = memory();
my $ctx0 = contexts_total();
my $t_b = time;
$done = rounds($rounds_b);
$t_b = time - $t_b;
($anon1, $rss1) = memory();
my $ctx1 = contexts_total();
$calls = calls_since($from);
ok($done >= $rounds_b, "B: $done rounds in " . sprintf('%.1f s', $t_b));
ok( ($calls->{get_transfers}[0] // 0) >= $rounds_b
	  && ($calls->{get_transfers}[1] // 0) > 100 * $outputs / 2,
	sprintf('B: each round read all %d incoming transfers again (%d get_transfers calls, %d bytes each)',
		$outputs, $calls->{get_transfers}[0] // 0, $calls->{get_transfers}[1] // 0));
is(sql(q{SELECT count(*) FROM compay.xmr_deposits}), $outputs, 'B: nothing credited twice');
ok($anon1 - $anon0 < 4096,
	sprintf('B: the worker\'s private memory stayed flat: RssAnon %d -> %d kB over %d rounds',
		$anon0, $anon1, $done));
ok($ctx1 - $ctx0 < 65536,
	sprintf('B: the worker\'s memory contexts hold %d bytes after the rounds, %d before', $ctx1, $ctx0));
diag(sprintf('worker memory, every round reading %d transfers (%d-byte replies): %d rounds in %.1f s, RssAnon %d -> %d kB (%+.1f kB a round), VmRSS %d -> %d kB, memory contexts %d -> %d bytes',
		$outputs, $calls->{get_transfers}[1] // 0, $done, $t_b, $anon0, $anon1,
		($anon1 - $anon0) / $done, $rss0, $rss1, $ctx0, $ctx1));
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok');

$node->stop;
diag(sprintf('worker memory: done in %.1f s', time - $started));
done_testing();
