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

import json
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


# PostgreSQL: bump the head and insert in one statement (one round trip; the head's row
# lock is held to the end of the statement, or of the caller's transaction).
_APPEND_PG = (
    "WITH head AS ("
    " INSERT INTO event_heads (tenant, seq) VALUES ({}, 1)"
    " ON CONFLICT (tenant) DO UPDATE SET seq = event_heads.seq + 1 RETURNING seq)"
    " INSERT INTO events (id, tenant, seq, kind, subject, payload, created_at)"
    " SELECT {}, {}, head.seq, {}, {}, {}::json, {} FROM head"
)


async def append_event(tenant: str, kind: str, subject: str, payload: dict[str, Any]) -> None:
    """Insert one event row with the tenant's next seq, in the caller's transaction if any.

    On PostgreSQL one statement does both; on SQLite an IMMEDIATE transaction
    (joined when one is open) writes the head first, then the row.
    """
    db = EventRow._meta.db
    if not isinstance(db, SQLiteEngine):
        text = json.dumps(payload, separators=(",", ":"))
        await EventRow.raw(_APPEND_PG, tenant, event_id(), tenant, kind, subject, text, utcnow())
        return
    async with db.transaction(TransactionType.immediate):
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
