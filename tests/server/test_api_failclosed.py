"""Fail-closed: a broken engine denies (and the denial is recorded); a log that cannot be
written refuses the request, and then nothing changed at all.

The decision table is made unwritable the way an operator's mistake would (a
trigger in the database refuses inserts, on SQLite and PostgreSQL alike) and by
making the log's ``append`` raise. A change that fails after its decision was
appended takes the decision with it (one transaction), and a stored bundle that
no longer loads stops every gated change.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from piccolo.engine.sqlite import SQLiteEngine

from engine import EngineVerdict, PolicySet
from server.auth import utcnow
from server.db.tables import Bundle, ChainHead, Decision, Model
from server.state import Services
from tests.server.api_support import GATED, TENANT, Endpoint, assert_error, call

pytestmark = pytest.mark.anyio

MUTATING = tuple(e for e in GATED if e.mutates)
ADHOC = tuple(e for e in GATED if not e.mutates)


class Exploding:
    """An engine that takes part in every decision and fails every time."""

    engine_name = "exploding"

    def participates(self, action: str) -> bool:
        return True

    def evaluate(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        raise RuntimeError("engine exploded")


@contextmanager
def broken_engine(svc: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = svc.policies.active

    async def active(tenant: str) -> PolicySet:
        policy_set = await real(tenant)
        return replace(policy_set, evaluators=(Exploding(), *policy_set.evaluators))

    with monkeypatch.context() as patch:
        patch.setattr(svc.policies, "active", active)
        yield


async def _state(client: httpx.AsyncClient, auth: Any, agent_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/agents/{agent_id}", headers=auth("admin"))
    assert response.status_code == 200, response.text
    return dict(response.json())


def _body(endpoint: Endpoint) -> Any:
    # Create with a fresh agent name so a wrongly applied change would be visible.
    return (
        {"name": "Must Not Exist", "model": "model://gpt-4o"}
        if endpoint.name == "agents.create"
        else None
    )


@pytest.mark.parametrize("endpoint", MUTATING, ids=lambda e: e.name)
async def test_engine_error_denies_and_is_recorded(
    client: httpx.AsyncClient,
    auth: Any,
    svc: Services,
    snapshot: Any,
    monkeypatch: pytest.MonkeyPatch,
    target: dict[str, str],
    endpoint: Endpoint,
) -> None:
    before_view = await _state(client, auth, target["agent_id"])
    before = await snapshot()
    with broken_engine(svc, monkeypatch):
        response = await call(client, endpoint, auth("admin"), body=_body(endpoint), **target)
    error = assert_error(response, 403, "policy_denied")
    assert any(r["policy"] == "engine_failure" for r in error["reasons"]), error

    record = await client.get(f"/api/v1/decisions/{error['decision_id']}", headers=auth("admin"))
    assert record.status_code == 200, record.text
    result = record.json()["result"]
    assert (result["outcome"], result["allowed"]) == ("deny", False)
    assert any("engine exploded" in e["message"] for e in result["errors"]), result

    after = await snapshot()
    assert after.agents == before.agents
    assert after.decisions[TENANT] == before.decisions[TENANT] + 1  # the denial, nothing else
    assert await _state(client, auth, target["agent_id"]) == before_view
    assert (await svc.log.verify(TENANT, None)).ok


@pytest.mark.parametrize("endpoint", ADHOC, ids=lambda e: e.name)
async def test_engine_error_in_an_adhoc_decision_denies(
    client: httpx.AsyncClient,
    auth: Any,
    svc: Services,
    snapshot: Any,
    monkeypatch: pytest.MonkeyPatch,
    endpoint: Endpoint,
) -> None:
    before = await snapshot()
    with broken_engine(svc, monkeypatch):
        response = await call(client, endpoint, auth("admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    for decision in body.get("decisions", [body]):
        assert (decision["allowed"], decision["outcome"]) == (False, "deny")
        assert any(e["code"] == "engine_failure" for e in decision["errors"]), decision
        stored = await svc.log.get(TENANT, decision["decision_id"])
        assert stored is not None and stored.outcome == "deny"
    assert (await snapshot()).decisions[TENANT] == before.decisions[TENANT] + 1


@asynccontextmanager
async def unloadable_bundle(svc: Services) -> AsyncIterator[None]:
    """An active bundle of the tenant whose stored archive is not a bundle (a damaged row)."""
    row = Bundle(
        id="bnd_damaged",
        tenant=TENANT,
        name="damaged",
        revision="1",
        digest="0" * 64,
        status="active",
        signed_by="nobody",
        archive=base64.b64encode(b"not a gzipped tarball").decode(),
        created_at=utcnow(),
    )
    await Bundle.insert(row)
    svc.policies.invalidate(TENANT)  # seen at once, not after the row cache's TTL
    try:
        yield
    finally:
        await Bundle.delete().where(Bundle.id == "bnd_damaged")
        svc.policies.invalidate(TENANT)


@pytest.mark.parametrize("endpoint", GATED, ids=lambda e: e.name)
async def test_a_policy_set_that_cannot_load_changes_nothing(
    client: httpx.AsyncClient,
    auth: Any,
    svc: Services,
    snapshot: Any,
    target: dict[str, str],
    endpoint: Endpoint,
) -> None:
    """No policy set, no change: the request is denied, the deny is recorded and names the cause."""
    before_view = await _state(client, auth, target["agent_id"])
    before = await snapshot()
    async with unloadable_bundle(svc):
        response = await call(client, endpoint, auth("admin"), body=_body(endpoint), **target)
    body = response.json()
    if endpoint.name.startswith("decide"):
        decisions = body.get("decisions", [body])
        assert response.status_code == 200, response.text
        assert all(d["allowed"] is False for d in decisions)
        assert all(e["code"] == "policy_set_unavailable" for d in decisions for e in d["errors"])
    else:
        assert response.status_code == 403, response.text
        assert body["code"] == "policy_denied"
        assert [r["policy"] for r in body["reasons"]] == ["policy_set_unavailable"]
    after = await snapshot()
    assert after.agents == before.agents
    assert after.decisions[TENANT] - before.decisions[TENANT] >= 1, "the deny is recorded"
    assert await _state(client, auth, target["agent_id"]) == before_view


async def _ddl(svc: Services, *statements: str) -> None:
    for statement in statements:
        await Decision.raw(statement)


@asynccontextmanager
async def refusing_inserts(svc: Services, table: str) -> AsyncIterator[None]:
    """A trigger that makes every INSERT into ``table`` fail, removed afterwards."""
    name = f"aion_test_refuse_{table}"
    if isinstance(svc.db, SQLiteEngine):
        await _ddl(
            svc,
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is read-only'); END",
        )
        drop = [f"DROP TRIGGER {name}"]
    else:
        await _ddl(
            svc,
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{table} is read-only'; END $$",
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()",
        )
        drop = [f"DROP TRIGGER {name} ON {table}", f"DROP FUNCTION {name}()"]
    try:
        yield
    finally:
        await _ddl(svc, *drop)


@asynccontextmanager
async def append_raises(svc: Services, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    async def append(tenant: str, *_records: Any) -> Any:
        raise OSError("decision log volume is read-only")

    with monkeypatch.context() as patch:
        patch.setattr(svc.log, "append", append)
        patch.setattr(svc.log, "append_many", append)
        yield


async def _head(tenant: str) -> Any:
    return await ChainHead.select(ChainHead.seq, ChainHead.hash).where(ChainHead.tenant == tenant)


UNWRITABLE: dict[str, Callable[[Services, pytest.MonkeyPatch], Any]] = {
    "trigger": lambda svc, _: refusing_inserts(svc, "decisions"),
    "append raises": append_raises,
}


@pytest.mark.parametrize("how", list(UNWRITABLE))
@pytest.mark.parametrize("endpoint", GATED, ids=lambda e: e.name)
async def test_unwritable_decision_log_refuses_and_changes_nothing(
    client: httpx.AsyncClient,
    auth: Any,
    svc: Services,
    snapshot: Any,
    monkeypatch: pytest.MonkeyPatch,
    target: dict[str, str],
    endpoint: Endpoint,
    how: str,
) -> None:
    before_view = await _state(client, auth, target["agent_id"])
    before, head = await snapshot(), await _head(TENANT)
    async with UNWRITABLE[how](svc, monkeypatch):
        response = await call(client, endpoint, auth("admin"), body=_body(endpoint), **target)
    assert_error(response, 503, "unavailable")
    assert await snapshot() == before
    assert await _head(TENANT) == head
    assert await _state(client, auth, target["agent_id"]) == before_view
    assert (await svc.log.verify(TENANT, None)).ok


@pytest.fixture
async def deployable(client: httpx.AsyncClient, auth: Any) -> AsyncIterator[str]:
    """An agent every deploy gate lets through (its model verified for the test)."""
    model = (Model.tenant == TENANT) & (Model.name == "gpt-4o")
    body = {"name": "Deployable", "model": "model://gpt-4o", "policy_ids": ["deploy-gates"]}
    created = await client.post("/api/v1/agents", json=body, headers=auth("admin"))
    assert created.status_code == 201, created.text
    await Model.update({Model.verified: True}).where(model)
    try:
        yield created.json()["id"]
    finally:
        await Model.update({Model.verified: False}).where(model)


async def test_a_failed_create_takes_its_decision_with_it(
    client: httpx.AsyncClient, auth: Any, svc: Services, snapshot: Any
) -> None:
    """The decision row and the change commit together: no allow without its change."""
    before, head = await snapshot(), await _head(TENANT)
    async with refusing_inserts(svc, "agents"):
        response = await client.post(
            "/api/v1/agents", json=_body(MUTATING[0]), headers=auth("admin")
        )
    assert_error(response, 503, "unavailable")
    assert await snapshot() == before
    assert await _head(TENANT) == head


async def test_a_failed_deploy_takes_its_decision_with_it(
    client: httpx.AsyncClient, auth: Any, svc: Services, snapshot: Any, deployable: str
) -> None:
    url = f"/api/v1/agents/{deployable}"
    before_view = (await client.get(url, headers=auth("admin"))).json()
    before, head = await snapshot(), await _head(TENANT)
    async with refusing_inserts(svc, "deployments"):
        response = await client.post(f"{url}/deploy", headers=auth("operator"))
    assert_error(response, 503, "unavailable")
    assert await snapshot() == before
    assert await _head(TENANT) == head
    assert (await client.get(url, headers=auth("admin"))).json() == before_view
    deployed = await client.post(f"{url}/deploy", headers=auth("operator"))  # and it can, after
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["status"] == "deployed"
