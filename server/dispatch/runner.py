"""Dispatch inside a server process: the outbox relay always, the scheduler in embedded mode.

``settings.dispatch`` picks the mode (``auto`` resolves to ``queue`` with a Redis URL,
else ``embedded``):

- ``embedded``: committed tasks go from the outbox to an in-process queue and a kernel
  scheduler in the same event loop runs them. Several server workers each run one; the
  store's claim keeps a task from running twice.
- ``queue``: the relay sends committed tasks to arq on Redis; ``aion worker`` processes
  run them. Cancelling marks the task; the worker holding it stops the run at its next
  lease renewal.
- ``off``: tasks are stored with their outbox rows and nothing here moves them (another
  process runs ``aion relay``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kernel import JobQueue, MemoryJobQueue, Scheduler
from server.dispatch.outbox import OutboxRelay
from server.dispatch.port import cancel_stored
from server.dispatch.worker import build_scheduler
from server.settings import Settings
from server.state import Services

log = logging.getLogger("aion.dispatch")


def dispatch_mode(settings: Settings) -> str:
    """The effective mode: ``embedded``, ``queue`` or ``off``."""
    mode = settings.dispatch
    if mode == "auto":
        return "queue" if settings.redis_url else "embedded"
    if mode not in ("embedded", "queue", "off"):
        raise ValueError(f"AION_DISPATCH must be auto, embedded, queue or off, not `{mode}`")
    if mode == "queue" and not settings.redis_url:
        raise ValueError("AION_DISPATCH=queue needs AION_REDIS_URL")
    return mode


@dataclass
class ServerDispatch:
    """The relay (and, embedded, the scheduler) of one server process; a ``DispatchPort``."""

    relay: OutboxRelay | None
    queue: JobQueue | None
    scheduler: Scheduler | None
    close_queue: Callable[[], Awaitable[None]] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def kick(self) -> None:
        if self.relay is not None:
            self.relay.kick()

    async def cancel(self, task_id: str, cause: str) -> str | None:
        if self.scheduler is None:  # queue mode: the worker holding it stops at its next renewal
            return await cancel_stored(task_id, cause)
        state = await self.scheduler.cancel(task_id, cause)
        return None if state is None else state.value

    async def start(self) -> None:
        """Start the relay and the scheduler on the running loop (the app's start-up)."""
        self._stop = asyncio.Event()
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(self._stop)))
        if self.scheduler is not None and self.queue is not None:
            self._tasks.append(asyncio.create_task(self.scheduler.serve(self.queue, self._stop)))

    async def stop(self) -> None:
        """Stop taking work; running runs are abandoned to their leases (the app's shutdown)."""
        self._stop.set()
        if self.scheduler is not None:
            await self.scheduler.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.close_queue is not None:  # the arq queue's Redis connections
            await self.close_queue()


def build_dispatch(services: Services) -> ServerDispatch | None:
    """What this server process runs for dispatch (None for ``off``)."""
    settings = services.settings
    mode = dispatch_mode(settings)
    if mode == "off":
        return None
    if mode == "queue":
        from server.dispatch.arqqueue import ArqJobQueue  # noqa: PLC0415  (needs Redis)

        arq = ArqJobQueue(settings.redis_url)
        relay = OutboxRelay(arq, settings)
        return ServerDispatch(relay=relay, queue=None, scheduler=None, close_queue=arq.close)
    memory = MemoryJobQueue()
    scheduler = build_scheduler(services)
    return ServerDispatch(relay=OutboxRelay(memory, settings), queue=memory, scheduler=scheduler)
