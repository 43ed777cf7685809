#!/usr/bin/env bash
# `make examples`: the shipped bundles are built and signed (scripts/build-bundles.sh);
# this evaluates the example requests in docs/examples against the signed
# archives with `aion policy eval`, the way the server gates a request.
set -euo pipefail
cd "$(dirname "$0")/.."
AION=.venv/bin/aion
bundles=()
for b in bundles/*.tar.gz; do bundles+=(--bundle "$b"); done
for req in docs/examples/*.json; do
    echo "== $req"
    "$AION" policy eval "${bundles[@]}" --input "$req" \
        | .venv/bin/python -c 'import json,sys; d=json.load(sys.stdin); print("allowed:", d["allowed"]); [print("  -", r["policy"], "|", r["message"]) for r in d["reasons"]]' || true
done
