#!/usr/bin/env bash
# Installs the Debian packages compay needs to build, test and demo.
# Idempotent: packages already present are left alone, and apt is not
# touched at all when nothing is missing (no network, no root needed).
set -euo pipefail

PACKAGES=(
    postgresql-15
    postgresql-server-dev-15
    libgmp-dev
    libcurl4-openssl-dev
    postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl
    postgresql-15-cron
    monero
    libipc-run-perl
    make
    gcc
    libc6-dev
    python3-psycopg2
    python3-psycopg
    libpostgresql-jdbc-java
    openjdk-17-jre-headless
    nodejs
    chromium
    postgresql-15-auto-failover
    pg-auto-failover-cli
    postgresql-15-wal2json
    postgresql-15-plproxy
    postgresql-15-pgq3
    pgqd
)

die() {
    printf 'deps: %s\n' "$*" >&2
    exit 1
}

# dpkg's own database is the truth; `command -v` would miss -dev packages.
is_installed() {
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        is_installed "$pkg" || printf '%s\n' "$pkg"
    done
    # Debian's nodejs comes without npm; NodeSource's provides it (and
    # conflicts with Debian's npm package): ask for npm only if missing.
    command -v npm >/dev/null || printf 'npm\n'
}

# Prints the command prefix that gives root: nothing for root, sudo when it
# can work here (a terminal to ask a password on, or passwordless sudo).
root_prefix() {
    if [[ $EUID -eq 0 ]]; then
        return 0
    fi
    if command -v sudo >/dev/null && { [[ -t 0 ]] || sudo -n true 2>/dev/null; }; then
        printf 'sudo\n'
        return 0
    fi
    return 1
}

install_packages() {
    local -a sudo_cmd=()
    local prefix
    prefix=$(root_prefix) ||
        die "missing packages: $*; installing them needs root and sudo is not available. As root run: apt-get install -y --no-install-recommends $*"
    [[ -n $prefix ]] && sudo_cmd=("$prefix")
    # One update only, and only because something is about to be installed.
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

# node-postgres for the driver tests, into test/clients/node_modules from
# test/clients/package-lock.json.  Nothing to do (no network) when the
# locked version is there already.
install_node_modules() {
    local dir
    dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/clients
    [[ -f $dir/package-lock.json ]] || return 0
    if (cd "$dir" && node -e 'process.exit(require("pg/package.json").version === require("./package-lock.json").packages["node_modules/pg"].version ? 0 : 1)') 2>/dev/null; then
        printf 'deps: node-postgres present in %s\n' "$dir/node_modules"
        return 0
    fi
    command -v npm >/dev/null || die "npm not found; it installs node-postgres for test/clients"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
        die "npm ci in $dir failed (no network?); run it there once with network"
    printf 'deps: installed node-postgres in %s\n' "$dir/node_modules"
}

main() {
    if ! command -v dpkg-query >/dev/null; then
        # Not Debian: the build will say clearly what is missing.
        printf 'deps: dpkg-query not found (not a Debian system); package check skipped\n'
        return 0
    fi
    local -a missing
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        printf 'deps: all %d packages present\n' "${#PACKAGES[@]}"
        return 0
    fi
    local wanted="${missing[*]}"
    install_packages "${missing[@]}"
    # Verify: apt can "succeed" while leaving a package unconfigured.
    mapfile -t missing < <(missing_packages)
    [[ ${#missing[@]} -eq 0 ]] || die "still missing after apt-get install: ${missing[*]}"
    printf 'deps: installed %s; all %d packages present\n' "$wanted" "${#PACKAGES[@]}"
}

main "$@"
install_node_modules
