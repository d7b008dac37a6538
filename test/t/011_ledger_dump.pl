# pg_dump -Fc and pg_restore keep a whole ledger: accounts, journal (with
# its hash chains), holds (pending, posted, voided), transfers (deposits,
# transfers, a batch, captures, refunds, barter), barter credits and
# idempotency keys come back row for row, and so do the events, published
# and queued (a restore emits none of its own), verify_ledger() is all ok in the
# restored database, the sequences continue past every restored id, and
# the restored ledger keeps working: a new transfer, an idempotent retry
# answered from the restored key, the pending hold captured.
#
# Run: PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl
#      PATH=/usr/lib/postgresql/15/bin:$PATH
#      PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
#      prove test/t/011_ledger_dump.pl   (as a non-root user)

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION compay');

# A ledger with a bit of everything.  Each statement is its own transaction
# (psql autocommit), so rows carry different timestamps.
$node->safe_psql(
	'src', q{
SET search_path = public, compay;
SELECT compay.open_account('alice', 'CREDIT', '0');
SELECT compay.open_account('bob', 'CREDIT', '0');
SELECT compay.open_account('carol', 'CREDIT', '50');
SELECT compay.open_account('dave');                          -- default limit
SELECT compay.deposit('alice', '1000', 'CREDIT', 'seed alice', 'dep-alice');
SELECT compay.deposit('bob', '250.5', 'CREDIT', 'seed bob');
SELECT compay.deposit('carol', '0.000000000001', 'CREDIT', 'one atomic unit');
SELECT compay.admin_deposit('alice', '2.5', 'XMR', 'xmr deposit');
SELECT compay.transfer('alice', 'bob', '100', 'order 1', 'tr-1');
SELECT compay.transfer('bob', 'carol', '33.333333333333', 'order 2');
SELECT compay.transfer('alice', 'bob', '0.5', NULL, NULL, 'XMR');
SELECT * FROM compay.transfer_batch(ARRAY['alice', 'bob', 'carol'],
                                    ARRAY['bob', 'carol', 'alice'],
                                    ARRAY['10', '5', '1']::credit[],
                                    ARRAY['b1', 'b2', 'b3'],
                                    ARRAY['batch-1', 'batch-2', NULL]);
-- Holds: one pending (with a timeout and a key), one posted in full, one
-- captured in part and still pending, one voided.
SELECT compay.reserve('alice', '40', 'pending hold', '1 hour', 'hold-pending');
SELECT compay.reserve('alice', '25', 'posted hold');
SELECT compay.capture(currval('compay.holds_id_seq'), 'dave', NULL, true, 'cap-1');
SELECT compay.reserve('bob', '30', 'partial hold');
SELECT compay.capture(currval('compay.holds_id_seq'), 'carol', '12', false);
SELECT compay.reserve('bob', '7', 'voided hold');
SELECT compay.release(currval('compay.holds_id_seq'), 'rel-1');
-- Refunds: part of a transfer (with a key), and part of the capture.
SELECT compay.refund(t.id, '20', 'partly wrong', 'refund-1')
  FROM compay.transfers t WHERE t.idempotency_key = 'tr-1';
SELECT compay.refund(t.id, '5', 'capture too big')
  FROM compay.transfers t WHERE t.idempotency_key = 'cap-1';
-- Barter: carol holds 15 of barter credit with dave, spends 6 of it.
SELECT compay.grant_barter('carol', 'dave', '15', 'barter deal', 'barter-1');
SELECT compay.transfer('carol', 'dave', '6', 'paid in barter');
-- A job type of our own beside the four the extension ships.
INSERT INTO compay.job_types (job_type, base_rate, quality_multiplier) VALUES ('Inference', '0.0003', 0.9);
-- Paid payments of three requesters over five days: their daily volume
-- counts are not dumped, the payments' triggers make them again.
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                             completed_at)
SELECT 'dump-' || g, 'req' || (g % 3), 'prov', '1', 'CREDIT', 'credit',
       (CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END)::compay.payment_status,
       now() - g * interval '1 hour'
FROM generate_series(1, 120) g;
-- Their events (payment.completed): 50 published, the rest still queued.
SELECT compay.publish_events(50);
-- A settlement run takes the closed hours (a window of completion times;
-- the payments are not written), then a payment arrives late in a window
-- already taken: it is an exception, for the next run.
SELECT count(*) FROM compay.run_settlement('hourly');
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                             completed_at)
VALUES ('dump-late', 'req0', 'prov', '1', 'CREDIT', 'credit', 'completed', now() - interval '3 hours');
});

my @tables = qw(accounts journal holds transfers barter_credits idempotency_keys payments
  requester_volume events event_queue settlement_runs settlements settlement_exceptions);
my @sequences = qw(accounts_id_seq transfers_id_seq holds_id_seq events_id_seq event_queue_id_seq);

# Count and md5 of the rows of a table in their text form, sorted.
sub table_digest
{
	my ($db, $table) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '-')"
		  . " FROM compay.$table x");
}

sub ledger_ok
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT CASE WHEN bool_and(ok) THEN 'all ' || count(*) || ' ok'
		          ELSE string_agg(check_name, ', ') FILTER (WHERE NOT ok) END
		  FROM compay.verify_ledger()});
}

# The source is sane and has what this test means to dump.
is(ledger_ok('src'), 'all 21 ok', 'source ledger verifies');
# This cluster does not preload compay: everything works without the
# worker, whose status says it is not loaded.
is($node->safe_psql('src', q{SELECT state FROM compay.worker_status}),
	'not loaded', 'without shared_preload_libraries the worker is not loaded');
is($node->safe_psql('src', q{SELECT string_agg(status || ':' || n, ',' ORDER BY status)
	FROM (SELECT status::text, count(*) n FROM compay.holds GROUP BY 1) s}),
	'pending:2,posted:1,voided:1', 'source has pending, posted and voided holds');
is($node->safe_psql('src', q{SELECT string_agg(kind || ':' || n, ',' ORDER BY kind)
	FROM (SELECT kind::text, count(*) n FROM compay.transfers GROUP BY 1) s}),
	'barter:1,capture:2,deposit:4,refund:2,transfer:7',
	'source has every kind of transfer');
is($node->safe_psql('src', q{SELECT count(*) FROM compay.transfers WHERE barter_amount::numeric > 0
	AND kind = 'transfer'}), '1', 'source has a transfer paid in barter');
is($node->safe_psql('src', q{SELECT amount FROM compay.barter_credits}), '9',
	'source has 9 barter credits left');
is($node->safe_psql('src', q{SELECT count(*) FROM compay.idempotency_keys}), '9',
	'source has idempotency keys');
is($node->safe_psql('src', q{SELECT (SELECT count(*) FROM compay.events) || '/' || count(*) FROM compay.event_queue}),
	'50/59', 'source has published and queued events');

my %src;
$src{$_} = table_digest('src', $_) for @tables;
$src{$_} = $node->safe_psql('src', "SELECT last_value || ' ' || is_called FROM compay.$_")
  for @sequences;
note("$_: $src{$_}") for (@tables, @sequences);

# Dump, restore into a new database.
my $dump = PostgreSQL::Test::Utils::tempdir() . '/src.dump';
$node->command_ok(
	[ 'pg_dump', '-Fc', '-h', $node->host, '-p', $node->port, '-f', $dump, 'src' ],
	'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
my ($restore_out, $restore_err) = ('', '');
my $restored = IPC::Run::run(
	[ 'pg_restore', '--exit-on-error', '-h', $node->host, '-p', $node->port, '-d', 'dst', $dump ],
	'>', \$restore_out, '2>', \$restore_err);
ok($restored, 'pg_restore into a new database');
is($restore_err, '', 'pg_restore printed no error or warning');

# Same rows, same sequences.
for my $t (@tables)
{
	is(table_digest('dst', $t), $src{$t}, "compay.$t restored row for row");
}
for my $s (@sequences)
{
	is($node->safe_psql('dst', "SELECT last_value || ' ' || is_called FROM compay.$s"),
		$src{$s}, "compay.$s restored");
}
is(ledger_ok('dst'), 'all 21 ok', 'restored ledger verifies');

# Restored in another order (as pg_restore -j or a data-only reload may):
# the settlement runs before the payments.  A restored payment is never
# late: the exceptions come back as they were, and no payment a restored
# run counted is settled again.
{
	$node->safe_psql('postgres', 'CREATE DATABASE dst2');
	my $list = PostgreSQL::Test::Utils::tempdir() . '/reordered.list';
	my ($toc, $toc_err) = ('', '');
	IPC::Run::run([ 'pg_restore', '-l', $dump ], '>', \$toc, '2>', \$toc_err)
	  or die "pg_restore -l: $toc_err";
	my @lines = split /\n/, $toc;
	my @payments = grep { /TABLE DATA compay payments / } @lines;
	is(scalar @payments, 1, 'the dump lists the payments data once');
	open my $fh, '>', $list or die $!;
	print $fh join("\n", (grep { !/TABLE DATA compay payments / } @lines), @payments), "\n";
	close $fh;
	my ($o, $e) = ('', '');
	ok(IPC::Run::run([ 'pg_restore', '--exit-on-error', '-L', $list, '-h', $node->host,
			'-p', $node->port, '-d', 'dst2', $dump ], '>', \$o, '2>', \$e),
		'pg_restore with the payments restored last');
	is($e, '', '... printed no error or warning');
	for my $t (qw(payments settlement_runs settlements settlement_exceptions))
	{
		is(table_digest('dst2', $t), $src{$t}, "payments last: compay.$t restored row for row");
	}
	is(ledger_ok('dst2'), 'all 21 ok', 'payments last: the restored ledger verifies');
	my $settled = q{SELECT count(*) || ' ' || sum(total_amount::numeric) FROM compay.settlements};
	my ($n, $total) = split / /, $node->safe_psql('dst2', $settled);
	$node->safe_psql('dst2', q{SELECT count(*) FROM compay.run_settlement('hourly')});
	is($node->safe_psql('dst2', $settled), ($n + 1) . ' ' . ($total + 1),
		'payments last: the next run settles the late payment alone (one more settlement, of 1)');
	is($node->safe_psql('dst2', q{SELECT count(*) FROM compay.payments p
		WHERE p.status = 'completed' AND compay.payment_settlement(p) IS NULL}), '0',
		'payments last: every completed payment is settled');
	is(ledger_ok('dst2'), 'all 21 ok', 'payments last: the ledger verifies after the run');
}
is($node->safe_psql('dst', q{SELECT count(*) || ' ' || count(*) FILTER (WHERE builtin) FROM compay.job_types}),
	'5 4', 'job types: the four shipped ones once, and ours');
# updated_at of the shipped rows is the time CREATE EXTENSION ran, so it differs.
my $job_types = q{SELECT string_agg(concat_ws('|', job_type, currency, base_rate, quality_multiplier, builtin),
	',' ORDER BY job_type) FROM compay.job_types};
is($node->safe_psql('dst', $job_types), $node->safe_psql('src', $job_types),
	'job types restored with their rates');
is($node->safe_psql('dst', q{SELECT compay.compute_reward('Inference', '2 hours', 1.0)}),
	'0.00054', 'our job type computes rewards after the restore');

# The restored ledger works.  Sequences go on past every restored id.
my ($old_transfer, $old_hold, $old_account) = split /\|/, $node->safe_psql('dst',
	q{SELECT (SELECT max(id) FROM compay.transfers), (SELECT max(id) FROM compay.holds),
	         (SELECT max(id) FROM compay.accounts)});
my $new_transfer = $node->safe_psql('dst',
	q{SET search_path = public, compay; SELECT compay.transfer('bob', 'erin', '1', 'after restore')});
ok($new_transfer > $old_transfer,
	"a new transfer gets a new id ($new_transfer > $old_transfer)");
ok($node->safe_psql('dst', q{SELECT id FROM compay.accounts WHERE node_id = 'erin'}) > $old_account,
	'a new account gets a new id');
my $new_hold = $node->safe_psql('dst',
	q{SET search_path = public, compay; SELECT compay.reserve('bob', '1')});
ok($new_hold > $old_hold, "a new hold gets a new id ($new_hold > $old_hold)");

# Idempotency keys survive: a retry is answered from the restored key, and
# the key with other arguments is refused.
is($node->safe_psql('dst',
		q{SET search_path = public, compay;
		  SELECT compay.transfer('alice', 'bob', '100', 'order 1', 'tr-1')
		         = (SELECT id FROM compay.transfers WHERE idempotency_key = 'tr-1')}),
	't', 'a retried transfer returns the restored transfer');
is($node->safe_psql('dst', q{SELECT count(*) FROM compay.transfers WHERE idempotency_key = 'tr-1'}),
	'1', '... and moves no money again');
my ($ret, $out, $err) = $node->psql('dst',
	q{SET search_path = public, compay; SELECT compay.transfer('alice', 'bob', '101', 'order 1', 'tr-1')});
like($err, qr/idempotency key "tr-1" was already used for a different request/,
	'the restored key refuses other arguments');

# The pending hold restored can be captured; the voided one cannot.
is($node->safe_psql('dst',
		q{SET search_path = public, compay;
		  SELECT compay.capture(id, 'bob') > 0 FROM compay.holds WHERE idempotency_key = 'hold-pending'}),
	't', 'the restored pending hold is captured');
($ret, $out, $err) = $node->psql('dst',
	q{SET search_path = public, compay;
	  SELECT compay.capture(id, 'carol') FROM compay.holds WHERE reference = 'voided hold'});
like($err, qr/cannot capture hold \d+: it is voided/, 'the restored voided hold stays voided');
# Barter credits restored: dave's side of carol's credit can still be spent.
my $barter_transfer = $node->safe_psql('dst',
	q{SET search_path = public, compay; SELECT compay.transfer('carol', 'dave', '4')});
is($node->safe_psql('dst',
		qq{SET search_path = public, compay;
		   SELECT barter_amount || ' ' || compay.barter_balance('carol', 'dave')
		   FROM compay.transfers WHERE id = $barter_transfer}),
	'4 5', 'the restored barter credits are spent');
is(ledger_ok('dst'), 'all 21 ok', 'restored ledger verifies after new work');

# The source was not touched by any of this.
for my $t (@tables)
{
	is(table_digest('src', $t), $src{$t}, "source compay.$t unchanged");
}

$node->stop;
done_testing();
