# ALTER EXTENSION compay UPDATE from the released 0.1 gives exactly what a
# fresh install of the current version gives, and keeps every row:
#
# 1. A 0.1 database is filled through the 0.1 API (accounts, deposits in
#    CREDIT and XMR, transfers, holds in every state, refunds, barter, jobs
#    with escrow verified and paid, a failed job, a task paid without
#    escrow, disputes (one of a settled XMR payment), stakes, usage samples, settlements, a queued
#    payout, a deposit address and a credited XMR deposit).
# 2. It is updated; its extension objects, read from the catalogs by
#    test/lib/catalog.sql (functions with their full definitions and
#    privileges, columns, constraints, indexes, views, triggers, types and
#    enum labels, operators, casts, membership, config_dump registrations),
#    equal a fresh install's.  pg_dump skips extension members, so it
#    cannot show this.
# 3. Every row is still there, verify_ledger() is all ok, and the updated
#    database keeps working (a transfer, a settlement run).
# 4. The whole regression suite (sql/, expected/; the security tests
#    included) passes on databases created as 0.1 and updated, each test in
#    a copy of its own; the security tests also on a copy of the populated
#    database of step 1.
#
# Run from the repository (or the staged copy) with the environment
# test/suites.sh sets: PERL5LIB, PATH, PG_REGRESS, TESTDIR.

use strict;
use warnings;

use File::Temp qw(tempdir);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'compay'\n"
	  . "compay.worker_enabled = off\n");
$node->start;

my $version = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'compay'});
isnt($version, '0.1', "the default version ($version) is not 0.1");

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('old', q{CREATE EXTENSION compay VERSION '0.1'});
is($node->safe_psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'compay'}),
	'0.1', 'the released 0.1 script installs');

# 1. Fill every table through the 0.1 API, one statement a transaction.
my $payee_address = '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1';
my $deposit_address = '87uLzB6ynrvKyBeU5FLigJDdfYCMN9YueeFZH3S6XWhqTAD84p1CYZwHTQribxUCAvGParmc6hZPNEzfDMve9k5DESF2ucw';
$node->safe_psql(
	'old', qq{
SELECT compay.open_account('alice', 'CREDIT', '0');
SELECT compay.open_account('bob', 'CREDIT', '0');
SELECT compay.deposit('alice', '1000', 'CREDIT', 'seed', 'dep-alice');
SELECT compay.deposit('req', '100', 'CREDIT');
-- An account of a node id 0.1 accepted and 0.2 refuses (white space at the
-- end), written directly: the current library refuses it in every call.
INSERT INTO compay.accounts (node_id, currency) VALUES ('edge ', 'CREDIT');
-- XMR on credit: the current library refuses 0.1's compay.deposit() in
-- XMR (only the wallet's deposits and admin_deposit() credit XMR).
SELECT compay.open_account('req', 'XMR', '5');
SELECT compay.transfer('alice', 'bob', '100', 'order 1', 'tr-1');
SELECT * FROM compay.transfer_batch(ARRAY['alice', 'bob'], ARRAY['bob', 'alice'],
                                    ARRAY['10', '5']::compay.credit[]);
SELECT compay.reserve('alice', '40', 'pending hold', '1 hour', 'hold-pending');
SELECT compay.reserve('alice', '25', 'posted hold');
SELECT compay.capture(currval('compay.holds_id_seq'), 'bob', NULL, true, 'cap-1');
SELECT compay.reserve('bob', '7', 'voided hold');
SELECT compay.release(currval('compay.holds_id_seq'));
SELECT compay.refund(t.id, '20', 'partly wrong', 'refund-1')
  FROM compay.transfers t WHERE t.idempotency_key = 'tr-1';
SELECT compay.grant_barter('alice', 'bob', '15', 'barter deal');
-- A payer's account is never opened on first use: prov stakes from its own.
SELECT compay.open_account('prov');
SELECT compay.stake('prov', '1', 'CREDIT');
-- A job with escrow, metered, verified by a quorum and paid.
SELECT compay.submit_job('job-1', 'req', 'render', '10', '1 day');
SELECT compay.assign_job('job-1', 'prov');
SELECT compay.record_usage('job-1', 'prov', 's1', now(),
    ROW(3600, 0, 0, 0, 0, 600, NULL)::compay.resource_metrics);
SELECT compay.complete_job('job-1', now() - interval '1 hour', now());
SELECT compay.verify_job('job-1', 'ver-1', true, 1.0);
SELECT compay.verify_job('job-1', 'ver-2', true, 1.1);
-- A job that fails verification.
SELECT compay.submit_job('job-2', 'req', 'render', '5', '1 day');
SELECT compay.assign_job('job-2', 'prov');
SELECT compay.complete_job('job-2', now() - interval '1 hour', now());
SELECT compay.verify_job('job-2', 'ver-1', false);
SELECT compay.verify_job('job-2', 'ver-2', false);
-- A task without escrow, paid, disputed and resolved.
SELECT compay.submit_task('task-1', 'req', 'prov', 'render');
SELECT compay.complete_job('task-1', now() - interval '1 hour', now());
SELECT (compay.process_task_payment('task-1')).status;
SELECT (compay.dispute_payment(p.id, 'too slow')).status FROM compay.payments p WHERE task_id = 'task-1';
SELECT (compay.resolve_dispute(p.id, '0')).status FROM compay.payments p WHERE task_id = 'task-1';
-- An XMR job: settled, earmarked and queued for payout.
SELECT compay.submit_job('job-x', 'req', 'Basic Training', '0.5', '1 day');
SELECT compay.assign_job('job-x', 'prov');
SELECT compay.complete_job('job-x', now() - interval '2 hours', now());
SELECT compay.verify_job('job-x', 'ver-1', true);
SELECT compay.verify_job('job-x', 'ver-2', true);
SELECT compay.set_payout_address('prov', '$payee_address');
SELECT compay.set_payout_policy('prov', true, '0', '1 second', '100');
SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '2 hours');
SELECT compay.queue_payouts();
-- A second XMR job, settled (not queued), then disputed: 0.1 would pay it
-- out; the update holds it back.
SELECT compay.submit_job('job-y', 'req', 'Basic Training', '0.25', '1 day');
SELECT compay.assign_job('job-y', 'prov');
SELECT compay.complete_job('job-y', now() - interval '2 hours', now());
SELECT compay.verify_job('job-y', 'ver-1', true);
SELECT compay.verify_job('job-y', 'ver-2', true);
SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '2 hours');
SELECT (compay.dispute_payment(p.id, 'wrong model')).status FROM compay.payments p WHERE task_id = 'job-y';
-- A deposit address, written directly (the wallet makes it), and a
-- credited deposit as 0.1's record_deposits() left it: an XMR deposit with
-- reference xmr:<tx hash> and its row.  0.1 credited through
-- compay.deposit(), which the current library refuses in XMR, so the credit
-- is made by the library's wallet path under a temporary name.
INSERT INTO compay.deposit_addresses (node_id, address, address_index) VALUES ('dep', '$deposit_address', 1);
CREATE FUNCTION pg_temp.deposit_from_wallet(text, compay.credit, text, text, text) RETURNS bigint
    AS '\$libdir/compay', 'compay_deposit_from_wallet' LANGUAGE C;
INSERT INTO compay.xmr_deposits (tx_hash, global_index, address_index, node_id, amount, block_height, transfer_id)
    VALUES (repeat('aa', 32), 7, 1, 'dep', '2', 10,
            pg_temp.deposit_from_wallet('dep', '2', 'XMR', 'xmr:' || repeat('aa', 32), NULL));
});

my @tables = qw(accounts transfers journal holds barter_credits idempotency_keys jobs
  verifications usage_samples stakes payments requester_volume settlements payout_addresses
  payout_policies payout_transactions payout_items deposit_addresses xmr_deposits job_types);
# A table's rows, fingerprinted over the columns 0.1 gave it (0.2 may add
# columns): md5 of the sorted rows, and their count.  accounts.journal_seq
# and journal_hash are dropped by 0.2 (the chain head is the newest journal
# entry's seq and hash): they are left out, after a check that they held
# exactly that.
my %columns;
my %dropped = (accounts => q{'journal_seq', 'journal_hash'});
sub fingerprint
{
	my ($t) = @_;
	return $node->safe_psql('old',
		"SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) || ' ' || count(*) "
		  . "FROM (SELECT ROW($columns{$t}) AS r FROM compay.$t) s");
}
my %before;
for my $t (@tables)
{
	$columns{$t} = $node->safe_psql('old',
		"SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
		  . "WHERE attrelid = 'compay.$t'::regclass AND attnum > 0 AND NOT attisdropped "
		  . "AND attname NOT IN (" . ($dropped{$t} // "''") . ")");
	$before{$t} = fingerprint($t);
}
for my $t (qw(accounts transfers jobs payments settlements payout_transactions xmr_deposits))
{
	my ($n) = $before{$t} =~ / (\d+)$/;
	cmp_ok($n, '>', 0, "0.1 database: compay.$t has rows ($n)");
}
is($node->safe_psql('old', 'SELECT bool_and(ok) FROM compay.verify_ledger()'), 't',
	'0.1 database: verify_ledger() all ok');
is( $node->safe_psql(
		'old', q{SELECT count(*) FILTER (WHERE a.journal_hash IS DISTINCT FROM
                       coalesce(j.hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                       OR a.journal_seq <> coalesce(j.seq, 0))
                 || '/' || count(*)
          FROM compay.accounts a
          LEFT JOIN LATERAL (SELECT e.seq, e.hash FROM compay.journal e WHERE e.account_id = a.id
                             ORDER BY e.seq DESC LIMIT 1) j ON true}),
	'0/' . ($before{accounts} =~ / (\d+)$/)[0],
	'0.1 database: every account\'s journal_seq and journal_hash are its newest entry\'s, which 0.2 reads from the journal');
cmp_ok($node->safe_psql('old', q{SELECT count(*) FROM compay.accounts WHERE journal_seq > 0}), '>', 0,
	'0.1 database: accounts with journal entries exist');

# 2. Update, and compare with a fresh install.
my ($update_out, $update_err);
$node->psql('old', 'ALTER EXTENSION compay UPDATE', stdout => \$update_out, stderr => \$update_err,
	on_error_die => 1);
like($update_err, qr/WARNING:  the XMR account of node "req" keeps its credit limit 5/,
	'the update warns of an XMR credit limit kept from 0.1');
like($update_err, qr/WARNING:  node id "edge " breaks the node id rule of 0.2/,
	'the update warns of a node id the node id rule now refuses');

is($node->safe_psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'compay'}),
	$version, "ALTER EXTENSION compay UPDATE reaches $version");
$node->safe_psql('fresh', 'CREATE EXTENSION compay');

my $catalog_sql = slurp_file('test/lib/catalog.sql');
my $updated = $node->safe_psql('old', $catalog_sql);
my $fresh = $node->safe_psql('fresh', $catalog_sql);
my @lines = split /\n/, $fresh;
cmp_ok(scalar(@lines), '>', 1000, 'the catalog listing of a fresh install has ' . scalar(@lines) . ' lines');
if ($updated eq $fresh)
{
	pass('the updated database\'s extension objects equal a fresh install\'s');
}
else
{
	my $dir = tempdir(CLEANUP => 1);
	open my $fh, '>', "$dir/updated" or die $!;
	print $fh "$updated\n";
	close $fh;
	open $fh, '>', "$dir/fresh" or die $!;
	print $fh "$fresh\n";
	close $fh;
	my $diff = `diff -u $dir/fresh $dir/updated`;
	diag("catalog differences (- fresh install, + updated):\n" . substr($diff, 0, 20000));
	fail('the updated database\'s extension objects equal a fresh install\'s');
}

# 3. Every row kept, the ledger intact, and the API working.
for my $t (@tables)
{
	is(fingerprint($t), $before{$t}, "compay.$t: every row kept");
}
# What 0.2 keeps that 0.1 did not, filled in by the update.
is($node->safe_psql('old',
		q{SELECT count(*) FROM compay.jobs WHERE timeout IS DISTINCT FROM timeout_at - created_at}),
	'0', 'every 0.1 job has its timeout (timeout_at - created_at)');
is($node->safe_psql('old', q{
	SELECT count(*) FROM compay.jobs j
	LEFT JOIN compay.usage_totals t ON t.job_id = j.id
	WHERE EXISTS (SELECT 1 FROM compay.usage_samples s WHERE s.job_id = j.id)
	  AND (t.job_id IS NULL
	       OR ROW(t.cpu_seconds, t.memory_byte_hours, t.storage_byte_hours, t.network_bytes_in,
	              t.network_bytes_out, t.gpu_seconds, t.custom)
	          IS DISTINCT FROM (SELECT ROW(m.cpu_seconds, m.memory_byte_hours, m.storage_byte_hours,
	                                       m.network_bytes_in::numeric, m.network_bytes_out::numeric, m.gpu_seconds,
	                                       m.custom)
	                            FROM compay.task_metrics(j.task_id) m))}),
	'0', 'every 0.1 task with samples has its usage totals, equal to task_metrics()');
is($node->safe_psql('old', q{
	SELECT s.held_back OPERATOR(compay.=) p.amount AND p.amount OPERATOR(compay.>) '0' AND s.status = 'processing'
	FROM compay.payments p JOIN compay.settlements s ON s.id = compay.payment_settlement(p)
	WHERE p.task_id = 'job-y' AND p.status = 'disputed'}),
	't', 'a settled payment disputed in 0.1 is held back by its settlement after the update');
is($node->safe_psql('old', 'SELECT string_agg(check_name, \',\') FROM compay.verify_ledger() WHERE NOT ok'),
	'', 'updated database: verify_ledger() all ok');
# 0.1's payout items become payout parts (issue 13): one per settlement,
# its whole total; the queued payout leaves nothing payable twice.
is($node->safe_psql('old', q{
	SELECT (SELECT count(*) FROM compay.payout_items i, unnest(i.settlement_ids)) || ' '
	       || (SELECT count(*) FROM compay.payout_parts pp
	           JOIN compay.settlements s ON s.id = pp.settlement_id AND s.total_amount OPERATOR(compay.=) pp.amount) || ' '
	       || (SELECT count(*) FROM compay.payable_settlements(NULL))}),
	'1 1 0', '0.1 payout items carried over as payout parts, nothing payable twice');
# The remedy docs/operations.md gives for a node id the rule refuses:
# rename the account.
$node->safe_psql('old', q{UPDATE compay.accounts SET node_id = 'edge' WHERE node_id = 'edge '});
is($node->safe_psql('old', q{SELECT (SELECT balance::text FROM compay.balance('edge')) || ' ' ||
	(SELECT bool_and(ok)::text FROM compay.verify_ledger())}), '0 true',
	'the account renamed to a valid node id keeps its balance, verify_ledger() ok');
$node->safe_psql(
	'old', q{
SELECT compay.transfer('bob', 'alice', '1', 'after the update');
SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '3 hours');
});
is($node->safe_psql('old', 'SELECT count(*) FROM compay.verify_ledger() WHERE NOT ok'),
	'0', 'updated database: a transfer and a settlement run after the update, verify_ledger() all ok');

# Issue 17: the 0.1 system account rows are stripe 0 of the striped system
# accounts.  A deposit while another transaction holds $external's row
# takes a new stripe row instead of waiting; $external's balance (the sum
# of its rows) is exact, and verify_ledger() proves every row.
my $external01 = $node->safe_psql('old',
	q{SELECT balance::numeric FROM compay.accounts WHERE node_id = '$external' AND currency = 'CREDIT'});
ok($external01 < 0, "the 0.1 ledger has a \$external row ($external01)");
my $holder = $node->background_psql('old', on_error_stop => 1);
$holder->query_safe(q{BEGIN; SELECT compay.deposit('alice', '3')});
is($node->safe_psql('old', q{
	SET lock_timeout = '5s';
	SELECT compay.deposit('bob', '4') > 0;
	SELECT stripes || ' ' || balance::numeric FROM compay.system_balances
	WHERE node_id = '$external' AND currency = 'CREDIT'}),
	"t\n2 " . ($external01 - 4),
	'updated database: a deposit beside a held $external row takes a stripe row, the sum is exact');
$holder->query_safe('COMMIT');
$holder->quit;
is($node->safe_psql('old', q{
	SELECT (SELECT balance::numeric FROM compay.balance('$external')) || ' '
	       || (SELECT count(*) FILTER (WHERE NOT ok) FROM compay.verify_ledger())}),
	($external01 - 7) . ' 0', 'updated database: $external is the sum of its rows, verify_ledger() all ok');

# 4. The regression suite (what `make installcheck` runs: REGRESS in the
# Makefile) on databases created as 0.1 and updated.  Each test starts
# from a fresh install (DROP and CREATE EXTENSION in its first lines, most
# through sql/include/fresh_extension.sql): here those two lines are taken
# out of the tests, the included file and the expected outputs,
# and each test runs in a database of its own copied from an updated one.
# The security tests also run on a copy of the populated database above.
my $probe = "show:\n\t\@echo \$(REGRESS)\n";
my ($names, $err);
IPC::Run::run([ 'make', '-s', '--no-print-directory', '-f', 'Makefile', '-f', '-', 'show' ],
	'<', \$probe, '>', \$names, '2>', \$err);
my @tests = split ' ', $names;
cmp_ok(scalar(@tests), '>', 10, 'the Makefile lists ' . scalar(@tests) . ' regression tests');

my $inputs = "$PostgreSQL::Test::Utils::tmp_check/updated_regress";
mkdir $inputs;
mkdir "$inputs/$_" for qw(sql sql/include expected);
for my $file (glob('sql/*.sql'), glob('sql/include/*.sql'), glob('expected/*.out'))
{
	my $text = slurp_file($file);
	$text =~ s/^(?:DROP EXTENSION compay CASCADE|CREATE EXTENSION compay);\n//mg;
	open my $fh, '>', "$inputs/$file" or die "$inputs/$file: $!";
	print $fh $text;
	close $fh;
}

$node->safe_psql('postgres', 'CREATE DATABASE updated_template');
$node->safe_psql('updated_template', q{CREATE EXTENSION compay VERSION '0.1'});
$node->safe_psql('updated_template', 'ALTER EXTENSION compay UPDATE');

# Runs one regression test in a new copy of the database $template.
sub regress_on_copy
{
	my ($test, $template) = @_;
	my $db = "r_${template}_$test";
	$node->safe_psql('postgres', qq{CREATE DATABASE "$db" TEMPLATE "$template"});
	my ($out, $stderr);
	# From $inputs: the tests include sql/include/*.sql relative to it.
	IPC::Run::run([
			$ENV{PG_REGRESS}, '--use-existing', "--dbname=$db", "--inputdir=$inputs",
			"--outputdir=$inputs/out_$template", '--host=' . $node->host,
			'--port=' . $node->port, '--bindir=', $test ],
		'>', \$out, '2>', \$stderr, init => sub { chdir $inputs or die "$inputs: $!" });
	my $ok = $out =~ /^(?:test +| +)\Q$test\E +\.\.\. ok/m;
	if (!$ok)
	{
		diag($out . $stderr);
		my $diffs = "$inputs/out_$template/regression.diffs";
		diag(slurp_file($diffs)) if -e $diffs;
	}
	return $ok;
}

for my $t (@tests)
{
	ok(regress_on_copy($t, 'updated_template'),
		"regression test $t passes on a 0.1 database updated to $version");
}
for my $t (grep { /^security_/ } @tests)
{
	ok(regress_on_copy($t, 'old'),
		"security test $t passes on the populated 0.1 database updated to $version");
}

$node->stop;
done_testing();
