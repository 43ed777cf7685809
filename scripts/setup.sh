#!/usr/bin/env bash
# Idempotent setup on a fresh Debian/Ubuntu machine: system packages, then the
# project's virtualenv (.venv) from the lock file (uv.lock). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
BOOT=".cache/bootstrap"

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: missing $* and no apt-get; install them by hand" >&2
        exit 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ ! -f .cache/apt-updated ]; then
        $sudo apt-get update -qq
        mkdir -p .cache && touch .cache/apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

# System packages the project needs (Debian names).
need=()
command -v python3.11 >/dev/null 2>&1 || need+=(python3.11 python3.11-venv)
command -v git >/dev/null 2>&1 || need+=(git)
command -v make >/dev/null 2>&1 || need+=(make)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    apt_install "${need[@]}"
fi
if ! python3.11 -c "import venv, ensurepip" >/dev/null 2>&1; then
    apt_install python3.11-venv
fi

# uv, pinned, in a bootstrap venv of its own (never the system Python).
if [ ! -x "$BOOT/bin/uv" ] || [ "$("$BOOT/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    python3.11 -m venv "$BOOT"
    "$BOOT/bin/pip" install -q "uv==$UV_VERSION"
fi

# The project environment, exactly as locked.
UV_PYTHON=python3.11 UV_PYTHON_DOWNLOADS=never "$BOOT/bin/uv" sync --frozen --quiet
test -x .venv/bin/aion
