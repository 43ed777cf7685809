"""A real `aion worker` SIGKILLed in the middle of a run, 20 times: each time another worker
completes the task exactly once in effect (one succeeded run, one set of artifacts).

PostgreSQL and Redis are real. Each repetition: a task whose echo run sleeps
1 s is relayed; the running worker claims it (the test polls the database
until the run row exists, never sleeps to win the race) and is SIGKILLed; a
fresh worker takes the task over once the dead run's lease (1 s) expires, and
becomes the next repetition's victim.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel import RunOutcome, TaskState
from server.db.engine import bind, engine_for
from server.db.tables import Artifact, Run
from server.dispatch.arqqueue import ArqJobQueue
from server.dispatch.outbox import OutboxRelay
from server.settings import Settings
from tests.dispatch.conftest import fresh_database
from tests.dispatch.support import current_revision, deployed_agent, insert_task, task_row, wait_for
from tests.dispatch.workers import Workers, flush, redis_db_url
from tests.services import close_engine, postgres_url, redis_url

pytestmark = pytest.mark.anyio

REPETITIONS = 20
REDIS_DB = 13


@pytest.fixture(scope="module")
async def pg(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    postgres_url()
    redis_url()
    async with fresh_database("postgres", tmp_path_factory.mktemp("sigkill")) as settings:
        yield settings


@pytest.fixture
async def workers(pg: Settings, tmp_path: Path) -> AsyncIterator[Workers]:
    db = engine_for(pg.database_url, pg.data_dir)
    bind(db)
    url = redis_db_url(redis_url(), REDIS_DB)
    flush(url)
    pool = Workers(pg, url, tmp_path)
    try:
        yield pool
    finally:
        pool.kill_all()
        await close_engine(db)


async def _run_of(task_id: str) -> dict[str, Any] | None:
    row = await Run.select().where((Run.task_id == task_id) & Run.outcome.is_null()).first()
    return dict(row) if row else None


async def _succeeded(task_id: str) -> bool:
    return bool((await task_row(task_id))["status"] == TaskState.SUCCEEDED.value)


async def test_sigkilled_worker_mid_run_ends_with_exactly_one_success(workers: Workers) -> None:
    agent = await deployed_agent()
    revision = await current_revision()
    queue = ArqJobQueue(workers.redis_url)
    relay = OutboxRelay(queue, workers.settings)
    victim = workers.spawn("--concurrency", "2")
    try:
        for rep in range(REPETITIONS):
            task_id = await insert_task(
                agent_id=agent,
                input={"sleep_s": 1.0, "rep": rep, "nonce": uuid.uuid4().hex},
                admitted_revision=revision,
                max_attempts=3,
            )
            assert await relay.relay_once() == 1
            run = await wait_for(functools.partial(_run_of, task_id), timeout=20, every=0.01)
            assert run["worker_id"] == workers.worker_id(victim), rep
            victim.kill()
            victim.wait()
            victim = workers.spawn("--concurrency", "2")
            await wait_for(functools.partial(_succeeded, task_id), timeout=20)
            runs = await Run.select().where(Run.task_id == task_id).order_by(Run.attempt)
            outcomes = [r["outcome"] for r in runs]
            assert outcomes.count(RunOutcome.SUCCEEDED.value) == 1, (rep, outcomes)
            assert outcomes[0] == RunOutcome.LEASE_EXPIRED.value, (rep, outcomes)
            assert runs[-1]["outcome"] == RunOutcome.SUCCEEDED.value
            artifacts = await Artifact.select().where(Artifact.task_id == task_id)
            assert [(a["name"], a["run_id"]) for a in artifacts] == [
                ("output.json", runs[-1]["id"])
            ], rep
    finally:
        await queue.close()


async def test_sigterm_lets_the_running_run_finish_then_exits(workers: Workers) -> None:
    agent = await deployed_agent()
    task_id = await insert_task(
        agent_id=agent, input={"sleep_s": 1.0}, admitted_revision=await current_revision()
    )
    queue = ArqJobQueue(workers.redis_url)
    try:
        assert await OutboxRelay(queue, workers.settings).relay_once() == 1
    finally:
        await queue.close()
    worker = workers.spawn()
    run = await wait_for(functools.partial(_run_of, task_id), timeout=20, every=0.01)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 20) == 0
    assert await _succeeded(task_id)
    runs = await Run.select().where(Run.task_id == task_id)
    assert [(r["id"], r["outcome"]) for r in runs] == [(run["id"], RunOutcome.SUCCEEDED.value)]


def test_worker_without_redis_exits_2_with_a_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AION_REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "worker", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "needs Redis: set AION_REDIS_URL" in done.stderr
