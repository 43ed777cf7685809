"""Fairness through the whole path (outbox relay, arq on Redis, a real `aion worker`, the
PostgreSQL store): tenant A queues 1,000 bulk tasks, then tenant B one task; B's task starts
long before A's backlog has drained.

The queue hands jobs out in arrival order, so B's job sits behind A's 1,000. The worker's
intake (every ``SchedulerConfig.intake_s`` = 1 s) takes each tenant's oldest pending tasks
from the store into the fair share, so B waits at most about one intake interval plus one
run slot. The bounds this test asserts: B starts within 15 s of its submit (generous for a
loaded CI machine), and fewer than half of A's tasks started before it (in arrival order
all 1,000 would have).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.auth import utcnow
from server.bootstrap import ensure_tenant
from server.db.engine import bind, engine_for
from server.db.tables import Outbox, Run, Task
from server.dispatch.arqqueue import ArqJobQueue
from server.dispatch.outbox import OutboxRelay
from server.settings import Settings
from tests.dispatch.conftest import fresh_database
from tests.dispatch.support import (
    current_revision,
    deployed_agent,
    insert_task,
    new_task_id,
    wait_for,
)
from tests.dispatch.workers import Workers, flush, redis_db_url
from tests.services import close_engine, postgres_url, redis_url

pytestmark = pytest.mark.anyio

REDIS_DB = 12
BACKLOG = 1000
BOUND_S = 15.0


@pytest.fixture(scope="module")
async def pg(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    postgres_url()
    redis_url()
    async with fresh_database("postgres", tmp_path_factory.mktemp("fairness")) as settings:
        yield settings


async def test_a_single_task_is_not_stuck_behind_another_tenants_backlog(
    pg: Settings, tmp_path: Path
) -> None:
    db = engine_for(pg.database_url, pg.data_dir)
    bind(db)
    url = redis_db_url(redis_url(), REDIS_DB)
    flush(url)
    queue = ArqJobQueue(url)
    relay = OutboxRelay(queue, pg)
    workers = Workers(pg, url, tmp_path)
    try:
        tenant_a, _ = await ensure_tenant(f"fair-a-{uuid.uuid4().hex[:6]}")
        tenant_b, _ = await ensure_tenant(f"fair-b-{uuid.uuid4().hex[:6]}")
        agent_a = await deployed_agent(tenant_a, runtime="echo")
        agent_b = await deployed_agent(tenant_b, runtime="noop")
        rev_a, rev_b = await current_revision(tenant_a), await current_revision(tenant_b)
        # The worker starts first (its start-up sweep of the store finds nothing), so A's
        # backlog reaches it only through the queue, in arrival order. Lost-work sweeps are
        # far apart: only the intake can bring B's task forward.
        workers.spawn("--concurrency", "8", AION_LEASE_S="30", AION_RECONCILE_S="60")
        await insert_task(tenant=tenant_a, agent_id=agent_a, admitted_revision=rev_a)
        assert await relay.relay_once() == 1
        await wait_for(lambda: _started(tenant_a), timeout=30)  # the worker is up
        await _backlog(tenant_a, agent_a, rev_a)
        assert await relay.relay_once() == BACKLOG  # A's jobs are first in the queue
        submitted = time.time()
        single = await insert_task(tenant=tenant_b, agent_id=agent_b, admitted_revision=rev_b)
        assert await relay.relay_once() == 1  # B's job is behind A's in the queue

        async def b_started() -> float | None:
            row = await Run.select(Run.started_at).where(Run.task_id == single).first()
            return float(row["started_at"]) if row else None

        started_at = await wait_for(b_started, timeout=60)
        before_b = await Run.count().where((Run.tenant == tenant_a) & (Run.started_at < started_at))
        assert started_at - submitted <= BOUND_S, f"B waited {started_at - submitted:.1f} s"
        assert before_b < BACKLOG // 2, f"{before_b} of A's tasks started before B's"
    finally:
        workers.kill_all()
        await queue.close()
        await close_engine(db)


async def _backlog(tenant: str, agent_id: str, revision: str) -> None:
    """A's bulk tasks and their outbox rows in two statements (as 1,000 submits leave them);
    each run sleeps 0.2 s so the backlog outlasts the test's setup."""
    now = time.time()
    ids = [new_task_id() for _ in range(BACKLOG)]
    rows = [
        Task(
            id=task_id,
            tenant=tenant,
            agent_id=agent_id,
            input={"sleep_s": 0.2},
            intent="summarize",
            priority="bulk",
            status="queued",
            created_at=utcnow(),
            submitted_by="usr_test",
            decision_id="dec_test",
            admitted_revision=revision,
            timeout_s=30.0,
            submitted_at=now + n * 1e-6,
            updated_at=now,
        )
        for n, task_id in enumerate(ids)
    ]
    await Task.insert(*rows)
    outbox = [Outbox(id=f"obx_{t}", tenant=tenant, task_id=t, created_at=utcnow()) for t in ids]
    await Outbox.insert(*outbox)


async def _started(tenant: str) -> int:
    return int(await Run.count().where(Run.tenant == tenant))
