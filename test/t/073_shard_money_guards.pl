# Money guards of the shards (issue 18): what a shard refuses so that no
# credit crosses shards twice or comes back uncollectable, on a router
# and two shards with pgqd and the consumers.  A transfer with a
# '$clearing:N' side (the payer's half on the payer's shard, the credit
# on the payee's shard) is refunded neither by compay.refund() nor by a
# dispute (compay.dispute_refund, what compay.resolve_dispute calls):
# PY037, nothing written.  compay.clearing_apply() given an event id
# again with other contents raises PY037; the same source transfer under
# another event id is a no-op (false, no second credit).  A remote
# provider cannot verify its own job (22023).  compay_reader reads
# compay.shard_config but not its connstrs (42501); compay_admin may not
# call compay.shard_configure() (42501).  A shard whose hold sequence was
# altered refuses a hold (XX000) rather than draw an id another shard's
# partition names, and shard_configure() again repairs it.  Ends with
# verify_ledger() on both shards and compay.cluster_check().
#
# Run: bash /work/tools/runperl.sh REPO PGROOT test/t/073_shard_money_guards.pl

use strict;
use warnings;

use CompayShards;
use Test::More;

my $s = CompayShards->up(
	ports => [ 5670, 5671, 5672 ],
	init_sql => q{CREATE ROLE aud; CREATE ROLE adm});
my $router = $s->router;
$s->psql_shard($_, 'GRANT compay_reader TO aud; GRANT compay_admin TO adm') for 0, 1;

my (@on0, @on1);
for my $n (map { "gpu-$_" } 1 .. 40)
{
	push @{ $s->shard_of($n) ? \@on1 : \@on0 }, $n;
}
my ($a0, $c0) = @on0;
my ($b1, $d1) = @on1;

sub transfers { my ($i) = @_; return $s->psql_shard($i, 'SELECT count(*) FROM compay.transfers') }

# Until every event each shard sent is applied on its peer (60 s at most).
sub drained
{
	my $sent = q{SELECT count(*) FROM compay.clearing_sent};
	my $got = q{SELECT count(*) FROM compay.clearing_applied};
	for (1 .. 600)
	{
		return 1 if $s->psql_shard(0, $sent) == $s->psql_shard(1, $got)
		  && $s->psql_shard(1, $sent) == $s->psql_shard(0, $got);
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# A cross-shard transfer: $a0 (shard 0) pays $b1 (shard 1).
$s->psql_router(qq{SELECT compay.deposit('$a0', '100'), compay.deposit('$b1', '100')});
my $t = $s->psql_router(qq{SELECT compay.transfer('$a0', '$b1', '10')});
ok(drained(), 'the consumers apply the event');
my ($event, $credit) = split /\|/,
  $s->psql_shard(1, qq{SELECT event_id, transfer_id FROM compay.clearing_applied WHERE source_transfer_id = $t});
ok($credit, "transfer $t credited on shard 1 by transfer $credit (event $event)");

# 1a/1b: neither half of it is refunded.
my @before = (transfers(0), transfers(1));
is($s->sqlstate($s->shard(0), qq{SELECT compay.dispute_refund($t, '4', NULL, 'chargeback')}),
	'PY037', 'a dispute refund of the payer\'s half (payee $clearing:1): PY037');
is($s->sqlstate($s->shard(1), qq{SELECT compay.dispute_refund($credit, '4', NULL, 'chargeback')}),
	'PY037', 'a dispute refund of the payee\'s credit (payer $clearing:0): PY037');
is($s->sqlstate($s->shard(1), qq{SELECT compay.refund($credit, '4')}),
	'PY037', 'compay.refund of the payee\'s credit on its shard: PY037');
is($s->sqlstate($s->shard(0), qq{SELECT compay.refund($t, '4')}),
	'PY037', 'compay.refund of the payer\'s half: PY037 (as before)');
is_deeply([ transfers(0), transfers(1) ], \@before, 'nothing written');
# The local case still works: a dispute refund of a transfer within a
# shard, from a hold of its payee.
my $local = $s->psql_router(qq{SELECT compay.transfer('$a0', '$c0', '3')});
my $earmark = $s->psql_router(qq{SELECT compay.reserve('$c0', '1')});
like($s->psql_shard(0, qq{SELECT compay.dispute_refund($local, '1', $earmark, 'chargeback')}),
	qr/^\d+$/, 'a dispute refund of a transfer within shard 0 is made');

# 1c: an event applied again.
my $data = $s->psql_shard(1, qq{
SELECT jsonb_build_object('transfer_id', source_transfer_id, 'payee', payee,
                          'amount', amount::text, 'currency', currency)
FROM compay.clearing_applied WHERE from_shard = 0 AND event_id = $event});
my $balance = sub { $s->psql_shard(1, qq{SELECT balance FROM compay.balance('$b1')}) };
my $b_before = $balance->();
is($s->psql_shard(1, qq{SELECT compay.clearing_apply(0, $event, 'credit', '$data')}), 'f',
	'the same event again: false');
(my $other = $data) =~ s/"amount": "10"/"amount": "11"/;
isnt($other, $data, 'an event with another amount');
is($s->sqlstate($s->shard(1), qq{SELECT compay.clearing_apply(0, $event, 'credit', '$other')}),
	'PY037', 'the same event id with other contents: PY037');
(my $payee = $data) =~ s/"payee": "\Q$b1\E"/"payee": "$d1"/;
is($s->sqlstate($s->shard(1), qq{SELECT compay.clearing_apply(0, $event, 'credit', '$payee')}),
	'PY037', '... with another payee: PY037');
is($s->psql_shard(1, qq{SELECT compay.clearing_apply(0, $event + 1000, 'credit', '$data')}), 'f',
	'the same source transfer under another event id: false');
is($balance->(), $b_before, 'no second credit');
is($s->psql_shard(1, qq{SELECT count(*) FROM compay.clearing_applied WHERE source_transfer_id = $t}),
	'1', 'one applied row for the source transfer');

# 2a: a provider on shard 1 as a verifier of its own job on shard 0.
my $hold = $s->psql_router(qq{SELECT compay.reserve('$a0', '20')});
is($s->sqlstate($s->shard(0),
		qq{SELECT compay.settle_escrow($hold, '$b1', '5', ARRAY['$b1'], '1', 'job')}),
	'22023', 'a remote provider as verifier of its own job: 22023');
like($s->psql_shard(0,
		qq{SELECT compay.settle_escrow($hold, '$b1', '5', ARRAY['$d1'], '1', 'job')}),
	qr/^\d+$/, 'another verifier on shard 1: paid');

# 2c/2d: the connection strings and who configures.
is($s->psql_shard(0, q{SET ROLE aud; SELECT shard || '/' || shards FROM compay.shard_config}),
	'0/2', 'compay_reader reads the shard\'s place');
is($s->sqlstate($s->shard(0), q{SET ROLE aud; SELECT connstrs FROM compay.shard_config}),
	'42501', '... not its connstrs: 42501');
my $connstrs = 'ARRAY[' . join(', ', map { "'$_'" } $s->connstrs) . ']';
is($s->sqlstate($s->shard(0), qq{SET ROLE adm; SELECT compay.shard_configure(0, $connstrs, 8)}),
	'42501', 'compay_admin may not call shard_configure: 42501');

# 2b: a sequence altered by hand.
$s->psql_shard(0, 'ALTER SEQUENCE compay.holds_id_seq INCREMENT 1');
is($s->sqlstate($s->shard(0), qq{SELECT compay.reserve('$a0', '1')}), 'XX000',
	'a hold id that does not name the shard: XX000, not drawn');
$s->psql_shard(0, qq{SELECT compay.shard_configure(0, $connstrs, 8)});
my $h = $s->psql_shard(0, qq{SELECT compay.reserve('$a0', '1')});
is($h % 8, 0, "after shard_configure again, hold $h names shard 0");
my $tr = $s->psql_router(qq{SELECT compay.transfer('$b1', '$d1', '1')});
is($tr % 8, 1, "transfer ids of shard 1 name it ($tr)");

ok(drained(), 'every event applied');
$s->wait_drained;
for my $i (0, 1)
{
	is($s->psql_shard($i, q{SELECT count(*) FROM compay.verify_ledger() WHERE NOT ok}), '0',
		"verify_ledger() on shard $i: all ok");
}
is($s->psql_router(q{SELECT count(*) FROM compay.cluster_check() WHERE NOT ok}), '0',
	'cluster_check(): all ok');

$s->down;
done_testing();
