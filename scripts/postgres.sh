#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on a unix socket only.
#
#   scripts/postgres.sh start    install PostgreSQL if absent (Debian, as root), create the
#                                cluster if absent, start it if stopped; the last line on
#                                stdout is the SQLAlchemy URL of the `encd` database
#   scripts/postgres.sh stop     stop it (nothing to do if it is not running)
#   scripts/postgres.sh status   exit 0 when it is running
#   scripts/postgres.sh url      print the URL (whether or not it is running)
#   scripts/postgres.sh destroy  stop it and delete its directory
#
# Settings (environment):
#   ENCD_PG_DIR   the cluster's directory: data/, server.log and the socket (default /tmp/encd-pg)
#   ENCD_PG_PORT  the port number, which only names the socket: no TCP (default 5433)
#
# As root the server runs as the `postgres` OS user (initdb refuses root); as anyone else it
# runs as that user, and PostgreSQL must already be installed. The cluster is for tests only:
# trust authentication on the socket, fsync off. Progress goes to stderr, the URL to stdout.
set -euo pipefail

PG_DIR="${ENCD_PG_DIR:-/tmp/encd-pg}"
PG_PORT="${ENCD_PG_PORT:-5433}"
DATA="$PG_DIR/data"
LOG="$PG_DIR/server.log"
# Where Debian's packages put each major version's programs (a test can point it elsewhere).
PG_LIB="${ENCD_PG_LIB:-/usr/lib/postgresql}"
ROLE=encd
DATABASE=encd

say() { echo "postgres.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

[[ "$PG_DIR" == /* ]] || die "ENCD_PG_DIR must be an absolute path, not $PG_DIR"
[[ "$PG_PORT" =~ ^[0-9]+$ ]] || die "ENCD_PG_PORT must be a number, not $PG_PORT"
# A unix socket's path is at most 107 bytes.
((${#PG_DIR} + 18 <= 107)) || die "ENCD_PG_DIR is too long for a unix socket path: $PG_DIR"

# Programs run as the postgres OS user must be able to enter the working directory.
cd /

url() { echo "postgresql+psycopg://$ROLE@/$DATABASE?host=$1&port=$2"; }

# The newest installed major version's bin directory, or nothing.
find_bindir() {
    local found
    found=$(find "$PG_LIB" -mindepth 3 -maxdepth 3 -path '*/bin/postgres' -type f 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n "$found" ]] && dirname "$found"
    return 0
}

install_postgresql() {
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed: run this as root once, or: sudo apt-get install postgresql"
    command -v apt-get >/dev/null || die "PostgreSQL is not installed, and there is no apt-get to install it"
    say "installing PostgreSQL from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -q -o DPkg::Lock::Timeout=300)
    # apt's own output goes to stderr: stdout is kept for the URL.
    "${apt[@]}" update >&2
    "${apt[@]}" install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        postgresql >&2
}

BINDIR=$(find_bindir)

# Run a PostgreSQL program as the cluster's owner.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The pid of the postmaster that owns $DATA, when that process is alive.
running_pid() {
    local pid
    [[ -f "$DATA/postmaster.pid" ]] || return 1
    pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # A pid left by a server that died may now belong to something else, or to a zombie.
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres ]] || return 1
    [[ "$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null)" != [ZX] ]] || return 1
    echo "$pid"
}

# The URL of the running server, from the port and socket directory it wrote at start.
running_url() {
    local port sockdir
    port=$(sed -n 4p "$DATA/postmaster.pid")
    sockdir=$(sed -n 5p "$DATA/postmaster.pid")
    url "${sockdir:-$PG_DIR}" "${port:-$PG_PORT}"
}

psql_admin() {
    local port sockdir
    port=$(sed -n 4p "$DATA/postmaster.pid")
    sockdir=$(sed -n 5p "$DATA/postmaster.pid")
    # >&2: stdout is kept for the URL.
    as_owner "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U postgres -d postgres "$@" >&2
}

prepare_dir() {
    mkdir -p "$PG_DIR"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "there is no postgres OS user (is PostgreSQL installed?)"
        chown postgres: "$PG_DIR"
        [[ -e "$DATA" ]] && chown -R postgres: "$DATA"
        runuser -u postgres -- test -w "$PG_DIR" ||
            die "the postgres OS user cannot reach $PG_DIR (a parent directory is closed): choose another ENCD_PG_DIR"
    fi
    chmod 0755 "$PG_DIR"
}

init_cluster() {
    local version
    version=$(basename "$(dirname "$BINDIR")") # Debian's layout: $PG_LIB/<major>/bin
    if [[ -f "$DATA/PG_VERSION" && "$(cat "$DATA/PG_VERSION")" == "$version" ]]; then
        return 0
    fi
    # Absent, half-made or from another major version: the cluster is throwaway.
    rm -rf "$DATA"
    say "creating a PostgreSQL $version cluster in $DATA"
    as_owner "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        --no-sync --no-instructions >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2
        die "initdb failed"
    }
    echo "include 'encd.conf'" >>"$DATA/postgresql.conf"
}

write_settings() {
    # Written at every start, so that ENCD_PG_PORT and ENCD_PG_DIR take effect.
    as_owner tee "$DATA/encd.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh at each start: a test server, not for data you keep.
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
}

create_role_and_database() {
    psql_admin <<EOF
SELECT 'CREATE ROLE $ROLE SUPERUSER LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')\gexec
SELECT 'CREATE DATABASE $DATABASE OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE')\gexec
EOF
}

cmd_start() {
    if [[ -z "$BINDIR" ]]; then
        install_postgresql
        BINDIR=$(find_bindir)
        [[ -n "$BINDIR" ]] || die "installed postgresql, but found no $PG_LIB/*/bin/postgres"
    fi
    prepare_dir
    # One start at a time, for people sharing a machine.
    exec 9>"$PG_DIR/.lock"
    flock 9
    if running_pid >/dev/null; then
        create_role_and_database
        say "already running ($DATA)"
        running_url
        return 0
    fi
    init_cluster
    write_settings
    rm -f "$DATA/postmaster.pid" # stale: its server is gone
    say "starting PostgreSQL on $PG_DIR/.s.PGSQL.$PG_PORT"
    # 9>&-: the server must not inherit (and so hold forever) the start lock.
    as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null 9>&- || {
        tail -n 30 "$LOG" >&2 || true
        die "the server did not start (log: $LOG)"
    }
    create_role_and_database
    running_url
}

cmd_stop() {
    if ! running_pid >/dev/null; then
        say "not running ($DATA)"
        return 0
    fi
    as_owner "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    say "stopped ($DATA)"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status)
    if pid=$(running_pid); then
        say "running, pid $pid ($DATA)"
    else
        say "not running ($DATA)"
        exit 1
    fi
    ;;
url)
    if running_pid >/dev/null; then running_url; else url "$PG_DIR" "$PG_PORT"; fi
    ;;
destroy)
    cmd_stop
    rm -rf "$PG_DIR"
    say "removed $PG_DIR"
    ;;
*)
    echo "usage: $0 start|stop|status|url|destroy" >&2
    exit 2
    ;;
esac
