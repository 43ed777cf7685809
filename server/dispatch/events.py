"""`DbEventSink`: the kernel's lifecycle events as rows of the ``events`` table.

Each event is one row: ``kind`` the event kind (``queued``, ``started``,
``retry``, ``succeeded``, ``failed``, ``cancelled``, ``dead_lettered``),
``subject`` the task id, ``tenant`` the task's tenant, and a payload with the
run id, attempt, detail (the cause), agent id and retry due time. Every row
gets the tenant's next ``seq`` under the tenant's ``event_heads`` row lock, in
the inserting transaction (:func:`append_event`): seqs become visible in commit
order, so the SSE stream resumes after a ``Last-Event-ID`` with
``WHERE seq > :last`` and never skips an event that committed late.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from kernel import Event
from server.auth import utcnow
from server.db.tables import Event as EventRow
from server.db.tables import EventHead

log = logging.getLogger(__name__)


def event_id(now_ns: int | None = None) -> str:
    """A fresh event id; ids made later sort after ids made earlier (same host clock)."""
    ns = time.time_ns() if now_ns is None else now_ns
    return f"evt_{ns:020d}{secrets.token_hex(6)}"


def event_payload(event: Event) -> dict[str, Any]:
    """The ``payload`` column of a lifecycle event."""
    return {
        "task_id": event.task_id,
        "agent_id": event.agent_id,
        "run_id": event.run_id,
        "attempt": event.attempt,
        "detail": event.detail,
        "due_at": event.due_at,
        "at": event.at,
    }


async def _next_seq(tenant: str) -> int:
    """The tenant's next event seq; holds its ``event_heads`` row until the commit."""
    for attempt in range(2):
        bump = EventHead.update({EventHead.seq: EventHead.seq + 1})
        got = await bump.where(EventHead.tenant == tenant).returning(EventHead.seq).run()
        if got:
            return int(got[0]["seq"])
        if attempt == 0:
            first = EventHead.insert(EventHead(tenant=tenant, seq=0))
            await first.on_conflict(action="DO NOTHING").run()
    raise RuntimeError(f"no event head for tenant `{tenant}`")


async def append_event(tenant: str, kind: str, subject: str, payload: dict[str, Any]) -> None:
    """Insert one event row with the tenant's next seq, in the caller's transaction (joined)
    or in one of its own (IMMEDIATE on SQLite: the head is written first)."""
    db = EventRow._meta.db
    txn = (
        db.transaction(TransactionType.immediate)
        if isinstance(db, SQLiteEngine)
        else db.transaction()
    )
    async with txn:
        seq = await _next_seq(tenant)
        await EventRow.insert(
            EventRow(
                id=event_id(),
                tenant=tenant,
                seq=seq,
                kind=kind,
                subject=subject,
                payload=payload,
                created_at=utcnow(),
            )
        )


class DbEventSink:
    """Writes each kernel :class:`~kernel.Event` as an ``events`` row (its own statement).

    A row that cannot be written is logged and dropped: the task's state is in the
    ``tasks`` table already, and a broken event feed must not stop the scheduler.
    """

    async def emit(self, event: Event) -> None:
        """Insert the event's row (logged, not raised, when the database refuses it)."""
        try:
            await self._insert(event)
        except Exception:
            log.exception("event %s of task %s not recorded", event.kind.value, event.task_id)

    async def _insert(self, event: Event) -> None:
        await append_event(event.tenant, event.kind.value, event.task_id, event_payload(event))


__all__ = ["DbEventSink", "append_event", "event_id", "event_payload"]
