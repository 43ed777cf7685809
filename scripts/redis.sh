#!/usr/bin/env bash
# Start a private Redis for tests on 127.0.0.1:56379 (idempotent; installs the
# Debian package redis-server when missing). Prints the one line the tests read:
#   AION_TEST_REDIS_URL=redis://127.0.0.1:56379/0
set -euo pipefail
PORT="${AION_TEST_REDIS_PORT:-56379}"
DIR="${AION_TEST_REDIS_DIR:-/tmp/aion-test-redis}"
URL="redis://127.0.0.1:$PORT/0"
say() { echo "redis: $*" >&2; }

if ! command -v redis-server >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing redis-server (apt-get)"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >&2
fi
if ! redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
    mkdir -p "$DIR"
    redis-server --bind 127.0.0.1 --port "$PORT" --dir "$DIR" --daemonize yes \
        --save "" --appendonly no --logfile "$DIR/redis.log" >&2
    for _ in $(seq 1 100); do
        redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null || { say "Redis did not start; see $DIR/redis.log"; exit 1; }
fi
echo "AION_TEST_REDIS_URL=$URL"
