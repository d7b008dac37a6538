#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/bench/settlement.sh DIR [RUNS]: seconds compay.run_settlement() takes
# to settle 100,000 and then 1,000,000 completed payments (1,000 payees over
# 24 closed hours, so 24,000 settlements), the median of RUNS runs each, and
# the ratio of the two (10x the payments should take at most 11x the time).
# As a floor measured in the same run: a bare GROUP BY of the same payments
# (what any settlement must at least read).  Run it through test/bench/run.sh.
set -euo pipefail
dir=$1
runs=${2:-3}
# shellcheck source=../lib/cluster.sh
source "$dir/src/test/lib/cluster.sh"
# shellcheck source=../lib/bench.sh
source "$dir/src/test/lib/bench.sh"
trap 'cluster_stop "$dir/data"' EXIT

cluster_init "$dir/data" "$(cluster_pick_port)" \
    "shared_buffers = '2GB'" "max_wal_size = '8GB'" "checkpoint_timeout = '30min'" \
    "work_mem = '256MB'" "maintenance_work_mem = '1GB'"
cluster_start "$dir/data" "$dir/postgres.log"
# Not the worker's database: nothing settles behind the benchmark's back.
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE bench'
psql -X -q -v ON_ERROR_STOP=1 -d bench -c 'CREATE EXTENSION compay'

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d bench "$@"; }

# load N: N completed payments of closed hours, then VACUUM ANALYZE (CASCADE:
# the payout parts of 0.2 reference the settlements; the runs go too, or
# the payments loaded would be late for the last run's window).
load() {
    q -c "SET client_min_messages = warning" -c "TRUNCATE compay.payments, compay.settlements,
        compay.settlement_runs, compay.settlement_exceptions CASCADE" -c "
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                             completed_at)
SELECT 't' || g, 'req' || (g % 5000), 'prov' || (g % 1000), '0.000123456789', 'CREDIT', 'credit',
       'completed', timestamptz '2026-11-01 00:00+00' + (g % 86400) * interval '1 second'
FROM generate_series(1, $1) g" -c "VACUUM ANALYZE compay.payments"
}

# timed SQL: seconds the statement took, from the server's clock.
timed() {
    q <<SQL | tail -n 1
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
\o /dev/null
$1;
\o
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3);
SQL
}

settle_case() {
    local n=$1 i t=()
    for ((i = 0; i < runs; i++)); do
        load "$n"
        t+=("$(timed "SELECT count(*) FROM compay.run_settlement('hourly', '2026-11-02 00:00+00')")")
        # Every payment settled once: the settlements count them all, and
        # verify_ledger's check 8 matches each settlement to its payments.
        # ANALYZE first, as autovacuum would within a minute: planned on the
        # statistics of the empty table, the check's joins are nested loops
        # over 24,000 settlements (minutes at 1,000,000 payments).
        q -c "ANALYZE compay.settlements" -c "SELECT CASE WHEN (SELECT sum(payment_count) FROM compay.settlements) = $n
                            AND (SELECT count(*) FROM compay.payments) = $n
                            AND (SELECT bool_and(ok) FROM compay.verify_ledger())
                          THEN 'ok' ELSE 'BAD' END" |
            grep -qx ok || { echo "settlement of $n left payments or broke a check" >&2; exit 1; }
    done
    median "${t[@]}"
}

floor_case() {
    local n=$1 i t=()
    load "$n"
    for ((i = 0; i < runs; i++)); do
        t+=("$(timed "SELECT count(*) FROM (SELECT date_trunc('hour', completed_at), currency, to_node,
                 count(*), compay.sum(amount) FROM compay.payments
                 WHERE status = 'completed' AND settlement_id IS NULL GROUP BY 1, 2, 3) s")")
    done
    median "${t[@]}"
}

printf 'settlement: median of %s runs, PostgreSQL %s, %s cores\n' \
    "$runs" "$(pg_config --version | cut -d' ' -f2)" "$(nproc)"
s100k=$(settle_case 100000)
s1m=$(settle_case 1000000)
f100k=$(floor_case 100000)
f1m=$(floor_case 1000000)
printf '%-12s %14s %14s %12s\n' payments settle_s group_by_s vs_group_by
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-12s %14s %14s %12s\n' 100000 "$s100k" "$f100k" "$(div "$s100k" "$f100k")"
printf '%-12s %14s %14s %12s\n' 1000000 "$s1m" "$f1m" "$(div "$s1m" "$f1m")"
printf 'ratio 1,000,000 / 100,000: %s (target at most 11); 1,000,000 in %s s (target at most 5)\n' \
    "$(div "$s1m" "$s100k")" "$s1m"
