#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/check.sh: the test command (`make test`, .ci/run).  Installs what
# is missing, builds and installs compay, then runs every suite (test/
# suites.sh) as an unprivileged user against a throwaway cluster.
# The last line printed is always "N passed, M failed"; the exit status is
# non-zero when M > 0.  Anything that stops the run counts as a failure.
set -euo pipefail

# shellcheck disable=SC2034 # read by log() in lib/common.sh
LOG_TAG=check
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

STAGE=setup          # what was under way, for the report if it stops
WORKDIR=""
WORKDIR_IS_TEMP=0
SUITES_RC=0

# The work dir is REPO/tmp_check, fresh each run, unless test_user cannot
# use it (repository under /root, or left owned by someone else): then a
# temporary directory, removed after a successful run.
prepare_workdir() {
    local dir=$COMPAY_REPO/tmp_check
    stop_clusters_in "$dir"    # left by an interrupted run
    if make_user_dir "$dir" 2>/dev/null && user_can_write "$dir"; then
        WORKDIR=$dir
        return 0
    fi
    rm -rf "$dir" 2>/dev/null || true
    WORKDIR=$(new_temp_dir check)
    WORKDIR_IS_TEMP=1
    log "$(test_user) cannot use $dir; working in $WORKDIR instead"
}

# Prints "PASSED FAILED" summed over WORKDIR/counts.
sum_counts() {
    if [[ -n $WORKDIR && -f $WORKDIR/counts ]]; then
        awk '{ p += $2; f += $3 } END { printf "%d %d\n", p, f }' "$WORKDIR/counts"
    else
        printf '0 0\n'
    fi
}

# EXIT trap: stop any cluster still up, add up, print the summary last.
finish() {
    local rc=$? passed failed
    trap '' INT TERM    # a second Ctrl-C must not cut the cleanup short
    stop_test_user_job
    if [[ -n $WORKDIR ]]; then
        stop_clusters_in "$WORKDIR"
    fi
    read -r passed failed < <(sum_counts)
    if [[ $STAGE != finished ]]; then
        log "stopped during $STAGE (exit status $rc); counted as 1 failed"
        failed=$((failed + 1))
    elif ((SUITES_RC != 0 && failed == 0)); then
        log "test/suites.sh exited with status $SUITES_RC without a counted failure; counted as 1 failed"
        failed=$((failed + 1))
    fi
    if ((failed > 0)); then
        [[ -n $WORKDIR ]] && log "outputs and server log kept in $WORKDIR"
    elif ((WORKDIR_IS_TEMP)); then
        rm -rf "$WORKDIR"
    fi
    printf '%d passed, %d failed\n' "$passed" "$failed"
    if ((failed > 0)); then
        exit $((rc != 0 ? rc : 1))
    fi
    exit 0
}

main() {
    trap finish EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    STAGE="dependencies, build and install"
    deps_build_install
    STAGE="work dir setup"
    prepare_workdir
    stage_inputs "$WORKDIR"
    STAGE="test suites"
    log "running the suites as $(test_user) in $WORKDIR"
    # In the background and waited for, so that a signal to this script
    # is handled at once (bash defers traps while a foreground child runs).
    start_test_user_job bash "$WORKDIR/src/test/suites.sh" "$WORKDIR" "$WORKDIR/src"
    wait_test_user_job || SUITES_RC=$?
    STAGE=finished
}

main "$@"
