#!/usr/bin/env bash
# test/clients/run.sh: the driver tests (psycopg2, psycopg 3, node-postgres,
# pgJDBC) against the running cluster that PGHOST/PGPORT name.  Installs
# nothing: test/deps.sh installs the Debian packages and node_modules.
# Prints TAP, one "ok N - ..." line per check, each driver under a
# "# driver" heading; a driver that is missing is one failed check.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PGDATABASE=compay_clients PGUSER=${PGUSER:-$(id -un)}
status=0

# The README's setting for operators: compay last on the database's path.
# shellcheck disable=SC2016 # "$user" is PostgreSQL's, not the shell's
if ! psql -X -q -v ON_ERROR_STOP=1 -d postgres \
    -c 'SET client_min_messages = warning' \
    -c 'DROP DATABASE IF EXISTS compay_clients' -c 'CREATE DATABASE compay_clients' \
    -c 'ALTER DATABASE compay_clients SET search_path = "$user", public, compay' ||
    ! psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION compay'; then
    echo "not ok 1 - database compay_clients with compay"
    exit 1
fi

# drive NAME CHECK CMD...: runs CMD if CHECK (a command) succeeds.
drive() {
    local name=$1 check=$2
    shift 2
    echo "# $name"
    if ! bash -c "$check" >/dev/null 2>&1; then
        echo "not ok 1 - $name is installed (test/deps.sh installs it)"
        status=1
        return
    fi
    (cd "$here" && "$@") || status=1
}

py=/usr/bin/python3    # Debian's, where python3-psycopg2 and python3-psycopg are
drive psycopg2 "$py -c 'import psycopg2'" "$py" psycopg2_credit.py
drive "psycopg 3" "$py -c 'import psycopg'" "$py" psycopg3_credit.py
drive node-postgres "cd '$here' && node -e 'require(\"pg\")'" node node_credit.js
jar=/usr/share/java/postgresql.jar
drive pgJDBC "test -r $jar && command -v java" java -cp "$jar" JdbcCredit.java

exit "$status"
