"""What request handlers may ask of dispatch, whatever runs the scheduler."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from kernel import Event, EventKind, TaskState
from server.dispatch.events import DbEventSink
from server.dispatch.store import PiccoloRunStore


class DispatchPort(Protocol):
    """The handlers' view of dispatch."""

    def kick(self) -> None:
        """Committed tasks are waiting in the outbox: send them now rather than at the next poll."""
        ...

    async def cancel(self, task_id: str, cause: str) -> str | None:
        """Cancel a task (queued or running); its state afterwards, None when unknown.

        The caller has checked the task belongs to the caller's tenant.
        """
        ...


@runtime_checkable
class RunningDispatch(DispatchPort, Protocol):
    """Dispatch with work of its own in the server process (relay, embedded scheduler),
    started and stopped with the app."""

    async def start(self) -> None:
        """Start on the running event loop."""
        ...

    async def stop(self) -> None:
        """Stop; running runs are left to their leases."""
        ...


class NoDispatch:
    """Dispatch that is not running (tests of the API alone, ``dispatch=off``): submits stay
    queued in the outbox; cancelling marks the stored task."""

    def kick(self) -> None:
        return None

    async def cancel(self, task_id: str, cause: str) -> str | None:
        return await cancel_stored(task_id, cause)


async def cancel_stored(task_id: str, cause: str) -> str | None:
    """Cancel a task in the store (no scheduler of this process holds it) and record the
    ``cancelled`` event; a worker running it stops at its next lease renewal."""
    before = await _STORE.get_task(task_id)
    state = await _STORE.cancel(task_id, time.time(), cause)
    # A running task's worker records `cancelled` when its lease renewal stops the run.
    waiting = before is not None and before.state in (TaskState.QUEUED, TaskState.RETRY_WAIT)
    if before is not None and waiting and state is TaskState.CANCELLED:
        spec = before.spec
        await DbEventSink().emit(
            Event(
                kind=EventKind.CANCELLED,
                task_id=task_id,
                tenant=spec.tenant,
                agent_id=spec.agent_id,
                at=time.time(),
                run_id=before.run_id,
                detail=cause,
            )
        )
    return None if state is None else state.value


_STORE = PiccoloRunStore()
