"""The outbox relay and its reconciler: committed tasks reach the job queue, and stay there.

The API's submit commits a ``tasks`` row and an ``outbox`` row (``sent_at``
NULL) with the ``task.submit`` decision. The relay moves unsent rows to the
:class:`kernel.JobQueue`, oldest first and in batches, with the task id as the
job id: it **enqueues before it marks** the row sent, so a crash in between
only sends the row again, and the duplicate collapses on the job id.

The reconciler covers what a queue can lose (a Redis restart or flush, a job
cut off by its timeout): a task still ``queued`` (or ``retry_wait`` and due)
whose outbox row was sent more than ``reconcile_s`` ago is enqueued again, and
its row's ``sent_at`` moves to now. Queued work that is merely waiting in a
healthy queue collapses into its existing job, so re-sending is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from kernel import JobQueue, TaskState
from kernel.clock import first_completed
from server.auth import utcnow
from server.db.tables import Outbox, Task
from server.settings import Settings

log = logging.getLogger(__name__)


class OutboxRelay:
    """Sends committed outbox rows to ``queue``; re-sends what the queue lost."""

    def __init__(self, queue: JobQueue, settings: Settings, batch: int = 200) -> None:
        self.queue = queue
        self.poll_s = settings.relay_poll_s
        self.reconcile_s = settings.reconcile_s
        self.batch = batch
        self._kicked = asyncio.Event()

    def kick(self) -> None:
        """Rows were committed: relay now rather than at the next poll."""
        self._kicked.set()

    async def _send(self, jobs: list[tuple[str, str]]) -> list[bool]:
        """Enqueue (task id, tenant) pairs in order; whether each made a new job."""
        return [await self.queue.enqueue(task_id, {"tenant": tenant}) for task_id, tenant in jobs]

    async def _mark_sent(self, outbox_ids: list[str]) -> None:
        if outbox_ids:
            values: dict[Any, Any] = {
                Outbox.sent_at: utcnow(),
                Outbox.attempts: Outbox.attempts + 1,
            }
            await Outbox.update(values).where(Outbox.id.is_in(outbox_ids))

    async def relay_once(self) -> int:
        """Send every unsent row (oldest first, in batches); how many rows were sent."""
        sent = 0
        while True:
            rows = await (
                Outbox.select(Outbox.id, Outbox.task_id, Outbox.tenant)
                .where(Outbox.sent_at.is_null())
                .order_by(Outbox.created_at, Outbox.id)
                .limit(self.batch)
            )
            if not rows:
                return sent
            await self._send([(r["task_id"], r["tenant"]) for r in rows])
            await self._mark_sent([r["id"] for r in rows])
            sent += len(rows)
            if len(rows) < self.batch:
                return sent

    async def _waiting_tasks(self, now: float) -> list[dict[str, Any]]:
        due = Task.due_at.is_null() | (Task.due_at <= now)
        where = (Task.status == TaskState.QUEUED.value) | (
            (Task.status == TaskState.RETRY_WAIT.value) & due
        )
        rows = await Task.select(Task.id, Task.tenant).where(where).order_by(Task.submitted_at)
        return [dict(r) for r in rows]

    async def reconcile_once(self, now: float | None = None) -> int:
        """Re-send waiting tasks sent more than ``reconcile_s`` before ``now`` (epoch seconds);
        how many became new jobs (the others were still in the queue)."""
        now = time.time() if now is None else now
        cutoff = datetime.fromtimestamp(now - self.reconcile_s, UTC)
        tasks = await self._waiting_tasks(now)
        created = 0
        for start in range(0, len(tasks), self.batch):
            chunk = {t["id"]: t["tenant"] for t in tasks[start : start + self.batch]}
            stale = await Outbox.select(Outbox.id, Outbox.task_id).where(
                Outbox.task_id.is_in(list(chunk))
                & Outbox.sent_at.is_not_null()
                & (Outbox.sent_at < cutoff)
            )
            if not stale:
                continue
            made = await self._send([(r["task_id"], chunk[r["task_id"]]) for r in stale])
            await self._mark_sent([r["id"] for r in stale])
            created += sum(made)
        if created:
            log.info("reconciler re-enqueued %d task(s) the queue had lost", created)
        return created

    async def run(self, stop: asyncio.Event) -> None:
        """Relay on every kick and every ``relay_poll_s``; reconcile every ``reconcile_s``."""
        last_reconcile = time.monotonic()
        while not stop.is_set():
            self._kicked.clear()
            try:
                await self.relay_once()
                if time.monotonic() - last_reconcile >= self.reconcile_s:
                    last_reconcile = time.monotonic()
                    await self.reconcile_once()
            except Exception as exc:  # the queue or database is down: try again at the next poll
                log.warning("outbox relay failed (%s: %s); retrying", type(exc).__name__, exc)
            await first_completed(self._kicked.wait(), stop.wait(), asyncio.sleep(self.poll_s))


__all__ = ["OutboxRelay"]
