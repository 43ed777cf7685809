"""Lifecycle events of tasks, through the `EventSink` port."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from kernel.model import Base


class EventKind(StrEnum):
    """What happened to a task."""

    QUEUED = "queued"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"


class Event(Base, frozen=True):
    """One lifecycle event, tenant-scoped."""

    kind: EventKind
    task_id: str
    tenant: str
    agent_id: str
    at: float
    run_id: str | None = None
    attempt: int | None = None
    detail: str = ""
    """The cause for failed/dead_lettered/cancelled/retry; empty otherwise."""
    due_at: float | None = None
    """For ``retry``: when the next attempt may start."""


class EventSink(Protocol):
    """Where lifecycle events go (the server: events table + SSE stream)."""

    async def emit(self, event: Event) -> None:
        """Record ``event``; delivery is at-least-once."""
        ...


class MemoryEventSink:
    """Keeps every event in a list."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, task_id: str) -> list[EventKind]:
        """The kinds of the events of one task, in order."""
        return [e.kind for e in self.events if e.task_id == task_id]
