# Disputes against the real regtest wallet: the payee's wallet and the
# ledger agree at each stage, and compay.verify_ledger() is ok after each.
# (Disputes before settlement and the bad inputs: sql/disputes.sql.)
#
#  1. Settled, not paid out: a dispute holds the settlement back (no payout
#     while disputed); resolved with a refund of 0.1 of 0.3, the refund
#     comes from the earmark hold and the payee receives exactly 0.2.
#  2. Paid on chain: 0.4 received; then disputed and refunded 0.15 in
#     full: $clawbacks fronts it to the payer, the payee owes it
#     (compay.clawbacks_owed), never a PY001.  Its next earnings of 0.5
#     repay it first: the next payout is 0.35, exactly 0.15 less, and the
#     repayment is in the payee's history.
#
# Run: bash /work/tools/runperl.sh REPO PGROOT test/t/040_dispute_stages.pl
#      (COMPAY_XMR_DIR names a running regtest, or one is started).

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $confirmations = 3;
my $rt = CompayRegtest->up;
my $node = $rt->node('disputes', "compay.payout_confirmations = $confirmations\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub poll { return $node->poll_query_until('postgres', @_); }

# 1e12 atomic units per XMR, as text (no floating point).
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

sub wait_rounds
{
	my ($count) = @_;
	my $rounds = sql(q{SELECT rounds FROM compay.worker_status});
	poll(qq{SELECT rounds >= $rounds + $count FROM compay.worker_status});
}

# Every payout of the payee relayed, mined, confirmed.
sub confirmed
{
	my ($what, $payee) = @_;
	ok(poll(qq{SELECT count(*) > 0 AND bool_and(status IN ('relayed', 'confirmed'))
	  FROM compay.payouts WHERE node_id = '$payee'}), "$what: relayed");
	$rt->run('mine', $confirmations);
	ok(poll(qq{SELECT bool_and(status = 'confirmed') FROM compay.payouts WHERE node_id = '$payee'}),
		"$what: confirmed");
}

sub xmr
{
	my ($who) = @_;
	return sql(qq{SELECT balance || '/' || reserved FROM compay.accounts
	  WHERE node_id = '$who' AND currency = 'XMR'});
}

sub payment_of
{
	my ($settlement) = @_;
	return sql(qq{SELECT id FROM compay.payments p WHERE compay.payment_settlement(p) = $settlement});
}

# 1. Settled, not paid out.
my $ia = $rt->pay_to($node, 'dsp-a');
sql(q{SELECT compay.set_payout_policy('dsp-a', false, '0', '1 second', '100')});
my $s1 = $rt->earn($node, 'dsp-a', '0.3');
my $p1 = payment_of($s1);
is(sql(qq{SELECT (compay.dispute_payment($p1, 'wrong output')).status}), 'disputed',
	'1: the settled payment is disputed');
sql(q{SELECT compay.set_payout_policy('dsp-a', true, '0', '1 second', '100')});
wait_rounds(3);
is(sql(q{SELECT count(*) FROM compay.payout_items WHERE node_id = 'dsp-a'}), '0',
	'1: no payout while disputed');
is(sql(qq{SELECT held_back || ' ' || status FROM compay.settlements WHERE id = $s1}),
	'0.3 processing', '1: the settlement holds 0.3 back');
ledger_ok('1: held back');
is(sql(qq{SELECT (compay.resolve_dispute($p1, '0.1')).status}), 'refunded',
	'1: resolved with a refund of 0.1');
is(sql(q{SELECT balance FROM compay.accounts WHERE node_id = 'req' AND currency = 'XMR'}), '0.1',
	'1: the payer has its 0.1 back');
ok(poll(q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'dsp-a'}), '1: then paid out');
is(sql(q{SELECT amount FROM compay.payout_items WHERE node_id = 'dsp-a'}), '0.2', '1: 0.2 of 0.3');
confirmed('1', 'dsp-a');
is(received($ia), atomic('0.2'), '1: the payee received exactly 0.2 XMR');
is(xmr('dsp-a'), '0/0', '1: nothing left on its account');
ledger_ok('1');

# 2. Paid on chain, then refunded: a clawback, repaid by the next earnings.
my $ib = $rt->pay_to($node, 'dsp-b');
sql(q{SELECT compay.set_payout_policy('dsp-b', true, '0', '1 second', '100')});
my $s2 = $rt->earn($node, 'dsp-b', '0.4');
my $p2 = payment_of($s2);
ok(poll(q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'dsp-b'}), '2: 0.4 paid out');
confirmed('2', 'dsp-b');
is(received($ib), atomic('0.4'), '2: the payee received exactly 0.4 XMR');
my $req_before = sql(q{SELECT balance FROM compay.accounts WHERE node_id = 'req' AND currency = 'XMR'});
is(sql(qq{SELECT (compay.dispute_payment($p2, 'never delivered')).status}), 'disputed',
	'2: the paid payment is disputed');
is(sql(qq{SELECT (compay.resolve_dispute($p2, '0.15')).status}), 'refunded',
	'2: the refund of XMR that left on chain succeeds');
is(sql(q{SELECT balance FROM compay.accounts WHERE node_id = 'req' AND currency = 'XMR'}),
	sql(qq{SELECT '$req_before'::compay.credit OPERATOR(compay.+) '0.15'}), '2: the payer has its 0.15 back');
is(sql(q{SELECT compay.clawbacks_owed('dsp-b')}), '0.15', '2: the payee owes 0.15');
is(sql(q{SELECT balance FROM compay.accounts WHERE node_id = '$clawbacks' AND currency = 'XMR'}),
	'-0.15', '2: $clawbacks fronted it');
is(xmr('dsp-b'), '0/0', '2: the payee\'s account is untouched');
ledger_ok('2: clawback');
my $s3 = $rt->earn($node, 'dsp-b', '0.5');
is(sql(q{SELECT compay.clawbacks_owed('dsp-b')}), '0', '2: the next earnings repaid it');
is(sql(qq{SELECT h.amount FROM compay.settlements s JOIN compay.holds h ON h.id = s.earmark_hold_id
  WHERE s.id = $s3}), '0.35', '2: 0.35 of 0.5 is earmarked for payout');
is(sql(q{SELECT amount || ' ' || counterparty FROM compay.history('dsp-b', 'XMR')
  WHERE reference LIKE 'clawback:%'}), '-0.15 $clawbacks', '2: the repayment is in its history');
ok(poll(q{SELECT count(*) = 2 FROM compay.payouts WHERE node_id = 'dsp-b'}), '2: paid out again');
confirmed('2 again', 'dsp-b');
is(received($ib), join(',', sort { $a <=> $b } atomic('0.35'), atomic('0.4')),
	'2: the next payout is 0.35 XMR, smaller by exactly the clawback');
is(xmr('dsp-b'), '0/0', '2: nothing left on its account');
ledger_ok('2');

done_testing();
