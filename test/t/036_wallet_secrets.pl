# The wallet's secrets and its replies (issue 11, item 8), against a stub
# wallet: test/monero/fault_proxy.pl in "canned" mode answers every call
# with a body the test writes (a real wallet never sends invalid UTF-8 or
# a malformed address on demand).  No real wallet is needed.
#
#  1. compay.wallet_rpc_url, compay.wallet_rpc_user and
#     compay.daemon_rpc_url: SHOW and current_setting() are 42501 for
#     compay_app and compay_reader, readable by a superuser.
#  2. An unreadable password file: PY014 without its path (the path is in
#     the server log only), for compay_app through deposit_address() and
#     for a superuser.
#  3. payout_transactions.tx_key and tx_metadata: 42501 for compay_reader
#     and compay_app, readable by compay_admin; the other columns and the
#     compay.payouts view still readable by compay_reader.
#  4. Wallet replies checked before anything is stored:
#     a. invalid UTF-8: PY014 "bad reply", nothing stored;
#     b. create_address answering no address, a standard address, an
#        address that is not one, or address_index 0: PY015, nothing
#        stored; a good reply is stored;
#     c. record_payout_built with a tx hash, tx key, metadata or key image
#        that is not hexadecimal: PY015; record_deposits with a bad tx
#        hash: PY015, nothing credited.
#
# Run: as test/t/035_wallet_slow.pl.

use strict;
use warnings;

use CompayFaultProxy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $proxy = CompayFaultProxy->start(1, '036');
$proxy->set_mode('canned');

my $node = PostgreSQL::Test::Cluster->new('secrets');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'compay'
compay.database = 'postgres'
compay.worker_enabled = off
compay.wallet_rpc_url = 'http://127.0.0.1:$proxy->{port}'
compay.daemon_rpc_url = 'http://127.0.0.1:1'
});
$node->start;

sub sql { return $node->safe_psql('postgres', shift); }

# SQLSTATE and message of a statement expected to fail; '' if it worked.
sub sql_error
{
	my ($query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$query", on_error_stop => 1);
	return $rc ? $err : '';
}

sql(q{CREATE EXTENSION compay;
  CREATE ROLE app LOGIN IN ROLE compay_app;
  CREATE ROLE reader LOGIN IN ROLE compay_reader;
  CREATE ROLE admin LOGIN IN ROLE compay_admin});

my $subaddress = '87uLzB6ynrvKyBeU5FLigJDdfYCMN9YueeFZH3S6XWhqTAD84p1CYZwHTQribxUCAvGParmc6hZPNEzfDMve9k5DESF2ucw';
my $standard = '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1';

sub reply { return '{"jsonrpc":"2.0","id":"0","result":' . shift() . '}'; }

# 1. The wallet settings.
for my $setting (qw(compay.wallet_rpc_url compay.wallet_rpc_user compay.daemon_rpc_url))
{
	for my $role (qw(app reader))
	{
		like(sql_error(qq{SET ROLE $role; SHOW $setting}), qr/42501/,
			"1: SHOW $setting as $role: 42501");
		like(sql_error(qq{SET ROLE $role; SELECT current_setting('$setting')}), qr/42501/,
			"1: current_setting('$setting') as $role: 42501");
	}
}
is(sql(q{SHOW compay.wallet_rpc_url}), "http://127.0.0.1:$proxy->{port}",
	'1: a superuser reads compay.wallet_rpc_url');
is(sql(q{SELECT count(*) FROM pg_settings WHERE name = 'compay.wallet_rpc_url'}), '1',
	'1: a superuser sees it in pg_settings');
{
	my ($rc, $out) = $node->psql('postgres',
		q{SET ROLE app; SELECT count(*) FROM pg_settings WHERE name LIKE 'compay.%rpc_u%'});
	is($out, '0', '1: compay_app does not see the wallet settings in pg_settings');
}

# 2. An unreadable password file.
my $secret_path = '/nonexistent/secret-dir/compay-wallet.password';
sql(qq{ALTER SYSTEM SET compay.wallet_rpc_user = 'payout';
  ALTER SYSTEM SET compay.wallet_rpc_password_file = '$secret_path'});
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('compay.wallet_rpc_user')}, 'payout');
my $log_offset = -s $node->logfile;
my $err = sql_error(q{SET ROLE app; SET client_min_messages = debug5;
  SELECT compay.deposit_address('secret-node')});
like($err, qr/PY014: wallet RPC unauthorized: cannot read compay\.wallet_rpc_password_file: No such file/,
	'2: compay_app through deposit_address(): PY014, the file cannot be read');
unlike($err, qr/secret-dir/, '2: ... without its path, even at client_min_messages debug5');
unlike(sql_error(q{SELECT compay.wallet_rpc('get_balance')}), qr/secret-dir/,
	'2: nor for a superuser');
ok($node->wait_for_log(qr/cannot read compay\.wallet_rpc_password_file "\Q$secret_path\E"/,
		$log_offset),
	'2: the path is in the server log');
sql(q{ALTER SYSTEM RESET compay.wallet_rpc_user; ALTER SYSTEM RESET compay.wallet_rpc_password_file});
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('compay.wallet_rpc_user')}, '');

# 3. tx_key and tx_metadata.
sql(q{INSERT INTO compay.payout_transactions (status, amount, fee, tx_hash, tx_key, tx_metadata)
  VALUES ('relayed', '0.1', '0.001', repeat('a', 64), repeat('b', 64), 'cafe');
  INSERT INTO compay.payout_items (payout_id, node_id, address, amount, settlement_ids)
  SELECT id, 'payee', 'x', '0.1', '{}' FROM compay.payout_transactions});
for my $role (qw(reader app))
{
	for my $column (qw(tx_key tx_metadata))
	{
		like(sql_error(qq{SET ROLE $role; SELECT $column FROM compay.payout_transactions}),
			qr/42501: permission denied for table payout_transactions/,
			"3: $role cannot read $column: 42501");
	}
	like(sql_error(qq{SET ROLE $role; SELECT * FROM compay.payout_transactions}),
		qr/42501/, "3: nor SELECT * as $role");
}
is(sql(q{SET ROLE reader; SELECT status || ' ' || tx_hash || ' ' || confirmations
  FROM compay.payout_transactions}), 'relayed ' . ('a' x 64) . ' 0',
	'3: compay_reader reads the other columns');
is(sql(q{SET ROLE reader; SELECT node_id || ' ' || amount || ' ' || status FROM compay.payouts}),
	'payee 0.1 relayed', '3: compay_reader reads the compay.payouts view');
is(sql(q{SET ROLE admin; SELECT tx_key || ' ' || tx_metadata FROM compay.payout_transactions}),
	('b' x 64) . ' cafe', '3: compay_admin reads tx_key and tx_metadata');

# 4a. A reply that is not valid UTF-8.
$proxy->set_reply(reply(qq({"address":"8\xff\xfe","address_index":1})));
like(sql_error(q{SET ROLE app; SELECT compay.deposit_address('utf8-node')}),
	qr/PY014: wallet RPC bad reply: the reply is not valid UTF8 text/,
	'4a: invalid UTF-8 from create_address: PY014 bad reply');
like(sql_error(q{SELECT compay.wallet_rpc('get_address')}),
	qr/PY014: wallet RPC bad reply: the reply is not valid UTF8 text/,
	'4a: and from any call: PY014 bad reply');
$proxy->set_reply(reply(qq({"address":"8abc\x00def","address_index":1})));
like(sql_error(q{SELECT compay.wallet_rpc('get_address')}),
	qr/PY014: wallet RPC bad reply: the reply is not valid UTF8 text/,
	'4a: a NUL byte in the reply: PY014 bad reply');

# 4b. create_address answering nonsense.  Each refused call counted a
# create_address call, so the next would first look for an orphan with
# get_address (src/deposit.sql): the check is marked done before each, so
# that every call goes straight to create_address.
sub orphan_check_done
{
	sql(q{INSERT INTO compay.deposit_scan (scanned_height, checked_calls)
		  SELECT 0, last_value FROM compay.deposit_address_calls
		  ON CONFLICT (wallet) DO UPDATE SET checked_calls = excluded.checked_calls});
	return;
}
my %bad = (
	'no address' => '{"address_index":3}',
	'a number for an address' => '{"address":8,"address_index":3}',
	'a standard address' => qq({"address":"$standard","address_index":3}),
	'an address that is not one' => '{"address":"8notAnAddress","address_index":3}',
	'address_index 0' => qq({"address":"$subaddress","address_index":0}),
	'a text address_index' => qq({"address":"$subaddress","address_index":"three"}),);
for my $case (sort keys %bad)
{
	orphan_check_done();
	$proxy->set_reply(reply($bad{$case}));
	like(sql_error(q{SET ROLE app; SELECT compay.deposit_address('bad-node')}),
		qr/PY015: bad reply from the wallet to create_address/,
		"4b: create_address answering $case: PY015");
}
is(sql(q{SELECT count(*) FROM compay.deposit_addresses}), '0', '4b: no deposit address stored');
orphan_check_done();
$proxy->set_reply(reply(qq({"address":"$subaddress","address_index":7})));
is(sql(q{SET ROLE app; SELECT compay.deposit_address('good-node')}), $subaddress,
	'4b: a good reply is stored');
is(sql(q{SELECT node_id || ' ' || address_index FROM compay.deposit_addresses}), 'good-node 7',
	'4b: one deposit address, index 7');

# 4c. Transaction fields that are not hexadecimal.
my $h64 = 'a' x 64;
my %built = (
	'tx_hash of 63 digits' => { tx_hash => 'a' x 63 },
	'tx_hash in upper case' => { tx_hash => 'A' x 64 },
	'tx_key not hexadecimal' => { tx_key => 'z' x 64 },
	'tx_key of 65 digits' => { tx_key => 'b' x 65 },
	'tx_metadata missing' => { tx_metadata => undef },
	'tx_metadata with a quote' => { tx_metadata => "ca'fe" },
	'a key image of 64 characters, not hex' => { key_image => 'g' x 64 },);
for my $case (sort keys %built)
{
	my %f = (tx_hash => $h64, tx_key => 'b' x 128, tx_metadata => 'cafe', key_image => 'c' x 64,
		%{ $built{$case} });
	my $json = sprintf('{"amount":1,"fee":1,%s%s"tx_metadata":%s,"spent_key_images":{"key_images":["%s"]}}',
		defined $f{tx_hash} ? qq("tx_hash":"$f{tx_hash}",) : '',
		defined $f{tx_key} ? qq("tx_key":"$f{tx_key}",) : '',
		defined $f{tx_metadata} ? qq("$f{tx_metadata}") : 'null', $f{key_image});
	$json =~ s/'/''/g;
	like(sql_error(qq{SELECT compay.record_payout_built(1, '$json')}),
		qr/PY015: bad reply from the wallet to transfer for payout 1/,
		"4c: record_payout_built with $case: PY015");
}
like(sql_error(q{SELECT compay.record_deposits('{"transfers":[{"tx_hash":"xyz","global_index":1,
  "subaddr_index":{"major":0,"minor":7},"amount":1000,"block_height":1}]}', 100)}),
	qr/PY015: bad reply from the wallet to incoming_transfers/,
	'4c: record_deposits with a tx hash that is not one: PY015');
is(sql(q{SELECT count(*) FROM compay.xmr_deposits}), '0', '4c: nothing credited');
is( sql(qq{SELECT compay.record_deposits('{"transfers":[{"tx_hash":"$h64","global_index":1,
  "subaddr_index":{"major":0,"minor":7},"amount":1000,"block_height":1}]}', 100)}),
	'1', '4c: the same output with a good tx hash is credited');

$node->stop;
done_testing();
