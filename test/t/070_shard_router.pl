# The single-server flows through a router: a router database
# (extension compay_router, PL/Proxy) and two shard clusters (compay with
# PgQ and dblink) on this machine.  Accounts, deposits, transfers (on one
# shard and across shards, with an idempotent retry), holds captured to a
# node of the other shard, a job whose requester, provider and verifiers
# live on different shards, a task payment across shards, XMR payments
# across shards (a crypto task payment and a verified XMR job: the payment
# moves to the provider's shard with its credit, under its id, settled
# there, none left on the payer's shard, a replayed event adds nothing),
# settlement and
# hold expiry on every shard; the consumer applies each cross-shard credit
# exactly once, also when a batch is given again after a crash between the
# payee's commit and the batch's finish, and with a peer shard down (a
# warning, then the credit once it is back); compay.cluster_check() proves
# conservation with events in flight and after; verify_ledger() through the
# router (every shard's checks) is all ok, and check 21 fails when a
# clearing row is missing.  Bad inputs fail with their SQLSTATE (PY036,
# PY037, 22023, 22004, 55000; a task id on two shards, PY037 at the
# router) and write nothing.  Earnings, payment history and the daily
# report through the router combine every shard's.  Every routed function
# has the shard function's signature.  The test ticks PgQ itself
# (pgq.ticker()); pgqd runs in the stress test.
#
# Run: bash /work/tools/runperl.sh REPO PG test/t/070_shard_router.pl

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my @shard = map {
	my $n = PostgreSQL::Test::Cluster->new("shard$_");
	$n->init;
	$n->start;
	$n
} (0, 1);
my $router = PostgreSQL::Test::Cluster->new('router');
$router->init;
$router->start;

my $connstrs = 'ARRAY[' . join(', ', map { "'" . ($_->connstr('postgres') =~ s/'/''/gr) . "'" } @shard) . ']';

# SQLSTATE of a statement that must fail ('' when it succeeds).
sub sqlstate
{
	my ($node, $sql, $db) = @_;
	my ($rc, $out, $err) = $node->psql($db // 'postgres', "\\set VERBOSITY verbose\n$sql");
	return $rc == 0 ? '' : ($err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : "rc $rc: $err");
}

sub q_router { return $router->safe_psql('postgres', $_[0]); }
sub q_shard  { return $shard[ $_[0] ]->safe_psql('postgres', $_[1]); }

# A tick on every queue of every shard now (pgqd ticks a queue when it
# has enough events or after ticker_max_lag).
sub tick
{
	q_shard($_, 'SELECT pgq.force_tick(queue_name) FROM pgq.get_queue_info(); SELECT pgq.ticker()')
	  for 0, 1;
}

# Every shard ticks its queues, then every shard consumes; returns the
# events applied.
sub clear
{
	tick();
	my $n = 0;
	$n += q_shard($_, 'CALL compay.clearing_consume()') for 0, 1;
	return $n;
}

# A database that is no shard: the shard functions say so.
$shard[0]->safe_psql('postgres', 'CREATE DATABASE plain');
$shard[0]->safe_psql('plain', 'CREATE EXTENSION compay');
is(sqlstate($shard[0], q{SELECT compay.shard_of('a')}, 'plain'), 'PY036', 'shard_of on no shard: PY036');
is(sqlstate($shard[0], q{CALL compay.clearing_consume()}, 'plain'), 'PY036',
	'clearing_consume on no shard: PY036');
is(sqlstate($shard[0], qq{SELECT compay.shard_configure(0, $connstrs)}, 'plain'), 'PY036',
	'shard_configure without pgq and dblink: PY036');
$shard[0]->safe_psql('plain', q{SELECT compay.deposit('a', '5'); SELECT compay.transfer('a', 'b', '1')});
is($shard[0]->safe_psql('plain', q{SELECT count(*) FROM compay.transfers}), '2',
	'a database that is no shard pays as before');

for my $i (0, 1)
{
	q_shard($i, 'CREATE EXTENSION compay; CREATE EXTENSION pgq; CREATE EXTENSION dblink');
}

# Bad configurations, each refused with nothing written.
my %bad = (
	"SELECT compay.shard_configure(2, $connstrs)" => '22023',
	"SELECT compay.shard_configure(-1, $connstrs)" => '22023',
	"SELECT compay.shard_configure(0, $connstrs, 6)" => '22023',
	"SELECT compay.shard_configure(0, $connstrs, 1)" => '22023',
	"SELECT compay.shard_configure(0, '{}')" => '22023',
	"SELECT compay.shard_configure(0, ARRAY['x', NULL])" => '22023',
	"SELECT compay.shard_configure(NULL, $connstrs)" => '22004',
);
for my $sql (sort keys %bad)
{
	is(sqlstate($shard[0], $sql), $bad{$sql}, "$sql: $bad{$sql}");
}
is(q_shard(0, 'SELECT count(*) FROM compay.shard_config'), '0', 'no configuration written');
q_router('CREATE EXTENSION compay_router CASCADE');
is(sqlstate($router, q{SELECT compay.router_configure(ARRAY['x', 'y'], 12)}), '22023',
	'router_configure with 12 partitions: 22023');
is(sqlstate($router, q{SELECT compay.router_configure(NULL)}), '22004', 'router_configure(NULL): 22004');
q_router("SELECT compay.router_configure($connstrs, 8)");

# Node names by shard, with the formula of compay.shard_of().
my (@on0, @on1);
for my $n (map { "node-$_" } 1 .. 60)
{
	my $s = q_router("SELECT (hashtext('$n') & 7) % 2");
	push @{ $s ? \@on1 : \@on0 }, $n;
}
my ($a0, $b0, $c0, $d0) = @on0;
my ($a1, $b1, $c1, $d1) = @on1;

q_shard(1, "SELECT compay.deposit('$a0', '1')");
is(sqlstate($shard[1], qq{SELECT compay.shard_configure(1, $connstrs)}), 'PY037',
	'shard_configure with an account of the other shard: PY037');
q_shard(1, 'DROP EXTENSION compay CASCADE; CREATE EXTENSION compay');
q_shard($_, "SELECT compay.shard_configure($_, $connstrs)") for 0, 1;
is(sqlstate($shard[0], "SELECT compay.shard_configure(1, $connstrs)"), '55000',
	'shard_configure as another shard: 55000');
q_shard(0, "SELECT compay.shard_configure(0, $connstrs)");
is(q_shard(0, "SELECT compay.shard_of('$a1')::text || compay.shard_of('$a0')"), '10',
	'shard_of: the formula of the router');

# Accounts and deposits through the router, each on its node's shard.
q_router("SELECT compay.open_account('$_')") for ($a0, $b0, $c0, $d0, $a1, $b1, $c1, $d1);
q_router("SELECT compay.deposit('$a0', '1000', idempotency_key => 'dep-a0')");
q_router("SELECT compay.deposit('$a1', '500', idempotency_key => 'dep-a1')");
is(q_shard(0, "SELECT string_agg(node_id, ',' ORDER BY node_id) FROM compay.accounts WHERE node_id !~ '^[\$]'"),
	join(',', sort($a0, $b0, $c0, $d0)), 'shard 0 holds the accounts of its nodes only');
is(q_shard(1, "SELECT string_agg(node_id, ',' ORDER BY node_id) FROM compay.accounts WHERE node_id !~ '^[\$]'"),
	join(',', sort($a1, $b1, $c1, $d1)), 'shard 1 holds the accounts of its nodes only');
is(q_router("SELECT balance FROM compay.balance('$a1')"), '500', 'balance through the router');

# Transfers: on one shard, and across (with a retried idempotency key).
my $t_local = q_router("SELECT compay.transfer('$a0', '$b0', '10', 'local')");
my $t_cross = q_router("SELECT compay.transfer('$a0', '$a1', '25.5', 'cross', 'tr-x')");
is(q_router("SELECT compay.transfer('$a0', '$a1', '25.5', 'cross', 'tr-x')"), $t_cross,
	'a retried cross-shard transfer answers its first id');
is(q_shard(0, 'SELECT count(*) || compay.sum(amount)::text FROM compay.clearing_sent'), '125.5',
	'one clearing event for the transfer and its retry');
is(q_router("SELECT balance FROM compay.balance('$a1')"), '500', 'the payee is not credited before clearing');
is(q_router(q{SELECT string_agg(from_shard || ':' || to_shard || ' ' || in_flight_events || ' ' || ok, ',') FROM compay.cluster_check()}),
	'0:1 1 true,1:0 0 true', 'cluster_check: the event in flight, conservation holds');
is(clear(), 1, 'the consumer applies one event');
is(q_router("SELECT balance FROM compay.balance('$a1')"), '525.5', 'the payee is credited on its shard');
is(q_shard(0, q{SELECT balance FROM compay.system_balances WHERE node_id = '$clearing:1'}), '25.5',
	"shard 0's \$clearing:1 holds what it sent");
is(q_shard(1, q{SELECT balance FROM compay.system_balances WHERE node_id = '$clearing:0'}), '-25.5',
	"shard 1's \$clearing:0 is its mirror");
is(clear(), 0, 'nothing more to apply');

# A batch given again after the payee's commit, before its finish: no-op.
q_router("SELECT compay.transfer('$b1', '$b0', '3')");
tick();
q_shard(0, q{
DO $$
DECLARE f record; ev jsonb;
BEGIN
    f := compay.clearing_fetch(1);
    FOR ev IN SELECT * FROM jsonb_array_elements(f.events) LOOP
        PERFORM compay.clearing_apply(1, (ev->>'id')::bigint, ev->>'type', ev->>'data');
    END LOOP;
END $$});
is(q_router("SELECT balance FROM compay.balance('$b0')"), '13', 'applied, the batch not finished');
is(q_shard(0, 'CALL compay.clearing_consume()'), '0', 'the batch again: nothing applied twice');
is(q_router("SELECT balance FROM compay.balance('$b0')"), '13', 'the payee credited once');
is(q_shard(0, 'SELECT count(*) FROM compay.clearing_applied'), '1', 'one applied row per event');

# Holds: reserve on the payer's shard, capture to the other shard's node.
my $hold = q_router("SELECT compay.reserve('$a0', '40', 'hold')");
is(q_router("SELECT compay.capture($hold, '$c1', '15', false)") > 0, 1, 'capture across shards by hold id');
q_router("SELECT compay.release($hold)");
is(q_router("SELECT balance || '/' || reserved FROM compay.balance('$a0')"), '949.5/0',
	'the payer: 1000 - 10 - 25.5 - 15, nothing reserved');

# A job: requester $a0 (shard 0), provider $a1, verifiers $c0 and $d1.
q_router(qq{
SELECT compay.submit_job('job-1', '$a0', 'render', '5000');
SELECT compay.assign_job('job-1', '$a1');
SELECT compay.record_usage('job-1', '$a1', 's1', now(), compay.metrics(cpu_seconds => 2));
SELECT compay.complete_job('job-1', now() - interval '1 minute', now());
SELECT compay.verify_job('job-1', '$c0', true);});
is(q_router("SELECT compay.verify_job('job-1', '$d1', true)"), 'paid', 'the job is paid at quorum');
is(q_router(q{SELECT job_status || ' ' || payment_status FROM compay.payment_trace('job-1')}),
	'paid completed', 'payment_trace through the router');
is(q_shard(1, "SELECT count(*) FROM compay.jobs"), '0', 'the job stays on the requester\'s shard');
my $price = q_router(q{SELECT amount FROM compay.payment_trace('job-1')});
# A task paid across shards: requester $b1 (shard 1), provider $d0.
q_router(qq{
SELECT compay.submit_task('task-1', '$b1', '$d0', 'render');
SELECT compay.record_usage('task-1', '$d0', 's1', now(), compay.metrics(cpu_seconds => 1));
SELECT compay.complete_job('task-1', now() - interval '1 minute', now());});
is(q_router(q{SELECT status FROM compay.process_task_payment('task-1', 'credit')}), 'completed',
	'a task payment across shards');
is(clear(), 4, 'provider, one remote verifier, the capture and the task payment cleared');
is(q_router("SELECT balance FROM compay.balance('$a1')"), 525.5 + $price, 'the provider is paid on its shard');
is(q_router("SELECT balance::text <> '0' FROM compay.balance('$d1')"), 't', 'the remote verifier is rewarded');
is(q_router("SELECT balance FROM compay.balance('$c1')"), '15', 'the capture is credited');

# XMR paid across shards moves to the payee's shard with its credit: a task
# paid in crypto and a verified job (verifiers on the job's shard), both of
# requester $x0 (shard 0) to provider $x1 (shard 1).  The payee's shard
# records each payment under its id and settles it; the payer's keeps none.
my ($x0, $v0, $w0) = @on0[ 5 .. 7 ];
my $x1 = $on1[5];
q_router(qq{
SELECT compay.open_account('$v0'); SELECT compay.open_account('$w0'); SELECT compay.open_account('$x1');
SELECT compay.admin_deposit('$x0', '1', 'XMR', 'test funds');
SELECT compay.submit_task('xtask-1', '$x0', '$x1', 'Fine-tuning');
SELECT compay.complete_job('xtask-1', now() - interval '1 hour', now(), 0.714285714285714285714285714286);
SELECT compay.submit_job('xjob-1', '$x0', 'Fine-tuning', '0.05');
SELECT compay.assign_job('xjob-1', '$x1');
SELECT compay.complete_job('xjob-1', now() - interval '2 hours', now(), 0.714285714285714285714285714286);
SELECT compay.verify_job('xjob-1', '$v0', true, 1.0);});
is(q_router(q{SELECT status || ' ' || amount FROM compay.process_task_payment('xtask-1', 'crypto')}),
	'completed 0.00132', 'an XMR task payment across shards');
is(q_router(qq{SELECT compay.verify_job('xjob-1', '$w0', true, 1.2)}), 'paid', 'an XMR job across shards is paid');
is(q_shard(0, q{SELECT count(*) FROM compay.payments WHERE task_id LIKE 'x%'}), '0',
	"the payer's shard keeps no payment row for the remote payee");
is(q_shard(0, q{SELECT count(*) FROM compay.jobs j JOIN compay.clearing_sent s ON s.payment_id = j.payment_id WHERE j.task_id LIKE 'x%'}), '2',
	'the jobs name their payments, which the clearing events carry');
is(clear(), 2, 'the two XMR credits cleared (the verifiers are local)');
is(q_shard(1, q{SELECT string_agg(id::text || ' ' || task_id || ' ' || status || ' ' || from_node || ' ' || (metadata->>'source_shard'), ',' ORDER BY id)
                FROM compay.payments WHERE task_id LIKE 'x%'}),
	join(',', map { my ($id, $t) = split / /; "$id $t completed $x0 0" }
		split /\n/, q_shard(0, q{SELECT p.payment_id || ' ' || j.task_id FROM compay.clearing_sent p JOIN compay.jobs j ON j.payment_id = p.payment_id ORDER BY 1})),
	"the payee's shard records both payments under their ids, from shard 0");
is(q_shard(1, q{SELECT count(*) FROM compay.payments p JOIN compay.clearing_applied a ON a.transfer_id = p.transfer_id WHERE p.task_id LIKE 'x%'}),
	'2', "... each paid by the clearing credit");
# The same event applied again (a batch given again): no second payment.
my ($xev, $xdata) = split /\|/, q_shard(0, q{SELECT s.event_id || '|' || e.ev_data FROM compay.clearing_sent s JOIN pgq.event_template e ON e.ev_id = s.event_id WHERE s.payment_id IS NOT NULL ORDER BY s.event_id LIMIT 1});
is(q_shard(1, "SELECT compay.clearing_apply(0, $xev, 'credit', '" . ($xdata =~ s/'/''/gr) . "')"), 'f',
	'a replayed event applies nothing');
is(q_shard(1, q{SELECT count(*) FROM compay.payments WHERE task_id LIKE 'x%'}), '2', '... and adds no payment');
is(q_router(qq{SELECT balance FROM compay.balance('$x1', 'XMR')}), q_shard(1, q{SELECT compay.sum(amount) FROM compay.payments WHERE task_id LIKE 'x%'}),
	'the provider holds its XMR on its shard');
is(q_router(qq{SELECT earned || ' ' || pending FROM compay.earnings('$x1', 'XMR')}),
	q_shard(1, q{SELECT compay.sum(amount) || ' ' || compay.sum(amount) FROM compay.payments WHERE task_id LIKE 'x%'}),
	'earnings through the router: each XMR payment once, pending');
is(q_router(qq{SELECT string_agg(direction || ' ' || task_id, ',' ORDER BY task_id) FROM compay.payment_history('$x0')}),
	'out xjob-1,out xtask-1', "payment_history of the requester: each payment once");
is(q_router(q{SELECT count(*) > 0 FROM compay.run_settlement('hourly', now() + interval '1 year')}), 't',
	'settlement runs on every shard');
is(q_router('SELECT compay.expire_holds() + compay.expire_jobs()'), '0', 'expiry on every shard');
is(q_shard(1, qq{SELECT payment_count || ' ' || status || ' ' || attempts || ' ' || (earmark_hold_id IS NOT NULL) || ' ' || coalesce(last_error, '-')
                 FROM compay.settlements WHERE payee = '$x1'}),
	'2 processing 1 true -', "the payee's shard settles both XMR payments at once, earmarked, no retry");
is(q_shard(0, qq{SELECT count(*) FROM compay.settlements WHERE payee = '$x1'}), '0',
	"the payer's shard settles nothing for the remote payee");
is(q_router(qq{SELECT earned || ' ' || pending FROM compay.earnings('$x1', 'XMR')}),
	q_shard(1, q{SELECT compay.sum(amount) || ' 0' FROM compay.payments WHERE task_id LIKE 'x%'}),
	'earnings through the router: settled once');
# Network-wide reads combined from every shard.
is(q_router(qq{SELECT earned FROM compay.earnings('$a1')}), $price,
	'earnings of a provider paid from another shard');
is(q_router(qq{SELECT string_agg(task_id || ' ' || direction || ' ' || counterparty, ',') FROM compay.payment_history('$d0')}),
	"task-1 in $b1", 'payment_history: the payment kept on the requester\'s shard');
is(q_router(q{SELECT count || ' ' || is_total FROM compay.payment_report('daily', current_date) WHERE section = 'payment' AND currency = 'CREDIT' ORDER BY is_total}),
	"2 false\n2 true", 'the daily report counts the payments of both shards');

# Bad inputs through the router and on the wrong shard, nothing written.
my $before = q_shard(0, 'SELECT count(*) FROM compay.transfers') . '/' . q_shard(1, 'SELECT count(*) FROM compay.transfers');
is(sqlstate($router, "SELECT compay.transfer('$a0', '$a0', '1')"), '22023', 'a transfer to itself: 22023');
is(sqlstate($router, "SELECT compay.transfer(NULL, '$a0', '1')"), '22004', 'a NULL payer: 22004');
is(sqlstate($router, "SELECT compay.transfer('$b0', '$a1', '-1')"), '22023', 'a negative amount: 22023');
is(sqlstate($shard[0], "SELECT compay.transfer('$a1', '$a0', '1')"), 'PY037', 'a payer of the other shard: PY037');
is(sqlstate($shard[0], "SELECT compay.deposit('$a1', '1')"), 'PY037', 'a deposit for the other shard: PY037');
is(sqlstate($shard[0], "SELECT compay.open_account('$c1')"), 'PY037', 'an account of the other shard: PY037');
is(sqlstate($shard[0], "SELECT compay.grant_barter('$a0', '$a1', '1')"), 'PY037', 'barter across shards: PY037');
is(sqlstate($shard[0], "SELECT compay.refund($t_cross)"), 'PY037', 'a refund of a cross-shard transfer: PY037');
is(sqlstate($shard[0], "SELECT * FROM compay.transfer_batch(ARRAY['$a0'], ARRAY['$a1'], ARRAY['1']::compay.credit[])"),
	'PY037', 'a batch to the other shard: PY037');
is(q_shard(0, 'SELECT count(*) FROM compay.transfers') . '/' . q_shard(1, 'SELECT count(*) FROM compay.transfers'),
	$before, 'no transfer written by the refused calls');
is(q_shard(0, "SELECT count(*) FROM compay.accounts WHERE node_id = '$c1'"), '0', 'no account opened on the wrong shard');

# A task id used on both shards: the router cannot tell which job is meant.
q_router("SELECT compay.submit_task('dup', '$a0', '$b0', 'render')");
q_router("SELECT compay.submit_task('dup', '$a1', '$b1', 'render')");
is(sqlstate($router, "SELECT compay.complete_job('dup', now() - interval '1 minute', now())"), 'PY037',
	'a task id on two shards: PY037 at the router');

# A peer down: the consumer warns and applies nothing, then catches up.
my $e0 = $on0[4];
q_router("SELECT compay.transfer('$b1', '$e0', '1')");
tick();
$shard[1]->stop('fast');
my ($rc, $out, $err) = $shard[0]->psql('postgres', 'CALL compay.clearing_consume()');
is("$rc $out", '0 0', 'a peer down: no batch, no error');
like($err, qr/WARNING:  clearing: no batch from shard 1/, '... and a warning names the shard');
$shard[1]->start;
is(q_shard(0, q{CALL compay.clearing_consume_loop('0', 2)}), '', 'the loop runs its rounds');
is(q_router("SELECT balance FROM compay.balance('$e0')"), '1', 'the credit arrives once the peer is back');

# An XMR verifier reward across shards: job xjob-2 of $x0 with provider
# $w0 (shard 0) and verifiers $v0 (shard 0) and $y1 (shard 1).  $y1's
# reward reaches shard 1 by clearing, which records it
# (compay.clearing_rewards) and settles it; shard 0 never does.
my $y1 = $on1[6];
q_router(qq{
SELECT compay.open_account('$y1');
SELECT compay.submit_job('xjob-2', '$x0', 'Fine-tuning', '0.05');
SELECT compay.assign_job('xjob-2', '$w0');
SELECT compay.complete_job('xjob-2', now() - interval '2 hours', now(), 0.714285714285714285714285714286);
SELECT compay.verify_job('xjob-2', '$y1', true, 1.0);});
is(q_router(qq{SELECT compay.verify_job('xjob-2', '$v0', true, 1.0)}), 'paid', 'an XMR job with a remote verifier is paid');
my $reward = q_shard(0, qq{SELECT v.reward_amount FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id WHERE j.task_id = 'xjob-2' AND v.verifier = '$y1'});
cmp_ok($reward, '>', 0, "the job's shard records the remote verifier's reward ($reward)");
is(clear(), 1, 'the remote reward cleared');
is(q_shard(1, qq{SELECT task_id || ' ' || job_type || ' ' || reward_amount || ' ' || from_shard || ' ' || (settlement_id IS NULL)
                 FROM compay.clearing_rewards WHERE verifier = '$y1'}),
	"xjob-2 Fine-tuning $reward 0 true", "the verifier's shard records the reward, unsettled");
is(q_router(qq{SELECT balance FROM compay.balance('$y1', 'XMR')}), $reward, '... and the verifier holds it');
is(q_shard(1, qq{SELECT compay.withdrawable('$y1')}), '0',
	"the remote reward, not settled yet, is not withdrawable on the verifier's shard");
is(q_router(qq{SELECT earned || ' ' || rewards || ' ' || pending || ' ' || settled_unpaid
               FROM compay.earnings('$y1', 'XMR')}),
	"$reward $reward $reward 0", 'earnings through the router: the remote reward once, pending');
my ($rev, $rdata) = split /\|/, q_shard(0, qq{SELECT s.event_id || '|' || e.ev_data FROM compay.clearing_sent s JOIN pgq.event_template e ON e.ev_id = s.event_id WHERE s.payee = '$y1'});
is(q_shard(1, "SELECT compay.clearing_apply(0, $rev, 'credit', '" . ($rdata =~ s/'/''/gr) . "')"), 'f',
	'the reward event replayed applies nothing');
is(q_shard(1, qq{SELECT count(*) FROM compay.clearing_rewards WHERE verifier = '$y1'}), '1', '... and records no second reward');
q_shard($_, q{SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '2 years')}) for 0, 1;
is(q_shard(1, qq{SELECT purpose || ' ' || payment_count || ' ' || total_amount || ' ' || status || ' ' || (earmark_hold_id IS NOT NULL) || ' ' || coalesce(last_error, '-')
                 FROM compay.settlements WHERE payee = '$y1'}),
	"verification 1 $reward processing true -", "the verifier's shard settles the reward, earmarked, no error");
is(q_router(qq{SELECT earned || ' ' || rewards || ' ' || pending || ' ' || settled_unpaid
               FROM compay.earnings('$y1', 'XMR')}),
	"$reward $reward 0 $reward", '... and earnings through the router show it once, settled');
is(q_shard(1, qq{SELECT count(*) FROM compay.clearing_rewards r JOIN compay.settlements s ON s.id = r.settlement_id WHERE r.verifier = '$y1'}),
	'1', '... and the reward names its settlement');
is(q_shard(0, qq{SELECT count(*) FROM compay.settlements WHERE payee = '$y1' OR last_error IS NOT NULL}), '0',
	"the job's shard settles nothing for the remote verifier and records no error");
is(q_shard(0, q{SELECT string_agg(v.verifier || ' ' || (v.settlement_id IS NOT NULL), ',' ORDER BY v.verifier)
                FROM compay.verifications v JOIN compay.jobs j ON j.id = v.job_id WHERE j.task_id = 'xjob-2'}),
	join(',', map { $_ eq $v0 ? "$_ true" : "$_ false" } sort ($v0, $y1)), "... while it settles the local verifier's reward");
q_shard($_, q{SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '3 years')}) for 0, 1;
is(q_shard(1, qq{SELECT count(*) FROM compay.settlements WHERE payee = '$y1'}), '1', 'a later run settles the reward no second time');

# Conservation and every shard's checks, through the router.
is(clear(), 0, 'nothing left in flight');
is(q_router(q{SELECT count(*) || ' ' || bool_and(ok) || ' ' || sum(in_flight_events) FROM compay.cluster_check()}),
	'4 true 0', 'cluster_check: both directions, CREDIT and XMR, conserved, nothing in flight');
is(q_router(q{SELECT count(*) || ' ' || bool_and(ok) FROM compay.verify_ledger()}), '42 true',
	"verify_ledger through the router: 21 checks of each shard, all ok");
is(q_router(q{SELECT count(*) FROM compay.verify_ledger() WHERE check_name ~ '^shard [01]: '}), '42',
	'each check is named by its shard');
# Check 21 sees a missing clearing row (in a transaction rolled back).
is(q_shard(1, q{BEGIN; DELETE FROM compay.clearing_applied WHERE event_id = (SELECT min(event_id) FROM compay.clearing_applied);
SELECT ok FROM compay.verify_ledger() WHERE check_name = 'clearing_accounts_match_events'; ROLLBACK;}), 'f',
	'check 21 fails without an applied row');

# Every routed function has the shard function's name and signature.
my $sig = q{SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
                   || pg_get_function_result(p.oid)
            FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.pronamespace = 'compay'::regnamespace};
my @routed = split /\n/, q_router("$sig AND p.proname !~ '^router_'
    AND (l.lanname = 'plproxy' OR p.proname IN ('expire_holds', 'expire_jobs', 'verify_ledger',
                                                'earnings', 'payment_history', 'payment_report')) ORDER BY 1");
my %shard_sigs = map { $_ => 1 } split /\n/, q_shard(0, $sig);
my @differ = grep { !$shard_sigs{$_} } @routed;
is_deeply(\@differ, [], 'every routed function has its shard twin\'s signature');
cmp_ok(scalar @routed, '>=', 60, scalar(@routed) . ' functions routed');

$_->stop for ($router, @shard);
done_testing();
