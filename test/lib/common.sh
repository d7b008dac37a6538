# shellcheck shell=bash source-path=SCRIPTDIR
# test/lib/common.sh: helpers shared by check.sh, demo.sh, suites.sh and
# cluster.sh.  Sourced, never run.  Sourcing only defines functions and
# locates PostgreSQL; it starts nothing.

COMPAY_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The tree this library sits in: the repository for check.sh/demo.sh, the
# staged copy (WORKDIR/src) for suites.sh.
COMPAY_REPO=$(cd "$COMPAY_LIB_DIR/../.." && pwd)

log() {
    printf '%s: %s\n' "${LOG_TAG:-compay}" "$*" >&2
}

die() {
    log "$*"
    exit 1
}

# Locates PostgreSQL through pg_config ($PG_CONFIG wins, as in PGXS) and
# exports what the scripts and the test programs need.  Falls back to the
# versioned pg_config so a missing /usr/bin wrapper does not matter.
pg_locate() {
    local cfg=${PG_CONFIG:-pg_config}
    if ! cfg=$(command -v "$cfg"); then
        cfg=/usr/lib/postgresql/15/bin/pg_config
        [[ -x $cfg ]] || die "pg_config not found; run 'bash test/deps.sh' or set PG_CONFIG"
    fi
    PG_CONFIG=$cfg
    PG_BINDIR=$("$PG_CONFIG" --bindir)
    # pgxs.mk lives in lib/pgxs/src/makefiles; the test programs beside it.
    PGXS_SRC=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/.." && pwd)
    PG_REGRESS=$PGXS_SRC/test/regress/pg_regress
    PG_ISOLATION_REGRESS=$PGXS_SRC/test/isolation/pg_isolation_regress
    PG_PERL_LIB=$PGXS_SRC/test/perl
    case ":$PATH:" in
        ":$PG_BINDIR:"*) ;;
        *) PATH=$PG_BINDIR:$PATH ;;
    esac
    export PG_CONFIG PG_BINDIR PG_REGRESS PG_ISOLATION_REGRESS PG_PERL_LIB PATH
}

# PostgreSQL refuses to run as root, so root hands the server and the
# suites to this unprivileged account; anyone else runs them as themselves.
test_user() {
    if [[ $EUID -eq 0 ]]; then
        printf '%s\n' "${COMPAY_TEST_USER:-postgres}"
    else
        id -un
    fi
}

# The command prefix that runs a command as test_user, with PATH and
# PG_CONFIG passed on explicitly (runuser may reset the environment).
test_user_prefix() {
    TEST_USER_PREFIX=()
    if [[ $EUID -eq 0 ]]; then
        TEST_USER_PREFIX=(runuser -u "$(test_user)" --)
    fi
    TEST_USER_PREFIX+=(env PATH="$PATH" PG_CONFIG="${PG_CONFIG:-}")
}

# Runs a command as test_user, from / because root's cwd (e.g. /root) may
# be unreadable to that user.
as_test_user() {
    test_user_prefix
    (cd / && exec "${TEST_USER_PREFIX[@]}" "$@")
}

# Starts a command as test_user in the background, in a session and
# process group of its own, so that stop_test_user_job can end all of it
# at once (the PostgreSQL servers detach themselves; they are stopped by
# their pid files).  SIGINT is set back to default: bash has background
# jobs ignore it.
start_test_user_job() {
    test_user_prefix
    (trap - INT QUIT && cd / && exec setsid "${TEST_USER_PREFIX[@]}" "$@") &
    TEST_JOB_PID=$!
}

# Waits for the job; returns its exit status.
wait_test_user_job() {
    local rc=0
    wait "$TEST_JOB_PID" || rc=$?
    TEST_JOB_PID=""
    return "$rc"
}

# Ends the job's whole process group (after a signal to this script).
stop_test_user_job() {
    [[ -n ${TEST_JOB_PID:-} ]] || return 0
    kill -TERM -- "-$TEST_JOB_PID" 2>/dev/null || true
    wait "$TEST_JOB_PID" 2>/dev/null || true
    TEST_JOB_PID=""
}

# True when sudo can give root here without hanging: a terminal to ask a
# password on, or passwordless sudo.
sudo_usable() {
    command -v sudo >/dev/null && { [[ -t 0 ]] || sudo -n true 2>/dev/null; }
}

run_deps() {
    bash "$COMPAY_REPO/test/deps.sh"
}

build_extension() {
    log "build: make (-Wall -Wextra -Werror)"
    make -C "$COMPAY_REPO" -s PG_CONFIG="$PG_CONFIG" PG_CFLAGS='-Wall -Wextra -Werror'
}

# The directories `make install` writes to.
install_dirs() {
    printf '%s\n' "$("$PG_CONFIG" --pkglibdir)" "$("$PG_CONFIG" --sharedir)/extension"
}

install_dirs_writable() {
    local dir
    while read -r dir; do
        [[ -w $dir ]] || return 1
    done < <(install_dirs)
}

install_extension() {
    local -a cmd=(make -C "$COMPAY_REPO" -s install PG_CONFIG="$PG_CONFIG"
        PG_CFLAGS='-Wall -Wextra -Werror')
    log "install: make install into $(install_dirs | paste -sd' ')"
    if [[ $EUID -eq 0 ]] || install_dirs_writable; then
        "${cmd[@]}"
    elif sudo_usable; then
        sudo "${cmd[@]}"
    else
        die "install: $(install_dirs | paste -sd' ') not writable by $(id -un) and sudo is not available; run 'make install' as root, then rerun"
    fi
}

# The common first half of check.sh and demo.sh.
deps_build_install() {
    run_deps
    pg_locate
    build_extension
    install_extension
}

# Makes DIR (fresh, empty) owned by test_user.
make_user_dir() {
    rm -rf "$1" && mkdir -p "$1" || return 1
    if [[ $EUID -eq 0 ]]; then
        chown "$(test_user):" "$1"
    fi
}

# Prints the path of a new, empty directory under /tmp owned by test_user.
new_temp_dir() {
    local dir
    dir=$(mktemp -d "/tmp/compay-$1.XXXXXX")
    if [[ $EUID -eq 0 ]]; then
        chown "$(test_user):" "$dir"
    fi
    printf '%s\n' "$dir"
}

# True when test_user can create files in DIR (and reach it: every parent
# must be searchable, which a repository under /root is not).
user_can_write() {
    as_test_user test -d "$1" -a -w "$1" -a -x "$1"
}

# Copies what the test programs read (the repository itself may be
# unreadable to test_user) into DIR/src, owned by test_user.
stage_inputs() {
    local dir=$1 part
    mkdir -p "$dir/src"
    for part in sql expected test src docs Makefile compay.control META.json README.md CHANGELOG.md; do
        if [[ -e $COMPAY_REPO/$part ]]; then
            cp -R "$COMPAY_REPO/$part" "$dir/src/"
        fi
    done
    if [[ $EUID -eq 0 ]]; then
        chown -R "$(test_user):" "$dir/src"
    fi
}

# Stops every cluster still running from DIR: left by an interrupted run
# or by a script (or Perl test) that died before its own cleanup.  Found by
# their postmaster.pid files, stopped by that pid (cluster.sh), as
# test_user because pg_ctl refuses root, with the staged cluster.sh that
# user can read.
stop_clusters_in() {
    local dir=$1 lib=$1/src/test/lib/cluster.sh
    local -a datadirs
    [[ -d $dir ]] || return 0
    mapfile -t datadirs < <(find "$dir" -path "$dir/src" -prune -o \
        -name postmaster.pid -printf '%h\n' 2>/dev/null)
    ((${#datadirs[@]})) || return 0
    [[ -r $lib ]] || lib=$COMPAY_LIB_DIR/cluster.sh
    log "stopping the cluster(s) left in ${datadirs[*]}"
    # shellcheck disable=SC2016 # expanded by the inner bash
    as_test_user bash -c 'source "$1" && shift && for d; do cluster_stop "$d"; done' \
        _ "$lib" "${datadirs[@]}" || true
}
