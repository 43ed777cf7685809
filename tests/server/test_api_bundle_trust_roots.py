"""A tenant's `bundle-signing` trust roots (`/trust-roots`) sign uploadable bundles like its
`/keys` do, under their securesystemslib key id; revoking one refuses its next bundle."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from engine.bundle import write_tarball
from tests.server.api_support import assert_error
from tests.server.bundle_support import R1, R2, public_pem, signed, source_files, upload

pytestmark = pytest.mark.anyio


async def test_a_bundle_signing_trust_root_verifies_uploads_until_revoked(
    client: httpx.AsyncClient, auth: Any, fresh_tenant: str
) -> None:
    admin = auth("admin", tenant=fresh_tenant)
    signer = ec.generate_private_key(ec.SECP256R1())
    root = await client.post(
        "/api/v1/trust-roots",
        json={"public_key": public_pem(signer), "purpose": "bundle-signing"},
        headers=admin,
    )
    assert root.status_code == 201, root.text
    key_id = root.json()["key_id"]

    def archive(revision: str) -> bytes:
        return write_tarball(signed(source_files(revision), key=signer, key_id=key_id))

    stored = await upload(client, admin, archive(R1))
    assert stored.status_code == 201, stored.text
    assert stored.json()["signed_by"] == key_id

    revoked = await client.delete(f"/api/v1/trust-roots/{key_id}", headers=admin)
    assert revoked.status_code == 200, revoked.text
    refused = await upload(client, admin, archive(R2))
    code = refused.json()["code"]
    assert_error(refused, refused.status_code, code)
    assert refused.status_code in (400, 422) and key_id in refused.json()["message"]

    other = auth("admin")  # another tenant: the root is not its
    assert_error(await upload(client, other, archive("2026.11.29.1")), refused.status_code, code)
