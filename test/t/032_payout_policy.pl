# The payout policy and the wallet's failures, against the real regtest
# wallet.  Each case pays its own payees, each at its own subaddress of the
# provider wallet, mines, and then checks what each subaddress received:
# exactly the amounts, once; and compay.verify_ledger() after each case.
#
#  1. Minimum: 0.005 XMR settled (below the default 0.01) is not paid; with
#     0.007 more it is paid, the total in one output.
#  2. Daily cap: of two settlements of 0.2 under a cap of 0.3, 0.3 is paid
#     (the first and 0.1 of the second: a settlement is split at the cap),
#     the 0.1 left waits (processing, earmarked) after the interval has
#     passed, until the cap is raised.  Interval: a payee whose last
#     payout is recent is paid again only when its payout_interval (10 s)
#     has passed; one with the default 24 h is not paid again.
#  3. Batching: 20 payees at once are paid by two transactions, 15 + 5,
#     which spend different inputs (no key image in both).
#  4. Wallet down: the payout stays queued, last_error "unreachable",
#     nothing lost; the wallet back, it is relayed and confirmed, once.
#  5. Daemon down: the wallet refuses the transfer (an error member), the
#     payout fails and its settlements are queued again, after a backoff;
#     the daemon back, a new payout is made and confirmed; one output in all.
#
# Run: PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl:test/t
#      PATH=/usr/lib/postgresql/15/bin:$PATH
#      PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
#      prove test/t/032_payout_policy.pl   (as a non-root user)

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $confirmations = 3;
my $started = time;
my $rt = CompayRegtest->up;
my $node = $rt->node('policy', "compay.payout_confirmations = $confirmations\n");
note(sprintf('regtest and node up in %.1f s', time - $started));

sub sql { return $node->safe_psql('postgres', shift); }

sub poll { return $node->poll_query_until('postgres', @_); }

# 1e12 atomic units per XMR, as text (no floating point).
sub atomic
{
	my ($xmr) = @_;
	my ($int, $frac) = split /\./, $xmr;
	$frac = substr(($frac // '') . ('0' x 12), 0, 12);
	my $a = ($int . $frac) =~ s/^0+(?=\d)//r;
	return $a;
}

# A payee: its own subaddress of the provider wallet, set as its payout
# address.  Returns the subaddress index.
sub payee { return $rt->pay_to($node, shift); }

# Earnings of a payee (CompayRegtest: earn): each call makes a settlement
# of its own, as the payments before it are settled already; returns its id.
sub earn
{
	my ($payee, $amount) = @_;
	return $rt->earn($node, $payee, $amount);
}

# Outputs the provider wallet received at a subaddress index, sorted.
sub received
{
	return join(',', sort { $a <=> $b } map { $_->{amount} } $rt->incoming(shift));
}

# Lets the worker run at least n more rounds (each queues payouts).
sub wait_rounds
{
	my ($count) = @_;
	my $rounds = sql(q{SELECT rounds FROM compay.worker_status});
	poll(qq{SELECT rounds >= $rounds + $count FROM compay.worker_status});
}

sub status_of
{
	my ($payee) = @_;
	return sql(qq{SELECT string_agg(status::text, ',' ORDER BY payout_id) FROM compay.payouts
	  WHERE node_id = '$payee'});
}

# A settlement's status and payout, as "status/payout_id" (payout_id empty if NULL).
sub settlement
{
	my ($id) = @_;
	return sql(qq{SELECT status || '/' || coalesce(payout_id::text, '') FROM compay.settlements WHERE id = $id});
}

sub ledger_ok
{
	my ($what) = @_;
	is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', "$what: verify_ledger() ok")
	  or diag(sql(q{SELECT check_name || ': ' || detail FROM compay.verify_ledger() WHERE NOT ok}));
}

# Every payout of these payees relayed; mined; confirmed.
sub relay_mine_confirm
{
	my ($what, @payees) = @_;
	my $in = join(',', map { "'$_'" } @payees);
	ok(poll(qq{SELECT bool_and(status IN ('relayed', 'confirmed')) FROM compay.payouts
	  WHERE node_id IN ($in) AND status <> 'failed'}), "$what: relayed")
	  or diag(payout_rows($in));
	$rt->run('mine', $confirmations);
	ok(poll(qq{SELECT bool_and(status = 'confirmed') FROM compay.payouts
	  WHERE node_id IN ($in) AND status <> 'failed'}), "$what: confirmed")
	  or diag(payout_rows($in));
}

# The payout transactions of these payees, for a failure's diagnostics.
sub payout_rows
{
	my ($in) = @_;
	return sql(qq{SELECT id || ' ' || status || ' tx ' || coalesce(tx_hash, '-') || ' attempts '
	  || attempts || ' error ' || coalesce(last_error, '-') || ' key images '
	  || coalesce(array_to_string(key_images, ' '), '-')
	  FROM compay.payout_transactions WHERE id IN
	    (SELECT payout_id FROM compay.payout_items WHERE node_id IN ($in)) ORDER BY id});
}

sub timed
{
	my ($what, $code) = @_;
	my $t = time;
	$code->();
	note(sprintf('%s took %.1f s', $what, time - $t));
}

# 1. Minimum payout.
timed('case 1 (minimum)', sub {
	my $i = payee('min-a');
	my $s1 = earn('min-a', '0.005');
	is(settlement($s1), 'processing/', '1: 0.005 XMR settled and earmarked');
	wait_rounds(3);
	is(sql(q{SELECT count(*) FROM compay.payout_items WHERE node_id = 'min-a'}), '0',
		'1: below the minimum of 0.01: no payout queued');
	is(settlement($s1), 'processing/', '1: the settlement waits');
	my $s2 = earn('min-a', '0.007');
	ok(poll(q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'min-a'}),
		'1: 0.012 in all: a payout is queued');
	is( sql(q{SELECT amount || ' ' || array_length(settlement_ids, 1) FROM compay.payout_items
		  WHERE node_id = 'min-a'}),
		'0.012 2', '1: one payout item of 0.012, both settlements');
	relay_mine_confirm('1', 'min-a');
	is(received($i), atomic('0.012'), '1: the payee received exactly 0.012 XMR in one output');
	is(sql(qq{SELECT string_agg(status::text, ',' ORDER BY id) FROM compay.settlements WHERE id IN ($s1, $s2)}),
		'completed,completed', '1: both settlements completed');
	is( sql(q{SELECT balance || '/' || reserved FROM compay.accounts WHERE node_id = 'min-a' AND currency = 'XMR'}),
		'0/0', '1: nothing left on the account');
	ledger_ok('1');
});

# 2a. Daily cap.  Both settlements exist before the payee may be paid, so
# what holds the second back is the cap, not the interval.
timed('case 2a (daily cap)', sub {
	my $i = payee('cap-a');
	sql(q{SELECT compay.set_payout_policy('cap-a', false, NULL, '2 seconds', '0.3')});
	my $s1 = earn('cap-a', '0.2');
	my $s2 = earn('cap-a', '0.2');
	isnt($s1, $s2, '2a: two settlements');
	wait_rounds(2);
	is(sql(q{SELECT count(*) FROM compay.payout_items WHERE node_id = 'cap-a'}), '0',
		'2a: auto_payout off: nothing queued');
	sql(q{SELECT compay.set_payout_policy('cap-a', true, NULL, '2 seconds', '0.3')});
	ok(poll(q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'cap-a'}), '2a: one payout queued');
	is(sql(q{SELECT amount FROM compay.payout_items WHERE node_id = 'cap-a'}), '0.3',
		'2a: of 0.3, the cap');
	is(sql(qq{SELECT string_agg(settlement_id || ':' || amount, ',' ORDER BY settlement_id)
	  FROM compay.payout_parts WHERE node_id = 'cap-a'}), "$s1:0.2,$s2:0.1",
		'2a: the first settlement and 0.1 of the second');
	like(settlement($s1), qr{^processing/\d+$}, '2a: the first settlement is paid');
	relay_mine_confirm('2a', 'cap-a');
	like(settlement($s1), qr{^completed/\d+$}, '2a: the first settlement completed');
	like(settlement($s2), qr{^processing/\d+$}, '2a: the second, paid in part, is still processing');
	# Past the 2 s interval the cap alone holds the second back.
	ok(poll(q{SELECT now() > max(created_at) + interval '3 seconds' FROM compay.payouts WHERE node_id = 'cap-a'}),
		'2a: the interval has passed');
	wait_rounds(3);
	is(sql(q{SELECT count(*) FROM compay.payout_items WHERE node_id = 'cap-a'}), '1',
		'2a: 0.3 paid today is the cap of 0.3: the 0.1 left waits');
	is(received($i), atomic('0.3'), '2a: the payee received exactly 0.3 XMR');
	is( sql(q{SELECT balance || '/' || reserved FROM compay.accounts WHERE node_id = 'cap-a' AND currency = 'XMR'}),
		'0.1/0.1', '2a: the 0.1 left stays earmarked');
	ledger_ok('2a: waiting');
	# A cap of 0.5 lets the rest through, once.
	sql(q{SELECT compay.set_payout_policy('cap-a', true, NULL, '2 seconds', '0.5')});
	ok(poll(q{SELECT count(*) = 2 FROM compay.payouts WHERE node_id = 'cap-a'}), '2a: cap raised: paid');
	relay_mine_confirm('2a raised', 'cap-a');
	is(received($i), join(',', atomic('0.1'), atomic('0.3')), '2a: outputs of 0.3 and 0.1 XMR in all');
	like(settlement($s2), qr{^completed/\d+$}, '2a: the second settlement completed');
	ledger_ok('2a');
});

# 2b. Interval since the last payout: 10 seconds against the default 24 hours.
timed('case 2b (interval)', sub {
	my $ia = payee('int-a');
	my $ib = payee('int-b');
	sql(q{SELECT compay.set_payout_policy('int-a', true, NULL, '10 seconds', NULL)});
	earn('int-a', '0.05');
	earn('int-b', '0.04');
	ok(poll(q{SELECT count(*) = 2 FROM compay.payouts WHERE node_id IN ('int-a', 'int-b')}),
		'2b: first payouts of both queued');
	relay_mine_confirm('2b first', 'int-a', 'int-b');
	my $sa = earn('int-a', '0.03');
	my $sb = earn('int-b', '0.02');
	ok(poll(q{SELECT count(*) = 2 FROM compay.payouts WHERE node_id = 'int-a'}),
		'2b: int-a is paid again');
	is( sql(q{SELECT max(created_at) - min(created_at) >= interval '10 seconds' FROM compay.payouts
		  WHERE node_id = 'int-a'}),
		't', '2b: not before its 10 s interval had passed');
	wait_rounds(2);
	is(sql(q{SELECT count(*) FROM compay.payout_items WHERE node_id = 'int-b'}), '1',
		'2b: int-b (24 h interval) is not paid again');
	is(settlement($sb), 'processing/', '2b: its settlement waits');
	relay_mine_confirm('2b second', 'int-a');
	is(received($ia), join(',', atomic('0.03'), atomic('0.05')), '2b: int-a received 0.05 and 0.03 XMR');
	is(received($ib), atomic('0.04'), '2b: int-b received 0.04 XMR only');
	like(settlement($sa), qr{^completed/\d+$}, '2b: int-a second settlement completed');
	ledger_ok('2b');
});

# 3. Batching: 20 payees, at most 15 a transaction.
timed('case 3 (batching)', sub {
	my (%index, %amount);
	for my $k (1 .. 20)
	{
		my $p = sprintf('batch-%02d', $k);
		$index{$p} = payee($p);
		$amount{$p} = sprintf('0.%03d', 10 + $k);
		# Held back until all are settled, so one queueing sees all 20.
		sql(qq{SELECT compay.set_payout_policy('$p', false, NULL, NULL, NULL)});
		earn($p, $amount{$p});
	}
	sql(q{SELECT compay.set_payout_policy(node_id, true, NULL, NULL, NULL)
	  FROM compay.payout_policies WHERE node_id LIKE 'batch-%'});
	ok(poll(q{SELECT count(*) = 20 FROM compay.payout_items WHERE node_id LIKE 'batch-%'}),
		'3: all 20 queued');
	is( sql(q{SELECT string_agg(c::text, ',' ORDER BY payout_id) FROM
		  (SELECT payout_id, count(*) AS c FROM compay.payout_items WHERE node_id LIKE 'batch-%'
		   GROUP BY payout_id) s}),
		'15,5', '3: two payout transactions, of 15 and 5 payees');
	is( sql(q{SELECT string_agg(p.amount::text, ',' ORDER BY p.id) FROM compay.payout_transactions p
		  WHERE p.id IN (SELECT payout_id FROM compay.payout_items WHERE node_id LIKE 'batch-%')}),
		'0.27,0.14', '3: each transaction the sum of its items');
	relay_mine_confirm('3', sort keys %amount);
	is( sql(q{SELECT count(*) FROM (SELECT k FROM compay.payout_transactions, unnest(key_images) k
		  WHERE status <> 'failed' GROUP BY k HAVING count(*) > 1) d}),
		'0', '3: no two payouts spend the same key image');
	is( sql(q{SELECT count(DISTINCT tx_hash) FROM compay.payouts WHERE node_id LIKE 'batch-%'}),
		'2', '3: two Monero transactions');
	my @wrong = grep { received($index{$_}) ne atomic($amount{$_}) } sort keys %amount;
	is("@wrong", '', '3: each of the 20 payees received exactly its amount, once');
	is( sql(q{SELECT count(*) FROM compay.settlements WHERE payee LIKE 'batch-%' AND status = 'completed'}),
		'20', '3: the 20 settlements completed');
	ledger_ok('3');
});

# 4. The treasury wallet down.
timed('case 4 (wallet down)', sub {
	my $i = payee('down-a');
	$rt->run('stop-wallet', 'treasury');
	my $s = earn('down-a', '0.09');
	ok(poll(q{SELECT count(*) = 1 FROM compay.payout_transactions p JOIN compay.payout_items i
		  ON i.payout_id = p.id WHERE i.node_id = 'down-a' AND p.status = 'queued'
		  AND p.last_error LIKE '%unreachable%'}),
		'4: the payout stays queued, last_error unreachable');
	note('4: ' . sql(q{SELECT p.attempts || ' attempt(s): ' || p.last_error FROM compay.payout_transactions p
		  JOIN compay.payout_items i ON i.payout_id = p.id WHERE i.node_id = 'down-a'}));
	like(settlement($s), qr{^processing/\d+$}, '4: the settlement stays with its payout');
	is( sql(q{SELECT balance || '/' || reserved FROM compay.accounts WHERE node_id = 'down-a' AND currency = 'XMR'}),
		'0.09/0.09', '4: the earnings still earmarked');
	ledger_ok('4: wallet down');
	$rt->run('start-wallet', 'treasury');
	relay_mine_confirm('4', 'down-a');
	is(status_of('down-a'), 'confirmed', '4: one payout, confirmed');
	is(received($i), atomic('0.09'), '4: the payee received exactly 0.09 XMR in one output');
	like(settlement($s), qr{^completed/\d+$}, '4: the settlement completed');
	ledger_ok('4');
});

# 5. The daemon down while building: the wallet answers transfer with an
# error member; nothing can have been sent (do_not_relay).
timed('case 5 (daemon down)', sub {
	my $i = payee('dmn-a');
	$rt->run('stop-daemon');
	my $s = earn('dmn-a', '0.08');
	ok(poll(q{SELECT count(*) >= 1 FROM compay.payouts WHERE node_id = 'dmn-a' AND status = 'failed'}),
		'5: the payout failed');
	my $error = sql(q{SELECT last_error FROM compay.payout_transactions WHERE id =
	  (SELECT min(payout_id) FROM compay.payouts WHERE node_id = 'dmn-a' AND status = 'failed')});
	note("5: first failure: $error");
	like($error, qr/wallet error/, '5: a wallet error member');
	ok(poll(qq{SELECT payout_id IS NULL AND status = 'processing' FROM compay.settlements WHERE id = $s}),
		'5: the settlement is queued again (processing, no payout)');
	is( sql(q{SELECT count(*) FROM compay.settlements s JOIN compay.payout_transactions p ON p.id = s.payout_id
		  WHERE s.payee = 'dmn-a' AND p.status = 'failed'}),
		'0', '5: no settlement is left on a failed payout');
	is( sql(q{SELECT count(*) FROM compay.payout_transactions p JOIN compay.payout_items i ON i.payout_id = p.id
		  WHERE i.node_id = 'dmn-a' AND p.status = 'failed' AND (p.tx_hash IS NOT NULL OR p.built_at IS NOT NULL)}),
		'0', '5: the failed payouts were never built');
	is( sql(q{SELECT balance || '/' || reserved FROM compay.accounts WHERE node_id = 'dmn-a' AND currency = 'XMR'}),
		'0.08/0.08', '5: the earnings still earmarked');
	ledger_ok('5: daemon down');
	# How often it is tried again while the daemon stays down.
	my $before = sql(q{SELECT count(*) FROM compay.payouts WHERE node_id = 'dmn-a'});
	sleep 5;
	my $after = sql(q{SELECT count(*) FROM compay.payouts WHERE node_id = 'dmn-a'});
	note("5: payouts of dmn-a: $before, 5 s later $after");
	cmp_ok($after - $before, '<=', 1, '5: a failed payout is queued again only after a backoff');
	$rt->run('start-daemon');
	ok(poll(q{SELECT count(*) = 1 FROM compay.payouts WHERE node_id = 'dmn-a' AND status IN ('relayed', 'confirmed')}),
		'5: a new payout relayed');
	relay_mine_confirm('5', 'dmn-a');
	is(received($i), atomic('0.08'), '5: the payee received exactly 0.08 XMR in one output');
	is( sql(q{SELECT count(*) FROM compay.payouts WHERE node_id = 'dmn-a' AND status <> 'failed'}),
		'1', '5: one payout that did not fail');
	like(settlement($s), qr{^completed/\d+$}, '5: the settlement completed');
	note('5: ' . sql(q{SELECT count(*) FROM compay.payouts WHERE node_id = 'dmn-a' AND status = 'failed'})
		  . ' failed payout(s) in all');
	ledger_ok('5');
});

is(sql(q{SELECT count(*) FROM compay.payout_transactions WHERE status IN ('queued', 'built', 'relayed')}),
	'0', 'no payout left open');
note(sprintf('all cases in %.1f s', time - $started));
$node->stop;
done_testing();
