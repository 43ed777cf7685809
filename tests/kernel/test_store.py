"""The in-memory run store: claims, leases, idempotent finish, artifacts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kernel.model import Artifact, RunOutcome, RunResult, TaskSpec, TaskState
from kernel.store import MemoryRunStore, NextStep

pytestmark = pytest.mark.anyio

Spec = Callable[..., TaskSpec]
OK = RunResult(outcome=RunOutcome.SUCCEEDED, outputs=(Artifact.of("out.txt", b"42"),))
DONE = NextStep(state=TaskState.SUCCEEDED)


async def test_claim_is_exclusive_while_the_lease_lives(store: MemoryRunStore, spec: Spec) -> None:
    store.add(spec("t"))
    first = await store.claim("t", "w1", 0.0, lease_s=30.0)
    assert first is not None and first.attempt == 1
    assert await store.claim("t", "w2", 10.0, lease_s=30.0) is None
    rec = await store.get_task("t")
    assert rec is not None and rec.state is TaskState.RUNNING and rec.run_id == first.run_id


async def test_claim_refuses_unknown_terminal_and_not_yet_due(
    store: MemoryRunStore, spec: Spec
) -> None:
    assert await store.claim("missing", "w1", 0.0, 30.0) is None
    store.add(spec("t"))
    claim = await store.claim("t", "w1", 0.0, 30.0)
    assert claim is not None
    retry = NextStep(state=TaskState.RETRY_WAIT, due_at=50.0, cause="flaky")
    await store.finish(claim.run_id, RunResult(outcome=RunOutcome.FAILED_RETRYABLE), 1.0, retry)
    assert await store.claim("t", "w1", 49.0, 30.0) is None
    assert await store.pending(49.0) == []
    assert await store.pending(50.0) == ["t"]
    second = await store.claim("t", "w1", 50.0, 30.0)
    assert second is not None and second.attempt == 2
    await store.finish(second.run_id, OK, 51.0, DONE)
    assert await store.claim("t", "w1", 52.0, 30.0) is None


async def test_finish_is_idempotent_and_artifacts_are_stored_once(
    store: MemoryRunStore, spec: Spec
) -> None:
    store.add(spec("t"))
    claim = await store.claim("t", "w1", 0.0, 30.0)
    assert claim is not None
    doubled = RunResult(
        outcome=RunOutcome.SUCCEEDED,
        outputs=(Artifact.of("out.txt", b"42"), Artifact.of("out.txt", b"other")),
    )
    first = await store.finish(claim.run_id, doubled, 1.0, DONE)
    assert first is not None and first.applied and first.task_state is TaskState.SUCCEEDED
    failed = RunResult(outcome=RunOutcome.FAILED_PERMANENT)
    again = await store.finish(claim.run_id, failed, 2.0, NextStep(state=TaskState.DEAD_LETTERED))
    assert again is not None and not again.applied
    assert again.outcome is RunOutcome.SUCCEEDED
    arts = await store.artifacts(claim.run_id)
    assert [(a.name, a.data, a.sha256) for a in arts] == [
        ("out.txt", b"42", Artifact.of("x", b"42").sha256)
    ]
    rec = await store.get_task("t")
    assert rec is not None and rec.state is TaskState.SUCCEEDED
    assert await store.finish("no-such-run", OK, 3.0, DONE) is None


async def test_dead_worker_run_is_requeued_and_its_late_result_ignored(
    store: MemoryRunStore, spec: Spec
) -> None:
    store.add(spec("t", max_attempts=3))
    dead = await store.claim("t", "w1", 0.0, lease_s=30.0)
    assert dead is not None
    assert await store.requeue_expired_leases(29.0) == []
    assert await store.requeue_expired_leases(30.0) == ["t"]
    assert not await store.renew_lease(dead.run_id, "w1", 31.0, 30.0)
    alive = await store.claim("t", "w2", 31.0, lease_s=30.0)
    assert alive is not None and alive.attempt == 2
    # The "dead" worker was only partitioned and reports late: nothing changes.
    late = await store.finish(dead.run_id, OK, 32.0, DONE)
    assert late is not None and not late.applied and late.outcome is RunOutcome.LEASE_EXPIRED
    assert await store.artifacts(dead.run_id) == []
    done = await store.finish(alive.run_id, OK, 33.0, DONE)
    assert done is not None and done.applied
    runs = await store.runs("t")
    assert [r.outcome for r in runs] == [RunOutcome.LEASE_EXPIRED, RunOutcome.SUCCEEDED]


async def test_expired_lease_can_be_taken_over_by_claim(store: MemoryRunStore, spec: Spec) -> None:
    store.add(spec("t"))
    first = await store.claim("t", "w1", 0.0, lease_s=10.0)
    assert first is not None
    assert await store.renew_lease(first.run_id, "w1", 9.0, 10.0)
    assert await store.claim("t", "w2", 18.0, 10.0) is None  # renewed until 19
    taken = await store.claim("t", "w2", 19.0, 10.0)
    assert taken is not None and taken.attempt == 2


async def test_task_that_keeps_killing_workers_is_dead_lettered(
    store: MemoryRunStore, spec: Spec
) -> None:
    store.add(spec("t", max_attempts=2))
    for attempt, now in ((1, 0.0), (2, 100.0)):
        claim = await store.claim("t", "w", now, lease_s=10.0)
        assert claim is not None and claim.attempt == attempt
        await store.requeue_expired_leases(now + 10.0)
    rec = await store.get_task("t")
    assert rec is not None and rec.state is TaskState.DEAD_LETTERED
    assert "lease expired on attempt 2 of 2" in rec.cause


async def test_cancel_and_close_only_move_live_tasks(store: MemoryRunStore, spec: Spec) -> None:
    store.add(spec("a"))
    store.add(spec("b"))
    assert await store.cancel("a", 1.0, "user asked") is TaskState.CANCELLED
    assert await store.cancel("a", 2.0) is TaskState.CANCELLED
    assert not await store.dead_letter("a", 3.0, "too late")
    assert await store.refuse("b", 3.0, "agent disabled")
    rec = await store.get_task("b")
    assert rec is not None and rec.state is TaskState.FAILED and rec.cause == "agent disabled"
    assert await store.cancel("missing", 0.0) is None


async def test_cancelled_running_task_stops_renewing(store: MemoryRunStore, spec: Spec) -> None:
    store.add(spec("t"))
    claim = await store.claim("t", "w1", 0.0, 30.0)
    assert claim is not None
    await store.cancel("t", 1.0)
    assert not await store.renew_lease(claim.run_id, "w1", 2.0, 30.0)
    fin = await store.finish(claim.run_id, OK, 3.0, DONE)
    assert fin is not None and fin.task_state is TaskState.CANCELLED
