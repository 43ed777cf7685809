"""One scenario list, three stores: `MemoryRunStore`, and `PiccoloRunStore` on SQLite and
PostgreSQL must answer every step alike (claims, leases, idempotent finish, artifacts,
dead letters), and a claim race between many workers has exactly one winner."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kernel import (
    Artifact,
    MemoryRunStore,
    NextStep,
    RunOutcome,
    RunResult,
    RunStore,
    TaskSpec,
    TaskState,
)
from server.db.engine import bind, engine_for
from server.db.tables import Run
from server.dispatch.store import PiccoloRunStore, token_hash
from server.settings import Settings
from tests.dispatch.support import insert_spec
from tests.services import admin_sql, close_engine, postgres_url, with_database

pytestmark = pytest.mark.anyio

OK = RunResult(outcome=RunOutcome.SUCCEEDED, outputs=(Artifact.of("out.txt", b"42"),))
DONE = NextStep(state=TaskState.SUCCEEDED)


@dataclass
class Harness:
    """A store and how to put a queued task in it."""

    name: str
    store: RunStore
    add: Callable[[TaskSpec], Awaitable[bool]]
    prefix: str

    def spec(self, task_id: str, tenant: str = "t1", **extra: Any) -> TaskSpec:
        """A task of this test (ids are unique per test on a shared database)."""
        return TaskSpec(
            task_id=f"{self.prefix}{task_id}", tenant=tenant, agent_id="agent-1", **extra
        )

    def tid(self, task_id: str) -> str:
        return f"{self.prefix}{task_id}"


@pytest.fixture(scope="module")
async def _databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    made: dict[str, Any] = {}
    yield made
    for name in made.get("_pg_names", []):
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _settings_for(backend: str, made: dict[str, Any], root: Path) -> Settings:
    from server.bootstrap import migrate

    if backend not in made:
        if backend == "sqlite":
            settings = Settings(data_dir=root / "store-sqlite")
        else:
            name = f"aion_store_{uuid.uuid4().hex[:12]}"
            await admin_sql(f'CREATE DATABASE "{name}"')
            made.setdefault("_pg_names", []).append(name)
            settings = Settings(
                data_dir=root / "store-pg", database_url=with_database(postgres_url(), name)
            )
        migrate(settings)
        made[backend] = settings
    settings: Settings = made[backend]
    return settings


@pytest.fixture(params=("memory", "sqlite", "postgres"))
async def harness(
    request: pytest.FixtureRequest,
    _databases: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Harness]:
    prefix = f"c{uuid.uuid4().hex[:8]}-"
    if request.param == "memory":
        memory = MemoryRunStore()

        async def add(spec: TaskSpec) -> bool:
            return memory.add(spec)

        yield Harness("memory", memory, add, prefix)
        return
    if request.param == "postgres":
        postgres_url()
    root = tmp_path_factory.getbasetemp()
    settings = await _settings_for(str(request.param), _databases, root)
    db = engine_for(settings.database_url, settings.data_dir)
    bind(db)
    try:
        yield Harness(str(request.param), PiccoloRunStore(), insert_spec, prefix)
    finally:
        await close_engine(db)


async def test_claim_is_exclusive_while_the_lease_lives(harness: Harness) -> None:
    store = harness.store
    await harness.add(harness.spec("t"))
    first = await store.claim(harness.tid("t"), "w1", 0.0, lease_s=30.0)
    assert first is not None and first.attempt == 1
    assert await store.claim(harness.tid("t"), "w2", 10.0, lease_s=30.0) is None
    rec = await store.get_task(harness.tid("t"))
    assert rec is not None and rec.state is TaskState.RUNNING and rec.run_id == first.run_id
    assert rec.lease_expires_at == 30.0 and rec.attempts == 1


async def test_claim_refuses_unknown_terminal_and_not_yet_due(harness: Harness) -> None:
    store, t = harness.store, harness.tid("t")
    assert await store.claim(harness.tid("missing"), "w1", 0.0, 30.0) is None
    await harness.add(harness.spec("t"))
    claim = await store.claim(t, "w1", 0.0, 30.0)
    assert claim is not None
    retry = NextStep(state=TaskState.RETRY_WAIT, due_at=50.0, cause="flaky")
    await store.finish(claim.run_id, RunResult(outcome=RunOutcome.FAILED_RETRYABLE), 1.0, retry)
    assert t not in await store.pending(49.0)
    assert await store.claim(t, "w1", 49.0, 30.0) is None
    assert t in await store.pending(50.0)
    second = await store.claim(t, "w1", 50.0, 30.0)
    assert second is not None and second.attempt == 2
    await store.finish(second.run_id, OK, 51.0, DONE)
    assert await store.claim(t, "w1", 52.0, 30.0) is None


async def test_pending_lists_queued_and_due_tasks_oldest_first(harness: Harness) -> None:
    store = harness.store
    await harness.add(harness.spec("late", submitted_at=20.0))
    await harness.add(harness.spec("early", submitted_at=10.0))
    mine = [t for t in await store.pending(0.0) if t.startswith(harness.prefix)]
    assert mine == [harness.tid("early"), harness.tid("late")]


async def test_pending_per_tenant_takes_each_tenants_oldest(harness: Harness) -> None:
    flood, single = harness.tid("flood"), harness.tid("single")  # tenants of this test only
    for n in range(6):
        await harness.add(harness.spec(f"a{n}", tenant=flood, submitted_at=float(n)))
    await harness.add(harness.spec("b", tenant=single, submitted_at=100.0))
    fair = await harness.store.pending(0.0, per_tenant=2)
    mine = [t for t in fair if t.startswith(harness.prefix)]
    assert mine == [harness.tid("a0"), harness.tid("a1"), harness.tid("b")]
    everything = [t for t in await harness.store.pending(0.0) if t.startswith(harness.prefix)]
    assert len(everything) == 7 and everything[-1] == harness.tid("b")


async def test_finish_is_idempotent_and_artifacts_are_stored_once(harness: Harness) -> None:
    store, t = harness.store, harness.tid("t")
    await harness.add(harness.spec("t"))
    claim = await store.claim(t, "w1", 0.0, 30.0)
    assert claim is not None
    doubled = RunResult(
        outcome=RunOutcome.SUCCEEDED,
        outputs=(
            Artifact.of("out.txt", b"42"),
            Artifact.of("out.txt", b"other"),
            Artifact.of("b.json", b"{}"),
        ),
        exit_code=0,
    )
    first = await store.finish(claim.run_id, doubled, 1.0, DONE)
    assert first is not None and first.applied and first.task_state is TaskState.SUCCEEDED
    failed = RunResult(outcome=RunOutcome.FAILED_PERMANENT)
    again = await store.finish(claim.run_id, failed, 2.0, NextStep(state=TaskState.DEAD_LETTERED))
    assert again is not None and not again.applied
    assert again.outcome is RunOutcome.SUCCEEDED
    arts = await store.artifacts(claim.run_id)
    assert [(a.name, a.data, a.sha256, a.size) for a in arts] == [
        ("out.txt", b"42", Artifact.of("x", b"42").sha256, 2),
        ("b.json", b"{}", Artifact.of("x", b"{}").sha256, 2),
    ]
    rec = await store.get_task(t)
    assert rec is not None and rec.state is TaskState.SUCCEEDED
    assert await store.finish(harness.tid("no-such-run"), OK, 3.0, DONE) is None
    runs = await store.runs(t)
    assert [(r.outcome, r.finished_at, r.exit_code) for r in runs] == [
        (RunOutcome.SUCCEEDED, 1.0, 0)
    ]


async def test_dead_worker_run_is_requeued_and_its_late_result_ignored(harness: Harness) -> None:
    store, t = harness.store, harness.tid("t")
    await harness.add(harness.spec("t", max_attempts=3))
    dead = await store.claim(t, "w1", 0.0, lease_s=30.0)
    assert dead is not None
    assert t not in await store.requeue_expired_leases(29.0)
    assert t in await store.requeue_expired_leases(30.0)
    assert not await store.renew_lease(dead.run_id, "w1", 31.0, 30.0)
    alive = await store.claim(t, "w2", 31.0, lease_s=30.0)
    assert alive is not None and alive.attempt == 2
    late = await store.finish(dead.run_id, OK, 32.0, DONE)
    assert late is not None and not late.applied and late.outcome is RunOutcome.LEASE_EXPIRED
    assert await store.artifacts(dead.run_id) == []
    done = await store.finish(alive.run_id, OK, 33.0, DONE)
    assert done is not None and done.applied
    runs = await store.runs(t)
    assert [r.outcome for r in runs] == [RunOutcome.LEASE_EXPIRED, RunOutcome.SUCCEEDED]
    assert [r.worker_id for r in runs] == ["w1", "w2"]


async def test_expired_lease_can_be_taken_over_by_claim(harness: Harness) -> None:
    store, t = harness.store, harness.tid("t")
    await harness.add(harness.spec("t"))
    first = await store.claim(t, "w1", 0.0, lease_s=10.0)
    assert first is not None
    assert await store.renew_lease(first.run_id, "w1", 9.0, 10.0)
    assert not await store.renew_lease(first.run_id, "w2", 9.0, 10.0)
    assert await store.claim(t, "w2", 18.0, 10.0) is None
    taken = await store.claim(t, "w2", 19.0, 10.0)
    assert taken is not None and taken.attempt == 2


async def test_task_that_keeps_killing_workers_is_dead_lettered(harness: Harness) -> None:
    store, t = harness.store, harness.tid("t")
    await harness.add(harness.spec("t", max_attempts=2))
    for attempt, now in ((1, 0.0), (2, 100.0)):
        claim = await store.claim(t, "w", now, lease_s=10.0)
        assert claim is not None and claim.attempt == attempt
        await store.requeue_expired_leases(now + 10.0)
    rec = await store.get_task(t)
    assert rec is not None and rec.state is TaskState.DEAD_LETTERED
    assert "lease expired on attempt 2 of 2" in rec.cause


async def test_cancel_and_close_only_move_live_tasks(harness: Harness) -> None:
    store = harness.store
    a, b = harness.tid("a"), harness.tid("b")
    await harness.add(harness.spec("a"))
    await harness.add(harness.spec("b"))
    assert await store.cancel(a, 1.0, "user asked") is TaskState.CANCELLED
    assert await store.cancel(a, 2.0) is TaskState.CANCELLED
    assert not await store.dead_letter(a, 3.0, "too late")
    assert await store.refuse(b, 3.0, "agent disabled")
    rec = await store.get_task(b)
    assert rec is not None and rec.state is TaskState.FAILED and rec.cause == "agent disabled"
    assert await store.cancel(harness.tid("missing"), 0.0) is None
    ra = await store.get_task(a)
    assert ra is not None and ra.cause == "user asked"


async def test_cancelled_running_task_stops_renewing(harness: Harness) -> None:
    store, t = harness.store, harness.tid("t")
    await harness.add(harness.spec("t"))
    claim = await store.claim(t, "w1", 0.0, 30.0)
    assert claim is not None
    await store.cancel(t, 1.0)
    assert not await store.renew_lease(claim.run_id, "w1", 2.0, 30.0)
    fin = await store.finish(claim.run_id, OK, 3.0, DONE)
    assert fin is not None and fin.task_state is TaskState.CANCELLED


async def test_spec_round_trips(harness: Harness) -> None:
    spec = harness.spec(
        "t",
        timeout_s=12.5,
        max_attempts=4,
        not_after=99.0,
        submitted_at=5.0,
        payload={"input": {"q": "x"}, "intent": "summarize", "budget_usd": 0.05},
        admitted_revision='{"model-privacy":"1"}',
    )
    await harness.add(spec)
    rec = await harness.store.get_task(spec.task_id)
    assert rec is not None and rec.spec == spec and rec.state is TaskState.QUEUED
    claim = await harness.store.claim(spec.task_id, "w", 6.0, 30.0)
    assert claim is not None and claim.task == spec


async def test_concurrent_claims_have_exactly_one_winner(harness: Harness) -> None:
    store, t = harness.store, harness.tid("t")
    await harness.add(harness.spec("t"))
    claims = await asyncio.gather(*(store.claim(t, f"w{i}", 0.0, 30.0) for i in range(8)))
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].attempt == 1
    assert len(await store.runs(t)) == 1


@pytest.mark.parametrize("harness", ["sqlite", "postgres"], indirect=True)  # rows: databases only
async def test_run_token_is_stored_only_as_its_hash(harness: Harness) -> None:
    await harness.add(harness.spec("t"))
    claim = await harness.store.claim(harness.tid("t"), "w1", 0.0, 30.0)
    assert claim is not None and len(claim.run_token) >= 32
    row = await Run.select().where(Run.id == claim.run_id).first()
    assert row is not None and row["token_hash"] == token_hash(claim.run_token)
    assert claim.run_token not in str(row)
    assert row["tenant"] == "t1" and row["agent_id"] == "agent-1" and row["status"] == "running"
