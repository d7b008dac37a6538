# A sharded compay on one machine for the scale-out tests (issue 18): a
# router cluster and N shard clusters (default 2), all PostgreSQL::Test::
# Cluster nodes listening on 127.0.0.1, compay preloaded on every one; on
# each shard `pgq`, `dblink` (the consumer reads its peers' queues with it) and
# `compay` are created and the shard is configured with
# compay.shard_configure(i, connstrs, partitions); on the router `plproxy`
# and `compay_router` with compay.router_configure(connstrs, partitions).
# One `pgqd` per shard cluster ticks its PgQ queues, and one clearing
# consumer per shard runs `CALL compay.clearing_consume_loop(...)` in a psql
# of its own (see CONSUMER below).  Every process it starts, it stops by PID.
#
#   my $s = CompayShards->up(                 # every option is optional
#       shards => 2,                          # shard clusters
#       partitions => 8,                      # PL/Proxy partitions (power of two)
#       conf => "compay.default_credit_limit = '0'\n",  # more lines, every node
#       shard_conf => '...', router_conf => '...',
#       init_sql => 'CREATE ROLE app LOGIN',  # run on every node, before configuring
#       consumers => 1,                       # 0: start no consumer (start_consumers later)
#       api => 1,                             # 0: extensions only, no *_configure, no
#                                             # compay_router (compay instead): the test
#                                             # makes its own queues
#       pgqd => 1,                            # 0: start no pgqd
#       ports => [ 5610, 5611, 5612 ]);       # router, shard0, shard1 (else free ones)
#   $s->router;              # the router's PostgreSQL::Test::Cluster node
#   $s->shard($i);           # shard $i's node (0-based, the API's shard number)
#   $s->shards;              # how many shards
#   $s->connstrs;            # the shards' libpq strings, in shard order
#   $s->router_connstr;      # host=127.0.0.1 port=P dbname=postgres
#   $s->psql_router($sql);   # psql -XAt on the router; dies on error; stdout
#   $s->psql_shard($i, $sql);
#   $s->sqlstate($node, $sql);   # SQLSTATE of one statement ('00000': it worked)
#   $s->shard_of($node_id);      # compay.shard_of() on shard 0
#
#   # Crashes.  kill9_shard kills the shard's postmaster and every process
#   # it had started (backends, workers: the whole server dies at once, as
#   # when its machine fails), then starts the server again (crash
#   # recovery).  Its consumer's psql loses its connection and the
#   # supervisor runs it again; the other shard's consumer gets a warning
#   # (peer unreachable) and carries on.
#   $s->kill9_shard($i);         # seconds until it accepts connections again
#                                # (its pgqd is started again too: pgqd 3.5
#                                # reconnects only after a fixed 60 s)
#   $s->kill9_consumer($i);      # kill -9 the consumer (its supervisor and psql);
#                                # the server aborts the backend's transaction
#                                # at once (client_connection_check_interval)
#   $s->kill9_consumer($i, backend => 1);   # also kill -9 its backend (that shard's
#                                # postmaster then resets every session; waits
#                                # until it accepts connections, restarts pgqd)
#   $s->restart_consumer($i);
#   $s->consumer_runs($i);       # true while its supervisor lives
#   $s->wait_drained($timeout);  # every event queued on every shard ticked,
#                                # consumed and its batch finished; seconds
#   $s->pending_events;          # events queued and not yet consumed, all shards
#   $s->down;                    # stops consumers, pgqd, then the servers, by PID
#                                # (also from an END block if the test dies)
#
# CONSUMER: the command each consumer's psql runs, by default
# `CALL compay.clearing_consume_loop('100 milliseconds')`; the supervisor
# (a forked perl process in a session of its own) starts psql again 0.2 s
# after it exits (its own server crashed or restarted), until it is killed.  COMPAY_SHARDS_CONSUMER in the environment, or the option
# consumer_sql, replaces it.
#
# PgQ's defaults tick a queue with events only every 3 s
# (queue_ticker_max_lag); the module sets every queue's ticker_max_lag to
# 100 ms and ticker_idle_period to 1 s after configuring, and pgqd's
# ticker_period to 0.1 s, so events flow within a fraction of a second.
package CompayShards;

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

my $common_conf = <<'EOC';

# compay shards (test/t/CompayShards.pm)
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'compay'
compay.database = 'postgres'
shared_buffers = '32MB'
max_connections = 60
max_worker_processes = 16
fsync = off
TimeZone = 'UTC'
restart_after_crash = on
# PostgreSQL::Test::Cluster's init sets minimal: then a sequence created and
# used in one transaction (PgQ's create_queue ticks at once) skips WAL, and
# after a crash its next value repeats one already committed (pgq.tick_pkey)
wal_level = replica
# a consumer whose psql was killed loses its transaction at once
client_connection_check_interval = '100ms'
log_statement = 'none'
log_line_prefix = '%m [%p] %q%a %u@%d '
EOC

sub up
{
	my ($class, %opts) = @_;
	my $nshards = $opts{shards} // 2;
	my $partitions = $opts{partitions} // 8;
	my $dir = File::Temp::tempdir('compay_shards_XXXX', TMPDIR => 1, CLEANUP => 1);
	my $self = bless {
		dir => $dir,
		owner => $$,
		nshards => $nshards,
		partitions => $partitions,
		consumer_sql => $opts{consumer_sql} // $ENV{COMPAY_SHARDS_CONSUMER}
		  // q{CALL compay.clearing_consume_loop('100 milliseconds')},
		consumers => [],
		pgqd => [],
	}, $class;
	push @formations, $self;
	# A test stopped by SIGTERM or SIGINT (a timeout, ^C) still runs the
	# END blocks that stop what it started.
	for my $sig (qw(TERM INT))
	{
		$SIG{$sig} = sub { print STDERR "# stopped by SIG$sig\n"; exit 1 }
		  if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
	}

	my @ports = @{ $opts{ports} // [] };
	$self->{router} = _node('router', $ports[0], $common_conf . ($opts{conf} // '')
		  . ($opts{router_conf} // ''));
	$self->{shards} = [
		map {
			_node("shard$_", $ports[ $_ + 1 ],
				$common_conf . ($opts{conf} // '') . ($opts{shard_conf} // ''))
		} 0 .. $nshards - 1
	];
	$self->{connstrs} = [ map { _connstr($_) } @{ $self->{shards} } ];
	_trace('clusters up: router ' . $self->{router}->port . ', shards '
		  . join(' ', map { $_->port } @{ $self->{shards} }));

	for my $i (0 .. $nshards - 1)
	{
		my $n = $self->{shards}[$i];
		$n->safe_psql('postgres', $opts{init_sql}) if defined $opts{init_sql};
		$n->safe_psql('postgres', 'CREATE EXTENSION pgq');
		$n->safe_psql('postgres', 'CREATE EXTENSION dblink');
		$n->safe_psql('postgres', 'CREATE EXTENSION compay');
		next unless $opts{api} // 1;
		$n->safe_psql('postgres',
			"SELECT compay.shard_configure($i, " . $self->_connstr_array . ", $partitions)");
		# Events flow within a fraction of a second (the defaults wait 3 s).
		$n->safe_psql('postgres', q{
SELECT pgq.set_queue_config(queue_name, 'ticker_max_lag', '100 milliseconds'),
       pgq.set_queue_config(queue_name, 'ticker_idle_period', '1 second')
  FROM pgq.queue});
	}
	my $r = $self->{router};
	$r->safe_psql('postgres', $opts{init_sql}) if defined $opts{init_sql};
	$r->safe_psql('postgres', 'CREATE EXTENSION plproxy');
	$r->safe_psql('postgres', 'CREATE EXTENSION compay') unless $opts{api} // 1;
	if ($opts{api} // 1)
	{
		$r->safe_psql('postgres', 'CREATE EXTENSION compay_router CASCADE');
		$r->safe_psql('postgres',
			'SELECT compay.router_configure(' . $self->_connstr_array . ", $partitions)");
	}
	_trace('configured');

	if ($opts{pgqd} // 1)
	{
		$self->_start_pgqd($_) for 0 .. $nshards - 1;
	}
	if ($opts{consumers} // 1)
	{
		$self->start_consumers;
	}
	return $self;
}

sub router { return $_[0]{router} }
sub shards { return $_[0]{nshards} }
sub partitions { return $_[0]{partitions} }
sub dir { return $_[0]{dir} }
sub connstrs { return @{ $_[0]{connstrs} } }
sub router_connstr { return _connstr($_[0]{router}) }

sub shard
{
	my ($self, $i) = @_;
	my $n = $self->{shards}[$i] or croak "no shard $i";
	return $n;
}

sub all_nodes
{
	my ($self) = @_;
	return ($self->{router}, @{ $self->{shards} });
}

sub psql_router { my ($self, $sql) = @_; return $self->psql($self->{router}, $sql) }
sub psql_shard { my ($self, $i, $sql) = @_; return $self->psql($self->shard($i), $sql) }

# psql -XAt on a node (over TCP, as the applications connect); dies with
# psql's message on error.
sub psql
{
	my ($self, $node, $sql) = @_;
	my ($rc, $out, $err) = $self->try_psql($node, $sql);
	croak 'psql on ' . $node->name . " failed: $err" if $rc != 0;
	return $out;
}

sub try_psql
{
	my ($self, $node, $sql, $timeout) = @_;
	# The SQL by stdin (it may be longer than an argument may be): each
	# statement runs by itself, its rows printed in turn.
	return CompayProcesses::run_psql(
		[ $self->_bin('psql'), '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
		  '-d', _connstr($node) ],
		$sql, $timeout // 180);
}

# The SQLSTATE one statement ends with (psql's :SQLSTATE, by stdin).
sub sqlstate
{
	my ($self, $node, $sql) = @_;
	return CompayProcesses::psql_sqlstate(
		[ $self->_bin('psql'), '-X', '-A', '-t', '-q', '-d', _connstr($node) ], $sql);
}

sub shard_of
{
	my ($self, $node_id) = @_;
	return $self->psql_shard(0, 'SELECT compay.shard_of(' . _quote($node_id) . ')');
}

# --- crashes ---------------------------------------------------------------

# kill -9 the shard's postmaster and the processes it started, then start
# it again; returns the seconds until it accepts connections.
sub kill9_shard
{
	my ($self, $i) = @_;
	my $n = $self->shard($i);
	my $pm = CompayProcesses::postmaster_pid($n->data_dir)
	  or croak "shard $i has no running postmaster";
	my @children = CompayProcesses::children($pm);
	_trace("kill -9 shard $i (postmaster $pm and " . scalar(@children) . ' children)');
	my $t0 = time;
	$n->kill9;                      # the postmaster, and forgets its pid
	kill 'KILL', @children if @children;
	# The new postmaster refuses to start while an old process still has
	# the shared memory attached: wait for every one to be gone.
	my $deadline = time + 30;
	while (grep { kill 0, $_ } $pm, @children)
	{
		croak "shard $i: old processes still alive after 30 s" if time > $deadline;
		sleep 0.05;
	}
	for my $try (1 .. 5)
	{
		last if $n->start(fail_ok => 1);
		croak "shard $i did not start again after kill -9" if $try == 5;
		sleep 1;
	}
	$self->_after_crash($i);
	return time - $t0;
}

# After shard $i's server went through a crash (and a restart or reset):
# waits until it accepts connections, then starts its pgqd again.
sub _after_crash
{
	my ($self, $i) = @_;
	my $n = $self->shard($i);
	$self->_wait(60, "shard $i accepts connections",
		sub { ($self->try_psql($n, 'SELECT 1', 10))[1] eq '1' });
	# pgqd 3.5 waits a fixed 60 s before it reconnects after a lost
	# connection (src/ticker.c, "default timeout"): start it again, as the
	# shard host's service manager would with the server.
	if (my $old = $self->{pgqd}[$i])
	{
		kill 'KILL', $old;
		waitpid($old, 0);
		$self->_start_pgqd($i);
	}
	return;
}

# --- pgqd ---------------------------------------------------------------

sub _start_pgqd
{
	my ($self, $i) = @_;
	my $n = $self->shard($i);
	my $ini = "$self->{dir}/pgqd$i.ini";
	my $log = "$self->{dir}/pgqd$i.log";
	# pgqd 3.5 (Debian 12): an ini file with one [pgqd] section; no -d: it
	# runs in the foreground, as our child, and we stop it by its PID.  It
	# ticks every database of the cluster that has pgq (database_list
	# limits it to ours) and runs PgQ's maintenance (rotation, retries).
	# (As a service: `pgqd -d FILE` daemonizes and needs `pidfile` (else
	# "daemon needs pidfile configured"); `pgqd -s FILE` stops it by that
	# pidfile with SIGINT; Debian's pgqd.service runs /etc/pgqd.ini.)
	CompayProcesses::write_file($ini, <<"EOI");
[pgqd]
base_connstr = host=127.0.0.1 port=@{[ $n->port ]}
initial_database = postgres
database_list = postgres
logfile = $log
pidfile = $self->{dir}/pgqd$i.pid
syslog = 0
ticker_period = 0.1
check_period = 5
retry_period = 1
maint_period = 30
EOI
	my $pid = _spawn("$self->{dir}/pgqd$i.out", 'pgqd', $ini);
	$self->{pgqd}[$i] = $pid;
	_trace("pgqd for shard $i: pid $pid");
	return $pid;
}

sub pgqd_pid { my ($self, $i) = @_; return $self->{pgqd}[$i] }

# --- consumers --------------------------------------------------------------

sub start_consumers
{
	my ($self) = @_;
	$self->restart_consumer($_) for 0 .. $self->{nshards} - 1;
	return;
}

# A supervisor in a session of its own: psql runs the consumer command,
# again 0.2 s after each exit, until the supervisor is killed.
sub restart_consumer
{
	my ($self, $i) = @_;
	croak "consumer $i runs already" if $self->consumer_runs($i);
	my $n = $self->shard($i);
	my $log = "$self->{dir}/consumer$i.log";
	my @psql = ($self->_bin('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', _connstr($n, "compay_consumer$i"), '-c', $self->{consumer_sql});
	my $pid = fork // croak "fork: $!";
	if ($pid == 0)
	{
		_own_group();
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', $log;
		open STDERR, '>&', \*STDOUT;
		$SIG{$_} = 'DEFAULT' for qw(TERM INT);
		while (1)
		{
			printf "# %s consumer %d: %s\n", scalar(localtime), $i, $psql[-1];
			system(@psql);
			printf "# %s consumer %d: psql exited with %d\n", scalar(localtime), $i, $? >> 8;
			sleep 0.2;
		}
	}
	# Also here: a kill right after the fork must reach the group.
	POSIX::setpgid($pid, $pid);
	$self->{consumers}[$i] = $pid;
	_trace("consumer $i: supervisor $pid");
	return $pid;
}

sub consumer_runs
{
	my ($self, $i) = @_;
	my $pid = $self->{consumers}[$i] or return 0;
	return waitpid($pid, WNOHANG) == 0;
}

# kill -9 the consumer's supervisor and psql (one process group); with
# backend => 1 also its server process (found by application_name).
sub kill9_consumer
{
	my ($self, $i, %opts) = @_;
	my $pid = $self->{consumers}[$i] or croak "consumer $i was not started";
	my $backend;
	if ($opts{backend})
	{
		my ($rc, $out) = $self->try_psql($self->shard($i),
			"SELECT pid FROM pg_stat_activity WHERE application_name = 'compay_consumer$i'",
			10);
		($backend) = $rc == 0 ? ($out =~ /^(\d+)/) : ();
	}
	_trace("kill -9 consumer $i (supervisor $pid" . ($backend ? ", backend $backend" : '')
		  . ')');
	kill 'KILL', -$pid;
	kill 'KILL', $pid;
	waitpid($pid, 0);
	delete $self->{consumers}[$i];
	if ($backend)
	{
		# The postmaster resets every session of the shard (crash
		# recovery): pgqd's too.
		kill 'KILL', $backend;
		$self->_wait(30, "shard $i notices the crash", sub { !kill 0, $backend });
		sleep 0.5;
		$self->_after_crash($i);
	}
	return $backend;
}

# --- draining ------------------------------------------------------------

# Events queued on every shard that a consumer has not finished yet: not
# yet ticked, in a tick after the consumer's last one, or in its open batch.
my $pending_sql = q{
SELECT coalesce(sum(pgq.seq_getval(q.queue_event_seq)
                    - coalesce(t.tick_event_seq, 0)
                    + CASE WHEN s.sub_batch IS NULL THEN 0 ELSE 1 END), 0)
  FROM pgq.queue q
  JOIN pgq.subscription s ON s.sub_queue = q.queue_id
  LEFT JOIN pgq.tick t ON t.tick_queue = q.queue_id AND t.tick_id = s.sub_last_tick
};

sub pending_events
{
	my ($self) = @_;
	my $total = 0;
	for my $i (0 .. $self->{nshards} - 1)
	{
		my ($rc, $out) = $self->try_psql($self->shard($i), $pending_sql, 30);
		return undef if $rc != 0;
		$total += $out;
	}
	return $total;
}

# Events queued but not yet applied, over all shards (compay.clearing_sent
# rows without their compay.clearing_applied row).
sub unapplied_events
{
	my ($self) = @_;
	my $total = 0;
	for my $i (0 .. $self->{nshards} - 1)
	{
		my ($rc, $out) = $self->try_psql($self->shard($i),
			q{SELECT (SELECT count(*) FROM compay.clearing_sent)
			       - (SELECT count(*) FROM compay.clearing_applied)}, 30);
		return undef if $rc != 0;
		$total += $out;
	}
	return $total;
}

# Waits until every queued event is consumed and applied; returns the
# seconds.  An event whose transaction committed after the queue's last
# tick is in no batch yet, and pgqd ticks a queue whose event sequence has
# not moved only after its idle period: the queues are ticked by hand then.
sub wait_drained
{
	my ($self, $timeout) = @_;
	my $t0 = time;
	$self->_wait($timeout // 60, 'every queued event consumed and applied',
		sub {
			my $p = $self->pending_events;
			return 0 unless defined $p && $p == 0;
			my $u = $self->unapplied_events;
			return 1 if defined $u && $u == 0;
			$self->try_psql($self->shard($_), q{SELECT pgq.force_tick(queue_name) FROM pgq.queue}, 30)
			  for 0 .. $self->{nshards} - 1;
			return 0;
		});
	return time - $t0;
}

# --- stopping ------------------------------------------------------------

sub down
{
	my ($self) = @_;
	return if $self->{down} || $self->{owner} != $$;
	$self->{down} = 1;
	for my $pid (grep { defined } @{ $self->{consumers} })
	{
		kill 'KILL', -$pid;
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}
	$self->{consumers} = [];
	for my $pid (grep { defined } @{ $self->{pgqd} })
	{
		kill 'TERM', $pid;
	}
	my $t0 = time;
	for my $pid (grep { defined } @{ $self->{pgqd} })
	{
		while (waitpid($pid, WNOHANG) == 0 && time - $t0 < 10) { sleep 0.05 }
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}
	$self->{pgqd} = [];
	for my $n ($self->all_nodes)
	{
		$n->stop('fast', fail_ok => 1) if $n;
	}
	return;
}

END
{
	my $rc = $?;
	$_->down for @formations;
	$? = $rc;
}

# --- helpers ------------------------------------------------------------

sub _node
{
	my ($name, $port, $conf) = @_;
	my $n = PostgreSQL::Test::Cluster->new($name, defined $port ? (port => $port) : ());
	$n->init;
	$n->append_conf('postgresql.conf', $conf);
	$n->start;
	return $n;
}

sub _connstr
{
	my ($node, $appname) = @_;
	return 'host=127.0.0.1 port=' . $node->port . ' dbname=postgres'
	  . ($appname ? " application_name=$appname" : '');
}

sub _connstr_array
{
	my ($self) = @_;
	return 'ARRAY[' . join(', ', map { _quote($_) } @{ $self->{connstrs} }) . ']';
}

sub _quote { my ($s) = @_; $s =~ s/'/''/g; return "'$s'" }

sub _bin
{
	my ($self, $prog) = @_;
	return $self->{router}->installed_command($prog) if $self->{router};
	return $prog;
}

# fork + exec in a session of its own, output appended to $log.
sub _spawn
{
	my ($log, @cmd) = @_;
	my $pid = fork // croak "fork: $!";
	if ($pid == 0)
	{
		_own_group();
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', $log;
		open STDERR, '>&', \*STDOUT;
		$SIG{$_} = 'DEFAULT' for qw(TERM INT);
		{ exec @cmd }
		POSIX::_exit(127);
	}
	POSIX::setpgid($pid, $pid);
	return $pid;
}

# A session of its own, or at least a process group of its own when the
# parent made it one first (setsid fails for a group leader).
sub _own_group
{
	setsid() or POSIX::setpgid(0, 0);
	return;
}

sub _wait
{
	my ($self, $timeout, $what, $done) = @_;
	my $t0 = time;
	while (time - $t0 < $timeout)
	{
		return 1 if $done->();
		sleep 0.1;
	}
	croak "timed out after ${timeout}s waiting for $what\n" . $self->logs;
}

# The last lines of the pgqd and consumer logs, for a failure message.
sub logs
{
	my ($self) = @_;
	my $text = '';
	for my $i (0 .. $self->{nshards} - 1)
	{
		for my $name ("pgqd$i.log", "pgqd$i.out", "consumer$i.log")
		{
			my $log = "$self->{dir}/$name";
			next unless -e $log;
			my @lines = do { open my $fh, '<', $log or next; <$fh> };
			splice @lines, 0, @lines - 15 if @lines > 15;
			$text .= "--- $name\n" . join('', @lines);
		}
	}
	return $text;
}

sub _trace { printf STDERR "# shards %s %s\n", scalar(localtime), $_[0] }

1;
