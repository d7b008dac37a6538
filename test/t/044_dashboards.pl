# The dashboards (src/dashboard.sql) as a user sees them: both pages saved
# with psql -XAtc from a streaming hot standby, rendered by headless
# Chromium to PNG, and the PNG read back.
#
# 1. Data on the primary: a provider gpu-1 with XMR earnings at every
#    stage (paid out on chain, in a built payout, unsettled, disputed) and
#    a CREDIT earning, a refund after the payout (a clawback owed) and
#    shortfalls owed to and by gpu-1; a node named <script>alert(1)</script> with a job
#    type <b>bold</b>; a failed payment; the runners' last wallet health.
#    Payouts are simulated as sql/payout_caps.sql does (made-up wallet
#    replies, no wallet).
# 2. The pages are read on a hot standby (read only), saved with psql.
# 3. The HTML: the hand-computed exact figures, the payouts' tx hashes,
#    the malicious node id and job type only escaped, no script, no
#    network address (no http: or https: resource), nothing outside.
# 4. Chromium renders each page (a missing chromium fails the test: test/deps.sh
#    installs it); the PNG is 1200 pixels wide, not one colour, and has the
#    bar and line colours of the charts.  The screenshots are saved to
#    docs/images/.
#
# Run: bash /work/tools/runperl.sh WORKTREE PG test/t/044_dashboards.pl

use strict;
use warnings;

use File::Copy qw(copy);
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $evil = '<script>alert(1)</script>';
my $evil_escaped = '&lt;script&gt;alert(1)&lt;/script&gt;';

my $node = PostgreSQL::Test::Cluster->new('dashboards');
$node->init(allows_streaming => 1);
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION compay');

# 1. Data.
$node->safe_psql('postgres', <<'SQL');
SET TimeZone = 'UTC';
CREATE FUNCTION earn(task text, payee text, task_type text, amount compay.credit, currency text,
    ago interval, status compay.payment_status DEFAULT 'completed') RETURNS bigint
LANGUAGE sql AS $$
    SELECT compay.admin_deposit('requester', amount, currency, 'funds for ' || task);
    INSERT INTO compay.jobs (task_id, requester, provider, task_type, currency, status, amount,
                             created_at, started_at, completed_at)
    VALUES (task, 'requester', payee, task_type, currency,
            CASE WHEN status = 'failed' THEN 'failed' ELSE 'paid' END::compay.job_status,
            amount, now() - ago - interval '10 minutes', now() - ago - interval '10 minutes',
            now() - ago);
    INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                                 created_at, completed_at, disputed_at, transfer_id)
    VALUES (task, 'requester', payee, amount, currency, 'crypto', status, now() - ago,
            CASE WHEN status <> 'failed' THEN now() - ago END,
            CASE WHEN status = 'disputed' THEN now() - ago END,
            compay.transfer('requester', payee, amount, task, NULL, currency));
    UPDATE compay.jobs SET payment_id = currval('compay.payments_id_seq') WHERE task_id = task;
    SELECT currval('compay.payments_id_seq');
$$;
-- What the wallet would answer to transfer: the items' amounts, a fee of 0.0001.
CREATE FUNCTION fake_build(id bigint) RETURNS void LANGUAGE sql AS $$
    SELECT compay.record_payout_built(id, jsonb_build_object(
        'tx_hash', encode(sha256(('tx' || id)::bytea), 'hex'),
        'tx_key', encode(sha256(('key' || id)::bytea), 'hex'),
        'tx_metadata', 'abcd',
        'spent_key_images', jsonb_build_object('key_images',
            jsonb_build_array(encode(sha256(('ki' || id)::bytea), 'hex'))),
        'fee', 100000000,
        'amount', (SELECT sum(compay.atomic(i.amount)) FROM compay.payout_items i
                   WHERE i.payout_id = id)))
$$;
SELECT compay.set_payout_address('gpu-1',
    '4AJwEKR6JfT2hPh1wxvCowa2zpVcMG94Ha5Z6qTuadcnHZ3QFnB1dX2j3JJtkTYNBpWvPMFAh6GKsYUnBXCzjjPP1biZiq1');
SELECT compay.set_payout_address('<script>alert(1)</script>',
    '87uLzB6ynrvKyBeU5FLigJDdfYCMN9YueeFZH3S6XWhqTAD84p1CYZwHTQribxUCAvGParmc6hZPNEzfDMve9k5DESF2ucw');
SELECT compay.set_payout_policy('gpu-1', true, '0.01', NULL, '10');
SELECT compay.set_payout_policy('<script>alert(1)</script>', true, '0.01', NULL, '10');
-- Paid out on chain: 0.8 + 0.25 + 0.125 of gpu-1 and 0.2 of the other, in payout 1.
SELECT earn('t1', 'gpu-1', 'render', '0.8', 'XMR', '3 days');
SELECT earn('t2', 'gpu-1', 'render', '0.25', 'XMR', '2 days');
SELECT earn('t3', 'gpu-1', 'train', '0.125', 'XMR', '1 day');
SELECT earn('x1', '<script>alert(1)</script>', '<b>bold</b>', '0.2', 'XMR', '2 days');
SELECT count(*) FROM compay.run_settlement('hourly');
SELECT compay.queue_payouts();
SELECT fake_build(id), compay.record_payout_relayed(id), compay.record_payout_confirmations(id, 10)
FROM compay.payout_transactions;
-- A day later: 0.5 settled, its payout 2 built, not confirmed (settling).
UPDATE compay.payout_transactions SET created_at = created_at - interval '1 day 1 minute';
SELECT earn('t6', 'gpu-1', 'train', '0.5', 'XMR', '5 hours');
SELECT count(*) FROM compay.run_settlement('hourly');
SELECT compay.queue_payouts();
SELECT fake_build(id) FROM compay.payout_transactions WHERE status = 'queued';
-- Unsettled 0.0625 (this hour), disputed 0.03125, 12.5 CREDIT, a failed payment.
SELECT earn('t4', 'gpu-1', 'infer', '0.0625', 'XMR', '0 hours');
SELECT earn('t5', 'gpu-1', 'render', '0.03125', 'XMR', '2 days', 'disputed');
SELECT earn('c1', 'gpu-1', 'render', '12.5', 'CREDIT', '1 day');
SELECT earn('f1', 'gpu-2', 'train', '1', 'XMR', '1 day', 'failed');
-- A refund after the money left on chain: t3 (0.125, paid out in payout
-- 1) disputed and 0.025 of it refunded, fronted by $clawbacks: gpu-1
-- owes 0.025.
SELECT status FROM compay.dispute_payment((SELECT id FROM compay.payments WHERE task_id = 't3'), 'slow');
SELECT status FROM compay.resolve_dispute((SELECT id FROM compay.payments WHERE task_id = 't3'), '0.025');
-- Shortfalls (what verification priced beyond the escrow), as the job
-- flow records them: 0.015 owed to gpu-1 for t2; 0.004 owed by gpu-1 for
-- a job it requested 10 days ago (outside the range), 0.001 collected.
INSERT INTO compay.jobs (task_id, requester, provider, task_type, currency, status, amount,
                         created_at, started_at, completed_at)
VALUES ('s1', 'gpu-1', 'gpu-2', 'train', 'XMR', 'paid', '0.01',
        now() - interval '10 days', now() - interval '10 days', now() - interval '10 days');
INSERT INTO compay.shortfalls (job_id, requester, provider, currency, amount, collected)
VALUES ((SELECT id FROM compay.jobs WHERE task_id = 't2'), 'requester', 'gpu-1', 'XMR', '0.015', '0'),
       ((SELECT id FROM compay.jobs WHERE task_id = 's1'), 'gpu-1', 'gpu-2', 'XMR', '0.004', '0.001');
INSERT INTO compay.runner_status (runner, state, health_at, unlocked_balance, queued_payouts,
    wallet_height, daemon_height)
VALUES ('run_payouts', 'idle', now(), '42.000000000001', '0.5', 1200, 1201);
SQL
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(id || ':' || status || ':' || amount, ' ' ORDER BY id)
		              FROM compay.payout_transactions}),
	'1:confirmed:1.375 2:built:0.5',
	'payout 1 confirmed (1.375), payout 2 built (0.5)');
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(status::text, ' ' ORDER BY id) FROM compay.settlements
		              WHERE payee = 'gpu-1'}),
	'completed completed completed processing',
	"gpu-1's settlements: three completed, one processing");
my %tx = map { split /:/ } split /\n/,
  $node->safe_psql('postgres', q{SELECT id || ':' || tx_hash FROM compay.payout_transactions});
my ($tx1, $tx2) = @tx{1, 2};

# 2. A hot standby serves the pages.
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('dashboards_standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the pages are read on a standby');

my $dir = PostgreSQL::Test::Utils::tempdir;
my $range = q{now() - interval '7 days', now() + interval '1 hour'};

# Saves a page as the documentation says: psql -XAtc "SELECT ..." > file.
sub save_page
{
	my ($sql, $file) = @_;
	my $cmd = sprintf(q{psql -XAtc %s -h %s -p %d -d postgres > %s},
		shell_quote($sql), $standby->host, $standby->port, $file);
	return system('bash', '-c', $cmd) == 0;
}

sub shell_quote
{
	my ($s) = @_;
	$s =~ s/'/'\\''/g;
	return "'$s'";
}

sub slurp
{
	my ($file) = @_;
	open my $fh, '<:raw', $file or die "$file: $!";
	local $/;
	return scalar <$fh>;
}

my $earnings_html = "$dir/earnings.html";
my $network_html = "$dir/network.html";
my $evil_html = "$dir/evil.html";
ok(save_page("SELECT compay.earnings_dashboard('gpu-1', $range)", $earnings_html),
	'psql saves the earnings page');
ok(save_page("SELECT compay.network_dashboard($range)", $network_html), 'psql saves the network page');
ok(save_page("SELECT compay.earnings_dashboard('$evil', $range)", $evil_html),
	'psql saves the page of the node named <script>');

# 3. The HTML.
my %page = (
	earnings => slurp($earnings_html),
	network => slurp($network_html),
	evil => slurp($evil_html));
for my $name (sort keys %page)
{
	my $html = $page{$name};
	like($html, qr{\A<!DOCTYPE html>.*</html>\n?\z}s, "$name: one whole page");
	unlike($html, qr{<script}i, "$name: no script element");
	unlike($html, qr{\son\w+\s*=}i, "$name: no event handler attribute");
	unlike($html, qr{(?:src|href)\s*=|url\(|\@import}i, "$name: loads nothing (no src, href, url(), \@import)");
	my @urls = $html =~ m{(https?://[^"'\s<]+)}g;
	is_deeply([ grep { $_ ne 'http://www.w3.org/2000/svg' } @urls ], [],
		"$name: no address but the SVG namespace");
}

# gpu-1 in the range: XMR 0.8 + 0.25 + (0.125 - 0.025 refunded) + 0.5 +
# 0.0625 + 0.03125 = 1.74375 net of refunds in 6 earnings, 0.025
# refunded; completed 0.8 + 0.25 + 0.1 = 1.15, settling 0.5, unsettled
# 0.0625, disputed 0.03125; render 0.8 + 0.25 + 0.03125 = 1.08125, train
# 0.5 + 0.1 = 0.6, infer 0.0625; CREDIT 12.5.
like($page{earnings}, qr{<tr><td>1\.74375</td><td>6</td><td>0\.025</td><td>0\.0625</td><td>0\.03125</td><td>0\.5</td><td>1\.15</td></tr>},
	'earnings: the XMR range row, exact, net of the refund');
like($page{earnings}, qr{<tr><td>12\.5</td><td>1</td><td>0</td><td>12\.5</td><td>0</td><td>0</td><td>0</td></tr>},
	'earnings: the CREDIT range row, exact');
# gpu-1 all time, now (compay.earnings): XMR earned 1.74375, refunded
# 0.025, rewards 0, pending 0.0625 + 0.03125 = 0.09375, settled not paid
# 0, in flight 0.5, paid 1.175 (payout 1, the 0.025 had left on chain),
# clawbacks owed 0.025, shortfalls owed to it 0.015, by it 0.004 - 0.001
# = 0.003; and 0.09375 + 0.5 + 1.175 - 0.025 = 1.74375.  CREDIT 12.5
# pending, nothing else.
like($page{earnings}, qr{<tr><td>1\.74375</td><td>0\.025</td><td>0</td><td>0\.09375</td><td>0</td><td>0\.5</td><td>1\.175</td><td>0\.025</td><td>0\.015</td><td>0\.003</td></tr>},
	'earnings: the XMR totals now, refund, clawback and shortfalls exact');
like($page{earnings}, qr{<tr><td>12\.5</td><td>0</td><td>0</td><td>12\.5</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td></tr>},
	'earnings: the CREDIT totals now');
is( $node->safe_psql('postgres',
		"SELECT string_agg(concat_ws(' ', currency_code, earned, refunded, pending, in_flight, paid, clawbacks_owed, shortfalls_owed_to, shortfalls_owed_by), ',' ORDER BY 1) FROM compay.earnings('gpu-1')"),
	'CREDIT 12.5 0 12.5 0 0 0 0 0,XMR 1.74375 0.025 0.09375 0.5 1.175 0.025 0.015 0.003',
	'earnings() gives the figures the page shows');
for my $figure ('>render<', '>1.08125<', '>train<', '>0.6<', '>infer<', '>0.0625<', '>1.74375<', '>0.8<',
	'>refunded<', '>clawbacks owed<', '>shortfalls owed to the node<', '>shortfalls owed by the node<',
	'>0.09375<', '>0.025<', '>0.015<', '>0.003<', 'Pending and paid, all time, XMR')
{
	ok(index($page{earnings}, $figure) >= 0, "earnings: $figure in the charts");
}
# The day chart's two scales: the bars' maximum on the left, the line's
# (the running total) on the right in the line's colour, and the legend.
like($page{earnings}, qr{Earnings per day \(UTC\), XMR.*?per day \(left scale\).*?running total \(right scale\).*?text-anchor="end">0\.8</text>.*?<line class="right-axis"[^>]*/><text class="tick line-label" x="966" y="54">1\.74375</text><text class="tick line-label" x="966" y="274">0</text></svg>}s,
	'earnings: left scale 0 to 0.8 (the largest day), right scale 0 to 1.74375 (the total)');
like($page{earnings}, qr{<td>1</td><td>[^<]+</td><td>confirmed</td><td>1\.175</td><td>0</td><td>10</td><td>$tx1</td>},
	'earnings: payout 1 with its exact amount and tx hash');
like($page{earnings}, qr{<td>2</td><td>[^<]+</td><td>built</td><td>0\.5</td><td>0</td><td>0</td><td>$tx2</td>},
	'earnings: payout 2 built, with its tx hash');
like($page{earnings}, qr{<td>t1</td><td>render</td><td>paid</td><td>XMR</td><td>0\.8</td><td>[^<]+</td><td>[^<]+</td><td>$tx1</td>},
	'earnings: job t1 with the tx hash that paid it');
unlike($page{earnings}, qr{alert}, "earnings: nothing of another node");

# The network: XMR 8 payments, 6 paid (t3 refunded), 0.8 + 0.25 + 0.2 +
# 0.5 + 0.0625 + 0.03125 = 1.84375, 1 failed (12.50 %), 2 disputed of 7
# completed (28.57 %), 1 refunded; payouts 1.375 confirmed, 0.5 built, fees
# 0.0001 each; treasury 42.000000000001.
like($page{network}, qr{<tr><td>XMR</td><td>8</td><td>6</td><td>1\.84375</td><td>1</td><td>12\.50 %</td><td>2</td><td>28\.57 %</td><td>1</td></tr>},
	'network: XMR volume, failure and dispute rates');
like($page{network}, qr{<tr><td>CREDIT</td><td>1</td><td>1</td><td>12\.5</td><td>0</td><td>0\.00 %</td><td>0</td><td>0\.00 %</td><td>0</td></tr>},
	'network: CREDIT volume');
like($page{network}, qr{<tr><td>confirmed</td><td>1</td><td>1\.375</td><td>0\.0001</td></tr>},
	'network: confirmed payouts');
like($page{network}, qr{<tr><td>built</td><td>1</td><td>0\.5</td><td>0\.0001</td></tr>}, 'network: built payouts');
like($page{network}, qr{<tr><td>run_payouts</td><td>[^<]+</td><td>42\.000000000001</td><td>0\.5</td><td>1200</td><td>1201</td><td></td></tr>},
	'network: the treasury as the runner saw it');
like($page{network}, qr{<tr><td>gpu-1</td><td>5</td><td>1\.64375</td></tr><tr><td>\Q$evil_escaped\E</td><td>1</td><td>0\.2</td></tr>},
	'network: top providers, the malicious id escaped');
like($page{network}, qr{<tr><td>9</td><td>1</td><td>11\.11 %</td></tr>}, 'network: 1 job of 9 failed');
ok(index($page{network}, $tx{1}) >= 0 && index($page{network}, $tx{2}) >= 0, 'network: both tx hashes');

# The malicious node's own page.
ok(index($page{evil}, "Earnings of $evil_escaped") >= 0, 'evil: the title shows the id escaped');
ok(index($page{evil}, '&lt;b&gt;bold&lt;/b&gt;') >= 0, 'evil: the job type escaped');
unlike($page{evil}, qr{<b>}, 'evil: no raw <b> from data');
like($page{evil}, qr{<tr><td>0\.2</td><td>1</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0\.2</td></tr>},
	'evil: its 0.2 XMR paid out');

# 4. Chromium.
my ($chromium) = grep { -x $_ } map { "$_/chromium" } split /:/, $ENV{PATH};
ok(defined $chromium, 'chromium is installed (test/deps.sh installs it)')
  or BAIL_OUT('chromium is missing: run test/deps.sh');

# Reads a PNG with nothing but zlib: width, height, distinct colours,
# the share of pixels in the bar colour and in the line colour.
my $png_stats = <<'PY';
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat = 8, b''
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b'IHDR':
        w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
    elif kind == b'IDAT':
        idat += body
    pos += 12 + n
assert depth == 8 and ctype in (2, 6), 'unexpected PNG format'
bpp = 3 if ctype == 2 else 4
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
colours, bar, line = {}, 0, 0
i = 0
for y in range(h):
    f = raw[i]; row = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    if f == 1:
        for x in range(bpp, stride): row[x] = (row[x] + row[x - bpp]) & 255
    elif f == 2:
        for x in range(stride): row[x] = (row[x] + prev[x]) & 255
    elif f == 3:
        for x in range(stride):
            a = row[x - bpp] if x >= bpp else 0
            row[x] = (row[x] + ((a + prev[x]) >> 1)) & 255
    elif f == 4:
        for x in range(stride):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            row[x] = (row[x] + pr) & 255
    for x in range(0, stride, bpp):
        px = bytes(row[x:x + 3])
        colours[px] = colours.get(px, 0) + 1
    prev = row
bar = colours.get(bytes((0x4c, 0x78, 0xa8)), 0)
line = colours.get(bytes((0xf5, 0x85, 0x18)), 0)
print(w, h, len(colours), bar / (w * h), line / (w * h))
PY
{
	open my $fh, '>', "$dir/png_stats.py" or die $!;
	print $fh $png_stats;
	close $fh;
}

# Renders file to png; returns (width, height, distinct colours, share of
# the bar colour, share of the line colour) read back from the PNG.
sub render
{
	my ($html, $png) = @_;
	my $profile = "$dir/chromium-profile";
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			$chromium, '--headless', '--no-sandbox', '--disable-gpu',
			"--user-data-dir=$profile", "--screenshot=$png",
			'--window-size=1200,1600', "file://$html"
		],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout(120));
	return () unless -s $png;
	my $stats = `python3 $dir/png_stats.py $png`;
	return split ' ', $stats;
}

make_path('docs/images');
for my $name ('earnings', 'network')
{
	my $png = "$dir/$name.png";
	my ($w, $h, $colours, $bar, $line) = render("$dir/$name.html", $png);
	ok(defined $w, "$name: chromium wrote a PNG");
	is($w, 1200, "$name: the PNG is 1200 pixels wide");
	is($h, 1600, "$name: and 1600 high");
	cmp_ok($colours, '>', 20, "$name: not one colour ($colours colours)");
	cmp_ok($bar, '>', 0.01, "$name: the bars are drawn (" . sprintf('%.3f', $bar) . ' of the pixels)');
	cmp_ok($line, '>', 0.001, "$name: the orange line and bars are drawn (" . sprintf('%.4f', $line) . ')');
	ok(copy($png, "docs/images/${name}_dashboard.png"), "$name: screenshot saved to docs/images");
}

$standby->stop;
$node->stop;
done_testing();
