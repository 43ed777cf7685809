#!/usr/bin/env bash
# Build and sign every shipped bundle under policies/ into bundles/.
# A development signing key (ES256) is generated once into bundles/keys/.
set -euo pipefail
cd "$(dirname "$0")/.."
AION=.venv/bin/aion
KEYS=bundles/keys
mkdir -p "$KEYS"
if [ ! -f "$KEYS/dev-signing.pem" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$KEYS/dev-signing.ec.pem" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$KEYS/dev-signing.ec.pem" -out "$KEYS/dev-signing.pem"
    openssl ec -in "$KEYS/dev-signing.pem" -pubout -out "$KEYS/dev-signing.pub" 2>/dev/null
    rm -f "$KEYS/dev-signing.ec.pem"
    chmod 600 "$KEYS/dev-signing.pem"
fi
for src in policies/*/; do
    [ -f "$src/.manifest" ] || continue
    name="$(basename "$src")"
    "$AION" bundle build "$src" -o "bundles/$name.tar.gz" \
        --signing-key "$KEYS/dev-signing.pem" --signing-alg ES256 --key-id aion-dev
    "$AION" bundle verify "bundles/$name.tar.gz" \
        --verification-key "$KEYS/dev-signing.pub" --signing-alg ES256 --verification-key-id aion-dev
done
