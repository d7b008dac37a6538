#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/bench/run.sh NAME [ARGS...]: runs benchmark test/bench/NAME.sh on a
# throwaway cluster of its own (installing, building and installing compay
# first, as the test command does), then removes everything it made.
#
#   bash test/bench/run.sh credit_sum         # credit vs numeric vs int8
#   bash test/bench/run.sh ledger             # transfers vs pgbench and PL/pgSQL
#   bash test/bench/run.sh pricing [SECS [RUNS]]   # price() vs the PL/pgSQL formula
#   bash test/bench/run.sh metering [SECS [RUNS]]  # record_usage(), record_usage_batch() vs a plain INSERT
#   bash test/bench/run.sh system_accounts [SECS]  # deposits, job payments vs transfers; WAL/transfer
#   bash test/bench/run.sh shards [SECS]           # transfers via the PL/Proxy router vs direct, local and cross-shard
#
# NAME.sh is called as the unprivileged test user with the work directory
# (holding the staged src/) as its first argument; it starts, uses and
# stops its own cluster with the settings it needs.
set -euo pipefail

# shellcheck disable=SC2034 # read by log() in lib/common.sh
LOG_TAG=bench
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

BENCH_DIR=""

bench_cleanup() {
    if [[ -n $BENCH_DIR ]]; then
        stop_clusters_in "$BENCH_DIR"
        rm -rf "$BENCH_DIR"
    fi
}

main() {
    local name=${1:?usage: test/bench/run.sh NAME [ARGS...]}
    shift
    [[ -f $COMPAY_REPO/test/bench/$name.sh ]] || die "no benchmark test/bench/$name.sh"
    deps_build_install
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    BENCH_DIR=$(new_temp_dir bench)
    stage_inputs "$BENCH_DIR"
    as_test_user bash "$BENCH_DIR/src/test/bench/$name.sh" "$BENCH_DIR" "$@"
}

main "$@"
