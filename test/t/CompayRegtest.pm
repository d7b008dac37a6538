# A real local Monero regtest for the wallet tests (test/monero/regtest.sh)
# and a PostgreSQL node configured to pay from its treasury wallet.
#
#   my $rt = CompayRegtest->up;              # monerod + two wallet RPCs, 100 blocks
#                                            # (or the one named by COMPAY_XMR_DIR)
#   my $node = $rt->node('name', 'extra postgresql.conf lines');
#   $rt->run('mine', 10);                    # any regtest.sh command
#   $rt->{env}{XMR_PROVIDER_ADDRESS}
#
# Everything it started is stopped by PID when the test ends.
package CompayRegtest;

use strict;
use warnings;

use File::Temp qw(tempdir);
use IPC::Run;
use PostgreSQL::Test::Cluster;

my @started;

sub up
{
	my ($class) = @_;
	my $self;

	# The test command starts one network for all the wallet tests and
	# names it here; a test run alone starts (and stops) its own.
	if ($ENV{COMPAY_XMR_DIR} && -e "$ENV{COMPAY_XMR_DIR}/env")
	{
		$self = bless { dir => $ENV{COMPAY_XMR_DIR} }, $class;
	}
	else
	{
		$self = bless { dir => tempdir('compay_xmr_XXXX', TMPDIR => 1, CLEANUP => 1) }, $class;
		push @started, $self->{dir};
		$self->run('up');
	}
	open my $fh, '<', "$self->{dir}/env" or die "no env file: $!";
	while (<$fh>)
	{
		$self->{env}{$1} = $2 if /^export (\w+)=['"]?([^'"\n]*)['"]?$/;
	}
	close $fh;
	return $self;
}

# Runs test/monero/regtest.sh COMMAND DIR ARGS...; dies on failure.
sub run
{
	my ($self, $command, @args) = @_;
	my @cmd = ('bash', 'test/monero/regtest.sh', $command, $self->{dir}, @args);
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err)
	  or die "regtest.sh $command @args failed: $err";
	chomp $out;
	return $out;
}

# One JSON-RPC call to a wallet or the daemon; the raw reply, or a field.
sub rpc
{
	my ($self, $who, $method, $params, $field) = @_;
	return $self->run('rpc', $who, $method, $params // '{}',
		defined $field ? ('--get', $field) : ());
}

# A node with compay preloaded, the worker on 'postgres' every second, and
# the treasury wallet configured.
sub node
{
	my ($self, $name, $extra) = @_;
	my $e = $self->{env};
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'compay'
compay.wallet_rpc_url = '$e->{XMR_TREASURY_URL}'
compay.wallet_rpc_user = '$e->{XMR_TREASURY_USER}'
compay.wallet_rpc_password_file = '$e->{XMR_TREASURY_PASSWORD_FILE}'
compay.wallet_rpc_timeout = '30s'
compay.daemon_rpc_url = '$e->{XMR_DAEMON_URL}'
compay.database = 'postgres'
compay.worker_naptime = '1s'
log_statement = 'none'
} . ($extra // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION compay');
	return $node;
}

END
{
	system('bash', 'test/monero/regtest.sh', 'down', $_) for grep { -e "$_/pids" } @started;
}

1;
