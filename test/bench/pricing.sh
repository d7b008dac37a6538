#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/bench/pricing.sh DIR [SECONDS] [RUNS]: compay.price() against
# bench.price(), the same formula in PL/pgSQL over numeric with the same
# table lookups done by plain SQL on every call (pricing_setup.sql, which
# first checks that both give the same prices), on one cluster in one run.
# Random metrics (CPU and GPU seconds with 6 decimals, memory and storage
# byte-hours, network bytes) drawn by pgbench and passed to both through
# compay.metrics(); prepared statements, 1 and 2 clients (one pgbench
# thread each), SECONDS a run, compay and PL/pgSQL alternating, the median
# of RUNS runs.  Cases:
#   no requester   price(metrics): the default model, no discount
#   requester      price(metrics, NULL, 'r_bench'): r_bench has 3,050 paid
#                  payments in the window (the 10 % tier) among 25,000
#   typed          price(metrics with two custom metrics, 'render',
#                  'r_bench'): a model of its own with custom prices and
#                  bounds, a market factor of 1.37, its 7.5 % tier
# each once with one call a statement (as an application prices a task)
# and once with 100 calls a statement (the function's own cost, without
# the round trip); calls a second and the ratio.  "floor" is what one
# statement costs without pricing (compay.metrics() alone): per-call
# figures cannot exceed it.
# Run it through test/bench/run.sh.
set -euo pipefail
dir=$1
secs=${2:-10}
runs=${3:-3}
# shellcheck source=../lib/cluster.sh
source "$dir/src/test/lib/cluster.sh"
# shellcheck source=../lib/bench.sh
source "$dir/src/test/lib/bench.sh"
trap 'cluster_stop "$dir/data"' EXIT

cluster_init "$dir/data" "$(cluster_pick_port)" "shared_buffers = '512MB'" "jit = off"
cluster_start "$dir/data" "$dir/postgres.log"
printf 'pricing: %s s a run, median of %s runs, PostgreSQL %s, %s cores\n' \
    "$secs" "$runs" "$(pg_config --version | cut -d' ' -f2)" "$(nproc)"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -f "$dir/src/test/bench/pricing_setup.sql"

scripts=$dir/pgbench
mkdir -p "$scripts"
# write_case NAME FUNCTION ARGS CUSTOM [BATCH]: the script of one case and
# side: FUNCTION(metrics ARGS), with the two custom metrics if CUSTOM is 1.
# Both sides get the same metrics from the same \set lines.  With BATCH,
# one statement makes 100 calls, on metrics i = 0..99 added to the drawn
# ones.
write_case() {
    local name=$1 fn=$2 args=$3 custom=$4 batch=${5:-} i="" call
    [[ -z $batch ]] || i=" + i"
    call="$fn(compay.metrics(cpu_seconds => (:cpu::bigint$i) * 0.000001,
        memory_byte_hours => :mem::bigint$i, storage_byte_hours => :sto::bigint$i,
        network_bytes_in => :nin::bigint$i, network_bytes_out => :nout::bigint$i,
        gpu_seconds => (:gpu::bigint$i) * 0.000001"
    if ((custom)); then
        call+=",
        custom => jsonb_build_object('frames', (:frames::bigint$i) * 0.01,
                                     'api_calls', :calls::bigint$i)"
    fi
    call+=")$args)"
    {
        printf '%s\n' \
            '\set cpu random(0, 3600000000)' \
            '\set mem random(0, 68719476736)' \
            '\set sto random(0, 1099511627776)' \
            '\set nin random(0, 10000000000)' \
            '\set nout random(0, 10000000000)' \
            '\set gpu random(0, 3600000000)' \
            '\set frames random(0, 10000000)' \
            '\set calls random(0, 100000000)'
        if [[ -z $batch ]]; then
            printf 'SELECT %s;\n' "$call"
        else
            printf 'SELECT count(%s)\nFROM generate_series(0, 99) AS i;\n' "$call"
        fi
    } >"$scripts/$name.sql"
}
for side in compay:compay.price plpgsql:bench.price; do
    for b in "" _batch; do
        write_case "${side%%:*}_none$b" "${side#*:}" "" 0 "$b"
        write_case "${side%%:*}_requester$b" "${side#*:}" ", NULL, 'r_bench'" 0 "$b"
        write_case "${side%%:*}_typed$b" "${side#*:}" ", 'render', 'r_bench'" 1 "$b"
    done
done
# What one statement costs here without pricing (a round trip and an
# executor run on two shared cores): the floor under the per-call cases.
write_case floor "" "" 0

# run_case CLIENTS SCRIPT: prints the calls a second pgbench measured (one
# call a transaction).
run_case() {
    pgbench_tps -c "$1" -j "$1" -T "$secs" -f "$scripts/$2.sql"
}

printf '\n%-8s %-24s %15s %16s %15s\n' clients case 'compay calls/s' 'plpgsql calls/s' compay/plpgsql
for clients in 1 2; do
    f=()
    for ((r = 0; r < runs; r++)); do
        f+=("$(run_case "$clients" floor)")
    done
    printf '%-8s %-24s %15.0f %16s %15s\n' "$clients" "floor (metrics() only)" \
        "$(median "${f[@]}")" "" ""
    for b in "" _batch; do
        for case in none requester typed; do
            c=()
            p=()
            for ((r = 0; r < runs; r++)); do
                c+=("$(run_case "$clients" "compay_$case$b")")
                p+=("$(run_case "$clients" "plpgsql_$case$b")")
            done
            case $case in
                none) label="no requester" ;;
                *) label=$case ;;
            esac
            [[ -z $b ]] || label+=", 100 a stmt"
            awk -v clients="$clients" -v label="$label" -v n="$([[ -z $b ]] && echo 1 || echo 100)" \
                -v c="$(median "${c[@]}")" -v p="$(median "${p[@]}")" 'BEGIN {
                printf "%-8s %-24s %15.0f %16.0f %15.2f\n", clients, label, c * n, p * n, c / p }'
        done
    done
done
