#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/bench/system_accounts.sh DIR [SECONDS]: flows through system
# accounts against uniform transfers, on one cluster in one run, 8 clients,
# prepared statements, synchronous_commit on and off (issue 17, target 1):
#   compay uniform     compay.transfer over 10,000 accounts (the baseline)
#   deposit            compay.deposit to a random node: debits $external
#   job payment        a verified job's payment: reserve the escrow, then
#                      compay.settle_escrow pays the provider and two
#                      verifiers (0.1 each) from $rewards
#   ... stripes=1      the same with compay.system_account_stripes = 1:
#                      one row, one lock per system account (as in 0.1)
# and the WAL a transfer writes in steady state (pg_current_wal_lsn()
# around 24,000 transfers after as many to warm up since a checkpoint),
# for compay.transfer and the PL/pgSQL peer of test/bench/ledger.sh.
# Run it through test/bench/run.sh.
set -euo pipefail
dir=$1
secs=${2:-10}
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

scripts=$dir/pgbench
mkdir -p "$scripts"
cat >"$scripts/uniform.sql" <<'SQL'
\set a random(1, 10000)
\set b 1 + (:a + random(0, 9998)) % 10000
SELECT compay.transfer('n' || :a, 'n' || :b, '0.000001');
SQL
cat >"$scripts/peer.sql" <<'SQL'
\set a random(1, 10000)
\set b 1 + (:a + random(0, 9998)) % 10000
SELECT peer_transfer(:a, :b, 0.000001);
SQL
cat >"$scripts/deposit.sql" <<'SQL'
\set a random(1, 10000)
SELECT compay.deposit('n' || :a, '0.000001');
SQL
# Requester, provider and two verifiers: four distinct nodes.
cat >"$scripts/job.sql" <<'SQL'
\set r random(1, 10000)
\set p 1 + (:r + random(0, 2499)) % 10000
\set v 1 + (:r + 2500 + random(0, 2499)) % 10000
\set w 1 + (:r + 5000 + random(0, 2499)) % 10000
BEGIN;
SELECT compay.reserve('n' || :r, '0.000002') AS hold \gset
SELECT compay.settle_escrow(:hold, 'n' || :p, '0.000001', ARRAY['n' || :v, 'n' || :w], '0.1', 'bench');
COMMIT;
SQL

# run_case SYNC STRIPES ARGS...: prints the tps pgbench measured.
run_case() {
    local sync=$1 stripes=$2
    shift 2
    PGOPTIONS="-c synchronous_commit=$sync -c compay.system_account_stripes=$stripes" \
        pgbench_tps -c "$clients" -j 2 -T "$secs" "$@"
}

# wal_per_call SCRIPT: WAL bytes per pgbench transaction in steady state.
wal_per_call() {
    local n=3000 before after
    psql -X -q -d postgres -c 'CHECKPOINT'
    pgbench -n -M prepared -c "$clients" -j 2 -t "$n" -f "$1" postgres >/dev/null 2>&1
    before=$(psql -X -Atq -d postgres -c 'SELECT pg_current_wal_lsn()')
    pgbench -n -M prepared -c "$clients" -j 2 -t "$n" -f "$1" postgres >/dev/null 2>&1
    after=$(psql -X -Atq -d postgres -c 'SELECT pg_current_wal_lsn()')
    psql -X -Atq -d postgres -c \
        "SELECT round(pg_wal_lsn_diff('$after', '$before') / ($clients * $n))"
}

printf 'system accounts: %s clients, %s s a case, PostgreSQL %s, %s cores, load %s\n' \
    "$clients" "$secs" "$(pg_config --version | cut -d' ' -f2)" "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
# A job payment moves three transfers (the provider's and two verifiers'
# rewards): its rate against uniform transfers is per transfer moved.
printf '%-6s %-22s %10s %12s %12s\n' sync case tps transfers/s vs_uniform
for sync in on off; do
    uniform=$(run_case "$sync" 16 -f "$scripts/uniform.sql")
    deposit=$(run_case "$sync" 16 -f "$scripts/deposit.sql")
    job=$(run_case "$sync" 16 -f "$scripts/job.sql")
    deposit1=$(run_case "$sync" 1 -f "$scripts/deposit.sql")
    job1=$(run_case "$sync" 1 -f "$scripts/job.sql")
    awk -v sync="$sync" -v uniform="$uniform" -v deposit="$deposit" -v job="$job" \
        -v deposit1="$deposit1" -v job1="$job1" 'BEGIN {
        row("compay uniform", uniform, 1)
        row("deposit", deposit, 1)
        row("job payment", job, 3)
        row("deposit stripes=1", deposit1, 1)
        row("job payment stripes=1", job1, 3)
    }
    function row(name, tps, transfers) {
        printf "%-6s %-22s %10.0f %12.0f %12.2f\n", sync, name, tps, tps * transfers,
            tps * transfers / uniform
    }'
done
printf '\nWAL per transfer in steady state (bytes):\n'
printf '%-22s %8s\n' "compay.transfer" "$(wal_per_call "$scripts/uniform.sql")"
printf '%-22s %8s\n' "plpgsql peer" "$(wal_per_call "$scripts/peer.sql")"
printf '\n$external and $rewards after the run:\n'
psql -X -d postgres -c 'SELECT node_id, balance, stripes FROM compay.system_balances ORDER BY 1'
printf 'verify_ledger after the run:\n'
psql -X -d postgres -c 'SELECT check_name, ok FROM compay.verify_ledger() WHERE NOT ok OR check_name IN ($$balances_sum_to_zero$$, $$hash_chains_intact$$, $$system_account_stripes$$)'
