#!/usr/bin/env bash
# Start the services the test suite needs (idempotent; run as root on Debian/Ubuntu):
# a private PostgreSQL cluster for tests on 127.0.0.1:55432 with trust auth,
# separate from any system cluster. Prints the one line the tests read:
#   AION_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:55432/postgres
# Everything else goes to stderr, so `env="$(scripts/services.sh)"` captures the line only.
set -euo pipefail

PORT="${AION_TEST_PG_PORT:-55432}"
DIR="${AION_TEST_PG_DIR:-/tmp/aion-test-postgres}"
DATA="$DIR/data"
LOG="$DIR/postgres.log"
URL="postgresql://postgres@127.0.0.1:$PORT/postgres"

say() { echo "services: $*" >&2; }

pg_bindir() {
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$found" ] && [ -x "$found/initdb" ] && [ -x "$found/pg_ctl" ]; then
        echo "$found"
    elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

BIN="$(pg_bindir)"
if [ -z "$BIN" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "PostgreSQL server binaries are missing and there is no apt-get; install PostgreSQL"
        exit 1
    fi
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing PostgreSQL (apt-get)"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
    BIN="$(pg_bindir)"
    if [ -z "$BIN" ]; then
        say "PostgreSQL was installed but initdb/pg_ctl were not found"
        exit 1
    fi
fi

# The server refuses to run as root: as root, run it as the `postgres` system user.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres; }

if ready; then
    say "PostgreSQL already accepts connections on 127.0.0.1:$PORT"
    echo "AION_TEST_DATABASE_URL=$URL"
    exit 0
fi

mkdir -p "$DIR"
[ "$(id -u)" -ne 0 ] || chown postgres:postgres "$DIR"
chmod 700 "$DIR"

if [ ! -f "$DATA/PG_VERSION" ]; then
    say "creating a test cluster in $DATA"
    rm -rf "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
            --no-locale >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
fi

# A stale pid file from a killed server would stop pg_ctl from starting a new one.
if [ -f "$DATA/postmaster.pid" ] && ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    rm -f "$DATA/postmaster.pid"
fi

if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "starting PostgreSQL on 127.0.0.1:$PORT"
    # Test data is disposable: no fsync, so creating a database per test module stays fast.
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=200" >&2 \
        || { tail -n 30 "$LOG" >&2 || true; exit 1; }
fi

for _ in $(seq 1 60); do
    if ready; then
        echo "AION_TEST_DATABASE_URL=$URL"
        exit 0
    fi
    sleep 0.5
done
say "PostgreSQL did not accept connections on 127.0.0.1:$PORT within 30 s; log: $LOG"
tail -n 30 "$LOG" >&2 || true
exit 1
