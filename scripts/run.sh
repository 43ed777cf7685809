#!/usr/bin/env bash
# `make run`: the shipped bundles are built and signed (scripts/build-bundles.sh);
# this evaluates the tour's requests against the signed archives, the way a
# client's request will be gated. The REST server (`aion serve`) is built in
# the server issue; until then this is the end-to-end path a user can run.
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
