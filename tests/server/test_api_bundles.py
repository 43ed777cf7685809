"""Tenant bundles and keys on SQLite and PostgreSQL: trust, upload, impact, shadow, activate.

Bundles are built and signed in the tests (`bundle_support`) from a copy of
the shipped `default-safe` (same name, so a tenant revision takes the global
one's place); the candidate ``R2`` drops ``ls`` from the ops.shell allowlist,
which flips a known decision. Tests that change what a tenant trusts or runs use a fresh
tenant, so the shared ones keep the shipped policies.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.bundle import write_tarball
from server.state import Services
from tests.server.api_support import OTHER, TENANT, assert_error
from tests.server.bundle_support import (
    GLOBAL_REVISION,
    KEY_ID,
    LS,
    R1,
    R2,
    SHELL_DATA,
    SIGNER,
    STRANGER,
    broken_gzip,
    build,
    decide,
    policies,
    private_pem,
    public_pem,
    record,
    revisions,
    signed,
    source_files,
    trust,
    upload,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    return {R1: build(R1), R2: build(R2, without_ls=True)}


@pytest.fixture
async def tenant_admin(client: httpx.AsyncClient, auth: Any, fresh_tenant: str) -> dict[str, str]:
    """Admin headers of a fresh tenant that trusts SIGNER."""
    headers: dict[str, str] = auth("admin", tenant=fresh_tenant)
    await trust(client, headers)
    return headers


# -- keys ---------------------------------------------------------------------------------------

KEYS = {
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@pytest.mark.parametrize("algorithm", list(KEYS))
async def test_a_pem_public_key_is_trusted(
    client: httpx.AsyncClient, auth: Any, algorithm: str
) -> None:
    body = {
        "key_id": f"k-{algorithm}",
        "algorithm": algorithm,
        "public_key": public_pem(KEYS[algorithm]()),
    }
    response = await client.post("/api/v1/keys", json=body, headers=auth("admin"))
    assert response.status_code == 201, response.text
    assert response.json() == body
    mine = (await client.get("/api/v1/keys", headers=auth("viewer"))).json()["items"]
    assert body in mine
    theirs = (await client.get("/api/v1/keys", headers=auth("admin", tenant=OTHER))).json()
    assert body["key_id"] not in {k["key_id"] for k in theirs["items"]}


@pytest.mark.parametrize(
    "body",
    [
        {"key_id": "bad-pem", "algorithm": "ES256", "public_key": "-----BEGIN PUBLIC KEY-----\nxx"},
        {"key_id": "private", "algorithm": "ES256", "public_key": private_pem(STRANGER)},
        {"key_id": "hmac", "algorithm": "HS256", "public_key": public_pem(STRANGER)},
        {"key_id": "none", "algorithm": "none", "public_key": public_pem(STRANGER)},
        {"key_id": "rsa-as-es", "algorithm": "ES256", "public_key": public_pem(KEYS["RS256"]())},
        {"key_id": "ec-as-eddsa", "algorithm": "EdDSA", "public_key": public_pem(STRANGER)},
    ],
    ids=["bad-pem", "private-key", "HS256", "alg-none", "rsa-key-as-ES256", "ec-key-as-EdDSA"],
)
async def test_a_key_that_is_not_an_asymmetric_public_key_is_400(
    client: httpx.AsyncClient, auth: Any, body: dict[str, str]
) -> None:
    assert_error(
        await client.post("/api/v1/keys", json=body, headers=auth("admin")), 400, "invalid_input"
    )
    listed = (await client.get("/api/v1/keys", headers=auth("admin"))).json()["items"]
    assert body["key_id"] not in {k["key_id"] for k in listed}


async def test_a_duplicate_key_is_409_and_viewers_may_not_add(
    client: httpx.AsyncClient, auth: Any
) -> None:
    body = {"key_id": "dup", "algorithm": "ES256", "public_key": public_pem(SIGNER)}
    assert (await client.post("/api/v1/keys", json=body, headers=auth("admin"))).status_code == 201
    again = {**body, "public_key": public_pem(STRANGER)}
    assert_error(
        await client.post("/api/v1/keys", json=again, headers=auth("security")), 409, "conflict"
    )
    viewer = {**body, "key_id": "by-viewer"}
    assert_error(
        await client.post("/api/v1/keys", json=viewer, headers=auth("viewer")), 403, "forbidden"
    )
    listed = (await client.get("/api/v1/keys", headers=auth("admin"))).json()["items"]
    assert [k["public_key"] for k in listed if k["key_id"] == "dup"] == [public_pem(SIGNER)]
    assert "by-viewer" not in {k["key_id"] for k in listed}


# -- upload -------------------------------------------------------------------------------------


async def test_upload_stores_a_signed_bundle_without_activating_it(
    client: httpx.AsyncClient, auth: Any, tenant_admin: dict[str, str], archives: dict[str, bytes]
) -> None:
    response = await upload(client, tenant_admin, archives[R1])
    assert response.status_code == 201, response.text
    stored = response.json()
    assert {k: stored[k] for k in ("name", "revision", "status", "signed_by", "scope")} == {
        "name": "default-safe",
        "revision": R1,
        "status": "stored",
        "signed_by": KEY_ID,
        "scope": "tenant",
    }
    listed = (await client.get("/api/v1/bundles", headers=tenant_admin)).json()["items"]
    assert stored in listed
    assert {b["scope"] for b in listed if b != stored} == {"global"}
    assert await revisions(client, tenant_admin) == {
        f"global:{GLOBAL_REVISION}": "active",
        f"tenant:{R1}": "stored",
    }
    assert (await decide(client, tenant_admin))["revisions"]["default-safe"] == GLOBAL_REVISION

    # Another name is the tenant's alone.
    other = await upload(client, tenant_admin, build("1", name="acme-safe"))
    assert other.status_code == 201, other.text
    assert (await client.get("/api/v1/bundles/acme-safe", headers=tenant_admin)).status_code == 200
    for headers in (auth("admin"), auth("admin", tenant=OTHER)):
        assert_error(
            await client.get("/api/v1/bundles/acme-safe", headers=headers), 404, "not_found"
        )
        assert f"tenant:{R1}" not in await revisions(client, headers)


async def test_upload_needs_a_writing_role(
    client: httpx.AsyncClient, auth: Any, fresh_tenant: str, archives: dict[str, bytes]
) -> None:
    for role in ("viewer", "operator", "developer"):
        response = await upload(client, auth(role, tenant=fresh_tenant), archives[R1])
        assert_error(response, 403, "forbidden")


async def test_a_revision_that_is_not_newer_is_a_rollback(
    client: httpx.AsyncClient, tenant_admin: dict[str, str], archives: dict[str, bytes]
) -> None:
    assert (await upload(client, tenant_admin, archives[R2])).status_code == 201
    for archive in (archives[R2], archives[R1]):
        error = assert_error(await upload(client, tenant_admin, archive), 400, "invalid_input")
        assert error["message"].startswith("bundle_rollback"), error
    assert await revisions(client, tenant_admin) == {
        f"global:{GLOBAL_REVISION}": "active",
        f"tenant:{R2}": "stored",
    }


def _untrusted() -> dict[str, bytes]:
    files = source_files(R1)
    tampered = signed(files)
    tampered[SHELL_DATA] = tampered[SHELL_DATA].replace(b'"du"', b'"rm"')
    extra = {**signed(files), "aion/tool/invoke/extra.rego": b"package aion.tool.invoke\n"}
    return {
        "unknown key id": write_tarball(signed(files, STRANGER, "stranger")),
        "wrong key, trusted id": write_tarball(signed(files, STRANGER)),
        "unsigned": write_tarball(files),
        "file edited after signing": write_tarball(tampered),
        "file added after signing": write_tarball(extra),
    }


UNTRUSTED = _untrusted()


@pytest.mark.parametrize("case", list(UNTRUSTED))
async def test_a_bundle_the_tenant_cannot_trust_is_refused(
    client: httpx.AsyncClient, tenant_admin: dict[str, str], case: str
) -> None:
    error = assert_error(await upload(client, tenant_admin, UNTRUSTED[case]), 400, "invalid_input")
    assert error["message"].startswith("bundle_signature_invalid"), error
    assert await revisions(client, tenant_admin) == {f"global:{GLOBAL_REVISION}": "active"}


@pytest.mark.parametrize(
    "archive",
    [b"not a tarball", build(R1)[:2000], broken_gzip()],
    ids=["garbage", "truncated", "corrupt-deflate"],
)
async def test_an_unreadable_archive_is_400(
    client: httpx.AsyncClient, tenant_admin: dict[str, str], archive: bytes
) -> None:
    error = assert_error(await upload(client, tenant_admin, archive), 400, "invalid_input")
    assert error["message"].startswith("bundle_invalid"), error
    assert await revisions(client, tenant_admin) == {f"global:{GLOBAL_REVISION}": "active"}


# -- impact, shadow, activate -------------------------------------------------------------------


async def test_impact_replays_recorded_decisions_against_the_candidate(
    client: httpx.AsyncClient, auth: Any, tenant_admin: dict[str, str], archives: dict[str, bytes]
) -> None:
    assert (await upload(client, tenant_admin, archives[R2])).status_code == 201
    chained = await decide(
        client, tenant_admin, {**LS, "context": {"arguments": {"command": "ls; rm -rf /"}}}
    )
    df = await decide(client, tenant_admin, {**LS, "context": {"arguments": {"command": "df"}}})
    ls = await decide(client, tenant_admin)
    assert (chained["allowed"], df["allowed"], ls["allowed"]) == (False, True, True)
    url = "/api/v1/bundles/default-safe/impact"

    response = await client.post(url, json={"revision": R2}, headers=tenant_admin)
    assert response.status_code == 200, response.text
    impact = response.json()
    assert (impact["replayed"], impact["skipped"], impact["flipped"]) == (3, 0, 1)
    assert impact["revisions"]["default-safe"] == R2
    [flip] = impact["flips"]
    assert flip["decision_id"] == ls["decision_id"]
    assert (flip["action"], flip["before"], flip["after"]) == ("tool.invoke", "allow", "deny")
    assert "default_safe.shell_command_not_allowed" in policies(flip["reasons"])

    newest = await client.post(url, json={"revision": R2, "limit": 1}, headers=tenant_admin)
    assert (newest.json()["replayed"], newest.json()["flipped"]) == (1, 1)
    same = await client.post(url, json={"revision": R2, "limit": 2}, headers=tenant_admin)
    assert (same.json()["replayed"], same.json()["flipped"]) == (2, 1)

    # A Data API query with the same input is recorded too, but it is a query's result,
    # not a decision of the action: impact skips it rather than report a flip.
    request = (await record(client, tenant_admin, ls["decision_id"]))["input"]
    query = await client.post(
        "/v1/data/aion/tool/invoke/deny", json={"input": request}, headers=tenant_admin
    )
    assert query.status_code == 200 and query.json()["result"] == [], query.text
    again = (await client.post(url, json={"revision": R2}, headers=tenant_admin)).json()
    assert (again["replayed"], again["skipped"], again["flipped"]) == (3, 1, 1)

    assert_error(
        await client.post(url, json={"revision": R2, "limit": 0}, headers=tenant_admin),
        400,
        "invalid_input",
    )
    assert_error(
        await client.post(url, json={"revision": "9.9"}, headers=tenant_admin), 404, "not_found"
    )
    assert_error(
        await client.post(url, json={"revision": R2}, headers=auth("admin")), 404, "not_found"
    )
    # Nothing was activated: the answer is still the global revision's.
    assert (await decide(client, tenant_admin))["allowed"] is True


async def test_shadow_records_the_candidates_verdict_without_effect(
    client: httpx.AsyncClient, tenant_admin: dict[str, str], archives: dict[str, bytes]
) -> None:
    assert (await upload(client, tenant_admin, archives[R2])).status_code == 201
    response = await client.post(
        "/api/v1/bundles/default-safe/shadow", json={"revision": R2}, headers=tenant_admin
    )
    assert response.status_code == 200, response.text
    activation = await record(client, tenant_admin, response.json()["decision_id"])
    assert activation["action"] == "bundle.activate"
    assert activation["input"]["context"]["shadow"] is True
    assert await revisions(client, tenant_admin) == {
        f"global:{GLOBAL_REVISION}": "active",
        f"tenant:{R2}": "shadow",
    }

    answer = await decide(client, tenant_admin)
    assert answer["allowed"] is True
    assert answer["revisions"]["default-safe"] == GLOBAL_REVISION
    kept = await record(client, tenant_admin, answer["decision_id"])
    assert kept["result"]["allowed"] is True
    shadow = kept["shadow"]
    assert (shadow["allowed"], shadow["outcome"]) == (False, "deny")
    assert shadow["revisions"]["default-safe"] == R2
    assert "default_safe.shell_command_not_allowed" in policies(shadow["reasons"])


async def test_activation_is_a_recorded_decision_and_rollback_is_explicit(
    client: httpx.AsyncClient,
    auth: Any,
    svc: Services,
    fresh_tenant: str,
    tenant_admin: dict[str, str],
    archives: dict[str, bytes],
) -> None:
    for revision in (R1, R2):
        assert (await upload(client, tenant_admin, archives[revision])).status_code == 201
    url = "/api/v1/bundles/default-safe/activate"

    activated = await client.post(url, json={"revision": R2}, headers=tenant_admin)
    assert activated.status_code == 200, activated.text
    assert await revisions(client, tenant_admin) == {
        f"global:{GLOBAL_REVISION}": "active",
        f"tenant:{R1}": "stored",
        f"tenant:{R2}": "active",
    }
    kept = await record(client, tenant_admin, activated.json()["decision_id"])
    assert (kept["action"], kept["resource"]["id"]) == ("bundle.activate", "default-safe")
    assert kept["result"]["outcome"] == "allow"
    assert kept["input"]["resource"]["attributes"]["revision"] == R2
    denied = await decide(client, tenant_admin)
    assert denied["allowed"] is False
    assert denied["revisions"]["default-safe"] == R2
    assert "default_safe.shell_command_not_allowed" in policies(denied["reasons"])
    # Other tenants keep the global revision.
    assert (await decide(client, auth("admin", tenant=OTHER)))["revisions"][
        "default-safe"
    ] == GLOBAL_REVISION

    # Only the tenant's own stored revisions can be activated.
    for revision, headers in ((GLOBAL_REVISION, tenant_admin), (R1, auth("admin"))):
        refused = await client.post(url, json={"revision": revision}, headers=headers)
        assert_error(refused, 404, "not_found")
    assert_error(
        await client.post(
            url, json={"revision": R1}, headers=auth("operator", tenant=fresh_tenant)
        ),
        403,
        "forbidden",
    )

    rolled_back = await client.post(url, json={"revision": R1}, headers=tenant_admin)
    assert rolled_back.status_code == 200, rolled_back.text
    allowed = await decide(client, tenant_admin)
    assert allowed["allowed"] is True
    assert allowed["revisions"]["default-safe"] == R1
    assert (await revisions(client, tenant_admin))[f"tenant:{R2}"] == "stored"
    listed = await client.get(
        "/api/v1/decisions", params={"action": "bundle.activate"}, headers=tenant_admin
    )
    items = listed.json()["items"]
    assert [d["id"] for d in items] == [
        rolled_back.json()["decision_id"],
        activated.json()["decision_id"],
    ]
    assert {d["outcome"] for d in items} == {"allow"}
    rollback = await record(client, tenant_admin, rolled_back.json()["decision_id"])
    assert rollback["input"]["resource"]["attributes"]["revision"] == R1
    assert (await svc.log.verify(fresh_tenant, None)).ok


async def test_a_candidate_that_does_not_compile_with_the_active_set_is_refused(
    client: httpx.AsyncClient, tenant_admin: dict[str, str]
) -> None:
    """`acme-safe` claims the roots of the global default-safe: it cannot go live beside it."""
    assert (await upload(client, tenant_admin, build("1", name="acme-safe"))).status_code == 201
    for action in ("activate", "shadow", "impact"):
        response = await client.post(
            f"/api/v1/bundles/acme-safe/{action}", json={"revision": "1"}, headers=tenant_admin
        )
        error = assert_error(response, 400, "invalid_input")
        assert error["message"].startswith("bundle_root_conflict"), error
    listed = await client.get(
        "/api/v1/decisions", params={"action": "bundle.activate"}, headers=tenant_admin
    )
    assert listed.json()["items"] == []
    assert (await decide(client, tenant_admin))["revisions"]["default-safe"] == GLOBAL_REVISION


async def test_the_shared_tenants_are_untouched(client: httpx.AsyncClient, auth: Any) -> None:
    """Runs last in the module: the fresh tenants' activations did not leak."""
    for tenant in (TENANT, OTHER):
        answer = await decide(client, auth("admin", tenant=tenant))
        assert answer["allowed"] is True
        assert answer["revisions"]["default-safe"] == GLOBAL_REVISION
