"""Helpers of the dispatch tests: tasks inserted the way the API's submit inserts them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kernel import TaskSpec
from server.auth import utcnow
from server.db.tables import Agent, Deployment, Outbox, Task


def new_task_id() -> str:
    """A fresh task id."""
    return f"tsk_{uuid.uuid4().hex[:20]}"


async def insert_task(
    *,
    tenant: str = "default",
    agent_id: str = "agt_test",
    task_id: str | None = None,
    input: Any = None,
    priority: str = "standard",
    timeout_s: float = 30.0,
    max_attempts: int = 3,
    not_after: float | None = None,
    submitted_at: float | None = None,
    admitted_revision: str = "",
    intent: str = "summarize",
    outbox: bool = True,
    roles: tuple[str, ...] = ("operator",),
) -> str:
    """A queued task row and (unless ``outbox=False``) its unsent outbox row, as submit makes."""
    task_id = task_id or new_task_id()
    now = time.time()
    await Task.insert(
        Task(
            id=task_id,
            tenant=tenant,
            agent_id=agent_id,
            input=input if input is not None else {"text": task_id},
            intent=intent,
            priority=priority,
            budget_usd=0.02,
            status="queued",
            created_at=utcnow(),
            submitted_by="usr_test",
            submitted_roles=list(roles),
            submitted_kind="user",
            decision_id="dec_test",
            admitted_revision=admitted_revision,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            submitted_at=submitted_at if submitted_at is not None else now,
            not_after=not_after,
            updated_at=now,
        )
    )
    if outbox:
        await Outbox.insert(
            Outbox(id=f"obx_{task_id}", tenant=tenant, task_id=task_id, created_at=utcnow())
        )
    return task_id


async def insert_spec(spec: TaskSpec, now: float = 0.0) -> bool:
    """A :class:`TaskSpec` as a queued row (the conformance harness's ``add``)."""
    payload = dict(spec.payload)
    await Task.insert(
        Task(
            id=spec.task_id,
            tenant=spec.tenant,
            agent_id=spec.agent_id,
            input=payload.get("input", {}),
            intent=payload.get("intent"),
            priority=spec.priority.label,
            budget_usd=payload.get("budget_usd", 0.02),
            status="queued",
            created_at=utcnow(),
            timeout_s=spec.timeout_s,
            max_attempts=spec.max_attempts,
            submitted_at=spec.submitted_at,
            not_after=spec.not_after,
            admitted_revision=spec.admitted_revision or "",
            updated_at=now,
        )
    )
    return True


async def deployed_agent(tenant: str = "default", runtime: str = "echo", **config: Any) -> str:
    """A deployed agent with an active deployment, using ``runtime``."""
    agent_id = f"agt_{uuid.uuid4().hex[:20]}"
    now = utcnow()
    await Agent.insert(
        Agent(
            id=agent_id,
            tenant=tenant,
            name=f"Agent {agent_id}",
            model="model://gpt-4o",
            config={"runtime": runtime, **config},
            status="deployed",
            created_by="usr_test",
            created_at=now,
            updated_at=now,
        )
    )
    await Deployment.insert(
        Deployment(
            id=f"dep_{agent_id}",
            tenant=tenant,
            agent_id=agent_id,
            status="active",
            decision_id="dec_test",
            created_at=now,
        )
    )
    return agent_id


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 20.0, every: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s: {check}")
        await asyncio.sleep(every)


async def task_row(task_id: str) -> dict[str, Any]:
    """The task's row."""
    row = await Task.select().where(Task.id == task_id).first()
    assert row is not None, task_id
    return dict(row)


async def current_revision(tenant: str = "default") -> str:
    """The tenant's active bundle revisions as ``tasks.admitted_revision`` stores them."""
    from server.dispatch.admission import revisions_key
    from server.policies import PolicyService

    return revisions_key(dict((await PolicyService().active(tenant)).revisions))
