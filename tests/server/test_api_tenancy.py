"""Tenancy and mass assignment: the tenant comes from the credential, ids and state from the server.

Another tenant's object answers exactly like a missing one (404, same body)
and the call changes nothing: the object is untouched and no decision is
recorded for either tenant. A body naming a field the server owns is 400.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.auth import utcnow
from server.db.tables import Agent, Model
from server.state import Services
from tests.server.api_support import (
    DIRECT,
    OTHER,
    RESEARCH,
    TARGETED,
    TENANT,
    Endpoint,
    assert_error,
    call,
)

pytestmark = pytest.mark.anyio

MISSING = {"agent_id": "agt_00000000000000000000", "decision_id": "dec_" + "0" * 32}


def _same_shape(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The error body with the id the caller sent masked (it is echoed in the message)."""
    message = body["message"]
    for value in ids.values():
        message = message.replace(value, "<id>")
    return {**body, "message": message}


@pytest.mark.parametrize("endpoint", TARGETED, ids=lambda e: e.name)
async def test_other_tenants_object_is_404_like_a_missing_one(
    client: httpx.AsyncClient,
    auth: Any,
    snapshot: Any,
    target: dict[str, str],
    endpoint: Endpoint,
) -> None:
    intruder = auth("admin", tenant=OTHER, subject="usr_intruder")
    owner = auth("admin")
    before_view = (await client.get(f"/api/v1/agents/{target['agent_id']}", headers=owner)).json()
    before = await snapshot()

    missing = await call(client, endpoint, intruder, **MISSING)
    crossing = await call(client, endpoint, intruder, **target)

    assert_error(crossing, 404, "not_found")
    assert crossing.status_code == missing.status_code
    assert _same_shape(crossing.json(), target) == _same_shape(missing.json(), MISSING)
    assert set(crossing.headers) - {"content-length"} == set(missing.headers) - {"content-length"}
    assert await snapshot() == before
    after_view = (await client.get(f"/api/v1/agents/{target['agent_id']}", headers=owner)).json()
    assert after_view == before_view


async def test_lists_show_only_the_callers_tenant(
    client: httpx.AsyncClient, auth: Any, target: dict[str, str], new_agent: Any
) -> None:
    created = await new_agent(DIRECT, tenant=OTHER)
    theirs = {"agent_id": created["id"], "decision_id": created["decision_id"]}
    for tenant, mine, other in ((OTHER, theirs, target), (TENANT, target, theirs)):
        agents = await client.get(
            "/api/v1/agents", params={"limit": 200}, headers=auth("admin", tenant=tenant)
        )
        ids = {a["id"] for a in agents.json()["items"]}
        assert mine["agent_id"] in ids
        assert other["agent_id"] not in ids
        decisions = await client.get(
            "/api/v1/decisions", params={"limit": 200}, headers=auth("auditor", tenant=tenant)
        )
        found = {d["id"] for d in decisions.json()["items"]}
        assert mine["decision_id"] in found
        assert other["decision_id"] not in found
    filtered = await client.get(
        "/api/v1/decisions",
        params={"resource_id": target["agent_id"]},
        headers=auth("auditor", tenant=OTHER),
    )
    assert filtered.json()["items"] == []


async def test_tenant_headers_do_not_switch_tenant(
    client: httpx.AsyncClient, auth: Any, target: dict[str, str]
) -> None:
    headers = auth("admin", tenant=OTHER) | {
        "X-Tenant": TENANT,
        "X-Tenant-Id": TENANT,
        "X-Aion-Tenant": TENANT,
    }
    response = await client.get(f"/api/v1/agents/{target['agent_id']}", headers=headers)
    assert_error(response, 404, "not_found")
    created = await client.post(
        "/api/v1/agents", params={"tenant": TENANT}, json=DIRECT, headers=headers
    )
    assert created.status_code == 201, created.text
    row = await Agent.select(Agent.tenant).where(Agent.id == created.json()["id"]).first()
    assert row == {"tenant": OTHER}


async def test_references_resolve_in_the_callers_tenant(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, svc: Services
) -> None:
    """A model registered only by another tenant is unknown here."""
    await Model.insert(
        Model(
            id="mdl_default_private-model",
            tenant=TENANT,
            name="private-model",
            privacy="local-only",
            registered=True,
            verified=True,
            admin_approval_required=False,
            attributes={},
            created_at=utcnow(),
        )
    )
    body = {**DIRECT, "model": "model://private-model"}
    before = await snapshot()
    refused = await client.post("/api/v1/agents", json=body, headers=auth("admin", tenant=OTHER))
    assert "private-model" in assert_error(refused, 404, "not_found")["message"]
    assert await snapshot() == before
    allowed = await client.post("/api/v1/agents", json=body, headers=auth("admin"))
    assert allowed.status_code == 201, allowed.text


async def test_decide_cannot_name_another_tenant(
    client: httpx.AsyncClient, auth: Any, snapshot: Any
) -> None:
    before = await snapshot()
    body = {
        "action": "agent.deploy",
        "resource": {"type": "agent", "id": "agt_x", "tenant": TENANT, "attributes": {}},
    }
    response = await client.post("/api/v1/decide", json=body, headers=auth("admin", tenant=OTHER))
    assert_error(response, 400, "invalid_input")
    assert await snapshot() == before


@pytest.mark.parametrize(
    "field",
    [
        ("id", "agt_chosen_by_client"),
        ("tenant", OTHER),
        ("status", "deployed"),
        ("deployment", {"id": "dep_fake"}),
        ("created_by", "usr_someone_else"),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("decision_id", "dec_fake"),
    ],
    ids=lambda f: f[0],
)
@pytest.mark.parametrize("form", ["template", "direct"])
async def test_create_refuses_server_owned_fields(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, field: tuple[str, Any], form: str
) -> None:
    name, value = field
    body = {**(RESEARCH if form == "template" else DIRECT), name: value}
    before = await snapshot()
    response = await client.post("/api/v1/agents", json=body, headers=auth("admin"))
    assert name in assert_error(response, 400, "invalid_input")["message"]
    assert await snapshot() == before


@pytest.mark.parametrize(
    "change",
    [
        {"id": "agt_other"},
        {"tenant": OTHER},
        {"deployment": {"id": "dep_fake"}},
        {"created_by": "usr_x"},
        {"status": "deployed"},
        {"status": "active"},
        {"unknown_field": 1},
        {"name": "ok", "template_id": "crewai-crm"},
    ],
    ids="+".join,
)
async def test_patch_refuses_unknown_and_server_owned_fields(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, target: dict[str, str], change: Any
) -> None:
    url = f"/api/v1/agents/{target['agent_id']}"
    before_view = (await client.get(url, headers=auth("admin"))).json()
    before = await snapshot()
    response = await client.patch(url, json=change, headers=auth("admin"))
    assert_error(response, 400, "invalid_input")
    assert await snapshot() == before
    assert (await client.get(url, headers=auth("admin"))).json() == before_view


@pytest.mark.parametrize(
    "body",
    [[], "agent", 42, None, {"name": 5, "model": "model://gpt-4o"}, {"config": []}],
    ids=["list", "string", "number", "null", "name-not-string", "config-not-object"],
)
async def test_create_refuses_malformed_bodies(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, body: Any
) -> None:
    before = await snapshot()
    response = await client.post("/api/v1/agents", json=body, headers=auth("admin"))
    assert_error(response, 400, "invalid_input")
    assert await snapshot() == before
