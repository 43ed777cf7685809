"""Shared pieces of the task, tool-call and event API tests: a deployed agent, submits, and
runs started and finished through the real run store (as a worker would)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from kernel import Artifact as Output
from kernel import NextStep, RunOutcome, RunResult, TaskState
from server.db.tables import Model
from server.dispatch.store import PiccoloRunStore
from tests.server.api_support import TENANT

#: A task the shipped `model-privacy` bundle admits on a `gpt-4o` agent.
SUMMARY = {"input": {"text": "quarterly report"}, "intent": "summarize"}
ALLOWED_SHELL = ("ops.shell", {"command": "ls -la /data/reports"})
TOOLS = ["ops.shell", "file.read", "http.get", "web_search"]


async def deployed_agent(
    client: httpx.AsyncClient, auth: Any, tenant: str = TENANT, tools: list[str] | None = None
) -> str:
    """A deployed `gpt-4o` agent of ``tenant`` (its model verified), bound to ``tools``."""
    body = {
        "name": "Task Runner",
        "model": "model://gpt-4o",
        "policy_ids": ["deploy-gates"],
        "tool_ids": TOOLS if tools is None else tools,
    }
    created = await client.post("/api/v1/agents", json=body, headers=auth("admin", tenant=tenant))
    assert created.status_code == 201, created.text
    agent_id = str(created.json()["id"])
    await Model.update({Model.verified: True}).where(
        (Model.tenant == tenant) & (Model.name == "gpt-4o")
    )
    deployed = await client.post(
        f"/api/v1/agents/{agent_id}/deploy", headers=auth("operator", tenant=tenant)
    )
    assert deployed.status_code == 200, deployed.text
    return agent_id


async def submit(
    client: httpx.AsyncClient,
    auth: Any,
    agent_id: str,
    tenant: str = TENANT,
    **body: Any,
) -> dict[str, Any]:
    """Submit an admitted task; its 202 body."""
    response = await client.post(
        f"/api/v1/agents/{agent_id}/tasks",
        json={**SUMMARY, **body},
        headers=auth("operator", tenant=tenant),
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


async def start_run(task_id: str) -> tuple[str, str]:
    """Start the task's next attempt as a worker would: (run id, run token)."""
    claim = await PiccoloRunStore().claim(task_id, "test-worker", time.time(), 60.0)
    assert claim is not None, f"task {task_id} could not be claimed"
    return claim.run_id, claim.run_token


async def finish_run(run_id: str, outputs: dict[str, bytes] | None = None) -> None:
    """End a run successfully with ``outputs`` as its artifacts."""
    result = RunResult(
        outcome=RunOutcome.SUCCEEDED,
        outputs=tuple(Output.of(n, d) for n, d in (outputs or {}).items()),
        exit_code=0,
    )
    done = await PiccoloRunStore().finish(
        run_id, result, time.time(), NextStep(state=TaskState.SUCCEEDED)
    )
    assert done is not None and done.applied
