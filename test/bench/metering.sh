#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/bench/metering.sh DIR [SECONDS] [RUNS]: usage samples a second on
# one cluster in one run, 8 clients, 2 pgbench threads, prepared
# statements, each case with synchronous_commit on (commit-bound) and off
# (CPU-bound), SECONDS a run, the median of RUNS runs (cases alternating):
#   record_usage   compay.record_usage() of a random task of 1,000 by its
#                  provider: checks, the job row FOR UPDATE, the insert, the totals
#   plain insert   the same values INSERTed into a table with the columns,
#                  defaults and primary key of compay.usage_samples, ON
#                  CONFLICT DO NOTHING (the baseline)
#   insert + FK    the same with its foreign key to compay.jobs too
#   batch          compay.record_usage_batch() of 1,000 samples of a random
#                  task by its provider (one transaction: 1,000 samples)
#   insert x1000   the same 1,000 rows INSERTed into the baseline table in
#                  one statement, ON CONFLICT DO NOTHING (for reference)
# Every ratio is against the plain insert of the same run (samples a second;
# a batch transaction counts its 1,000 samples).
# Each sample: a unique id (client id and a random bigint), random CPU and
# GPU seconds with 6 decimals, memory and storage byte-hours, network bytes.
# Run it through test/bench/run.sh.
set -euo pipefail
dir=$1
secs=${2:-10}
runs=${3:-3}
clients=8
batch=1000
# shellcheck source=../lib/cluster.sh
source "$dir/src/test/lib/cluster.sh"
# shellcheck source=../lib/bench.sh
source "$dir/src/test/lib/bench.sh"
trap 'cluster_stop "$dir/data"' EXIT

cluster_init "$dir/data" "$(cluster_pick_port)" \
    "fsync = on" "shared_buffers = '1GB'" "max_wal_size = '8GB'" \
    "checkpoint_timeout = '30min'" "max_connections = 50"
cluster_start "$dir/data" "$dir/postgres.log"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -f "$dir/src/test/bench/metering_setup.sql" >/dev/null

scripts=$dir/pgbench
mkdir -p "$scripts"
sets='\set t random(1, 1000)
\set s random(1, 1000000000000)
\set cpu random(0, 60000000)
\set mem random(0, 68719476736)
\set sto random(0, 1099511627776)
\set nin random(0, 1000000000)
\set nout random(0, 1000000000)
\set gpu random(0, 60000000)'
cat >"$scripts/record.sql" <<SQL
$sets
SELECT compay.record_usage('t' || :t, 'p' || :t, :client_id || ':' || :s, now(),
    compay.metrics(cpu_seconds => :cpu::bigint * 0.000001, memory_byte_hours => :mem::bigint,
                   storage_byte_hours => :sto::bigint, network_bytes_in => :nin::bigint,
                   network_bytes_out => :nout::bigint, gpu_seconds => :gpu::bigint * 0.000001));
SQL
# The batch's samples: as random as the single ones, built by the server.
rows="FROM generate_series(1, $batch) AS i,
    LATERAL (SELECT (random() * 60)::numeric(14, 6) AS cpu, (random() * 68719476736)::bigint AS mem,
                    (random() * 1099511627776)::bigint AS sto, (random() * 1e9)::bigint AS nin,
                    (random() * 1e9)::bigint AS nout, (random() * 60)::numeric(14, 6) AS gpu
             WHERE i > 0) AS m"
cat >"$scripts/batch.sql" <<SQL
\\set t random(1, 1000)
\\set s random(1, 1000000000000)
SELECT compay.record_usage_batch(array_agg('t' || :t), 'p' || :t,
    array_agg(:client_id || ':' || :s || ':' || i), array_agg(now()),
    array_agg(compay.metrics(cpu_seconds => cpu, memory_byte_hours => mem,
                             storage_byte_hours => sto, network_bytes_in => nin,
                             network_bytes_out => nout, gpu_seconds => gpu)))
$rows;
SQL
cat >"$scripts/insert_batch.sql" <<SQL
\\set t random(1, 1000)
\\set s random(1, 1000000000000)
INSERT INTO bench.usage_samples (job_id, sample_id, node_id, sampled_at, cpu_seconds,
    memory_byte_hours, storage_byte_hours, network_bytes_in, network_bytes_out, gpu_seconds, custom)
SELECT :t, :client_id || ':' || :s || ':' || i, 'p' || :t, now(), cpu, mem, sto, nin, nout, gpu, NULL
$rows
ON CONFLICT DO NOTHING;
SQL
for table in usage_samples usage_samples_fk; do
    cat >"$scripts/$table.sql" <<SQL
$sets
INSERT INTO bench.$table (job_id, sample_id, node_id, sampled_at, cpu_seconds,
    memory_byte_hours, storage_byte_hours, network_bytes_in, network_bytes_out, gpu_seconds, custom)
VALUES (:t, :client_id || ':' || :s, 'p' || :t, now(), :cpu::bigint * 0.000001, :mem::bigint,
        :sto::bigint, :nin::bigint, :nout::bigint, :gpu::bigint * 0.000001, NULL)
ON CONFLICT DO NOTHING;
SQL
done

# run_case SYNC SCRIPT: prints the tps pgbench measured (one sample a
# transaction).
run_case() {
    PGOPTIONS="-c synchronous_commit=$1" pgbench_tps -c "$clients" -j 2 -T "$secs" \
        -f "$scripts/$2.sql"
}

printf 'metering: %s clients, %s s a run, median of %s runs, PostgreSQL %s, %s cores\n' \
    "$clients" "$secs" "$runs" "$(pg_config --version | cut -d' ' -f2)" "$(nproc)"
printf '%-6s %-14s %12s %10s\n' sync case samples/s vs_insert
for sync in on off; do
    rec=()
    ins=()
    fk=()
    bat=()
    insb=()
    for ((r = 0; r < runs; r++)); do
        rec+=("$(run_case "$sync" record)")
        ins+=("$(run_case "$sync" usage_samples)")
        fk+=("$(run_case "$sync" usage_samples_fk)")
        bat+=("$(run_case "$sync" batch)")
        insb+=("$(run_case "$sync" insert_batch)")
    done
    awk -v sync="$sync" -v rec="$(median "${rec[@]}")" -v ins="$(median "${ins[@]}")" \
        -v fk="$(median "${fk[@]}")" -v bat="$(median "${bat[@]}")" \
        -v insb="$(median "${insb[@]}")" -v batch="$batch" 'BEGIN {
        row("record_usage", rec)
        row("plain insert", ins)
        row("insert + FK", fk)
        row("batch", bat * batch)
        row("insert x" batch, insb * batch)
    }
    function row(name, tps) {
        printf "%-6s %-14s %12.0f %10.2f\n", sync, name, tps, tps / ins
    }'
done
printf '\nrows after the run (a repeated sample id inserts nothing):\n'
psql -X -d postgres -c "SELECT (SELECT count(*) FROM compay.usage_samples) AS record_usage_and_batch,
    (SELECT count(*) FROM bench.usage_samples) AS plain_insert,
    (SELECT count(*) FROM bench.usage_samples_fk) AS insert_fk"
