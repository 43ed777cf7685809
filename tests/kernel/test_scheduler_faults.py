"""A store that fails now and then (a database blip) neither loses, doubles nor cancels work,
and never stops the scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from kernel.clock import ManualClock
from kernel.events import EventKind, MemoryEventSink
from kernel.model import RunOutcome, TaskSpec, TaskState
from kernel.queue import MemoryJobQueue
from kernel.scheduler import Scheduler, SchedulerConfig
from kernel.store import MemoryRunStore
from kernel.testing import ScriptedRuntime, StaticAdmission, Step, drive

pytestmark = pytest.mark.anyio


class Flaky:
    """``MemoryRunStore`` whose named methods raise on their first ``times`` calls."""

    def __init__(self, store: MemoryRunStore, **failures: int) -> None:
        self.store = store
        self.failures = dict(failures)
        self.raised: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if name not in self.failures:
            return method

        async def call(*args: Any) -> Any:
            if self.raised.get(name, 0) < self.failures[name]:
                self.raised[name] = self.raised.get(name, 0) + 1
                raise ConnectionError(f"database away during {name}")
            return await method(*args)

        return call


def _scheduler(
    flaky: Flaky,
    clock: ManualClock,
    events: MemoryEventSink,
    runtime: ScriptedRuntime,
    **config: Any,
) -> Scheduler:
    return Scheduler(
        store=flaky,  # type: ignore[arg-type]
        runtime=runtime,
        clock=clock,
        events=events,
        admission=StaticAdmission(),
        config=SchedulerConfig(worker_id="w1", **config),
    )


async def test_a_failed_lease_renewal_does_not_cancel_the_task(
    store: MemoryRunStore,
    clock: ManualClock,
    events: MemoryEventSink,
    spec: Callable[..., TaskSpec],
) -> None:
    store.add(spec("t", timeout_s=500.0))
    long = ScriptedRuntime(clock, default=Step(duration=100.0))
    flaky = Flaky(store, renew_lease=1)
    sched = _scheduler(flaky, clock, events, long, lease_s=30.0)
    await sched.submit("t")
    await drive(sched, clock)
    assert flaky.raised == {"renew_lease": 1}
    rec = await store.get_task("t")
    assert rec is not None and rec.state is TaskState.SUCCEEDED
    assert [r.outcome for r in await store.runs("t")] == [RunOutcome.SUCCEEDED]
    assert EventKind.CANCELLED not in events.kinds("t")


async def test_a_failed_finish_is_tried_again_and_frees_its_slot(
    store: MemoryRunStore,
    clock: ManualClock,
    events: MemoryEventSink,
    spec: Callable[..., TaskSpec],
) -> None:
    for task_id in ("t0", "t1"):
        store.add(spec(task_id))
    quick = ScriptedRuntime(clock, default=Step(duration=1.0))
    flaky = Flaky(store, finish=2)
    sched = _scheduler(flaky, clock, events, quick, concurrency=1)
    for task_id in ("t0", "t1"):
        await sched.submit(task_id)
    await drive(sched, clock)
    assert flaky.raised == {"finish": 2}
    for task_id in ("t0", "t1"):
        rec = await store.get_task(task_id)
        assert rec is not None and rec.state is TaskState.SUCCEEDED, task_id
        assert len(await store.runs(task_id)) == 1  # recorded once, not run again
    assert sched.running == []


async def test_a_failed_round_does_not_stop_serving(
    store: MemoryRunStore,
    clock: ManualClock,
    events: MemoryEventSink,
    spec: Callable[..., TaskSpec],
) -> None:
    store.add(spec("t"))
    flaky = Flaky(store, claim=1)
    sched = _scheduler(flaky, clock, events, ScriptedRuntime(clock), intake_s=None)
    queue, stop = MemoryJobQueue(), asyncio.Event()
    await queue.enqueue("t", {})
    serving = asyncio.create_task(sched.serve(queue, stop))
    for _ in range(1000):  # virtual time: each pass lets the loop run, then moves the clock
        await asyncio.sleep(0)
        rec = await store.get_task("t")
        if rec is not None and rec.state is TaskState.SUCCEEDED:
            break
        deadline = clock.next_deadline()
        if deadline is not None:
            clock.advance_to(deadline)
    stop.set()
    await serving
    assert flaky.raised == {"claim": 1}
    rec = await store.get_task("t")
    assert rec is not None and rec.state is TaskState.SUCCEEDED
