#!/usr/bin/perl
# test/monero/rpc.pl: one call to monerod or monero-wallet-rpc, with core
# Perl only (HTTP::Tiny, Digest::MD5, JSON::PP), so the test harness needs
# neither curl nor jq.
#
#   perl test/monero/rpc.pl URL METHOD [JSON_PARAMS] [options]
#
# METHOD is a JSON-RPC method, posted to URL/json_rpc (or --path).  A METHOD
# that starts with "/" is one of the daemon's other endpoints
# (/get_transactions, /stop_daemon, ...): JSON_PARAMS is then posted to it
# as the whole body.
#
# Options:
#   --user U --password-file F   HTTP digest login (MD5, qop=auth), as
#                                monero-wallet-rpc --rpc-login wants
#   --path P                     JSON-RPC path (default /json_rpc)
#   --timeout S                  whole-request timeout (default 120 s)
#   --get KEY.KEY...             print only that member of the reply (a
#                                scalar, big integers kept exact) instead
#                                of the raw reply
#   --check                      exit 3 when the reply has an "error"
#                                member (even {"code":0})
#
# Prints the reply body as received (amounts stay exact integers).  Exit
# status: 0 reply received; 1 connection failure or HTTP status other than
# 200 (message on stderr); 2 bad usage; 3 JSON-RPC error with --check, or
# --get found nothing.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
use Getopt::Long qw(:config no_ignore_case require_order);
use HTTP::Tiny;
use JSON::PP;

my $prog = 'rpc.pl';

sub usage {
    print STDERR "usage: $prog URL METHOD [JSON_PARAMS] [--user U --password-file F]"
      . " [--path /json_rpc] [--timeout S] [--get KEY.KEY] [--check]\n";
    exit 2;
}

sub fail {
    my ($code, $msg) = @_;
    print STDERR "$prog: $msg\n";
    exit $code;
}

my %opt = (path => '/json_rpc', timeout => 120);
my @args;
# Options may come before, between or after the positional arguments.
Getopt::Long::Configure('permute');
GetOptions(
    'user=s'          => \$opt{user},
    'password-file=s' => \$opt{password_file},
    'path=s'          => \$opt{path},
    'timeout=f'       => \$opt{timeout},
    'get=s'           => \$opt{get},
    'check'           => \$opt{check},
    'help|h'          => \&usage,
    '<>'              => sub { push @args, "$_[0]" },
) or usage();
usage() if @args < 2 || @args > 3;
my ($url, $method, $params) = @args;
$params = '{}' if !defined $params || $params eq '';
$url =~ s{/+$}{};
fail(2, "URL must be http://HOST:PORT, got '$url'") unless $url =~ m{^http://[^/]+$};
fail(2, '--user and --password-file go together')
  if defined $opt{user} xor defined $opt{password_file};

my $json = JSON::PP->new->allow_bignum->allow_nonref;

# The parameters are checked, then sent as given: re-encoding them could
# change how an amount is written.
eval { $json->decode($params); 1 }
  or fail(2, "JSON_PARAMS is not valid JSON: $params");

my ($path, $body);
if ($method =~ m{^/}) {
    ($path, $body) = ($method, $params);
} else {
    $path = $opt{path};
    $body = '{"jsonrpc":"2.0","id":"0","method":' . $json->encode($method)
      . ',"params":' . $params . '}';
}

my $password;
if (defined $opt{password_file}) {
    open(my $fh, '<', $opt{password_file})
      or fail(1, "cannot read password file $opt{password_file}: $!");
    $password = <$fh>;
    close $fh;
    $password = '' unless defined $password;
    chomp $password;
}

my $http = HTTP::Tiny->new(
    timeout    => $opt{timeout},
    keep_alive => 1,
    agent      => 'compay-test-rpc/1',
);

sub post {
    my ($auth) = @_;
    my %headers = ('Content-Type' => 'application/json');
    $headers{Authorization} = $auth if defined $auth;
    return $http->request('POST', $url . $path, { headers => \%headers, content => $body });
}

# Parses one WWW-Authenticate value into (scheme, {param => value}).
sub parse_challenge {
    my ($value) = @_;
    my ($scheme, $rest) = $value =~ /^\s*(\S+)\s*(.*)$/s or return;
    my %p;
    while ($rest =~ /\G\s*,?\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/gc) {
        my ($k, $v) = (lc $1, defined $2 ? $2 : $3);
        $v =~ s/\\(.)/$1/g;
        $p{$k} = $v;
    }
    return (lc $scheme, \%p);
}

# The Authorization header answering a Digest challenge (RFC 7616, MD5,
# qop=auth).  monero-wallet-rpc offers MD5 and MD5-sess; MD5 is picked.
sub digest_auth {
    my ($res) = @_;
    my $hdr = $res->{headers}{'www-authenticate'};
    my @values = ref $hdr ? @$hdr : defined $hdr ? ($hdr) : ();
    my $chosen;
    for my $v (@values) {
        my ($scheme, $p) = parse_challenge($v) or next;
        next unless $scheme eq 'digest' && defined $p->{nonce};
        my $alg = uc($p->{algorithm} // 'MD5');
        next unless $alg eq 'MD5';
        next if defined $p->{qop} && !grep { $_ eq 'auth' } split /\s*,\s*/, $p->{qop};
        $chosen = $p;
        last;
    }
    fail(1, "HTTP 401 from $url$path and no usable Digest MD5 challenge"
          . " (WWW-Authenticate: " . join(' | ', @values) . ")")
      unless $chosen;
    my $realm  = $chosen->{realm} // '';
    my $cnonce = md5_hex(join ':', $$, time, rand);
    my $nc     = '00000001';
    my $ha1    = md5_hex("$opt{user}:$realm:$password");
    my $ha2    = md5_hex("POST:$path");
    my ($response, $qop);
    if (defined $chosen->{qop}) {
        $qop      = 'auth';
        $response = md5_hex("$ha1:$chosen->{nonce}:$nc:$cnonce:$qop:$ha2");
    } else {
        $response = md5_hex("$ha1:$chosen->{nonce}:$ha2");
    }
    my @parts = (
        qq{username="$opt{user}"}, qq{realm="$realm"},
        qq{nonce="$chosen->{nonce}"}, qq{uri="$path"},
        'algorithm=MD5', qq{response="$response"},
    );
    push @parts, "qop=$qop", "nc=$nc", qq{cnonce="$cnonce"} if defined $qop;
    push @parts, qq{opaque="$chosen->{opaque}"} if defined $chosen->{opaque};
    return 'Digest ' . join(', ', @parts);
}

my $res = post();
if ($res->{status} == 401 && defined $opt{user}) {
    $res = post(digest_auth($res));
}
if ($res->{status} == 599) {
    # HTTP::Tiny's code for "no HTTP reply": refused, timed out, reset.
    my $why = $res->{content} // '';
    $why =~ s/\s+$//;
    fail(1, "no reply from $url$path: $why");
}
if ($res->{status} != 200) {
    my $snippet = substr($res->{content} // '', 0, 300);
    $snippet =~ s/\s+/ /g;
    fail(1, "HTTP $res->{status} $res->{reason} from $url$path"
          . ($res->{status} == 401 ? (defined $opt{user} ? ' (login refused)' : ' (login needed)') : '')
          . ": $snippet");
}

# --get's output: strings and numbers bare, anything else as JSON.
sub scalar_text {
    my ($node) = @_;
    return 'null' unless defined $node;
    return $node ? 'true' : 'false' if JSON::PP::is_bool($node);
    return "$node" if !ref $node || ref $node eq 'Math::BigInt' || ref $node eq 'Math::BigFloat';
    return $json->canonical->encode($node);
}

my $text = $res->{content} // '';
if ($opt{check} || defined $opt{get}) {
    my $reply = eval { $json->decode($text) };
    fail(1, "reply from $url$path is not JSON: " . substr($text, 0, 300))
      unless defined $reply;
    if ($opt{check} && ref $reply eq 'HASH' && exists $reply->{error}) {
        print STDERR "$prog: $method: error " . $json->canonical->encode($reply->{error}) . "\n";
        print "$text\n" unless defined $opt{get};
        exit 3;
    }
    if (defined $opt{get}) {
        my $node = $reply;
        for my $key (split /\./, $opt{get}) {
            if (ref $node eq 'HASH' && exists $node->{$key}) {
                $node = $node->{$key};
            } elsif (ref $node eq 'ARRAY' && $key =~ /^\d+$/ && $key < @$node) {
                $node = $node->[$key];
            } else {
                fail(3, "$method: no '$opt{get}' in reply: " . substr($text, 0, 300));
            }
        }
        print scalar_text($node), "\n";
        exit 0;
    }
}
$text .= "\n" unless $text =~ /\n\z/;
print $text;
exit 0;
