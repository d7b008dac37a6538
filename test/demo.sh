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
    log "a local Monero regtest: monerod and two wallet RPCs on 127.0.0.1"
    bash "$dir/src/test/monero/regtest.sh" up "$dir/xmr"
    # shellcheck disable=SC1091 # written by regtest.sh up
    source "$dir/xmr/env"
    port=$(cluster_pick_port)
    cluster_init "$dir/data" "$port" \
        "compay.wallet_rpc_url = '$XMR_TREASURY_URL'" \
        "compay.wallet_rpc_user = '$XMR_TREASURY_USER'" \
        "compay.wallet_rpc_password_file = '$XMR_TREASURY_PASSWORD_FILE'" \
        "compay.daemon_rpc_url = '$XMR_DAEMON_URL'" \
        "compay.worker_naptime = '1s'"
    cluster_start "$dir/data" "$dir/postgres.log"
    DEMO_CLUSTER_UP=1
    log "cluster up on 127.0.0.1:$PGPORT; CREATE EXTENSION compay, then test/demo.sql"
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE EXTENSION compay'
    # No pager: the demo's output is for reading in one go, or for a log.
    psql -X -v ON_ERROR_STOP=1 -P pager=off --echo-queries -d postgres \
        -f "$dir/src/test/demo.sql"
    demo_payout "$dir"
}

# psql_value SQL: one value, unaligned.
psql_value() {
    psql -X -At -v ON_ERROR_STOP=1 -d postgres -c "$1"
}

# wait_for SQL WHAT: until SQL returns t, at most 120 s.
wait_for() {
    local i
    for ((i = 0; i < 240; i++)); do
        [[ $(psql_value "$1") == t ]] && return 0
        sleep 0.5
    done
    die "the demo waited 120 s for $2"
}

# The Monero part: demo_payout.sql, then the worker's payout, mined and
# confirmed, checked on the provider's own wallet.
demo_payout() {
    local dir=$1 regtest=$1/src/test/monero/regtest.sh tx
    psql -X -v ON_ERROR_STOP=1 -P pager=off --echo-queries -d postgres \
        -v provider_address="$XMR_PROVIDER_ADDRESS" -f "$dir/src/test/demo_payout.sql"
    printf '\n== 14. The worker builds the payout (not sent), records it with the ledger debit, then relays it\n'
    wait_for "SELECT count(*) = 1 FROM compay.payout_transactions WHERE status = 'relayed'" \
        "the payout to be relayed"
    psql -X -P pager=off -d postgres -c "SELECT payout_id, node_id, amount, fee, tx_hash, status FROM compay.payouts"
    printf '\n== 15. Ten blocks mined on the regtest; the payout is confirmed\n'
    bash "$regtest" mine "$dir/xmr" 10
    wait_for "SELECT count(*) = 1 FROM compay.payout_transactions WHERE status = 'confirmed'" \
        "the payout to be confirmed"
    psql -X -P pager=off -d postgres \
        -c "SELECT payout_id, node_id, amount, confirmations, status FROM compay.payouts" \
        -c "SELECT node_id, received, confirmations, ok FROM compay.verify_payout((SELECT min(id) FROM compay.payout_transactions))" \
        -c "SELECT id, payee, total_amount, status FROM compay.settlements WHERE currency = 'XMR'" \
        -c "SELECT check_name, ok FROM compay.verify_ledger()"
    tx=$(psql_value "SELECT tx_hash FROM compay.payout_transactions")
    printf '\n== 16. The provider'"'"'s own wallet (get_transfer_by_txid): atomic units received\n'
    bash "$regtest" rpc "$dir/xmr" provider get_transfer_by_txid "{\"txid\":\"$tx\"}" \
        --get result.transfer.amount
}

demo_inner_exit() {
    local rc=$1 dir=$DEMO_DIR
    trap '' INT TERM    # a second signal must not cut the shutdown short
    cluster_stop "$dir/data" || true
    [[ -e $dir/xmr/pids ]] && bash "$dir/src/test/monero/regtest.sh" down "$dir/xmr" || true
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
