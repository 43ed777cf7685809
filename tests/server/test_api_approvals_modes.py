"""Policy modes and approvals on SQLite and PostgreSQL.

The seeded models are registered but not verified, so `deploy-gates` denies
every deploy with `deploy_gates.model_unverified`. The mode the agent's
`deploy-gates` attachment carries decides what that deny does: `enforce`
blocks, `warn` proceeds with warnings, `audit` proceeds and only records,
`require_approval` parks the request until an admin or security user decides.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.auth import utcnow
from server.db.tables import Approval, Deployment
from server.state import Services
from tests.server.api_support import OTHER, assert_error

pytestmark = pytest.mark.anyio

UNVERIFIED = "deploy_gates.model_unverified"
GATED = {
    "name": "Gated Agent",
    "model": "model://gpt-4o",
    "policy_ids": ["deploy-gates"],
    "tool_ids": ["web_search"],
}


def policies(items: list[dict[str, Any]]) -> set[str]:
    return {i["policy"] for i in items}


@pytest.fixture
async def agent_id(new_agent: Any) -> str:
    """A new agent of the default tenant with `deploy-gates` attached (enforce)."""
    return str((await new_agent(GATED))["id"])


async def set_mode(
    client: httpx.AsyncClient, auth: Any, agent_id: str, mode: str, bundle: str = "deploy-gates"
) -> None:
    response = await client.put(
        f"/api/v1/agents/{agent_id}/policies/{bundle}", json={"mode": mode}, headers=auth("admin")
    )
    assert response.status_code == 200, response.text
    assert {"bundle": bundle, "mode": mode} in response.json()["policies"]


async def deploy(client: httpx.AsyncClient, auth: Any, agent_id: str) -> httpx.Response:
    headers = auth("operator", subject="usr_olga")
    return await client.post(f"/api/v1/agents/{agent_id}/deploy", headers=headers)


async def record(client: httpx.AsyncClient, auth: Any, decision_id: str) -> Any:
    response = await client.get(f"/api/v1/decisions/{decision_id}", headers=auth("auditor"))
    assert response.status_code == 200, response.text
    return response.json()


async def agent(client: httpx.AsyncClient, auth: Any, agent_id: str) -> Any:
    response = await client.get(f"/api/v1/agents/{agent_id}", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return response.json()


async def approvals(client: httpx.AsyncClient, auth: Any, status: str, **kw: Any) -> list[str]:
    response = await client.get(
        "/api/v1/approvals", params={"status": status}, headers=auth("security", **kw)
    )
    assert response.status_code == 200, response.text
    return [a["id"] for a in response.json()["items"]]


async def park(client: httpx.AsyncClient, auth: Any, agent_id: str) -> dict[str, Any]:
    """Put `deploy-gates` in require_approval and request a deploy: the 202 body."""
    await set_mode(client, auth, agent_id, "require_approval")
    response = await deploy(client, auth, agent_id)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def test_enforce_denies_whatever_other_bundles_are_set_to(
    client: httpx.AsyncClient, auth: Any, agent_id: str
) -> None:
    await set_mode(client, auth, agent_id, "warn", bundle="default-safe")
    pending = await approvals(client, auth, "pending")
    response = await deploy(client, auth, agent_id)
    error = assert_error(response, 403, "policy_denied")
    assert error["outcome"] == "deny"
    assert UNVERIFIED in policies(error["reasons"])
    kept = await record(client, auth, error["decision_id"])
    assert (kept["action"], kept["result"]["outcome"]) == ("agent.deploy", "deny")
    assert kept["result"]["mode"] == "enforce"
    shown = await agent(client, auth, agent_id)
    assert (shown["status"], shown["deployment"]) == ("created", None)
    assert await approvals(client, auth, "pending") == pending


async def test_warn_deploys_and_returns_the_warnings(
    client: httpx.AsyncClient, auth: Any, agent_id: str
) -> None:
    await set_mode(client, auth, agent_id, "warn")
    response = await deploy(client, auth, agent_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["mode"]) == ("deployed", "warn")
    assert body["deployment"] is not None
    assert UNVERIFIED in policies(body["warnings"])
    kept = await record(client, auth, body["decision_id"])
    result = kept["result"]
    assert (result["outcome"], result["mode"], result["verdict_allowed"]) == (
        "allow",
        "warn",
        False,
    )
    assert UNVERIFIED in policies(result["reasons"])


async def test_audit_deploys_quietly_and_records_the_reasons(
    client: httpx.AsyncClient, auth: Any, agent_id: str
) -> None:
    await set_mode(client, auth, agent_id, "audit")
    response = await deploy(client, auth, agent_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["mode"]) == ("deployed", "audit")
    assert UNVERIFIED not in policies(body["warnings"])
    result = (await record(client, auth, body["decision_id"]))["result"]
    assert (result["outcome"], result["mode"], result["allowed"]) == ("allow", "audit", True)
    assert result["verdict_allowed"] is False
    assert UNVERIFIED in policies(result["reasons"])


async def test_require_approval_parks_until_an_admin_approves(
    client: httpx.AsyncClient, auth: Any, svc: Services, agent_id: str
) -> None:
    parked = await park(client, auth, agent_id)
    assert (parked["code"], parked["status"]) == ("pending_approval", "pending_approval")
    approval_id, first = parked["approval_id"], parked["decision_id"]
    assert approval_id.startswith("apr_")
    assert UNVERIFIED in policies(parked["reasons"])
    assert (await record(client, auth, first))["result"]["outcome"] == "pending_approval"
    shown = await agent(client, auth, agent_id)
    assert (shown["status"], shown["deployment"]) == ("created", None)
    assert await Deployment.count().where(Deployment.agent_id == agent_id) == 0

    listed = await client.get(
        "/api/v1/approvals", params={"status": "pending"}, headers=auth("admin")
    )
    [item] = [a for a in listed.json()["items"] if a["id"] == approval_id]
    assert (item["operation"], item["payload"], item["decision_id"]) == (
        "agent.deploy",
        {"agent_id": agent_id},
        first,
    )
    assert item["requested_by"]["subject"] == "usr_olga"
    assert item["status"] == "pending" and item["decided_by"] is None

    url = f"/api/v1/approvals/{approval_id}"
    approve = {"decision": "approve"}
    for role in ("operator", "developer", "viewer", "auditor"):
        assert_error(await client.post(url, json=approve, headers=auth(role)), 403, "forbidden")
    assert approval_id in await approvals(client, auth, "pending")

    response = await client.post(url, json=approve, headers=auth("admin", subject="usr_amy"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["approval"]["status"], body["approval"]["decided_by"]) == ("approved", "usr_amy")
    result = body["result"]
    assert (result["status"], result["mode"]) == ("deployed", "require_approval")
    assert result["decision_id"] != first
    kept = await record(client, auth, result["decision_id"])
    assert kept["approval"] == approval_id
    assert kept["result"]["outcome"] == "allow"
    assert kept["principal"]["id"] == "usr_olga"  # run again as its requester
    assert (await agent(client, auth, agent_id))["deployment"] is not None
    assert approval_id in await approvals(client, auth, "approved")
    assert approval_id not in await approvals(client, auth, "pending")

    for decision in ("approve", "reject"):
        again = await client.post(url, json={"decision": decision}, headers=auth("admin"))
        assert_error(again, 409, "conflict")
    assert await Deployment.count().where(Deployment.agent_id == agent_id) == 1
    assert (await svc.log.verify("default", None)).ok


async def test_a_rejected_request_changes_nothing(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, agent_id: str
) -> None:
    approval_id = (await park(client, auth, agent_id))["approval_id"]
    before = await snapshot()
    url = f"/api/v1/approvals/{approval_id}"
    response = await client.post(url, json={"decision": "reject"}, headers=auth("security"))
    assert response.status_code == 200, response.text
    assert response.json()["approval"]["status"] == "rejected"
    assert response.json()["result"] is None
    assert await snapshot() == before
    shown = await agent(client, auth, agent_id)
    assert (shown["status"], shown["deployment"]) == ("created", None)
    assert approval_id in await approvals(client, auth, "rejected")
    assert_error(
        await client.post(url, json={"decision": "approve"}, headers=auth("admin")), 409, "conflict"
    )
    assert (await agent(client, auth, agent_id))["deployment"] is None


async def test_another_tenant_can_neither_see_nor_decide_an_approval(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, agent_id: str
) -> None:
    approval_id = (await park(client, auth, agent_id))["approval_id"]
    assert approval_id not in await approvals(client, auth, "pending", tenant=OTHER)
    before = await snapshot()
    for decision in ("approve", "reject"):
        response = await client.post(
            f"/api/v1/approvals/{approval_id}",
            json={"decision": decision},
            headers=auth("admin", tenant=OTHER),
        )
        assert_error(response, 404, "not_found")
    assert_error(
        await client.post(
            "/api/v1/approvals/apr_missing", json={"decision": "approve"}, headers=auth("admin")
        ),
        404,
        "not_found",
    )
    assert await snapshot() == before
    row = await Approval.select(Approval.status).where(Approval.id == approval_id).first()
    assert row == {"status": "pending"}


async def test_an_approval_is_evaluated_again_and_an_enforcing_deny_still_wins(
    client: httpx.AsyncClient, auth: Any, agent_id: str
) -> None:
    """Between parking and approving, the agent's bundle went back to enforce."""
    approval_id = (await park(client, auth, agent_id))["approval_id"]
    await set_mode(client, auth, agent_id, "enforce")
    response = await client.post(
        f"/api/v1/approvals/{approval_id}", json={"decision": "approve"}, headers=auth("admin")
    )
    error = assert_error(response, 403, "policy_denied")
    assert UNVERIFIED in policies(error["reasons"])
    kept = await record(client, auth, error["decision_id"])
    assert (kept["approval"], kept["result"]["outcome"]) == (approval_id, "deny")
    assert (await agent(client, auth, agent_id))["deployment"] is None
    row = await Approval.select(Approval.status).where(Approval.id == approval_id).first()
    assert row == {"status": "failed"}, "the approval says its operation was refused"


async def test_nobody_approves_their_own_request_and_services_do_not_approve(
    client: httpx.AsyncClient, auth: Any, svc: Services, agent_id: str
) -> None:
    approval_id = (await park(client, auth, agent_id))["approval_id"]
    url = f"/api/v1/approvals/{approval_id}"
    own = await client.post(
        url, json={"decision": "approve"}, headers=auth("admin", subject="usr_olga")
    )
    assert_error(own, 403, "forbidden")
    service = svc.tokens.issue(
        tenant="default", subject="bot", roles=["admin"], now=utcnow(), kind="service"
    )
    by_service = await client.post(
        url, json={"decision": "approve"}, headers={"Authorization": f"Bearer {service}"}
    )
    assert_error(by_service, 403, "forbidden")
    row = await Approval.select(Approval.status).where(Approval.id == approval_id).first()
    assert row == {"status": "pending"}
    assert (await agent(client, auth, agent_id))["deployment"] is None


async def test_parked_arguments_are_shown_with_secrets_masked(
    client: httpx.AsyncClient, auth: Any, new_agent: Any
) -> None:
    crm = await new_agent(
        {
            "template_id": "crewai-crm",
            "name": "CRM Crew",
            "policy_ids": ["default-safe"],
            "config": {
                "crm_type": "hubspot",
                "crm_api_key": "OLD-crm-secret-000",
                "llm_profile": "openai",
            },
        }
    )
    await set_mode(client, auth, crm["id"], "require_approval", bundle="default-safe")
    secret = "NEW-crm-SECRET-123456"
    # a blank name is what default-safe denies here; its require_approval mode parks the update
    changes = {
        "name": " ",
        "config": {"crm_type": "hubspot", "crm_api_key": secret, "llm_profile": "openai"},
    }

    parked = await client.patch(
        f"/api/v1/agents/{crm['id']}", json=changes, headers=auth("developer")
    )
    assert parked.status_code == 202, parked.text
    listed = await client.get(
        "/api/v1/approvals", params={"status": "pending"}, headers=auth("security")
    )
    assert listed.status_code == 200
    assert secret not in listed.text
    mine = [a for a in listed.json()["items"] if a["id"] == parked.json()["approval_id"]]
    assert mine[0]["payload"]["changes"]["config"]["crm_api_key"] == "***"


async def test_a_require_approval_obligation_parks_an_allowed_deploy(
    client: httpx.AsyncClient, auth: Any, new_agent: Any
) -> None:
    # gpt-4.5 is seeded with admin_approval_required: deploy-gates allows the deploy (in
    # warn mode, the unverified model is only a warning) with a require_approval
    # obligation. Unhonoured, that obligation would be an allow by omission.
    agent_id = str((await new_agent({**GATED, "model": "model://gpt-4.5"}))["id"])
    await set_mode(client, auth, agent_id, "warn")
    response = await deploy(client, auth, agent_id)
    assert response.status_code == 202, response.text
    parked = response.json()
    assert parked["status"] == "pending_approval"
    first = await record(client, auth, parked["decision_id"])
    assert first["result"]["outcome"] == "pending_approval"
    assert {"type": "require_approval", "role": "admin"} in first["result"]["obligations"]
    assert (await agent(client, auth, agent_id))["deployment"] is None

    url = f"/api/v1/approvals/{parked['approval_id']}"
    approved = await client.post(url, json={"decision": "approve"}, headers=auth("admin"))
    assert approved.status_code == 200, approved.text
    assert approved.json()["result"]["status"] == "deployed"
    again = await record(client, auth, approved.json()["result"]["decision_id"])
    assert (again["result"]["outcome"], again["approval"]) == ("allow", parked["approval_id"])
