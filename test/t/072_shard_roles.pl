# The caller's identity through the router (issue 18): a router configured
# without the PUBLIC user mapping (compay.router_configure(...,
# public_mapping => false), refused with a user in the connection
# strings) and one mapping per application role (compay.router_add_role):
# a role's call reaches the shards as that role, so compay's grants and
# node checks apply there.  A node role acts for its own node through the
# router (transfer, balance, earnings of every shard); acting for another node is refused by the
# shard with the SQLSTATE a direct call gets (42501) and writes nothing;
# the mapping's password is what the shard checks (a wrong one: the shard
# refuses the connection, XX000 from PL/Proxy); a role without a mapping
# is refused by the router ("permission denied for foreign server
# compay_cluster", 42501: no USAGE), also after compay.router_remove_role,
# and a superuser without one gets "user mapping not found" (42704).  A
# compay_reader role reads every node and may not write; a compay_app role
# expires holds on every shard, a compay_reader role may not.  A job call
# of a node role finds the job's shard (the lookup runs as the router's
# owner) and is judged there as the role.  A new router_configure keeps
# the roles' mappings.  Bad inputs of router_add_role and
# router_configure fail with their SQLSTATE and write nothing.
#
# Run: bash /work/tools/runperl.sh REPO PGROOT test/t/072_shard_roles.pl

use strict;
use warnings;

use CompayShards;
use Test::More;

my $s = CompayShards->up(
	consumers => 0,
	pgqd => 0,
	init_sql => q{
CREATE ROLE svc LOGIN;
CREATE ROLE node_a LOGIN PASSWORD 'pw-a';
CREATE ROLE node_b LOGIN PASSWORD 'pw-b';
CREATE ROLE auditor LOGIN PASSWORD 'pw-r';
CREATE ROLE app LOGIN PASSWORD 'pw-app';
CREATE ROLE nomap LOGIN});
my $router = $s->router;

# Node ids by shard, and the router's connection strings with the service
# user (as an operator writes them).
my (@on0, @on1);
for my $n (map { "gpu-$_" } 1 .. 40)
{
	push @{ $s->shard_of($n) ? \@on1 : \@on0 }, $n;
}
my ($na, $nc) = @on0;    # node_a's node on shard 0, another node there
my ($nb) = @on1;         # node_b's node on shard 1
my $svc_connstrs = 'ARRAY[' . join(', ', map { "'$_ user=svc'" } $s->connstrs) . ']';

# On the shards: the roles as compay knows them; passwords checked for them.
for my $i (0 .. $s->shards - 1)
{
	$s->psql_shard($i, qq{
GRANT compay_reader TO svc;
GRANT compay_node TO node_a, node_b;
GRANT compay_reader TO auditor;
GRANT compay_app TO app;
SELECT compay.add_node_role('node_a', '$na'), compay.add_node_role('node_b', '$nb')});
	my $n = $s->shard($i);
	my $hba = $n->data_dir . '/pg_hba.conf';
	open my $fh, '<', $hba or die "$hba: $!";
	my $old = do { local $/; <$fh> };
	close $fh;
	open $fh, '>', $hba or die "$hba: $!";
	print $fh "host all node_a,node_b,auditor,app 127.0.0.1/32 scram-sha-256\n", $old;
	close $fh;
	$n->reload;
}

# (SQLSTATE, message) of one statement as a role on a node; SQLSTATE
# '00000' and the rows when it works.
sub as_role
{
	my ($role, $password, $node, $sql) = @_;
	local $ENV{PGUSER} = $role;
	local $ENV{PGPASSWORD} = $password // '';
	my ($rc, $out, $err) = $s->try_psql($node, "\\set VERBOSITY verbose\n$sql");
	return ('00000', $out) if $rc == 0;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):\s+(.*)/ ? ($1, $2) : ("rc $rc", $err);
}

sub transfers_count
{
	return join ' ', map { $s->psql_shard($_, 'SELECT count(*) FROM compay.transfers') } 0, 1;
}

# Bad inputs, nothing changed.
is($s->sqlstate($router, qq{SELECT compay.router_configure($svc_connstrs, 8, NULL)}), '22004',
	'router_configure with public_mapping NULL: 22004');
is($s->sqlstate($router, q{SELECT compay.router_add_role(NULL)}), '22004', 'router_add_role(NULL): 22004');
is($s->sqlstate($router, q{SELECT compay.router_add_role('no_such_role')}), '42704',
	'router_add_role of a role that does not exist: 42704');
is((as_role('nomap', undef, $router, q{SELECT compay.router_add_role('nomap')}))[0], '42501',
	'router_add_role by a role that is no superuser: 42501');
is((as_role('nomap', undef, $router, qq{SELECT compay.router_configure($svc_connstrs, 8, false)}))[0],
	'42501', 'router_configure by a role that is no superuser: 42501');
is($s->psql_router(q{SELECT count(*) FROM pg_user_mappings WHERE usename = 'nomap'}), '0',
	'no mapping written');

# The trusted-service configuration (070's): the PUBLIC mapping, callers
# are the connection strings' user; node_a then acts for any node.
$s->psql_router(qq{SELECT compay.router_configure($svc_connstrs, 8)});
is($s->psql_router(q{SELECT string_agg(srvname || ':' || usename, ' ' ORDER BY srvname) FROM pg_user_mappings}),
	'compay_cluster:public compay_lookup:postgres', 'public_mapping true: PUBLIC on compay_cluster, the owner on compay_lookup');

# Callers as themselves: no PUBLIC mapping, and no user in the connection
# strings (PL/Proxy would let it win over the mapping's).
is($s->sqlstate($router, qq{SELECT compay.router_configure($svc_connstrs, 8, false)}), '22023',
	'public_mapping false with a user in the connection strings: 22023');
my $connstrs = 'ARRAY[' . join(', ', map { "'$_'" } $s->connstrs) . ']';
$s->psql_router(qq{SELECT compay.router_configure($connstrs, 8, false)});
is($s->psql_router(q{SELECT string_agg(srvname || ':' || usename, ' ' ORDER BY srvname) FROM pg_user_mappings}),
	'compay_lookup:postgres', 'public_mapping false: only the owner\'s lookup mapping');
my ($st, $msg) = as_role('node_a', 'pw-a', $router, qq{SELECT compay.balance('$na')});
is($st, '42501', 'a role the router does not know: 42501');
like($msg, qr/permission denied for foreign server compay_cluster/, "... for the router's cluster: $msg");
($st, $msg) = as_role('postgres', undef, $router, qq{SELECT compay.balance('$na')});
is($st, '42704', 'the superuser (USAGE on every server) needs a mapping too: 42704');
like($msg, qr/user mapping not found for "postgres"/, "... $msg");

# Money to start with, by the superuser through its own mapping (no password).
$s->psql_router(q{SELECT compay.router_add_role('postgres')});
$s->psql_router(qq{SELECT compay.deposit(n, '100') FROM (VALUES ('$na'), ('$nb'), ('$nc')) v(n)});
is($s->psql_router(q{SELECT compay.router_add_role('node_a', 'pw-a'), compay.router_add_role('node_b', 'wrong')
  , compay.router_add_role('auditor', 'pw-r'), compay.router_add_role('app', 'pw-app')}), '|||',
	'router_add_role for four roles');

# node_a acts for its own node: a transfer on its shard, one to the other shard.
($st, my $t1) = as_role('node_a', 'pw-a', $router, qq{SELECT compay.transfer('$na', '$nc', '3')});
is($st, '00000', 'node_a transfers from its node to a node of its shard through the router');
($st, my $t2) = as_role('node_a', 'pw-a', $router, qq{SELECT compay.transfer('$na', '$nb', '2')});
is($st, '00000', 'node_a transfers from its node to a node of the other shard');
($st, my $bal) = as_role('node_a', 'pw-a', $router, qq{SELECT (compay.balance('$na')).balance});
is("$st $bal", '00000 95', 'node_a reads its balance: 95');
is($s->psql_shard(0, qq{SELECT count(*) FROM compay.transfers WHERE id IN ($t1, $t2)}), '2',
	'both transfers are on node_a\'s shard');

# A network-wide read (every shard, combined at the router) as node_a.
($st, my $earn) = as_role('node_a', 'pw-a', $router, qq{SELECT count(*) FROM compay.earnings('$na')});
is($st, '00000', 'node_a reads its earnings from every shard through the router');
($st, $msg) = as_role('node_a', 'pw-a', $router, qq{SELECT count(*) FROM compay.earnings('$nb')});
like("$st $msg", qr/^42501 .*role "node_a" may not act for node "\Q$nb\E"/,
	"node_a reading another node's earnings: 42501 from the shards: $msg");

# Acting for another node: the shard refuses, as on a single server.
my $before = transfers_count();
my ($direct) = as_role('node_a', 'pw-a', $s->shard(0), qq{SELECT compay.transfer('$nc', '$na', '1')});
is($direct, '42501', 'directly on the shard, node_a acting for another node: 42501');
($st, $msg) = as_role('node_a', 'pw-a', $router, qq{SELECT compay.transfer('$nc', '$na', '1')});
is($st, $direct, 'through the router, node_a acting for a node of its shard: the same SQLSTATE');
like($msg, qr/role "node_a" may not act for node "\Q$nc\E"/, "... refused by the shard as node_a: $msg");
($st, $msg) = as_role('node_a', 'pw-a', $router, qq{SELECT compay.transfer('$nb', '$na', '1')});
is($st, '42501', 'node_a acting for a node of the other shard: 42501');
like($msg, qr/role "node_a" may not act for node "\Q$nb\E"/, '... refused by that shard as node_a');
($st) = as_role('node_a', 'pw-a', $router, qq{SELECT compay.balance('$nb')});
is($st, '42501', 'node_a reading another node\'s balance: 42501');
is(transfers_count(), $before, 'nothing written by the refused calls');

# The mapping's password is what the shard checks.
($st, $msg) = as_role('node_b', 'pw-b', $router, qq{SELECT compay.transfer('$nb', '$na', '1')});
is($st, 'XX000', 'a mapping with a wrong password: PL/Proxy cannot connect (XX000)');
like($msg, qr/password authentication failed for user "node_b"/, "... the shard refused the password: $msg");
$s->psql_router(q{SELECT compay.router_add_role('node_b', 'pw-b')});
($st) = as_role('node_b', 'pw-b', $router, qq{SELECT compay.transfer('$nb', '$na', '1')});
is($st, '00000', 'router_add_role again with the right password: node_b transfers from its node');

# compay_reader reads every node, writes none.
($st, $bal) = as_role('auditor', 'pw-r', $router,
	qq{SELECT sum((compay.balance(n)).balance::text::numeric) FROM (VALUES ('$na'), ('$nb'), ('$nc')) v(n)});
is("$st $bal", '00000 297', 'a compay_reader role reads the balances of nodes on both shards (3 in flight)');
$before = transfers_count();
($st, $msg) = as_role('auditor', 'pw-r', $router, qq{SELECT compay.transfer('$na', '$nc', '1')});
is($st, '42501', 'a compay_reader role may not transfer through the router: 42501');
like($msg, qr/REMOTE ERROR: permission denied for function transfer/, "... refused by the shard: $msg");
($st) = as_role('auditor', 'pw-r', $router, qq{SELECT compay.deposit('$nb', '1')});
is($st, '42501', '... nor deposit on the other shard');
is(transfers_count(), $before, 'nothing written');

# A network-wide write (every shard, counts summed): compay_app may, a
# compay_reader role is refused by the shards.
($st, my $n) = as_role('app', 'pw-app', $router, q{SELECT compay.expire_holds()});
is("$st $n", '00000 0', 'a compay_app role expires holds on every shard through the router');
($st, $msg) = as_role('auditor', 'pw-r', $router, q{SELECT compay.expire_holds()});
like("$st $msg", qr/^42501 .*REMOTE ERROR: permission denied for function expire_holds/,
	"a compay_reader role may not: 42501 from the shards: $msg");

# A job call: the job's shard is found by the router's owner (a node role
# may not read compay.jobs), the call is judged on that shard as the role.
$s->psql_router(qq{SELECT compay.submit_job('task-b', '$nb', 'render', '5')});
($st, $msg) = as_role('node_b', 'pw-b', $router, qq{SELECT compay.assign_job('task-b', '$nc')});
is($st, '42501', 'node_b assigning its job through the router: 42501 from the job\'s shard');
like($msg, qr/REMOTE ERROR: permission denied for function assign_job/,
	"... judged there as node_b (compay_node may not assign): $msg");
($st, my $tm) = as_role('auditor', 'pw-r', $router, q{SELECT (compay.task_metrics('task-b')).gpu_seconds IS NULL});
is($st, '00000', 'a compay_reader role reads the job\'s metrics through the router');

# A new configuration keeps the roles' mappings; router_remove_role drops one.
$s->psql_router(qq{SELECT compay.router_configure($connstrs, 8, false)});
($st) = as_role('node_a', 'pw-a', $router, qq{SELECT compay.transfer('$na', '$nc', '1')});
is($st, '00000', 'after router_configure again, node_a still acts for its node');
is($s->psql_router(q{SELECT compay.router_remove_role('node_a')}), 't', 'router_remove_role: t');
is($s->psql_router(q{SELECT compay.router_remove_role('node_a')}), 'f', '... again: f');
($st) = as_role('node_a', 'pw-a', $router, qq{SELECT compay.balance('$na')});
is($st, '42501', 'node_a without its mapping: 42501');

is($s->psql_router(q{SELECT count(*) FROM compay.verify_ledger() WHERE NOT ok}), '0',
	'verify_ledger() on every shard: all ok');

$s->down;
done_testing();
