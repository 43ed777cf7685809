"""OPA sidecars on SQLite and PostgreSQL: registration, bearer tokens, revocation, the bundle
service OPA pulls from (ETag, 304, long polling, allowlists, tenant bundles), keys, status."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from typing import Any

import httpx
import pytest
from litestar import Litestar

from engine.bundle import bundle_from_files, read_tarball
from server.api.opa import _STATE_KEY
from server.bootstrap import BUNDLE_KEY_ID, Keys
from server.opa.serve import CONTENT_TYPE, MAX_POLLS_PER_SIDECAR, BundleServer
from tests.server.api_support import OTHER, TENANT, assert_error
from tests.server.bundle_support import GLOBAL_REVISION, KEY_ID, R1, R2, build, trust, upload

pytestmark = pytest.mark.anyio


async def register(
    client: httpx.AsyncClient, auth: Any, tenant: str = TENANT, **body: Any
) -> dict[str, Any]:
    payload = {"name": f"sc-{hashlib.sha256(repr(body).encode()).hexdigest()[:6]}", **body}
    response = await client.post(
        "/api/v1/sidecars", json=payload, headers=auth("admin", tenant=tenant)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def status_report(instance: str, revision: str, **bundle: Any) -> dict[str, Any]:
    """A status report as OPA v1.22 posts it (plain JSON)."""
    return {
        "labels": {"id": instance, "version": "1.22.3", "region": "eu"},
        "bundles": {
            "default-safe": {
                "name": "default-safe",
                "active_revision": revision,
                "last_successful_activation": "2026-11-27T19:18:31.9Z",
                "metrics": {"timer_bundle_request_ns": 1},
                **bundle,
            }
        },
        "metrics": {"prometheus": {"go_gc": {"name": "go_gc"}}},
        "plugins": {"bundle": {"state": "OK"}, "status": {"state": "OK"}},
    }


# -- registration --------------------------------------------------------------------------------


async def test_an_admin_registers_a_sidecar_and_sees_its_token_once(
    client: httpx.AsyncClient, auth: Any
) -> None:
    created = await register(client, auth, name="edge-eu", bundles=["deploy-gates"])
    assert created["token"].startswith("aion_sc_")
    assert created["bundles"] == ["deploy-gates"] and created["instances"] == []
    listed = (await client.get("/api/v1/sidecars", headers=auth("auditor"))).json()["items"]
    mine = next(s for s in listed if s["id"] == created["id"])
    assert "token" not in mine and mine["name"] == "edge-eu"
    one = await client.get(f"/api/v1/sidecars/{created['id']}", headers=auth("operator"))
    assert one.status_code == 200 and "token" not in one.json()
    again = await client.post(
        "/api/v1/sidecars", json={"name": "edge-eu"}, headers=auth("security")
    )
    assert_error(again, 409, "conflict")


@pytest.mark.parametrize("role", ["operator", "developer", "viewer", "auditor"])
async def test_only_admin_and_security_register_sidecars(
    client: httpx.AsyncClient, auth: Any, role: str
) -> None:
    response = await client.post("/api/v1/sidecars", json={"name": f"x-{role}"}, headers=auth(role))
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 201},
        {"name": "ok", "bundles": [""]},
        {"name": "ok", "extra": 1},
    ],
    ids=["empty-name", "long-name", "empty-bundle", "unknown-field"],
)
async def test_a_bad_registration_is_400(
    client: httpx.AsyncClient, auth: Any, body: dict[str, Any]
) -> None:
    response = await client.post("/api/v1/sidecars", json=body, headers=auth("admin"))
    assert_error(response, 400, "invalid_input")


async def test_another_tenants_sidecar_is_404(client: httpx.AsyncClient, auth: Any) -> None:
    created = await register(client, auth, name="private")
    theirs = auth("admin", tenant=OTHER)
    assert_error(
        await client.get(f"/api/v1/sidecars/{created['id']}", headers=theirs), 404, "not_found"
    )
    assert_error(
        await client.delete(f"/api/v1/sidecars/{created['id']}", headers=theirs), 404, "not_found"
    )
    listed = (await client.get("/api/v1/sidecars", headers=theirs)).json()["items"]
    assert created["id"] not in {s["id"] for s in listed}
    # still alive for its own tenant
    response = await client.get("/bundles/default-safe", headers=bearer(created["token"]))
    assert response.status_code == 200


# -- the bundle service --------------------------------------------------------------------------


async def test_a_sidecar_downloads_the_signed_active_bundle(
    client: httpx.AsyncClient, auth: Any
) -> None:
    created = await register(client, auth, name="downloader")
    response = await client.get("/bundles/default-safe", headers=bearer(created["token"]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    etag = response.headers["etag"]
    assert etag == f'"{hashlib.sha256(response.content).hexdigest()}"'
    files = read_tarball(response.content)
    assert ".signatures.json" in files
    assert bundle_from_files(files, "default-safe").revision == GLOBAL_REVISION
    same = await client.get("/bundles/default-safe.tar.gz", headers=bearer(created["token"]))
    assert same.status_code == 200 and same.content == response.content


async def test_if_none_match_is_304_without_a_body(client: httpx.AsyncClient, auth: Any) -> None:
    token = (await register(client, auth, name="etag"))["token"]
    first = await client.get("/bundles/deploy-gates", headers=bearer(token))
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(
            "/bundles/deploy-gates", headers={**bearer(token), "If-None-Match": header}
        )
        assert again.status_code == 304, header
        assert again.content == b"" and again.headers["etag"] == etag
    stale = await client.get(
        "/bundles/deploy-gates", headers={**bearer(token), "If-None-Match": '"stale"'}
    )
    assert stale.status_code == 200 and stale.content == first.content


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer aion_sc_nope"}, {"Authorization": "Basic eDp5"}],
    ids=["none", "unknown-token", "not-bearer"],
)
async def test_the_bundle_service_refuses_a_missing_or_bad_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/bundles/default-safe", headers=headers)
    assert_error(response, 401, "unauthorized")


async def test_a_user_token_is_not_a_sidecar_token(client: httpx.AsyncClient, token: Any) -> None:
    response = await client.get("/bundles/default-safe", headers=bearer(token("admin")))
    assert_error(response, 401, "unauthorized")


async def test_revoking_refuses_the_token_at_once(client: httpx.AsyncClient, auth: Any) -> None:
    created = await register(client, auth, name="short-lived")
    headers = bearer(created["token"])
    assert (await client.get("/bundles/default-safe", headers=headers)).status_code == 200
    revoked = await client.delete(f"/api/v1/sidecars/{created['id']}", headers=auth("security"))
    assert revoked.status_code == 204
    assert_error(await client.get("/bundles/default-safe", headers=headers), 401, "unauthorized")
    status = json.dumps(status_report("opa-1", GLOBAL_REVISION)).encode()
    assert_error(await client.post("/status", content=status, headers=headers), 401, "unauthorized")
    assert_error(
        await client.get(f"/api/v1/sidecars/{created['id']}", headers=auth("admin")),
        404,
        "not_found",
    )
    assert_error(
        await client.delete(f"/api/v1/sidecars/{created['id']}", headers=auth("admin")),
        404,
        "not_found",
    )


async def test_the_allowlist_limits_what_a_sidecar_downloads(
    client: httpx.AsyncClient, auth: Any
) -> None:
    token = (await register(client, auth, name="gates-only", bundles=["deploy-gates"]))["token"]
    assert (await client.get("/bundles/deploy-gates", headers=bearer(token))).status_code == 200
    assert_error(await client.get("/bundles/default-safe", headers=bearer(token)), 404, "not_found")
    assert_error(await client.get("/bundles/no-such", headers=bearer(token)), 404, "not_found")


@pytest.fixture
async def tenant_admin(client: httpx.AsyncClient, auth: Any, fresh_tenant: str) -> dict[str, str]:
    """Admin headers of a fresh tenant that trusts SIGNER and stored R1 and R2 of default-safe."""
    headers: dict[str, str] = auth("admin", tenant=fresh_tenant)
    await trust(client, headers)
    for revision, kw in ((R1, {}), (R2, {"without_ls": True})):
        stored = await upload(client, headers, build(revision, **kw))
        assert stored.status_code == 201, stored.text
    return headers


async def activate(client: httpx.AsyncClient, headers: dict[str, str], revision: str) -> None:
    response = await client.post(
        "/api/v1/bundles/default-safe/activate", json={"revision": revision}, headers=headers
    )
    assert response.status_code == 200, response.text


def revision_of(archive: bytes) -> str:
    return bundle_from_files(read_tarball(archive), "default-safe").revision


async def test_a_tenants_bundle_replaces_the_global_one_for_its_sidecars_only(
    client: httpx.AsyncClient, auth: Any, fresh_tenant: str, tenant_admin: dict[str, str]
) -> None:
    theirs = (await register(client, auth, tenant=fresh_tenant, name="t"))["token"]
    ours = (await register(client, auth, name="ours"))["token"]
    before = await client.get("/bundles/default-safe", headers=bearer(theirs))
    assert revision_of(before.content) == GLOBAL_REVISION
    await activate(client, tenant_admin, R1)
    after = await client.get(
        "/bundles/default-safe",
        headers={**bearer(theirs), "If-None-Match": before.headers["etag"]},
    )
    assert after.status_code == 200 and revision_of(after.content) == R1
    assert after.headers["etag"] != before.headers["etag"]
    global_one = await client.get("/bundles/default-safe", headers=bearer(ours))
    assert revision_of(global_one.content) == GLOBAL_REVISION


async def test_long_polling_waits_for_a_new_revision(
    client: httpx.AsyncClient, auth: Any, fresh_tenant: str, tenant_admin: dict[str, str]
) -> None:
    token = (await register(client, auth, tenant=fresh_tenant, name="poller"))["token"]
    await activate(client, tenant_admin, R1)
    current = await client.get("/bundles/default-safe", headers=bearer(token))
    assert revision_of(current.content) == R1
    polling = {
        **bearer(token),
        "If-None-Match": current.headers["etag"],
        "Prefer": "modes=snapshot,delta;wait=1",
    }
    unchanged = await client.get("/bundles/default-safe", headers=polling)
    assert unchanged.status_code == 304 and unchanged.content == b""
    waiting = asyncio.create_task(
        client.get("/bundles/default-safe", headers={**polling, "Prefer": "wait=30"})
    )
    await activate(client, tenant_admin, R2)
    changed = await asyncio.wait_for(waiting, timeout=30)
    assert changed.status_code == 200 and revision_of(changed.content) == R2


# -- keys ----------------------------------------------------------------------------------------


async def test_keys_name_the_servers_key_and_the_tenants(
    client: httpx.AsyncClient,
    auth: Any,
    fresh_tenant: str,
    tenant_admin: dict[str, str],
    server_keys: Keys,
) -> None:
    response = await client.get("/api/v1/sidecars/keys", headers=auth("admin", tenant=fresh_tenant))
    assert response.status_code == 200, response.text
    keys = {k["key_id"]: k for k in response.json()["keys"]}
    assert keys[BUNDLE_KEY_ID]["public_key"] == server_keys.bundle_public
    assert keys[BUNDLE_KEY_ID]["algorithm"] == "ES256" and keys[BUNDLE_KEY_ID]["scope"] == "global"
    assert keys[KEY_ID]["scope"] == "tenant"
    bundles = {b["name"]: b for b in response.json()["bundles"]}
    assert bundles["default-safe"]["signed_by"] == BUNDLE_KEY_ID
    await activate(client, tenant_admin, R1)
    again = await client.get("/api/v1/sidecars/keys", headers=auth("admin", tenant=fresh_tenant))
    bundles = {b["name"]: b for b in again.json()["bundles"]}
    assert bundles["default-safe"] == {
        "name": "default-safe",
        "revision": R1,
        "signed_by": KEY_ID,
        "scope": "tenant",
    }
    other = await client.get("/api/v1/sidecars/keys", headers=auth("admin", tenant=OTHER))
    assert KEY_ID not in {k["key_id"] for k in other.json()["keys"]}


# -- status --------------------------------------------------------------------------------------


async def test_status_reports_show_in_the_sidecar_list(
    client: httpx.AsyncClient, auth: Any
) -> None:
    created = await register(client, auth, name="reporter")
    headers = bearer(created["token"])
    plain = json.dumps(status_report("opa-a", GLOBAL_REVISION)).encode()
    response = await client.post(
        "/status", content=plain, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 204, response.text
    failing = status_report(
        "opa-b", "", code="bundle_error", message="failed to verify JWT signature"
    )
    zipped = gzip.compress(json.dumps(failing).encode())
    response = await client.post(
        "/status", content=zipped, headers={**headers, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 204, response.text
    found = (await client.get(f"/api/v1/sidecars/{created['id']}", headers=auth("admin"))).json()
    instances = {i["id"]: i for i in found["instances"]}
    good, bad = instances["opa-a"], instances["opa-b"]
    assert good["version"] == "1.22.3" and good["labels"] == {"region": "eu"}
    assert good["bundles"]["default-safe"]["active_revision"] == GLOBAL_REVISION
    assert good["bundles"]["default-safe"]["served_revision"] == GLOBAL_REVISION
    assert good["plugins"] == {"bundle": "OK", "status": "OK"} and good["errors"] == []
    assert good["reported_at"]
    assert bad["errors"][0]["bundle"] == "default-safe"
    assert bad["errors"][0]["code"] == "bundle_error"
    listed = (await client.get("/api/v1/sidecars", headers=auth("admin"))).json()["items"]
    assert {i["id"] for i in next(s for s in listed if s["id"] == created["id"])["instances"]} == {
        "opa-a",
        "opa-b",
    }
    # a later report of the same instance replaces the earlier one
    fixed = json.dumps(status_report("opa-b", GLOBAL_REVISION)).encode()
    assert (await client.post("/status", content=fixed, headers=headers)).status_code == 204
    found = (await client.get(f"/api/v1/sidecars/{created['id']}", headers=auth("admin"))).json()
    assert len(found["instances"]) == 2
    assert next(i for i in found["instances"] if i["id"] == "opa-b")["errors"] == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"bundles": {}}).encode(),
        json.dumps({"labels": {"id": 7}}).encode(),
        json.dumps({"labels": {"id": "x"}, "bundles": []}).encode(),
        b"\x1f\x8bnot really gzip",
    ],
    ids=["not-json", "array", "no-labels", "id-not-string", "bundles-not-object", "bad-gzip"],
)
async def test_a_bad_status_report_is_400(
    client: httpx.AsyncClient, auth: Any, body: bytes
) -> None:
    token = (await register(client, auth, name=f"bad-{hashlib.sha256(body).hexdigest()[:8]}"))[
        "token"
    ]
    assert_error(
        await client.post("/status", content=body, headers=bearer(token)), 400, "invalid_input"
    )


# -- review fixes: unique names, long polls ------------------------------------------------------


async def test_names_are_stripped_and_unique_even_when_registered_at_once(
    client: httpx.AsyncClient, auth: Any
) -> None:
    names = ["twin", " twin", "twin ", " twin ", "twin", "\ttwin"]
    answers = await asyncio.gather(
        *(client.post("/api/v1/sidecars", json={"name": n}, headers=auth("admin")) for n in names)
    )
    assert sorted(a.status_code for a in answers) == [201] + [409] * (len(names) - 1)
    listed = (await client.get("/api/v1/sidecars", headers=auth("admin"))).json()["items"]
    assert [s["name"] for s in listed if s["name"].strip() == "twin"] == ["twin"]


async def polls_of(app: Litestar, sidecar_id: str, count: int) -> None:
    """Wait (with a deadline) until ``count`` long polls of the sidecar are being held."""
    deadline = asyncio.get_running_loop().time() + 20
    while app.state[_STATE_KEY]._polls.get(sidecar_id, 0) != count:
        assert asyncio.get_running_loop().time() < deadline, "the long polls never started"
        await asyncio.sleep(0.01)


async def test_a_token_revoked_mid_poll_gets_no_new_bundle(
    client: httpx.AsyncClient,
    auth: Any,
    fresh_tenant: str,
    tenant_admin: dict[str, str],
    server_app: Litestar,
) -> None:
    created = await register(client, auth, tenant=fresh_tenant, name="revoked-mid-poll")
    await activate(client, tenant_admin, R1)
    current = await client.get("/bundles/default-safe", headers=bearer(created["token"]))
    polling = {
        **bearer(created["token"]),
        "If-None-Match": current.headers["etag"],
        "Prefer": "wait=30",
    }
    waiting = asyncio.create_task(client.get("/bundles/default-safe", headers=polling))
    await polls_of(server_app, created["id"], 1)
    revoked = await client.delete(f"/api/v1/sidecars/{created['id']}", headers=tenant_admin)
    assert revoked.status_code == 204
    await activate(client, tenant_admin, R2)
    answer = await asyncio.wait_for(waiting, timeout=30)
    assert_error(answer, 401, "unauthorized")


async def test_long_polls_of_one_sidecar_are_capped(
    client: httpx.AsyncClient, auth: Any, server_app: Litestar
) -> None:
    created = await register(client, auth, name="many-polls")
    current = await client.get("/bundles/default-safe", headers=bearer(created["token"]))
    polling = {
        **bearer(created["token"]),
        "If-None-Match": current.headers["etag"],
        "Prefer": "wait=30",
    }
    held = [
        asyncio.create_task(client.get("/bundles/default-safe", headers=polling))
        for _ in range(MAX_POLLS_PER_SIDECAR)
    ]
    await polls_of(server_app, created["id"], MAX_POLLS_PER_SIDECAR)
    extra = await asyncio.wait_for(client.get("/bundles/default-safe", headers=polling), timeout=10)
    assert extra.status_code == 304 and extra.content == b""
    await client.delete(f"/api/v1/sidecars/{created['id']}", headers=auth("admin"))
    for answer in await asyncio.wait_for(asyncio.gather(*held), timeout=30):
        assert_error(answer, 401, "unauthorized")


async def test_waiting_compares_etags_without_loading_the_archive(
    client: httpx.AsyncClient, auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = (await register(client, auth, name="etag-only"))["token"]
    current = await client.get("/bundles/default-safe", headers=bearer(token))
    loads: list[str] = []
    original = BundleServer._archive

    async def counting(self: BundleServer, row_id: str) -> Any:
        loads.append(row_id)
        return await original(self, row_id)

    monkeypatch.setattr(BundleServer, "_archive", counting)
    polling = {**bearer(token), "If-None-Match": current.headers["etag"], "Prefer": "wait=1"}
    unchanged = await client.get("/bundles/default-safe", headers=polling)
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == current.headers["etag"]
    assert loads == []
    again = await client.get("/bundles/default-safe", headers=bearer(token))
    assert again.status_code == 200 and again.content == current.content


async def test_a_gzipped_status_with_trailing_data_is_400(
    client: httpx.AsyncClient, auth: Any
) -> None:
    token = (await register(client, auth, name="trailing"))["token"]
    body = gzip.compress(json.dumps(status_report("opa-t", GLOBAL_REVISION)).encode())
    for bad in (body + b"junk", body + body):
        response = await client.post(
            "/status", content=bad, headers={**bearer(token), "Content-Encoding": "gzip"}
        )
        assert_error(response, 400, "invalid_input")
