# Reads on the hot standby of a pg_auto_failover formation: every public
# compay function that reads (balances, history, quotes, prices, traces,
# reports, earnings, dashboards, verify_ledger ...) answers on the standby
# with the primary's data and the primary's result; every function that
# writes fails there with PostgreSQL's read-only error (SQLSTATE 25006),
# not a crash, and leaves the standby serving.
#
# The list of functions comes from the catalog: every compay function or
# procedure, not IMMUTABLE (those read no table), that compay_admin or
# compay_node may execute (the internals that only the extension's own
# functions and the worker call are left out).  Each must be in %reads or
# %writes below: a new function that is in neither fails the test.
#
# Run: bash /work/tools/runperl.sh REPO PG test/t/051_standby_reads.pl

use strict;
use warnings;

use CompayFormation;
use Test::More;

my $f = CompayFormation->up(conf => "compay.worker_enabled = off\n");

# Real data, written on the primary: CREDIT transfers, a pending hold,
# barter, two jobs through escrow, metering and verification (one short of
# its price), an XMR payment settled and paid out, exchange rates.
$f->psql_primary(<<'EOS');
SELECT compay.deposit('req', '50000', idempotency_key => 'sr-dep-req');
SELECT compay.transfer('req', 'gpu-c', '12.5', 'job 1', 'sr-tr-1');
SELECT compay.reserve('req', '100', 'pending hold', NULL, 'sr-hold-1');
SELECT compay.grant_barter('gpu-c', 'req', '3', 'barter', 'sr-barter-1');
SELECT compay.open_account('gpu-v1'), compay.open_account('gpu-v2');
SELECT compay.submit_job('job-c', 'req', 'render', '5000');
SELECT compay.assign_job('job-c', 'gpu-c');
SELECT compay.record_usage('job-c', 'gpu-c', 's1', now(), compay.metrics(cpu_seconds => 2));
SELECT compay.complete_job('job-c', now() - interval '1 minute', now());
SELECT compay.verify_job('job-c', 'gpu-v1', true);
SELECT compay.verify_job('job-c', 'gpu-v2', true);
SELECT compay.open_account('poor', 'CREDIT', '0');
SELECT compay.deposit('poor', '500', idempotency_key => 'sr-dep-poor');
SELECT compay.submit_job('job-s', 'poor', 'render', '400');
SELECT compay.assign_job('job-s', 'gpu-c');
SELECT compay.record_usage('job-s', 'gpu-c', 's1', now(), compay.metrics(cpu_seconds => 2));
SELECT compay.complete_job('job-s', now() - interval '1 minute', now());
SELECT compay.verify_job('job-s', 'gpu-v1', true);
SELECT compay.verify_job('job-s', 'gpu-v2', true);
SELECT compay.submit_task('task-open', 'req', 'gpu-c', 'render');
SELECT compay.admin_deposit('gpu-t', '0.8', 'XMR', 'earnings');
INSERT INTO compay.jobs (task_id, requester, provider, task_type, currency, status)
VALUES ('job-1', 'req', 'gpu-t', 'inference', 'XMR', 'paid');
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                             completed_at)
VALUES ('job-1', 'req', 'gpu-t', '0.8', 'XMR', 'crypto', 'completed', now() - interval '2 hours');
SELECT count(*) FROM compay.run_settlement('hourly');
INSERT INTO compay.deposit_requests (node_id, address, address_index, amount, confirmations,
                                     expires_at)
VALUES ('gpu-t', 'request-subaddress-1', 7, '0.5', 10, now() + interval '1 hour');
SELECT compay.publish_events();
SELECT compay.set_payout_address('gpu-t',
  '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1');
SELECT compay.queue_payouts();
SELECT compay.record_payout_built(1, jsonb_build_object(
    'tx_hash', repeat('a', 64), 'tx_key', repeat('b', 64), 'tx_metadata', 'abcd',
    'spent_key_images', jsonb_build_object('key_images', jsonb_build_array(repeat('c', 64))),
    'fee', 1000, 'amount', 500000000000));
SELECT compay.record_payout_relayed(1), compay.record_payout_confirmations(1, 10);
INSERT INTO compay.exchange_rates (currency, quote_currency, rate, valid_from)
VALUES ('XMR', 'EUR', 160.5, '2025-01-01'), ('CREDIT', 'EUR', 0.01, '2025-01-01');
SELECT compay.set_payout_policy('gpu-t', true, '0.05', '12 hours', NULL);
-- A policy that would raise limits (applied on the standby only: refused).
INSERT INTO compay.credit_limit_policy (currency, min_score, min_paid_jobs, credit_limit)
VALUES ('CREDIT', 0, 0, '1000000');
-- A hold past its expiry, for expire_holds.
SELECT compay.reserve('req', '1', 'expiring', interval '1 second', 'sr-hold-2');
EOS

# Reads: called on both nodes, the same result on each.
my $range = q{'2020-01-01 00:00+00', '2100-01-01 00:00+00'};
my $days = q{date_trunc('day', now()) - interval '20 days', date_trunc('day', now()) + interval '1 day'};
my $m = q{compay.metrics(cpu_seconds => 1.5)};
my %reads = (
	'balance(node_id text, currency text)' => q{SELECT * FROM compay.balance('req')},
	'barter_balance(holder text, counterparty text)' =>
	  q{SELECT compay.barter_balance('gpu-c', 'req')},
	'check_price(metrics compay.resource_metrics, task_type text)' =>
	  qq{SELECT compay.check_price($m, 'render')},
	'clawbacks_owed(node_id text, currency text)' => q{SELECT compay.clawbacks_owed('gpu-t')},
	'compute_reward(job_type text, duration interval, utilization_factor numeric, quality_factor numeric)'
	  => q{SELECT compay.compute_reward('Fine-tuning', '24 hours', 1.0)},
	'compute_reward(job_type text, duration interval, utilization_factor numeric, quality_factors numeric[])'
	  => q{SELECT compay.compute_reward('Fine-tuning', '24 hours', 1.0, ARRAY[1.0, 0.9])},
	'earnings(node_id text, currency text)' => q{SELECT * FROM compay.earnings('gpu-t')},
	'earnings_breakdown(node_id text, "from" timestamp with time zone, "to" timestamp with time zone, by text)'
	  => qq{SELECT * FROM compay.earnings_breakdown('gpu-t', $range, 'day')},
	'earnings_dashboard(node_id text, "from" timestamp with time zone, "to" timestamp with time zone)'
	  => qq{SELECT md5(compay.earnings_dashboard('gpu-t', $days))},
	'earnings_history(node_id text, "from" timestamp with time zone, "to" timestamp with time zone)'
	  => q{SELECT * FROM compay.earnings_history('gpu-t')},
	'exchange_rate(currency text, quote text, ts timestamp with time zone)' =>
	  q{SELECT compay.exchange_rate('XMR', 'EUR', '2025-03-05')},
	'payout_address_for(node_id text, settlement_purpose text, job_type text, payout_id bigint)' =>
	  q{SELECT (compay.payout_address_for('gpu-t', 'primary', NULL, NULL)).address},
	'deposit_request_status(request_id bigint)' =>
	  q{SELECT * FROM compay.deposit_request_status(1)},
	'events_since(last_id bigint, max_events integer)' =>
	  q{SELECT * FROM compay.events_since(0, 1000)},
	'withdrawable(node_id text)' => q{SELECT compay.withdrawable('gpu-t')},
	'payout_address_list(node_id text)' => q{SELECT * FROM compay.payout_address_list('gpu-t')},
	'history(node_id text, currency text, max_rows integer, before_seq bigint)' =>
	  q{SELECT * FROM compay.history('req')},
	'network_dashboard("from" timestamp with time zone, "to" timestamp with time zone)' =>
	  qq{SELECT md5(compay.network_dashboard($days))},
	'node_shortfalls(node_id text, currency text)' => q{SELECT * FROM compay.node_shortfalls('poor')},
	'payable_settlements(node_id text)' => q{SELECT * FROM compay.payable_settlements(NULL)},
	'payment_history(node_id text, max_rows integer)' =>
	  q{SELECT * FROM compay.payment_history('gpu-c')},
	'payment_report(kind text, day date, node_id text)' =>
	  q{SELECT * FROM compay.payment_report('daily', current_date)},
	'payment_report(kind text, year integer, month integer, node_id text)' =>
	  q{SELECT * FROM compay.payment_report('monthly', extract(year FROM now())::int,
                                              extract(month FROM now())::int)},
	'payment_report(kind text, year integer, node_id text, reporting_currency text)' =>
	  q{SELECT * FROM compay.payment_report('tax', extract(year FROM now())::int)},
	'payment_trace(task_id text)' => q{SELECT * FROM compay.payment_trace('job-1')},
	'payment_settlement(p compay.payments)' =>
	  q{SELECT string_agg(p.id || '=' || coalesce(compay.payment_settlement(p)::text, '-'), ',' ORDER BY p.id)
	    FROM compay.payments p},
	'settlement_payments(s compay.settlements)' =>
	  q{SELECT string_agg(s.id || ':' || x.id, ',' ORDER BY s.id, x.id)
	    FROM compay.settlements s, compay.settlement_payments(s) x},
	'payout_policy(node_id text)' => q{SELECT * FROM compay.payout_policy('gpu-t')},
	'price(metrics compay.resource_metrics, task_type text, requester text)' =>
	  qq{SELECT compay.price($m, 'render', 'req')},
	'quote(metrics compay.resource_metrics, task_type text, requester text)' =>
	  qq{SELECT * FROM compay.quote($m, 'render', 'req')},
	'setting(name text)' => q{SELECT compay.setting('compay.database')},
	'task_metrics(task_id text)' => q{SELECT * FROM compay.task_metrics('job-c')},
	'verifier_daily_limit(node_id text, currency text)' =>
	  q{SELECT compay.verifier_daily_limit('gpu-v1')},
	'verify_ledger()' => q{SELECT * FROM compay.verify_ledger()},
	# VOLATILE, reading only: the worker's shared state, the checks.
	'worker_status()' => undef,
	'diagnose()' => undef,
	'wake_worker()' => undef,
	# VOLATILE, the treasury wallet's view (no wallet in this test: the
	# same wallet error on both nodes, see below).
	'payout_proof(payout_id bigint, message text)' => undef,
	'verify_payout(payout_id bigint)' => undef,
	'verify_tx(txid text)' => undef,
	'wallet_balance()' => undef,
	'wallet_transfers(max_rows integer)' => undef,
	# The shard functions (src/shard.sql), on a database that is no shard:
	# the same PY036 on both nodes (see %wallet_reads).
	'shard_of(node_id text)' => undef,
	'clearing_totals()' => undef,
	'clearing_fetch(peer integer)' => undef,
	'clearing_apply(from_shard integer, event_id bigint, event_type text, event_data text)' => undef,
	'clearing_finish(peer integer, batch_id bigint)' => undef,
	'clearing_consume(INOUT applied integer)' => undef,
	'clearing_consume_loop(IN pause interval, IN rounds integer)' => undef,
);

# Node-local reads: they answer on the standby, each with its own node's
# state (the worker idles there), so only "it answers" is compared.
my %local_reads = (
	'worker_status()' => q{SELECT state IN ('standby', 'not started') FROM compay.worker_status()},
	'diagnose()' => q{SELECT count(*) > 0 FROM compay.diagnose()},
	'wake_worker()' => q{SELECT count(*) = 1 FROM (SELECT compay.wake_worker()) w},
);
my %wallet_reads = (
	'payout_proof(payout_id bigint, message text)' => q{SELECT compay.payout_proof(1, 'm')},
	'verify_payout(payout_id bigint)' => q{SELECT * FROM compay.verify_payout(1)},
	'verify_tx(txid text)' => q{SELECT * FROM compay.verify_tx(repeat('a', 64))},
	'wallet_balance()' => q{SELECT * FROM compay.wallet_balance()},
	'wallet_transfers(max_rows integer)' => q{SELECT * FROM compay.wallet_transfers(10)},
	'shard_of(node_id text)' => q{SELECT compay.shard_of('req')},
	'clearing_totals()' => q{SELECT * FROM compay.clearing_totals()},
	'clearing_fetch(peer integer)' => q{SELECT * FROM compay.clearing_fetch(1)},
	'clearing_apply(from_shard integer, event_id bigint, event_type text, event_data text)' =>
	  q{SELECT compay.clearing_apply(1, 1, 'credit', '{}')},
	'clearing_finish(peer integer, batch_id bigint)' => q{SELECT compay.clearing_finish(1, 1)},
	'clearing_consume(INOUT applied integer)' => q{CALL compay.clearing_consume()},
	'clearing_consume_loop(IN pause interval, IN rounds integer)' =>
	  q{CALL compay.clearing_consume_loop('0', 1)},
);

# Writes: on the standby, SQLSTATE 25006.
my $x = q{'4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1'};
my %writes = (
	'add_node_role(role_name name, node_id text)' => q{SELECT compay.add_node_role('postgres', 'n')},
	'admin_deposit(node_id text, amount compay.credit, currency text, reason text, idempotency_key text)'
	  => q{SELECT compay.admin_deposit('n', '1'::compay.credit, 'XMR', 'r')},
	'admin_deposit(node_id text, amount numeric, currency text, reason text, idempotency_key text)'
	  => q{SELECT compay.admin_deposit('n', 1::numeric, 'XMR', 'r')},
	'adopt_deposit_address(node_id text, address_index integer)' =>
	  q{SELECT compay.adopt_deposit_address('n', 5)},
	'apply_credit_limit_policy(currency text)' => q{SELECT compay.apply_credit_limit_policy()},
	'assign_job(task_id text, provider text)' => q{SELECT compay.assign_job('job-x', 'gpu-c')},
	'capture(hold_id bigint, to_node text, amount compay.credit, final boolean, idempotency_key text)'
	  => q{SELECT compay.capture(1, 'gpu-c', '1'::compay.credit)},
	'capture(hold_id bigint, to_node text, amount numeric, final boolean, idempotency_key text)'
	  => q{SELECT compay.capture(1, 'gpu-c', 1::numeric)},
	'complete_job(task_id text, started_at timestamp with time zone, completed_at timestamp with time zone, gpu_utilization numeric)'
	  => q{SELECT compay.complete_job('task-open', now() - interval '1 minute', now())},
	'deposit(node_id text, amount compay.credit, currency text, reference text, idempotency_key text)'
	  => q{SELECT compay.deposit('req', '1'::compay.credit)},
	'deposit(node_id text, amount numeric, currency text, reference text, idempotency_key text)'
	  => q{SELECT compay.deposit('req', 1::numeric)},
	'deposit_address(node_id text)' => q{SELECT compay.deposit_address('req')},
	'dispute_payment(payment_id bigint, reason text)' => q{SELECT compay.dispute_payment(1, 'r')},
	'expire_holds()' => q{SELECT compay.expire_holds()},
	'expire_jobs()' => q{SELECT compay.expire_jobs()},
	'grant_barter(holder text, counterparty text, amount compay.credit, reference text, idempotency_key text)'
	  => q{SELECT compay.grant_barter('gpu-c', 'req', '1'::compay.credit)},
	'grant_barter(holder text, counterparty text, amount numeric, reference text, idempotency_key text)'
	  => q{SELECT compay.grant_barter('gpu-c', 'req', 1::numeric)},
	'open_account(node_id text, currency text, credit_limit compay.credit)' =>
	  q{SELECT compay.open_account('new-node', 'CREDIT', NULL::compay.credit)},
	'open_account(node_id text, currency text, credit_limit numeric)' =>
	  q{SELECT compay.open_account('new-node', 'CREDIT', 5::numeric)},
	'process_due_settlements(as_of timestamp with time zone)' =>
	  q{SELECT compay.process_due_settlements(now() + interval '1 year')},
	'process_task_payment(task_id text, method compay.payment_method)' =>
	  q{SELECT compay.process_task_payment('task-open', 'credit')},
	'record_usage(task_id text, node_id text, sample_id text, sampled_at timestamp with time zone, metrics compay.resource_metrics)'
	  => q{SELECT compay.record_usage('task-open', 'gpu-c', 's9', now(), compay.metrics(cpu_seconds => 1))},
	'refund(transfer_id bigint, amount compay.credit, reason text, idempotency_key text)' =>
	  q{SELECT compay.refund(2, '1'::compay.credit)},
	'refund(transfer_id bigint, amount numeric, reason text, idempotency_key text)' =>
	  q{SELECT compay.refund(2, 1::numeric)},
	'release(hold_id bigint, idempotency_key text)' => q{SELECT compay.release(1)},
	'remove_node_role(role_name name, node_id text)' =>
	  q{SELECT compay.remove_node_role('postgres', 'n')},
	'request_payout(node_id text, amount compay.credit, idempotency_key text)' =>
	  q{SELECT compay.request_payout('gpu-t', NULL::compay.credit)},
	'request_payout(node_id text, amount numeric, idempotency_key text)' =>
	  q{SELECT compay.request_payout('gpu-t', NULL::numeric)},
	'reserve(node_id text, amount compay.credit, reference text, timeout interval, idempotency_key text, currency text)'
	  => q{SELECT compay.reserve('req', '1'::compay.credit)},
	'reserve(node_id text, amount numeric, reference text, timeout interval, idempotency_key text, currency text)'
	  => q{SELECT compay.reserve('req', 1::numeric)},
	'resolve_dispute(payment_id bigint, refund_amount compay.credit)' =>
	  q{SELECT compay.resolve_dispute(1, '0'::compay.credit)},
	'resolve_dispute(payment_id bigint, refund_amount numeric)' =>
	  q{SELECT compay.resolve_dispute(1, 0::numeric)},
	'retry_settlement(settlement_id bigint)' => q{SELECT compay.retry_settlement(1)},
	'run_settlement(period compay.settlement_period, as_of timestamp with time zone)' =>
	  q{SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '1 year')},
	'set_credit_limit(node_id text, credit_limit compay.credit, currency text)' =>
	  q{SELECT compay.set_credit_limit('req', '10'::compay.credit)},
	'set_credit_limit(node_id text, credit_limit numeric, currency text)' =>
	  q{SELECT compay.set_credit_limit('req', 10::numeric)},
	'set_node_region(node_id text, region text)' => q{SELECT compay.set_node_region('gpu-c', 'eu')},
	'add_payout_address(node_id text, address text, purpose compay.address_purpose, job_type text)' =>
	  qq{SELECT compay.add_payout_address('gpu-c', $x)},
	'remove_payout_address(node_id text, address text, purpose compay.address_purpose, job_type text)' =>
	  qq{SELECT compay.remove_payout_address('gpu-c', $x)},
	'emit_event(kind text, payload jsonb)' =>
	  q{SELECT compay.emit_event('test.standby', '{}')},
	'publish_events(max_events integer)' => q{SELECT compay.publish_events()},
	'request_deposit(node_id text, amount compay.credit, expires_in interval, confirmations integer, idempotency_key text)'
	  => q{SELECT * FROM compay.request_deposit('gpu-t', '0.1'::compay.credit)},
	'request_deposit(node_id text, amount numeric, expires_in interval, confirmations integer, idempotency_key text)'
	  => q{SELECT * FROM compay.request_deposit('gpu-t', 0.1::numeric)},
	'submit_job_funded_by_deposit(task_id text, requester text, task_type text, max_amount compay.credit, timeout interval, expires_in interval, confirmations integer)'
	  => q{SELECT * FROM compay.submit_job_funded_by_deposit('job-d', 'req', 'render', '0.1'::compay.credit)},
	'submit_job_funded_by_deposit(task_id text, requester text, task_type text, max_amount numeric, timeout interval, expires_in interval, confirmations integer)'
	  => q{SELECT * FROM compay.submit_job_funded_by_deposit('job-d', 'req', 'render', 0.1::numeric)},
	'record_usage_batch(task_ids text[], node_id text, sample_ids text[], sampled_at timestamp with time zone[], metrics compay.resource_metrics[])'
	  => q{SELECT compay.record_usage_batch(ARRAY['job-c'], 'gpu-c', ARRAY['s9'], ARRAY[now()], ARRAY[compay.metrics(cpu_seconds => 1)])},
	'reconcile_wallet()' => q{SELECT * FROM compay.reconcile_wallet()},
	'request_withdrawal(node_id text, amount compay.credit, idempotency_key text)' =>
	  q{SELECT compay.request_withdrawal('gpu-t', '1'::compay.credit, 'sr-wd-1')},
	'request_withdrawal(node_id text, amount numeric, idempotency_key text)' =>
	  q{SELECT compay.request_withdrawal('gpu-t', 1::numeric, 'sr-wd-2')},
	'set_payout_rotation(node_id text, rotate boolean)' =>
	  q{SELECT compay.set_payout_rotation('gpu-c', true)},
	'set_payout_address(node_id text, address text, purpose compay.address_purpose)' =>
	  qq{SELECT compay.set_payout_address('gpu-c', $x)},
	'set_payout_policy(node_id text, auto_payout boolean, min_payout compay.credit, payout_interval interval, max_per_day compay.credit)'
	  => q{SELECT compay.set_payout_policy('gpu-c', true, '1'::compay.credit, NULL, NULL::compay.credit)},
	'set_payout_policy(node_id text, auto_payout boolean, min_payout numeric, payout_interval interval, max_per_day numeric)'
	  => q{SELECT compay.set_payout_policy('gpu-c', true, 1::numeric, NULL, NULL::numeric)},
	'stake(node_id text, amount compay.credit, currency text, idempotency_key text)' =>
	  q{SELECT compay.stake('req', '1'::compay.credit)},
	'stake(node_id text, amount numeric, currency text, idempotency_key text)' =>
	  q{SELECT compay.stake('req', 1::numeric)},
	'submit_job(task_id text, requester text, task_type text, max_amount compay.credit, timeout interval)'
	  => q{SELECT compay.submit_job('job-x', 'req', 'render', '10'::compay.credit)},
	'submit_job(task_id text, requester text, task_type text, max_amount numeric, timeout interval)'
	  => q{SELECT compay.submit_job('job-x', 'req', 'render', 10::numeric)},
	'submit_task(task_id text, requester text, provider text, task_type text)' =>
	  q{SELECT compay.submit_task('task-x', 'req', 'gpu-c', 'render')},
	'transfer(from_node text, to_node text, amount compay.credit, reference text, idempotency_key text, currency text)'
	  => q{SELECT compay.transfer('req', 'gpu-c', '1'::compay.credit)},
	'transfer(from_node text, to_node text, amount numeric, reference text, idempotency_key text, currency text)'
	  => q{SELECT compay.transfer('req', 'gpu-c', 1::numeric)},
	'transfer_batch(from_nodes text[], to_nodes text[], amounts compay.credit[], "references" text[], idempotency_keys text[], currency text)'
	  => q{SELECT * FROM compay.transfer_batch(ARRAY['req'], ARRAY['gpu-c'], ARRAY['1']::compay.credit[])},
	'unstake(node_id text, amount compay.credit, currency text, idempotency_key text)' =>
	  q{SELECT compay.unstake('req', '1'::compay.credit)},
	'unstake(node_id text, amount numeric, currency text, idempotency_key text)' =>
	  q{SELECT compay.unstake('req', 1::numeric)},
	'verify_job(task_id text, verifier text, passed boolean, quality_factor numeric)' =>
	  q{SELECT compay.verify_job('job-c', 'gpu-v3', true)},
);

# Every public function is in one list, and every entry is in the catalog.
my $catalog = $f->psql_primary(q{
SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_proc p
WHERE p.pronamespace = 'compay'::regnamespace AND p.provolatile <> 'i'
  AND p.prorettype <> 'trigger'::regtype
  AND (has_function_privilege('compay_admin', p.oid, 'EXECUTE')
       OR has_function_privilege('compay_node', p.oid, 'EXECUTE'))
ORDER BY 1});
# OUT arguments name no overload: left out of the names (INOUT ones stay).
my %catalog = map { s/(?:, )?(?<!IN)OUT [^,)]+//gr =~ s/\(, /(/r => 1 } split /\n/, $catalog;
my @unlisted = grep { !exists $reads{$_} && !exists $writes{$_} } sort keys %catalog;
my @stale = grep { !$catalog{$_} } sort(keys %reads, keys %writes);
is_deeply(\@unlisted, [], 'every public compay function is a read or a write of this test');
is_deeply(\@stale, [], 'every function of this test is in the catalog');
cmp_ok(scalar keys %catalog, '>=', 80, 'the catalog lists the public functions');

# The standby has replayed everything the primary wrote.
my $lsn = $f->psql_primary('SELECT pg_current_wal_lsn()');
my $standby = $f->secondary;
my $primary = $f->primary;
for (1 .. 240)
{
	last if $f->psql($standby, "SELECT pg_last_wal_replay_lsn() >= '$lsn'") eq 't';
	select undef, undef, undef, 0.25;
}
is($f->psql($standby, 'SELECT pg_is_in_recovery()'), 't', "$standby->{name} is a hot standby");

my $answered = 0;
for my $sig (sort grep { defined $reads{$_} } keys %reads)
{
	my ($rc, $out, $err) = $f->try_psql($standby, $reads{$sig});
	my $want = $f->psql($primary, $reads{$sig});
	$answered++ if $want ne '' && $want !~ /^(0|f)?$/;
	ok($rc == 0, "$sig answers on the standby") or diag $err;
	is($out, $want, "$sig: the standby's result is the primary's");
}
# Real data: all but check_price (void) and a few zeros have rows to compare.
cmp_ok($answered, '>=', 20, "$answered reads compared non-empty results");
for my $sig (sort keys %local_reads)
{
	my ($rc, $out, $err) = $f->try_psql($standby, $local_reads{$sig});
	is("$rc $out", '0 t', "$sig answers on the standby") or diag $err;
}

# Without a wallet: the wallet's reads fail the same way on both nodes
# (its error, not a read-only error or a crash).
for my $sig (sort keys %wallet_reads)
{
	my $code_s = $f->sqlstate($standby, $wallet_reads{$sig});
	my $code_p = $f->sqlstate($primary, $wallet_reads{$sig});
	is($code_s, $code_p, "$sig: the same outcome on the standby as on the primary ($code_p)");
	isnt($code_s, '25006', "$sig: no read-only error on the standby");
}

for my $sig (sort keys %writes)
{
	is($f->sqlstate($standby, $writes{$sig}), '25006', "$sig: read-only error on the standby");
}
is($f->psql($standby, 'SELECT 1'), '1', 'the standby still serves after every refused write');
is($f->psql($standby, 'SELECT count(*) FILTER (WHERE NOT ok) FROM compay.verify_ledger()'), '0',
	'verify_ledger: all ok on the standby after the refused writes');
is($f->psql($primary, 'SELECT count(*) FILTER (WHERE NOT ok) FROM compay.verify_ledger()'), '0',
	'verify_ledger: all ok on the primary');

$f->down;
done_testing();
