#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test/demo.sh: the demo command (`make demo`).  Installs what is missing,
# builds and installs compay, starts a throwaway cluster in a temporary
# directory, creates the extension and runs test/demo.sql with every
# statement echoed before its result.  Everything is removed afterwards.
#
# `demo.sh --inner DIR` is the half that runs as the unprivileged user.
set -euo pipefail

# shellcheck disable=SC2034 # read by log() in lib/common.sh
LOG_TAG=demo
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

DEMO_DIR=""
DEMO_CLUSTER_UP=0

# As test_user, in DIR (holding the staged src/): cluster up, extension
# created, demo.sql run, cluster down (trap) even if a statement fails.
demo_inner() {
    local dir=$1 port
    # shellcheck source=lib/cluster.sh
    source "$dir/src/test/lib/cluster.sh"
    DEMO_DIR=$dir
    trap 'demo_inner_exit "$?"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    port=$(cluster_pick_port)
    cluster_init "$dir/data" "$port"
    cluster_start "$dir/data" "$dir/postgres.log"
    DEMO_CLUSTER_UP=1
    log "cluster up on 127.0.0.1:$PGPORT; CREATE EXTENSION compay, then test/demo.sql"
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE EXTENSION compay'
    # No pager: the demo's output is for reading in one go, or for a log.
    psql -X -v ON_ERROR_STOP=1 -P pager=off --echo-queries -d postgres \
        -f "$dir/src/test/demo.sql"
}

demo_inner_exit() {
    local rc=$1 dir=$DEMO_DIR
    trap '' INT TERM    # a second signal must not cut the shutdown short
    cluster_stop "$dir/data" || true
    # (cluster_start has shown the log of a server that did not start.)
    if ((rc != 0 && DEMO_CLUSTER_UP)) && [[ -s $dir/postgres.log ]]; then
        log "the demo failed; last lines of the server log:"
        tail -n 40 "$dir/postgres.log" >&2
    fi
    exit "$rc"
}

# EXIT trap of the outer half: nothing of the demo outlives it.
demo_cleanup() {
    if [[ -n $DEMO_DIR ]]; then
        stop_clusters_in "$DEMO_DIR"
        rm -rf "$DEMO_DIR"
    fi
}

main() {
    deps_build_install
    trap demo_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    DEMO_DIR=$(new_temp_dir demo)
    stage_inputs "$DEMO_DIR"
    as_test_user bash "$DEMO_DIR/src/test/demo.sh" --inner "$DEMO_DIR"
}

if [[ ${1:-} == --inner ]]; then
    demo_inner "$2"
else
    main "$@"
fi
