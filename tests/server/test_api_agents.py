"""Agents end to end on SQLite and PostgreSQL: create, list, change, deploy, disable.

Every gated call leaves a decision in the log with the outcome the caller saw,
and the tenant's hash chain still verifies afterwards.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from server.db.tables import Agent, Model, Tenant, Tool
from server.state import Services
from tests.server.api_support import (
    CRM,
    CRM_SECRET,
    DIRECT,
    OTHER,
    RESEARCH,
    TENANT,
    assert_error,
)

pytestmark = pytest.mark.anyio

INVALID = {
    "budget over the maximum": (
        {**RESEARCH, "config": {**RESEARCH["config"], "max_budget": 500}},
        "max_budget",
    ),
    "crm without its api key": (
        {"template_id": "crewai-crm", "config": {"crm_type": "hubspot", "llm_profile": "openai"}},
        "crm_api_key",
    ),
    "repo_url not a uri": (
        {
            "template_id": "superagi-github",
            "config": {
                "repo_url": "not a uri",
                "github_token": "ghp-SECRET-0a1b",
                "llm_profile": "openai",
            },
        },
        "repo_url",
    ),
}


async def decision(client: httpx.AsyncClient, headers: dict[str, str], decision_id: str) -> Any:
    response = await client.get(f"/api/v1/decisions/{decision_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def listed_outcome(
    client: httpx.AsyncClient, headers: dict[str, str], decision_id: str, action: str
) -> str:
    """The outcome of ``decision_id`` as GET /decisions lists it (filtered by action)."""
    response = await client.get(
        "/api/v1/decisions", params={"action": action, "limit": 200}, headers=headers
    )
    assert response.status_code == 200, response.text
    found = [d for d in response.json()["items"] if d["id"] == decision_id]
    assert len(found) == 1, f"{decision_id} not listed under {action}"
    return str(found[0]["outcome"])


async def test_the_backend_is_the_real_one(svc: Services, request: pytest.FixtureRequest) -> None:
    """The harness runs what it says: migrated tables on the named engine, both tenants seeded."""
    engine = {"sqlite": SQLiteEngine, "postgres": PostgresEngine}
    assert isinstance(svc.db, engine[request.node.callspec.params["server_db"]])
    tenants = await Tenant.select(Tenant.id).order_by(Tenant.id)
    assert [t["id"] for t in tenants] == [TENANT, OTHER]
    for tenant in (TENANT, OTHER):
        assert await Tool.count().where(Tool.tenant == tenant) > 0
        assert await Model.count().where(Model.tenant == tenant) > 0
    active = await svc.policies.active_rows(TENANT)
    assert {"default-safe", "deploy-gates"} <= {r["name"] for r in active}


async def test_create_from_template(client: httpx.AsyncClient, auth: Any, svc: Services) -> None:
    admin = auth("admin")
    response = await client.post("/api/v1/agents", json=RESEARCH, headers=admin)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("agt_")
    assert body["status"] == "created"
    assert body["deployment"] is None
    assert body["name"] == "Research Copilot"
    assert body["template_id"] == "autogpt-research"
    assert body["config"] == RESEARCH["config"]
    assert body["tool_ids"] == ["browser", "file_writer", "web_search"]

    fetched = await client.get(f"/api/v1/agents/{body['id']}", headers=admin)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == body["id"]

    record = await decision(client, admin, body["decision_id"])
    assert record["action"] == "agent.create"
    assert record["resource"] == {"type": "agent", "id": body["id"], "tenant": TENANT}
    assert record["result"]["outcome"] == "allow"
    assert await listed_outcome(client, admin, body["decision_id"], "agent.create") == "allow"
    assert (await svc.log.verify(TENANT, None)).ok


@pytest.mark.parametrize("case", list(INVALID))
async def test_invalid_template_config_is_refused(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, case: str
) -> None:
    body, field = INVALID[case]
    before = await snapshot()
    response = await client.post("/api/v1/agents", json=body, headers=auth("admin"))
    error = assert_error(response, 400, "invalid_input")
    assert field in error["message"]
    assert "SECRET" not in response.text
    assert await snapshot() == before  # no agent, and no decision: refused before the gate


async def test_direct_form(client: httpx.AsyncClient, auth: Any) -> None:
    response = await client.post("/api/v1/agents", json=DIRECT, headers=auth("developer"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["deployment"], body["template_id"]) == ("created", None, None)
    assert (body["model"], body["tool_ids"]) == ("model://gpt-4o", ["web_search"])


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("model", "model://no-such-model", "no-such-model"),
        ("tool_ids", ["web_search", "no.such.tool"], "no.such.tool"),
        ("policy_ids", ["no-such-bundle"], "no-such-bundle"),
    ],
)
async def test_unknown_reference_is_404_naming_it(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, field: str, value: Any, named: str
) -> None:
    before = await snapshot()
    response = await client.post(
        "/api/v1/agents", json={**DIRECT, field: value}, headers=auth("admin")
    )
    assert named in assert_error(response, 404, "not_found")["message"]
    assert await snapshot() == before


async def test_direct_form_needs_name_and_model(client: httpx.AsyncClient, auth: Any) -> None:
    response = await client.post("/api/v1/agents", json={"config": {}}, headers=auth("admin"))
    assert_error(response, 400, "invalid_input")


async def test_list_with_cursor_pagination(
    client: httpx.AsyncClient, auth: Any, new_agent: Any
) -> None:
    created = {(await new_agent({**DIRECT, "name": f"Pager {i}"}))["id"] for i in range(5)}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/v1/agents", params=params, headers=auth("viewer"))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a page repeated an agent"
    assert created <= set(seen)
    for bad in ("0", "201", "many"):
        response = await client.get("/api/v1/agents?limit=" + bad, headers=auth("viewer"))
        assert_error(response, 400, "invalid_input")


async def test_patch(client: httpx.AsyncClient, auth: Any, new_agent: Any) -> None:
    agent = await new_agent()
    url = f"/api/v1/agents/{agent['id']}"
    response = await client.patch(
        url,
        json={"name": "Renamed", "config": {**RESEARCH["config"], "max_budget": 7}},
        headers=auth("developer"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["config"]["max_budget"]) == ("Renamed", 7)
    assert body["status"] == "created"
    record = await decision(client, auth("auditor"), body["decision_id"])
    assert (record["action"], record["result"]["outcome"]) == ("agent.update", "allow")

    bad = await client.patch(url, json={"config": {"max_budget": 500}}, headers=auth("admin"))
    assert_error(bad, 400, "invalid_input")
    assert_error(await client.patch(url, json={}, headers=auth("admin")), 400, "invalid_input")
    assert (await client.get(url, headers=auth("admin"))).json()["name"] == "Renamed"


async def test_deploy_is_denied_until_the_gates_hold_then_disable(
    client: httpx.AsyncClient, auth: Any, svc: Services, new_agent: Any
) -> None:
    operator, auditor = auth("operator"), auth("auditor")
    agent = await new_agent()
    url = f"/api/v1/agents/{agent['id']}"

    denied = await client.post(f"{url}/deploy", headers=operator)
    error = assert_error(denied, 403, "policy_denied")
    policies = {r["policy"] for r in error["reasons"]}
    assert {"deploy_gates.model_unverified", "deploy_gates.no_active_policy"} <= policies
    assert await listed_outcome(client, auditor, error["decision_id"], "agent.deploy") == "deny"
    after = (await client.get(url, headers=operator)).json()
    assert (after["status"], after["deployment"]) == ("created", None)

    model = (Model.tenant == TENANT) & (Model.name == "gpt-4o")
    await Model.update({Model.verified: True}).where(model)
    try:
        attached = await client.patch(
            url, json={"policy_ids": ["deploy-gates"]}, headers=auth("admin")
        )
        assert attached.status_code == 200, attached.text
        assert attached.json()["policy_ids"] == ["deploy-gates"]
        deployed = await client.post(f"{url}/deploy", headers=operator)
        assert deployed.status_code == 200, deployed.text
        body = deployed.json()
        assert body["status"] == "deployed"
        assert body["deployment"]["id"].startswith("dep_")
        assert await listed_outcome(client, auditor, body["decision_id"], "agent.deploy") == "allow"

        disabled = await client.post(
            f"{url}/disable", json={"reason": "incident 42"}, headers=auth("security")
        )
        assert disabled.status_code == 200, disabled.text
        assert (disabled.json()["status"], disabled.json()["deployment"]) == ("disabled", None)
        assert (
            await listed_outcome(client, auditor, disabled.json()["decision_id"], "agent.disable")
            == "allow"
        )

        again = await client.post(f"{url}/deploy", headers=operator)
        reasons = {r["policy"] for r in assert_error(again, 403, "policy_denied")["reasons"]}
        assert "deploy_gates.agent_disabled" in reasons
    finally:
        await Model.update({Model.verified: False}).where(model)
    row = await Agent.select(Agent.status).where(Agent.id == agent["id"]).first()
    assert row == {"status": "disabled"}
    assert (await svc.log.verify(TENANT, None)).ok


async def test_disable_without_body(client: httpx.AsyncClient, auth: Any, new_agent: Any) -> None:
    agent = await new_agent()
    response = await client.post(f"/api/v1/agents/{agent['id']}/disable", headers=auth("operator"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "disabled"


async def test_secret_config_never_leaves_the_server(
    client: httpx.AsyncClient, auth: Any, svc: Services
) -> None:
    admin = auth("admin")
    seen: list[str] = []

    async def keep(response: httpx.Response, status: int) -> Any:
        assert response.status_code == status, response.text
        seen.append(response.text)
        return response.json()

    created = await keep(await client.post("/api/v1/agents", json=CRM, headers=admin), 201)
    assert created["config"]["crm_api_key"] != CRM_SECRET
    url = f"/api/v1/agents/{created['id']}"
    await keep(await client.get(url, headers=admin), 200)
    await keep(await client.get("/api/v1/agents", params={"limit": 200}, headers=admin), 200)
    rotated = copy.deepcopy(CRM["config"]) | {"crm_api_key": CRM_SECRET + "-rotated"}
    updated = await keep(await client.patch(url, json={"config": rotated}, headers=admin), 200)
    for decision_id in (created["decision_id"], updated["decision_id"]):
        await keep(await client.get(f"/api/v1/decisions/{decision_id}", headers=admin), 200)
    await keep(await client.get("/api/v1/decisions", headers=admin), 200)
    bad = {**CRM, "config": {**CRM["config"], "crm_type": "rolodex"}}
    await keep(await client.post("/api/v1/agents", json=bad, headers=admin), 400)
    empty = {**CRM, "config": {**CRM["config"], "crm_api_key": ""}}
    await keep(await client.post("/api/v1/agents", json=empty, headers=admin), 400)

    assert seen and not [text for text in seen if CRM_SECRET in text]
    stored = await svc.log.get(TENANT, updated["decision_id"])
    assert stored is not None and CRM_SECRET not in str(stored.record)
    # The agent itself keeps the secret: it is needed to reach the CRM.
    row = await Agent.select(Agent.config).where(Agent.id == created["id"]).output(load_json=True)
    assert row[0]["config"]["crm_api_key"] == CRM_SECRET + "-rotated"


async def test_every_decision_is_recorded_and_chained(
    client: httpx.AsyncClient, auth: Any, svc: Services, new_agent: Any
) -> None:
    """A run of gated calls: each decision listed once with the outcome the caller saw."""
    admin = auth("admin")
    outcomes: dict[str, tuple[str, str]] = {}
    agent = await new_agent(DIRECT)
    outcomes[agent["decision_id"]] = ("agent.create", "allow")
    url = f"/api/v1/agents/{agent['id']}"
    for call, action in (
        (client.patch(url, json={"name": "Chained"}, headers=admin), "agent.update"),
        (client.post(f"{url}/deploy", headers=admin), "agent.deploy"),
        (client.post(f"{url}/disable", headers=admin), "agent.disable"),
    ):
        response = await call
        body = response.json()
        outcome = "allow" if response.status_code == 200 else "deny"
        assert response.status_code in (200, 403), response.text
        outcomes[body["decision_id"]] = (action, outcome)
    adhoc = await client.post(
        "/api/v1/decide",
        json={"action": "agent.create", "resource": {"type": "agent", "id": "agt_x"}},
        headers=admin,
    )
    assert adhoc.status_code == 200, adhoc.text
    outcomes[adhoc.json()["decision_id"]] = ("agent.create", adhoc.json()["outcome"])

    for decision_id, (action, outcome) in outcomes.items():
        assert await listed_outcome(client, admin, decision_id, action) == outcome
    verified = await svc.log.verify(TENANT, None)
    assert verified.ok, verified.problem
    assert verified.checked >= len(outcomes)


async def test_unversioned_paths_answer_too(client: httpx.AsyncClient, auth: Any) -> None:
    response = await client.post("/api/agents", json=DIRECT, headers=auth("admin"))
    assert response.status_code == 201, response.text
    fetched = await client.get(f"/api/agents/{response.json()['id']}", headers=auth("viewer"))
    assert fetched.status_code == 200
    assert (await client.get("/api/agent-catalog", headers=auth("viewer"))).status_code == 200
