#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/bench/shards.sh DIR [SECONDS]: transfer rates through the PL/Proxy
# router against direct calls on one shard, in one run (issue 18).  Three
# clusters on this machine: a router (plproxy, compay_router) and two
# shards (pgq, dblink, compay), 8 partitions, pgqd and the clearing
# consumer (CALL compay.clearing_consume_loop()) on each shard, as in
# test/t/CompayShards.pm.  2,000 funded nodes; 8 pgbench clients,
# prepared statements, synchronous_commit on, SECONDS (default 10) a case:
#   direct local    compay.transfer on shard 0 between two of its nodes
#                   (a single server: the baseline)
#   direct cross    compay.transfer on shard 0 to a node of shard 1: the
#                   debit into $clearing:1 plus the PgQ event, no router
#   router local    through the router, payer and payee on the same shard
#                   (either shard): one PL/Proxy hop
#   router cross    through the router, payer and payee on different shards
# Then the time the consumers take to apply every event queued by the
# cross-shard cases (events per second), and compay.cluster_check().
# All three clusters, pgbench and the consumers share this machine's cores:
# the router's rates are what one machine does with three servers, not
# what shards on machines of their own would do (docs/performance.md).
# Run it through test/bench/run.sh.
set -euo pipefail
dir=$1
secs=${2:-10}
clients=8
nodes=2000
# shellcheck source=../lib/cluster.sh
source "$dir/src/test/lib/cluster.sh"
# shellcheck source=../lib/bench.sh
source "$dir/src/test/lib/bench.sh"

declare -a pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    cluster_stop "$dir/router"
    cluster_stop "$dir/shard0"
    cluster_stop "$dir/shard1"
}
trap cleanup EXIT

# start NAME: a cluster of its own, compay preloaded; prints its port.
start() {
    local port
    port=$(cluster_pick_port)
    CLUSTER_PRELOAD=compay cluster_init "$dir/$1" "$port" \
        "fsync = on" "shared_buffers = '256MB'" "max_wal_size = '4GB'" \
        "checkpoint_timeout = '30min'" "max_connections = 60" \
        "compay.worker_enabled = off" >/dev/null
    cluster_start "$dir/$1" "$dir/$1.log" >/dev/null
    printf '%s\n' "$port"
}
router=$(start router)
shard0=$(start shard0)
shard1=$(start shard1)
connstrs="ARRAY['host=127.0.0.1 port=$shard0 dbname=postgres', 'host=127.0.0.1 port=$shard1 dbname=postgres']"

q() {
    local port=$1
    shift
    PGOPTIONS='-c client_min_messages=warning' \
        psql -X -Atq -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -d postgres "$@"
}

ports=("$shard0" "$shard1")
for i in 0 1; do
    q "${ports[i]}" -c 'CREATE EXTENSION pgq' -c 'CREATE EXTENSION dblink' \
        -c 'CREATE EXTENSION compay' \
        -c "SELECT compay.shard_configure($i, $connstrs, 8)" \
        -c "SELECT pgq.set_queue_config(queue_name, 'ticker_max_lag', '100 milliseconds') FROM pgq.queue" \
        >/dev/null
done
# pgqd and the consumer once both shards have their queues.
for i in 0 1; do
    port=${ports[i]}
    cat >"$dir/pgqd$i.ini" <<EOI
[pgqd]
base_connstr = host=127.0.0.1 port=$port
initial_database = postgres
database_list = postgres
logfile = $dir/pgqd$i.log
pidfile = $dir/pgqd$i.pid
syslog = 0
ticker_period = 0.1
EOI
    pgqd -q "$dir/pgqd$i.ini" &
    pids+=($!)
    psql -X -q -h 127.0.0.1 -p "$port" -d "dbname=postgres application_name=compay_consumer" \
        -c "CALL compay.clearing_consume_loop('100 milliseconds')" >>"$dir/consumer$i.log" 2>&1 &
    pids+=($!)
done
q "$router" -c 'CREATE EXTENSION plproxy' -c 'CREATE EXTENSION compay_router CASCADE' \
    -c "SELECT compay.router_configure($connstrs, 8)" >/dev/null

# The nodes, funded through the router; the lookup tables the pgbench
# scripts draw from, on the router and on shard 0 alike (the same cost in
# every case): l0/l1 number shard 0's and shard 1's nodes from 1.
q "$router" -c "SELECT count(compay.deposit('n' || i, '1000000000')) FROM generate_series(1, $nodes) i" >/dev/null
q "$shard0" -c "CREATE TABLE bench_nodes AS
    SELECT 'n' || i AS node_id, compay.shard_of('n' || i) AS shard FROM generate_series(1, $nodes) i" \
    -c "CREATE TABLE l0 AS SELECT row_number() OVER (ORDER BY node_id) AS i, node_id FROM bench_nodes WHERE shard = 0" \
    -c "CREATE TABLE l1 AS SELECT row_number() OVER (ORDER BY node_id) AS i, node_id FROM bench_nodes WHERE shard = 1" \
    -c 'ALTER TABLE l0 ADD PRIMARY KEY (i)' -c 'ALTER TABLE l1 ADD PRIMARY KEY (i)' >/dev/null
n0=$(q "$shard0" -c 'SELECT count(*) FROM l0')
n1=$(q "$shard0" -c 'SELECT count(*) FROM l1')
q "$shard0" -c 'COPY l0 TO STDOUT' | q "$router" -c 'CREATE TABLE l0 (i bigint PRIMARY KEY, node_id text)' -c 'COPY l0 FROM STDIN'
q "$shard0" -c 'COPY l1 TO STDOUT' | q "$router" -c 'CREATE TABLE l1 (i bigint PRIMARY KEY, node_id text)' -c 'COPY l1 FROM STDIN'
q "$router" -c 'ANALYZE l0' -c 'ANALYZE l1'
q "$shard0" -c 'ANALYZE l0' -c 'ANALYZE l1'

scripts=$dir/pgbench
mkdir -p "$scripts"
cat >"$scripts/local0.sql" <<SQL
\set a random(1, $n0)
\set b 1 + (:a + random(0, $n0 - 2)) % $n0
SELECT compay.transfer((SELECT node_id FROM l0 WHERE i = :a), (SELECT node_id FROM l0 WHERE i = :b), '0.000001');
SQL
cat >"$scripts/local.sql" <<SQL
\set s random(0, 1)
\set a random(1, $n0)
\set b 1 + (:a + random(0, $n0 - 2)) % $n0
\set c random(1, $n1)
\set d 1 + (:c + random(0, $n1 - 2)) % $n1
\if :s = 0
SELECT compay.transfer((SELECT node_id FROM l0 WHERE i = :a), (SELECT node_id FROM l0 WHERE i = :b), '0.000001');
\else
SELECT compay.transfer((SELECT node_id FROM l1 WHERE i = :c), (SELECT node_id FROM l1 WHERE i = :d), '0.000001');
\endif
SQL
cat >"$scripts/cross0.sql" <<SQL
\set a random(1, $n0)
\set c random(1, $n1)
SELECT compay.transfer((SELECT node_id FROM l0 WHERE i = :a), (SELECT node_id FROM l1 WHERE i = :c), '0.000001');
SQL
cat >"$scripts/cross.sql" <<SQL
\set s random(0, 1)
\set a random(1, $n0)
\set c random(1, $n1)
\if :s = 0
SELECT compay.transfer((SELECT node_id FROM l0 WHERE i = :a), (SELECT node_id FROM l1 WHERE i = :c), '0.000001');
\else
SELECT compay.transfer((SELECT node_id FROM l1 WHERE i = :c), (SELECT node_id FROM l0 WHERE i = :a), '0.000001');
\endif
SQL

# PgQ events in flight, both shards: queued and not yet finished by the
# peer's consumer (as test/t/CompayShards.pm's pending_events).
pending() {
    local total=0 port n
    for port in "$shard0" "$shard1"; do
        n=$(q "$port" -c "SELECT coalesce(sum(pgq.seq_getval(q.queue_event_seq) - coalesce(t.tick_event_seq, 0)
                                  + CASE WHEN s.sub_batch IS NULL THEN 0 ELSE 1 END), 0)
                          FROM pgq.queue q JOIN pgq.subscription s ON s.sub_queue = q.queue_id
                          LEFT JOIN pgq.tick t ON t.tick_queue = q.queue_id AND t.tick_id = s.sub_last_tick")
        total=$((total + n))
    done
    printf '%s\n' "$total"
}
wait_drained() {
    local t0=$EPOCHREALTIME
    while (($(pending) > 0)); do
        sleep 0.2
        if (($(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print (b - a > 600) }'))); then
            printf 'events still pending after 600 s\n' >&2
            return 1
        fi
    done
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", b - a }'
}
applied() {
    local a b
    a=$(q "$shard0" -c 'SELECT count(*) FROM compay.clearing_applied')
    b=$(q "$shard1" -c 'SELECT count(*) FROM compay.clearing_applied')
    printf '%s\n' $((a + b))
}

case_tps() {
    local port=$1
    shift
    PGPORT=$port pgbench_tps -c "$clients" -j 2 -T "$secs" "$@"
}

printf 'shards: %s clients, %s s a case, %s nodes (%s on shard 0, %s on shard 1), 8 partitions, PostgreSQL %s, %s cores, load %s\n' \
    "$clients" "$secs" "$nodes" "$n0" "$n1" "$(pg_config --version | cut -d' ' -f2)" "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
# Warm up both paths (router connections, caches), then drain.
case_tps "$router" -T 3 -f "$scripts/local.sql" >/dev/null
case_tps "$router" -T 3 -f "$scripts/cross.sql" >/dev/null
wait_drained >/dev/null

direct_local=$(case_tps "$shard0" -f "$scripts/local0.sql")
before=$(applied)
direct_cross=$(case_tps "$shard0" -f "$scripts/cross0.sql")
drain1=$(wait_drained)
router_local=$(case_tps "$router" -f "$scripts/local.sql")
router_cross=$(case_tps "$router" -f "$scripts/cross.sql")
drain2=$(wait_drained)
events=$(($(applied) - before))

printf '%-14s %10s %10s\n' case tps vs_direct
awk -v dl="$direct_local" -v dc="$direct_cross" -v rl="$router_local" -v rc="$router_cross" 'BEGIN {
    row("direct local", dl); row("direct cross", dc); row("router local", rl); row("router cross", rc)
}
function row(name, tps) { printf "%-14s %10.0f %10.2f\n", name, tps, tps / dl }'
printf '\nclearing: %s events applied; the consumers finished %s s (direct cross) and %s s (router cross) after their case ended\n' \
    "$events" "$drain1" "$drain2"
printf '\ncluster_check after the run:\n'
q "$router" -c 'SELECT count(*) FILTER (WHERE ok) || '"'/'"' || count(*) || '"' ok'"' FROM compay.cluster_check()'
