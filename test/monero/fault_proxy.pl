#!/usr/bin/perl
# test/monero/fault_proxy.pl: an HTTP/1.1 proxy on 127.0.0.1 in front of a
# real monero-wallet-rpc that injects the faults the wallet cannot produce
# on demand (a wallet that hangs, a reply cut short, a huge reply, a lost
# relay_tx reply).  Core Perl only.
#
#   perl test/monero/fault_proxy.pl LISTEN_PORT UPSTREAM_PORT MODE_FILE
#
# LISTEN_PORT 0 takes a free port.  Once listening it prints one line,
# "fault_proxy pid PID port PORT", on stdout (then closes stdout); what it
# does goes to stderr, one line per exchange.  Stop it by its PID (SIGTERM);
# it also exits by itself when its parent is gone.
#
# One client connection at a time (monero-wallet-rpc serves one call at a
# time anyway), with one upstream connection per client connection, so
# digest authentication (a 401 challenge, then the same request with
# Authorization, on the same connection) goes through untouched.  Requests
# and replies are read whole: headers, then Content-Length bytes (the
# wallet's epee server always sends Content-Length).
#
# MODE_FILE holds one word, read again for every request (missing: pass):
#   pass        forward, return the reply unchanged
#   hang        neither forward nor reply; keep the client connection open
#               until the client gives up and closes it
#   cut         forward; of the reply send the headers and half the body,
#               then close (a 401 challenge is passed through, so the cut
#               hits the authenticated answer)
#   huge        do not forward; answer 200 with a valid JSON-RPC reply of
#               about 6 MB: {"jsonrpc":"2.0","id":"0","result":{"pad":"x..."}}
#               where pad is exactly 6000000 "x"
#   drop_relay  forward everything, but when the request's method is
#               relay_tx and the wallet answered 200 (the authenticated
#               round), close the client connection without the reply and
#               write "pass" to MODE_FILE: the relay happened, its one reply
#               is lost.
#               NB: libcurl re-sends a request, on a new connection, when a
#               reused connection closes before one byte of the reply (and
#               with digest the authenticated request always goes on the
#               reused connection), so the client may get the reply of that
#               second relay_tx and never see the loss
#   cut_relay   like drop_relay, but send the reply's headers (with their
#               Content-Length) and no body before closing: the client has
#               started to receive, so it cannot re-send; it sees a lost reply
#   trickle     do not forward; answer 200 with a valid JSON-RPC reply of
#               about 300 bytes, its headers at once and then its body one
#               byte a second (a wallet that answers, slowly), until the
#               client closes
#   canned      do not forward; answer 200 with the bytes of the file
#               MODE_FILE.reply as the body, unchanged (a wallet whose reply
#               is wrong: bad encoding, bad fields)
#               (trickle and canned never connect to the wallet: with them
#               UPSTREAM_PORT may name nothing)
use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use POSIX ();

my $HUGE_PAD = 6_000_000;	# bytes of "x" in the huge reply
my $IDLE_S = 600;			# longest silence of a peer in the middle of an exchange
my $TRICKLE_S = 1;			# seconds between two bytes of a trickled reply
my %MODES = map { $_ => 1 } qw(pass hang cut huge drop_relay cut_relay trickle canned);

sub usage
{
	print STDERR "usage: fault_proxy.pl LISTEN_PORT UPSTREAM_PORT MODE_FILE\n";
	exit 2;
}

usage() unless @ARGV == 3 && $ARGV[0] =~ /^\d+$/ && $ARGV[1] =~ /^\d+$/;
my ($listen_port, $upstream_port, $mode_file) = @ARGV;

$SIG{PIPE} = 'IGNORE';		# a client that went away is an error return, not a death

sub note
{
	my @t = localtime;
	printf STDERR "%02d:%02d:%02d fault_proxy: %s\n", @t[2, 1, 0], join('', @_);
}

sub mode
{
	open my $fh, '<', $mode_file or return 'pass';
	my $word = <$fh> // '';
	close $fh;
	$word =~ s/\s+//g;
	return 'pass' if $word eq '';
	return $word if $MODES{$word};
	note("unknown mode '$word' in $mode_file: pass");
	return 'pass';
}

sub set_mode
{
	my ($word) = @_;
	my $tmp = "$mode_file.tmp$$";
	open my $fh, '>', $tmp or die "fault_proxy: $tmp: $!";
	print $fh "$word\n";
	close $fh or die "fault_proxy: $tmp: $!";
	rename $tmp, $mode_file or die "fault_proxy: rename to $mode_file: $!";
}

# Reads more from $sock onto $$buf; false on end of file, error or silence.
sub fill
{
	my ($sock, $buf) = @_;
	return 0 unless IO::Select->new($sock)->can_read($IDLE_S);
	my $n = sysread($sock, $$buf, 65536, length $$buf);
	return $n ? 1 : 0;
}

sub write_all
{
	my ($sock, $data) = @_;
	my $off = 0;
	while ($off < length $data)
	{
		my $n = syswrite($sock, $data, length($data) - $off, $off);
		return 0 unless $n;
		$off += $n;
	}
	return 1;
}

# One HTTP message from $sock (bytes already read are in $$buf): a hash
# with head, body, raw, status (replies) and close (the peer will close);
# undef when the connection ends first.  Interim 1xx replies are skipped.
sub read_message
{
	my ($sock, $buf, $is_reply) = @_;
	while (1)
	{
		my $end;
		while (($end = index($$buf, "\r\n\r\n")) < 0)
		{
			return undef unless fill($sock, $buf);
		}
		my $head = substr($$buf, 0, $end + 4, '');
		my %m = (head => $head, close => 0);
		if ($is_reply)
		{
			($m{status}) = $head =~ m{^HTTP/\d\.\d\s+(\d{3})} or return undef;
			next if $m{status} =~ /^1/;
			$m{close} = 1 if $head =~ m{^HTTP/1\.0} || $head =~ /^connection:\s*close/im;
		}
		return undef if $head =~ /^transfer-encoding:\s*chunked/im;	# not from epee
		if ($head =~ /^content-length:\s*(\d+)/im)
		{
			my $len = $1;
			while (length $$buf < $len)
			{
				return undef unless fill($sock, $buf);
			}
			$m{body} = substr($$buf, 0, $len, '');
		}
		elsif ($is_reply)
		{
			# No length: the body runs to the end of the connection.
			1 while fill($sock, $buf);
			$m{body} = $$buf;
			$$buf = '';
			$m{close} = 1;
		}
		else
		{
			$m{body} = '';
		}
		$m{raw} = $m{head} . $m{body};
		return \%m;
	}
}

sub huge_reply
{
	my $body = '{"jsonrpc":"2.0","id":"0","result":{"pad":"' . ('x' x $HUGE_PAD) . '"}}';
	return "HTTP/1.1 200 Ok\r\nServer: fault_proxy\r\nContent-Type: application/json\r\n"
	  . 'Content-Length: ' . length($body) . "\r\n\r\n" . $body;
}

sub reply_with
{
	my ($body) = @_;
	return "HTTP/1.1 200 Ok\r\nServer: fault_proxy\r\nContent-Type: application/json\r\n"
	  . 'Content-Length: ' . length($body) . "\r\n\r\n";
}

# The headers at once, then the body a byte every $TRICKLE_S seconds;
# false when the client went away first.
sub trickle
{
	my ($client) = @_;
	my $body = '{"jsonrpc":"2.0","id":"0","result":{"trickle":"' . ('x' x 250) . '"}}';
	return 0 unless write_all($client, reply_with($body));
	for my $i (0 .. length($body) - 1)
	{
		sleep $TRICKLE_S;
		return 0 unless write_all($client, substr($body, $i, 1));
	}
	return 1;
}

sub canned
{
	my $file = "$mode_file.reply";
	open my $fh, '<:raw', $file or return '';
	local $/;
	my $body = <$fh> // '';
	close $fh;
	return $body;
}

my $nconn = 0;

# Serves one client connection until it ends (or a fault ends it).
sub serve
{
	my ($client) = @_;
	my ($cbuf, $ubuf) = ('', '');
	my $up;
	my $nreq = 0;
	$nconn++;
	while (my $req = read_message($client, \$cbuf, 0))
	{
		$nreq++;
		my $mode = mode();
		my $method = $req->{body} =~ /"method"\s*:\s*"([^"]*)"/ ? $1 : '(no body)';
		my $tag = "#$nconn.$nreq $method [$mode]";
		if ($mode eq 'hang')
		{
			note("$tag: hanging until the client closes");
			my $junk = '';
			$junk = '' while fill($client, \$junk);
			note("$tag: the client closed");
			last;
		}
		if ($mode eq 'trickle')
		{
			note("$tag: trickling a reply, a byte every $TRICKLE_S s");
			my $ok = trickle($client);
			note("$tag: ", $ok ? 'trickled whole' : 'the client closed');
			last unless $ok;
			next;
		}
		if ($mode eq 'canned')
		{
			my $body = canned();
			my $ok = write_all($client, reply_with($body) . $body);
			note("$tag: canned reply of ", length $body, ' bytes ', $ok ? 'sent' : 'not taken');
			last unless $ok;
			next;
		}
		if ($mode eq 'huge')
		{
			my $ok = write_all($client, huge_reply());
			note("$tag: huge reply ", $ok ? 'sent' : 'not taken whole (the client closed)');
			last unless $ok;
			next;
		}
		if (!$up)
		{
			$up = IO::Socket::INET->new(
				PeerAddr => '127.0.0.1',
				PeerPort => $upstream_port,
				Proto => 'tcp',
				Timeout => 5);
			if (!$up)
			{
				note("$tag: cannot connect to the wallet on port $upstream_port: $!");
				last;
			}
			$ubuf = '';
		}
		my $reply = write_all($up, $req->{raw}) ? read_message($up, \$ubuf, 1) : undef;
		if (!$reply)
		{
			note("$tag: the wallet closed without a whole reply");
			last;
		}
		my $status = $reply->{status};
		if ($mode eq 'cut' && $status != 401)
		{
			my $half = int(length($reply->{body}) / 2);
			write_all($client, $reply->{head} . substr($reply->{body}, 0, $half));
			note("$tag: $status cut after $half of ", length $reply->{body}, ' body bytes');
			last;
		}
		if ($mode =~ /^(drop|cut)_relay$/ && $status == 200 && $method eq 'relay_tx')
		{
			set_mode('pass');
			write_all($client, $reply->{head}) if $mode eq 'cut_relay';
			note("$tag: $status ", $mode eq 'cut_relay' ? 'sent only the headers of' : 'dropped',
				' the reply to relay_tx; mode is pass again');
			last;
		}
		my $ok = write_all($client, $reply->{raw});
		note("$tag: $status passed (", length $reply->{body}, ' body bytes)',
			$ok ? '' : ' (the client was gone)');
		last unless $ok;
		if ($reply->{close})
		{
			close $up;
			undef $up;		# a new upstream connection for the next request
		}
	}
	close $up if $up;
}

my $server = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => $listen_port,
	Proto => 'tcp',
	Listen => 16,
	ReuseAddr => 1) or die "fault_proxy: cannot listen on 127.0.0.1:$listen_port: $!\n";
my $parent = getppid();
$| = 1;
print "fault_proxy pid $$ port ", $server->sockport, "\n";
open STDOUT, '>', '/dev/null' or die "fault_proxy: /dev/null: $!\n";
note('pid ', $$, ' on 127.0.0.1:', $server->sockport, " for the wallet on port $upstream_port, mode file $mode_file");

my $sel = IO::Select->new($server);
while (1)
{
	if (!$sel->can_read(1))
	{
		exit 0 if getppid() != $parent;		# the test is gone
		next;
	}
	my $client = $server->accept or next;
	serve($client);
	close $client;
}
