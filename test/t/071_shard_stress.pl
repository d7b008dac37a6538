# Shard stress (issue 18): a router and two shard clusters with pgqd and a
# clearing consumer per shard (test/t/CompayShards.pm).  8 clients call the
# router for COMPAY_SHARD_STRESS_SECONDS (default 30) with random
# transfers, holds captured to another node, deposits and job payments
# between 32 nodes spread over both shards, so about half of the money
# moves across shards (debit + PgQ event on the payer's shard, credit by
# the consumer on the payee's).  Every call carries an idempotency key;
# each client logs the keys the router acknowledged, and retries (same key,
# same arguments) a call that failed otherwise than by a business error.
# Meanwhile, at random moments, each shard's server is killed with kill -9
# (postmaster and all its processes) and started again, and each shard's
# consumer is killed with kill -9 (once its psql only, the server rolls
# its transaction back; once its backend too, which resets that server)
# and started again a moment later.
#
# Afterwards, with every event consumed:
#  - every acknowledged key exists exactly once in the cluster, on the
#    payer's shard, for a transfer of the acknowledged amount;
#  - every clearing event a shard queued (compay.clearing_sent) is applied
#    exactly once on the payee's shard (compay.clearing_applied: same
#    source transfer, payee and amount), and nothing else is applied;
#  - the clearing accounts of all shards sum to zero per currency (what
#    one sent, the other received), the nodes of all shards hold exactly
#    the cluster's deposits plus the rewards paid;
#  - compay.cluster_check() through the router is all ok, and every
#    shard's compay.verify_ledger() is all ok.
# Money is compared as numeric in SQL, never as Perl floats.
#
# Run: bash /work/tools/runperl.sh REPO PGROOT test/t/071_shard_stress.pl
# (or as test/suites.sh does: PERL5LIB with PostgreSQL::Test and test/t).

use strict;
use warnings;

use CompayShards;
use IPC::Run;
use List::Util qw(shuffle);
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(time sleep);

my $seconds = $ENV{COMPAY_SHARD_STRESS_SECONDS} // 30;
my $clients = 8;
my $nnodes = 32;

my $s = CompayShards->up(conf => <<'EOC');
# every node's account has limit 0: a payer can spend only what it holds
compay.default_credit_limit = '0'
compay.worker_enabled = off
EOC
my $router = $s->router;
my $dir = $s->dir;

# --- nodes, funded through the router ---------------------------------------

my @nodes = map { sprintf 'sn%02d', $_ } 1 .. $nnodes;
my %shard_of = map { $_ => $s->shard_of($_) } @nodes;
for my $i (0 .. $s->shards - 1)
{
	my $n = grep { $shard_of{$_} == $i } @nodes;
	cmp_ok($n, '>=', 4, "shard $i owns $n of the $nnodes nodes");
}
$s->psql_router(join '',
	map { "SELECT compay.deposit('$_', '100000', 'CREDIT', 'seed', 'seed-$_');\n" } @nodes);
for my $i (0 .. $s->shards - 1)
{
	my @mine = grep { $shard_of{$_} == $i } @nodes;
	is($s->psql_shard($i, q{SELECT count(*) FROM compay.accounts WHERE node_id LIKE 'sn%'}),
		scalar(@mine), "shard $i holds the accounts of its nodes only");
}

# --- the clients ------------------------------------------------------------

# One step: [key, kind, payer, payee, amount, sql]; the sql ends with one
# "\echo @@ key :SQLSTATE" line, so the client knows which keys the router
# acknowledged (SQLSTATE 00000).
sub step
{
	my ($c, $i) = @_;
	my $key = "c$c-$i";
	my ($a, $b) = (shuffle @nodes)[ 0, 1 ];
	my $amount = sprintf '%d.%012d', int(rand 20), int(rand 1e12);
	$amount = '0.000000000001' if $amount eq '0.000000000000';
	my $r = rand;
	my ($kind, $sql);
	if ($r < 0.55)
	{
		$kind = 'transfer';
		$sql = "SELECT compay.transfer('$a', '$b', '$amount', 'stress', '$key');";
	}
	elsif ($r < 0.70)
	{
		# A hold on the payer's shard, captured to the payee (the router
		# runs the capture where the hold id says).
		$kind = 'capture';
		$sql = "\\unset hold\n"
		  . "SELECT compay.reserve('$a', '$amount', 'stress', NULL, 'h$key') AS hold \\gset\n"
		  . "\\if :{?hold}\nSELECT compay.capture(:hold, '$b', NULL, true, '$key');\n\\endif";
	}
	elsif ($r < 0.80)
	{
		$kind = 'deposit';
		($a, $b) = ('$external', $a);
		$sql = "SELECT compay.deposit('$b', '$amount', 'CREDIT', 'stress', '$key');";
	}
	else
	{
		$kind = 'job';
		$sql = job_sql($key, $a, $b, $amount);
	}
	return [ $key, $kind, $a, $b, $amount, "$sql\n\\echo @@ $key :SQLSTATE\n" ];
}

# A verified job: escrow held on the requester's shard, usage priced by
# the default model (a base price of 100 and a little CPU), two verifiers;
# requester, provider and verifiers each on any shard.  The step is
# acknowledged when the last vote returns 'paid'.  A retry resumes: the
# same submit returns the job, the same assignment and usage sample are
# no-ops, and a step already done fails harmlessly (55000, 23505), so
# only the final state counts.
sub job_sql
{
	my ($key, $requester, $provider, $amount) = @_;
	my ($v1, $v2) = grep { $_ ne $requester && $_ ne $provider } shuffle @nodes;
	return "SELECT compay.submit_job('$key', '$requester', 'render', '200', '1 hour');\n"
	  . "\\echo \@s $key :SQLSTATE\n"
	  . "SELECT compay.assign_job('$key', '$provider');\n"
	  . "SELECT compay.record_usage('$key', '$provider', 's1', now(), compay.metrics(cpu_seconds => $amount / 1000));\n"
	  . "SELECT compay.complete_job('$key', now() - interval '1 minute', now());\n"
	  . "SELECT compay.verify_job('$key', '$v1', true);\n"
	  . "SELECT compay.verify_job('$key', '$v2', true);\n"
	  . "SELECT 1 / count(*) FILTER (WHERE job_status = 'paid')::int FROM compay.payment_trace('$key');";
}

# Business errors: not acknowledged, nothing to retry.
my %business = map { $_ => 1 } qw(PY001 PY004);

# A client: chunks of 10 steps through one psql each, until the deadline;
# a step that failed otherwise is retried (same key, same sql) in the next
# chunk, at most 20 times.  Logs "key kind payer payee amount" per
# acknowledged key, and "error SQLSTATE" per failure.
sub client
{
	my ($c, $deadline) = @_;
	# A child: it never runs the END blocks that stop the clusters.
	$SIG{$_} = 'DEFAULT' for qw(TERM INT);
	eval { client_loop($c, $deadline) };
	print STDERR "client $c: $@" if $@;
	POSIX::_exit($@ ? 1 : 0);
}

sub client_loop
{
	my ($c, $deadline) = @_;
	srand($$ ^ time);
	open my $log, '>', "$dir/client$c.log" or die $!;
	$log->autoflush(1);
	my @retry;
	my $i = 0;
	while (time < $deadline || @retry)
	{
		last if time > $deadline + 20;
		my @chunk = splice @retry, 0;
		push @chunk, step($c, $i++) while @chunk < 10 && time < $deadline;
		my $script = "\\set ON_ERROR_STOP 0\n" . join('', map { $_->[5] } @chunk);
		my ($out, $err) = ('', '');
		eval {
			IPC::Run::run([ 'psql', '-X', '-A', '-t', '-q', '-d', $s->router_connstr ],
				'<', \$script, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
		};
		my %state = $out =~ /^@@ (\S+) (\w+)$/mg;
		my %submitted = $out =~ /^\@s (\S+) (\w+)$/mg;
		for my $st (@chunk)
		{
			my $code = $state{ $st->[0] } // 'none';
			# A job whose submit failed for lack of funds: not retried.
			my $sub = $submitted{ $st->[0] } // '00000';
			$code = $sub if $code ne '00000' && $business{$sub};
			if ($code eq '00000')
			{
				print $log join(' ', 'ack', @$st[ 0 .. 4 ]), "\n";
				next;
			}
			print $log "error $code\n";
			next if $business{$code};
			$st->[6]++;
			push @retry, $st if $st->[6] <= 20;
		}
		sleep 0.2 if @retry && !%state;    # the router unreachable: wait a little
	}
	close $log;
	return;
}

my $t0 = time;
my $deadline = $t0 + $seconds;
my @pids;
for my $c (1 .. $clients)
{
	my $pid = fork // die "fork: $!";
	client($c, $deadline) if $pid == 0;
	push @pids, $pid;
}

# --- the crashes ------------------------------------------------------------

# Each shard's server killed once, each consumer twice (psql only, then
# with its backend), at random moments in the middle 80 % of the run.
my @events = sort { $a->[0] <=> $b->[0] } (
	(map { [ $seconds * (0.1 + rand 0.8), 'shard', $_ ] } 0 .. $s->shards - 1),
	(map { [ $seconds * (0.1 + rand 0.8), 'consumer', $_, 0 ] } 0 .. $s->shards - 1),
	(map { [ $seconds * (0.1 + rand 0.8), 'consumer', $_, 1 ] } 0 .. $s->shards - 1));
my %killed;
for my $e (@events)
{
	my $wait = $t0 + $e->[0] - time;
	sleep $wait if $wait > 0;
	if ($e->[1] eq 'shard')
	{
		my $secs = $s->kill9_shard($e->[2]);
		note(sprintf 'shard %d killed at %.1f s, back after %.1f s', $e->[2], $e->[0], $secs);
		$killed{shard}++;
	}
	else
	{
		$s->kill9_consumer($e->[2], backend => $e->[3]) if $s->consumer_runs($e->[2]);
		note(sprintf 'consumer %d killed at %.1f s%s', $e->[2], $e->[0],
			$e->[3] ? ' (with its backend)' : '');
		sleep 0.5 + rand 2;
		$s->restart_consumer($e->[2]);
		$killed{consumer}++;
	}
}
waitpid($_, 0) for @pids;
note(sprintf 'clients done after %.1f s', time - $t0);
is($killed{shard}, $s->shards, 'every shard was killed with kill -9 and restarted');
is($killed{consumer}, 2 * $s->shards, 'every consumer was killed with kill -9 twice');

# --- what the clients saw ---------------------------------------------------

my (%ack, %errors);
for my $c (1 .. $clients)
{
	open my $fh, '<', "$dir/client$c.log" or die "client $c left no log: $!";
	while (<$fh>)
	{
		chomp;
		my @f = split / /;
		if ($f[0] eq 'ack') { $ack{ $f[1] } = [ @f[ 2 .. 5 ] ] }
		else { $errors{ $f[1] }++ }
	}
}
my %kinds;
$kinds{ $_->[0] }++ for values %ack;
note('acknowledged: ' . join(', ', map { "$_ $kinds{$_}" } sort keys %kinds));
note('errors: ' . join(', ', map { "$_ $errors{$_}" } sort keys %errors));
cmp_ok(scalar(keys %ack), '>=', 100, scalar(keys %ack) . ' calls acknowledged');
cmp_ok($kinds{$_} // 0, '>', 0, "some ${_}s acknowledged") for qw(transfer capture deposit job);
my $cross = grep { $_->[1] ne '$external' && $shard_of{ $_->[1] } != $shard_of{ $_->[2] } }
  values %ack;
cmp_ok($cross, '>=', 20, "$cross acknowledged calls moved money across shards");

# --- drained -----------------------------------------------------------------

for my $i (0 .. $s->shards - 1)
{
	$s->restart_consumer($i) unless $s->consumer_runs($i);
}
my $drain = $s->wait_drained(60);
note(sprintf 'every event consumed %.1f s after the clients stopped', $drain);

# --- every acknowledged key once, on the payer's shard ------------------------

# key -> [shard, amount of its transfer]
my %found;
my $dup = 0;
for my $i (0 .. $s->shards - 1)
{
	my $rows = $s->psql_shard($i, q{
SELECT k.key, t.amount FROM compay.idempotency_keys k
  JOIN compay.transfers t ON t.id = k.result_id
 WHERE k.key ~ '^c[0-9]+-[0-9]+$'});
	for (split /\n/, $rows)
	{
		my ($key, $amount) = split /\|/;
		$dup++ if $found{$key};
		$found{$key} = [ $i, $amount ];
	}
}
is($dup, 0, 'no key exists on two shards');
my @keyed = grep { $ack{$_}[0] ne 'job' } sort keys %ack;
my @jobs = grep { $ack{$_}[0] eq 'job' } sort keys %ack;
my @missing = grep { !$found{$_} } @keyed;
is(scalar(@missing), 0, 'every acknowledged key exists')
  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
my @wrong_shard = grep {
	$found{$_} && $found{$_}[0] != ($ack{$_}[1] eq '$external'
		? $shard_of{ $ack{$_}[2] } : $shard_of{ $ack{$_}[1] })
} @keyed;
is(scalar(@wrong_shard), 0, "every acknowledged key is on its payer's shard")
  or diag("on another shard: @wrong_shard[0 .. ($#wrong_shard < 9 ? $#wrong_shard : 9)]");
# Amounts compared exactly, in SQL: the acknowledged amount against the
# transfer's.
my $pairs = join ",\n",
  map { "('$_', '$ack{$_}[3]'::numeric, '$found{$_}[1]'::numeric)" } grep { $found{$_} } @keyed;
is($s->psql_shard(0, "SELECT count(*) FROM (VALUES $pairs) v(key, acked, booked)
                      WHERE acked IS DISTINCT FROM booked"),
	'0', 'every acknowledged key booked its acknowledged amount')
  if $pairs ne '';

# Each acknowledged job (its task id is the key): one job, paid, on the
# requester's shard, with one completed payment; no job is paid twice.
my (%job_at, $job_dup);
for my $i (0 .. $s->shards - 1)
{
	for (split /\n/, $s->psql_shard($i, q{
SELECT j.task_id, j.status,
       (SELECT count(*) FROM compay.payments p WHERE p.task_id = j.task_id AND p.status = 'completed')
  FROM compay.jobs j WHERE j.task_id ~ '^c[0-9]+-[0-9]+$'}))
	{
		my ($task, $status, $payments) = split /\|/;
		$job_dup++ if $job_at{$task};
		$job_at{$task} = [ $i, $status, $payments ];
	}
}
is($job_dup // 0, 0, 'no task id has a job on two shards');
my @bad_jobs = grep {
	!$job_at{$_} || $job_at{$_}[0] != $shard_of{ $ack{$_}[1] }
	  || $job_at{$_}[1] ne 'paid' || $job_at{$_}[2] != 1
} @jobs;
is(scalar(@bad_jobs), 0, "every acknowledged job is paid once, on its requester's shard")
  or diag(join "\n", map { "$_: " . join(' ', @{ $job_at{$_} // ['missing'] }) } @bad_jobs[ 0 .. ($#bad_jobs < 9 ? $#bad_jobs : 9) ]);
is(scalar(grep { $_->[2] > 1 } values %job_at), 0, 'no job has two completed payments');

# --- every event applied exactly once -----------------------------------------

my (%sent, %applied);
for my $i (0 .. $s->shards - 1)
{
	for (split /\n/, $s->psql_shard($i, q{
SELECT to_shard, event_id, transfer_id, payee, amount, currency FROM compay.clearing_sent}))
	{
		my ($to, $ev, $tr, $payee, $amount, $cur) = split /\|/;
		$sent{"$i>$to:$ev"} = "$tr|$payee|$amount|$cur";
	}
	for (split /\n/, $s->psql_shard($i, q{
SELECT from_shard, event_id, source_transfer_id, payee, amount, currency
  FROM compay.clearing_applied}))
	{
		my ($from, $ev, $tr, $payee, $amount, $cur) = split /\|/;
		$applied{"$from>$i:$ev"} = "$tr|$payee|$amount|$cur";
	}
}
cmp_ok(scalar(keys %sent), '>=', 20, scalar(keys %sent) . ' clearing events queued');
my @unapplied = grep { !exists $applied{$_} } sort keys %sent;
my @unsent = grep { !exists $sent{$_} } sort keys %applied;
my @differ = grep { exists $applied{$_} && $applied{$_} ne $sent{$_} } sort keys %sent;
is(scalar(@unapplied), 0, 'every queued event is applied on the payee\'s shard')
  or diag("not applied: @unapplied[0 .. ($#unapplied < 9 ? $#unapplied : 9)]");
is(scalar(@unsent), 0, 'every applied event was queued by its source shard')
  or diag("never queued: @unsent");
is(scalar(@differ), 0, 'each applied with the payee and amount it was queued with')
  or diag(join "\n", map { "$_: $sent{$_} vs $applied{$_}" } @differ[ 0 .. ($#differ < 9 ? $#differ : 9) ]);
for my $i (0 .. $s->shards - 1)
{
	# clearing_applied's key is (from_shard, event_id): at most once by
	# construction; each applied event credited exactly one transfer.
	is($s->psql_shard($i, q{
SELECT count(*) FROM compay.clearing_applied a
 WHERE a.transfer_id IS NULL
    OR (SELECT count(*) FROM compay.clearing_applied b WHERE b.transfer_id = a.transfer_id) <> 1
    OR NOT EXISTS (SELECT FROM compay.transfers t WHERE t.id = a.transfer_id
                   AND t.amount::numeric = a.amount::numeric)}),
		'0', "shard $i: each applied event credited one transfer of its amount");
}

# --- conservation ---------------------------------------------------------------

# Per shard, as numeric sums in SQL: its nodes, its deposits (what
# $external paid), $rewards and its $clearing:* accounts.
my (@nodes_sum, @deposits_sum, @rewards_sum, @clearing_sum);
for my $i (0 .. $s->shards - 1)
{
	my $row = $s->psql_shard($i, q{
SELECT coalesce(sum(balance::numeric) FILTER (WHERE node_id LIKE 'sn%'), 0),
       (SELECT coalesce(sum(amount::numeric), 0) FROM compay.transfers WHERE kind = 'deposit'),
       coalesce(sum(balance::numeric) FILTER (WHERE split_part(node_id, '#', 1) = '$rewards'), 0),
       coalesce(sum(balance::numeric) FILTER (WHERE node_id LIKE '$clearing%'), 0),
       sum(balance::numeric) = 0
  FROM compay.accounts WHERE currency = 'CREDIT'});
	my @v = split /\|/, $row;
	push @nodes_sum, "($v[0])";
	push @deposits_sum, "($v[1])";
	push @rewards_sum, "($v[2])";
	push @clearing_sum, "($v[3])";
	is($v[4], 't', "shard $i: its CREDIT balances sum to zero");
}
is($s->psql_shard(0, 'SELECT ' . join(' + ', @clearing_sum) . ' = 0'), 't',
	'the clearing accounts of all shards sum to zero: every amount sent was received');
is($s->psql_shard(0, 'SELECT ' . join(' + ', @nodes_sum) . ' = ' . join(' + ', @deposits_sum)
	  . ' - (' . join(' + ', @rewards_sum) . ')'), 't',
	"the nodes of all shards hold exactly the cluster's deposits and the rewards paid");

# --- the cluster's own checks -------------------------------------------------

my $cc = $s->psql_router(q{SELECT count(*) FILTER (WHERE ok) || '/' || count(*) FROM compay.cluster_check()});
like($cc, qr/^(\d+)\/\1$/, "compay.cluster_check() through the router: all ok ($cc)")
  or diag($s->psql_router(q{SELECT * FROM compay.cluster_check() WHERE NOT ok}));
for my $i (0 .. $s->shards - 1)
{
	my $v = $s->psql_shard($i,
		q{SELECT count(*) FILTER (WHERE ok) || '/' || count(*) FROM compay.verify_ledger()});
	like($v, qr/^(\d+)\/\1$/, "shard $i: verify_ledger() all ok ($v)")
	  or diag($s->psql_shard($i, q{SELECT check_name || ': ' || detail FROM compay.verify_ledger() WHERE NOT ok}));
}

$s->down;
done_testing;
