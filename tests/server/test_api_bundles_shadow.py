"""Shadowing never changes what is active; activation verifies a stored revision again."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.db.tables import TrustedKey
from tests.server.api_support import assert_error
from tests.server.bundle_support import build, revisions, trust, upload

pytestmark = pytest.mark.anyio

REVISION = "2099.1.1"


async def test_the_active_revision_cannot_be_shadowed(
    client: httpx.AsyncClient, auth: Any, fresh_tenant: str
) -> None:
    admin: dict[str, str] = auth("admin", tenant=fresh_tenant)
    await trust(client, admin)
    assert (await upload(client, admin, build(REVISION))).status_code == 201
    activated = await client.post(
        "/api/v1/bundles/default-safe/activate", json={"revision": REVISION}, headers=admin
    )
    assert activated.status_code == 200, activated.text
    before = await revisions(client, admin)
    assert before[f"tenant:{REVISION}"] == "active"
    shadowed = await client.post(
        "/api/v1/bundles/default-safe/shadow", json={"revision": REVISION}, headers=admin
    )
    assert_error(shadowed, 409, "conflict")
    assert await revisions(client, admin) == before, "the tenant keeps its active revision"


async def test_a_revision_whose_signer_is_no_longer_trusted_cannot_be_activated(
    client: httpx.AsyncClient, auth: Any, fresh_tenant: str
) -> None:
    admin: dict[str, str] = auth("admin", tenant=fresh_tenant)
    await trust(client, admin)
    assert (await upload(client, admin, build(REVISION))).status_code == 201
    await TrustedKey.delete().where(TrustedKey.tenant == fresh_tenant)  # the key was revoked
    before = await revisions(client, admin)
    refused = await client.post(
        "/api/v1/bundles/default-safe/activate", json={"revision": REVISION}, headers=admin
    )
    error = assert_error(refused, 400, "invalid_input")
    assert "no longer verifies" in error["message"]
    assert await revisions(client, admin) == before
