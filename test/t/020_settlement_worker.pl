# The settlement worker and the pg_cron path, on clusters of their own with
# compay (and pg_cron) preloaded:
#
#  1. the worker settles completed payments within a round, also where the
#     default isolation is repeatable read;
#  2. a reload (SIGHUP) changes the settlement interval;
#  3. kill -9 of the worker while a settlement run is inside its
#     transaction, then the crash restart: nothing lost, nothing settled
#     twice, verify_ledger() ok;
#  4. the same with kill -9 of an ordinary backend running run_settlement;
#  5. pg_cron runs compay.run_settlement() and it settles; then the worker
#     and pg_cron run at the same time as payments keep arriving, and
#     every payment is settled exactly once;
#  6. a streaming standby runs no worker and settles nothing.
#
# Debian 12's pg_cron is 1.4.2, which has no seconds schedules: its jobs
# run at minute boundaries, so part 5 waits up to a minute per job run.
#
# Run: PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl
#      PATH=/usr/lib/postgresql/15/bin:$PATH
#      PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
#      prove test/t/020_settlement_worker.pl   (as a non-root user)

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'compay,pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 20
compay.database = 'postgres'
compay.worker_naptime = '1s'
compay.settlement_interval = '1h'
log_statement = 'none'
restart_after_crash = on
});
$node->start;

# Before the extension exists the worker skips its rounds.
$node->safe_psql('postgres', 'CREATE EXTENSION compay');
ok( $node->log_contains('compay settlement worker started on database "postgres"'),
	'the worker started with the server');

# Completed payments of closed hours, written directly: settlement only
# gathers payments, the money moved when each was made.
sub add_payments
{
	my ($prefix, $n, $payees) = @_;
	$payees //= 3;
	$node->safe_psql(
		'postgres', qq{
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                             completed_at)
SELECT '$prefix-' || g, 'req', 'prov-' || (g % $payees), '0.5', 'CREDIT', 'credit', 'completed',
       date_trunc('hour', now()) - interval '2 hours' + (g % 3600) * interval '1 second'
FROM generate_series(1, $n) g});
}

# Every payment settled exactly once, and the ledger's checks all hold.
sub check_settled_once
{
	my ($what) = @_;
	my $row = $node->safe_psql(
		'postgres', q{
SELECT (SELECT count(*) FROM compay.payments),
       (SELECT count(*) FROM compay.payments p WHERE compay.payment_settlement(p) IS NULL),
       (SELECT coalesce(sum(payment_count), 0) FROM compay.settlements),
       (SELECT bool_and(ok) FROM compay.verify_ledger())});
	my ($payments, $unsettled, $settled, $ok) = split /\|/, $row;
	is($unsettled, 0, "$what: no payment left unsettled");
	is($settled, $payments,
		"$what: the settlements count each of the $payments payments once");
	is($ok, 't', "$what: verify_ledger() all ok");
}

sub all_settled
{
	return $node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM compay.payments p WHERE compay.payment_settlement(p) IS NULL});
}

sub worker_pid
{
	my $pid = '';
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'compay settlement worker'})
	  or return '';
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'compay settlement worker'});
}

# 1. The worker settles within a round.  Its first round after the
# extension appeared may have settled before these payments existed, so
# wake it: at commit, it runs a round with a settlement at once.
# The database's default isolation is repeatable read here: the worker
# runs its steps in read committed all the same (run_settlement refuses
# any other level), and the payments written in repeatable read are late
# rows that the run settles all the same.
$node->safe_psql('postgres', q{ALTER SYSTEM SET default_transaction_isolation = 'repeatable read'});
$node->reload;
add_payments('first', 300);
$node->safe_psql('postgres', 'SELECT compay.wake_worker()');
ok(all_settled(), 'woken, the worker settled every payment of the closed hours');
check_settled_once('worker');
is($node->safe_psql('postgres', 'SHOW default_transaction_isolation'), 'repeatable read',
	'... with repeatable read as the default isolation');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET default_transaction_isolation});
$node->reload;
my $status = $node->safe_psql('postgres',
	q{SELECT state IN ('idle', 'running'), pid > 0, rounds > 0,
	         next_settlement_due > now() + interval '50 minutes'
	  FROM compay.worker_status});
is($status, 't|t|t|t', 'worker_status: running, with rounds and the next settlement in an hour');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM compay.settlements WHERE status = 'completed'}),
	'3', 'one settlement per payee of the hour, completed');

# 2. SIGHUP: an hour's interval leaves new payments alone; a reload to 1 s
# settles them at the next round.
add_payments('second', 30);
sleep 3;
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM compay.payments p WHERE compay.payment_settlement(p) IS NULL}),
	'30', 'with a 1 h interval the new payments wait');
$node->safe_psql('postgres', q{ALTER SYSTEM SET compay.settlement_interval = '1s'});
$node->reload;
ok(all_settled(), 'after a reload to a 1 s interval they are settled');
ok( $node->poll_query_until('postgres',
		q{SELECT next_settlement_due < now() + interval '10 seconds' FROM compay.worker_status}),
	'worker_status shows the new interval');
check_settled_once('after reload');

# 3. kill -9 of the worker inside a settlement run.  An XMR settlement
# earmarks the payee's XMR with a hold; a session that holds the payee's
# account row makes the run wait there, after the payments are stamped and
# before its transaction commits.
# A session that holds xmr-prov's XMR account row (returned), then n XMR
# payments of amount to xmr-prov in the last closed hour.
sub block_payee_and_pay
{
	my ($prefix, $n, $amount) = @_;
	my $session = $node->background_psql('postgres');
	$session->query_safe(
		q{BEGIN; SELECT 1 FROM compay.accounts WHERE node_id = 'xmr-prov' AND currency = 'XMR' FOR UPDATE});
	$node->safe_psql(
		'postgres', qq{
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                             completed_at)
SELECT '$prefix-' || g, 'req', 'xmr-prov', '$amount', 'XMR', 'crypto', 'completed',
       date_trunc('hour', now()) - interval '1 hour'
FROM generate_series(1, $n) g});
	return $session;
}

$node->safe_psql('postgres', q{SELECT compay.admin_deposit('xmr-prov', '100', 'XMR', 'test funds')});
my $blocker = block_payee_and_pay('xmr', 40, '0.25');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'compay settlement worker' AND wait_event_type = 'Lock'}),
	'the worker waits inside its settlement run');
my $pid = worker_pid();
ok($pid, "worker pid $pid");
kill 'KILL', $pid;
$blocker->quit;    # the crash restart ends this session anyway
$node->poll_query_until('postgres', 'SELECT 1', '1');
ok(all_settled(), 'after the crash restart the worker settles every payment');
check_settled_once('worker killed mid-settlement');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*), sum(payment_count), min(status::text), compay.sum(total_amount)
		  FROM compay.settlements WHERE currency = 'XMR'}),
	'1|40|processing|10', 'one XMR settlement of 40 payments, earmarked once');
is( $node->safe_psql(
		'postgres', q{SELECT reserved FROM compay.balance('xmr-prov', 'XMR')}),
	'10', 'the payee has exactly one earmark of 10 XMR');

# 4. kill -9 of an ordinary backend inside run_settlement, the worker off.
$node->safe_psql('postgres', q{ALTER SYSTEM SET compay.worker_enabled = off});
$node->reload;
$node->poll_query_until('postgres', q{SELECT state = 'disabled' FROM compay.worker_status});
$blocker = block_payee_and_pay('xmr2', 20, '0.5');
add_payments('third', 50);
my $runner = $node->background_psql('postgres', on_error_stop => 0);
$runner->query_until(qr/started/,
	qq{\\echo started\nSELECT count(*) FROM compay.run_settlement('hourly');\n});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE query LIKE '%run_settlement%' AND wait_event_type = 'Lock'
		    AND pid <> pg_backend_pid()}),
	'a backend waits inside run_settlement');
my $backend = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE query LIKE '%run_settlement%'
	  AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()});
kill 'KILL', $backend;
eval { $runner->quit };
eval { $blocker->quit };
$node->poll_query_until('postgres', 'SELECT 1', '1');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM compay.payments p WHERE compay.payment_settlement(p) IS NULL}),
	'70', 'the killed run settled nothing');
$node->safe_psql('postgres', q{SELECT count(*) FROM compay.run_settlement('hourly')});
check_settled_once('backend killed mid-settlement');
is( $node->safe_psql(
		'postgres', q{SELECT reserved FROM compay.balance('xmr-prov', 'XMR')}),
	'20', 'the second XMR settlement earmarked once (10 + 10)');

# 5. pg_cron runs the settlement (the worker still off).
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
add_payments('cron', 60);
$node->safe_psql('postgres',
	q{SELECT cron.schedule('compay-settlement', '* * * * *', $$SELECT compay.run_settlement('hourly')$$)});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM compay.payments p WHERE compay.payment_settlement(p) IS NULL}),
	'pg_cron settled the payments');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM cron.job_run_details
		  WHERE command LIKE '%run_settlement%' AND status = 'succeeded'}),
	'cron.job_run_details records a succeeded settlement run');
check_settled_once('pg_cron');

# The worker (every second) and pg_cron (every minute) at the same time,
# while payments keep arriving; then each payment is settled once.
$node->safe_psql('postgres', q{ALTER SYSTEM SET compay.worker_enabled = on});
$node->reload;
my $cron_runs = $node->safe_psql('postgres',
	q{SELECT count(*) FROM cron.job_run_details WHERE command LIKE '%run_settlement%'});
for my $i (1 .. 20)
{
	add_payments("both$i", 25, 7);
	sleep 1;
}
ok( $node->poll_query_until('postgres',
		qq{SELECT count(*) > $cron_runs FROM cron.job_run_details
		   WHERE command LIKE '%run_settlement%' AND status = 'succeeded'}),
	'pg_cron ran again while the worker was settling');
ok(all_settled(), 'the worker and pg_cron together settled every payment');
check_settled_once('worker and pg_cron at once');
$node->safe_psql('postgres', q{SELECT cron.unschedule('compay-settlement')});

# 6. A streaming standby runs no worker and settles nothing.
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres', q{ALTER SYSTEM SET compay.worker_enabled = off});
$node->reload;
$node->poll_query_until('postgres', q{SELECT state = 'disabled' FROM compay.worker_status});
add_payments('standby', 10);
$node->wait_for_catchup($standby);
sleep 3;    # three of the standby's naptimes, were a worker running there
is( $standby->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'compay settlement worker'}),
	'0', 'no worker runs on the standby');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'it is a standby');
is( $standby->safe_psql(
		'postgres', q{SELECT count(*) FROM compay.payments p WHERE compay.payment_settlement(p) IS NULL}),
	'10', 'the standby settled nothing');
is( $standby->safe_psql('postgres', q{SELECT state FROM compay.worker_status}),
	'not started', 'its worker_status says so');

$standby->stop;
$node->stop;
done_testing();
