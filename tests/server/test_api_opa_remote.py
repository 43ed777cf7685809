"""A tenant configured ``rego_evaluator: opa`` gets its Rego decided by the OPA sidecar
(here the in-memory twin), recorded with the usual shape; a sidecar that is down, or not
configured at all, denies with the cause and never raises."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from engine import InMemoryOpa, OpaAnswer
from engine.opa_remote import OpaUnreachable
from server.errors import InvalidInputError
from server.policies import OpaSetup
from server.state import Services
from server.tenants import update_settings
from tests.server.api_support import DECIDE_BODY, TENANT

pytestmark = pytest.mark.anyio

SHIPPED_REVISION = "2026.11.27.1"
SHIPPED = ("default-safe", "deploy-gates", "model-privacy", "registry-admission")
SERVED = dict.fromkeys(SHIPPED, SHIPPED_REVISION)


def _sidecar(**kw: Any) -> InMemoryOpa:
    """A twin that denies every `agent.create` with one reason object."""
    documents = {
        "aion/agent/create": {
            "deny": [{"id": "sidecar.says_no", "msg": "the sidecar says no"}],
            "warn": ["sidecar warning"],
            "obligations": [],
        }
    }
    return InMemoryOpa(documents=documents, revisions=dict(SERVED), **kw)


async def _remote_tenant(svc: Services, tenant: str) -> None:
    await update_settings(tenant, {"rego_evaluator": "opa"})
    svc.tenants.forget(tenant)


async def _decide(client: httpx.AsyncClient, auth: Any, tenant: str) -> dict[str, Any]:
    answer = await client.post(
        "/api/v1/decide", json=DECIDE_BODY, headers=auth("admin", tenant=tenant)
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _recorded(client: httpx.AsyncClient, auth: Any, tenant: str, decision_id: str) -> Any:
    answer = await client.get(
        f"/api/v1/decisions/{decision_id}", headers=auth("auditor", tenant=tenant)
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_remote_tenant_is_decided_by_the_sidecar_and_recorded(
    svc: Services,
    client: httpx.AsyncClient,
    auth: Any,
    fresh_tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sidecar = _sidecar()
    monkeypatch.setattr(svc.policies, "opa", OpaSetup(sidecar, "embedded", 1.0, fresh_tenant))
    await _remote_tenant(svc, fresh_tenant)

    decision = await _decide(client, auth, fresh_tenant)
    assert decision["allowed"] is False and decision["outcome"] == "deny"
    assert [(r["engine"], r["policy"], r["message"], r["bundle"]) for r in decision["reasons"]] == [
        ("opa", "sidecar.says_no", "the sidecar says no", "default-safe")
    ]
    # Only rules our compiled copy defines are read: the shipped package has no `warn`.
    assert decision["warnings"] == []
    assert decision["errors"] == []
    assert "opa" in [e["engine"] for e in decision["engines"] if e["participated"]]
    assert "rego" not in [e["engine"] for e in decision["engines"]]
    assert decision["revisions"]["default-safe"] == SHIPPED_REVISION
    # The sidecar got the request as `input`, for the action's package.
    [(path, doc)] = sidecar.queries
    assert path == "aion/agent/create"
    assert doc["principal"]["tenant"] == fresh_tenant
    assert doc["resource"]["id"] == DECIDE_BODY["resource"]["id"]

    record = await _recorded(client, auth, fresh_tenant, decision["decision_id"])
    assert record["result"]["allowed"] is False
    assert record["result"]["reasons"] == decision["reasons"]
    assert record["engines"] == decision["engines"]


async def test_other_tenants_stay_in_process(
    svc: Services,
    client: httpx.AsyncClient,
    auth: Any,
    fresh_tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sidecar = _sidecar()
    monkeypatch.setattr(svc.policies, "opa", OpaSetup(sidecar, "embedded", 1.0, fresh_tenant))
    await _remote_tenant(svc, fresh_tenant)
    decision = await _decide(client, auth, TENANT)
    assert "rego" in [e["engine"] for e in decision["engines"] if e["participated"]]
    assert "opa" not in [e["engine"] for e in decision["engines"]]
    assert {r["engine"] for r in decision["reasons"]} == {"rego"}  # DECIDE_BODY names no model
    assert sidecar.queries == []


async def test_a_sidecar_that_is_down_denies_with_the_cause(
    svc: Services,
    client: httpx.AsyncClient,
    auth: Any,
    fresh_tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sidecar = _sidecar(responder=lambda path, doc: OpaUnreachable("connection refused"))
    monkeypatch.setattr(svc.policies, "opa", OpaSetup(sidecar, "embedded", 1.0, fresh_tenant))
    await _remote_tenant(svc, fresh_tenant)

    decision = await _decide(client, auth, fresh_tenant)
    assert decision["allowed"] is False and decision["outcome"] == "deny"
    assert [e["code"] for e in decision["errors"]] == ["opa_unreachable"]
    assert "connection refused" in decision["errors"][0]["message"]
    record = await _recorded(client, auth, fresh_tenant, decision["decision_id"])
    assert [e["code"] for e in record["result"]["errors"]] == ["opa_unreachable"]

    # A gated change is refused the same way: 403, the cause named, nothing created.
    created = await client.post(
        "/api/v1/agents",
        json={"name": "Blocked", "model": "model://gpt-4o", "tool_ids": []},
        headers=auth("admin", tenant=fresh_tenant),
    )
    assert created.status_code == 403, created.text
    assert created.json()["code"] == "policy_denied"
    assert "opa_unreachable" in [r["policy"] for r in created.json()["reasons"]]


async def test_a_sidecar_answering_500_denies_with_the_status(
    svc: Services,
    client: httpx.AsyncClient,
    auth: Any,
    fresh_tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sidecar = _sidecar(responder=lambda path, doc: OpaAnswer(500, detail="internal_error"))
    monkeypatch.setattr(svc.policies, "opa", OpaSetup(sidecar, "embedded", 1.0, fresh_tenant))
    await _remote_tenant(svc, fresh_tenant)
    decision = await _decide(client, auth, fresh_tenant)
    assert [e["code"] for e in decision["errors"]] == ["opa_http_error"]
    assert "HTTP 500" in decision["errors"][0]["message"]


async def test_a_remote_tenant_without_a_sidecar_url_denies_named(
    svc: Services, client: httpx.AsyncClient, auth: Any, fresh_tenant: str
) -> None:
    assert svc.policies.opa.querier is None  # the test settings name no AION_OPA_URL
    await _remote_tenant(svc, fresh_tenant)
    decision = await _decide(client, auth, fresh_tenant)
    assert decision["allowed"] is False
    assert [e["code"] for e in decision["errors"]] == ["opa_not_configured"]


async def test_the_server_default_sends_every_tenant_to_the_sidecar(
    svc: Services,
    client: httpx.AsyncClient,
    auth: Any,
    fresh_tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sidecar = _sidecar()
    monkeypatch.setattr(svc.policies, "opa", OpaSetup(sidecar, "opa", 1.0, fresh_tenant))
    decision = await _decide(client, auth, fresh_tenant)
    assert [r["engine"] for r in decision["reasons"]] == ["opa"]
    # ... unless a tenant's own setting keeps it in process.
    await update_settings(fresh_tenant, {"rego_evaluator": "embedded"})
    svc.tenants.forget(fresh_tenant)
    decision = await _decide(client, auth, fresh_tenant)
    assert {r["engine"] for r in decision["reasons"]} == {"rego"}
    assert len(sidecar.queries) == 1


async def test_tenant_settings_are_checked_when_written(fresh_tenant: str, svc: Services) -> None:
    with pytest.raises(InvalidInputError, match="rego_evaluator"):
        await update_settings(fresh_tenant, {"rego_evaluator": "wasm"})
    with pytest.raises(InvalidInputError, match="cannot be set here"):
        await update_settings(fresh_tenant, {"max_concurrent_runs": "3"})
    assert await update_settings(fresh_tenant, {"rego_evaluator": "opa"}) == {
        "rego_evaluator": "opa"
    }
    assert await update_settings(fresh_tenant, {"rego_evaluator": None}) == {}


@pytest.mark.parametrize("serves", ["another-tenant", ""], ids=["other-tenant", "unset"])
async def test_a_sidecar_decides_only_for_the_tenant_whose_bundles_it_pulls(
    svc: Services,
    client: httpx.AsyncClient,
    auth: Any,
    fresh_tenant: str,
    monkeypatch: pytest.MonkeyPatch,
    serves: str,
) -> None:
    # Revision labels are each tenant's own: a sidecar pulling another tenant's bundles
    # could show the same names and labels with other content.
    sidecar = _sidecar()
    monkeypatch.setattr(svc.policies, "opa", OpaSetup(sidecar, "opa", 1.0, serves))
    decision = await _decide(client, auth, fresh_tenant)
    assert decision["allowed"] is False
    assert [e["code"] for e in decision["errors"]] == ["opa_wrong_tenant"]
    assert "AION_OPA_TENANT" in decision["errors"][0]["message"]
    assert sidecar.queries == []
