"""The arq adapter and the outbox relay on a real Redis and real databases.

- job id = task id: a second enqueue collapses, a delivery is acknowledged once;
- an unacknowledged delivery comes back (``delivery`` 2) after its consumer stops;
- a crash between commit and enqueue: the next relay delivers the committed row;
  a crash between enqueue and marking: the re-send collapses into the same job;
- Redis restarted with queued work: the reconciler re-enqueues it and a
  scheduler runs it exactly once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from kernel import RunOutcome, TaskState
from server.db.tables import Outbox
from server.dispatch.arqqueue import ArqJobQueue
from server.dispatch.outbox import OutboxRelay
from server.dispatch.worker import compose_scheduler, worker_gate
from server.settings import Settings
from server.tenants import TenantDirectory
from tests.dispatch.support import deployed_agent, insert_task, task_row, wait_for
from tests.services import redis_url

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
PRIVATE_REDIS_PORT = "56391"


@pytest.fixture
async def queue() -> AsyncIterator[ArqJobQueue]:
    q = ArqJobQueue(redis_url(), queue_name=f"aion:test:{uuid.uuid4().hex[:8]}", poll_delay_s=0.02)
    yield q
    await q.close()


async def test_enqueue_collapses_on_the_job_id_and_ack_completes(queue: ArqJobQueue) -> None:
    job_id = f"tsk_{uuid.uuid4().hex}"
    assert await queue.enqueue(job_id, {"tenant": "default"})
    assert not await queue.enqueue(job_id, {"tenant": "default"})
    job = await queue.receive(timeout=10)
    assert job is not None and job.job_id == job_id and job.delivery == 1
    assert dict(job.payload) == {"tenant": "default"}
    assert not await queue.enqueue(job_id, {"tenant": "default"})  # in flight
    await queue.ack(job_id)
    await wait_for(lambda: _no_pending(queue))
    assert not await queue.enqueue(job_id, {"tenant": "default"})  # remembered as done
    assert await queue.receive(timeout=0.3) is None


async def _no_pending(queue: ArqJobQueue) -> bool:
    client = aioredis.from_url(queue.redis_url)
    try:
        return await client.zcard(queue.queue_name) == 0
    finally:
        await client.aclose()


async def test_an_unacknowledged_job_is_delivered_again() -> None:
    name = f"aion:test:{uuid.uuid4().hex[:8]}"
    first = ArqJobQueue(redis_url(), queue_name=name, poll_delay_s=0.02)
    job_id = f"tsk_{uuid.uuid4().hex}"
    assert await first.enqueue(job_id, {"tenant": "default"})
    got = await first.receive(timeout=10)
    assert got is not None and got.delivery == 1
    await first.close()  # the consumer stops without an ack (a graceful stop of its worker)
    second = ArqJobQueue(redis_url(), queue_name=name, poll_delay_s=0.02)
    try:
        again = await second.receive(timeout=10)
        assert again is not None and again.job_id == job_id and again.delivery == 2
        await second.ack(job_id)
    finally:
        await second.close()


async def test_committed_row_is_delivered_by_the_next_relay(
    bound: Settings, queue: ArqJobQueue
) -> None:
    # The submit committed, then its process died before relaying: nothing was enqueued.
    task_id = await insert_task()
    relay = OutboxRelay(queue, bound)
    assert await relay.relay_once() >= 1
    row = await Outbox.select().where(Outbox.task_id == task_id).first()
    assert row is not None and row["sent_at"] is not None and row["attempts"] == 1
    job = await queue.receive(timeout=10)
    assert job is not None and job.job_id == task_id
    assert await relay.relay_once() == 0
    await queue.ack(task_id)


async def test_crash_between_enqueue_and_mark_only_resends(
    bound: Settings, queue: ArqJobQueue
) -> None:
    task_id = await insert_task()
    assert await queue.enqueue(task_id, {"tenant": "default"})  # enqueued, never marked
    assert await OutboxRelay(queue, bound).relay_once() >= 1  # re-sent: collapses
    job = await queue.receive(timeout=10)
    assert job is not None and job.job_id == task_id
    await queue.ack(task_id)
    assert await queue.receive(timeout=0.3) is None


def _redis_script(port: str, directory: Path) -> str:
    env = {**os.environ, "AION_TEST_REDIS_PORT": port, "AION_TEST_REDIS_DIR": str(directory)}
    done = subprocess.run(
        [str(REPO / "scripts" / "redis.sh")], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().split("=", 1)[1]


def _stop_redis(port: str) -> None:
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", port, "shutdown", "nosave"],
        capture_output=True,
        check=False,
    )


@pytest.fixture
def private_redis(tmp_path: Path) -> AsyncIterator[str]:
    """A Redis of this test alone (scripts/redis.sh on another port), stopped afterwards."""
    redis_url()  # skip (or fail in CI) without the test Redis
    url = _redis_script(PRIVATE_REDIS_PORT, tmp_path / "redis")
    yield url  # type: ignore[misc]
    _stop_redis(PRIVATE_REDIS_PORT)


async def test_redis_restart_with_queued_work_is_reconciled_and_runs_once(
    bound: Settings, private_redis: str, tmp_path: Path
) -> None:
    settings = replace(bound, reconcile_s=5.0, lease_s=2.0, run_dir=str(tmp_path / "runs"))
    agent = await deployed_agent()
    task_id = await insert_task(agent_id=agent)
    producer = ArqJobQueue(private_redis, poll_delay_s=0.02)
    relay = OutboxRelay(producer, settings)
    try:
        assert await relay.relay_once() >= 1
        # Redis restarts (no persistence): the job is gone, the task is still queued.
        _stop_redis(PRIVATE_REDIS_PORT)
        _redis_script(PRIVATE_REDIS_PORT, tmp_path / "redis-after")
        assert (await task_row(task_id))["status"] == TaskState.QUEUED.value
        assert await relay.reconcile_once(time.time()) == 0  # sent too recently to judge
        assert await relay.reconcile_once(time.time() + settings.reconcile_s + 1) >= 1
        assert await relay.reconcile_once(time.time() + settings.reconcile_s + 1) == 0
    finally:
        await producer.close()
    consumer = ArqJobQueue(private_redis, poll_delay_s=0.02)
    scheduler = compose_scheduler(
        settings, worker_gate(settings), TenantDirectory(), worker_id="w-test"
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(scheduler.serve(consumer, stop))
    try:
        await wait_for(lambda: _status_is(task_id, TaskState.SUCCEEDED), timeout=30)
    finally:
        stop.set()
        await serving
        await scheduler.shutdown()
        await consumer.close()
    runs = await scheduler.store.runs(task_id)
    assert [r.outcome for r in runs] == [RunOutcome.SUCCEEDED]
    assert [a.name for a in await scheduler.store.artifacts(runs[0].run_id)] == ["output.json"]


async def _status_is(task_id: str, state: TaskState) -> bool:
    return bool((await task_row(task_id))["status"] == state.value)
