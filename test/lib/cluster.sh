# shellcheck shell=bash source-path=SCRIPTDIR
# test/lib/cluster.sh: a throwaway PostgreSQL cluster for tests and the
# demo.  Sourced, never run; must run as an unprivileged user (PostgreSQL
# refuses root).  Exports PGHOST/PGPORT so psql & co. reach the cluster.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
pg_locate

# TCP only: a socket path under a deep work dir can exceed the 107-byte
# limit, and TCP needs no directory the user can write.
export PGHOST=127.0.0.1

# True when something already listens on TCP port $1.
port_in_use() {
    if command -v ss >/dev/null; then
        [[ -n $(ss -Hltn "( sport = :$1 )") ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# Prints the first free TCP port on 127.0.0.1 from 54320 up.
cluster_pick_port() {
    local port
    for ((port = 54320; port < 65535; port++)); do
        if ! port_in_use "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    log "no free TCP port from 54320 up"
    return 1
}

# cluster_init DATADIR PORT [postgresql.conf lines...]
# CLUSTER_PRELOAD (default 'compay,pg_cron') is shared_preload_libraries:
# 'pg_cron' alone gives a cluster where compay is loaded by its first call
# (no worker), as under pg_cron without the preload.
cluster_init() {
    local data=$1 port=$2
    shift 2
    local initlog
    initlog=$(dirname "$data")/initdb.log
    if ! initdb -D "$data" -A trust --no-sync -E UTF8 --locale=C >"$initlog" 2>&1; then
        cat "$initlog" >&2
        log "initdb failed for $data"
        return 1
    fi
    # Extra lines go last: the last setting of a name wins, so callers can
    # override any default here (fsync, for one).
    {
        printf '\n# compay test harness\n'
        printf '%s\n' \
            "listen_addresses = '127.0.0.1'" \
            "port = $port" \
            "unix_socket_directories = ''" \
            "shared_preload_libraries = '${CLUSTER_PRELOAD-compay,pg_cron}'" \
            "cron.database_name = 'postgres'" \
            "fsync = off" \
            "max_connections = 100" \
            "max_worker_processes = 16" \
            "log_line_prefix = '%m [%p] %q%u@%d '" \
            "$@"
    } >>"$data/postgresql.conf"
    export PGPORT=$port
}

# cluster_start DATADIR LOGFILE: the log goes to LOGFILE via pg_ctl -l.
cluster_start() {
    local data=$1 logfile=$2
    if ! pg_ctl -D "$data" -l "$logfile" -w -t 60 start >/dev/null; then
        log "the server did not start; last lines of $logfile:"
        tail -n 40 "$logfile" >&2 || true
        return 1
    fi
    # The port the server really uses (4th line of postmaster.pid).
    PGPORT=$(sed -n 4p "$data/postmaster.pid")
    export PGPORT
}

# True when PID is alive and is a postgres process (not a reused PID).
is_postgres_pid() {
    kill -0 "$1" 2>/dev/null && grep -qa postgres "/proc/$1/cmdline" 2>/dev/null
}

# cluster_stop DATADIR: fast shutdown of the postmaster named in
# postmaster.pid; after 30 s, SIGKILL that very PID.  Never by name.
cluster_stop() {
    local data=$1 pid start
    [[ -f $data/postmaster.pid ]] || return 0
    pid=$(head -n 1 "$data/postmaster.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    start=$SECONDS
    pg_ctl -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    # pg_ctl may have given up early (e.g. unreadable pid file): wait out
    # the rest of the 30 s before the hard kill.
    while is_postgres_pid "$pid" && ((SECONDS - start < 30)); do
        sleep 1
    done
    if is_postgres_pid "$pid"; then
        log "postmaster $pid still alive after 30 s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
}
