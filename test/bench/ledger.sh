#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/bench/ledger.sh DIR [SECONDS]: transfer throughput on one cluster in
# one run, 8 clients, prepared statements, each case with
# synchronous_commit on (commit-bound) and off (CPU-bound):
#   simple-update, tpcb-like  pgbench's built-ins: what one transaction costs
#   compay uniform            compay.transfer over 10,000 accounts
#   compay hot                compay.transfer over 10 accounts
#   plpgsql peer              the naive PL/pgSQL transfer over 10,000 accounts
#   compay batch              compay.transfer_batch, 1,000 transfers a call, each
#                             client over its own 1,250 accounts (as batches
#                             from shards would be), so batches do not queue
#                             on each other's row locks
# Run it through test/bench/run.sh.
set -euo pipefail
dir=$1
secs=${2:-15}
clients=8
# shellcheck source=../lib/cluster.sh
source "$dir/src/test/lib/cluster.sh"
# shellcheck source=../lib/bench.sh
source "$dir/src/test/lib/bench.sh"
trap 'cluster_stop "$dir/data"' EXIT

cluster_init "$dir/data" "$(cluster_pick_port)" \
    "fsync = on" "shared_buffers = '1GB'" "max_wal_size = '8GB'" \
    "checkpoint_timeout = '30min'" "max_connections = 50"
cluster_start "$dir/data" "$dir/postgres.log"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -f "$dir/src/test/bench/ledger_setup.sql" >/dev/null
pgbench -q -i -s 10 postgres >/dev/null 2>&1

scripts=$dir/pgbench
mkdir -p "$scripts"
cat >"$scripts/uniform.sql" <<'SQL'
\set a random(1, 10000)
\set b 1 + (:a + random(0, 9998)) % 10000
SELECT compay.transfer('n' || :a, 'n' || :b, '0.000001');
SQL
cat >"$scripts/hot.sql" <<'SQL'
\set a random(1, 10)
\set b 1 + (:a + random(0, 8)) % 10
SELECT compay.transfer('n' || :a, 'n' || :b, '0.000001');
SQL
cat >"$scripts/peer.sql" <<'SQL'
\set a random(1, 10000)
\set b 1 + (:a + random(0, 9998)) % 10000
SELECT peer_transfer(:a, :b, 0.000001);
SQL
cat >"$scripts/batch.sql" <<'SQL'
\set s random(0, 1249)
SELECT count(*) FROM compay.transfer_batch(
    ARRAY(SELECT 'n' || (1 + :client_id * 1250 + (i * 7 + :s) % 1250) FROM generate_series(1, 1000) AS i),
    ARRAY(SELECT 'n' || (1 + :client_id * 1250 + (i * 7 + :s + 1) % 1250) FROM generate_series(1, 1000) AS i),
    array_fill('0.000001'::compay.credit, ARRAY[1000]));
SQL

# run_case SYNC ARGS...: prints the tps pgbench measured.
run_case() {
    local sync=$1
    shift
    PGOPTIONS="-c synchronous_commit=$sync" pgbench_tps -c "$clients" -j 2 -T "$secs" "$@"
}

printf 'ledger: %s clients, %s s a case, PostgreSQL %s, %s cores\n' \
    "$clients" "$secs" "$(pg_config --version | cut -d' ' -f2)" "$(nproc)"
printf '%-6s %-16s %12s %14s %12s %12s\n' sync case tps transfers/s vs_simple vs_peer
for sync in on off; do
    simple=$(run_case "$sync" -b simple-update)
    tpcb=$(run_case "$sync" -b tpcb-like)
    uniform=$(run_case "$sync" -f "$scripts/uniform.sql")
    hot=$(run_case "$sync" -f "$scripts/hot.sql")
    peer=$(run_case "$sync" -f "$scripts/peer.sql")
    batch=$(run_case "$sync" -f "$scripts/batch.sql")
    awk -v sync="$sync" -v simple="$simple" -v tpcb="$tpcb" -v uniform="$uniform" \
        -v hot="$hot" -v peer="$peer" -v batch="$batch" 'BEGIN {
        row("simple-update", simple, simple)
        row("tpcb-like", tpcb, tpcb)
        row("compay uniform", uniform, uniform)
        row("compay hot", hot, hot)
        row("plpgsql peer", peer, peer)
        row("compay batch", batch, batch * 1000)
        printf "%-6s %-16s %12s %14s %12.2f\n", sync, "hot/uniform", "", "", hot / uniform
    }
    function row(name, tps, per_s) {
        printf "%-6s %-16s %12.0f %14.0f %12.2f %12.2f\n", sync, name, tps, per_s,
            per_s / simple, per_s / peer
    }'
done
printf '\nverify_ledger after the run:\n'
psql -X -d postgres -c 'SELECT check_name, ok FROM compay.verify_ledger()'
