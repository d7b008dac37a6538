#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/suites.sh WORKDIR SRCDIR: runs every test suite against one
# throwaway cluster.  Started by check.sh as the unprivileged user; SRCDIR
# is the staged copy of sql/, expected/ and test/.
#
# Results go to WORKDIR/counts, one line per run: "NAME PASSED FAILED".
# check.sh adds them up.  Adding a suite = one suite_NAME function that
# calls skip_suite or run_counted, plus its name in SUITES.
set -euo pipefail

# shellcheck disable=SC2034 # read by log() in lib/common.sh
LOG_TAG=suites
WORKDIR=$1
SRCDIR=$2
# shellcheck source=lib/cluster.sh
source "$SRCDIR/test/lib/cluster.sh"

SUITES=(regress isolation pgtap clients perl)

COUNTS=$WORKDIR/counts
DATADIR=$WORKDIR/data
SERVER_LOG=$WORKDIR/postgres.log
XMR_DIR=$WORKDIR/xmr
CLUSTER_STARTED=0

record() {
    printf '%s %d %d\n' "$1" "$2" "$3" >>"$COUNTS"
    log "$1: $2 passed, $3 failed"
}

skip_suite() {
    log "$1: no tests, skipped"
}

# pg_regress and pg_isolation_regress: one count per test file.  PG 15
# prints "test NAME ... ok  12 ms", "     NAME ... FAILED" in parallel
# groups and "failed (ignored)"; PG 16+ prints TAP ("ok 1 - NAME").
count_regress() {
    local pass fail
    pass=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +(ok|failed \(ignored\))|^ok [0-9]+ +[-+] ' "$1" || true)
    fail=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +FAILED|^not ok [0-9]+ +[-+] ' "$1" || true)
    printf '%d %d\n' "$pass" "$fail"
}

# TAP (pgTAP, Perl): one count per top-level assertion; a "not ok" marked
# TODO is an expected failure, so it does not count as failed.
count_tap() {
    local pass fail
    pass=$(grep -cE '^ok [0-9]+' "$1" || true)
    fail=$(grep -E '^not ok [0-9]+' "$1" | grep -vc '# TODO' || true)
    printf '%d %d\n' "$pass" "$fail"
}

# run_counted NAME COUNTER OUTFILE CMD...: runs CMD with its output shown
# and saved, records COUNTER's tally.  A command that failed without any
# counted failure (crash, bad plan, no connection) counts as one failure.
run_counted() {
    local name=$1 counter=$2 out=$3 rc=0 pass fail
    shift 3
    "$@" 2>&1 | tee "$out" || rc=$?
    read -r pass fail < <("$counter" "$out")
    if ((rc != 0 && fail == 0)); then
        log "$name: exited with status $rc without a counted failure; counted as 1 failed"
        fail=1
    fi
    record "$name" "$pass" "$fail"
    ((fail == 0))
}

show_diffs() {
    [[ -s $1 ]] || return 0
    log "differences ($1, first 300 lines):"
    head -n 300 "$1"
}

# Names of the files matching DIR/*.EXT, without extension, sorted.
names_in() {
    local f
    for f in "$1"/*."$2"; do
        [[ -e $f ]] && basename "$f" ".$2"
    done | LC_ALL=C sort
}

# PGXS's `make installcheck` in the staged copy (its Makefile and
# compay.control come along): REGRESS (sql/, expected/) and ISOLATION
# (test/isolation), run one at a time so that each is counted apart.
installcheck() {
    make -C "$SRCDIR" -s --no-print-directory installcheck PG_CONFIG="$PG_CONFIG" \
        PGHOST=127.0.0.1 PGPORT="$PGPORT" "$@"
}

suite_regress() {
    [[ -n $(names_in "$SRCDIR/expected" out) ]] || { skip_suite regress; return 0; }
    run_counted regress count_regress "$WORKDIR/regress.txt" installcheck ISOLATION= || {
        show_diffs "$SRCDIR/regression.diffs"
        return 1
    }
}

suite_isolation() {
    [[ -n $(names_in "$SRCDIR/test/isolation/specs" spec) ]] || { skip_suite isolation; return 0; }
    run_counted isolation count_regress "$WORKDIR/isolation.txt" installcheck REGRESS= || {
        show_diffs "$SRCDIR/output_iso/regression.diffs"
        return 1
    }
}

# A fresh compay_tap with pgTAP and compay, for one pgTAP file.
fresh_tap_db() {
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'SET client_min_messages = warning' \
        -c 'DROP DATABASE IF EXISTS compay_tap' -c 'CREATE DATABASE compay_tap' &&
        psql -X -q -v ON_ERROR_STOP=1 -d compay_tap \
            -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION compay'
}

suite_pgtap() {
    local -a files
    local name status=0
    mapfile -t files < <(names_in "$SRCDIR/test/pgtap" sql)
    ((${#files[@]})) || { skip_suite pgtap; return 0; }
    mkdir -p "$WORKDIR/pgtap"
    for name in "${files[@]}"; do
        if ! fresh_tap_db; then
            log "pgtap/$name: could not create database compay_tap"
            record "pgtap/$name" 0 1
            status=1
            continue
        fi
        run_counted "pgtap/$name" count_tap "$WORKDIR/pgtap/$name.out" \
            pg_prove -v -h 127.0.0.1 -p "$PGPORT" -d compay_tap \
            "$SRCDIR/test/pgtap/$name.sql" || status=1
    done
    return "$status"
}

# Real client drivers (psycopg2, psycopg 3, node-postgres, pgJDBC) reading
# and writing credit exactly: test/clients/run.sh, one TAP line per check.
suite_clients() {
    [[ -x $SRCDIR/test/clients/run.sh ]] || { skip_suite clients; return 0; }
    run_counted clients count_tap "$WORKDIR/clients.txt" bash "$SRCDIR/test/clients/run.sh"
}

# Perl TAP tests start their own clusters with PostgreSQL::Test::Cluster,
# which reads the environment PGXS's prove_installcheck sets: TESTDIR (its
# tmp_check and logs go there), PG_REGRESS, and PATH with the PG binaries.
suite_perl() {
    local -a files
    local name status=0
    mapfile -t files < <(names_in "$SRCDIR/test/t" pl)
    ((${#files[@]})) || { skip_suite perl; return 0; }
    mkdir -p "$WORKDIR/perl"
    # One real Monero regtest (monerod and two wallet RPCs on 127.0.0.1)
    # for every wallet test of the run; stopped by PID in finish().
    if bash "$SRCDIR/test/monero/regtest.sh" up "$XMR_DIR"; then
        export COMPAY_XMR_DIR=$XMR_DIR
    else
        log "the Monero regtest could not be started; the wallet tests start their own"
    fi
    for name in "${files[@]}"; do
        # shellcheck disable=SC2086 # PROVE_FLAGS is a list of flags
        run_counted "perl/$name" count_tap "$WORKDIR/perl/$name.out" \
            env -C "$SRCDIR" TESTDIR="$WORKDIR/perl" PG_REGRESS="$PG_REGRESS" \
            PERL5LIB="$PG_PERL_LIB:$SRCDIR/test/t${PERL5LIB:+:$PERL5LIB}" \
            prove ${PROVE_FLAGS:--v} "test/t/$name.pl" || {
            status=1
            show_perl_log "$name"
        }
    done
    return "$status"
}

show_perl_log() {
    local f=$WORKDIR/perl/tmp_check/log/regress_log_$1
    [[ -s $f ]] || return 0
    log "last lines of $f:"
    tail -n 80 "$f"
}

run_suite() {
    local name=$1
    log "=== $name ==="
    "suite_$name"
}

finish() {
    local rc=$?
    trap '' INT TERM    # a second signal must not cut the shutdown short
    cluster_stop "$DATADIR" || true
    [[ -e $XMR_DIR/pids ]] && bash "$SRCDIR/test/monero/regtest.sh" down "$XMR_DIR" || true
    # (A server that never started has had its log shown already.)
    if ((rc != 0 && CLUSTER_STARTED)) && [[ -s $SERVER_LOG ]]; then
        log "last lines of the server log $SERVER_LOG:"
        tail -n 60 "$SERVER_LOG"
    fi
    exit "$rc"
}

main() {
    : >"$COUNTS"
    trap finish EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local port status=0 suite
    port=$(cluster_pick_port)
    if ! cluster_init "$DATADIR" "$port" || ! cluster_start "$DATADIR" "$SERVER_LOG"; then
        log "the test cluster could not be set up; no suite ran"
        record cluster 0 1
        return 1
    fi
    CLUSTER_STARTED=1
    log "cluster up on 127.0.0.1:$PGPORT (data $DATADIR, log $SERVER_LOG)"
    for suite in "${SUITES[@]}"; do
        run_suite "$suite" || status=1
    done
    return "$status"
}

main
