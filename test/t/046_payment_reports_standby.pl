# Payment reports on a hot standby: compay.payment_report() (daily,
# monthly, tax) reads only, so a streaming standby answers it, with the
# same rows as the primary, for compay_reader and for a node's own role;
# the exchange rates written on the primary reach it.
#
# Run: bash /work/tools/runperl.sh REPO PG test/t/046_payment_reports_standby.pl
# (or prove with PERL5LIB at PostgreSQL's test/perl, as a non-root user).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'compay'
compay.database = 'postgres'
compay.worker_enabled = off
TimeZone = 'UTC'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION compay;
CREATE ROLE rep_node LOGIN IN ROLE compay_node;
CREATE ROLE rep_reader LOGIN IN ROLE compay_reader;
SELECT compay.add_node_role('rep_node', 'gpu-a');
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                             created_at, completed_at, tx_hash)
VALUES ('t1', 'req', 'gpu-a', '0.75', 'XMR', 'crypto', 'completed',
        '2025-03-10 10:00', '2025-03-10 10:01', 'aa11'),
       ('t2', 'req', 'gpu-b', '2.5', 'CREDIT', 'credit', 'completed',
        '2025-03-10 11:00', '2025-03-10 11:00', NULL);
INSERT INTO compay.exchange_rates (currency, quote_currency, rate, valid_from)
VALUES ('XMR', 'EUR', 160.5, '2025-03-01');
});

$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
# A rate written after the backup reaches the standby by streaming.
$node->safe_psql('postgres', q{
INSERT INTO compay.exchange_rates (currency, quote_currency, rate, valid_from)
VALUES ('CREDIT', 'EUR', 0.01, '2025-01-01')});
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'it is a standby');

my %reports = (
	daily   => q{SELECT * FROM compay.payment_report('daily', date '2025-03-10')},
	monthly => q{SELECT * FROM compay.payment_report('monthly', 2025, 3)},
	tax     => q{SELECT * FROM compay.payment_report('tax', 2025)},
	node    => q{SELECT * FROM compay.payment_report('tax', 2025, 'gpu-a')});
for my $name (sort keys %reports)
{
	my $primary = $node->safe_psql('postgres', $reports{$name});
	isnt($primary, '', "the $name report has rows");
	is($standby->safe_psql('postgres', $reports{$name}, extra_params => [ '-U', 'rep_reader' ]),
		$primary, "the standby's $name report equals the primary's (compay_reader)");
}
# The values on the standby: 0.75 x 160.5 and 2.5 x 0.01, the rate that
# came by streaming.
is( $standby->safe_psql(
		'postgres',
		q{SELECT string_agg(coalesce(value::text, '-'), ' ' ORDER BY node, is_total, currency)
          FROM compay.payment_report('tax', 2025)}),
	'120.375 120.375 120.375 0.025 0.025 0.025',
	'the standby values the receipts with the rates streamed to it');
# A node's role reads its own report there, not another's.
is( $standby->safe_psql(
		'postgres',
		q{SELECT count(*) FROM compay.payment_report('daily', date '2025-03-10', 'gpu-a')},
		extra_params => [ '-U', 'rep_node' ]),
	'2', "a node's role reads its own daily report on the standby");
my ($ret, $out, $err) = $standby->psql(
	'postgres',
	q{SELECT count(*) FROM compay.payment_report('daily', date '2025-03-10', 'gpu-b')},
	extra_params => [ '-U', 'rep_node' ]);
like($err, qr/may not act for node "gpu-b"/, "but not another node's");

$standby->stop;
$node->stop;
done_testing();
