# No orphaned deposit address (issue 13, item 8), against a real regtest
# wallet: compay.deposit_address() inside a transaction that rolls back
# leaves a subaddress in the treasury wallet; XMR sent to it is credited
# once, after the deposit poll adopts it, even when the scan had already
# passed the deposit's block.  A second rolled-back call is not made twice.
# A subaddress compay did not make this way (a bare node id label, as 0.1
# wrote) is adopted only by compay_admin with adopt_deposit_address().
#
# Run: bash /work/tools/runperl.sh REPO PGROOT test/t/041_deposit_orphan.pl
#      (COMPAY_XMR_DIR names a running regtest, or the test starts one)

use strict;
use warnings;

use CompayRegtest;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rt = CompayRegtest->up;
# No blocks read again below the scanned height: only the adoption's own
# rescan can find a deposit the scan has passed.
my $node = $rt->node('orphan',
	"compay.deposit_confirmations = 2\ncompay.deposit_rescan_blocks = 0\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub sql_error
{
	my ($query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $query, on_error_stop => 1);
	return $rc ? $err : '';
}

# The treasury's subaddresses with a given label.
sub labelled
{
	my ($label) = @_;
	my $reply = JSON::PP::decode_json($rt->rpc('treasury', 'get_address', '{"account_index":0}'));
	return grep { ($_->{label} // '') eq $label } @{ $reply->{result}{addresses} };
}

# Waits until the worker has finished n more rounds.
sub rounds
{
	my ($n) = @_;
	my $now = sql(q{SELECT rounds FROM compay.worker_status});
	sql(q{SELECT compay.wake_worker()});
	$node->poll_query_until('postgres',
		qq{SELECT rounds >= $now + $n FROM compay.worker_status})
	  or die 'the worker stopped';
}

# The provider wallet pays the deposits: 2 XMR from the treasury, unlocked.
$rt->rpc('treasury', 'transfer',
	qq({"destinations":[{"amount":2000000000000,"address":"$rt->{env}{XMR_PROVIDER_ADDRESS}"}],"priority":0}));
$rt->run('mine', 11);
$rt->rpc('provider', 'refresh');

my $prefix = sql(q{SELECT label_prefix FROM compay.deposit_label});
like($prefix, qr/^compay:[0-9a-f]{16}:$/, "this installation labels with $prefix");

# A committed address first, so that the worker scans the chain.
my $known = sql(q{SELECT compay.deposit_address('known')});
ok( $node->poll_query_until('postgres',
		q{SELECT scanned_height > 0 AND checked_calls = 1 FROM compay.deposit_scan}),
	'the worker scans deposits and has looked for orphans once');

# The worker off: the orphan is made, paid and mined, and the scan passes
# its block (as another runner, or an old version, would) before anyone
# looks for it.
$rt->set($node, 'compay.worker_enabled', 'off');
my $orphan = sql(q{BEGIN; SELECT compay.deposit_address('orphan-a'); ROLLBACK;});
like($orphan, qr/^[0-9A-Za-z]{95}$/, 'deposit_address() answered inside a transaction');
is(sql(q{SELECT count(*) FROM compay.deposit_addresses WHERE node_id = 'orphan-a'}), '0',
	'rolled back: compay has no row for it');
is(scalar(labelled("${prefix}orphan-a")), 1, 'the wallet kept the subaddress');
my $tx = $rt->rpc('provider', 'transfer',
	qq({"destinations":[{"amount":300000000000,"address":"$orphan"}],"priority":0}),
	'result.tx_hash');
like($tx, qr/^[0-9a-f]{64}$/, "0.3 XMR sent to the orphan: $tx");
$rt->run('mine', 5);
sql(q{SELECT compay.wallet_rpc('refresh')});
my $height = sql(q{SELECT compay.wallet_rpc('get_height')->>'height'});
sql(qq{SELECT compay.record_deposit_scan($height)});

# The worker back: its next poll adopts the subaddress, rescans, credits.
$rt->set($node, 'compay.worker_enabled', 'on');
ok( $node->poll_query_until('postgres',
		q{SELECT balance::text = '0.3' FROM compay.balance('orphan-a', 'XMR')}),
	'the poll adopted the orphan and credited its 0.3 XMR');
is(sql(q{SELECT address FROM compay.deposit_addresses WHERE node_id = 'orphan-a'}), $orphan,
	'adopted: the address the rolled-back call answered');
rounds(3);
is( sql(q{SELECT count(*) || ' ' || compay.sum(amount) || ' ' || min(tx_hash)
	  FROM compay.xmr_deposits WHERE node_id = 'orphan-a'}),
	"1 0.3 $tx", 'three polls later: credited exactly once');
is(sql(q{SELECT balance FROM compay.balance('orphan-a', 'XMR')}), '0.3', 'balance still 0.3 XMR');
is(sql(q{SELECT compay.deposit_address('orphan-a')}), $orphan,
	'deposit_address() now answers the adopted address');

# Rolled back, then asked again at once: one subaddress, whoever adopts it.
my $second = sql(q{BEGIN; SELECT compay.deposit_address('orphan-b'); ROLLBACK;});
is(sql(q{SELECT compay.deposit_address('orphan-b')}), $second,
	'the next call answers the subaddress the rolled-back one made');
is(scalar(labelled("${prefix}orphan-b")), 1, 'the wallet has one subaddress for it, not two');

# A subaddress with a bare node id label (0.1's, or the operator's own) is
# never adopted by the poll; compay_admin adopts it by index.
my $bare = $rt->rpc('treasury', 'create_address', '{"account_index":0,"label":"orphan-c"}',
	'result.address_index');
sql(q{BEGIN; SELECT compay.deposit_address('orphan-d'); ROLLBACK;});    # a recovery is due
rounds(2);
is(sql(q{SELECT string_agg(node_id, ',' ORDER BY node_id) FROM compay.deposit_addresses}),
	'known,orphan-a,orphan-b,orphan-d', 'the poll adopted orphan-d, not the bare label orphan-c');
like(sql_error(qq{SELECT compay.adopt_deposit_address('orphan-e', $bare)}),
	qr/not labelled for node "orphan-e"/, 'adopt_deposit_address: the label must be the node id');
like(sql_error(qq{SELECT compay.adopt_deposit_address('orphan-c',
	(SELECT address_index FROM compay.deposit_addresses WHERE node_id = 'known'))}),
	qr/already the deposit address of another node/, 'adopt_deposit_address: not a known one');
my $bare_address = $rt->rpc('treasury', 'get_address',
	qq({"account_index":0,"address_index":[$bare]}), 'result.addresses.0.address');
is(sql(qq{SELECT compay.adopt_deposit_address('orphan-c', $bare)}), $bare_address,
	'compay_admin adopts the bare-labelled subaddress');
# The change of the first transfer unlocks after 10 blocks.
$rt->run('mine', 10);
like( $rt->rpc('provider', 'transfer',
		qq({"destinations":[{"amount":200000000000,"address":"$bare_address"}],"priority":0}),
		'result.tx_hash'),
	qr/^[0-9a-f]{64}$/, '0.2 XMR sent to the adopted subaddress');
$rt->run('mine', 3);
ok( $node->poll_query_until('postgres',
		q{SELECT balance::text = '0.2' FROM compay.balance('orphan-c', 'XMR')}),
	'its deposit is credited');
rounds(2);
is( sql(q{SELECT string_agg(node_id || ':' || amount, ',' ORDER BY node_id) FROM compay.xmr_deposits}),
	'orphan-a:0.3,orphan-c:0.2', 'every deposit credited once');
is( sql(q{SELECT string_agg(check_name || '=' || ok, ',') FILTER (WHERE NOT ok) IS NULL
	  AND bool_or(check_name = 'deposits_match_wallet_outputs') FROM compay.verify_ledger()}),
	't', 'verify_ledger() ok, deposits_match_wallet_outputs among its checks');

$node->stop;
done_testing();
