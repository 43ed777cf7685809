"""The scheduler end to end on virtual time, with the in-memory twins."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kernel.clock import ManualClock
from kernel.events import EventKind, MemoryEventSink
from kernel.fairshare import FairShare
from kernel.model import Artifact, Priority, RunOutcome, RunResult, TaskSpec, TaskState, TenantQuota
from kernel.queue import MemoryJobQueue
from kernel.scheduler import Scheduler
from kernel.store import MemoryRunStore
from kernel.testing import ScriptedRuntime, StaticAdmission, Step, drive

pytestmark = pytest.mark.anyio

Spec = Callable[..., TaskSpec]
Make = Callable[..., Scheduler]
RETRYABLE = RunResult(outcome=RunOutcome.FAILED_RETRYABLE, cause="upstream 503")


async def _state(store: MemoryRunStore, task_id: str) -> tuple[TaskState, str]:
    rec = await store.get_task(task_id)
    assert rec is not None
    return rec.state, rec.cause


async def test_task_runs_and_succeeds_with_events(
    make_scheduler: Make, store: MemoryRunStore, events: MemoryEventSink, spec: Spec
) -> None:
    store.add(spec("t"))
    sched = make_scheduler()
    assert await sched.submit("t")
    assert not await sched.submit("t")  # a duplicate delivery collapses
    await sched.run_until_idle()
    assert await _state(store, "t") == (TaskState.SUCCEEDED, "")
    assert events.kinds("t") == [EventKind.QUEUED, EventKind.STARTED, EventKind.SUCCEEDED]
    assert not await sched.submit("t")  # finished tasks are never taken again


async def test_queued_is_not_emitted_again_where_the_submit_recorded_it(
    make_scheduler: Make, store: MemoryRunStore, events: MemoryEventSink, spec: Spec
) -> None:
    store.add(spec("t"))
    sched = make_scheduler(emit_queued=False)
    assert await sched.submit("t")
    await sched.run_until_idle()
    assert events.kinds("t") == [EventKind.STARTED, EventKind.SUCCEEDED]


async def test_poison_task_retries_with_backoff_then_dead_letters(
    make_scheduler: Make,
    store: MemoryRunStore,
    events: MemoryEventSink,
    runtime: ScriptedRuntime,
    clock: ManualClock,
    spec: Spec,
) -> None:
    store.add(spec("poison", max_attempts=4))
    runtime.script("poison", Step(duration=0.0, result=RETRYABLE))
    sched = make_scheduler()
    await sched.submit("poison")
    await drive(sched, clock)
    state, cause = await _state(store, "poison")
    assert state is TaskState.DEAD_LETTERED
    assert cause == "gave up after 4 of 4 attempts: upstream 503"
    retries = [e for e in events.events if e.kind is EventKind.RETRY]
    # base 1s, factor 2, no jitter: the waits are 1, 2, 4 seconds
    assert [(e.due_at or 0) - e.at for e in retries] == [1.0, 2.0, 4.0]
    starts = [e.at for e in events.events if e.kind is EventKind.STARTED]
    assert starts == [0.0, 1.0, 3.0, 7.0]
    assert events.kinds("poison")[-1] is EventKind.DEAD_LETTERED
    assert len(await store.runs("poison")) == 4


async def test_retryable_failure_then_success(
    make_scheduler: Make,
    store: MemoryRunStore,
    runtime: ScriptedRuntime,
    clock: ManualClock,
    spec: Spec,
) -> None:
    store.add(spec("flaky"))
    runtime.script(
        "flaky", Step(result=RETRYABLE), Step(result=RunResult(outcome=RunOutcome.SUCCEEDED))
    )
    sched = make_scheduler()
    await sched.submit("flaky")
    await drive(sched, clock)
    assert (await _state(store, "flaky"))[0] is TaskState.SUCCEEDED
    assert [r.outcome for r in await store.runs("flaky")] == [
        RunOutcome.FAILED_RETRYABLE,
        RunOutcome.SUCCEEDED,
    ]


async def test_permanent_failure_dead_letters_at_once(
    make_scheduler: Make,
    store: MemoryRunStore,
    runtime: ScriptedRuntime,
    clock: ManualClock,
    spec: Spec,
) -> None:
    store.add(spec("bad", max_attempts=5))
    bad = RunResult(outcome=RunOutcome.FAILED_PERMANENT, cause="exit code 2", exit_code=2)
    runtime.script("bad", Step(result=bad))
    sched = make_scheduler()
    await sched.submit("bad")
    await drive(sched, clock)
    assert await _state(store, "bad") == (TaskState.DEAD_LETTERED, "permanent failure: exit code 2")
    assert len(await store.runs("bad")) == 1


async def test_expired_task_is_dead_lettered_never_run(
    make_scheduler: Make,
    store: MemoryRunStore,
    runtime: ScriptedRuntime,
    clock: ManualClock,
    events: MemoryEventSink,
    spec: Spec,
) -> None:
    store.add(spec("late", not_after=5.0))
    clock.advance(5.0)
    sched = make_scheduler()
    await sched.submit("late")
    await sched.run_until_idle()
    state, cause = await _state(store, "late")
    assert state is TaskState.DEAD_LETTERED and cause.startswith("expired")
    assert runtime.starts == []
    assert events.kinds("late") == [EventKind.QUEUED, EventKind.DEAD_LETTERED]


async def test_timeout_cancels_the_run(
    make_scheduler: Make,
    store: MemoryRunStore,
    runtime: ScriptedRuntime,
    clock: ManualClock,
    spec: Spec,
) -> None:
    store.add(spec("slow", timeout_s=10.0, max_attempts=2))
    runtime.script("slow", Step(duration=None))  # hangs forever
    sched = make_scheduler()
    await sched.submit("slow")
    await drive(sched, clock)
    state, cause = await _state(store, "slow")
    assert state is TaskState.DEAD_LETTERED
    assert cause == "gave up after 2 of 2 attempts: timed out after 10s"
    runs = await store.runs("slow")
    assert [r.outcome for r in runs] == [RunOutcome.TIMED_OUT, RunOutcome.TIMED_OUT]
    assert len(runtime.cancelled) == 2 and runtime.active == {}


async def test_cancel_queued_task(
    make_scheduler: Make,
    store: MemoryRunStore,
    runtime: ScriptedRuntime,
    events: MemoryEventSink,
    spec: Spec,
) -> None:
    store.add(spec("q"))
    sched = make_scheduler(concurrency=1)
    await sched.submit("q")
    assert await sched.cancel("q") is TaskState.CANCELLED
    await sched.run_until_idle()
    assert runtime.starts == []
    assert events.kinds("q") == [EventKind.QUEUED, EventKind.CANCELLED]
    assert sched.idle


async def test_cancel_running_task_stops_the_runtime(
    make_scheduler: Make,
    store: MemoryRunStore,
    runtime: ScriptedRuntime,
    events: MemoryEventSink,
    spec: Spec,
) -> None:
    store.add(spec("r"))
    runtime.script("r", Step(duration=None))
    sched = make_scheduler()
    await sched.submit("r")
    await sched.run_until_idle()
    assert sched.running == ["r"]
    assert await sched.cancel("r", "operator said stop") is TaskState.CANCELLED
    await sched.run_until_idle()
    assert sched.running == []
    assert runtime.cancelled == [runtime.starts[0][1]]
    assert await _state(store, "r") == (TaskState.CANCELLED, "operator said stop")
    assert [r.outcome for r in await store.runs("r")] == [RunOutcome.CANCELLED]
    assert events.kinds("r")[-1] is EventKind.CANCELLED
    assert events.kinds("r").count(EventKind.CANCELLED) == 1


async def test_admission_refused_at_start_is_a_terminal_failure(
    make_scheduler: Make,
    store: MemoryRunStore,
    runtime: ScriptedRuntime,
    admission: StaticAdmission,
    events: MemoryEventSink,
    spec: Spec,
) -> None:
    store.add(spec("t", agent_id="gone"))
    store.add(spec("ok", agent_id="fine"))
    admission.refuse("gone", "agent `gone` is not deployed")
    sched = make_scheduler()
    await sched.submit("t")
    await sched.submit("ok")
    await sched.run_until_idle()
    assert await _state(store, "t") == (
        TaskState.FAILED,
        "refused at start: agent `gone` is not deployed",
    )
    assert [task for task, _ in runtime.starts] == ["ok"]
    assert events.kinds("t") == [EventKind.QUEUED, EventKind.FAILED]
    assert set(admission.checked) == {"t", "ok"}


async def test_tenant_limited_to_two_never_has_a_third_running(
    make_scheduler: Make, store: MemoryRunStore, clock: ManualClock, spec: Spec
) -> None:
    seen: list[int] = []

    def check(rt: ScriptedRuntime) -> None:
        seen.append(rt.active_by_tenant()["A"])  # recorded at every start, checked below

    runtime = ScriptedRuntime(clock, default=Step(duration=3.0), on_start=check)
    fair = FairShare(tenant_quotas={"A": TenantQuota(max_concurrent=2)})
    for i in range(12):
        store.add(spec(f"a{i}", tenant="A", agent_id=f"agent-{i % 3}"))
    store.add(spec("b0", tenant="B"))
    sched = make_scheduler(concurrency=8, fairshare=fair, runtime_override=runtime)
    for i in range(12):
        await sched.submit(f"a{i}")
    await sched.submit("b0")
    await drive(sched, clock)
    assert len(seen) == 13  # every start was observed (12 of A, 1 of B)
    assert all(running <= 2 for running in seen)
    assert max(seen) == 2  # the limit was reached, so the check is not vacuous
    states = [(await _state(store, f"a{i}"))[0] for i in range(12)]
    assert states == [TaskState.SUCCEEDED] * 12


async def test_fair_share_through_the_scheduler(
    make_scheduler: Make, store: MemoryRunStore, clock: ManualClock, spec: Spec
) -> None:
    # Bound: with 4 slots full of tenant A's 10-second tasks, B's task starts
    # when the first slot frees (t = 10s), ahead of A's remaining 996 tasks.
    runtime = ScriptedRuntime(clock, default=Step(duration=10.0))
    for i in range(1000):
        store.add(spec(f"a{i}", tenant="A", priority=Priority.BULK))
    store.add(spec("b", tenant="B", priority=Priority.BULK))
    sched = make_scheduler(concurrency=4, runtime_override=runtime)
    for i in range(1000):
        await sched.submit(f"a{i}")
    await sched.run_until_idle()
    await sched.submit("b")
    await sched.run_until_idle()
    clock.advance_to(10.0)
    await sched.run_until_idle()
    order = [task for task, _ in runtime.starts]
    assert order.index("b") <= 4 + 1  # 4 slots of A, then at most one more A start
    assert "b" in sched.running


async def test_rate_quota_spaces_starts_on_virtual_time(
    make_scheduler: Make,
    store: MemoryRunStore,
    clock: ManualClock,
    events: MemoryEventSink,
    spec: Spec,
) -> None:
    fair = FairShare(tenant_quotas={"A": TenantQuota(max_starts_per_minute=6, burst=1)})
    for i in range(3):
        store.add(spec(f"a{i}", tenant="A"))
    sched = make_scheduler(fairshare=fair)
    for i in range(3):
        await sched.submit(f"a{i}")
    await drive(sched, clock)
    starts = [e.at for e in events.events if e.kind is EventKind.STARTED]
    assert starts == [0.0, 10.0, 20.0]


async def test_killed_worker_task_is_rerun_and_succeeds_exactly_once(
    make_scheduler: Make, store: MemoryRunStore, clock: ManualClock, spec: Spec
) -> None:
    out = RunResult(outcome=RunOutcome.SUCCEEDED, outputs=(Artifact.of("report.txt", b"done"),))
    hang = ScriptedRuntime(clock, default=Step(duration=None))
    quick = ScriptedRuntime(clock, default=Step(duration=1.0, result=out))
    store.add(spec("t", max_attempts=3))
    doomed = make_scheduler("w1", lease_s=30.0, runtime_override=hang)
    await doomed.submit("t")
    await doomed.run_until_idle()
    await doomed.shutdown()  # SIGKILL: no result, no more heartbeats
    survivor = make_scheduler("w2", lease_s=30.0, runtime_override=quick)
    assert await survivor.recover() == 0  # the lease is still live
    clock.advance(30.0)
    assert await survivor.recover() == 1
    await drive(survivor, clock)
    assert not await survivor.submit("t")  # a redelivered job does nothing
    runs = await store.runs("t")
    assert [r.outcome for r in runs] == [RunOutcome.LEASE_EXPIRED, RunOutcome.SUCCEEDED]
    assert [r.worker_id for r in runs] == ["w1", "w2"]
    arts = [a for r in runs for a in await store.artifacts(r.run_id)]
    assert [(a.name, a.data) for a in arts] == [("report.txt", b"done")]
    assert (await _state(store, "t"))[0] is TaskState.SUCCEEDED


async def test_heartbeats_keep_a_long_run_alive(
    make_scheduler: Make, store: MemoryRunStore, clock: ManualClock, spec: Spec
) -> None:
    long = ScriptedRuntime(clock, default=Step(duration=100.0))
    store.add(spec("t", timeout_s=500.0))
    sched = make_scheduler(lease_s=30.0, runtime_override=long)
    await sched.submit("t")
    await drive(sched, clock)
    assert await store.requeue_expired_leases(clock.now()) == []
    assert [r.outcome for r in await store.runs("t")] == [RunOutcome.SUCCEEDED]


async def test_runtime_exception_is_a_retryable_failure(
    make_scheduler: Make, store: MemoryRunStore, clock: ManualClock, spec: Spec
) -> None:
    class Broken:
        async def run(self, task: TaskSpec, ctx: object) -> RunResult:
            raise OSError("disk full")

    store.add(spec("t", max_attempts=1))
    sched = make_scheduler()
    sched.runtime = Broken()
    await sched.submit("t")
    await drive(sched, clock)
    assert await _state(store, "t") == (
        TaskState.DEAD_LETTERED,
        "gave up after 1 of 1 attempts: runtime error: OSError: disk full",
    )


async def test_serve_consumes_the_queue_and_acks_after_the_store(
    make_scheduler: Make, store: MemoryRunStore, spec: Spec
) -> None:
    import asyncio

    from kernel.clock import SystemClock

    queue = MemoryJobQueue()
    for i in range(3):
        store.add(spec(f"t{i}"))
        assert await queue.enqueue(f"t{i}", {})
    assert not await queue.enqueue("t0", {})  # duplicate collapses on the job id
    sched = make_scheduler(sweep_s=3600.0)
    sched.clock = SystemClock()
    stop = asyncio.Event()
    serving = asyncio.create_task(sched.serve(queue, stop))
    for _ in range(200):
        states = [(await _state(store, f"t{i}"))[0] for i in range(3)]
        if all(s is TaskState.SUCCEEDED for s in states) and not queue.in_flight:
            break
        await asyncio.sleep(0)
    stop.set()
    await serving
    assert states == [TaskState.SUCCEEDED] * 3
    assert queue.in_flight == []
    assert not await queue.enqueue("t1", {})  # done ids are remembered


async def test_intake_puts_a_tenant_behind_anothers_backlog_into_the_fair_share(
    make_scheduler: Make, store: MemoryRunStore, events: MemoryEventSink, spec: Spec
) -> None:
    # The queue delivered only tenant a's backlog; b's task is in the store alone (its job
    # sits behind a's in a FIFO queue). The intake takes each tenant's oldest pending tasks.
    backlog = [f"a{n}" for n in range(20)]
    for n, task_id in enumerate(backlog):
        store.add(spec(task_id, tenant="a", priority=Priority.BULK, submitted_at=float(n)))
    store.add(spec("b", tenant="b", submitted_at=100.0))
    sched = make_scheduler(concurrency=1)
    for task_id in backlog:
        assert await sched.submit(task_id)
    assert await sched.intake() == 1  # b; a's oldest are already taken in
    await sched.run_until_idle()
    started = [e.task_id for e in events.events if e.kind is EventKind.STARTED]
    assert sorted(started) == sorted([*backlog, "b"])
    assert started.index("b") <= 1  # at most one of a's runs before b's: one slot


async def test_a_sweep_that_dead_letters_a_task_says_so(
    make_scheduler: Make,
    store: MemoryRunStore,
    events: MemoryEventSink,
    clock: ManualClock,
    spec: Spec,
) -> None:
    store.add(spec("t", max_attempts=1))
    assert await store.claim("t", "dead-worker", clock.now(), lease_s=30.0) is not None
    clock.advance(31.0)  # the worker died; its lease lapsed on its only attempt
    await make_scheduler("w2").recover()
    assert await _state(store, "t") == (
        TaskState.DEAD_LETTERED,
        "lease expired on attempt 1 of 1",
    )
    assert events.kinds("t") == [EventKind.DEAD_LETTERED]


async def test_a_claim_that_dead_letters_a_task_says_so_once(
    make_scheduler: Make,
    store: MemoryRunStore,
    events: MemoryEventSink,
    clock: ManualClock,
    spec: Spec,
) -> None:
    store.add(spec("t", max_attempts=1))
    assert await store.claim("t", "dead-worker", clock.now(), lease_s=30.0) is not None
    clock.advance(31.0)  # the worker died; its job comes back before any sweep runs
    sched = make_scheduler("w2")
    assert await sched.submit("t") is True  # a running task whose lease lapsed is taken in
    await sched.run_until_idle()
    assert await _state(store, "t") == (
        TaskState.DEAD_LETTERED,
        "lease expired on attempt 1 of 1",
    )
    assert events.kinds("t") == [EventKind.DEAD_LETTERED]
    # Submitted again (a redelivered job), the finished task says nothing more.
    assert await sched.submit("t") is False
    assert events.kinds("t") == [EventKind.DEAD_LETTERED]
