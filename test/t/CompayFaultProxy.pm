# test/monero/fault_proxy.pl started for a test, stopped by PID when the
# test ends (test/t/033_wallet_rpc_faults.pl starts its own the same way).
#
#   my $proxy = CompayFaultProxy->start($upstream_port, 'name');  # 1: none
#   $proxy->{port}; $proxy->set_mode('trickle');
#   $proxy->set_reply($bytes);               # the body of mode "canned"
#   $proxy->log;                             # its log so far
package CompayFaultProxy;

use strict;
use warnings;

use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;

my @started;

sub start
{
	my ($class, $upstream_port, $name) = @_;
	my $self = bless {
		mode_file => PostgreSQL::Test::Utils::tempdir() . '/proxy.mode',
		log_file => "$PostgreSQL::Test::Utils::log_path/${name}_fault_proxy.log",
	}, $class;
	pipe(my $from_proxy, my $to_test) or die "pipe: $!";
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		close $from_proxy;
		open STDOUT, '>&', $to_test or POSIX::_exit(127);
		open STDERR, '>', $self->{log_file} or POSIX::_exit(127);
		exec($^X, 'test/monero/fault_proxy.pl', 0, $upstream_port, $self->{mode_file})
		  or POSIX::_exit(127);
	}
	close $to_test;
	push @started, $pid;
	my $ready = <$from_proxy> // '';
	close $from_proxy;
	($self->{port}) = $ready =~ /^fault_proxy pid \d+ port (\d+)$/m
	  or BAIL_OUT("the fault proxy did not start; see $self->{log_file}");
	return $self;
}

sub write_file
{
	my ($file, $bytes) = @_;
	open my $fh, '>:raw', "$file.tmp" or die "$file.tmp: $!";
	print $fh $bytes;
	close $fh or die "$file.tmp: $!";
	rename "$file.tmp", $file or die "rename to $file: $!";
}

sub set_mode { my ($self, $mode) = @_; write_file($self->{mode_file}, "$mode\n"); }

sub set_reply { my ($self, $bytes) = @_; write_file("$self->{mode_file}.reply", $bytes); }

sub log { my ($self) = @_; return -e $self->{log_file} ? slurp_file($self->{log_file}) : ''; }

END
{
	local $?;
	for my $pid (@started)
	{
		kill 'TERM', $pid;
		waitpid $pid, 0;
	}
}

1;
