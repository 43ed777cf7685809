"""Through a real `aion worker` (PostgreSQL, Redis): every task ends in a terminal state with
its cause, quotas hold at every observation, and the admission re-check refuses what may no
longer run."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel import TaskState
from server.bootstrap import ensure_tenant
from server.db.engine import bind, engine_for
from server.db.tables import Agent, Deployment, Event, Run, Tenant
from server.dispatch.arqqueue import ArqJobQueue
from server.dispatch.outbox import OutboxRelay
from server.settings import Settings
from tests.dispatch.conftest import fresh_database
from tests.dispatch.support import current_revision, deployed_agent, insert_task, task_row, wait_for
from tests.dispatch.workers import Workers, flush, redis_db_url
from tests.services import close_engine, postgres_url, redis_url

pytestmark = pytest.mark.anyio

REDIS_DB = 14
TERMINAL = {s.value for s in TaskState if s.terminal}


@pytest.fixture(scope="module")
async def pg(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    postgres_url()
    redis_url()
    async with fresh_database("postgres", tmp_path_factory.mktemp("outcomes")) as settings:
        yield settings


@pytest.fixture
async def worker(pg: Settings, tmp_path: Path) -> AsyncIterator[OutboxRelay]:
    """One running worker; the relay that feeds it."""
    db = engine_for(pg.database_url, pg.data_dir)
    bind(db)
    url = redis_db_url(redis_url(), REDIS_DB)
    flush(url)
    pool = Workers(pg, url, tmp_path)
    queue = ArqJobQueue(url)
    pool.spawn("--concurrency", "8")
    try:
        yield OutboxRelay(queue, pg)
    finally:
        pool.kill_all()
        await queue.close()
        await close_engine(db)


async def _final(task_id: str, timeout: float = 20.0) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        row = await task_row(task_id)
        return row if row["status"] in TERMINAL else None

    row: dict[str, Any] = await wait_for(done, timeout=timeout)
    return row


async def test_poison_expired_and_timed_out_tasks_end_dead_lettered_with_causes(
    worker: OutboxRelay,
) -> None:
    agent = await deployed_agent()
    rev = await current_revision()
    permanent = await insert_task(
        agent_id=agent, input={"fail": "permanent"}, admitted_revision=rev
    )
    retrying = await insert_task(
        agent_id=agent, input={"fail": "retry"}, max_attempts=2, admitted_revision=rev
    )
    expired = await insert_task(agent_id=agent, not_after=time.time() - 1, admitted_revision=rev)
    slow_once = await insert_task(
        agent_id=agent, input={"sleep_s": 30}, timeout_s=0.5, max_attempts=1, admitted_revision=rev
    )
    slow_twice = await insert_task(
        agent_id=agent, input={"sleep_s": 30}, timeout_s=0.5, max_attempts=2, admitted_revision=rev
    )
    assert await worker.relay_once() == 5
    expect = {
        permanent: "permanent failure: exit code 1",
        retrying: "gave up after 2 of 2 attempts: exit code 75 (retry requested)",
        expired: "expired: not started before not_after",
        slow_once: "gave up after 1 of 1 attempts: timed out after 0.5s",
        slow_twice: "gave up after 2 of 2 attempts: timed out after 0.5s",
    }
    for task_id, cause in expect.items():
        row = await _final(task_id)
        assert row["status"] == TaskState.DEAD_LETTERED.value, (task_id, row["cause"])
        assert row["cause"].startswith(cause), row["cause"]
    attempts = {t: len(await Run.select().where(Run.task_id == t)) for t in expect}
    assert attempts == {permanent: 1, retrying: 2, expired: 0, slow_once: 1, slow_twice: 2}
    kinds = await Event.select(Event.kind).where(Event.subject == slow_twice).order_by(Event.id)
    assert [k["kind"] for k in kinds] == ["started", "retry", "started", "dead_lettered"]


async def test_a_tenant_limited_to_two_runs_never_has_a_third(worker: OutboxRelay) -> None:
    tenant, _ = await ensure_tenant(f"quota-{uuid.uuid4().hex[:8]}")
    await Tenant.update({Tenant.settings: {"max_concurrent_runs": 2}}).where(Tenant.id == tenant)
    agent = await deployed_agent(tenant=tenant)
    rev = await current_revision(tenant)
    tasks = [
        await insert_task(
            tenant=tenant, agent_id=agent, input={"sleep_s": 0.4, "n": n}, admitted_revision=rev
        )
        for n in range(7)
    ]
    assert await worker.relay_once() == len(tasks)
    most = 0
    deadline = time.monotonic() + 40
    while True:
        running = await Run.count().where((Run.tenant == tenant) & Run.outcome.is_null())
        assert running <= 2
        most = max(most, running)
        states = {(await task_row(t))["status"] for t in tasks}
        if states == {TaskState.SUCCEEDED.value}:
            break
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.02)
    assert most == 2  # the limit was reached, so it was what held the third back


async def test_disabled_or_undeployed_agents_tasks_are_refused_at_start(
    worker: OutboxRelay,
) -> None:
    disabled = await deployed_agent()
    undeployed = await deployed_agent()
    await Agent.update({Agent.status: "disabled"}).where(Agent.id == disabled)
    await Deployment.update({Deployment.status: "inactive"}).where(
        Deployment.agent_id == undeployed
    )
    rev = await current_revision()
    first = await insert_task(agent_id=disabled, admitted_revision=rev)
    second = await insert_task(agent_id=undeployed, admitted_revision=rev)
    assert await worker.relay_once() == 2
    row = await _final(first)
    assert (row["status"], row["cause"]) == (
        TaskState.FAILED.value,
        f"refused at start: agent `{disabled}` is disabled",
    )
    row = await _final(second)
    assert (row["status"], row["cause"]) == (
        TaskState.FAILED.value,
        f"refused at start: agent `{undeployed}` has no active deployment",
    )
    assert not await Run.exists().where(Run.task_id.is_in([first, second]))
