#!/usr/bin/env bash
# Build OPA from its Go module at a pinned release into a cache shared by every
# checkout on this machine (first build takes a few minutes; later runs are free).
# Prints the path of the opa binary.
set -euo pipefail
OPA_VERSION="v1.22.3"
DEST="${AION_OPA_DIR:-$HOME/.cache/aion/opa-$OPA_VERSION}"
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
    echo "install-opa: building github.com/open-policy-agent/opa@$OPA_VERSION (a few minutes, once)" >&2
    mkdir -p "$DEST/bin"
    GOBIN="$DEST/bin" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/opa@$OPA_VERSION" >&2
fi
"$DEST/bin/opa" version >/dev/null
echo "$DEST/bin/opa"
