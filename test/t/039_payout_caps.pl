# Payouts under the daily cap and on request, against the real regtest
# wallet (issue 13).  The worker pays; the clock is simulated by moving the
# payee's payouts a day back.
#
#  1. Cap: earnings of 0.8 and 0.1 XMR (two settlements) under the default
#     cap of 0.5 a day: 0.5 is paid on day one (a settlement split at the
#     cap), the 0.4 left on day two; the payee's subaddress receives
#     exactly 0.5 and 0.4, once each; both settlements completed, the
#     payments carry their payouts' tx hashes, payment_trace shows each
#     part on chain; verify_ledger() ok after each day.
#  2. Request: a payee with auto_payout off is never paid by the round;
#     compay.request_payout pays 0.3 of its 0.35 on request, the same key
#     returns the same payout, and the wallet receives exactly 0.3 once.
#
# Run: bash /work/tools/runperl.sh WORKTREE PG test/t/039_payout_caps.pl
#      (COMPAY_XMR_DIR names a running regtest, or one is started).

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $confirmations = 3;
my $rt = CompayRegtest->up;
my $node = $rt->node('caps', "compay.payout_confirmations = $confirmations\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub poll { return $node->poll_query_until('postgres', @_); }

# 1e12 atomic units per XMR, as text.
sub atomic
{
	my ($xmr) = @_;
	my ($int, $frac) = split /\./, $xmr;
	$frac = substr(($frac // '') . ('0' x 12), 0, 12);
	return ($int . $frac) =~ s/^0+(?=\d)//r;
}

sub received
{
	return join(',', sort { $a <=> $b } map { $_->{amount} } $rt->incoming(shift));
}

sub ledger_ok
{
	my ($what) = @_;
	is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', "$what: verify_ledger() ok")
	  or diag(sql(q{SELECT check_name || ': ' || detail FROM compay.verify_ledger() WHERE NOT ok}));
}

# Every payout of the payee relayed, mined, confirmed.
sub relay_mine_confirm
{
	my ($what, $payee) = @_;
	ok(poll(qq{SELECT bool_and(status IN ('relayed', 'confirmed')) FROM compay.payouts
	  WHERE node_id = '$payee' AND status <> 'failed'}), "$what: relayed")
	  or diag(sql(qq{SELECT id || ' ' || status || ' ' || coalesce(last_error, '-')
	    FROM compay.payout_transactions ORDER BY id}));
	$rt->run('mine', $confirmations);
	ok(poll(qq{SELECT bool_and(status = 'confirmed') FROM compay.payouts
	  WHERE node_id = '$payee' AND status <> 'failed'}), "$what: confirmed");
}

# Lets the worker run at least n more rounds (each queues payouts).
sub wait_rounds
{
	my ($count) = @_;
	my $rounds = sql(q{SELECT rounds FROM compay.worker_status});
	poll(qq{SELECT rounds >= $rounds + $count FROM compay.worker_status});
}

# 1. The daily cap splits a settlement; the rest is paid the next day.
my $i = $rt->pay_to($node, 'cap');
# Held back until both settlements exist, so that day one sees 0.9.
sql(q{SELECT compay.set_payout_policy('cap', false, NULL, NULL, NULL)});
my $s1 = $rt->earn($node, 'cap', '0.8');
my $s2 = $rt->earn($node, 'cap', '0.1');
isnt($s1, $s2, '1: two settlements, 0.8 and 0.1');
sql(q{SELECT compay.set_payout_policy('cap', true, NULL, NULL, NULL)});
ok(poll(q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'cap'}), '1: day one: a payout queued');
is(sql(q{SELECT amount FROM compay.payout_items WHERE node_id = 'cap'}), '0.5', '1: day one: 0.5, the cap');
is(sql(q{SELECT string_agg(settlement_id || ':' || amount, ',' ORDER BY settlement_id)
  FROM compay.payout_parts}), "$s1:0.5", '1: day one: 0.5 of the 0.8 settlement');
relay_mine_confirm('1 day one', 'cap');
is(received($i), atomic('0.5'), '1: day one: the payee received exactly 0.5 XMR');
wait_rounds(3);
is(sql(q{SELECT count(*) FROM compay.payout_items WHERE node_id = 'cap'}), '1',
	'1: day one: nothing more while the cap is reached');
is(sql(qq{SELECT string_agg(status::text, ',' ORDER BY id) FROM compay.settlements WHERE id IN ($s1, $s2)}),
	'processing,processing', '1: day one: both settlements still processing');
is(sql(q{SELECT balance || '/' || reserved FROM compay.accounts WHERE node_id = 'cap' AND currency = 'XMR'}),
	'0.4/0.4', '1: day one: the 0.4 left stays earmarked');
ledger_ok('1 day one');

# Day two: the payouts of day one are a day old.
sql(q{UPDATE compay.payout_transactions SET created_at = created_at - interval '1 day 1 minute'});
ok(poll(q{SELECT count(*) = 2 FROM compay.payouts WHERE node_id = 'cap'}), '1: day two: a payout queued');
is(sql(q{SELECT string_agg(settlement_id || ':' || amount, ',' ORDER BY settlement_id)
  FROM compay.payout_parts WHERE payout_id = (SELECT max(payout_id) FROM compay.payout_parts)}),
	"$s1:0.3,$s2:0.1", '1: day two: the 0.3 left of the first settlement and the 0.1');
relay_mine_confirm('1 day two', 'cap');
is(received($i), join(',', atomic('0.4'), atomic('0.5')),
	'1: day two: the payee received exactly 0.5 and 0.4 XMR, once each');
wait_rounds(3);
is(sql(q{SELECT count(*) FROM compay.payout_transactions}), '2', '1: no third payout');
is(sql(qq{SELECT string_agg(status::text, ',' ORDER BY id) FROM compay.settlements WHERE id IN ($s1, $s2)}),
	'completed,completed', '1: both settlements completed');
is(sql(q{SELECT balance || '/' || reserved FROM compay.accounts WHERE node_id = 'cap' AND currency = 'XMR'}),
	'0/0', '1: nothing left on the account');
is(sql(q{SELECT count(*) FROM compay.payments y JOIN compay.payout_transactions p ON p.tx_hash = y.tx_hash
  WHERE y.to_node = 'cap'}), '2', '1: each payment carries a payout\'s tx hash');
my $task = sql(qq{SELECT task_id FROM compay.payments p WHERE compay.payment_settlement(p) = $s1});
is(sql(qq{SELECT string_agg(part_amount || ' ' || payout_status || ' ' || (confirmations >= $confirmations)
    || ' ' || (tx_hash ~ '^[0-9a-f]{64}\$'), ',' ORDER BY payout_id)
  FROM compay.payment_trace('$task')}),
	'0.5 confirmed true true,0.3 confirmed true true', '1: payment_trace shows both parts on chain');
ledger_ok('1 day two');

# 2. A payout on request for a payee the round never pays.
my $j = $rt->pay_to($node, 'req-payee');
sql(q{SELECT compay.set_payout_policy('req-payee', false, NULL, NULL, NULL)});
$rt->earn($node, 'req-payee', '0.35');
wait_rounds(3);
is(sql(q{SELECT count(*) FROM compay.payout_items WHERE node_id = 'req-payee'}), '0',
	'2: auto_payout off: the round queues nothing');
my $id = sql(q{SELECT compay.request_payout('req-payee', '0.3', 'pay-me-1')});
is(sql(q{SELECT compay.request_payout('req-payee', '0.3', 'pay-me-1')}), $id,
	'2: the same key returns the same payout');
relay_mine_confirm('2', 'req-payee');
is(received($j), atomic('0.3'), '2: the payee received exactly 0.3 XMR on request');
is(sql(q{SELECT balance || '/' || reserved FROM compay.accounts WHERE node_id = 'req-payee' AND currency = 'XMR'}),
	'0.05/0.05', '2: the 0.05 not asked for stays earmarked');
ledger_ok('2');

done_testing();
