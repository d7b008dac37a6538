# The earnings CSV export of README round-trips exactly: psql's
#   \copy (SELECT * FROM compay.earnings_history('node')) TO 'earnings.csv' CSV HEADER
# written for a node with CREDIT and XMR earnings (a refund, a verifier
# reward, an XMR settlement paid in two parts, so payout ids and tx hashes
# are arrays, amounts with 12 decimals, a task id with a comma and quotes),
# then loaded with \copy FROM into a table of the same column types, equals
# the function's rows both ways (EXCEPT), amounts to the last atomic unit.
# No wallet: payouts are built with made-up replies as in sql/payout_caps.sql.
# On a streaming standby every earnings function reads the same as on the
# primary and the export writes the same file (read-only functions).
#
# Run: bash /work/tools/runperl.sh REPO PGROOT test/t/042_earnings_csv.pl

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('earnings_csv');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'compay'\n");
$node->start;

sub sql { return $node->safe_psql('postgres', shift); }

sql(q{CREATE EXTENSION compay});
my $addr = '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1';
sql(<<"EOS");
SET search_path = public, compay;
CREATE FUNCTION run_job(task text, escrow compay.credit, provider text, v1 text, v2 text)
RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM compay.submit_job(task, 'csv-req', 'render', escrow);
    PERFORM compay.assign_job(task, provider);
    PERFORM compay.record_usage(task, provider, 's1', now(), compay.metrics(cpu_seconds => 1));
    PERFORM compay.complete_job(task, now() - interval '1 minute', now());
    PERFORM compay.verify_job(task, v1, true);
    PERFORM compay.verify_job(task, v2, true);
END \$\$;
CREATE FUNCTION xmr_task(task text, amount compay.credit) RETURNS bigint
LANGUAGE plpgsql AS \$\$
DECLARE
    v_model bigint;
BEGIN
    INSERT INTO compay.pricing_models (name, currency, base_price)
    VALUES ('m-' || task, 'XMR', amount) RETURNING id INTO v_model;
    INSERT INTO compay.task_type_models VALUES ('xmr-' || md5(task), v_model);
    PERFORM compay.submit_task(task, 'csv-xreq', 'csv-prov', 'xmr-' || md5(task));
    PERFORM compay.complete_job(task, now() - interval '1 minute', now());
    PERFORM compay.process_task_payment(task, 'crypto');
    -- All in one hour (the last one closed), so that one hourly
    -- settlement gathers them whenever the test runs.
    UPDATE compay.payments SET completed_at = date_trunc('hour', now()) - interval '30 minutes'
    WHERE task_id = task;
    RETURN (SELECT id FROM compay.payments WHERE task_id = task);
END \$\$;
CREATE FUNCTION build(id bigint) RETURNS void LANGUAGE sql AS \$\$
    SELECT compay.record_payout_built(id, jsonb_build_object(
        'tx_hash', encode(sha256(('tx' || id)::bytea), 'hex'),
        'tx_key', encode(sha256(('key' || id)::bytea), 'hex'),
        'tx_metadata', 'abcd',
        'spent_key_images', jsonb_build_object('key_images',
            jsonb_build_array(encode(sha256(('ki' || id)::bytea), 'hex'))),
        'fee', 100000000,
        'amount', (SELECT sum(compay.atomic(i.amount)) FROM compay.payout_items i
                   WHERE i.payout_id = id)));
    SELECT compay.record_payout_relayed(id);
\$\$;
SELECT deposit('csv-req', '5000');
SELECT run_job('csv-1', '1500', 'csv-prov', 'csv-v1', 'csv-v2');
SELECT run_job('csv,"2"', '1500', 'csv-other', 'csv-prov', 'csv-v1');
SELECT resolve_dispute((dispute_payment((SELECT id FROM payments WHERE task_id = 'csv-1'), 'late')).id,
                       '0.000000000001');
SELECT admin_deposit('csv-xreq', '10', 'XMR', 'test funds');
SELECT set_payout_address('csv-prov', '$addr');
SELECT set_payout_policy('csv-prov', true, '0', '1 microsecond', '0.5');
SELECT xmr_task('csv-x1', '0.800000000001');
SELECT xmr_task('csv-x2', '0.123456789012');
SELECT count(*) FROM run_settlement('hourly', now() + interval '1 hour');
SELECT queue_payouts();
SELECT build(1);
SELECT record_payout_confirmations(1, 10);
UPDATE payout_transactions SET created_at = created_at - interval '1 day 1 minute';
SELECT queue_payouts();
SELECT build(2);
SELECT xmr_task('csv-x3', '0.000000000007');
EOS

my $rows = sql(q{SELECT count(*) FROM compay.earnings_history('csv-prov')});
is($rows, '5', 'csv-prov has five earning events: a payment and a reward in CREDIT, 3 payments in XMR');
is( sql(q{SELECT string_agg(DISTINCT array_length(payout_ids, 1)::text, ',')
          FROM compay.earnings_history('csv-prov') WHERE status = 'in_flight'}),
	'2', 'the XMR settlement is paid in two parts: two payout ids and tx hashes');

my $csv = "$PostgreSQL::Test::Utils::tmp_check/earnings.csv";
# The one line of README, as a node's operator runs it.
my ($rc, $out, $err) = $node->psql('postgres',
	qq{\\copy (SELECT * FROM compay.earnings_history('csv-prov')) TO '$csv' CSV HEADER});
is($rc, 0, 'the \copy export of README runs') or diag($err);

open(my $fh, '<', $csv) or die "cannot read $csv: $!";
my @lines = <$fh>;
close($fh);
is( $lines[0],
	"earned_at,kind,purpose,job_id,task_id,job_type,payer,payment_id,currency,amount,"
	  . "refunded,earned,settlement_id,payout_ids,tx_hashes,status\n",
	'the header names the columns');
is(scalar(@lines), 6, 'a header and one line per event');
ok((grep { /^[^\n]*,"csv,""2""",/ } @lines), 'a task id with a comma and quotes is quoted');
ok((grep { /,0\.123456789012,0,0\.123456789012,/ } @lines),
	'an amount with 12 decimals is written exactly');
ok((grep { /,1100,0\.000000000001,1099\.999999999999,/ } @lines),
	'a refund of one atomic unit is written exactly');

# Back into a table of the same column types, then compared both ways.
($rc, $out, $err) = $node->psql('postgres', qq{
CREATE TABLE earnings_back AS SELECT * FROM compay.earnings_history('csv-prov') WITH NO DATA;
\\copy earnings_back FROM '$csv' CSV HEADER
});
is($rc, 0, 'the CSV loads back with \copy FROM') or diag($err);
is(sql(q{SELECT count(*) FROM earnings_back}), '5', 'five rows loaded back');
is( sql(q{SELECT count(*) FROM (SELECT * FROM compay.earnings_history('csv-prov')
                                 EXCEPT ALL SELECT * FROM earnings_back) d}),
	'0', 'every exported row is in the file');
is( sql(q{SELECT count(*) FROM (SELECT * FROM earnings_back
                                 EXCEPT ALL SELECT * FROM compay.earnings_history('csv-prov')) d}),
	'0', 'every row of the file is an exported row');
is( sql(q{SELECT compay.sum(earned)::text FROM earnings_back WHERE currency = 'XMR'}),
	sql(q{SELECT earned::text FROM compay.earnings('csv-prov', 'XMR')}),
	'the XMR earned in the file is earnings() to the last atomic unit');

# The comparison can fail: one atomic unit less in one row is seen.
sql(q{SET search_path = public, compay; UPDATE earnings_back SET amount = amount - '0.000000000001' WHERE task_id = 'csv-x2'});
is( sql(q{SELECT count(*) FROM (SELECT * FROM compay.earnings_history('csv-prov')
                                 EXCEPT ALL SELECT * FROM earnings_back) d}),
	'1', 'a row off by one atomic unit differs');
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok');

# On a streaming standby: every function reads the same as on the
# primary (read-only: no write, no temporary table), and the export runs.
$node->backup('earnings_backup');
my $standby = PostgreSQL::Test::Cluster->new('earnings_standby');
$standby->init_from_backup($node, 'earnings_backup', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'it is a standby');
for my $query (
	q{SELECT * FROM compay.earnings('csv-prov')},
	q{SELECT * FROM compay.earnings('csv-prov', 'XMR')},
	q{SELECT * FROM compay.earnings_breakdown('csv-prov', NULL, NULL, 'day')},
	q{SELECT * FROM compay.earnings_breakdown('csv-prov', '-infinity', 'infinity', 'payer')},
	q{SELECT * FROM compay.earnings_history('csv-prov')},
	q{SELECT * FROM compay.payment_history('csv-prov', 3)})
{
	my ($src) = $query =~ /FROM (compay\.\w+\(.*\))/;
	my $primary = sql($query);
	isnt($primary, '', "$src has rows on the primary");
	is($standby->safe_psql('postgres', $query), $primary, "$src reads the same on the standby");
}
my $standby_csv = "$PostgreSQL::Test::Utils::tmp_check/earnings_standby.csv";
($rc, $out, $err) = $standby->psql('postgres',
	qq{\\copy (SELECT * FROM compay.earnings_history('csv-prov')) TO '$standby_csv' CSV HEADER});
is($rc, 0, 'the export runs on the standby') or diag($err);
open($fh, '<', $standby_csv) or die "cannot read $standby_csv: $!";
my @standby_lines = <$fh>;
close($fh);
is_deeply(\@standby_lines, \@lines, 'the standby writes the same file');
$standby->stop;

$node->stop;
done_testing();
