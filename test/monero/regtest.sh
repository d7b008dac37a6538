#!/usr/bin/env bash
# test/monero/regtest.sh: a real, local, offline Monero regtest network for
# the wallet integration tests: one monerod (--regtest, fixed difficulty 1),
# a "treasury" monero-wallet-rpc with digest login (the wallet compay pays
# from) and a "provider" monero-wallet-rpc without login (the payee the
# tests check).  Everything listens on 127.0.0.1 only.  Standalone: needs
# bash, perl (core modules only, through rpc.pl beside this file) and the
# Debian package monero.
#
#   regtest.sh up DIR [BASE_PORT]    start, create both wallets, mine 100
#                                    blocks to the treasury; writes DIR/env
#   regtest.sh down DIR              stop exactly the recorded processes
#   regtest.sh mine DIR N            N blocks to the treasury, refresh both
#   regtest.sh rpc DIR daemon|treasury|provider METHOD [JSON_PARAMS] [rpc.pl options]
#                                    one JSON-RPC call, raw reply on stdout
#                                    (METHOD "/name": the daemon's other
#                                    endpoints, e.g. /get_transactions)
#   regtest.sh restart-daemon DIR    stop monerod, start it on the same chain
#   regtest.sh restart-wallet DIR treasury|provider
#                                    stop one wallet-rpc, start it, reopen
#                                    and refresh its wallet
#   regtest.sh stop-daemon|start-daemon DIR
#   regtest.sh stop-wallet|start-wallet DIR treasury|provider
#                                    the two halves of a restart, to test
#                                    with a service down; stop-* takes an
#                                    optional last argument KILL (SIGKILL,
#                                    a crash) instead of SIGTERM
#
# Ports: daemon p2p BASE (passed, never opened: --offline), daemon RPC
# BASE+1, treasury wallet-rpc BASE+3, provider wallet-rpc BASE+4.  Without
# BASE_PORT the first free one of 48080, 48180, ... is taken.  Two networks
# started at the same moment may still pick the same ports: give parallel
# runs distinct BASE_PORTs.
#
# What DIR holds: daemon/ (the chain), wallets-treasury/ and
# wallets-provider/ (one wallet each, named after its role, empty wallet
# password), ringdb/, the logs (monerod.log, wallet-ROLE.log, and ROLE.out
# for what a process printed), treasury.password (mode 600) and
# treasury.conf (the --rpc-login, so the password is not in the process
# list), ROLE.cmd (each process's arguments, NUL-separated, reused by the
# restarts), ROLE.pid and pids ("PID EXE" lines), and env.
#
# `. DIR/env` exports XMR_DIR, XMR_DAEMON_URL, XMR_TREASURY_URL,
# XMR_PROVIDER_URL (http://127.0.0.1:PORT; JSON-RPC at /json_rpc),
# XMR_TREASURY_USER, XMR_TREASURY_PASSWORD_FILE, XMR_TREASURY_ADDRESS,
# XMR_PROVIDER_ADDRESS, the ports, wallet names and data paths.
#
# Processes are stopped only by the PIDs recorded here, and only while
# /proc/PID/cmdline still shows the recorded executable and DIR: never by
# name.  Settings (environment): MONEROD, MONERO_WALLET_RPC (executables),
# XMR_MINE_BLOCKS (blocks mined by `up`, default 100; fewer than ~80 leave
# too few unlocked outputs for ring size 16), XMR_START_TIMEOUT (seconds
# for each process to answer, default 60).
set -euo pipefail

LOG_TAG=${LOG_TAG:-regtest}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RPC_PL=$HERE/rpc.pl
MONEROD=${MONEROD:-/usr/bin/monerod}
WALLET_RPC=${MONERO_WALLET_RPC:-/usr/bin/monero-wallet-rpc}
MINE_BLOCKS=${XMR_MINE_BLOCKS:-100}
START_TIMEOUT_S=${XMR_START_TIMEOUT:-60}
STOP_TIMEOUT_S=20
MINE_BLOCKS_MAX=10000
TREASURY_USER=payout
MARKER=.compay-regtest
# Everything `up` puts in DIR, so that a second `up` can clear it.
OWN_FILES=(daemon wallets-treasury wallets-provider ringdb env pids
    treasury.password treasury.conf monerod.conf
    monerod.log wallet-treasury.log wallet-provider.log
    daemon.out treasury.out provider.out
    daemon.cmd treasury.cmd provider.cmd
    daemon.pid treasury.pid provider.pid)

log() {
    printf '%s: %s\n' "$LOG_TAG" "$*" >&2
}

die() {
    log "$*"
    exit 1
}

usage() {
    sed -n '/^#   regtest.sh/,/^#$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# in_range VALUE MIN MAX: VALUE is a decimal integer within MIN..MAX.
in_range() {
    [[ $1 =~ ^[0-9]{1,9}$ ]] || return 1
    (($1 >= $2 && $1 <= $3))
}

# Seconds since START (an $EPOCHREALTIME value), with 2 decimals.
elapsed() {
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}

# True when something already listens on TCP port $1 of 127.0.0.1 (a
# connection is accepted).  Pure bash: ss (iproute2) may be missing.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True when all the ports of network BASE are free.
ports_free() {
    local base=$1 off
    for off in 0 1 3 4; do
        ! port_in_use $((base + off)) || return 1
    done
}

# From 24080: below Linux's ephemeral range (32768 up), so that the local
# end of an outgoing connection (a busy test machine has many) cannot take
# a port between the check and monerod's bind.  Then from 48080.
pick_base_port() {
    local base
    for ((base = 24080; base + 4 < 32768; base += 100)); do
        if ports_free "$base"; then
            printf '%s\n' "$base"
            return 0
        fi
    done
    for ((base = 48080; base + 4 < 65536; base += 100)); do
        if ports_free "$base"; then
            printf '%s\n' "$base"
            return 0
        fi
    done
    die "no free port range from 24080 or 48080 up"
}

absolute_dir() {
    [[ -n $1 ]] || die "DIR is empty"
    case $1 in
        /*) printf '%s\n' "${1%/}" ;;
        *) printf '%s/%s\n' "$PWD" "${1%/}" ;;
    esac
}

# Loads DIR/env (written by `up`) into this shell.
load_env() {
    local dir=$1
    [[ -r $dir/env ]] || die "$dir/env not found: run '$0 up $dir' first"
    # shellcheck source=/dev/null
    source "$dir/env"
}

role_port() {
    case $1 in
        daemon) printf '%s\n' "$XMR_DAEMON_PORT" ;;
        treasury) printf '%s\n' "$XMR_TREASURY_PORT" ;;
        provider) printf '%s\n' "$XMR_PROVIDER_PORT" ;;
        *) die "unknown role '$1' (daemon, treasury or provider)" ;;
    esac
}

role_log() {
    case $1 in
        daemon) printf '%s\n' "$XMR_DIR/monerod.log" ;;
        *) printf '%s\n' "$XMR_DIR/wallet-$1.log" ;;
    esac
}

# rpc ROLE METHOD [PARAMS] [rpc.pl options...]: one call through rpc.pl,
# with the treasury's login.
rpc() {
    local role=$1 method=$2 params=${3:-'{}'}
    shift 2
    (($# == 0)) || shift
    local -a auth=()
    if [[ $role == treasury ]]; then
        auth=(--user "$XMR_TREASURY_USER" --password-file "$XMR_TREASURY_PASSWORD_FILE")
    fi
    perl "$RPC_PL" "http://127.0.0.1:$(role_port "$role")" "$method" "$params" "${auth[@]}" "$@"
}

# --- processes -------------------------------------------------------------

# True when PID runs EXE for this network: argv[0] is EXE and an argument
# lies in DIR.  A reused PID, or a zombie (empty cmdline), does not match.
pid_matches() {
    local pid=$1 exe=$2 dir=$3 arg
    local -a argv=()
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    mapfile -d '' -t argv <"/proc/$pid/cmdline" 2>/dev/null || return 1
    ((${#argv[@]})) && [[ ${argv[0]} == "$exe" ]] || return 1
    for arg in "${argv[@]:1}"; do
        [[ $arg == *"$dir/"* ]] && return 0
    done
    return 1
}

# Rewrites DIR/pids from the ROLE.pid files.
write_pids() {
    local dir=$1 role
    for role in daemon treasury provider; do
        [[ ! -f $dir/$role.pid ]] || cat "$dir/$role.pid"
    done >"$dir/pids.tmp"
    mv -f "$dir/pids.tmp" "$dir/pids"
}

# start_role DIR ROLE [EXTRA_ARGS...]: starts ROLE with the arguments in
# DIR/ROLE.cmd (plus EXTRA_ARGS), records its PID.  Output goes to
# DIR/ROLE.out so no caller's pipe is held open by the process.
start_role() {
    local dir=$1 role=$2 pid
    shift 2
    local -a cmd=()
    mapfile -d '' -t cmd <"$dir/$role.cmd"
    cmd+=("$@")
    if [[ -f $dir/$role.pid ]]; then
        read -r pid _ <"$dir/$role.pid" || true
        if pid_matches "$pid" "${cmd[0]}" "$dir"; then
            die "$role already runs (pid $pid)"
        fi
    fi
    if port_in_use "$(role_port "$role")"; then
        die "$role: port $(role_port "$role") is already in use"
    fi
    "${cmd[@]}" </dev/null >>"$dir/$role.out" 2>&1 &
    pid=$!
    printf '%s %s\n' "$pid" "${cmd[0]}" >"$dir/$role.pid"
    write_pids "$dir"
}

# Prints the tail of ROLE's logs, for a failure report.
show_logs() {
    local role=$1 file
    for file in "$(role_log "$role")" "$XMR_DIR/$role.out"; do
        if [[ -s $file ]]; then
            log "last lines of $file:"
            tail -n 25 "$file" >&2
        fi
    done
}

# wait_answer ROLE: polls ROLE until it answers JSON-RPC, fails (with its
# logs) when it exits or does not answer within START_TIMEOUT_S.
wait_answer() {
    local role=$1 pid method=get_version start=$EPOCHREALTIME
    local deadline=$((SECONDS + START_TIMEOUT_S))
    [[ $role != daemon ]] || method=get_info
    read -r pid _ <"$XMR_DIR/$role.pid"
    while :; do
        if rpc "$role" "$method" '{}' --timeout 5 --check >/dev/null 2>&1; then
            kill -0 "$pid" 2>/dev/null || break
            log "$role (pid $pid, port $(role_port "$role")) answers after $(elapsed "$start") s"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            show_logs "$role"
            die "$role (pid $pid) exited before answering on port $(role_port "$role")"
        fi
        if ((SECONDS >= deadline)); then
            show_logs "$role"
            die "$role (pid $pid) did not answer on port $(role_port "$role") within $START_TIMEOUT_S s"
        fi
        sleep 0.2
    done
    show_logs "$role"
    die "$role (pid $pid) exited; something else answers on port $(role_port "$role")"
}

# stop_pids DIR SIGNAL "PID EXE"...: sends SIGNAL (TERM or KILL) to each
# process still matching, then waits up to STOP_TIMEOUT_S for all of them
# to end; SIGKILL for those left, re-checked first.  Fails when one cannot
# be signalled (another user's) or outlives the SIGKILL.
stop_pids() {
    local dir=$1 sig=$2 entry pid exe start=$EPOCHREALTIME rc=0
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    shift 2
    local -a live=() left=()
    for entry in "$@"; do
        read -r pid exe <<<"$entry"
        pid_matches "$pid" "$exe" "$dir" || continue
        if kill "-$sig" "$pid" 2>/dev/null; then
            live+=("$entry")
        else
            log "cannot signal pid $pid ($exe), run by $(stat -c %U "/proc/$pid" 2>/dev/null || echo '?')"
            rc=1
        fi
    done
    ((${#live[@]})) || return "$rc"
    while :; do
        left=()
        for entry in "${live[@]}"; do
            read -r pid exe <<<"$entry"
            if pid_matches "$pid" "$exe" "$dir"; then
                left+=("$entry")
            fi
        done
        ((${#left[@]})) || break
        if ((SECONDS >= deadline)); then
            for entry in "${left[@]}"; do
                read -r pid exe <<<"$entry"
                log "pid $pid ($exe) still alive after $STOP_TIMEOUT_S s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            done
            sleep 1
            for entry in "${left[@]}"; do
                read -r pid exe <<<"$entry"
                if pid_matches "$pid" "$exe" "$dir"; then
                    log "pid $pid ($exe) survived SIGKILL"
                    rc=1
                fi
            done
            break
        fi
        sleep 0.2
    done
    log "stopped ${#live[@]} process(es) in $(elapsed "$start") s"
    return "$rc"
}

# stop_role DIR ROLE [KILL]: stops ROLE's recorded process, forgets it.
stop_role() {
    local dir=$1 role=$2 sig=${3:-TERM} entry=""
    case $sig in TERM | KILL) ;; *) die "signal must be KILL (or nothing), not '$sig'" ;; esac
    [[ ! -f $dir/$role.pid ]] || entry=$(<"$dir/$role.pid")
    if [[ -n $entry ]]; then
        log "$role: SIG$sig to pid ${entry%% *}"
        stop_pids "$dir" "$sig" "$entry" || die "$role: could not stop pid ${entry%% *}"
    else
        log "$role: no recorded process"
    fi
    rm -f "$dir/$role.pid"
    write_pids "$dir"
}

# --- up --------------------------------------------------------------------

# Makes DIR ready: new, empty, or left by an earlier network that is down.
prepare_dir() {
    local dir=$1 name
    if [[ -e $dir && ! -d $dir ]]; then
        die "$dir exists and is not a directory"
    fi
    if [[ -d $dir ]]; then
        if [[ -f $dir/pids ]] && any_alive "$dir"; then
            die "a network from $dir is still running: '$0 down $dir' first"
        fi
        if [[ ! -e $dir/$MARKER && -n $(ls -A "$dir") ]]; then
            die "$dir is not empty and was not made by this script; refusing to clear it"
        fi
        for name in "${OWN_FILES[@]}"; do
            rm -rf "${dir:?}/$name"
        done
    fi
    mkdir -p "$dir"
    [[ -w $dir ]] || die "$dir is not writable by $(id -un)"
    : >"$dir/$MARKER"
}

any_alive() {
    local dir=$1 pid exe
    while read -r pid exe; do
        pid_matches "$pid" "$exe" "$dir" && return 0
    done <"$dir/pids"
    return 1
}

# Writes ROLE.cmd: the arguments of each process, NUL-separated.
write_cmds() {
    local dir=$1 base=$2
    : >"$dir/monerod.conf"    # keeps ~/.bitmonero/bitmonero.conf out
    printf '%s\0' "$MONEROD" --regtest --offline --fixed-difficulty 1 \
        --no-igd --no-zmq --non-interactive \
        --config-file "$dir/monerod.conf" \
        --p2p-bind-ip 127.0.0.1 --p2p-bind-port "$base" \
        --rpc-bind-ip 127.0.0.1 --rpc-bind-port $((base + 1)) --rpc-ssl disabled \
        --disable-dns-checkpoints --check-updates disabled \
        --data-dir "$dir/daemon" --log-file "$dir/monerod.log" --log-level 0 \
        >"$dir/daemon.cmd"
    wallet_cmd "$dir" treasury $((base + 3)) --config-file "$dir/treasury.conf" \
        >"$dir/treasury.cmd"
    wallet_cmd "$dir" provider $((base + 4)) --disable-rpc-login >"$dir/provider.cmd"
}

# wallet_cmd DIR ROLE PORT LOGIN_ARGS...
wallet_cmd() {
    local dir=$1 role=$2 port=$3
    shift 3
    mkdir -p "$dir/wallets-$role"
    printf '%s\0' "$WALLET_RPC" --non-interactive \
        --daemon-address "127.0.0.1:$XMR_DAEMON_PORT" --daemon-ssl disabled \
        --rpc-bind-ip 127.0.0.1 --rpc-bind-port "$port" --rpc-ssl disabled "$@" \
        --wallet-dir "$dir/wallets-$role" --shared-ringdb-dir "$dir/ringdb" \
        --log-file "$dir/wallet-$role.log" --log-level 0
}

# The treasury's login: a random password in a mode-600 file, and the
# --rpc-login in a config file (not on the command line, where ps shows it).
write_login() {
    local dir=$1 password
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    (
        umask 077
        printf '%s\n' "$password" >"$dir/treasury.password"
        printf 'rpc-login=%s:%s\n' "$TREASURY_USER" "$password" >"$dir/treasury.conf"
    )
    chmod 600 "$dir/treasury.password" "$dir/treasury.conf"
}

write_env() {
    local dir=$1 name
    {
        printf '# written by test/monero/regtest.sh up; source it\n'
        for name in XMR_DIR XMR_BASE_PORT XMR_DAEMON_PORT XMR_TREASURY_PORT \
            XMR_PROVIDER_PORT XMR_DAEMON_URL XMR_TREASURY_URL XMR_PROVIDER_URL \
            XMR_TREASURY_USER XMR_TREASURY_PASSWORD_FILE \
            XMR_TREASURY_WALLET XMR_PROVIDER_WALLET \
            XMR_TREASURY_ADDRESS XMR_PROVIDER_ADDRESS \
            XMR_DAEMON_DATA_DIR XMR_TREASURY_WALLET_DIR XMR_PROVIDER_WALLET_DIR \
            XMR_RINGDB_DIR XMR_REGTEST XMR_RPC_PL; do
            printf 'export %s=%q\n' "$name" "${!name}"
        done
    } >"$dir/env.tmp"
    mv -f "$dir/env.tmp" "$dir/env"
}

# The settings of a new network in DIR on BASE (before DIR/env exists).
# shellcheck disable=SC2034 # written out by write_env through ${!name}
set_env() {
    local dir=$1 base=$2
    XMR_DIR=$dir
    XMR_BASE_PORT=$base
    XMR_DAEMON_PORT=$((base + 1))
    XMR_TREASURY_PORT=$((base + 3))
    XMR_PROVIDER_PORT=$((base + 4))
    XMR_DAEMON_URL=http://127.0.0.1:$XMR_DAEMON_PORT
    XMR_TREASURY_URL=http://127.0.0.1:$XMR_TREASURY_PORT
    XMR_PROVIDER_URL=http://127.0.0.1:$XMR_PROVIDER_PORT
    XMR_TREASURY_USER=$TREASURY_USER
    XMR_TREASURY_PASSWORD_FILE=$dir/treasury.password
    XMR_TREASURY_WALLET=treasury
    XMR_PROVIDER_WALLET=provider
    XMR_TREASURY_ADDRESS=""
    XMR_PROVIDER_ADDRESS=""
    XMR_DAEMON_DATA_DIR=$dir/daemon
    XMR_TREASURY_WALLET_DIR=$dir/wallets-treasury
    XMR_PROVIDER_WALLET_DIR=$dir/wallets-provider
    XMR_RINGDB_DIR=$dir/ringdb
    XMR_REGTEST=$HERE/regtest.sh
    XMR_RPC_PL=$RPC_PL
}

# EXIT trap of `up`: on failure, stop what was started; the logs stay.
up_cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM
    if ((rc != 0)) && [[ -n ${XMR_DIR:-} && -f $XMR_DIR/pids ]]; then
        log "up failed (status $rc); stopping what it started; logs are in $XMR_DIR"
        stop_all "$XMR_DIR" || true
    fi
    exit "$rc"
}

# create_wallets: both at once (each takes 2-4 s, gotcha 6).
create_wallets() {
    local role rc=0 start=$EPOCHREALTIME
    local -A job=()
    for role in treasury provider; do
        rpc "$role" create_wallet "{\"filename\":\"$role\",\"password\":\"\",\"language\":\"English\"}" \
            --check >/dev/null &
        job[$role]=$!
    done
    for role in treasury provider; do
        if ! wait "${job[$role]}"; then
            log "$role: create_wallet failed"
            rc=1
        fi
    done
    if ((rc != 0)); then
        show_logs treasury
        show_logs provider
        die "creating the wallets failed"
    fi
    log "wallets created in $(elapsed "$start") s"
}

cmd_up() {
    (($# >= 1 && $# <= 2)) || usage
    local dir base start=$EPOCHREALTIME step role
    dir=$(absolute_dir "$1")
    [[ -x $MONEROD ]] || die "$MONEROD not found: apt-get install monero"
    [[ -x $WALLET_RPC ]] || die "$WALLET_RPC not found: apt-get install monero"
    in_range "$MINE_BLOCKS" 1 "$MINE_BLOCKS_MAX" || die "XMR_MINE_BLOCKS must be 1..$MINE_BLOCKS_MAX"
    if (($# == 2)); then
        base=$2
        in_range "$base" 1024 65531 || die "BASE_PORT must be a number from 1024 to 65531"
        ports_free "$base" || die "a port of $base, $((base + 1)), $((base + 3)), $((base + 4)) is in use"
    else
        base=$(pick_base_port)
    fi
    prepare_dir "$dir"
    set_env "$dir" "$base"
    trap up_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    log "up in $dir: daemon 127.0.0.1:$XMR_DAEMON_PORT, treasury :$XMR_TREASURY_PORT, provider :$XMR_PROVIDER_PORT"
    write_login "$dir"
    write_cmds "$dir" "$base"

    start_role "$dir" daemon
    for role in treasury provider; do
        start_role "$dir" "$role"
    done
    for role in daemon treasury provider; do
        wait_answer "$role"
    done
    create_wallets

    XMR_TREASURY_ADDRESS=$(rpc treasury get_address '{"account_index":0}' --check --get result.address)
    # shellcheck disable=SC2034 # written out by write_env
    XMR_PROVIDER_ADDRESS=$(rpc provider get_address '{"account_index":0}' --check --get result.address)

    step=$EPOCHREALTIME
    mine_to_treasury "$MINE_BLOCKS"
    log "mined $MINE_BLOCKS blocks in $(elapsed "$step") s"
    step=$EPOCHREALTIME
    refresh_wallets
    log "wallets refreshed in $(elapsed "$step") s"
    write_env "$dir"
    trap - EXIT INT TERM
    log "treasury balance: $(rpc treasury get_balance '{"account_index":0}' --check --get result.balance) atomic units, unlocked $(rpc treasury get_balance '{"account_index":0}' --check --get result.unlocked_balance)"
    log "up in $(elapsed "$start") s; '. $dir/env' for the settings, '$0 down $dir' to stop"
}

# mine_to_treasury N: generateblocks, with a timeout that grows with N.
mine_to_treasury() {
    local n=$1 height
    height=$(rpc daemon generateblocks \
        "{\"amount_of_blocks\":$n,\"wallet_address\":\"$XMR_TREASURY_ADDRESS\",\"starting_nonce\":0}" \
        --check --timeout $((120 + n)) --get result.height)
    log "chain height $height"
}

# refresh ROLE: the wallet's refresh, tried up to 3 times: after a daemon
# restart, the first refresh of a wallet-rpc that was connected to the old
# monerod fails with -38 "no connection to daemon", the next one works.
refresh() {
    local role=$1
    for _ in 1 2 3; do
        if rpc "$role" refresh '{}' --check >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.3
    done
    rpc "$role" refresh '{}' --check >/dev/null
}

refresh_wallets() {
    refresh treasury
    refresh provider
}

# --- other commands ----------------------------------------------------------

# stop_all DIR: stops every process recorded in DIR (DIR/pids and the
# ROLE.pid files, each PID once), forgets them.
stop_all() {
    local dir=$1 file line
    local -a entries=()
    local -A seen=()
    for file in "$dir/pids" "$dir/daemon.pid" "$dir/treasury.pid" "$dir/provider.pid"; do
        [[ -f $file ]] || continue
        while IFS= read -r line; do
            [[ -n $line && -z ${seen[${line%% *}]:-} ]] || continue
            seen[${line%% *}]=1
            entries+=("$line")
        done <"$file"
    done
    if ((${#entries[@]})) && ! stop_pids "$dir" TERM "${entries[@]}"; then
        log "some recorded processes could not be stopped; records kept in $dir"
        return 1
    fi
    rm -f "$dir/daemon.pid" "$dir/treasury.pid" "$dir/provider.pid"
    : >"$dir/pids"
}

cmd_down() {
    (($# == 1)) || usage
    local dir
    dir=$(absolute_dir "$1")
    if [[ ! -f $dir/pids ]]; then
        log "nothing recorded in $dir; nothing to stop"
        return 0
    fi
    stop_all "$dir" || die "down: $dir: not everything stopped"
    log "down: $dir"
}

cmd_mine() {
    (($# == 2)) || usage
    local dir n=$2 start=$EPOCHREALTIME
    dir=$(absolute_dir "$1")
    in_range "$n" 1 "$MINE_BLOCKS_MAX" || die "N must be 1..$MINE_BLOCKS_MAX"
    load_env "$dir"
    mine_to_treasury "$n"
    refresh_wallets
    log "mined $n block(s) and refreshed both wallets in $(elapsed "$start") s"
}

cmd_rpc() {
    (($# >= 3)) || usage
    local dir role=$2 method=$3 params='{}'
    dir=$(absolute_dir "$1")
    shift 3
    # JSON_PARAMS may be left out before rpc.pl's options.
    if (($#)) && [[ $1 != --* ]]; then
        params=$1
        shift
    fi
    load_env "$dir"
    role_port "$role" >/dev/null
    rpc "$role" "$method" "$params" "$@"
}

wallet_role() {
    case ${1:-} in
        treasury | provider) ;;
        *) die "the wallet must be treasury or provider, not '${1:-}'" ;;
    esac
}

start_daemon() {
    local start=$EPOCHREALTIME
    # Without --keep-fakechain a regtest monerod wipes its chain (gotcha 1).
    start_role "$XMR_DIR" daemon --keep-fakechain
    wait_answer daemon
    log "daemon started in $(elapsed "$start") s"
}

start_wallet() {
    local role=$1 start=$EPOCHREALTIME
    start_role "$XMR_DIR" "$role"
    wait_answer "$role"
    rpc "$role" open_wallet "{\"filename\":\"$role\",\"password\":\"\"}" --check >/dev/null
    # Refresh before anything else: a reopened, stale wallet can fail a
    # relay_tx that did reach the daemon (guide, crash-safe finding 4).
    if ! refresh "$role"; then
        log "$role: refresh failed (is the daemon down?); the wallet is open"
    fi
    log "$role wallet started, opened and refreshed in $(elapsed "$start") s"
}

cmd_service() {
    local action=$1 what=$2 dir role=daemon
    shift 2
    (($# >= 1)) || usage
    dir=$(absolute_dir "$1")
    shift
    if [[ $what == wallet ]]; then
        (($# >= 1)) || usage
        wallet_role "$1"
        role=$1
        shift
    fi
    load_env "$dir"
    case $action in
        stop)
            (($# <= 1)) || usage
            stop_role "$dir" "$role" "${1:-TERM}"
            ;;
        start | restart)
            (($# == 0)) || usage
            [[ $action == start ]] || stop_role "$dir" "$role"
            if [[ $role == daemon ]]; then
                start_daemon
            else
                start_wallet "$role"
            fi
            ;;
    esac
}

main() {
    (($# >= 1)) || usage
    local verb=$1
    shift
    case $verb in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        mine) cmd_mine "$@" ;;
        rpc) cmd_rpc "$@" ;;
        restart-daemon | stop-daemon | start-daemon) cmd_service "${verb%%-*}" daemon "$@" ;;
        restart-wallet | stop-wallet | start-wallet) cmd_service "${verb%%-*}" wallet "$@" ;;
        -h | --help | help) usage ;;
        *) log "unknown command '$verb'" && usage ;;
    esac
}

main "$@"
