# Ledger stress: 8 pgbench clients hammer 50 funded accounts (credit limit
# 0) for COMPAY_STRESS_SECONDS (default 60) with a random mix of transfers,
# holds (reserve, then full or partial capture or release, or expiry),
# refunds of earlier transfers, batches, idempotent retries, deposits,
# transfers to new nodes, and transactions that roll back after moving
# money; a sixth of the steps go through system accounts (keyed deposits
# from $external, job payments with a verifier reward from $rewards), which
# are striped over rows (src/ledger_stripes.c).  Afterwards every ledger
# invariant must hold: verify_ledger() all ok, money conserved per
# currency, the nodes hold exactly what was deposited plus the rewards,
# $external and $rewards (the sums of their rows) exactly match, no account
# past its limit, holds and refunds within their amounts, one transfer per
# idempotency key.
#
# Then two crashes: a second pgbench run is cut by an immediate shutdown,
# and a third by kill -9 of a backend in the middle of a ledger call (the
# server resets every session and recovers from WAL) while a client makes
# keyed deposits one by one; after each the same invariants must hold
# again, with the work committed before the crash kept, the sequences never
# going back, and every deposit the client saw acknowledged present once
# (a retry under its key returns the same transfer).
#
# The errors a correct ledger raises under contention (PY001 insufficient
# funds, PY004 hold not pending, PY008 refund exceeds, a partial capture of
# a stale remaining amount) are caught in the helper function and logged;
# anything else fails the pgbench transaction, and the test requires no
# failed transaction.
#
# No deadlock is allowed either.  Each ledger call locks all its accounts
# in one statement in ascending id order, then hold rows; the workload's
# transactions that make several calls (reserve then capture, the rolled
# back ones) keep to ascending id order across their calls too.  So a
# deadlock (which pgbench --max-tries would retry, and count) means a call
# took its locks out of order; the test requires zero retries.
#
# Run: PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl
#      PATH=/usr/lib/postgresql/15/bin:$PATH
#      PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
#      prove test/t/010_ledger_stress.pl   (as a non-root user)

use strict;
use warnings;

use Time::HiRes;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seconds = $ENV{COMPAY_STRESS_SECONDS} // 60;
my $clients = 8;
my $naccounts = 50;

my $node = PostgreSQL::Test::Cluster->new('stress');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
max_connections = 30
shared_buffers = '128MB'
# auto-created accounts (transfers to new nodes) get limit 0 as well
compay.default_credit_limit = '0'
deadlock_timeout = '100ms'
# after the kill -9 of a backend the postmaster resets and recovers by itself
restart_after_crash = on
# Cluster.pm logs every statement; pgbench would make that log huge.
log_statement = 'none'
});
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION compay');

# The helper tables and function.  stress_log gets one row per committed
# step; stress_deposits one per deposit, in the deposit's transaction.
$node->safe_psql(
	'postgres', q{
CREATE TABLE stress_log (op text NOT NULL, outcome text NOT NULL);
CREATE TABLE stress_deposits (node_id text NOT NULL, amount numeric NOT NULL, key text UNIQUE);
CREATE SEQUENCE stress_rollbacks;

-- One random ledger operation: op (0..99) picks it, s varies the rest.
CREATE FUNCTION stress_step(op int, s int, a int, b int, amt int) RETURNS text
LANGUAGE plpgsql SET search_path = public, compay AS $$
DECLARE
    ib int := CASE WHEN a = b THEN b % 50 + 1 ELSE b END;
    ic int := CASE WHEN ib % 50 + 1 = a THEN (ib % 50 + 1) % 50 + 1 ELSE ib % 50 + 1 END;
    na text := 'n' || a;     -- na, nb and nc are three distinct nodes
    nb text := 'n' || ib;
    nc text := 'n' || ic;
    amount credit := (amt::numeric / 100)::credit;
    opname text;
    outcome text := 'ok';
    h bigint;
    rem credit;
    t bigint;
    k int;
    lo int := least(a, ib, ic);
    hi int := greatest(a, ib, ic);
BEGIN
    BEGIN
        IF op < 28 THEN
            opname := 'transfer';
            PERFORM compay.transfer(na, nb, amount, 'stress');
        ELSIF op < 38 THEN
            opname := 'reserve';
            PERFORM compay.reserve(na, amount, 'stress',
                                   CASE WHEN s % 4 = 0 THEN interval '2 seconds' END);
        ELSIF op < 50 THEN
            -- Settle a pending hold of a, one of its oldest few.
            SELECT hh.id, hh.remaining INTO h, rem FROM compay.holds hh
            WHERE hh.status = 'pending'
              AND hh.account_id = (SELECT id FROM compay.accounts
                                   WHERE node_id = na AND currency = 'CREDIT')
            ORDER BY hh.id LIMIT 1 OFFSET s % 3;
            IF h IS NULL THEN
                opname := 'settle';
                outcome := 'no_hold';
            ELSIF op < 42 THEN
                opname := 'capture';
                PERFORM compay.capture(h, nb);
            ELSIF op < 46 THEN
                opname := 'partial_capture';
                PERFORM compay.capture(h, nb, least(amount, rem), final => false);
            ELSE
                opname := 'release';
                PERFORM compay.release(h);
            END IF;
        ELSIF op < 55 THEN
            -- Reserve and settle in one transaction.  The reserve locks the
            -- holder, the capture then holder and payee: the payee is the
            -- node with the higher account id, so that the transaction
            -- still takes its locks in ascending id order.
            opname := 'reserve_settle';
            h := compay.reserve('n' || least(a, ib), amount, 'stress');
            IF s % 3 = 0 THEN
                PERFORM compay.release(h);
            ELSE
                PERFORM compay.capture(h, 'n' || greatest(a, ib),
                                       CASE WHEN s % 3 = 1 THEN amount / 2 END);
            END IF;
        ELSIF op < 65 THEN
            -- Refund (all that is left, or part) of a random earlier
            -- transfer or capture.  Deposits are never refunded, so the
            -- nodes' money stays equal to what was deposited.
            opname := 'refund';
            SELECT tt.id INTO t FROM compay.transfers tt
            WHERE tt.id >= (SELECT floor(random() * max(id))::bigint FROM compay.transfers)
              AND tt.kind IN ('transfer', 'capture')
            ORDER BY tt.id LIMIT 1;
            IF t IS NULL THEN
                outcome := 'no_transfer';
            ELSE
                PERFORM compay.refund(t, CASE WHEN s % 2 = 0 THEN amount / 4 END, 'stress');
            END IF;
        ELSIF op < 70 THEN
            opname := 'deposit';
            PERFORM compay.deposit(na, amount, 'CREDIT', 'stress');
            INSERT INTO stress_deposits VALUES (na, amount::numeric);
        ELSIF op < 78 THEN
            opname := 'batch';
            PERFORM compay.transfer_batch(ARRAY[na, nb, nc], ARRAY[nb, nc, na],
                                          ARRAY[amount, amount / 2, amount / 3]);
        ELSIF op < 86 THEN
            -- A key always names the same request, so whichever client
            -- repeats it gets the first transfer back.
            opname := 'keyed_transfer';
            k := s % 400;
            PERFORM compay.transfer('n' || (k % 50 + 1), 'n' || ((k % 50 + 1) % 50 + 1),
                                    ((k + 1)::numeric / 10)::credit, 'keyed',
                                    'key-' || k);
        ELSIF op < 90 THEN
            -- To a node that may not exist yet: auto-created, limit 0.
            opname := 'new_node';
            PERFORM compay.transfer(na, 'x' || (s % 100), amount, 'stress');
        ELSIF op < 93 THEN
            opname := 'expire';
            PERFORM compay.expire_holds();
        ELSIF op < 100 THEN
            opname := 'transfer';
            PERFORM compay.transfer(nb, na, amount, 'stress');
        ELSIF op < 110 THEN
            -- Through $external; a key always names the same deposit.
            opname := 'keyed_deposit';
            k := s % 5000;
            t := compay.deposit('n' || (k % 50 + 1), ((k + 1)::numeric / 100)::credit, 'CREDIT',
                                'stress', 'dep-' || k);
            INSERT INTO stress_deposits VALUES ('n' || (k % 50 + 1), (k + 1)::numeric / 100, 'dep-' || k)
            ON CONFLICT (key) DO NOTHING;
        ELSE
            -- A verified job's payment: the escrow held from the requester
            -- (the lowest account id of the three, so that the two calls
            -- lock in ascending id order), half to the provider, a reward
            -- from $rewards to the verifier.
            opname := 'job_payment';
            h := compay.reserve('n' || lo, amount, 'stress');
            PERFORM compay.settle_escrow(h, 'n' || (a + ib + ic - lo - hi), amount / 2,
                                         ARRAY['n' || hi], '0.01', 'stress');
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'PY001' THEN outcome := 'insufficient_funds';
        WHEN SQLSTATE 'PY004' THEN outcome := 'hold_not_pending';
        WHEN SQLSTATE 'PY008' THEN outcome := 'refund_exceeds';
        WHEN invalid_parameter_value THEN
            -- A partial capture of a remaining amount read before the lock.
            IF opname = 'partial_capture' AND SQLERRM LIKE 'capture of % exceeds %' THEN
                outcome := 'capture_exceeds';
            ELSE
                RAISE;
            END IF;
    END;
    INSERT INTO stress_log VALUES (opname, outcome);
    RETURN opname || ': ' || outcome;
END $$;
});

# 50 accounts with limit 0, each funded by a deposit.
$node->safe_psql(
	'postgres', qq{
SET search_path = public, compay;
SELECT compay.open_account('n' || i, 'CREDIT', '0') FROM generate_series(1, $naccounts) i;
SELECT compay.deposit('n' || i, (100 + i)::credit, 'CREDIT', 'seed') FROM generate_series(1, $naccounts) i;
INSERT INTO stress_deposits SELECT 'n' || i, 100 + i FROM generate_series(1, $naccounts) i;
});
is($node->safe_psql('postgres', q{SELECT sum(amount) FROM stress_deposits}),
	$naccounts * 100 + $naccounts * ($naccounts + 1) / 2, 'accounts seeded');

# One pgbench transaction: one step, or (8 %) a transfer and a random step
# that are then rolled back.  The rolled-back transaction's second step is
# one of those that touch only the two nodes of its first (ops 0 to 54:
# transfer, reserve, settling a hold of a, reserve and settle), so that it
# takes no lock out of ascending id order.
my $script = PostgreSQL::Test::Utils::tempdir() . '/stress.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set op random(0, 119)
\set s random(1, 1000000)
\set a random(1, 50)
\set b random(1, 50)
\set amt random(1, 5000)
\set rb random(1, 100)
\set op2 random(0, 54)
\if :rb <= 8
BEGIN;
SELECT nextval('stress_rollbacks');
SELECT stress_step(0, :s, :a, :b, :amt);
SELECT stress_step(:op2, :s, :a, :b, :amt);
ROLLBACK;
\else
SELECT stress_step(:op, :s, :a, :b, :amt);
\endif
});

sub pgbench_cmd
{
	my ($duration) = @_;
	return [
		'pgbench', '-n', '-h', $node->host, '-p', $node->port,
		'-c', $clients, '-j', 2, '-T', $duration, '--max-tries=20',
		'-f', $script, 'postgres'
	];
}

# Every invariant of the ledger and of this workload.
sub check_ledger
{
	my ($label) = @_;
	my $q = sub { $node->safe_psql('postgres', "SET search_path = public, compay;\n" . $_[0]) };

	is($q->(q{SELECT count(*) FILTER (WHERE ok) || '/' || count(*) FROM compay.verify_ledger()}),
		'21/21', "$label: verify_ledger() all ok")
	  or diag($q->(q{SELECT check_name || ': ' || detail FROM compay.verify_ledger() WHERE NOT ok}));

	# The ledger writes its rows through the table access method: the heap
	# and every index of its tables must be exactly as PostgreSQL's own
	# executor would have left them (amcheck).
	$q->(q{CREATE EXTENSION IF NOT EXISTS amcheck});
	is($q->(q{SELECT count(*) FROM pg_class c, LATERAL verify_heapam(c.oid)
	          WHERE c.relnamespace = 'compay'::regnamespace AND c.relkind = 'r'}),
		'0', "$label: amcheck finds no heap corruption in compay's tables");
	is($q->(q{SELECT count(*) FROM (SELECT bt_index_parent_check(i.indexrelid, true, true)
	          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
	          WHERE c.relnamespace = 'compay'::regnamespace AND c.relam = 403) x}),
		$q->(q{SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
	          WHERE c.relnamespace = 'compay'::regnamespace AND c.relam = 403}),
		"$label: amcheck verifies every btree index, heap tuples included");

	is($q->(q{SELECT count(*) FROM (SELECT currency, sum(balance::numeric) AS s
	                                FROM compay.accounts GROUP BY currency) x WHERE s <> 0}),
		'0', "$label: balances sum to zero per currency");

	# $external and $rewards are the sums of their stripe rows.
	my ($nodes, $external, $rewards, $deposits, $logged, $paid, $rows) = split /\|/, $q->(q{
		SELECT (SELECT sum(balance::numeric) FROM compay.accounts WHERE flags & 1 = 0),
		       (SELECT coalesce(sum(balance::numeric), 0) FROM compay.accounts
		        WHERE node_id = ANY (compay.system_account_rows('$external'))),
		       (SELECT coalesce(sum(balance::numeric), 0) FROM compay.accounts
		        WHERE node_id = ANY (compay.system_account_rows('$rewards'))),
		       (SELECT sum(amount::numeric) FROM compay.transfers WHERE kind = 'deposit'),
		       (SELECT sum(amount) FROM stress_deposits),
		       -- what $rewards paid, less what refunds of rewards brought back
		       (SELECT coalesce(sum(CASE WHEN split_part(f.node_id, '#', 1) = '$rewards'
		                                 THEN t.amount::numeric ELSE -t.amount::numeric END), 0)
		        FROM compay.transfers t
		        JOIN compay.accounts f ON f.id = t.from_account
		        JOIN compay.accounts p ON p.id = t.to_account
		        WHERE '$rewards' IN (split_part(f.node_id, '#', 1), split_part(p.node_id, '#', 1))),
		       (SELECT count(*) FROM compay.accounts WHERE node_id LIKE '$%')});
	note("$label: $rows system account rows");
	# Compared as numeric in SQL: Perl's doubles cannot hold these sums exactly.
	my $exact = sub { $q->("SELECT ($_[0])::text") eq 'true' };
	ok($exact->("${nodes}::numeric + ${external}::numeric + ${rewards}::numeric = 0"),
		"$label: nodes' balances ($nodes) plus \$external ($external) and \$rewards ($rewards) are zero");
	ok($exact->("${nodes}::numeric = ${deposits}::numeric + ${paid}::numeric"),
		"$label: nodes hold the sum of the deposits ($deposits) and of the rewards ($paid)");
	ok($exact->("-(${rewards}::numeric) = ${paid}::numeric"), "$label: \$rewards is minus the rewards it paid");
	ok($exact->("(SELECT balance::numeric FROM compay.balance('\$external')) = -(${deposits}::numeric)"),
		"$label: compay.balance('\$external') is the sum of its rows");
	ok($exact->("${deposits}::numeric = ${logged}::numeric"), "$label: deposits match the committed deposit calls ($logged)");
	is($q->(q{SELECT count(*) FROM compay.transfers r JOIN compay.transfers o ON o.id = r.refund_of
	          WHERE o.kind = 'deposit'}), '0', "$label: no deposit was refunded");

	is($q->(q{SELECT count(*) FROM compay.accounts WHERE flags & 1 = 0
	          AND (credit_limit::numeric <> 0 OR reserved::numeric < 0
	               OR balance::numeric - reserved::numeric + credit_limit::numeric < 0)}),
		'0', "$label: no account past its limit (all limits 0)");

	is($q->(q{SELECT count(*) FROM compay.holds
	          WHERE (status = 'pending') <> (remaining::numeric > 0)}),
		'0', "$label: pending holds have something left, resolved ones nothing");
	is($q->(q{SELECT count(*) FROM compay.holds h
	          JOIN (SELECT hold_id, sum(amount::numeric) AS captured FROM compay.transfers
	                WHERE kind = 'capture' GROUP BY hold_id) c ON c.hold_id = h.id
	          WHERE c.captured > h.amount::numeric
	             OR (h.status = 'pending' AND c.captured + h.remaining::numeric <> h.amount::numeric)
	             OR (h.status IN ('voided', 'expired') AND c.captured >= h.amount::numeric)}),
		'0', "$label: captures within their holds");
	is($q->(q{SELECT count(*) FROM compay.transfers o
	          JOIN (SELECT refund_of, sum(amount::numeric) AS refunded FROM compay.transfers
	                WHERE kind = 'refund' GROUP BY refund_of) r ON r.refund_of = o.id
	          WHERE r.refunded > o.amount::numeric - o.barter_amount::numeric
	             OR o.kind NOT IN ('transfer', 'capture')}),
		'0', "$label: refunds within what they refund");

	is($q->(q{SELECT count(*) FROM (SELECT idempotency_key FROM compay.transfers
	          WHERE idempotency_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d}),
		'0', "$label: one transfer per idempotency key");
	is($q->(q{SELECT count(*) FROM compay.idempotency_keys k
	          LEFT JOIN compay.transfers t ON t.id = k.result_id
	          WHERE t.id IS NULL OR t.idempotency_key IS DISTINCT FROM k.key
	             OR t.amount::numeric <> CASE WHEN k.key LIKE 'key-%'
	                                          THEN (substr(k.key, 5)::int + 1) / 10.0
	                                          WHEN k.key LIKE 'dep-%'
	                                          THEN (substr(k.key, 5)::int + 1) / 100.0
	                                          ELSE 1 END}),
		'0', "$label: every idempotency key points at its own transfer");
	return;
}

# The run.
my ($out, $err) = ('', '');
my $started = time;
my $ran = IPC::Run::run(pgbench_cmd($seconds), '>', \$out, '2>', \$err,
	IPC::Run::timeout($seconds + 300));
note("pgbench ran for " . (time - $started) . " s");
note($out);
diag($err) if $err ne '';
ok($ran, 'pgbench exited with status 0');
unlike($err, qr/error|abort/i, 'pgbench printed no error');

my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
my ($failed)    = $out =~ /number of failed transactions: (\d+)/;
my ($retries)   = $out =~ /total number of retries: (\d+)/;
my ($tps)       = $out =~ /tps = ([0-9.]+)/;
ok(defined $processed && $processed > 0, 'pgbench processed transactions')
  or diag($out);
is($failed, 0, 'no pgbench transaction failed');
is($retries, 0, 'no transaction was retried (no deadlock)');
note(sprintf('pgbench: %s transactions, %s retries, tps = %s with %d clients for %d s',
		$processed // '?', $retries // '?', $tps // '?', $clients, $seconds));

# Every committed pgbench transaction logged exactly one step; every rolled
# back one (counted by a sequence, which does not roll back) logged none.
my ($logged, $rollbacks) = split /\|/, $node->safe_psql('postgres',
	q{SELECT (SELECT count(*) FROM stress_log), (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM stress_rollbacks)});
note("steps committed: $logged, transactions rolled back: $rollbacks");
if (($retries // 0) == 0)
{
	is($logged + $rollbacks, $processed,
		'committed steps plus rolled-back transactions make up all transactions');
}
else
{
	ok($logged + $rollbacks >= $processed && $logged + $rollbacks <= $processed + $retries,
		'committed steps plus rolled-back transactions make up all transactions (with retries)');
}
ok($rollbacks > 0, 'some transactions rolled back after moving money');

my $mix = $node->safe_psql('postgres',
	q{SELECT op || ' ' || outcome || ' ' || count(*) FROM stress_log GROUP BY op, outcome ORDER BY 1});
note("outcomes:\n$mix");
for my $op (qw(transfer reserve capture partial_capture release reserve_settle
	refund deposit batch keyed_transfer new_node expire keyed_deposit job_payment))
{
	like($mix, qr/^$op ok [1-9]/m, "the mix succeeded at $op");
}
like($mix, qr/ insufficient_funds [1-9]/, 'insufficient funds happened (and was caught)');

check_ledger('after the run');

# Settle what is left: expire or release every pending hold; then nothing is
# reserved anywhere and the ledger still checks out.
$node->safe_psql(
	'postgres', q{
SET search_path = public, compay;
SELECT compay.expire_holds();
SELECT count(compay.release(id)) FROM compay.holds WHERE status = 'pending';
});
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM compay.accounts WHERE reserved::numeric <> 0}),
	'0', 'nothing reserved once every hold is resolved');
check_ledger('after settling');

# Crash: a second run is cut short by an immediate shutdown (no checkpoint),
# and the server recovers from WAL.
my $before = $node->safe_psql('postgres', q{SELECT max(id) FROM compay.transfers});
my ($out2, $err2) = ('', '');
my $bench = IPC::Run::start(pgbench_cmd(60), '>', \$out2, '2>', \$err2,
	IPC::Run::timeout(300));
# Wait until the second run has committed a fair amount of work.
$node->poll_query_until('postgres',
	"SELECT max(id) > $before + 2000 FROM compay.transfers")
  or die 'the second pgbench run made no progress';
$node->stop('immediate');
$bench->finish;
note('pgbench cut short: ' . (split /\n/, $err2)[0]) if $err2 ne '';
$node->start;

my $after = $node->safe_psql('postgres', q{SELECT max(id) FROM compay.transfers});
ok($after > $before + 2000,
	"work committed before the crash survived (transfers up to $after, run started at $before)");
check_ledger('after crash recovery');

# The sequences never go back: a new transfer's id is past every old one.
my $new = $node->safe_psql('postgres',
	q{SET search_path = public, compay; SELECT compay.transfer('n1', 'n2', '0.01')});
ok($new > $after, "a new transfer after recovery gets a fresh id ($new > $after)");
check_ledger('after a transfer post recovery');

# kill -9: a third run, and beside it one client making keyed deposits one
# at a time (autocommit: a deposit is acknowledged when its row comes back),
# each logged in stress_deposits in its own transaction.  A backend killed
# with SIGKILL in the middle of a ledger call makes the postmaster end
# every session and recover from WAL, as after a power cut.
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION stress_ack_deposit(i int) RETURNS text
LANGUAGE plpgsql SET search_path = public, compay AS $$
BEGIN
    PERFORM compay.deposit('n' || (i % 50 + 1), '1', 'CREDIT', 'ack', 'ack-' || i);
    INSERT INTO stress_deposits VALUES ('n' || (i % 50 + 1), 1, 'ack-' || i)
    ON CONFLICT (key) DO NOTHING;
    RETURN 'ack-' || i;
END $$;
});
my $acks_sql = PostgreSQL::Test::Utils::tempdir() . '/acks.sql';
PostgreSQL::Test::Utils::append_to_file($acks_sql,
	join('', map { "SELECT stress_ack_deposit($_);\n" } 1 .. 20000));
$before = $node->safe_psql('postgres', q{SELECT max(id) FROM compay.transfers});
my ($out3, $err3, $acks, $ackerr) = ('', '', '', '');
my $bench3 = IPC::Run::start(pgbench_cmd(120), '>', \$out3, '2>', \$err3,
	IPC::Run::timeout(300));
my $acker = IPC::Run::start(
	[ 'psql', '-X', '-At', '-h', $node->host, '-p', $node->port, '-d', 'postgres',
	  '-f', $acks_sql ],
	'>', \$acks, '2>', \$ackerr, IPC::Run::timeout(300));
$node->poll_query_until('postgres',
	"SELECT (SELECT max(id) FROM compay.transfers) > $before + 2000
	        AND (SELECT count(*) FROM stress_deposits WHERE key LIKE 'ack-%') > 50")
  or die 'the third pgbench run or the acknowledged deposits made no progress';
# Between two statements every client can be idle for an instant: look
# again until one is caught inside a ledger call.
my $victim = '';
for my $try (1 .. 500)
{
	$victim = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT stress_%' AND state = 'active'
		  AND pid <> pg_backend_pid() ORDER BY query LIKE '%ack%' DESC LIMIT 1});
	last if $victim =~ /^\d+$/;
	Time::HiRes::usleep(10_000);
}
ok($victim =~ /^\d+$/, "a backend in a ledger call to kill ($victim)");
kill 'KILL', $victim;
$bench3->finish;
$acker->finish;
note('pgbench after kill -9: ' . (split /\n/, $err3)[0]) if $err3 ne '';
$node->poll_query_until('postgres', 'SELECT true') or die 'the server did not come back';
like(PostgreSQL::Test::Utils::slurp_file($node->logfile),
	qr/was terminated by signal 9: Killed/, 'the server crashed on the kill -9');

my @acked = $acks =~ /^(ack-\d+)$/mg;
ok(@acked > 10, scalar(@acked) . ' keyed deposits were acknowledged before the crash');
my $acked_list = join(',', map { "'$_'" } @acked);
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM unnest(ARRAY[$acked_list]) a(key)
	WHERE (SELECT count(*) FROM compay.transfers t WHERE t.idempotency_key = a.key) <> 1
	   OR (SELECT count(*) FROM compay.idempotency_keys k WHERE k.key = a.key) <> 1
	   OR (SELECT count(*) FROM stress_deposits d WHERE d.key = a.key) <> 1}),
	'0', 'every acknowledged deposit is in the ledger once, with its key and its log row');
my $unacked = $node->safe_psql('postgres', qq{
	SELECT count(*) FROM compay.transfers WHERE idempotency_key LIKE 'ack-%'
	AND idempotency_key <> ALL (ARRAY[$acked_list])});
ok($unacked <= 1, "at most the one deposit in flight committed unacknowledged ($unacked)");
check_ledger('after kill -9 recovery');

# A client that retries what it was not told about gets the first result
# back: the last acknowledged key and the next one, deposited again.
my $last = $#acked + 1;
my $next = $last + 1;
my $again = $node->safe_psql('postgres', qq{
	SELECT stress_ack_deposit($next) IS NOT NULL
	       AND (SELECT compay.deposit('n' || ($last % 50 + 1), '1', 'CREDIT', 'ack', 'ack-$last'))
	           = (SELECT id FROM compay.transfers WHERE idempotency_key = 'ack-$last')});
is($again, 't', 'retrying an acknowledged key returns its transfer');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM (SELECT idempotency_key FROM compay.transfers
		  WHERE idempotency_key LIKE 'ack-%' GROUP BY 1 HAVING count(*) > 1) d}),
	'0', 'no acknowledged key has two transfers after the retries');
check_ledger('after retries post kill -9');

my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
my $deadlocks = () = $log =~ /deadlock detected/g;
is($deadlocks, 0, 'the server log shows no deadlock, in any run');

$node->stop;
done_testing();
