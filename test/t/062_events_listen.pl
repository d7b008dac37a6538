# Events reach a real LISTEN client (node-postgres, test/clients/
# node_events.js) in order, and a consumer that reconnects gets what it
# missed from compay.events_since, against the real regtest wallet
# (issue 16).  Then a short logical decoding check with wal2json.
#
#  1. Latency: with compay.worker_naptime at 300 s, an emitting commit
#     wakes the worker, which publishes at once: the client gets the event
#     within seconds, not at the next round, and no round runs for it.
#  2. Consumer A follows an XMR job with escrow: submitted, assigned,
#     completed, verified by two verifiers (payment.completed, paid), then
#     A is killed.  The job's earnings are settled and the worker pays them
#     out on chain: payout.built, payout.relayed, payout.confirmed while
#     nobody listens.  Consumer B resumes with events_since(A's last id):
#     it gets exactly the missed events, then a new event live.  What A and
#     B got together is every published event once, ids increasing, and
#     the job-to-payout flow in its order; the payee received the amount.
#  3. wal2json: a transfer shows up in a logical slot (compay.transfers),
#     the amount exact.
#
# Run: bash /work/tools/runperl.sh WORKTREE PG test/t/062_events_listen.pl
#      (COMPAY_XMR_DIR names a running regtest, or one is started).

use strict;
use warnings;

use CompayRegtest;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $confirmations = 3;
my $rt = CompayRegtest->up;
my $node = $rt->node('events', qq{compay.payout_confirmations = $confirmations
wal_level = logical
max_replication_slots = 2
});

sub sql { return $node->safe_psql('postgres', shift); }

sub poll { return $node->poll_query_until('postgres', @_); }

my $clients = 'test/clients';
my $have_pg = system("cd $clients && node -e 'require(\"pg\")' >/dev/null 2>&1") == 0;
ok($have_pg, 'node-postgres is installed in test/clients (test/deps.sh installs it)')
  or BAIL_OUT('node-postgres missing');

# Consumers: node processes, stopped by PID at the end.
my @consumers;

sub consumer
{
	my ($last_id) = @_;
	my $c = { out => '', err => '', in => '' };
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGDATABASE} = 'postgres';
	$c->{h} = IPC::Run::start([ 'node', "$clients/node_events.js", $last_id ],
		'<', \$c->{in}, '>', \$c->{out}, '2>', \$c->{err});
	push @consumers, $c;
	wait_for($c, sub { $c->{out} =~ /^listening$/m }, 'listening')
	  or diag("consumer: $c->{err}");
	return $c;
}

# Pumps a consumer until cond holds (at most 60 s).
sub wait_for
{
	my ($c, $cond) = @_;
	my $until = time + 60;
	while (time < $until)
	{
		$c->{h}->pump_nb;
		return 1 if $cond->();
		sleep 0.02;
	}
	return 0;
}

sub events_of
{
	my ($c) = @_;
	return map { decode_json($_) } grep { /^\{/ } split /\n/, $c->{out};
}

END
{
	for my $c (@consumers)
	{
		$c->{h}->kill_kill if $c->{h} && $c->{h}->pumpable;
	}
}

# 1. Latency: the wake at commit, not the round.
$rt->set($node, 'compay.worker_naptime', '300s');
my $ca = consumer(0);
# The round the reload ran is over; the next is 300 s away.
poll(q{SELECT state = 'idle' FROM compay.worker_status});
my $rounds = sql(q{SELECT rounds FROM compay.worker_status});
my $t0 = time;
sql(q{SELECT compay.emit_event('test.latency', '{}')});
ok(wait_for($ca, sub { $ca->{out} =~ /"test\.latency"/ }), '1: the event is notified');
my $latency = time - $t0;
cmp_ok($latency, '<', 5, "1: within seconds of the commit, not at the next round (${latency}s)");
is(sql(q{SELECT rounds FROM compay.worker_status}), $rounds,
	'1: the wake-up only published: no round ran');
$rt->set($node, 'compay.worker_naptime', '1s');

# 2. An XMR job with escrow, followed by consumer A.
my $index = $rt->pay_to($node, 'ev-prov');
sql(q{SELECT compay.admin_deposit('ev-req', '1', 'XMR', 'test funds');
  INSERT INTO compay.pricing_models (name, currency, base_price) VALUES ('ev-xmr', 'XMR', '0.3');
  INSERT INTO compay.task_type_models SELECT 'ev-render', id FROM compay.pricing_models WHERE name = 'ev-xmr'});
my $job = sql(q{SELECT compay.submit_job('ev-job', 'ev-req', 'ev-render', '0.5')});
sql(q{SELECT compay.assign_job('ev-job', 'ev-prov')});
sql(q{SELECT compay.complete_job('ev-job', now() - interval '1 minute', now())});
sql(q{SELECT compay.verify_job('ev-job', 'ev-v1', true)});
is(sql(q{SELECT compay.verify_job('ev-job', 'ev-v2', true)}), 'paid', '2: paid at the quorum');
ok(wait_for($ca, sub { $ca->{out} =~ /"status":"paid"/ }), '2: A gets the job paid');
my @ea = events_of($ca);
$ca->{h}->kill_kill;    # a dropped connection, no goodbye
my $a_last = $ea[-1]{id};

# Settled, then paid out by the worker while nobody listens.
sql(q{SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '1 hour')});
ok(poll(q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'ev-prov' AND status = 'relayed'}),
	'2: the payout is relayed')
  or diag(sql(q{SELECT id || ' ' || status || ' ' || coalesce(last_error, '-') FROM compay.payout_transactions}));
$rt->run('mine', $confirmations);
ok(poll(q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'ev-prov' AND status = 'confirmed'}),
	'2: the payout is confirmed');
ok(poll(q{SELECT NOT EXISTS (SELECT FROM compay.event_queue)
  AND EXISTS (SELECT FROM compay.events WHERE kind = 'payout.confirmed')}), '2: all published');

# Consumer B resumes after A's last id.
my $cb = consumer($a_last);
my @missed = events_of($cb);
is_deeply([ map { $_->{id} } @missed ],
	[ split /,/, sql(qq{SELECT string_agg(id::text, ',' ORDER BY id) FROM compay.events WHERE id > $a_last}) ],
	'2: B gets exactly the events published after A\'s last id');
ok(!grep({ $_->{via} ne 'backlog' } @missed), '2: all of them from events_since');
sql(q{SELECT compay.submit_job('ev-job2', 'ev-req', 'ev-render', '0.1')});
ok(wait_for($cb, sub { $cb->{out} =~ /"task_id":"ev-job2"/ }), '2: then B gets a new event live');
my @eb = events_of($cb);
is($eb[-1]{via}, 'notify', '2: by notification');

# A and B together: every event once, in id order, the flow in order.
my @all = (@ea, @eb);
is_deeply([ map { $_->{id} } @all ],
	[ split /,/, sql(q{SELECT string_agg(id::text, ',' ORDER BY id) FROM compay.events}) ],
	'2: A and B together got every published event once, ids increasing');
my $payout = sql(q{SELECT payout_id FROM compay.payout_items WHERE node_id = 'ev-prov'});
my @flow = map { $_->{kind} eq 'job.state' ? "job.$_->{payload}{status}" : $_->{kind} }
  grep {
	($_->{payload}{task_id} // '') eq 'ev-job'
	  || ($_->{kind} =~ /^payout\./ && $_->{payload}{payout_id} == $payout)
  } @all;
is_deeply(\@flow, [qw(job.submitted job.assigned job.completed payment.completed job.paid
	  payout.built payout.relayed payout.confirmed)], '2: the job-to-payout flow in order')
  or diag(join ' ', @flow);
my ($paid) = grep { $_->{kind} eq 'payment.completed' } @all;
is($paid->{payload}{amount}, '0.3', '2: payment.completed carries the exact amount');
my ($built) = grep { $_->{kind} eq 'payout.built' } @all;
is($built->{payload}{tx_hash}, sql(qq{SELECT tx_hash FROM compay.payout_transactions WHERE id = $payout}),
	'2: payout.built carries the tx hash');
is(join(',', map { $_->{amount} } $rt->incoming($index)), '300000000000',
	'2: the payee received exactly 0.3 XMR');
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', '2: verify_ledger() ok');

# 3. Logical decoding with wal2json: a transfer in the slot.  A server
# built with output_plugin_libraries (the one the tests run on) allows
# only the plugins it lists.
if (sql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}))
{
	sql(q{ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'wal2json'});
	$node->reload;
	poll(q{SELECT current_setting('output_plugin_libraries') ~ 'wal2json'});
}
sql(q{SELECT pg_create_logical_replication_slot('compay_ledger', 'wal2json')});
sql(q{SELECT compay.deposit('ev-a', '12.345678901234');
  SELECT compay.transfer('ev-a', 'ev-b', '1.000000000007', 'wal2json check')});
my $changes = sql(q{SELECT string_agg(data, E'\n') FROM pg_logical_slot_get_changes('compay_ledger', NULL, NULL,
  'format-version', '2', 'add-tables', 'compay.transfers')});
my @inserts = grep { $_->{action} eq 'I' } map { decode_json($_) } split /\n/, $changes;
my ($t) = grep { my %c = map { $_->{name} => $_->{value} } @{ $_->{columns} };
	($c{reference} // '') eq 'wal2json check' } @inserts;
ok($t, '3: the transfer is in the wal2json slot');
my %cols = map { $_->{name} => $_->{value} } @{ $t->{columns} // [] };
is($cols{amount}, '1.000000000007', '3: with its exact amount');
sql(q{SELECT pg_drop_replication_slot('compay_ledger')});

done_testing();
