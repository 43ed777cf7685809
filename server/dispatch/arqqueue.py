"""`ArqJobQueue`: the kernel's `JobQueue` on arq (Redis). arq is imported here and nowhere else.

Producer: ``enqueue(job_id, payload)`` is arq's ``enqueue_job("deliver", job_id,
payload, _job_id=job_id)``. arq answers None when a job with that id is
queued, running, or finished with its result still kept (``keep_result_s``):
that is the collapse of a duplicate, reported as False.

Consumer: an arq ``Worker`` runs in the caller's event loop. Its one job
function, ``deliver``, hands a kernel :class:`~kernel.Job` (``delivery`` =
arq's ``job_try``) to ``receive`` through an asyncio queue, then waits until
the scheduler calls ``ack(job_id)``; returning completes the arq job. A job
whose worker dies is not acknowledged: arq runs it again once its in-progress
key expires (``job_timeout_s`` + 10 s), and long before that the store sweep of
the surviving workers (``Scheduler.recover``) has picked the task up: the
store, not Redis, is the source of truth.

``job_timeout_s`` bounds how long one delivery may wait for its ack: the
task's queueing behind quotas, every attempt with its timeout, and the retry
backoffs between them. The default (6 h) is far above any task this server
accepts; a delivery cut off by it only loses the arq job, never the task.

When Redis goes away the arq worker stops; it is started again (with a
growing pause, up to 5 s) until ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker, func

from kernel import Job

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "aion:dispatch"
FUNCTION = "deliver"


#: How long ``close`` lets acknowledged jobs finish recording their end in Redis.
FINISH_WAIT_S = 5.0


class ArqJobQueue:
    """Producer and consumer sides of dispatch on one Redis (see the module docstring)."""

    def __init__(
        self,
        redis_url: str,
        queue_name: str = DEFAULT_QUEUE,
        *,
        poll_delay_s: float = 0.05,
        max_jobs: int = 64,
        job_timeout_s: float = 6 * 3600,
        keep_result_s: float = 3600,
        max_tries: int = 1000,
    ) -> None:
        self.redis_url = redis_url
        self.queue_name = queue_name
        self.poll_delay_s = poll_delay_s
        self.max_jobs = max_jobs
        self.job_timeout_s = job_timeout_s
        self.keep_result_s = keep_result_s
        self.max_tries = max_tries
        self._settings = RedisSettings.from_dsn(redis_url)
        self._producer: ArqRedis | None = None
        self._inbox: asyncio.Queue[Job] = asyncio.Queue()
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._worker: Worker | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._closed = False
        self._picking = True

    # -- producer ------------------------------------------------------------------

    async def _pool(self) -> ArqRedis:
        if self._producer is None:
            self._producer = await create_pool(self._settings, default_queue_name=self.queue_name)
        return self._producer

    async def enqueue(self, job_id: str, payload: Mapping[str, Any]) -> bool:
        """Queue a job; False when a job with this id exists (queued, running or kept done)."""
        pool = await self._pool()
        job = await pool.enqueue_job(
            FUNCTION, job_id, dict(payload), _job_id=job_id, _queue_name=self.queue_name
        )
        return job is not None

    # -- consumer ------------------------------------------------------------------

    async def _deliver(self, ctx: dict[str, Any], job_id: str, payload: dict[str, Any]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = done
        try:
            await self._inbox.put(Job(job_id=job_id, payload=payload, delivery=ctx["job_try"]))
            await done
        finally:
            if self._waiting.get(job_id) is done:
                del self._waiting[job_id]

    def _make_worker(self) -> Worker:
        return Worker(
            [func(self._deliver, name=FUNCTION)],
            queue_name=self.queue_name,
            redis_settings=self._settings,
            handle_signals=False,
            max_jobs=self.max_jobs,
            job_timeout=self.job_timeout_s,
            keep_result=self.keep_result_s,
            poll_delay=self.poll_delay_s,
            max_tries=self.max_tries,
            retry_jobs=True,
            log_results=False,
        )

    async def _consume(self) -> None:
        pause = 0.1
        while not self._closed:
            worker = self._worker = self._make_worker()
            worker.allow_pick_jobs = self._picking
            try:
                await worker.async_run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("arq worker stopped (%s: %s); restarting", type(exc).__name__, exc)
            await _close_worker(worker)
            await asyncio.sleep(pause)
            pause = min(5.0, pause * 2)

    def start(self) -> None:
        """Start consuming (``receive`` starts it too)."""
        if self._consumer is None and not self._closed:
            self._consumer = asyncio.get_running_loop().create_task(self._consume())

    async def receive(self, timeout: float | None = None) -> Job | None:
        """The next delivered job, waiting up to ``timeout`` seconds; None on timeout."""
        self.start()
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout)
        except TimeoutError:
            return None

    async def ack(self, job_id: str) -> None:
        """The job is done: its delivery returns and arq completes it."""
        done = self._waiting.pop(job_id, None)
        if done is not None and not done.done():
            done.set_result(None)

    @property
    def in_flight(self) -> list[str]:
        """Ids delivered and not yet acknowledged."""
        return list(self._waiting)

    def stop_receiving(self) -> None:
        """Take no new jobs (a graceful stop); deliveries in flight still complete on ack."""
        self._picking = False
        if self._worker is not None:
            self._worker.allow_pick_jobs = False

    async def close(self) -> None:
        """Stop the worker: unacknowledged deliveries are cancelled, so arq queues them again.

        Acknowledged ones are left to finish first (bounded): arq records a job's end
        in a shielded step that cancelling does not stop, and closing the connections
        under it would fail it.
        """
        self._closed = True
        worker = self._worker
        if worker is not None:
            worker.allow_pick_jobs = False
            finishing = [
                task
                for job_id, task in worker.tasks.items()
                if job_id not in self._waiting and not task.done()
            ]
            if finishing:
                await asyncio.wait(finishing, timeout=FINISH_WAIT_S)
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        if self._worker is not None:
            await _close_worker(self._worker)
        if self._producer is not None:
            await self._producer.aclose()
            self._producer = None


async def _close_worker(worker: Worker) -> None:
    """Stop an arq worker: cancel its deliveries (arq re-queues them), close its connections.

    Not ``Worker.close``: that closes the pool through a call redis-py 5 deprecates.
    """
    running = [t for t in worker.tasks.values() if not t.done()]
    for task in running:
        task.cancel()
    if worker.main_task is not None:
        worker.main_task.cancel()
        running.append(worker.main_task)
    await asyncio.gather(*running, return_exceptions=True)
    pool = worker._pool
    if pool is not None:
        with contextlib.suppress(Exception):
            await pool.delete(worker.health_check_key)
        with contextlib.suppress(Exception):
            await pool.aclose()
        worker._pool = None


__all__ = ["DEFAULT_QUEUE", "ArqJobQueue"]
