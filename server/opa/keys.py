"""The public keys a sidecar verifies the tenant's bundles with, as OPA's ``keys`` config
takes them: the server's own key (``aion-embedded``, signing the shipped bundles), the keys
the tenant trusts (``/keys``) and its active ``bundle-signing`` trust roots.

OPA picks the key by the signature's ``kid`` when a bundle's ``signing`` names no
``keyid``, so a config listing every key here verifies whichever revision is active.
"""

from __future__ import annotations

import contextlib
from typing import Any

from registry import Purpose, RegistryError
from server.auth import utcnow
from server.db.tables import Bundle, TrustedKey
from server.policies import GLOBAL_TENANT, PolicyService
from server.registration.trust import TableTrustStore

#: JWT algorithm of a bundle signature by a trust root's key type (as bundle uploads verify).
_ROOT_ALGORITHMS = {"ecdsa": "ES256", "ed25519": "EdDSA", "rsa": "RS256"}


async def _trust_roots(tenant: str) -> list[dict[str, Any]]:
    roots = await TableTrustStore(tenant).snapshot()
    now, found = utcnow(), []
    for root in roots.list(Purpose.BUNDLE_SIGNING):
        algorithm = _ROOT_ALGORITHMS.get(str(root.key.get("keytype", "")))
        if algorithm is None or not root.is_active(now):
            continue
        with contextlib.suppress(ValueError, RegistryError):  # no PEM form: OPA cannot use it
            found.append(
                {
                    "key_id": root.key_id,
                    "algorithm": algorithm,
                    "public_key": root.public_pem().decode(),
                    "scope": "tenant",
                    "source": "trust_root",
                }
            )
    return found


async def sidecar_keys(tenant: str, policies: PolicyService) -> dict[str, Any]:
    """The keys (global first, then the tenant's) and the active bundles with their signers."""
    rows = (
        await TrustedKey.select()
        .where(TrustedKey.tenant.is_in([GLOBAL_TENANT, tenant]))
        .order_by(TrustedKey.key_id)
    )
    keys = [
        {
            "key_id": r["key_id"],
            "algorithm": r["algorithm"],
            "public_key": r["public_key"],
            "scope": "global" if r["tenant"] == GLOBAL_TENANT else "tenant",
            "source": "key",
        }
        for r in sorted(rows, key=lambda r: (r["tenant"] != GLOBAL_TENANT, r["key_id"]))
    ]
    named = {k["key_id"] for k in keys}
    keys += [k for k in await _trust_roots(tenant) if k["key_id"] not in named]
    active = await policies.active_rows(tenant)
    signers: dict[str, str] = {}
    if active:
        ids = [r["id"] for r in active]
        found = await Bundle.select(Bundle.id, Bundle.signed_by).where(Bundle.id.is_in(ids))
        signers = {r["id"]: r["signed_by"] for r in found}
    bundles = [
        {
            "name": r["name"],
            "revision": r["revision"],
            "signed_by": signers.get(r["id"], ""),
            "scope": "global" if r["tenant"] == GLOBAL_TENANT else "tenant",
        }
        for r in active
    ]
    return {"keys": keys, "bundles": bundles}
