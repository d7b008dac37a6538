# The operator's wallet tools and compay.diagnose() on a real local Monero
# regtest (test/monero/regtest.sh):
#  1. wallet_balance() and the daemon agree; a payout made by the worker
#     is seen by wallet_transfers() (out, its payout id) and verify_tx()
#     (ours, its payee, amount received by the tx key, its settlement, on
#     chain with its confirmations); an unknown tx is not ours; a payout
#     built and not relayed is ours and not sent, then in the pool.
#  2. diagnose() is ok in every check with a healthy wallet and worker.
#  3. Worker disabled and the wallet not refreshing while the daemon mines:
#     runner fail, wallet sync warn (blocks behind).
#  4. A queued payout larger than the balance: unlocked balance fail,
#     payouts warn with the stuck payout.
#  5. The wallet stopped: wallet fail, the checks that need it warn,
#     wallet_balance() raises PY014; started again: the wallet is ok.
# The ledger verifies at the end.

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rt = CompayRegtest->up;
my $node = $rt->node('tools', "compay.payout_confirmations = 2\n");

sub sql { return $node->safe_psql('postgres', 'SET search_path = public, compay; ' . shift); }
sub poll { return $node->poll_query_until('postgres', @_); }

sub diagnose
{
	return sql(q{SELECT string_agg(name || '=' || status, ',' ORDER BY ord)
	  FROM compay.diagnose() WITH ORDINALITY AS d(name, status, advice, detail, ord)});
}

# 1. Balance, a real payout, transfers, verify_tx.
is( sql(q{SELECT balance > '0' AND unlocked_balance > '0' AND unlocked_balance <= balance
	  AND wallet_height = (compay.daemon_rpc('/get_height')->>'height')::bigint
	  FROM compay.wallet_balance()}),
	't', '1: wallet_balance: a balance, unlocked part of it, at the daemon height');

$rt->pay_to($node, 'wt-payee');
my $settlement = $rt->earn($node, 'wt-payee', '0.1');
ok(poll(q{SELECT status IN ('relayed', 'confirmed') FROM compay.payouts WHERE node_id = 'wt-payee'}),
	'1: the worker relays the payout')
  or diag(sql(q{SELECT id || ' ' || status || ' ' || coalesce(last_error, '-') FROM compay.payout_transactions}));
my ($payout, $tx) = split /\|/, sql(q{SELECT payout_id, tx_hash FROM compay.payouts WHERE node_id = 'wt-payee'});
$rt->run('mine', 2);
ok(poll(q{SELECT status = 'confirmed' FROM compay.payouts WHERE node_id = 'wt-payee'}), '1: confirmed');

is( sql(qq{SELECT ours, payout_id = $payout, payout_status, location, height > 0, confirmations >= 2,
	  tx_fee > '0', node_id, amount, received, settlement_ids = '{$settlement}'
	  FROM compay.verify_tx(upper('$tx'))}),
	"t|t|confirmed|chain|t|t|t|wt-payee|0.1|0.1|t",
	'1: verify_tx: ours, the payout, its payee, 0.1 received by the tx key, its settlement, on chain');
is( sql(q{SELECT direction || ' ' || kind || ' ' || amount || ' ' || (fee > '0') || ' ' || confirmations
	  FROM compay.wallet_transfers(20) WHERE payout_id = } . $payout),
	'out out 0.1 true 2', '1: wallet_transfers: the payout, out, 0.1 XMR, its fee and confirmations')
  or diag(sql(q{SELECT * FROM compay.wallet_transfers(5)}));
is(sql(q{SELECT count(*) FROM compay.wallet_transfers(3)}), '3', '1: wallet_transfers: at most max_rows');
is( sql(q{SELECT ours, payout_id IS NULL, location, node_id IS NULL FROM compay.verify_tx(repeat('ab', 32))}),
	'f|t|unknown|t', '1: verify_tx: an unknown tx is not ours, nowhere');

# A payout built, not relayed (payout_auto_relay off): nobody knows it yet.
$rt->set($node, 'compay.payout_auto_relay', 'off');
$rt->pay_to($node, 'wt-held');
$rt->earn($node, 'wt-held', '0.05');
ok(poll(q{SELECT status = 'built' FROM compay.payouts WHERE node_id = 'wt-held'}), '1: a payout is built, not relayed');
my $held = sql(q{SELECT tx_hash FROM compay.payouts WHERE node_id = 'wt-held'});
is(sql(qq{SELECT ours, payout_status, location, node_id, amount, received IS NULL FROM compay.verify_tx('$held')}),
	't|built|not sent|wt-held|0.05|t', '1: verify_tx: ours, built, not sent, nothing received');
is(sql(q{SELECT status FROM compay.diagnose() WHERE name = 'settings'}), 'warn',
	'1: diagnose: settings warn while payout_auto_relay is off');
$rt->set($node, 'compay.payout_auto_relay', 'on');
ok(poll(q{SELECT status = 'relayed' FROM compay.payouts WHERE node_id = 'wt-held'}), '1: relayed once on again');
is(sql(qq{SELECT location || ' ' || received FROM compay.verify_tx('$held')}), 'pool 0.05',
	'1: verify_tx: in the pool, 0.05 received by the tx key');
$rt->run('mine', 2);
ok(poll(q{SELECT status = 'confirmed' FROM compay.payouts WHERE node_id = 'wt-held'}), '1: confirmed');

# 2. Healthy.
is(diagnose(),
	'runner=ok,wallet=ok,wallet sync=ok,unlocked balance=ok,payouts=ok,settlements=ok,ledger=ok,settings=ok,subaddresses=ok',
	'2: diagnose: every check ok')
  or diag(sql(q{SELECT name || ': ' || status || ': ' || coalesce(detail, '') FROM compay.diagnose()}));

# 3. The worker disabled (it would refresh the wallet) and the wallet's
# auto refresh off while the daemon mines 5 blocks: the wallet's height
# stays behind, as when it lost its daemon.
$rt->set($node, 'compay.worker_enabled', 'off');
ok(poll(q{SELECT state = 'disabled' FROM compay.worker_status}), '3: the worker is disabled');
$rt->rpc('treasury', 'auto_refresh', '{"enable":false}');
# The daemon's generateblocks, not regtest.sh mine (which refreshes the wallets).
$rt->rpc('daemon', 'generateblocks',
	qq{{"amount_of_blocks":5,"wallet_address":"$rt->{env}{XMR_TREASURY_ADDRESS}","starting_nonce":0}});
my %d = map { split /\|/, $_, 2 } split /\n/,
  sql(q{SELECT name, status || '|' || coalesce(detail, '') FROM compay.diagnose()});
like($d{runner}, qr/^fail\|worker disabled, no pg_cron job/, '3: runner fail: the worker is disabled');
like($d{'wallet sync'}, qr/^warn\|wallet height \d+, daemon height \d+: ([5-9]|\d\d+) blocks behind$/,
	'3: wallet sync warn: at least 5 blocks behind the daemon');
like($d{wallet}, qr/^ok\|/, '3: the wallet itself answers');
$rt->rpc('treasury', 'auto_refresh', '{"enable":true}');
$rt->rpc('treasury', 'refresh');
like(sql(q{SELECT status FROM compay.diagnose() WHERE name = 'wallet sync'}), qr/^ok$/,
	'3: refreshed, the wallet is synced again');

# 4. A queued payout larger than the whole balance (the worker is off).
$rt->pay_to($node, 'wt-big');
sql(q{SELECT compay.set_payout_policy('wt-big', true, '0.01', '1 minute', '10000000')});
$rt->earn($node, 'wt-big', '1000000');
is(sql(q{SELECT compay.queue_payouts()}), '1', '4: a payout of 1000000 XMR is queued');
%d = map { split /\|/, $_, 2 } split /\n/,
  sql(q{SELECT name, status || '|' || coalesce(detail, '') FROM compay.diagnose()});
like($d{'unlocked balance'}, qr/^fail\|unlocked [\d.]+ XMR of [\d.]+ XMR, queued 1000000 XMR$/,
	'4: unlocked balance fail: the balance does not cover the queued payout');
my $big = sql(q{SELECT max(id) FROM compay.payout_transactions});
like($d{payouts}, qr/^warn\|payout $big: the wallet's unlocked balance \([\d.]+ XMR\) does not cover it: 1000000 XMR are queued up to it$/,
	'4: payouts warn: the queued payout is stuck, with its reason');
is(sql(qq{SELECT status || ' ' || amount || ' ' || payees FROM compay.pending_payouts WHERE payout_id = $big}),
	'queued 1000000 1', '4: pending_payouts lists it');

# 5. The wallet stopped.
$rt->run('stop-wallet', 'treasury');
%d = map { split /\|/, $_, 2 } split /\n/,
  sql(q{SELECT name, status || '|' || coalesce(detail, '') FROM compay.diagnose()});
like($d{wallet}, qr/^fail\|wallet RPC unreachable: /, '5: wallet fail: unreachable');
like($d{'wallet sync'}, qr/^warn\|$/, '5: wallet sync warn: cannot compare');
like($d{'unlocked balance'}, qr/^warn\|queued 1000000 XMR$/, '5: unlocked balance warn: cannot read');
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT * FROM compay.wallet_balance()},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/PY014/, '5: wallet_balance() raises PY014');
($ret, $out, $err) = $node->psql('postgres', qq{SELECT * FROM compay.verify_tx('$tx')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/PY014/, '5: verify_tx() raises PY014 rather than saying not ours');
$rt->run('start-wallet', 'treasury');
is(sql(q{SELECT status FROM compay.diagnose() WHERE name = 'wallet'}), 'ok', '5: started again: wallet ok');

is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok');

done_testing();
