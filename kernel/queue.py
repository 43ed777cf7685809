"""The job queue port between the outbox relay and the workers.

Semantics every implementation keeps (the arq adapter in ``server/`` included):

- **Job id = task id.** ``enqueue`` is idempotent on the job id: while a job
  with that id is waiting, in flight or remembered as done, another enqueue
  collapses into it and returns False. The relay and its reconciler may
  therefore re-send freely.
- **At-least-once delivery.** ``receive`` hands a job out; it is delivered
  again (``delivery`` counts up) when it is not acknowledged, e.g. because the
  worker died. The scheduler is idempotent per task id (the store's ``claim``
  refuses a task that is running or finished), so a redelivered job never runs
  a task twice.
- **Ack after the store.** A worker acknowledges a job only once the store
  holds the task's next state (claimed, finished, or waiting for a retry); the
  store, not the queue, is the source of truth, and a periodic sweep of the
  store recovers anything a queue lost.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from kernel.model import Base


class Job(Base, frozen=True):
    """One delivery of a job."""

    job_id: str
    payload: Mapping[str, Any]
    delivery: int = 1
    """1 on the first delivery, 2 on the first redelivery, ..."""


class JobQueue(Protocol):
    """Producer and consumer sides of the dispatch queue."""

    async def enqueue(self, job_id: str, payload: Mapping[str, Any]) -> bool:
        """Add a job; False when a job with this id already exists (duplicate collapsed)."""
        ...

    async def receive(self, timeout: float | None = None) -> Job | None:
        """The next job, waiting up to ``timeout`` seconds (None: forever); None on timeout."""
        ...

    async def ack(self, job_id: str) -> None:
        """The job is done; it will not be delivered again."""
        ...


class MemoryJobQueue:
    """In-process queue for the embedded mode and tests.

    ``redeliver_unacked()`` stands in for the visibility timeout of a real
    broker: it puts every job handed out but not acknowledged back in line, as
    happens when a worker dies.
    """

    def __init__(self, remember_done: int = 100_000) -> None:
        self._waiting: OrderedDict[str, Job] = OrderedDict()
        self._in_flight: dict[str, Job] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._remember_done = remember_done
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def in_flight(self) -> list[str]:
        """Ids handed out and not yet acknowledged."""
        return list(self._in_flight)

    async def enqueue(self, job_id: str, payload: Mapping[str, Any]) -> bool:
        if job_id in self._waiting or job_id in self._in_flight or job_id in self._done:
            return False
        self._waiting[job_id] = Job(job_id=job_id, payload=dict(payload))
        self._ready.set()
        return True

    async def receive(self, timeout: float | None = None) -> Job | None:
        while not self._waiting:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        _, job = self._waiting.popitem(last=False)
        self._in_flight[job.job_id] = job
        return job

    async def ack(self, job_id: str) -> None:
        if self._in_flight.pop(job_id, None) is None:
            return
        self._done[job_id] = None
        while len(self._done) > self._remember_done:
            self._done.popitem(last=False)

    def redeliver_unacked(self) -> int:
        """Return every unacknowledged job to the queue (worker death); how many."""
        jobs = list(self._in_flight.values())
        self._in_flight.clear()
        for job in jobs:
            self._waiting[job.job_id] = Job(
                job_id=job.job_id, payload=job.payload, delivery=job.delivery + 1
            )
        if jobs:
            self._ready.set()
        return len(jobs)
