# What the harness modules that start servers of their own (CompayFormation
# for pg_auto_failover, CompayShards for the router, shards and pgqd) share:
# running psql and reading the SQLSTATE it ends with, finding a data
# directory's postmaster and the processes it started, writing files.
#
#   my ($rc, $out, $err) = CompayProcesses::run_psql(\@psql_and_args, $stdin, $timeout);
#   my $state = CompayProcesses::psql_sqlstate(\@psql_and_args, $sql);
#   my $pid = CompayProcesses::postmaster_pid($pgdata);   # undef when none runs
#   my @kids = CompayProcesses::children($pid);
#   CompayProcesses::write_file($file, $text);   # append_file($file, $text)
package CompayProcesses;

use strict;
use warnings;

use Carp;
use IPC::Run;

# Runs psql (the command and its arguments in $cmd, -X -A -t -q and the
# connection) with $stdin as its input (undef: none), for at most $timeout
# seconds: its exit code (255 when it could not run or timed out), its
# output without the last newline, and its error output.
sub run_psql
{
	my ($cmd, $stdin, $timeout) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGCONNECT_TIMEOUT} = 5;
	eval {
		IPC::Run::run($cmd, '<', \$stdin, '>', \$out, '2>', \$err,
			IPC::Run::timeout($timeout // 120));
	};
	my $rc = $@ ? 255 : $? >> 8;
	$err .= $@ if $@;
	chomp $out;
	return ($rc, $out, $err);
}

# The SQLSTATE one statement ends with (psql's :SQLSTATE, by stdin), or
# "none: " and psql's error output when it did not run.
sub psql_sqlstate
{
	my ($cmd, $sql) = @_;
	my $script = "\\set ON_ERROR_STOP 0\n$sql;\n\\echo SQLSTATE :SQLSTATE\n";
	my (undef, $out, $err) = run_psql($cmd, $script, 120);
	return $out =~ /^SQLSTATE (\w+)$/m ? $1 : "none: $err";
}

# The pid of the postmaster of $pgdata when it is alive and a postgres
# process (not a pid the system gave again to another program).
sub postmaster_pid
{
	my ($pgdata) = @_;
	open my $fh, '<', "$pgdata/postmaster.pid" or return undef;
	my $pid = <$fh>;
	close $fh;
	return undef unless defined $pid && $pid =~ /^(\d+)$/;
	return is_postgres($1) ? $1 : undef;
}

sub is_postgres
{
	my ($pid) = @_;
	return 0 unless kill 0, $pid;
	open my $fh, '<', "/proc/$pid/cmdline" or return 0;
	my $cmd = <$fh> // '';
	return $cmd =~ /postgres/;
}

# The processes whose parent is $pid (from /proc).
sub children
{
	my ($pid) = @_;
	my @kids;
	opendir my $dh, '/proc' or return ();
	for my $p (grep { /^\d+$/ } readdir $dh)
	{
		open my $fh, '<', "/proc/$p/stat" or next;
		my $stat = <$fh> // '';
		close $fh;
		# pid (comm) state ppid ...: comm may hold spaces and parentheses
		push @kids, $p if $stat =~ /^.*\)\s+\S+\s+(\d+)\s/s && $1 == $pid;
	}
	closedir $dh;
	return @kids;
}

sub write_file { _put('>', @_) }
sub append_file { _put('>>', @_) }

sub _put
{
	my ($mode, $file, $text) = @_;
	open my $fh, $mode, $file or croak "$file: $!";
	print $fh $text;
	close $fh or croak "$file: $!";
	return;
}

1;
