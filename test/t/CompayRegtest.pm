# A real local Monero regtest for the wallet tests (test/monero/regtest.sh)
# and a PostgreSQL node configured to pay from its treasury wallet.
#
#   my $rt = CompayRegtest->up;              # monerod + two wallet RPCs, 100 blocks
#                                            # (or the one named by COMPAY_XMR_DIR)
#   my $node = $rt->node('name', 'extra postgresql.conf lines');
#   $rt->run('mine', 10);                    # any regtest.sh command
#   $rt->{env}{XMR_PROVIDER_ADDRESS}
#   my $index = $rt->pay_to($node, 'payee');  # a provider subaddress as its address
#   $rt->earn($node, 'payee', '0.1');         # settled XMR earnings
#   $rt->incoming($index);                    # what that subaddress received
#
# Everything it started is stopped by PID when the test ends.
package CompayRegtest;

use strict;
use warnings;

use File::Temp qw(tempdir);
use IPC::Run;
use JSON::PP;
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

# A new subaddress of the provider wallet: (index, address).
sub subaddress
{
	my ($self) = @_;
	my $index = $self->rpc('provider', 'create_address', '{"account_index":0}',
		'result.address_index');
	my $address = $self->rpc('provider', 'get_address',
		qq({"account_index":0,"address_index":[$index]}), 'result.addresses.0.address');
	return ($index, $address);
}

# Makes a new provider subaddress the payee's primary payout address on
# node; returns its index.
sub pay_to
{
	my ($self, $node, $payee) = @_;
	my ($index, $address) = $self->subaddress;
	$node->safe_psql('postgres', qq{SELECT compay.set_payout_address('$payee', '$address')});
	return $index;
}

# The outputs the provider wallet received at a subaddress index, in the
# pool or mined (after a refresh): a list of { txid, amount }.
sub incoming
{
	my ($self, $index) = @_;
	$self->rpc('provider', 'refresh');
	my $reply = JSON::PP::decode_json($self->rpc('provider', 'get_transfers',
		qq({"in":true,"pool":true,"subaddr_indices":[$index]})));
	return (@{ $reply->{result}{in} // [] }, @{ $reply->{result}{pool} // [] });
}

# Earnings of a payee on node: an XMR-priced task (a pricing model of its
# own, with an explicit id) paid by crypto, then settled (the current hour
# closed early), which earmarks the amount for payout.  Returns the id of
# the payee's newest settlement.
my $earned = 0;

sub earn
{
	my ($self, $node, $payee, $amount) = @_;
	my $n = ++$earned;
	$node->safe_psql('postgres', qq{SELECT compay.admin_deposit('req', '$amount', 'XMR', 'test funds');
	  INSERT INTO compay.pricing_models (id, name, currency, base_price)
	  VALUES (1000 + $n, 'earn$n', 'XMR', '$amount');
	  INSERT INTO compay.task_type_models VALUES ('earn$n', 1000 + $n);
	  SELECT compay.submit_task('earn-task$n', 'req', '$payee', 'earn$n');
	  SELECT compay.complete_job('earn-task$n', now() - interval '1 minute', now());
	  SELECT (compay.process_task_payment('earn-task$n', 'crypto')).status;
	  SELECT count(*) FROM compay.run_settlement('hourly', now() + interval '1 hour');});
	return $node->safe_psql('postgres',
		qq{SELECT max(id) FROM compay.settlements WHERE payee = '$payee'});
}

# ALTER SYSTEM SET setting = value on node, reloaded; a second for the
# worker to take it.
sub set
{
	my ($self, $node, $setting, $value) = @_;
	$node->safe_psql('postgres', qq{ALTER SYSTEM SET $setting = '$value'});
	$node->reload;
	sleep 1;
}

# The amounts of the outputs received at a subaddress index, as text:
# "a,b,...".
sub received_amounts
{
	my ($self, $index) = @_;
	return join(',', map { $_->{amount} } $self->incoming($index));
}

# earn() for a payee paid at a new provider subaddress (pay_to); returns
# the subaddress index.
sub earn_at
{
	my ($self, $node, $payee, $amount) = @_;
	my $index = $self->pay_to($node, $payee);
	$self->earn($node, $payee, $amount);
	return $index;
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
