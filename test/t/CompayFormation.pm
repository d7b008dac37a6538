# A real pg_auto_failover formation for the high-availability tests:
# a monitor and two PostgreSQL nodes on 127.0.0.1, started with
# pg_autoctl, compay and pg_cron preloaded on both nodes, compay created
# on the primary (the standby gets it by streaming).
#
#   my $f = CompayFormation->up(               # every option is optional
#       conf => "compay.worker_enabled = off\n",  # more postgresql.conf lines
#       init_sql => 'CREATE ROLE app LOGIN',      # run on the primary before the
#                                                 # standby is cloned from it
#       ports => [ 5510, 5511, 5512 ]);           # monitor, node1, node2 (else free ones)
#   $f->uri;                 # postgres://127.0.0.1:P1,127.0.0.1:P2/postgres?
#                            #   target_session_attrs=read-write&sslmode=prefer
#   $f->primary;             # { name, port, pgdata, pid (postmaster), keeper }
#   $f->secondary;           # the same for the hot standby
#   $f->psql_primary($sql);  # psql -XAt on the primary; dies on error; stdout
#   $f->psql_secondary($sql);
#   $f->psql($node, $sql);   # $node: a hash from primary/secondary/node, or a name
#   $f->try_psql($node, $sql);  # (exit code, stdout, stderr); never dies
#   $f->sqlstate($node, $sql);  # the SQLSTATE of one statement: '00000' when
#                               # it succeeds, else its error's (e.g. '25006')
#   $f->states;              # "node1:primary/primary node2:secondary/secondary"
#
#   # A crash of the primary's machine: kill -9 its keeper (pg_autoctl run and
#   # its services, one process group) and its postmaster.  Killing the
#   # postmaster alone is no failover: the keeper starts it again at once.
#   my $old = $f->kill_primary;         # the killed node's name
#   my $s = $f->wait_promoted(60);      # seconds from the kill until the other
#                                       # node is a writable primary (its
#                                       # pg_auto_failover state wait_primary)
#   my $r = $f->rejoin_old(120);        # starts the killed node's keeper again:
#                                       # pg_rewind, it streams as secondary;
#                                       # waits for secondary + primary (state
#                                       # primary: synchronous again); seconds
#   $f->failover_times;                 # every wait_promoted result, in order
#
#   # Records really lost at promotion (for the asynchronous payout test):
#   $f->set_async;       # step 1 below alone: asynchronous, still streaming
#   $f->cut_standby;     # 1. replication-quorum false on the standby: the
#                        #    primary's synchronous_standby_names becomes ''
#                        #    (commits no longer wait for it);
#                        # 2. primary_conninfo = '' on the standby (ALTER SYSTEM
#                        #    + reload): its walreceiver stops, nothing streams.
#                        # Every commit on the primary from now on exists only
#                        # there; kill_primary + wait_promoted then promote the
#                        # standby without them (wait_promoted resets the
#                        # standby's primary_conninfo, so it can stream again
#                        # when it is a standby later).  The monitor still
#                        # promotes a standby that lags by less than
#                        # pgautofailover.promote_wal_log_threshold (16 MB).
#   $f->set_sync;        # replication-quorum true again on both nodes (after a
#                        # cut, once both run: synchronous again)
#
#   $f->down;            # stops every keeper and postmaster it started, by PID
#                        # (also run from an END block if the test dies)
#
# The monitor's health checks are shortened (health_check_period 1 s,
# node_considered_unhealthy_timeout 3 s, primary_demote_timeout 3 s), so a
# failover takes about 6 s.  pg_autoctl runs as the current user (postgres in
# CI) with its configuration under the formation's own directory
# (XDG_CONFIG_HOME, XDG_DATA_HOME), PostgreSQL from PG_CONFIG's bindir (or
# pg_ctl on PATH).
package CompayFormation;

use strict;
use warnings;

use Carp;
use CompayProcesses;
use File::Temp ();
use IPC::Run;
use POSIX qw(setsid WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils ();
use Time::HiRes qw(time sleep);

my @formations;

# Lines that make each failover take a few seconds instead of about 50.
my $monitor_conf = <<'EOC';

# compay formation (test/t/CompayFormation.pm)
listen_addresses = '127.0.0.1'
shared_buffers = '16MB'
fsync = off
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500
pgautofailover.node_considered_unhealthy_timeout = 3000
pgautofailover.primary_demote_timeout = 3000
EOC

# pg_autoctl's own tuning sizes shared_buffers for the whole machine; the
# include that holds it comes first in postgresql.conf, so these win.
my $node_conf = <<'EOC';

# compay formation (test/t/CompayFormation.pm)
listen_addresses = '127.0.0.1'
shared_buffers = '32MB'
effective_cache_size = '128MB'
maintenance_work_mem = '16MB'
work_mem = '4MB'
shared_preload_libraries = 'compay,pg_cron'
cron.database_name = 'postgres'
compay.database = 'postgres'
max_worker_processes = 16
max_connections = 100
fsync = off
TimeZone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOC

sub up
{
	my ($class, %opts) = @_;
	my $bindir = _bindir();
	_check_socket_dirs($bindir);
	my $dir = File::Temp::tempdir('compay_ha_XXXX', TMPDIR => 1, CLEANUP => 1);
	my @ports = @{ $opts{ports} // [ map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 3 ] };
	my $self = bless {
		dir => $dir,
		bindir => $bindir,
		owner => $$,
		env => {
			PATH => "$bindir:$ENV{PATH}",
			XDG_CONFIG_HOME => "$dir/config",
			XDG_DATA_HOME => "$dir/share",
			XDG_RUNTIME_DIR => "$dir/run",
			PGCONNECT_TIMEOUT => 5,
			# pg_autoctl reaches its own postgres through PGHOST; the test
			# library points that at a socket directory of its own.
			PGHOST => '127.0.0.1',
		},
		monitor => { name => 'monitor', port => $ports[0], pgdata => "$dir/monitor" },
		nodes => {
			map {
				("node$_" => { name => "node$_", port => $ports[$_], pgdata => "$dir/node$_" })
			} 1, 2
		},
		failover_times => [],
	}, $class;
	push @formations, $self;
	mkdir "$dir/$_" for qw(config share run);

	my @common = ('--pgctl', "$bindir/pg_ctl", '--hostname', '127.0.0.1', '--auth', 'trust',
		'--no-ssl');
	my $m = $self->{monitor};
	$self->_autoctl('create', 'monitor', '--pgdata', $m->{pgdata}, '--pgport', $m->{port},
		@common);
	CompayProcesses::append_file("$m->{pgdata}/postgresql.conf", $monitor_conf);
	_trace('monitor created, starting its keeper');
	$self->_start_keeper($m);
	$self->_wait(30, 'the monitor accepts connections',
		sub { ($self->try_psql($m, 'SELECT 1', 'pg_auto_failover'))[1] eq '1' });
	_trace('monitor up');
	$self->{monitor_uri} = $self->_autoctl('show', 'uri', '--pgdata', $m->{pgdata},
		'--formation', 'monitor');

	my $n1 = $self->{nodes}{node1};
	_trace('creating node1');
	$self->_create_node($n1, @common);
	CompayProcesses::append_file("$n1->{pgdata}/postgresql.conf",
		$node_conf . ($opts{conf} // ''));
	_trace('node1 created, starting its keeper');
	$self->_start_keeper($n1);
	$self->_wait(60, 'node1 runs alone (state single)',
		sub {
			$self->states =~ /node1:single\/single/
			  && ($self->try_psql($n1, 'SELECT pg_is_in_recovery()'))[1] eq 'f';
		});
	_trace('node1 primary, creating compay');
	$self->psql($n1, 'CREATE EXTENSION compay');
	$self->psql($n1, $opts{init_sql}) if defined $opts{init_sql};
	# pg_basebackup starts with a checkpoint, spread over minutes unless
	# one has just run.
	$self->psql($n1, 'CHECKPOINT');

	# The standby is a pg_basebackup of node1: it gets node1's
	# postgresql.conf (our lines included) and the extension.
	my $n2 = $self->{nodes}{node2};
	_trace('creating node2 (pg_basebackup of node1)');
	$self->_create_node($n2, @common);
	_trace('node2 created, starting its keeper');
	$self->_start_keeper($n2);
	$self->_wait(120, 'node1 primary and node2 secondary',
		sub { $self->states eq 'node1:primary/primary node2:secondary/secondary' });
	_trace('formation up');
	$self->{uri} = $self->_autoctl('show', 'uri', '--pgdata', $m->{pgdata},
		'--formation', 'default');
	return $self;
}

sub uri { return $_[0]{uri} }
sub dir { return $_[0]{dir} }
sub monitor_uri { return $_[0]{monitor_uri} }
sub failover_times { return @{ $_[0]{failover_times} } }

# The node hash of a name; its pid is the running postmaster's (or undef).
sub node
{
	my ($self, $name) = @_;
	my $n = $self->{nodes}{$name} or croak "no node $name";
	$n->{pid} = CompayProcesses::postmaster_pid($n->{pgdata});
	return $n;
}

# "node1:reported/goal node2:reported/goal", as the monitor sees them.
sub states
{
	my ($self) = @_;
	my ($rc, $out) = $self->try_psql($self->{monitor},
		q{SELECT string_agg(nodename || ':' || reportedstate || '/' || goalstate, ' '
                            ORDER BY nodename) FROM pgautofailover.node},
		'pg_auto_failover');
	return $rc == 0 ? $out : '';
}

# The node that the monitor holds for the writable primary (reported and
# goal state agree); waits up to 30 s while the formation is between two
# states; croaks after that.
sub primary
{
	my ($self) = @_;
	return $self->_find(qr/^(primary|wait_primary|single)$/, 'a primary');
}

# The hot standby (reported and goal state secondary), the same way.
sub secondary
{
	my ($self) = @_;
	return $self->_find(qr/^secondary$/, 'a secondary');
}

# The node in that state now, or undef.
sub _now
{
	my ($self, $state) = @_;
	for my $pair (split / /, $self->states)
	{
		my ($name, $reported, $goal) = $pair =~ /^(\w+):(\w+)\/(\w+)$/ or next;
		return $self->node($name) if $reported eq $goal && $reported =~ $state;
	}
	return undef;
}

sub _find
{
	my ($self, $state, $what) = @_;
	my $found;
	$self->_wait(30, $what, sub { $found = $self->_now($state) });
	return $found;
}

sub psql_primary
{
	my ($self, $sql) = @_;
	my $p = $self->primary or croak 'the formation has no primary: ' . $self->states;
	return $self->psql($p, $sql);
}

sub psql_secondary
{
	my ($self, $sql) = @_;
	my $s = $self->secondary or croak 'the formation has no secondary: ' . $self->states;
	return $self->psql($s, $sql);
}

# psql on a node; dies with psql's message on error.
sub psql
{
	my ($self, $node, $sql, $db) = @_;
	my ($rc, $out, $err) = $self->try_psql($node, $sql, $db);
	$node = $self->{nodes}{$node} unless ref $node;
	croak "psql on $node->{name} failed: $err" if $rc != 0;
	return $out;
}

sub try_psql
{
	my ($self, $node, $sql, $db) = @_;
	$node = $self->{nodes}{$node} unless ref $node;
	return CompayProcesses::run_psql(
		[ "$self->{bindir}/psql", '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
		  '-h', '127.0.0.1', '-p', $node->{port}, '-d', $db // 'postgres', '-c', $sql ],
		undef, 120);
}

# The SQLSTATE one statement ends with (psql's :SQLSTATE, by stdin).
sub sqlstate
{
	my ($self, $node, $sql) = @_;
	$node = $self->{nodes}{$node} unless ref $node;
	return CompayProcesses::psql_sqlstate(
		[ "$self->{bindir}/psql", '-X', '-A', '-t', '-q', '-h', '127.0.0.1',
		  '-p', $node->{port}, '-d', 'postgres' ], $sql);
}

# kill -9 the primary's keeper (its whole process group: pg_autoctl run,
# its services and the postmaster they started) and its postmaster.
sub kill_primary
{
	my ($self) = @_;
	my $p = $self->primary or croak 'no primary to kill: ' . $self->states;
	my $pid = $p->{pid};
	kill 'KILL', -$p->{keeper} if $p->{keeper};
	kill 'KILL', $pid if $pid && CompayProcesses::is_postgres($pid);
	waitpid($p->{keeper}, 0) if $p->{keeper};
	delete $p->{keeper};
	$self->{killed} = $p->{name};
	$self->{killed_at} = time;
	return $p->{name};
}

# Waits until the node that was not killed is the writable primary;
# returns the seconds since the kill.
sub wait_promoted
{
	my ($self, $timeout) = @_;
	my $old = $self->{killed} or croak 'wait_promoted without kill_primary';
	my ($new) = grep { $_ ne $old } sort keys %{ $self->{nodes} };
	$self->_wait($timeout // 60, "$new promoted",
		sub {
			my $p = $self->_now(qr/^(primary|wait_primary|single)$/);
			$p && $p->{name} eq $new
			  && ($self->try_psql($p, 'SELECT pg_is_in_recovery()'))[1] eq 'f';
		});
	my $seconds = time - $self->{killed_at};
	push @{ $self->{failover_times} }, $seconds;
	if ($self->{cut})
	{
		# The standby cut off by cut_standby streams again once it is a
		# standby later on.
		$self->psql($new, 'ALTER SYSTEM RESET primary_conninfo');
		$self->psql($new, 'SELECT pg_reload_conf()');
		delete $self->{cut};
	}
	return $seconds;
}

# Starts the killed node's keeper again; it rewinds and follows the new
# primary.  Returns the seconds until it is secondary and the other primary
# (not wait_primary: the primary waits for it again at each commit).
sub rejoin_old
{
	my ($self, $timeout) = @_;
	my $old = $self->{killed} or croak 'rejoin_old without kill_primary';
	my $t0 = time;
	$self->_start_keeper($self->{nodes}{$old});
	$self->_wait($timeout // 120, "$old back as secondary",
		sub {
			my $s = $self->_now(qr/^secondary$/);
			my $p = $self->_now(qr/^primary$/);
			$s && $s->{name} eq $old && $p && $p->{name} ne $old;
		});
	delete $self->{killed};
	return time - $t0;
}

# replication-quorum false on the standby: the primary commits without
# waiting for it (it still streams).  Returns the standby's name.
sub set_async
{
	my ($self) = @_;
	my $s = $self->secondary or croak 'no standby: ' . $self->states;
	my $p = $self->primary;
	$self->_autoctl('set', 'node', 'replication-quorum', 'false', '--pgdata', $s->{pgdata});
	$self->_wait(30, 'the primary commits without waiting for the standby',
		sub { $self->psql($p, 'SHOW synchronous_standby_names') eq '' });
	return $s->{name};
}

sub cut_standby
{
	my ($self) = @_;
	$self->set_async;
	my $s = $self->secondary or croak 'no standby to cut off: ' . $self->states;
	my $p = $self->primary;
	$self->psql($s, q{ALTER SYSTEM SET primary_conninfo = ''});
	$self->psql($s, 'SELECT pg_reload_conf()');
	$self->_wait(30, 'the standby stops streaming',
		sub {
			$self->psql($s, 'SELECT count(*) FROM pg_stat_wal_receiver') eq '0'
			  && $self->psql($p, 'SELECT count(*) FROM pg_stat_replication') eq '0';
		});
	$self->{cut} = $s->{name};
	return $s->{name};
}

sub set_sync
{
	my ($self) = @_;
	for my $n (values %{ $self->{nodes} })
	{
		$self->_autoctl('set', 'node', 'replication-quorum', 'true', '--pgdata', $n->{pgdata});
	}
	$self->_wait(30, 'synchronous replication',
		sub {
			my $p = $self->_now(qr/^primary$/);
			$p && ($self->try_psql($p, 'SHOW synchronous_standby_names'))[1] ne '';
		});
	return;
}

# Stops the keepers (nodes first, then the monitor) with SIGTERM, which
# stops their postmasters; whatever still runs after 30 s gets SIGKILL,
# by PID.
sub down
{
	my ($self) = @_;
	return if $self->{down} || $self->{owner} != $$;
	$self->{down} = 1;
	my @all = ((map { $self->{nodes}{$_} } sort keys %{ $self->{nodes} }), $self->{monitor});
	for my $n (@all)
	{
		kill 'TERM', $n->{keeper} if $n->{keeper};
	}
	my $t0 = time;
	for my $n (@all)
	{
		next unless $n->{keeper};
		while (waitpid($n->{keeper}, WNOHANG) == 0 && time - $t0 < 30) { sleep 0.1 }
		kill 'KILL', -$n->{keeper};
		waitpid($n->{keeper}, 0);
		delete $n->{keeper};
	}
	for my $n (@all)
	{
		my $pid = CompayProcesses::postmaster_pid($n->{pgdata});
		kill 'KILL', $pid if $pid && CompayProcesses::is_postgres($pid);
	}
	return;
}

END
{
	my $rc = $?;
	$_->down for @formations;
	$? = $rc;
}

sub _create_node
{
	my ($self, $n, @common) = @_;
	$self->_autoctl('create', 'postgres', '--pgdata', $n->{pgdata}, '--pgport', $n->{port},
		'--name', $n->{name}, '--monitor', $self->{monitor_uri}, @common);
	return;
}

# Runs pg_autoctl to completion; dies with its output on failure.
sub _autoctl
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	local @ENV{ keys %{ $self->{env} } } = values %{ $self->{env} };
	IPC::Run::run([ 'pg_autoctl', @args ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(180))
	  or croak "pg_autoctl @args failed:\n$out\n$err";
	chomp $out;
	return $out;
}

# pg_autoctl run in a process group of its own, so that one kill reaches
# the keeper, its services and the postmaster.
sub _start_keeper
{
	my ($self, $n) = @_;
	my $log = "$self->{dir}/$n->{name}.keeper.log";
	my $pid = fork // croak "fork: $!";
	if ($pid == 0)
	{
		setsid();
		@ENV{ keys %{ $self->{env} } } = values %{ $self->{env} };
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', $log;
		open STDERR, '>&', \*STDOUT;
		{ exec 'pg_autoctl', 'run', '--pgdata', $n->{pgdata} }
		POSIX::_exit(127);
	}
	$n->{keeper} = $pid;
	return $pid;
}

sub _wait
{
	my ($self, $timeout, $what, $done) = @_;
	my $t0 = time;
	while (time - $t0 < $timeout)
	{
		return 1 if $done->();
		sleep 0.25;
	}
	croak "timed out after ${timeout}s waiting for $what; states: " . $self->states
	  . "\n" . $self->keeper_logs;
}

# The last lines of every keeper log, for a failure message.
sub keeper_logs
{
	my ($self) = @_;
	my $text = '';
	for my $name ('monitor', sort keys %{ $self->{nodes} })
	{
		my $log = "$self->{dir}/$name.keeper.log";
		next unless -e $log;
		my @lines = do { open my $fh, '<', $log or next; <$fh> };
		splice @lines, 0, @lines - 15 if @lines > 15;
		$text .= "--- $name keeper\n" . join('', @lines);
	}
	return $text;
}

# Progress with a time stamp, in the test's log.
sub _trace { printf STDERR "# formation %s %s\n", scalar(localtime), $_[0] }

sub _bindir
{
	if ($ENV{PG_CONFIG})
	{
		my $dir = `$ENV{PG_CONFIG} --bindir`;
		chomp $dir;
		return $dir if $dir;
	}
	for my $d (split /:/, $ENV{PATH})
	{
		return $d if -x "$d/pg_ctl";
	}
	croak 'no pg_ctl: set PG_CONFIG or put PostgreSQL on PATH';
}

# pg_autoctl starts PostgreSQL with the compiled-in socket directory (on
# Debian /var/run/postgresql, which postgresql-common makes) before our
# postgresql.conf lines exist: say so clearly when the user cannot write it.
sub _check_socket_dirs
{
	my ($bindir) = @_;
	my ($line) = grep { /^unix_socket_directories\t/ } `$bindir/postgres --describe-config`;
	return unless $line;
	my $default = (split /\t/, $line)[4] // '';
	my @dirs = grep { $_ ne '' } map { s/^\s+|\s+$//gr } split /,/, $default;
	return if !@dirs || grep { -d $_ && -w $_ } @dirs;
	croak "pg_autoctl starts PostgreSQL with its socket in @dirs, which this user cannot "
	  . "write; as root: install -d -o postgres -g postgres -m 2775 $dirs[0]";
}

1;
