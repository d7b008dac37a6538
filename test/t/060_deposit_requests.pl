# Deposit requests (issue 16, items 1 and 2) against a real regtest: the
# provider wallet pays requests made by compay.request_deposit, each to a
# fresh treasury subaddress.  Exact, partial, overpaid, late and
# never-paid requests end in their documented states, the node credited
# exactly what arrived, once; no two requests share a subaddress.  The
# worker drives the first ones (seen in the pool, confirmed, expired), then
# CALL compay.poll_deposits() (pg_cron's entry point) the others.  A job
# funded by a request runs from the request to a verified payment and a
# payout the payee wallet receives; a job whose request expires is
# cancelled.
#
# Run: bash /work/tools/runperl.sh REPO PGROOT test/t/060_deposit_requests.pl
#      (COMPAY_XMR_DIR names a running regtest, or the test starts one)

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rt = CompayRegtest->up;
# A small payout minimum: the job below earns 0.0012 XMR.
my $node = $rt->node('requests', "compay.deposit_confirmations = 2\ncompay.payout_min = '0.0001'\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub request
{
	my ($node_id, $amount, $expires) = @_;
	return split /\|/,
	  sql(qq{SELECT request_id, address FROM compay.request_deposit('$node_id', '$amount', '$expires')});
}

sub state
{
	my ($id) = @_;
	return sql(qq{SELECT state || ' ' || received || ' missing ' || missing || ' late ' || late
	  FROM compay.deposit_requests_v WHERE id = $id});
}

# The provider wallet pays: 2 XMR from the treasury, unlocked.
$rt->rpc('treasury', 'transfer',
	qq({"destinations":[{"amount":2000000000000,"address":"$rt->{env}{XMR_PROVIDER_ADDRESS}"}],"priority":0}));
$rt->run('mine', 11);
$rt->rpc('provider', 'refresh');

# Requests: an exact, a partial and an overpaid one, a job funded by one,
# and a job whose request nobody pays.
my ($exact, $exact_address) = request('dep-a', '0.1', '1 hour');
my ($partial, $partial_address) = request('dep-a', '0.1', '40 seconds');
my ($over, $over_address) = request('dep-a', '0.1', '1 hour');
is( sql(q{SELECT request_id || address FROM compay.request_deposit('dep-a', '0.1', idempotency_key => 'k1')}),
	sql(q{SELECT request_id || address FROM compay.request_deposit('dep-a', '0.1', idempotency_key => 'k1')}),
	'the same idempotency key answers the same request and subaddress');
my ($job, $job_request, $job_address) = split /\|/, sql(
	q{SELECT job_id, request_id, address
	  FROM compay.submit_job_funded_by_deposit('dep-job', 'dep-r', 'Fine-tuning', '0.2')});
my ($job_x, $job_x_request) = split /\|/, sql(
	q{SELECT job_id, request_id
	  FROM compay.submit_job_funded_by_deposit('dep-job-x', 'dep-r', 'Fine-tuning', '0.3',
	                                           expires_in => '40 seconds')});
is(sql(qq{SELECT status FROM compay.jobs WHERE id = $job}), 'awaiting_deposit', 'the job awaits its deposit');
is( sql(q{SELECT count(*) || ' ' || count(DISTINCT address) || ' ' || count(DISTINCT address_index)
	  FROM compay.deposit_requests}),
	'6 6 6', 'six requests, six subaddresses: none shared');
like($exact_address, qr/^[0-9A-Za-z]{95}$/, 'a subaddress');

# One transfer pays four of them: exact, part, more, the job's amount.
my $tx = $rt->rpc('provider', 'transfer',
	qq({"destinations":[{"amount":100000000000,"address":"$exact_address"},)
	  . qq({"amount":40000000000,"address":"$partial_address"},)
	  . qq({"amount":150000000000,"address":"$over_address"},)
	  . qq({"amount":200000000000,"address":"$job_address"}],"priority":0}), 'result.tx_hash');
like($tx, qr/^[0-9a-f]{64}$/, "paid in one transaction: $tx");
ok( $node->poll_query_until('postgres',
		qq{SELECT state = 'seen' AND pending::text = '0.1' AND received::text = '0'
		   AND tx_hashes = ARRAY['$tx'] FROM compay.deposit_requests_v WHERE id = $exact}),
	'the worker shows the payment in the pool: seen, not credited');
is(sql(q{SELECT count(*) FROM compay.xmr_deposits}), '0', 'nothing credited from the pool');

$rt->run('mine', 11);
ok( $node->poll_query_until('postgres',
		qq{SELECT count(*) = 3 FROM compay.deposit_requests WHERE state = 'confirmed'}),
	'mined: the worker credits them');
is(state($exact), 'confirmed 0.1 missing 0 late false', 'exact: confirmed');
is(state($over), 'confirmed 0.15 missing 0 late false', 'overpaid: confirmed, credited in full');
is(state($partial), 'partial 0.04 missing 0.06 late false', 'partial: credited, says what is missing');
is( sql(qq{SELECT j.status || ' ' || j.max_amount || ' ' || h.status || ' ' || h.amount
	  FROM compay.jobs j JOIN compay.holds h ON h.id = j.escrow_hold_id WHERE j.id = $job}),
	'submitted 0.2 pending 0.2', 'the job is submitted, its escrow held from the deposit');

# The job runs: assigned, completed, verified, paid, settled, paid out.
my $payee_index = $rt->pay_to($node, 'gpu-p');
sql(q{SELECT compay.assign_job('dep-job', 'gpu-p');
	  SELECT compay.complete_job('dep-job', now() - interval '1 hour', now(), 0.714285714285714285714285714286);
	  SELECT compay.verify_job('dep-job', 'ver-1', true, 1.0);
	  SELECT compay.verify_job('dep-job', 'ver-2', true, 1.0);});
my $paid = sql(q{SELECT amount FROM compay.jobs WHERE task_id = 'dep-job' AND status = 'paid'});
ok($paid ne '' && $paid > 0, "verified and paid: $paid XMR");
sql(q{SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '1 hour')});
sql(q{SELECT compay.wake_worker()});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM compay.payout_transactions WHERE status = 'relayed'}),
	'the worker pays the provider out');
$rt->run('mine', 10);
ok( $node->poll_query_until('postgres',
		q{SELECT status = 'confirmed' FROM compay.payout_transactions}),
	'the payout is confirmed');
my $received = $rt->received_amounts($payee_index);
my $paid_atomic = sql(q{SELECT compay.atomic(amount) FROM compay.payouts WHERE node_id = 'gpu-p'});
is($received, $paid_atomic, "the payee wallet received the payout: $received atomic units");

# Expired while the worker runs: the partial request and the unpaid job.
ok( $node->poll_query_until('postgres',
		qq{SELECT count(*) = 2 FROM compay.deposit_requests WHERE state = 'expired'}),
	'the worker expires the requests not paid in time');
is(state($partial), 'expired 0.04 missing 0.06 late false', 'partial: expired, what arrived stays credited');
is( sql(qq{SELECT status FROM compay.jobs WHERE id = $job_x}), 'cancelled',
	'the job whose request expired is cancelled');

# The worker off: CALL compay.poll_deposits() expires the never-paid and
# the late requests, and credits the late payment.
$rt->set($node, 'compay.worker_enabled', 'off');
my ($never) = request('dep-a', '0.1', '1 second');
my ($late, $late_address) = request('dep-a', '0.1', '1 second');
sleep 2;
sql(q{CALL compay.poll_deposits()});
is(state($never), 'expired 0 missing 0.1 late false', 'never paid: expired, by CALL compay.poll_deposits()');
is(state($late), 'expired 0 missing 0.1 late false', 'the late one expired unpaid first');
like( $rt->rpc('provider', 'transfer',
		qq({"destinations":[{"amount":100000000000,"address":"$late_address"}],"priority":0}),
		'result.tx_hash'),
	qr/^[0-9a-f]{64}$/, 'paid after its expiry');
$rt->run('mine', 2);
sql(q{CALL compay.poll_deposits()});
is(state($late), 'expired 0.1 missing 0 late true', 'paid late: credited, flagged late');
sql(q{CALL compay.poll_deposits()});
is( sql(q{SELECT count(*) || ' ' || compay.sum(amount) FROM compay.xmr_deposits}),
	'5 0.59', 'polled again: five outputs, each credited once');
is(sql(q{SET search_path = compay; SELECT balance + reserved FROM compay.balance('dep-a', 'XMR')}), '0.39',
	'dep-a credited exactly what arrived: 0.1 + 0.04 + 0.15 + 0.1');
is( sql(q{SET search_path = compay; SELECT b.balance + b.reserved + j.amount FROM compay.balance('dep-r', 'XMR') b, compay.jobs j
	  WHERE j.task_id = 'dep-job'}),
	'0.2', 'dep-r: its 0.2 XMR, less what the job paid');
is( sql(q{SELECT string_agg(DISTINCT kind, ',' ORDER BY kind)
	  FROM (SELECT kind FROM compay.events UNION ALL SELECT kind FROM compay.event_queue) e
	  WHERE kind LIKE 'deposit_request.%'}),
	'deposit_request.confirmed,deposit_request.expired,deposit_request.late,deposit_request.partial,deposit_request.seen',
	'the requests emitted their events');
is( sql(q{SELECT string_agg(payload->>'status', ',' ORDER BY id) FROM compay.events
	  WHERE kind = 'job.state' AND payload->>'task_id' = 'dep-job'}),
	'awaiting_deposit,submitted,assigned,completed,paid', 'the funded job\'s events, published by the worker');
is( sql(q{SELECT runner || ':' || state FROM compay.runner_status WHERE runner = 'poll_deposits'}),
	'poll_deposits:done', 'compay.runner_status shows the pg_cron entry point ran');
is( sql(q{SELECT string_agg(check_name, ',') FILTER (WHERE NOT ok) IS NULL
	  AND bool_or(check_name = 'deposit_requests_match_outputs') FROM compay.verify_ledger()}),
	't', 'verify_ledger() ok, deposit_requests_match_outputs among its checks');

$node->stop;
done_testing();
