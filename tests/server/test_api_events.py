"""`GET /events/stream`: lifecycle events and decisions in order, resumable with
`Last-Event-ID`, tenant-scoped. Streams end by ``max_events`` so every read is deterministic."""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from typing import Any

import anyio
import httpx
import pytest

from kernel import Event as KernelEvent
from kernel import EventKind
from server.api import events as stream_module
from server.db.tables import Event as EventRow
from server.dispatch.events import DbEventSink, append_event
from tests.server.api_support import OTHER, TENANT, assert_error
from tests.server.task_support import ALLOWED_SHELL, deployed_agent, start_run, submit

pytestmark = pytest.mark.anyio

URL = "/api/v1/events/stream"


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll often: the tests wait for rows, never for the clock."""
    monkeypatch.setattr(stream_module, "POLL_S", 0.02)


def parse(text: str) -> list[dict[str, Any]]:
    """SSE messages: ``{"id", "event", "data"}`` (data decoded) or ``{"comment"}``."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name == "":
                fields["comment"] = value
            else:
                fields[name] = json.loads(value) if name == "data" else value
        if fields:
            messages.append(fields)
    return messages


async def read(
    client: httpx.AsyncClient, headers: dict[str, str], count: int, cursor: str | None = None
) -> list[dict[str, Any]]:
    """The next ``count`` messages after ``cursor`` (the ``ready`` message first)."""
    extra = {} if cursor is None else {"Last-Event-ID": cursor}
    with anyio.fail_after(20):
        response = await client.get(URL, params={"max_events": count}, headers={**headers, **extra})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse(response.text)


async def cursor_now(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    [ready] = await read(client, headers, 0)
    assert ready["event"] == "ready" and ready["data"]["cursor"] == ready["id"]
    return str(ready["id"])


def lifecycle(kind: EventKind, task: str, agent: str, run: str) -> KernelEvent:
    """What the scheduler reports (through the server's event sink)."""
    return KernelEvent(
        kind=kind,
        task_id=task,
        tenant=TENANT,
        agent_id=agent,
        at=time.time(),
        run_id=run,
        attempt=1,
    )


async def test_lifecycle_events_and_decisions_in_order_then_resume(
    client: httpx.AsyncClient, auth: Any
) -> None:
    admin = auth("admin")
    agent = await deployed_agent(client, auth)
    start = await cursor_now(client, admin)
    task = (await submit(client, auth, agent))["task_id"]
    run, token = await start_run(task)
    sink = DbEventSink()
    await sink.emit(lifecycle(EventKind.STARTED, task, agent, run))
    call = await client.post(
        f"/api/v1/runs/{run}/tool-calls",
        json={"tool_id": ALLOWED_SHELL[0], "arguments": ALLOWED_SHELL[1]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert call.status_code == 200, call.text
    await sink.emit(lifecycle(EventKind.SUCCEEDED, task, agent, run))

    everything = await read(client, admin, 6, start)
    assert everything[0]["id"] == start
    assert all(m["data"]["task_id"] == task for m in everything[1:] if m["event"] != "decision")
    kinds = [m["event"] for m in everything[1:]]
    assert [k for k in kinds if k != "decision"] == ["queued", "started", "tool_call", "succeeded"]
    assert [m["data"]["action"] for m in everything[1:] if m["event"] == "decision"] == [
        "task.submit",
        "tool.invoke",
    ]
    seqs = [int(m["id"].split(":")[0]) for m in everything]
    assert seqs == sorted(seqs)

    # Resume after the third message: exactly the rest, nothing twice.
    resumed = await read(client, admin, 3, everything[3]["id"])
    assert [m["id"] for m in resumed[1:]] == [m["id"] for m in everything[4:]]
    assert resumed[0]["id"] == everything[3]["id"]


async def test_another_tenants_events_never_appear(client: httpx.AsyncClient, auth: Any) -> None:
    mine, theirs = await deployed_agent(client, auth), await deployed_agent(client, auth, OTHER)
    start_mine = await cursor_now(client, auth("admin"))
    start_theirs = await cursor_now(client, auth("admin", tenant=OTHER))
    foreign = (await submit(client, auth, theirs, tenant=OTHER))["task_id"]
    own = (await submit(client, auth, mine))["task_id"]
    got = await read(client, auth("admin"), 2, start_mine)
    assert {m["event"] for m in got[1:]} == {"queued", "decision"}
    assert foreign not in json.dumps(got) and own in json.dumps(got)
    other = await read(client, auth("admin", tenant=OTHER), 2, start_theirs)
    assert own not in json.dumps(other) and foreign in json.dumps(other)


async def test_readers_without_decision_access_get_lifecycle_only(
    client: httpx.AsyncClient, auth: Any
) -> None:
    agent = await deployed_agent(client, auth)
    start = await cursor_now(client, auth("viewer"))
    tasks = [(await submit(client, auth, agent))["task_id"] for _ in range(2)]
    got = await read(client, auth("viewer"), 2, start)
    assert [(m["event"], m["data"]["task_id"]) for m in got[1:]] == [("queued", t) for t in tasks]


async def test_keep_alive_comments_while_idle(
    client: httpx.AsyncClient, auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "KEEPALIVE_S", 0.0)
    news = stream_module.Tail.news
    polls: list[int] = []

    async def first_poll_idle(self: stream_module.Tail) -> list[Any]:
        polls.append(1)
        return [] if len(polls) == 1 else await news(self)

    monkeypatch.setattr(stream_module.Tail, "news", first_poll_idle)
    agent = await deployed_agent(client, auth)
    start = await cursor_now(client, auth("viewer"))
    await submit(client, auth, agent)
    got = await read(client, auth("viewer"), 1, start)
    assert any(m.get("comment") == "keep-alive" for m in got), got
    assert got[-1]["event"] == "queued"


async def test_bad_cursor_and_roles(client: httpx.AsyncClient, auth: Any) -> None:
    for bad in ("evt_1", "x:evt_1", "1:nope", "-1:", "1:evt_never_given"):
        response = await client.get(URL, headers={**auth("admin"), "Last-Event-ID": bad})
        assert_error(response, 400, "invalid_input")
    assert_error(await client.get(URL, headers=auth()), 403, "forbidden")
    assert_error(await client.get(URL), 401, "unauthorized")
    query = await client.get(
        URL, params={"last_event_id": "0:", "max_events": 1}, headers=auth("auditor")
    )
    assert query.status_code == 200 and parse(query.text)[0]["id"] == "0:0"


async def test_a_cursor_of_the_older_form_resumes_after_its_event(
    client: httpx.AsyncClient, auth: Any
) -> None:
    agent = await deployed_agent(client, auth)
    start = await cursor_now(client, auth("viewer"))
    first, second = [(await submit(client, auth, agent))["task_id"] for _ in range(2)]
    got = await read(client, auth("viewer"), 2, start)
    assert [m["data"]["task_id"] for m in got[1:]] == [first, second]
    older = f"{start.split(':')[0]}:{got[1]['data']['id']}"  # `<seq>:evt_...`, as before
    resumed = await read(client, auth("viewer"), 1, older)
    assert [m["data"]["task_id"] for m in resumed[1:]] == [second]


async def test_an_event_committed_late_is_never_skipped(
    client: httpx.AsyncClient, auth: Any
) -> None:
    # The old stream took event ids before the commit and could pass a late one by; now
    # the tenant's event seq is taken under a row lock held to the commit.
    start = await cursor_now(client, auth("viewer"))
    db = EventRow._meta.db
    late: asyncio.Task[None] | None = None
    async with db.transaction():
        await append_event(TENANT, "queued", "tsk_first", {"task_id": "tsk_first"})
        # Another writer, outside this transaction (an empty context: not joined).
        late = asyncio.get_running_loop().create_task(
            append_event(TENANT, "queued", "tsk_second", {"task_id": "tsk_second"}),
            context=contextvars.Context(),
        )
        done, _ = await asyncio.wait({late}, timeout=0.5)
        assert not done, "the second writer must wait for the first one's commit"
    await late
    got = await read(client, auth("viewer"), 2, start)
    assert [m["data"]["task_id"] for m in got[1:]] == ["tsk_first", "tsk_second"]
    seqs = [m["data"]["seq"] for m in got[1:]]
    assert seqs[1] == seqs[0] + 1
