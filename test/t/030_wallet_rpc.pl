# The wallet RPC client against a real monero-wallet-rpc on a real local
# regtest (test/monero/regtest.sh): digest login, exact integer amounts, a
# real transfer seen by the provider's wallet, and the failures the client
# must tell apart: a wrong password (HTTP 401), the wallet down (no
# connection), the wallet's own errors (PY015, including the
# {"code":0,"message":""} it gives when its daemon is down).
#
# Run: PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl
#      PATH=/usr/lib/postgresql/15/bin:$PATH
#      PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
#      prove test/t/030_wallet_rpc.pl   (as a non-root user)

use strict;
use warnings;

use CompayRegtest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rt = CompayRegtest->up;
my %env = %{ $rt->{env} };
my $xmr = $rt->{dir};
sub regtest { my ($command, $dir, @args) = @_; return $rt->run($command, @args); }
ok($env{XMR_TREASURY_URL}, "regtest up: treasury at $env{XMR_TREASURY_URL}");

my $node = $rt->node('wallet', "compay.payout_confirmations = 10\nrestart_after_crash = on\n");

sub sql { return $node->safe_psql('postgres', shift); }

# Errors: SQLSTATE and message of a statement expected to fail.
sub sql_error
{
	my ($query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$query", on_error_stop => 1);
	return $rc ? $err : '';
}

# The digest login works; amounts come back as exact integers.
my $balance = sql(q{SELECT compay.wallet_rpc('get_balance')->>'balance'});
like($balance, qr/^\d{16,}$/, "treasury balance $balance, an exact integer above 2^53");
my $direct = regtest('rpc', $xmr, 'treasury', 'get_balance', '{}', '--get', 'result.balance');
is($balance, $direct, 'the same balance as the wallet reports to the test');
is( sql(q{SELECT compay.wallet_rpc('get_address', '{"account_index": 0}')->>'address'}),
	$env{XMR_TREASURY_ADDRESS}, 'the treasury address');
is( sql(qq{SELECT compay.check_monero_address('$env{XMR_PROVIDER_ADDRESS}', 'mainnet')}),
	'standard', 'the provider address is a valid standard (mainnet-format) address');

# compay.wallet_rpc() sends no money by itself: a lost reply could make
# the HTTP client send the request twice.
like( sql_error(
		qq{SELECT compay.wallet_rpc('transfer', jsonb_build_object(
	       'destinations', jsonb_build_array(jsonb_build_object(
	           'amount', 1000000000000, 'address', '$env{XMR_PROVIDER_ADDRESS}'))))}),
	qr/22023.*needs "do_not_relay": true/s, 'a transfer that would send at once: 22023');
like(sql_error(q{SELECT compay.wallet_rpc('sweep_all', '{"do_not_relay": false}')}),
	qr/22023/, 'sweep_all with do_not_relay false: 22023');

# A real transfer of exactly 1 XMR, built, then relayed, seen by the
# provider after 10 blocks.
my ($tx, $metadata) = split /\|/, sql(
	qq{SELECT r->>'tx_hash', r->>'tx_metadata' FROM compay.wallet_rpc('transfer', jsonb_build_object(
	       'destinations', jsonb_build_array(jsonb_build_object(
	           'amount', 1000000000000, 'address', '$env{XMR_PROVIDER_ADDRESS}')),
	       'priority', 0, 'get_tx_key', true, 'do_not_relay', true, 'get_tx_metadata', true)) r});
like($tx, qr/^[0-9a-f]{64}$/, "transfer built: $tx");
is(sql(qq{SELECT compay.wallet_rpc('relay_tx', jsonb_build_object('hex', '$metadata'))->>'tx_hash'}),
	$tx, 'relayed: the same transaction');
regtest('mine', $xmr, 10);
my $in = regtest('rpc', $xmr, 'provider', 'get_transfer_by_txid',
	qq({"txid":"$tx"}), '--get', 'result.transfer.amount');
is($in, '1000000000000', 'the provider received exactly 1 XMR');

# The wallet's own errors are PY015, with its code in the detail.
like(sql_error(q{SELECT compay.wallet_rpc('transfer', '{"destinations": [], "do_not_relay": true}')}),
	qr/PY015.*-20/s, 'no destination: PY015 with the wallet code -20');
like(sql_error(q{SELECT compay.wallet_rpc('no_such_method')}),
	qr/PY015.*-32601/s, 'unknown method: PY015, -32601');
like(sql_error(q{SELECT compay.wallet_rpc('get_balance', '[1]')}),
	qr/22023/, 'params that are not an object: 22023');

# Daemon down: the wallet answers {"code":0,"message":""}, still an error.
regtest('stop-daemon', $xmr);
like(sql_error(qq{SELECT compay.wallet_rpc('get_transfer_by_txid', '{"txid": "$tx"}')}),
	qr/PY015.*"code": 0/s, 'daemon down: an error member with code 0 is a failure');
regtest('start-daemon', $xmr);

# A wrong password: HTTP 401, PY014.
my $bad = "$xmr/wrong.password";
open my $pw, '>', $bad or die;
print $pw "not-the-password\n";
close $pw;
sql(qq{ALTER SYSTEM SET compay.wallet_rpc_password_file = '$bad'});
$node->reload;
like(sql_error(q{SELECT compay.wallet_rpc('get_balance')}),
	qr/PY014.*unauthorized.*401/s, 'wrong password: PY014, HTTP 401');
sql(q{ALTER SYSTEM SET compay.wallet_rpc_password_file = '/nonexistent/compay.password'});
$node->reload;
like(sql_error(q{SELECT compay.wallet_rpc('get_balance')}),
	qr/PY014.*cannot read/s, 'unreadable password file: PY014');
sql(q{ALTER SYSTEM RESET compay.wallet_rpc_password_file});
$node->reload;

# The wallet down: no connection, PY014; back up, it answers again.
regtest('stop-wallet', $xmr, 'treasury');
like(sql_error(q{SELECT compay.wallet_rpc('get_balance')}),
	qr/PY014.*unreachable/s, 'wallet down: PY014 unreachable');
regtest('start-wallet', $xmr, 'treasury');
like(sql(q{SELECT compay.wallet_rpc('get_balance')->>'balance'}),
	qr/^\d+$/, 'wallet back: it answers again');

# A payout, end to end, by the worker: earnings of 0.25 XMR and 0.125 XMR
# of two payees are settled, earmarked, paid in one Monero transaction
# (built, relayed), mined, confirmed; each payee's wallet address receives
# exactly its amount, once.
my $second = regtest('rpc', $xmr, 'provider', 'create_address', '{"account_index":0}',
	'--get', 'result.address');
sql(qq{SELECT compay.set_payout_address('gpu-a', '$env{XMR_PROVIDER_ADDRESS}')});
sql(qq{SELECT compay.set_payout_address('gpu-b', '$second')});
# Two task types priced in XMR, one for each payee's task.
sql(
	q{SELECT compay.admin_deposit('req', '5', 'XMR', 'test funds');
	  INSERT INTO compay.pricing_models (name, currency, base_price)
	  VALUES ('xmr-a', 'XMR', '0.25'), ('xmr-b', 'XMR', '0.125');
	  INSERT INTO compay.task_type_models SELECT 'type-gpu-a', id FROM compay.pricing_models WHERE name = 'xmr-a';
	  INSERT INTO compay.task_type_models SELECT 'type-gpu-b', id FROM compay.pricing_models WHERE name = 'xmr-b';
	  SELECT compay.submit_task('xt-' || n, 'req', n, 'type-' || n)
	  FROM unnest(ARRAY['gpu-a', 'gpu-b']) n;
	  SELECT compay.complete_job('xt-' || n, now() - interval '1 minute', now())
	  FROM unnest(ARRAY['gpu-a', 'gpu-b']) n;
	  SELECT (compay.process_task_payment('xt-' || n, 'crypto')).status
	  FROM unnest(ARRAY['gpu-a', 'gpu-b']) n;});
is( sql(q{SELECT string_agg(to_node || ':' || amount, ',' ORDER BY to_node)
	  FROM compay.payments WHERE currency = 'XMR' AND status = 'completed'}),
	'gpu-a:0.25,gpu-b:0.125', 'two crypto payments');
sql(q{SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '1 hour')});
is( sql(q{SELECT count(*) FROM compay.settlements WHERE currency = 'XMR' AND status = 'processing'}),
	'2', 'two XMR settlements earmarked for payout');
sql(q{SELECT compay.wake_worker()});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM compay.payout_transactions WHERE status = 'relayed'}),
	'the worker built and relayed one transaction for both payees');
my $ptx = sql(q{SELECT tx_hash FROM compay.payout_transactions});
like($ptx, qr/^[0-9a-f]{64}$/, "payout transaction $ptx");
is( sql(q{SELECT string_agg(node_id || ':' || amount, ',' ORDER BY node_id) FROM compay.payouts}),
	'gpu-a:0.25,gpu-b:0.125', 'compay.payouts shows each payee');
is( sql(q{SELECT string_agg(node_id || ':' || balance || '/' || reserved, ',' ORDER BY node_id)
	  FROM compay.accounts WHERE currency = 'XMR' AND node_id IN ('gpu-a', 'gpu-b')}),
	'gpu-a:0/0,gpu-b:0/0', 'the ledger paid the earmarks out');
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok');
regtest('mine', $xmr, 10);
ok( $node->poll_query_until('postgres',
		q{SELECT status = 'confirmed' AND confirmations >= 10 FROM compay.payout_transactions}),
	'confirmed after 10 blocks');
is( sql(q{SELECT count(*) FROM compay.settlements WHERE currency = 'XMR' AND status = 'completed'}),
	'2', 'the XMR settlements are completed');
my $got = regtest('rpc', $xmr, 'provider', 'get_transfers', '{"in":true}');
my @mine = ($got =~ /"txid"\s*:\s*"$ptx"/g);
is(scalar @mine, 2, 'the payout transaction reached the provider wallet, one output per address');
like($got, qr/"amount"\s*:\s*250000000000\b/, 'gpu-a received exactly 0.25 XMR');
like($got, qr/"amount"\s*:\s*125000000000\b/, 'gpu-b received exactly 0.125 XMR');
sql(q{SELECT compay.wake_worker()});
sleep 3;
is(sql(q{SELECT count(*) FROM compay.payout_transactions}), '1', 'nothing is paid twice');

# The payout can be checked on chain, and proved to its payees.
is( sql(q{SELECT string_agg(node_id || ':' || received || ':' || ok, ',' ORDER BY node_id)
	  FROM compay.verify_payout((SELECT min(id) FROM compay.payout_transactions))}),
	'gpu-a:0.25:true,gpu-b:0.125:true', 'verify_payout: check_tx_key confirms each amount');
my $proof = sql(q{SELECT signature FROM compay.payout_proof(
	  (SELECT min(id) FROM compay.payout_transactions), 'payout for gpu-a') WHERE node_id = 'gpu-a'});
like($proof, qr/^OutProof/, 'payout_proof: a proof for the payee');
like( regtest('rpc', $xmr, 'provider', 'check_tx_proof',
		qq({"txid":"$ptx","address":"$env{XMR_PROVIDER_ADDRESS}","message":"payout for gpu-a","signature":"$proof"})),
	qr/"good"\s*:\s*true/, 'the payee wallet accepts the proof');

# A deposit: the provider's wallet sends one transaction with two outputs,
# 0.7 and 0.2 XMR, to a node's deposit subaddress; each output is credited
# once, only after 10 confirmations, and the deposit then escrows an XMR
# job.
my $daddr = sql(q{SELECT compay.deposit_address('depositor')});
is(sql(q{SELECT compay.deposit_address('depositor')}), $daddr, 'one deposit address per node');
is(sql(qq{SELECT compay.check_monero_address('$daddr', 'mainnet')}), 'subaddress',
	'it is a subaddress of the treasury');
my $dtx = regtest('rpc', $xmr, 'provider', 'transfer',
	qq({"destinations":[{"amount":700000000000,"address":"$daddr"},{"amount":200000000000,"address":"$daddr"}],"priority":0}),
	'--get', 'result.tx_hash');
like($dtx, qr/^[0-9a-f]{64}$/, "deposit sent: $dtx");
regtest('mine', $xmr, 3);
sleep 3;
is(sql(q{SELECT count(*) FROM compay.xmr_deposits}), '0', 'not credited with 3 confirmations');
regtest('mine', $xmr, 8);
ok( $node->poll_query_until('postgres',
		q{SELECT balance::text = '0.9' FROM compay.balance('depositor', 'XMR')}),
	'credited 0.9 XMR after 10 confirmations');
is( sql(q{SELECT string_agg(amount::text, ',' ORDER BY amount) || ' ' || count(DISTINCT tx_hash)
		  || ' ' || count(DISTINCT global_index) FROM compay.xmr_deposits}),
	'0.2,0.7 1 2', 'one credit per output: two outputs of one transaction');
my $wpid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'compay settlement worker'});
kill 'KILL', $wpid;
$node->poll_query_until('postgres', 'SELECT 1', '1');
$node->poll_query_until('postgres',
	q{SELECT rounds > 2 FROM compay.worker_status});
is(sql(q{SELECT count(*) || ':' || compay.sum(amount) FROM compay.xmr_deposits}), '2:0.9',
	'after a worker crash and restart, still credited once');
is(sql(q{SELECT balance FROM compay.balance('depositor', 'XMR')}), '0.9', 'balance 0.9 XMR');
ok(sql(q{SELECT compay.submit_job('xmr-job', 'depositor', 'Fine-tuning', '0.5') > 0}),
	'the deposit escrows an XMR job');
is(sql(q{SELECT bool_and(ok) FROM compay.verify_ledger()}), 't', 'verify_ledger() ok');

# Only a superuser may call it.
sql(q{CREATE ROLE app LOGIN IN ROLE compay_app});
like(sql_error(q{SET ROLE app; SELECT compay.wallet_rpc('get_balance')}),
	qr/42501/, 'compay_app cannot call the wallet directly');
like(sql_error(q{SET ROLE app; SHOW compay.wallet_rpc_password_file}),
	qr/42501/, 'only a superuser may read where the password is');

$node->stop;
done_testing();
