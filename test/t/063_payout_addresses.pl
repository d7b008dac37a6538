# Payout addresses per job type and purpose, and rotation, against the
# real regtest wallet (issue 16).  Every address is a subaddress of the
# provider wallet, so that what each received is read by subaddress index.
# The worker is off while the payouts are queued, then pays them all.
#
#  1. Job type and verification: gpu-j earns from a "Basic Training" job
#     (it has an address for that job type, J) and from another task type
#     (paid to its primary address, P); ver-1 is rewarded for verifying
#     the job and paid at its verification address (V), not its primary
#     one; one payout transaction carries the three.
#  2. Rotation: rot has three primary addresses and rotation on; four
#     successive payouts (0.011, 0.012, 0.013, 0.014 XMR) go to R1, R2,
#     R3, then R1 again; the address each payout took when queued is the
#     one the wallet paid.
#  verify_ledger() ok, verify_payout ok for every payout.
#
# Run: bash /work/tools/runperl.sh WORKTREE PG test/t/063_payout_addresses.pl
#      (COMPAY_XMR_DIR names a running regtest, or one is started).

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $confirmations = 2;
my $rt = CompayRegtest->up;
my $node = $rt->node('addresses',
	"compay.payout_confirmations = $confirmations\ncompay.worker_enabled = off\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub poll { return $node->poll_query_until('postgres', @_); }

sub received
{
	return join(',', sort { $a <=> $b } map { $_->{amount} } $rt->incoming(shift));
}

# 1. Job type and verification addresses.
my ($ip, $ap) = $rt->subaddress;    # gpu-j primary
my ($ij, $aj) = $rt->subaddress;    # gpu-j for Basic Training
my ($iq, $aq) = $rt->subaddress;    # ver-1 primary
my ($iv, $av) = $rt->subaddress;    # ver-1 verification
my ($iw, $aw) = $rt->subaddress;    # ver-2 primary
sql(qq{SELECT compay.set_payout_address('gpu-j', '$ap');
  SELECT compay.add_payout_address('gpu-j', '$aj', 'primary', 'Basic Training');
  SELECT compay.set_payout_address('ver-1', '$aq');
  SELECT compay.add_payout_address('ver-1', '$av', 'verification');
  SELECT compay.set_payout_address('ver-2', '$aw');
  SELECT compay.set_payout_policy(n, true, '0.000001', '1 minute', '10')
  FROM unnest(ARRAY['gpu-j', 'ver-1', 'ver-2']) n;
  SELECT compay.admin_deposit('req-j', '1', 'XMR', 'test funds');
  SELECT compay.submit_job('jjob', 'req-j', 'Basic Training', '1') > 0;
  SELECT compay.assign_job('jjob', 'gpu-j');
  SELECT compay.complete_job('jjob', now() - interval '100 seconds', now());
  SELECT compay.verify_job('jjob', 'ver-1', true);
  SELECT compay.verify_job('jjob', 'ver-2', true);});
my $job_pay = sql(q{SELECT compay.atomic(amount) FROM compay.payments WHERE task_id = 'jjob'});
my $reward = sql(q{SELECT compay.atomic(v.reward_amount) FROM compay.verifications v
	JOIN compay.jobs j ON j.id = v.job_id WHERE j.task_id = 'jjob' AND v.verifier = 'ver-1'});
ok($job_pay > 0 && $reward > 0, "1: the job paid $job_pay, each verifier earned $reward");
$rt->earn($node, 'gpu-j', '0.02');    # another task type: settles the job's payments too
is( sql(q{SELECT string_agg(payee || ':' || purpose || ':' || coalesce(job_type, '-'), ','
		  ORDER BY payee, job_type NULLS FIRST) FROM compay.settlements}),
	'gpu-j:primary:-,gpu-j:primary:Basic Training,ver-1:verification:-,ver-2:verification:-',
	'1: the job type\'s earnings are settled apart, the rewards apart');
is(sql(q{SELECT compay.queue_payouts()}), '1', '1: one payout for the three payees');

# 2. Rotation among three addresses.
my @rot = map { [ $rt->subaddress ] } 1 .. 3;
sql(qq{SELECT compay.set_payout_address('rot', '$rot[0][1]');
  SELECT compay.add_payout_address('rot', '$rot[1][1]');
  SELECT compay.add_payout_address('rot', '$rot[2][1]');
  SELECT compay.set_payout_policy('rot', false, '0.000001', NULL, '10');
  SELECT compay.set_payout_rotation('rot', true);});
my @payouts;
for my $n (1 .. 4)
{
	$rt->earn($node, 'rot', "0.01$n");
	push @payouts, sql(q{SELECT compay.request_payout('rot')});
}
is( sql(q{SELECT string_agg(address, ',' ORDER BY payout_id) FROM compay.payout_items
		  WHERE node_id = 'rot'}),
	join(',', map { $_->[1] } @rot[ 0, 1, 2, 0 ]),
	'2: the four payouts took R1, R2, R3, R1 when queued');

# The worker builds and relays every payout, then they are confirmed.
$rt->set($node, 'compay.worker_enabled', 'on');
ok(poll(q{SELECT bool_and(status = 'relayed') FROM compay.payout_transactions}),
	'the five payouts are relayed')
  or diag(sql(q{SELECT id || ' ' || status || ' ' || coalesce(last_error, '-')
	  FROM compay.payout_transactions ORDER BY id}));
$rt->run('mine', $confirmations);
ok(poll(q{SELECT bool_and(status = 'confirmed') FROM compay.payout_transactions}),
	'the five payouts are confirmed');

is(received($ij), $job_pay, '1: gpu-j was paid the job at its Basic Training address');
is(received($ip), '20000000000', '1: and its other earnings at its primary address');
is(received($iv), $reward, '1: ver-1 was paid its reward at its verification address');
is(received($iq), '', '1: nothing went to ver-1\'s primary address');
is(received($iw), $reward, '1: ver-2, without a verification address, at its primary one');
is(received($rot[0][0]), '11000000000,14000000000', '2: R1 received the first and fourth payouts');
is(received($rot[1][0]), '12000000000', '2: R2 received the second');
is(received($rot[2][0]), '13000000000', '2: R3 received the third');
is(sql(q{SELECT bool_and(ok) FROM compay.payout_transactions p, compay.verify_payout(p.id)}),
	't', 'verify_payout finds every address paid its amount');
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok')
  or diag(sql(q{SELECT check_name || ': ' || detail FROM compay.verify_ledger() WHERE NOT ok}));

$node->stop;
done_testing();
