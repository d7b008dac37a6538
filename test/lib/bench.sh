# shellcheck shell=bash
# test/lib/bench.sh: helpers shared by the benchmark scripts (test/bench/).
# Sourced, never run.

# pgbench_tps PGBENCH_ARGS...: runs pgbench -n -M prepared with the
# arguments on database postgres and prints the tps it measured.  Fails,
# showing pgbench's output, when pgbench fails or counts failed
# transactions.
pgbench_tps() {
    local out
    out=$(pgbench -n -M prepared "$@" postgres 2>&1) || {
        printf '%s\n' "$out" >&2
        return 1
    }
    if grep -q 'number of failed transactions: [1-9]' <<<"$out"; then
        printf '%s\n' "$out" >&2
        return 1
    fi
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out"
}

# median VALUES...: the median of the values; the mean of the middle two
# for an even count.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
