# A payout the wallet sent but the database lost, adopted from the wallet
# (src/payout_reconcile.c, src/payout_reconcile.sql), on one server with the
# real regtest wallet.  A lost end of WAL is made by hand: the data
# directory is copied (server stopped) while the payout is queued, the
# worker then builds, notes and relays it, and the copy is put back: the
# same system identifier and database, the payout queued again, the wallet
# holding the transaction with compay's note.  The worker must reconcile
# before it builds: it adopts the transaction (relayed, debited once, the
# settlement paid when it is confirmed) and fails the queued payout
# without building it again.  The payee's address receives one output;
# verify_ledger() is all ok; a second reconciliation adopts nothing.  A
# note this database cannot match raises PY022 and writes nothing.  Last,
# what the design rests on: the wallet keeps a note set on a transaction
# before it is relayed.

use strict;
use warnings;

use CompayRegtest;
use File::Path ();
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $rt = CompayRegtest->up;
my $node = $rt->node('adopt', "compay.payout_confirmations = 2\n");

sub sql { return $node->safe_psql('postgres', shift); }

sub poll { return $node->poll_query_until('postgres', @_); }

# The payee's settlement, not paid automatically; then a requested payout.
my $index = $rt->pay_to($node, 'adoptee');
sql(q{SELECT compay.set_payout_policy('adoptee', false, '0.01', '1 day', '1')});
my $settlement = $rt->earn($node, 'adoptee', '0.03');
my $payout = sql(q{SELECT compay.request_payout('adoptee')});
ok($payout > 0, "payout $payout queued");

# The copy, taken with the payout queued: what a standby would have had.
$node->stop;
my $copy = PostgreSQL::Test::Utils::tempdir . '/pgdata';
system('cp', '-a', $node->data_dir, $copy) == 0 or die "cp: $!";
$node->start;
ok(poll("SELECT status FROM compay.payout_transactions WHERE id = $payout", 'relayed'),
	'the worker built, noted and relayed the payout');
my ($tx, $note) = split /\|/, sql("SELECT tx_hash, wallet_note FROM compay.payout_transactions WHERE id = $payout");
like($note, qr/^compay:v1:db=\d+\.\d+:payout=$payout:fee=network:parts=${settlement}x30000000000\@0$/,
	'the payout is noted in the database with the note it set in the wallet');
my $wallet_note = $rt->rpc('treasury', 'get_transfer_by_txid', qq({"txid":"$tx"}), 'result.transfer.note');
is($wallet_note, $note, 'the wallet holds the note of the relayed transaction');

# The end of the WAL is lost: the copy comes back.
$node->stop;
File::Path::rmtree($node->data_dir);
system('cp', '-a', $copy, $node->data_dir) == 0 or die "cp: $!";
my $t0 = time;
$node->start;
ok(poll("SELECT count(*) FROM compay.payout_transactions WHERE tx_hash = '$tx' AND adopted_at IS NOT NULL", '1'),
	'the worker adopted the wallet transaction');
my $adopt_s = time - $t0;
note(sprintf('adopted %.1f s after the server started', $adopt_s));
my $adopted = sql("SELECT id FROM compay.payout_transactions WHERE tx_hash = '$tx'");
is(sql("SELECT status || ' ' || coalesce(last_error, '') FROM compay.payout_transactions WHERE id = $payout"),
	"failed superseded: the wallet's transaction $tx pays its settlements (adopted)",
	'the queued payout failed without being built');
ok(poll("SELECT tx_key IS NOT NULL FROM compay.payout_transactions WHERE id = $adopted", 't'),
	'the adopted payout has its tx key from the wallet');
is(sql("SELECT amount || ' ' || fee_from || ' ' || array_to_string(ARRAY(SELECT settlement_id FROM compay.payout_parts WHERE payout_id = $adopted), ',') FROM compay.payout_transactions WHERE id = $adopted"),
	"0.03 \$fees $settlement", 'the adopted payout pays the settlement, the fee from $fees');

# A few more rounds, then confirmations: nothing is paid again.
sleep 3;
$rt->run('mine', 3);
ok(poll("SELECT status FROM compay.settlements WHERE id = $settlement", 'completed'),
	'the adopted payout is confirmed and the settlement completed');
is(sql("SELECT count(*) FROM compay.payout_transactions WHERE status <> 'failed'"), '1',
	'one payout stands');
is(sql("SELECT count(*) FROM compay.transfers WHERE kind = 'withdrawal' AND reference ~ '^payout:[0-9]+\$'"), '1',
	'the ledger is debited once');
is($rt->received_amounts($index), '30000000000', "the payee's address received one output of 0.03");
is(sql('SELECT count(*) FROM compay.verify_ledger() WHERE NOT ok'), '0', 'verify_ledger: all ok');
is(sql(q{SELECT status || ' ' || detail FROM compay.diagnose() WHERE name = 'payouts'}),
	'warn 1 payout(s) adopted from the wallet in the last day', 'diagnose warns of the adoption');
is(sql('SELECT count(*) FROM compay.reconcile_wallet()'), '0', 'a second reconciliation adopts nothing');
is(sql("SELECT bool_and(ok) FROM compay.verify_payout($adopted)"), 't',
	'verify_payout: the payee received the adopted payout');

# A note of this database the ledger cannot match: PY022, nothing written.
my $prefix = sql('SELECT compay.payout_note_prefix()');
my ($ret, $out, $err) = $node->psql('postgres', qq{SELECT compay.adopt_wallet_transfer(jsonb_build_object(
	'txid', repeat('ab', 32), 'fee', 1, 'amount', 5, 'confirmations', 0,
	'note', '${prefix}payout=99:fee=network:parts=999999x5\@0',
	'destinations', jsonb_build_array(jsonb_build_object('address', 'x', 'amount', 5))))});
like($err, qr/pays compay settlements this database cannot match/, 'an unmatched note is refused');
($ret, $out, $err) = $node->psql('postgres', qq{\\set VERBOSITY verbose
	SELECT compay.adopt_wallet_transfer(jsonb_build_object('txid', repeat('ab', 32), 'fee', 1,
	'amount', 5, 'note', '${prefix}payout=99:fee=nobody'))});
like($err, qr/PY022.*cannot be read/, 'an unreadable note: PY022');
is(sql(q{SELECT compay.adopt_wallet_transfer(jsonb_build_object('txid', repeat('ab', 32), 'note', 'compay:v1:db=1.1:payout=1:fee=network:parts=1x1@0')) IS NULL}),
	't', "another database's note is not adopted");
is(sql("SELECT count(*) FROM compay.payout_transactions"), '2', 'nothing was written by the refused notes');

# What the design rests on, asked of the wallet itself: a note set on a
# transaction built with do_not_relay (before any relay) is kept and
# listed once the transaction is relayed.
my $built = JSON::PP::decode_json($rt->rpc('treasury', 'transfer',
	qq({"destinations":[{"amount":1000000,"address":"$rt->{env}{XMR_PROVIDER_ADDRESS}"}],)
	  . q("account_index":0,"do_not_relay":true,"get_tx_metadata":true})))->{result};
$rt->rpc('treasury', 'set_tx_notes', qq({"txids":["$built->{tx_hash}"],"notes":["noted before relay"]}));
$rt->rpc('treasury', 'relay_tx', qq({"hex":"$built->{tx_metadata}"}));
is($rt->rpc('treasury', 'get_transfer_by_txid', qq({"txid":"$built->{tx_hash}"}), 'result.transfer.note'),
	'noted before relay', 'the wallet keeps a note set before the relay');
$rt->run('mine', 1);

$node->stop;
done_testing();
