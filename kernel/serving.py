"""The production loop of a :class:`~kernel.scheduler.Scheduler` (one worker).

Jobs come from a :class:`~kernel.queue.JobQueue` (the fast path); besides them the
loop re-reads the store: a sweep for lost work every ``sweep_s`` (runs of dead
workers, queued tasks whose job was lost) and each tenant's oldest pending tasks
every ``intake_s`` (a queue delivers in arrival order; the intake lets the fair
share see a tenant's single task behind another's backlog). A failing round (a
database blip) is logged and tried again after a pause; it never stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from kernel.clock import first_completed
from kernel.queue import JobQueue

if TYPE_CHECKING:
    from kernel.scheduler import Scheduler

log = logging.getLogger("aion.kernel")

#: Pause of the serving loop after a failed round (a database blip), before the next.
ERROR_PAUSE_S = 1.0


async def serve(scheduler: Scheduler, queue: JobQueue, stop: asyncio.Event) -> None:
    """Take jobs from ``queue`` and run them until ``stop`` is set."""
    receiver = asyncio.create_task(_receive(scheduler, queue))
    clock, config = scheduler.clock, scheduler.config
    last_sweep: float | None = None
    last_intake = clock.now()
    intake_s = config.intake_s
    try:
        while not stop.is_set():
            now = clock.now()
            try:
                if last_sweep is None or now - last_sweep >= config.sweep_s:
                    await scheduler.recover()
                    last_sweep = last_intake = now
                elif intake_s is not None and now - last_intake >= intake_s:
                    await scheduler.intake()
                    last_intake = now
                scheduler.forget_news()
                await scheduler.pump()
            except Exception as exc:  # a database blip must not stop the worker
                log.warning("scheduling round failed, trying again: %s", exc)
                await first_completed(stop.wait(), clock.sleep(ERROR_PAUSE_S))
                continue
            wake_at = last_sweep + config.sweep_s
            if intake_s is not None:
                wake_at = min(wake_at, last_intake + intake_s)
            due = scheduler.next_wakeup()
            if due is not None:
                wake_at = min(wake_at, due)
            await scheduler.wait_for_news(stop.wait(), seconds=wake_at - now)
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)


async def _receive(scheduler: Scheduler, queue: JobQueue) -> None:
    while True:
        try:
            job = await queue.receive()
            if job is not None:
                await scheduler.take_job(queue, job.job_id)
        except Exception as exc:  # unacknowledged: the job comes again; the sweep finds it
            log.warning("job not taken in: %s", exc)
            await scheduler.clock.sleep(ERROR_PAUSE_S)


__all__ = ["ERROR_PAUSE_S", "serve"]
