# Payouts and deposits under pg_cron, without the worker, on a real local
# Monero regtest (test/monero/regtest.sh):
#  - a cluster WITHOUT compay in shared_preload_libraries (pg_cron only;
#    compay is loaded by its first call): pg_cron schedules settlement,
#    expiry, CALL compay.run_payouts() and CALL compay.poll_deposits() every
#    minute (Debian 12's pg_cron 1.4 has minute ticks).  An XMR job is paid
#    once, received on the payee's wallet; a deposit is credited once.
#  - two CALL compay.run_payouts() at once: the second returns at once
#    (the runners' advisory try-lock), the payout is built and paid once.
#  - compay.wallet_rpc_url written as the Monero docs write it (ending in
#    /json_rpc) works; a wrong URL shows its error in compay.runner_status;
#    a queued payout larger than the wallet's unlocked balance is shown
#    there as the oldest stuck payout.
#  - a cluster with compay preloaded and the worker on, plus the pg_cron
#    jobs: both run payouts, the earnings are still paid once.

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rt = CompayRegtest->up;
my %env = %{ $rt->{env} };

# The pg_cron recipe of docs/operations.md, every minute for the test.
my $recipe = q{
  SELECT cron.schedule('compay-settle', '* * * * *', $$SELECT count(*) FROM compay.run_settlement('hourly')$$);
  SELECT cron.schedule('compay-expire', '* * * * *', $$SELECT compay.expire_holds(), compay.expire_jobs()$$);
  SELECT cron.schedule('compay-payouts', '* * * * *', 'CALL compay.run_payouts()');
  SELECT cron.schedule('compay-deposits', '* * * * *', 'CALL compay.poll_deposits()');
};
my $cron_conf = qq{
cron.database_name = 'postgres'
cron.host = '127.0.0.1'
listen_addresses = '127.0.0.1'
compay.payout_confirmations = 2
compay.deposit_confirmations = 2
};

# Mines a block every 5 s until the query is true (at most $max s).
sub mine_until
{
	my ($node, $query, $max) = @_;
	for (my $t = 0; $t < $max; $t += 5)
	{
		return 1 if $node->safe_psql('postgres', $query) eq 't';
		$rt->run('mine', 1);
		sleep 5;
	}
	return $node->safe_psql('postgres', $query) eq 't';
}

# 1. pg_cron alone, compay not preloaded.
my $cron = $rt->node('cron', "shared_preload_libraries = 'pg_cron'\n$cron_conf");
sub sql { return $cron->safe_psql('postgres', shift); }
is(sql(q{SHOW shared_preload_libraries}), 'pg_cron', 'compay is not preloaded');
sql(q{CREATE EXTENSION pg_cron});
is(sql(q{SELECT state FROM compay.worker_status}), 'not loaded', 'no worker, no shared memory');

# An XMR job earned last hour (the hourly settlement settles closed hours).
my $index = $rt->pay_to($cron, 'gpu-cron');
sql(q{SELECT compay.admin_deposit('req', '1', 'XMR', 'test funds');
  INSERT INTO compay.pricing_models (id, name, currency, base_price) VALUES (900, 'cron', 'XMR', '0.125');
  INSERT INTO compay.task_type_models VALUES ('cron-task', 900);
  SELECT compay.submit_task('t-cron', 'req', 'gpu-cron', 'cron-task');
  SELECT compay.complete_job('t-cron', now() - interval '1 minute', now());
  SELECT (compay.process_task_payment('t-cron', 'crypto')).status;
  UPDATE compay.payments SET completed_at = now() - interval '2 hours' WHERE task_id = 't-cron';});
# A deposit of 0.05 XMR to a node's deposit subaddress.
my $daddr = sql(q{SELECT compay.deposit_address('dep-cron')});
my $dtx = $rt->rpc('provider', 'transfer',
	qq({"destinations":[{"amount":50000000000,"address":"$daddr"}],"priority":0}),
	'result.tx_hash');
like($dtx, qr/^[0-9a-f]{64}$/, 'deposit sent');

sql($recipe);
ok( mine_until($cron,
		q{SELECT count(*) = 1 AND bool_and(status = 'confirmed')
		  FROM compay.payout_transactions}, 300),
	'pg_cron settled, built, relayed and confirmed the payout');
ok( mine_until($cron, q{SELECT count(*) = 1 FROM compay.xmr_deposits}, 120),
	'pg_cron credited the deposit');
is( sql(q{SELECT string_agg(status::text, ',') FROM compay.settlements WHERE payee = 'gpu-cron'}),
	'completed', 'the settlement is completed');
my @in = $rt->incoming($index);
is(scalar @in, 1, 'the payee wallet received one output');
is($in[0]{amount}, '125000000000', 'of exactly 0.125 XMR');
is(sql(q{SELECT balance FROM compay.balance('dep-cron', 'XMR')}), '0.05',
	'the deposit is credited once: 0.05 XMR');
is( sql(q{SELECT count(*) FILTER (WHERE status = 'succeeded') > 0
		   AND count(*) FILTER (WHERE status = 'failed') = 0
		  FROM cron.job_run_details WHERE command LIKE 'CALL compay.%'}),
	't', 'the CALL jobs succeeded under pg_cron');
is( sql(q{SELECT string_agg(runner || ':' || state, ',' ORDER BY runner) FROM compay.runner_status}),
	'poll_deposits:done,run_payouts:done', 'compay.runner_status shows both runners');
is( sql(q{SELECT wallet_height > 100 AND abs(wallet_height - daemon_height) <= 1
		   AND unlocked_balance::text::numeric > 0 AND oldest_stuck_payout IS NULL
		  FROM compay.runner_status WHERE runner = 'run_payouts'}),
	't', 'health: the wallet height against the daemon, the unlocked balance, nothing stuck');
sql(q{SELECT cron.unschedule(jobname) FROM cron.job});
sleep 2;

# Two CALLs at once.  The first takes the runners' lock, then waits on the
# payouts a third session locks; the second returns at once, doing
# nothing.  Without the lock it would wait as well, then build the same
# payout (the psql timeout fails this test first).
my $two = $rt->earn_at($cron, 'gpu-two', '0.03125');
my $blocker = $cron->background_psql('postgres');
$blocker->query_safe(q{BEGIN; LOCK compay.payout_transactions IN ACCESS EXCLUSIVE MODE;});
my $first = $cron->background_psql('postgres');
$first->query_until(qr/calling/, "\\echo calling\nCALL compay.run_payouts();\n");
ok( $cron->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE wait_event_type = 'Lock' AND query LIKE 'CALL compay.run_payouts()%'}),
	'the first CALL holds the lock and waits on the payouts');
my ($rc, $out, $err) = $cron->psql('postgres', 'CALL compay.run_payouts()', timeout => 20);
is($rc, 0, 'the second CALL returns at once');
like($err, qr/another compay.run_payouts is under way; this call did nothing/, 'saying so');
$blocker->query_safe('COMMIT');
$blocker->quit;
$first->quit;
is( sql(q{SELECT string_agg(status::text, ',') FROM compay.payout_transactions t
		  JOIN compay.payout_items i ON i.payout_id = t.id WHERE i.node_id = 'gpu-two'}),
	'relayed', 'the first CALL built and relayed the payout, once');
is(sql(q{SELECT skipped FROM compay.runner_status WHERE runner = 'run_payouts'}), '1',
	'the skipped call is counted');
ok( mine_until($cron,
		q{CALL compay.run_payouts();
		  SELECT bool_and(status = 'confirmed') FROM compay.payout_transactions}, 60),
	'confirmed');
my @two = $rt->incoming($two);
is(scalar @two, 1, 'the payee wallet received one output');
is($two[0]{amount}, '31250000000', 'of exactly 0.03125 XMR');

# 2. The wallet URL.
sql(qq{ALTER SYSTEM SET compay.wallet_rpc_url = '$env{XMR_TREASURY_URL}/json_rpc'});
$cron->reload;
like(sql(q{SELECT compay.wallet_rpc('get_height')->>'height'}), qr/^\d+$/,
	'a wallet URL ending in /json_rpc works');
sql(q{CALL compay.run_payouts()});
is( sql(q{SELECT state || ' ' || (wallet_height IS NOT NULL) FROM compay.runner_status
		  WHERE runner = 'run_payouts'}),
	'done true', 'the procedure too');
sql(qq{ALTER SYSTEM SET compay.wallet_rpc_url = '$env{XMR_TREASURY_URL}/json_rpc/'});
$cron->reload;
like(sql(q{SELECT compay.wallet_rpc('get_height')->>'height'}), qr/^\d+$/,
	'and with a trailing slash');
sql(qq{ALTER SYSTEM SET compay.wallet_rpc_url = '$env{XMR_TREASURY_URL}/wrong'});
$cron->reload;
sql(q{CALL compay.run_payouts()});
is( sql(q{SELECT wallet_error FROM compay.runner_status WHERE runner = 'run_payouts'}),
	'get_balance: bad reply: HTTP status 404', 'a wrong path: HTTP 404, in the status');
sql(q{ALTER SYSTEM SET compay.wallet_rpc_url = 'http://127.0.0.1:1'});
$cron->reload;
sql(q{CALL compay.run_payouts()});
like( sql(q{SELECT wallet_error || ' ' || (wallet_height IS NULL) FROM compay.runner_status
		  WHERE runner = 'run_payouts'}),
	qr/^get_balance: unreachable: .* true$/, 'a wrong wallet URL shows its error in the status');
sql(q{ALTER SYSTEM RESET compay.wallet_rpc_url});
$cron->reload;

# 3. A queued payout larger than the unlocked balance.
my $unlocked = sql(q{SELECT unlocked_balance FROM compay.runner_status WHERE runner = 'run_payouts'});
$rt->pay_to($cron, 'gpu-big');
sql(q{SELECT compay.set_payout_policy('gpu-big', true, '0.01', '1 minute', '10000000')});
$rt->earn($cron, 'gpu-big', '1000000');
is(sql(q{SELECT compay.queue_payouts()}), '1', 'a payout of 1000000 XMR is queued');
sql(q{CALL compay.poll_deposits()});
is( sql(q{SELECT queued_payouts || ' ' || (unlocked_balance::text::numeric < queued_payouts::text::numeric) || ' '
		  || (oldest_stuck_payout = (SELECT max(id) FROM compay.payout_transactions))
		  FROM compay.runner_status WHERE runner = 'poll_deposits'}),
	'1000000 true true', 'the queued payout above the unlocked balance is the oldest stuck one');
like( sql(q{SELECT oldest_stuck_reason FROM compay.runner_status WHERE runner = 'poll_deposits'}),
	qr/unlocked balance \(\d+(\.\d+)? XMR\) does not cover it/, 'with its reason');
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok (pg_cron)');
$cron->stop;

# 4. The worker and pg_cron together.
my $both = $rt->node('both', "shared_preload_libraries = 'compay,pg_cron'\n$cron_conf");
$both->safe_psql('postgres', q{CREATE EXTENSION pg_cron});
my $bindex = $rt->earn_at($both, 'gpu-both', '0.0625');
$both->safe_psql('postgres', $recipe);
ok( mine_until($both,
		q{SELECT count(*) = 1 AND bool_and(status = 'confirmed') FROM compay.payout_transactions},
		180),
	'worker and pg_cron: the payout is confirmed');
ok( $both->poll_query_until('postgres',
		q{SELECT count(*) >= 2 FROM cron.job_run_details
		  WHERE command = 'CALL compay.run_payouts()' AND status = 'succeeded'}),
	'pg_cron ran its payout rounds beside the worker');
is($both->safe_psql('postgres', q{SELECT count(*) FROM compay.payout_transactions}), '1',
	'one payout transaction');
my @bin = $rt->incoming($bindex);
is(scalar @bin, 1, 'the payee wallet received one output');
is($bin[0]{amount}, '62500000000', 'of exactly 0.0625 XMR');
is($both->safe_psql('postgres', q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't',
	'verify_ledger() ok (worker and pg_cron)');
$both->stop;

done_testing();
