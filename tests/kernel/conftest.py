"""Fixtures of the kernel unit tests: virtual clock, in-memory store, scheduler factory.

Everything runs on a ``ManualClock``: no test waits on real time, and every
timeout, backoff and rate quota is driven by advancing virtual time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from kernel.clock import ManualClock
from kernel.events import MemoryEventSink
from kernel.fairshare import FairShare
from kernel.model import Priority, RetryPolicy, TaskSpec
from kernel.scheduler import Scheduler, SchedulerConfig
from kernel.store import MemoryRunStore
from kernel.testing import ScriptedRuntime, StaticAdmission


@pytest.fixture
def anyio_backend() -> str:
    """The kernel runs on asyncio."""
    return "asyncio"


def _spec(
    task_id: str,
    tenant: str = "t1",
    agent_id: str = "agent-1",
    priority: Priority = Priority.STANDARD,
    **extra: Any,
) -> TaskSpec:
    return TaskSpec(task_id=task_id, tenant=tenant, agent_id=agent_id, priority=priority, **extra)


@pytest.fixture
def spec() -> Callable[..., TaskSpec]:
    """``spec(task_id, tenant="t1", agent_id="agent-1", priority=STANDARD, **fields)``."""
    return _spec


@pytest.fixture
def clock() -> ManualClock:
    """Virtual time starting at 0."""
    return ManualClock()


@pytest.fixture
def store() -> MemoryRunStore:
    """An empty in-memory run store."""
    return MemoryRunStore()


@pytest.fixture
def events() -> MemoryEventSink:
    """Collects lifecycle events."""
    return MemoryEventSink()


@pytest.fixture
def admission() -> StaticAdmission:
    """Admits everything until told otherwise."""
    return StaticAdmission()


@pytest.fixture
def runtime(clock: ManualClock) -> ScriptedRuntime:
    """Succeeds instantly unless scripted."""
    return ScriptedRuntime(clock)


@pytest.fixture
def make_scheduler(
    clock: ManualClock,
    store: MemoryRunStore,
    events: MemoryEventSink,
    admission: StaticAdmission,
    runtime: ScriptedRuntime,
) -> Callable[..., Scheduler]:
    """``make_scheduler(worker_id="w1", fairshare=None, runtime=None, **config)``."""

    def make(
        worker_id: str = "w1",
        fairshare: FairShare | None = None,
        runtime_override: ScriptedRuntime | None = None,
        **config: Any,
    ) -> Scheduler:
        config.setdefault("retry", RetryPolicy(base_s=1.0, factor=2.0, cap_s=60.0, jitter=0.0))
        return Scheduler(
            store=store,
            runtime=runtime if runtime_override is None else runtime_override,
            clock=clock,
            events=events,
            admission=admission,
            config=SchedulerConfig(worker_id=worker_id, **config),
            fairshare=fairshare,
            random=random.Random(7).random,
        )

    return make
