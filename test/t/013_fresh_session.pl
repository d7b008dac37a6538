# Every function works in every session: a cluster WITHOUT compay in
# shared_preload_libraries, where each new connection starts without the
# library loaded (as under a connection pool in pg_cron mode).
#
# 1. The premise: a fresh session has no compay.* setting (SHOW and
#    current_setting() fail with "unrecognized configuration parameter"),
#    so each check below really starts without the library.
# 2. No function or view of the schema reads a compay.* setting with
#    current_setting(): they read it with compay.setting(), a C function
#    whose call loads the library.
# 3. The first call of every function of the schema (enumerated from the
#    catalog), each in a fresh connection, with NULL arguments and again
#    with sample arguments, never fails on a setting (any other error is
#    fine: the arguments are not meant to be valid).
# 4. The issue's case: a fresh connection whose first call is
#    compay.verify_job() verifies (and the quorum pays the job), and one
#    whose first call is compay.dispute_payment() disputes.
# 5. compay.setting(name) as a session's first call gives, for every
#    compay.* setting, what SHOW gives once the library is loaded, and
#    honours postgresql.conf and ALTER DATABASE ... SET; other names: 22023;
#    an unknown compay.* name: 42704.
# 6. SHOW compay.<each setting> in a fresh session: works as its first
#    statement where the library is preloaded for the database
#    (session_preload_libraries, the documented setting), and after any
#    compay call (or LOAD 'compay') in a session that did not preload it.
#
# Run from the repository (or the staged copy) with the environment
# test/suites.sh sets: PERL5LIB, PATH, TESTDIR.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('fresh_session');
$node->init;
# No shared_preload_libraries.  The wallet URL points to a closed port, so
# that calls which reach the wallet fail at once; one setting is given a
# value in postgresql.conf, which the session sees before the library loads.
$node->append_conf('postgresql.conf',
	"compay.wallet_rpc_url = 'http://127.0.0.1:9'\n"
	  . "compay.wallet_rpc_connect_timeout = 200\n"
	  . "compay.payout_batch_max = 7\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION compay');

# Runs sql in a new connection; returns (exit code, stdout, stderr) with
# the SQLSTATE in each error message.
sub fresh
{
	my ($sql, $db) = @_;
	my ($ret, $out, $err) = $node->psql($db // 'postgres', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($ret, $out, $err);
}

my $unrecognized = qr/unrecognized configuration parameter/;

# 1. The premise.
my (undef, $loaded) = fresh(q{SELECT count(*) FROM pg_settings
  WHERE name LIKE 'compay.%' AND source <> 'configuration file'});
is($loaded, '0', 'a fresh session has no compay.* setting but the placeholders of postgresql.conf');
my ($ret, undef, $err) = fresh('SHOW compay.min_stake');
like($err, qr/42704: $unrecognized "compay\.min_stake"/,
	'without the library loaded, SHOW compay.min_stake fails (42704): the test starts from there');
($ret, undef, $err) = fresh(q{SELECT current_setting('compay.verification_quorum')});
like($err, $unrecognized,
	"without the library loaded, current_setting('compay.verification_quorum') fails");

# 2. Nothing reads a compay.* setting with current_setting().
my $readers = $node->safe_psql(
	'postgres', q{
SELECT string_agg(what, ', ' ORDER BY what) FROM (
  SELECT p.oid::regprocedure::text AS what FROM pg_proc p
  WHERE p.pronamespace = 'compay'::regnamespace
    AND p.prosrc ~* 'current_setting\s*\(\s*''compay\.'
  UNION ALL
  SELECT c.oid::regclass::text FROM pg_class c
  WHERE c.relnamespace = 'compay'::regnamespace AND c.relkind IN ('v', 'm')
    AND pg_get_viewdef(c.oid) ~* 'current_setting\s*\(\s*''compay\.') s});
is($readers, '', 'no function or view reads a compay.* setting with current_setting()');
my $setting_readers = $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'compay'::regnamespace AND prosrc LIKE '%compay.setting(''compay.%'});
cmp_ok($setting_readers, '>=', 10, "$setting_readers functions read settings with compay.setting()");

# 3. The first call of every function, in a fresh connection each.
my @calls = split /\n/, $node->safe_psql(
	'postgres', q{
WITH f AS (
  SELECT p.oid, p.prokind,
         format('%I.%I', n.nspname, p.proname) AS name,
         ARRAY(SELECT a.t FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, i) ORDER BY i) AS types
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'compay' AND p.prokind IN ('f', 'p', 'a')
)
SELECT f.oid::regprocedure::text || E'\t'
       || CASE f.prokind WHEN 'p' THEN 'CALL ' ELSE 'SELECT ' END || f.name || '('
       || coalesce((SELECT string_agg('NULL::' || format_type(t, NULL), ', ') FROM unnest(f.types) t), '')
       || ')' || E'\t'
       || CASE f.prokind WHEN 'p' THEN 'CALL ' ELSE 'SELECT ' END || f.name || '('
       || coalesce((SELECT string_agg(
            CASE
              WHEN ty.typtype = 'e' THEN
                quote_literal((SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = ty.oid
                               ORDER BY e.enumsortorder LIMIT 1)) || '::' || format_type(ty.oid, NULL)
              WHEN ty.typcategory = 'A' THEN '''{}''::' || format_type(ty.oid, NULL)
              WHEN ty.typcategory = 'S' THEN '''fresh-session''::' || format_type(ty.oid, NULL)
              WHEN ty.typcategory = 'N' THEN '''1''::' || format_type(ty.oid, NULL)
              WHEN ty.typcategory = 'B' THEN 'true'
              WHEN ty.typcategory = 'T' THEN '''1 hour''::' || format_type(ty.oid, NULL)
              WHEN ty.typcategory = 'D' THEN 'now()::' || format_type(ty.oid, NULL)
              WHEN ty.oid = 'jsonb'::regtype THEN '''{}''::jsonb'
              ELSE 'NULL::' || format_type(ty.oid, NULL)
            END, ', ' ORDER BY a.i)
          FROM unnest(f.types) WITH ORDINALITY a(t, i) JOIN pg_type ty ON ty.oid = a.t), '')
       || ')'
FROM f ORDER BY 1});
cmp_ok(scalar(@calls), '>', 100, scalar(@calls) . ' functions of the schema to call');

my (@failed, %outcome);
for my $line (@calls)
{
	my ($proc, $with_nulls, $with_samples) = split /\t/, $line;
	for my $sql ($with_nulls, $with_samples)
	{
		my ($rc, undef, $e) = fresh($sql);
		$outcome{ $rc == 0 ? 'ok' : 'error' }++;
		if ($e =~ $unrecognized)
		{
			my ($msg) = $e =~ /(ERROR:.*)/;
			push @failed, "$sql: $msg";
		}
	}
}
note("first calls: $outcome{ok} returned, $outcome{error} raised another error (bad arguments)");
is_deeply(\@failed, [],
	'no first call of a function in a fresh session fails on a setting ('
	  . 2 * scalar(@calls) . ' calls)');
cmp_ok($outcome{ok}, '>', 50, 'many of those calls returned without an error');

# 4. The issue's case, with real arguments: a job is set up in one session,
# then each verifier's call, and the dispute, is a new session's first call.
$node->safe_psql(
	'postgres', q{
SELECT compay.deposit('req', '100');
SELECT compay.deposit('prov', '10');
SELECT compay.stake('prov', '1');
SELECT compay.submit_job('job-1', 'req', 'render', '10', '1 day');
SELECT compay.assign_job('job-1', 'prov');
SELECT compay.complete_job('job-1', now() - interval '1 hour', now());
});
for my $verifier ('ver-1', 'ver-2')
{
	my ($rc, $out, $e) = fresh(qq{SELECT compay.verify_job('job-1', '$verifier', true, 1.0)});
	is($rc, 0, "a fresh session's first call verify_job(job-1, $verifier) works")
	  or diag($e);
}
is($node->safe_psql('postgres', q{SELECT status FROM compay.jobs WHERE task_id = 'job-1'}),
	'paid', 'the quorum (compay.verification_quorum, 2) paid the job');
my ($rc, $out, $e) = fresh(
	q{SELECT (compay.dispute_payment(payment_id, 'late')).status FROM compay.jobs WHERE task_id = 'job-1'});
is($rc . $out, '0disputed', "a fresh session's first call dispute_payment() works") or diag($e);

# 5. compay.setting(): every setting, as the first call of a session, is
# what SHOW gives once the library is loaded.
my @settings = split /\n/, $node->safe_psql('postgres',
	q{SELECT compay.setting('compay.min_stake'); SELECT name FROM pg_settings WHERE name LIKE 'compay.%' ORDER BY name});
shift @settings;    # the first query's row
cmp_ok(scalar(@settings), '>=', 30, scalar(@settings) . ' compay.* settings');
my @mismatch;
for my $name (@settings)
{
	# (A value may be empty: the first line is prefixed.)
	my ($rc, $out, $e) = fresh("SELECT 'v=' || compay.setting('$name'); SHOW $name;");
	my ($first, $shown) = split /\n/, $out, 2;
	$shown //= '';
	push @mismatch, "$name: " . ($rc ? $e : "$first, SHOW gives $shown")
	  unless $rc == 0 && $first eq "v=$shown";
}
is_deeply(\@mismatch, [],
	"compay.setting() as a session's first call gives SHOW's value, for every compay.* setting");

is((fresh(q{SELECT compay.setting('compay.payout_batch_max')}))[1], '7',
	'compay.setting() gives the postgresql.conf value');
$node->safe_psql('postgres', 'CREATE DATABASE valued');
$node->safe_psql('valued', 'CREATE EXTENSION compay');
$node->safe_psql('postgres', q{ALTER DATABASE valued SET compay.min_stake = '0.5'});
is((fresh(q{SELECT compay.setting('compay.min_stake')}, 'valued'))[1], '0.5',
	'compay.setting() gives the ALTER DATABASE ... SET value');
is((fresh(q{SELECT compay.setting('compay.verification_quorum')}))[1], '2',
	'compay.setting() gives the default defined in C when nothing sets it');

(undef, undef, $e) = fresh(q{SELECT compay.setting('work_mem')});
like($e, qr/22023: "work_mem" is not a compay setting/, 'compay.setting() of another setting: 22023');
(undef, undef, $e) = fresh(q{SELECT compay.setting('compay.no_such_setting')});
like($e, qr/42704: $unrecognized "compay\.no_such_setting"/,
	'compay.setting() of an unknown compay.* setting: 42704');
is((fresh(q{SELECT compay.setting(NULL) IS NULL}))[1], 't', 'compay.setting(NULL) is NULL');

# 6. SHOW in a fresh session.  With session_preload_libraries set for the
# database (docs/operations.md), as the session's first statement:
$node->safe_psql('postgres', q{ALTER DATABASE valued SET session_preload_libraries = 'compay'});
my @show_failed;
for my $name (@settings)
{
	my ($rc, $out, $e) = fresh("SHOW $name", 'valued');
	push @show_failed, "$name: $e" if $rc != 0;
}
is_deeply(\@show_failed, [],
	'with session_preload_libraries = compay, SHOW of every compay.* setting works as a fresh session\'s first statement');
is((fresh('SHOW compay.min_stake', 'valued'))[1], '0.5',
	'and SHOW gives the ALTER DATABASE ... SET value');

# Without it, after any compay call or LOAD 'compay' in the session.
@show_failed = ();
for my $name (@settings)
{
	my ($rc, $out, $e) = fresh("SELECT '1'::compay.credit; SHOW $name");
	push @show_failed, "$name: $e" if $rc != 0;
}
is_deeply(\@show_failed, [], 'SHOW of every compay.* setting works after a compay call in the session');
($rc, $out, $e) = fresh("LOAD 'compay'; SHOW compay.verification_quorum");
is($rc . $out, '02', q{SHOW works after LOAD 'compay'}) or diag($e);

$node->stop;
done_testing();
