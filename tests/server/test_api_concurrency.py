"""A change never rides on a decision that did not see the state it changes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.auth import utcnow
from server.db.tables import Agent, Decision
from server.state import Services
from tests.server.api_support import assert_error

pytestmark = pytest.mark.anyio


async def test_a_concurrent_change_between_decision_and_commit_is_409(
    client: httpx.AsyncClient,
    auth: Any,
    svc: Services,
    new_agent: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = await new_agent(
        {"name": "Racer", "model": "model://gpt-4o", "tool_ids": ["web_search"]}
    )
    evaluate = svc.gate.evaluate

    async def evaluate_then_race(*args: Any, **kwargs: Any) -> Any:
        decided = await evaluate(*args, **kwargs)
        # Another request commits a change to the agent after this one was decided.
        await Agent.update({Agent.name: "Changed meanwhile", Agent.updated_at: utcnow()}).where(
            Agent.id == agent["id"]
        )
        return decided

    before = await Decision.count()
    monkeypatch.setattr(svc.gate, "evaluate", evaluate_then_race)
    response = await client.post(
        f"/api/v1/agents/{agent['id']}/disable", json={"reason": "race"}, headers=auth("admin")
    )
    monkeypatch.undo()
    assert_error(response, 409, "conflict")
    row = await Agent.select(Agent.status, Agent.name).where(Agent.id == agent["id"]).first()
    assert row == {"status": "created", "name": "Changed meanwhile"}, "the disable was not applied"
    assert await Decision.count() == before, (
        "the decision went with the change it would have allowed"
    )
    again = await client.post(
        f"/api/v1/agents/{agent['id']}/disable", json={"reason": "retry"}, headers=auth("admin")
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "disabled"
