"""Tools, bindings and LatentBox discovery on SQLite and PostgreSQL.

Binding and unbinding are governed (`tool.bind`, `tool.unbind`), recorded,
and answered 404/409 before any decision when the tool or binding does not
exist. LatentBox answers 404 unless the server enables it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from server.bootstrap import SEED_TOOLS
from server.db.tables import AgentToolBinding
from server.state import Services
from tests.server.api_support import DIRECT, OTHER, assert_error, serve

pytestmark = pytest.mark.anyio

SEARCH = "/api/v1/latentbox/tools/search"


@pytest.fixture
async def agent_id(new_agent: Any) -> str:
    """A new agent of the default tenant with `web_search` bound."""
    return str((await new_agent(DIRECT))["id"])


async def bind(
    client: httpx.AsyncClient, headers: dict[str, str], agent_id: str, tool: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/agents/{agent_id}/tools", json={"tool_id": tool}, headers=headers
    )


async def bound(agent_id: str) -> list[str]:
    rows = await AgentToolBinding.select(AgentToolBinding.tool_id).where(
        AgentToolBinding.agent_id == agent_id
    )
    return sorted(r["tool_id"] for r in rows)


async def record(client: httpx.AsyncClient, auth: Any, decision_id: str) -> Any:
    response = await client.get(f"/api/v1/decisions/{decision_id}", headers=auth("auditor"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_tools_lists_the_tenants_tools(client: httpx.AsyncClient, auth: Any) -> None:
    response = await client.get("/api/v1/tools", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert sorted(t["id"] for t in items) == sorted(SEED_TOOLS)
    assert all("tenant" not in t for t in items)
    assert_error(await client.get("/api/v1/tools", headers=auth("auditor")), 403, "forbidden")


async def test_bind_adds_the_tool_and_records_the_decision(
    client: httpx.AsyncClient, auth: Any, agent_id: str
) -> None:
    response = await bind(client, auth("developer"), agent_id, "browser")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tool_ids"] == ["browser", "web_search"]
    assert await bound(agent_id) == ["browser", "web_search"]
    kept = await record(client, auth, body["decision_id"])
    assert (kept["action"], kept["resource"]["id"]) == ("tool.bind", "browser")
    assert kept["result"]["outcome"] == "allow"
    assert kept["input"]["context"]["agent"]["id"] == agent_id
    shown = await client.get(f"/api/v1/agents/{agent_id}", headers=auth("viewer"))
    assert shown.json()["tool_ids"] == ["browser", "web_search"]


@pytest.mark.parametrize(
    ("tool", "status", "code"),
    [("web_search", 409, "conflict"), ("no-such-tool", 404, "not_found")],
    ids=["already-bound", "unknown-tool"],
)
async def test_bind_refuses_before_deciding(
    client: httpx.AsyncClient,
    auth: Any,
    snapshot: Any,
    agent_id: str,
    tool: str,
    status: int,
    code: str,
) -> None:
    before = await snapshot()
    error = assert_error(await bind(client, auth("admin"), agent_id, tool), status, code)
    assert tool in error["message"]
    assert await snapshot() == before
    assert await bound(agent_id) == ["web_search"]


async def test_binding_a_host_tool_needs_an_operating_role(
    client: httpx.AsyncClient, auth: Any, agent_id: str
) -> None:
    denied = await bind(client, auth("developer"), agent_id, "ops.shell")
    error = assert_error(denied, 403, "policy_denied")
    assert "default_safe.privileged_tool_role" in {r["policy"] for r in error["reasons"]}
    kept = await record(client, auth, error["decision_id"])
    assert (kept["action"], kept["result"]["outcome"]) == ("tool.bind", "deny")
    assert await bound(agent_id) == ["web_search"]

    allowed = await bind(client, auth("operator"), agent_id, "ops.shell")
    assert allowed.status_code == 200, allowed.text
    assert await bound(agent_id) == ["ops.shell", "web_search"]


async def test_unbind_removes_the_tool_once(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, agent_id: str
) -> None:
    url = f"/api/v1/agents/{agent_id}/tools/web_search"
    response = await client.delete(url, headers=auth("security"))
    assert response.status_code == 200, response.text
    assert response.json()["tool_ids"] == []
    assert await bound(agent_id) == []
    kept = await record(client, auth, response.json()["decision_id"])
    assert (kept["action"], kept["resource"]["id"]) == ("tool.unbind", "web_search")
    assert kept["result"]["outcome"] == "allow"

    before = await snapshot()
    for tool in ("web_search", "browser", "no-such-tool"):
        missing = await client.delete(
            f"/api/v1/agents/{agent_id}/tools/{tool}", headers=auth("admin")
        )
        assert tool in assert_error(missing, 404, "not_found")["message"]
    assert await snapshot() == before


async def test_another_tenants_agent_is_not_found(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, agent_id: str
) -> None:
    theirs = auth("admin", tenant=OTHER)
    before = await snapshot()
    assert_error(await bind(client, theirs, agent_id, "browser"), 404, "not_found")
    gone = await client.delete(f"/api/v1/agents/{agent_id}/tools/web_search", headers=theirs)
    assert_error(gone, 404, "not_found")
    assert await snapshot() == before
    assert await bound(agent_id) == ["web_search"]


async def test_bind_rejects_unknown_fields(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, agent_id: str
) -> None:
    before = await snapshot()
    response = await client.post(
        f"/api/v1/agents/{agent_id}/tools",
        json={"tool_id": "browser", "tenant": OTHER},
        headers=auth("admin"),
    )
    assert_error(response, 400, "invalid_input")
    assert await snapshot() == before


# -- LatentBox ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def _latentbox(_module_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    enabled = replace(
        _module_services,
        settings=replace(_module_services.settings, latentbox_enabled=True),
    )
    async with serve(enabled) as client:
        yield client


@pytest.fixture
def latentbox(svc: Services, _latentbox: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of an app with LatentBox discovery enabled."""
    return _latentbox


@pytest.mark.parametrize(
    "url", ["/api/v1/latentbox/tools", f"{SEARCH}?scenario=gen_art&capability=image"]
)
async def test_latentbox_is_404_when_disabled(
    client: httpx.AsyncClient, auth: Any, url: str
) -> None:
    assert (
        "AION_LATENTBOX_ENABLED"
        in assert_error(await client.get(url, headers=auth("viewer")), 404, "not_found")["message"]
    )


async def test_latentbox_lists_its_catalog(latentbox: httpx.AsyncClient, auth: Any) -> None:
    response = await latentbox.get("/api/v1/latentbox/tools", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    ids = [t["id"] for t in response.json()["items"]]
    assert len(ids) == 9
    assert "latentbox:ai:image:midjourney" in ids
    denied = await latentbox.get("/api/v1/latentbox/tools", headers=auth("auditor"))
    assert_error(denied, 403, "forbidden")


@pytest.mark.parametrize(
    ("params", "ranked"),
    [
        (
            {"scenario": "gen_art", "capability": "image"},
            [("midjourney", 3), ("leonardo", 3), ("recraft", 2), ("runway", 1)],
        ),
        ({"scenario": "gen_art"}, [("midjourney", 2), ("leonardo", 2), ("recraft", 2)]),
        ({"capability": "citations"}, [("tavily", 1), ("perplexity", 1)]),
        ({"scenario": "no-such-scenario"}, []),
    ],
    ids=["scenario+capability", "scenario", "capability", "no-match"],
)
async def test_latentbox_search_ranks_scenario_over_capability(
    latentbox: httpx.AsyncClient, auth: Any, params: dict[str, str], ranked: list[Any]
) -> None:
    response = await latentbox.get(SEARCH, params=params, headers=auth("developer"))
    assert response.status_code == 200, response.text
    got = [(t["id"].rsplit(":", 1)[-1], t["score"]) for t in response.json()["items"]]
    assert got == ranked


@pytest.mark.parametrize("params", [{}, {"scenario": ""}, {"scenario": "", "capability": ""}])
async def test_latentbox_search_needs_a_scenario_or_capability(
    latentbox: httpx.AsyncClient, auth: Any, params: dict[str, str]
) -> None:
    response = await latentbox.get(SEARCH, params=params, headers=auth("viewer"))
    assert_error(response, 400, "invalid_input")
