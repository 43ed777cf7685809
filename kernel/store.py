"""Durable run state: the `RunStore` port, its records, and the in-memory twin.

The store is the single source of truth; the scheduler keeps only caches. Each
method is one atomic step (one transaction in a database implementation), and
together they make "never lose, never double" possible:

- ``claim`` is the only way a task starts. It moves a queued (or due
  retry_wait) task to running and creates the run row with attempt n+1 under a
  lease, atomically; a second claim of the same task gets ``None``.
- ``finish`` is idempotent per run id, and only the run that holds the task's
  current lease may move the task on. A run whose lease expired is dead: its late
  result is recorded as ``lease_expired`` and changes nothing, so a task re-run
  after its worker died ends with exactly one succeeded run and one set of
  artifacts.
- ``requeue_expired_leases`` returns work of dead workers to the queue (or to the
  dead letters once the attempts are used up: a task that kills its worker is
  poison too).
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from typing import NamedTuple, Protocol

import msgspec

from kernel.model import (
    Base,
    RunOutcome,
    RunResult,
    TaskSpec,
    TaskState,
    can_transition,
)


class TaskRecord(Base, frozen=True):
    """A task row as the scheduler reads it."""

    spec: TaskSpec
    state: TaskState
    attempts: int = 0
    due_at: float | None = None
    """For ``retry_wait``: when the next attempt may start."""
    cause: str = ""
    run_id: str | None = None
    """The current (or last) run."""
    lease_expires_at: float | None = None
    updated_at: float = 0.0


class RunRecord(Base, frozen=True):
    """One attempt of a task."""

    run_id: str
    task_id: str
    attempt: int
    worker_id: str
    started_at: float
    lease_expires_at: float
    finished_at: float | None = None
    outcome: RunOutcome | None = None
    cause: str = ""
    exit_code: int | None = None


class StoredArtifact(Base, frozen=True):
    """An output of a run, unique per (run id, name)."""

    run_id: str
    name: str
    sha256: str
    size: int
    data: bytes


class Claim(Base, frozen=True):
    """A started run: the right to execute ``task`` until the lease expires."""

    run_id: str
    task: TaskSpec
    attempt: int
    worker_id: str
    lease_expires_at: float
    run_token: str
    """Secret the run presents to the tool-call API (the server stores its hash)."""


class NextStep(Base, frozen=True):
    """Where a task goes when its current run ends (decided by the scheduler)."""

    state: TaskState
    due_at: float | None = None
    cause: str = ""


class Finished(Base, frozen=True):
    """Answer of :meth:`RunStore.finish`."""

    run_id: str
    outcome: RunOutcome
    task_state: TaskState
    applied: bool
    """False when the run had already finished (or lost its lease): nothing changed."""


class Admission(NamedTuple):
    """Answer of the admission re-check at start."""

    allowed: bool
    reason: str = ""


class AdmissionCheck(Protocol):
    """Re-checks, right before a start, that the task may still run.

    The server implements it: the agent is still deployed and not disabled, and
    the ``task.submit`` decision is re-taken when the bundle revision changed
    since ``task.admitted_revision``.
    """

    async def still_admitted(self, task: TaskSpec) -> Admission:
        """Whether ``task`` may start now, and why not."""
        ...


class RunStore(Protocol):
    """Durable state of tasks, runs and artifacts. Every method is atomic."""

    async def get_task(self, task_id: str) -> TaskRecord | None:
        """The task, or None when unknown."""
        ...

    async def pending(self, now: float, per_tenant: int | None = None) -> list[str]:
        """Ids of tasks that could be claimed at ``now`` (queued, due retry_wait), oldest
        first; with ``per_tenant``, only that many of each tenant's oldest."""
        ...

    async def claim(self, task_id: str, worker_id: str, now: float, lease_s: float) -> Claim | None:
        """Start attempt n+1 of a queued or due task; None when it may not start."""
        ...

    async def renew_lease(self, run_id: str, worker_id: str, now: float, lease_s: float) -> bool:
        """Extend the lease; False when the run should stop (lost lease, cancelled task)."""
        ...

    async def finish(
        self, run_id: str, result: RunResult, now: float, then: NextStep
    ) -> Finished | None:
        """Record the run's result and move its task to ``then`` (idempotent per run)."""
        ...

    async def requeue_expired_leases(self, now: float) -> list[str]:
        """Expire runs whose lease ran out; the ids of their tasks, requeued or (out of
        attempts) dead-lettered, in the order they were handled."""
        ...

    async def cancel(self, task_id: str, now: float, cause: str = "") -> TaskState | None:
        """Cancel a non-terminal task; the state after the call (None if unknown)."""
        ...

    async def dead_letter(self, task_id: str, now: float, cause: str) -> bool:
        """Move a queued or waiting task to the dead letters with ``cause``."""
        ...

    async def refuse(self, task_id: str, now: float, cause: str) -> bool:
        """Mark a queued or waiting task failed (refused at start) with ``cause``."""
        ...

    async def runs(self, task_id: str) -> list[RunRecord]:
        """The runs of a task, oldest first."""
        ...

    async def artifacts(self, run_id: str) -> list[StoredArtifact]:
        """The artifacts of a run, in the order they were stored."""
        ...


_replace = msgspec.structs.replace


class MemoryRunStore:
    """The in-memory twin of :class:`RunStore` (single event loop, so each call is atomic)."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._runs: dict[str, RunRecord] = {}
        self._by_task: dict[str, list[str]] = {}
        self._artifacts: dict[str, dict[str, StoredArtifact]] = {}
        self._ids = itertools.count(1)

    def add(self, spec: TaskSpec, now: float = 0.0) -> bool:
        """Insert a queued task (what the server's submit does); False if it exists."""
        if spec.task_id in self._tasks:
            return False
        self._tasks[spec.task_id] = TaskRecord(spec=spec, state=TaskState.QUEUED, updated_at=now)
        return True

    async def get_task(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    async def pending(self, now: float, per_tenant: int | None = None) -> list[str]:
        ready = [
            rec
            for rec in self._tasks.values()
            if rec.state is TaskState.QUEUED
            or (rec.state is TaskState.RETRY_WAIT and (rec.due_at or 0.0) <= now)
        ]
        ready.sort(key=lambda rec: rec.spec.submitted_at)
        if per_tenant is not None:
            seen: dict[str, int] = {}
            kept = []
            for rec in ready:
                seen[rec.spec.tenant] = seen.get(rec.spec.tenant, 0) + 1
                if seen[rec.spec.tenant] <= per_tenant:
                    kept.append(rec)
            ready = kept
        return [rec.spec.task_id for rec in ready]

    def _move(self, rec: TaskRecord, state: TaskState, now: float, **changes: object) -> None:
        if not can_transition(rec.state, state):
            raise ValueError(f"illegal transition `{rec.state.value}` -> `{state.value}`")
        self._tasks[rec.spec.task_id] = _replace(rec, state=state, updated_at=now, **changes)

    def _expire(self, rec: TaskRecord, run: RunRecord, now: float) -> None:
        """The run's worker is gone: close the run, requeue or dead-letter the task."""
        self._runs[run.run_id] = _replace(
            run, outcome=RunOutcome.LEASE_EXPIRED, finished_at=now, cause="lease expired"
        )
        if rec.attempts >= rec.spec.max_attempts:
            cause = f"lease expired on attempt {rec.attempts} of {rec.spec.max_attempts}"
            self._move(rec, TaskState.DEAD_LETTERED, now, cause=cause, lease_expires_at=None)
        else:
            self._move(rec, TaskState.QUEUED, now, lease_expires_at=None, due_at=None)

    async def claim(self, task_id: str, worker_id: str, now: float, lease_s: float) -> Claim | None:
        rec = self._tasks.get(task_id)
        if rec is None:
            return None
        if rec.state is TaskState.RUNNING and rec.run_id is not None:
            run = self._runs[rec.run_id]
            if run.lease_expires_at > now:
                return None
            self._expire(rec, run, now)
            rec = self._tasks[task_id]
        if rec.state is TaskState.RETRY_WAIT and (rec.due_at or 0.0) > now:
            return None
        if rec.state not in (TaskState.QUEUED, TaskState.RETRY_WAIT):
            return None
        attempt = rec.attempts + 1
        run_id = f"run-{next(self._ids)}"
        expires = now + lease_s
        self._runs[run_id] = RunRecord(
            run_id=run_id,
            task_id=task_id,
            attempt=attempt,
            worker_id=worker_id,
            started_at=now,
            lease_expires_at=expires,
        )
        self._by_task.setdefault(task_id, []).append(run_id)
        self._move(
            rec,
            TaskState.RUNNING,
            now,
            attempts=attempt,
            run_id=run_id,
            lease_expires_at=expires,
            due_at=None,
        )
        return Claim(
            run_id=run_id,
            task=rec.spec,
            attempt=attempt,
            worker_id=worker_id,
            lease_expires_at=expires,
            run_token=secrets.token_urlsafe(24),
        )

    async def renew_lease(self, run_id: str, worker_id: str, now: float, lease_s: float) -> bool:
        run = self._runs.get(run_id)
        if run is None or run.outcome is not None or run.worker_id != worker_id:
            return False
        rec = self._tasks[run.task_id]
        if rec.state is not TaskState.RUNNING or rec.run_id != run_id:
            return False
        expires = now + lease_s
        self._runs[run_id] = _replace(run, lease_expires_at=expires)
        self._tasks[run.task_id] = _replace(rec, lease_expires_at=expires)
        return True

    async def finish(
        self, run_id: str, result: RunResult, now: float, then: NextStep
    ) -> Finished | None:
        run = self._runs.get(run_id)
        if run is None:
            return None
        rec = self._tasks[run.task_id]
        if run.outcome is not None:
            return Finished(run_id=run_id, outcome=run.outcome, task_state=rec.state, applied=False)
        self._runs[run_id] = _replace(
            run,
            outcome=result.outcome,
            finished_at=now,
            cause=result.cause,
            exit_code=result.exit_code,
        )
        stored = self._artifacts.setdefault(run_id, {})
        for out in result.outputs:
            if out.name not in stored:
                digest = hashlib.sha256(out.data).hexdigest()
                stored[out.name] = StoredArtifact(
                    run_id=run_id, name=out.name, sha256=digest, size=len(out.data), data=out.data
                )
        if rec.state is TaskState.RUNNING and rec.run_id == run_id:
            self._move(
                rec, then.state, now, due_at=then.due_at, cause=then.cause, lease_expires_at=None
            )
        state = self._tasks[run.task_id].state
        return Finished(run_id=run_id, outcome=result.outcome, task_state=state, applied=True)

    async def requeue_expired_leases(self, now: float) -> list[str]:
        requeued: list[str] = []
        for rec in list(self._tasks.values()):
            if rec.state is not TaskState.RUNNING or rec.run_id is None:
                continue
            run = self._runs[rec.run_id]
            if run.lease_expires_at <= now:
                self._expire(rec, run, now)
                requeued.append(rec.spec.task_id)
        return requeued

    async def cancel(self, task_id: str, now: float, cause: str = "") -> TaskState | None:
        rec = self._tasks.get(task_id)
        if rec is None:
            return None
        if not rec.state.terminal:
            self._move(rec, TaskState.CANCELLED, now, cause=cause or "cancelled")
        return self._tasks[task_id].state

    async def _close_waiting(self, task_id: str, now: float, state: TaskState, cause: str) -> bool:
        rec = self._tasks.get(task_id)
        if rec is None or rec.state not in (TaskState.QUEUED, TaskState.RETRY_WAIT):
            return False
        self._move(rec, state, now, cause=cause)
        return True

    async def dead_letter(self, task_id: str, now: float, cause: str) -> bool:
        return await self._close_waiting(task_id, now, TaskState.DEAD_LETTERED, cause)

    async def refuse(self, task_id: str, now: float, cause: str) -> bool:
        return await self._close_waiting(task_id, now, TaskState.FAILED, cause)

    async def runs(self, task_id: str) -> list[RunRecord]:
        return [self._runs[r] for r in self._by_task.get(task_id, [])]

    async def artifacts(self, run_id: str) -> list[StoredArtifact]:
        return list(self._artifacts.get(run_id, {}).values())
