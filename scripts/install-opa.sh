#!/usr/bin/env bash
# Build OPA from its Go module at a pinned release into this checkout (.cache/opa-<version>).
# Go's own module and build caches are shared by every checkout on the machine: the first
# build takes a few minutes, a build in a fresh clone a few seconds, a second run nothing.
# Prints the path of the opa binary.
set -euo pipefail
cd "$(dirname "$0")/.."
OPA_VERSION="v1.22.3"
DEST="${AION_OPA_DIR:-$PWD/.cache/opa-$OPA_VERSION}"
if [ ! -x "$DEST/bin/opa" ]; then
    if ! command -v go >/dev/null 2>&1; then
        for candidate in /usr/local/go/bin /usr/lib/go/bin; do
            [ -x "$candidate/go" ] && PATH="$candidate:$PATH"
        done
    fi
    if ! command -v go >/dev/null 2>&1; then
        echo "install-opa: Go is needed to build OPA ($OPA_VERSION); installing golang-go" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >&2
    fi
    echo "install-opa: building github.com/open-policy-agent/opa@$OPA_VERSION into $DEST (minutes the first time on a machine, seconds after)" >&2
    mkdir -p "$DEST/bin"
    GOBIN="$DEST/bin" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/opa@$OPA_VERSION" >&2
fi
"$DEST/bin/opa" version >/dev/null
echo "$DEST/bin/opa"
