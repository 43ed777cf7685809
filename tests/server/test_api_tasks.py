"""Tasks: submitted through `task.submit`, stored with their outbox row and decision in one
transaction, read, listed, cancelled; their runs and artifacts; tenancy and roles."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from server.db.tables import Decision, Event, Outbox, Task
from server.state import Services
from tests.server.api_support import OTHER, TENANT, assert_error
from tests.server.task_support import SUMMARY, deployed_agent, finish_run, start_run, submit
from tests.server.test_api_failclosed import UNWRITABLE, refusing_inserts

pytestmark = pytest.mark.anyio


@pytest.fixture
async def agent(client: httpx.AsyncClient, auth: Any) -> str:
    return await deployed_agent(client, auth)


async def _rows(task_id: str | None = None) -> tuple[int, int, int]:
    """(tasks, outbox rows, decisions) of the default tenant (of one task, when given)."""
    tasks = Task.count().where(Task.tenant == TENANT)
    outbox = Outbox.count().where(Outbox.tenant == TENANT)
    if task_id:
        tasks, outbox = tasks.where(Task.id == task_id), outbox.where(Outbox.task_id == task_id)
    return await tasks, await outbox, await Decision.count().where(Decision.tenant == TENANT)


def _url(agent_id: str) -> str:
    return f"/api/v1/agents/{agent_id}/tasks"


async def test_submit_commits_task_outbox_event_and_decision(
    client: httpx.AsyncClient,
    auth: Any,
    agent: str,
    svc: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kicks: list[bool] = []
    monkeypatch.setattr(svc.dispatch, "kick", lambda: kicks.append(True))
    body = await submit(client, auth, agent, priority="high", budget_usd=0.05, expires_in_s=60)
    assert kicks == [True]
    assert body["status"] == "queued" and body["task_id"].startswith("tsk_")
    assert body["id"] == body["task_id"] and body["priority"] == "high"
    task = await Task.select().where(Task.id == body["task_id"]).output(load_json=True).first()
    assert task is not None
    assert (task["tenant"], task["agent_id"], task["status"]) == (TENANT, agent, "queued")
    assert task["decision_id"] == body["decision_id"] and task["submitted_by"] == "usr_test"
    # Who submitted, as the admission re-check will decide again: roles and kind too.
    assert (task["submitted_roles"], task["submitted_kind"]) == (["operator"], "user")
    assert task["budget_usd"] == 0.05 and task["input"] == SUMMARY["input"]
    assert task["not_after"] == pytest.approx(task["submitted_at"] + 60)
    outbox = await Outbox.select().where(Outbox.task_id == body["task_id"]).first()
    assert outbox is not None and outbox["id"] == f"obx_{body['task_id']}"
    assert outbox["sent_at"] is None
    events = await Event.select().where(Event.subject == body["task_id"])
    assert [e["kind"] for e in events] == ["queued"] and events[0]["tenant"] == TENANT

    record = await client.get(f"/api/v1/decisions/{body['decision_id']}", headers=auth("admin"))
    assert record.status_code == 200, record.text
    doc = record.json()
    assert (doc["action"], doc["result"]["outcome"]) == ("task.submit", "allow")
    assert doc["input"]["context"] == {
        "intent": "summarize",
        "model": {"id": "gpt-4o", "privacy": "allow-api"},
        "budget_usd": 0.05,
    }
    assert doc["input"]["resource"]["attributes"]["status"] == "deployed"
    assert json.loads(task["admitted_revision"]) == doc["revisions"]


async def test_budget_is_in_the_request_only_when_given(
    client: httpx.AsyncClient, auth: Any, agent: str
) -> None:
    body = await submit(client, auth, agent)
    record = await client.get(f"/api/v1/decisions/{body['decision_id']}", headers=auth("admin"))
    assert "budget_usd" not in record.json()["input"]["context"]
    assert body["budget_usd"] == 0.02 and body["timeout_s"] == 300 and body["max_attempts"] == 3


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"intent": "invoice_ocr"}, "model_privacy.privacy_exceeded"),
        ({"budget_usd": 0.5}, "model_privacy.budget_exceeded"),
        ({"budget_usd": -1}, "model_privacy.budget_invalid"),
        ({"intent": "unknown"}, "model_privacy.intent_unknown"),
    ],
)
async def test_a_denied_submit_stores_nothing_but_its_decision(
    client: httpx.AsyncClient, auth: Any, agent: str, change: dict[str, Any], reason: str
) -> None:
    before = await _rows()
    response = await client.post(_url(agent), json={**SUMMARY, **change}, headers=auth("operator"))
    error = assert_error(response, 403, "policy_denied")
    assert reason in [r["policy"] for r in error["reasons"]], error
    tasks, outbox, decisions = await _rows()
    assert (tasks, outbox, decisions) == (before[0], before[1], before[2] + 1)


async def test_submit_to_an_agent_not_deployed_or_disabled_is_denied(
    client: httpx.AsyncClient, auth: Any, agent: str
) -> None:
    created = await client.post(
        "/api/v1/agents", json={"name": "Draft", "model": "model://gpt-4o"}, headers=auth("admin")
    )
    disabled = await client.post(f"/api/v1/agents/{agent}/disable", headers=auth("operator"))
    assert disabled.status_code == 200, disabled.text
    before = await _rows()
    for agent_id in (created.json()["id"], agent):
        response = await client.post(_url(agent_id), json=SUMMARY, headers=auth("operator"))
        error = assert_error(response, 403, "policy_denied")
        assert "model_privacy.agent_not_deployed" in [r["policy"] for r in error["reasons"]]
    assert (await _rows())[:2] == before[:2]


async def test_unknown_or_foreign_agent_is_404(
    client: httpx.AsyncClient, auth: Any, agent: str
) -> None:
    before = await _rows()
    for headers, agent_id in (
        (auth("operator"), "agt_missing"),
        (auth("admin", tenant=OTHER), agent),
    ):
        response = await client.post(_url(agent_id), json=SUMMARY, headers=headers)
        assert_error(response, 404, "not_found")
    assert await _rows() == before


@pytest.mark.parametrize(
    "body",
    [
        {**SUMMARY, "id": "tsk_mine"},
        {**SUMMARY, "status": "succeeded"},
        {**SUMMARY, "tenant": OTHER},
        {**SUMMARY, "attempts": 9},
        {"intent": "summarize"},
        {**SUMMARY, "priority": "urgent"},
        {**SUMMARY, "timeout_s": 0},
        {**SUMMARY, "timeout_s": 86401},
        {**SUMMARY, "max_attempts": 11},
        {**SUMMARY, "budget_usd": None},
        {**SUMMARY, "expires_in_s": -5},
        {**SUMMARY, "input": "not an object"},
    ],
    ids=lambda b: ",".join(sorted(set(b) ^ set(SUMMARY))) or json.dumps(b)[:30],
)
async def test_bad_body_or_mass_assignment_is_400(
    client: httpx.AsyncClient, auth: Any, agent: str, body: dict[str, Any]
) -> None:
    before = await _rows()
    assert_error(
        await client.post(_url(agent), json=body, headers=auth("operator")), 400, "invalid_input"
    )
    assert await _rows() == before


@pytest.mark.parametrize("role", ["viewer", "auditor", "security", "platform-admin"])
async def test_roles_that_may_not_submit(
    client: httpx.AsyncClient, auth: Any, agent: str, role: str
) -> None:
    before = await _rows()
    assert_error(await client.post(_url(agent), json=SUMMARY, headers=auth(role)), 403, "forbidden")
    assert await _rows() == before


async def test_developers_and_services_may_submit(
    client: httpx.AsyncClient, auth: Any, token: Any, agent: str
) -> None:
    dev = await client.post(_url(agent), json=SUMMARY, headers=auth("developer"))
    assert dev.status_code == 202, dev.text
    service = {"Authorization": f"Bearer {token(subject='svc_ci', kind='service')}"}
    response = await client.post(_url(agent), json=SUMMARY, headers=service)
    assert response.status_code == 202, response.text
    assert response.json()["submitted_by"] == "svc_ci"


@pytest.mark.parametrize("how", list(UNWRITABLE))
async def test_unwritable_decision_log_stores_no_task(
    client: httpx.AsyncClient,
    auth: Any,
    agent: str,
    svc: Services,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    before = await _rows()
    async with UNWRITABLE[how](svc, monkeypatch):
        response = await client.post(_url(agent), json=SUMMARY, headers=auth("operator"))
    assert_error(response, 503, "unavailable")
    assert await _rows() == before


@pytest.mark.parametrize("table", ["outbox", "events"])
async def test_a_failed_outbox_or_event_insert_takes_task_and_decision_with_it(
    client: httpx.AsyncClient, auth: Any, agent: str, svc: Services, table: str
) -> None:
    before = await _rows()
    async with refusing_inserts(svc, table):
        response = await client.post(_url(agent), json=SUMMARY, headers=auth("operator"))
    assert_error(response, 503, "unavailable")
    assert await _rows() == before


async def test_get_and_list_tasks(client: httpx.AsyncClient, auth: Any, agent: str) -> None:
    other = await deployed_agent(client, auth)
    mine = [(await submit(client, auth, agent))["task_id"] for _ in range(3)]
    theirs = (await submit(client, auth, other))["task_id"]
    got = await client.get(f"/api/v1/tasks/{mine[0]}", headers=auth("viewer"))
    assert got.status_code == 200, got.text
    assert got.json()["submitted_at"].endswith("+00:00") and got.json()["status"] == "queued"

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"agent_id": agent, "status": "queued", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/api/v1/tasks", params=params, headers=auth("viewer"))
        assert page.status_code == 200, page.text
        seen += [t["id"] for t in page.json()["items"]]
        cursor = page.json()["next"]
        if cursor is None:
            break
    assert seen == sorted(seen) and set(mine) <= set(seen) and theirs not in seen
    bad = await client.get("/api/v1/tasks", params={"status": "nope"}, headers=auth("viewer"))
    assert_error(bad, 400, "invalid_input")


async def test_another_tenants_task_and_run_are_404(
    client: httpx.AsyncClient, auth: Any, agent: str
) -> None:
    task = (await submit(client, auth, agent))["task_id"]
    run, _ = await start_run(task)
    foreign = auth("admin", tenant=OTHER)
    for method, path in (
        ("GET", f"/tasks/{task}"),
        ("POST", f"/tasks/{task}/cancel"),
        ("GET", f"/tasks/{task}/runs"),
        ("GET", f"/runs/{run}"),
        ("GET", f"/runs/{run}/artifacts"),
    ):
        response = await client.request(method, f"/api/v1{path}", headers=foreign)
        assert_error(response, 404, "not_found")
    listed = await client.get("/api/v1/tasks", params={"agent_id": agent}, headers=foreign)
    assert listed.json()["items"] == []


async def test_cancel_a_queued_task_then_again_is_409(
    client: httpx.AsyncClient, auth: Any, agent: str
) -> None:
    task = (await submit(client, auth, agent))["task_id"]
    assert_error(
        await client.post(f"/api/v1/tasks/{task}/cancel", headers=auth("viewer")), 403, "forbidden"
    )
    cancelled = await client.post(f"/api/v1/tasks/{task}/cancel", headers=auth("operator"))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert "usr_test" in cancelled.json()["cause"]
    again = await client.post(f"/api/v1/tasks/{task}/cancel", headers=auth("operator"))
    error = assert_error(again, 409, "conflict")
    assert error["status"] == "cancelled" and "cancelled" in error["message"]


async def test_runs_tool_calls_and_artifacts(
    client: httpx.AsyncClient, auth: Any, agent: str
) -> None:
    task = (await submit(client, auth, agent))["task_id"]
    run, token = await start_run(task)
    call = await client.post(
        f"/api/v1/runs/{run}/tool-calls",
        json={"tool_id": "web_search", "arguments": {"query": "x", "api_key": "sk-SECRET"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert call.status_code == 200, call.text
    await finish_run(run, {"report.md": b"# report\n", "data.json": b"{}"})

    runs = await client.get(f"/api/v1/tasks/{task}/runs", headers=auth("viewer"))
    assert [r["id"] for r in runs.json()["items"]] == [run]
    detail = (await client.get(f"/api/v1/runs/{run}", headers=auth("viewer"))).json()
    assert (detail["outcome"], detail["attempt"], detail["task_id"]) == ("succeeded", 1, task)
    assert detail["finished_at"].endswith("+00:00") and "token_hash" not in detail
    assert [c["tool_id"] for c in detail["tool_calls"]] == ["web_search"]
    assert detail["tool_calls"][0]["arguments"] == {"query": "x", "api_key": "***"}
    assert "sk-SECRET" not in json.dumps(detail)

    listed = (await client.get(f"/api/v1/runs/{run}/artifacts", headers=auth("viewer"))).json()
    assert [(a["name"], a["size"]) for a in listed["items"]] == [("data.json", 2), ("report.md", 9)]
    content = await client.get(f"/api/v1/runs/{run}/artifacts/report.md", headers=auth("viewer"))
    assert content.status_code == 200 and content.content == b"# report\n"
    assert content.headers["x-content-sha256"] == listed["items"][1]["sha256"]
    missing = await client.get(f"/api/v1/runs/{run}/artifacts/nope", headers=auth("viewer"))
    assert_error(missing, 404, "not_found")
    done = await client.post(f"/api/v1/tasks/{task}/cancel", headers=auth("operator"))
    assert assert_error(done, 409, "conflict")["status"] == "succeeded"
