# Withdrawals to operational addresses against the real regtest wallet
# (issue 16): what a node holds in XMR that is not earnings leaves
# compay on chain at its operational address; its earnings still go to
# its primary address.  Both addresses are subaddresses of the provider
# wallet, so that what each received is read by subaddress index.
#
#  ops-n has 0.5 XMR of deposits, stakes 0.2 and unstakes 0.15 (0.05
#  stays held), and earns 0.02 (settled).  It may withdraw 0.45; it
#  withdraws 0.3 to its operational address O and asks for its earnings,
#  paid to its primary address P.  The worker, off while they are queued,
#  builds, relays and (after the confirmations) confirms both payouts.
#  O received 0.3 and nothing else, P 0.02 and nothing else; both
#  settlements are completed, the node's balance is what is left.  With
#  the worker off, CALL compay.run_payouts() pays a second withdrawal of
#  0.1 to O.  verify_payout and verify_ledger() are ok.
#
# Run: bash /work/tools/runperl.sh WORKTREE PG test/t/064_operational_payouts.pl
#      (COMPAY_XMR_DIR names a running regtest, or one is started).

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $confirmations = 2;
my $rt = CompayRegtest->up;
my $node = $rt->node('operational',
	"compay.payout_confirmations = $confirmations\ncompay.worker_enabled = off\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub poll { return $node->poll_query_until('postgres', @_); }

sub received
{
	return join(',', sort { $a <=> $b } map { $_->{amount} } $rt->incoming(shift));
}

my ($ip, $ap) = $rt->subaddress;    # primary: earnings
my ($io, $ao) = $rt->subaddress;    # operational: withdrawals
sql(qq{SELECT compay.set_payout_address('ops-n', '$ap');
  SELECT compay.add_payout_address('ops-n', '$ao', 'operational');
  SELECT compay.set_payout_policy('ops-n', false, '0.000001', NULL, '10');
  SELECT compay.admin_deposit('ops-n', '0.5', 'XMR', 'deposits');
  SELECT compay.stake('ops-n', '0.2', 'XMR');
  SELECT compay.unstake('ops-n', '0.15', 'XMR');});
$rt->earn($node, 'ops-n', '0.02');
is(sql(q{SELECT compay.withdrawable('ops-n')}), '0.45',
	'the node may withdraw its deposits less what stays staked, not its earnings');

my $w = sql(q{SELECT compay.request_withdrawal('ops-n', '0.3')});
my $e = sql(q{SELECT compay.request_payout('ops-n')});
is( sql(qq{SELECT string_agg(i.payout_id || ':' || s.purpose || ':' || i.amount
		  || ':' || (i.address = '$ao'), ',' ORDER BY i.payout_id)
		  FROM compay.payout_items i JOIN compay.settlements s ON s.id = ANY (i.settlement_ids)}),
	"$w:operational:0.3:true,$e:primary:0.02:false",
	'the withdrawal is queued to the operational address, the earnings apart');

$rt->set($node, 'compay.worker_enabled', 'on');
ok(poll(q{SELECT bool_and(status = 'relayed') FROM compay.payout_transactions}),
	'the worker builds and relays both payouts')
  or diag(sql(q{SELECT id || ' ' || status || ' ' || coalesce(last_error, '-')
	  FROM compay.payout_transactions ORDER BY id}));
$rt->run('mine', $confirmations);
ok(poll(q{SELECT bool_and(status = 'confirmed') FROM compay.payout_transactions}),
	'both payouts are confirmed');

is(received($io), '300000000000', 'the operational subaddress received the withdrawal, and only it');
is(received($ip), '20000000000', 'the primary subaddress received the earnings, not the withdrawal');
is(sql(q{SELECT string_agg(purpose || ':' || status, ',' ORDER BY id) FROM compay.settlements}),
	'primary:completed,operational:completed', 'both settlements are completed');
is(sql(q{SELECT balance || '/' || reserved FROM compay.balance('ops-n', 'XMR')}), '0.2/0.05',
	'the node keeps 0.2, of which its stake of 0.05 is held');
# With the worker off, CALL compay.run_payouts() (the pg_cron entry point)
# pays a second withdrawal: one call builds and relays it, one after the
# confirmations confirms it.
$rt->set($node, 'compay.worker_enabled', 'off');
my $w2 = sql(q{SELECT compay.request_withdrawal('ops-n', '0.1')});
sql(q{CALL compay.run_payouts()});
is(sql(qq{SELECT status FROM compay.payout_transactions WHERE id = $w2}), 'relayed',
	'CALL compay.run_payouts() builds and relays a withdrawal');
$rt->run('mine', $confirmations);
sql(q{CALL compay.run_payouts()});
is(sql(qq{SELECT status FROM compay.payout_transactions WHERE id = $w2}), 'confirmed',
	'and confirms it');
is(received($io), '100000000000,300000000000', 'the operational subaddress received both withdrawals');
is(received($ip), '20000000000', 'the primary subaddress still only the earnings');

is(sql(q{SELECT bool_and(ok) FROM compay.payout_transactions p, compay.verify_payout(p.id)}),
	't', 'verify_payout finds each address paid its amount');
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok')
  or diag(sql(q{SELECT check_name || ': ' || detail FROM compay.verify_ledger() WHERE NOT ok}));

$node->stop;
done_testing();
