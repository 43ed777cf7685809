"""`DbEventSink`: the kernel's lifecycle events as rows of the ``events`` table.

Each event is one row: ``kind`` the event kind (``queued``, ``started``,
``retry``, ``succeeded``, ``failed``, ``cancelled``, ``dead_lettered``),
``subject`` the task id, ``tenant`` the task's tenant, and a payload with the
run id, attempt, detail (the cause), agent id and retry due time. Ids sort in
time order (``evt_`` + zero-padded ``time_ns`` + a random suffix) so the SSE
stream can resume after a ``Last-Event-ID`` with ``WHERE id > :last``.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from kernel import Event
from server.auth import utcnow
from server.db.tables import Event as EventRow

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
        await EventRow.insert(
            EventRow(
                id=event_id(),
                tenant=event.tenant,
                kind=event.kind.value,
                subject=event.task_id,
                payload=event_payload(event),
                created_at=utcnow(),
            )
        )


__all__ = ["DbEventSink", "event_id", "event_payload"]
