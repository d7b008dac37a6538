# The ledger works in a database whose default collation is not "C".
#
# The ledger's C code finds accounts through the (node_id, currency) unique
# index by itself, without the executor.  Its search keys must carry the
# index's collation: a B-tree ordered by ICU's en-US (where 'a' < 'B') and
# searched in "C" order (where 'B' < 'a') misses rows.  This test makes
# databases with an ICU and a libc collation and moves money between nodes
# whose names differ in case and punctuation, so that the two orders differ.
#
# Run from the repository (or the staged copy) with the environment
# test/suites.sh sets: PERL5LIB, PATH, TESTDIR.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('collations');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'compay'\n");
$node->start;

my @nodes = ('a', 'B', 'b', 'A', 'Zed', 'zed', '_x', 'X_', 'gpu-1', 'GPU-10', 'gpu_2');
my $array = 'ARRAY[' . join(',', map { "'$_'" } @nodes) . ']';

my %databases = (
	icu_en_us => q{LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'},
	icu_de    => q{LOCALE_PROVIDER icu ICU_LOCALE 'de-u-kf-upper' LOCALE 'C.UTF-8'},
	libc_utf8 => q{LOCALE 'C.UTF-8'},
);

for my $db (sort keys %databases)
{
	$node->safe_psql('postgres',
		"CREATE DATABASE $db TEMPLATE template0 ENCODING 'UTF8' $databases{$db}");
	$node->safe_psql($db, 'CREATE EXTENSION compay');
	# An error is returned as text, so that a failing check says why.
	my $q = sub {
		my ($out, $err);
		$node->psql($db, $_[0], stdout => \$out, stderr => \$err, on_error_stop => 1);
		return $err ? "error: $err" : $out;
	};

	# The premise: in this database the orders differ from "C".
	if ($db =~ /^icu/)
	{
		is($q->(q{SELECT 'a' < 'B'}), 't', "$db: the database orders 'a' before 'B' (unlike \"C\")");
	}

	is($q->("SELECT count(*) FROM (SELECT compay.deposit(n, 100) FROM unnest($array) n) x"),
		scalar @nodes, "$db: a deposit to each node opens its account");
	is($q->("SELECT count(DISTINCT node_id) FROM compay.accounts WHERE node_id = ANY ($array)"),
		scalar @nodes, "$db: one account per node");

	# Each node pays the next one 1, twice with the same key: once.
	my @pairs = map { [ $nodes[$_], $nodes[($_ + 1) % @nodes] ] } 0 .. $#nodes;
	my @errors;
	for my $p (@pairs)
	{
		push @errors, grep { /^error/ }
		  map { $q->("SELECT compay.transfer('$p->[0]', '$p->[1]', 1, NULL, 'k-$p->[0]')") } 1 .. 2;
	}
	is(join('', @errors), '', "$db: every keyed transfer (and its retry) succeeded");
	is($q->("SELECT count(*) FROM compay.accounts WHERE node_id = ANY ($array)
	         AND balance::numeric = 100"), scalar @nodes,
		"$db: every node paid 1 and was paid 1 (each keyed transfer once)");

	# A batch, and a hold captured to a node whose name sorts elsewhere in "C".
	$q->(q{SELECT count(*) FROM compay.transfer_batch(ARRAY['a','Zed','_x'], ARRAY['B','zed','X_'],
	        ARRAY[5,5,5]::compay.credit[])});
	my $hold = $q->(q{SELECT compay.reserve('gpu-1', 7)});
	$q->("SELECT compay.capture($hold, 'GPU-10', 7)");
	is($q->("SELECT string_agg(node_id || '=' || balance::text, ' ' ORDER BY node_id COLLATE \"C\")
	         FROM compay.accounts WHERE node_id = ANY ($array)"),
		'A=100 B=105 GPU-10=107 X_=105 Zed=95 _x=95 a=95 b=100 gpu-1=93 gpu_2=100 zed=105',
		"$db: a batch and a capture move exactly their amounts");

	is($q->(q{SELECT count(*) FILTER (WHERE NOT ok) || '/' || count(*) FROM compay.verify_ledger()}),
		'0/' . $q->(q{SELECT count(*) FROM compay.verify_ledger()}),
		"$db: verify_ledger() all ok");
}

$node->stop;
done_testing();
