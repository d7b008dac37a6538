#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/bench/credit_sum.sh DIR [ROWS] [RUNS]: sum(x) and sum(x * 3 + y) for
# compay.credit, numeric and int8 on one cluster in one run; prints the
# medians and the ratios.  Run it through test/bench/run.sh.
set -euo pipefail
dir=$1
rows=${2:-10000000}
runs=${3:-5}
# shellcheck source=../lib/cluster.sh
source "$dir/src/test/lib/cluster.sh"
trap 'cluster_stop "$dir/data"' EXIT

# The table (about 1.2 GB at 10M rows) fits shared_buffers, so the figures
# measure the types, not the page cache.
cluster_init "$dir/data" "$(cluster_pick_port)" \
    "shared_buffers = '3GB'" "max_wal_size = '8GB'" "jit = off"
cluster_start "$dir/data" "$dir/postgres.log"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE EXTENSION compay'
printf 'credit_sum: %s rows, median of %s runs, PostgreSQL %s, %s cores\n' \
    "$rows" "$runs" "$(pg_config --version | cut -d' ' -f2)" "$(nproc)"
psql -X -q -v ON_ERROR_STOP=1 -v rows="$rows" -v runs="$runs" -d postgres \
    -f "$dir/src/test/bench/credit_sum.sql"
