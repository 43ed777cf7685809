"""`PiccoloRunStore`: the kernel's `RunStore` over the tasks, runs and artifacts tables.

Same semantics as :class:`kernel.MemoryRunStore`, on SQLite and PostgreSQL.
Every method is one transaction: IMMEDIATE on SQLite (the database write lock
is taken at ``BEGIN``, so a read-then-write never fails to upgrade its lock),
and on PostgreSQL the task row is locked (``SELECT ... FOR UPDATE``) before it
is read. The state changes are conditional updates besides
(``WHERE status IN (...) AND attempts = :seen``), and ``runs`` has a unique
``(task_id, attempt)`` index: two workers racing for a task can never both
start the same attempt, whatever the isolation level.

Times are epoch seconds (the worker's wall clock). The run token handed to the
runtime is random; only its sha256 is stored (``runs.token_hash``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from kernel import (
    Claim,
    Finished,
    NextStep,
    Priority,
    RunOutcome,
    RunRecord,
    RunResult,
    StoredArtifact,
    TaskRecord,
    TaskSpec,
    TaskState,
)
from kernel.model import can_transition
from server.auth import utcnow
from server.db.tables import Artifact, Run, Task

_WAITING = (TaskState.QUEUED.value, TaskState.RETRY_WAIT.value)


class _Raced(Exception):
    """Another worker won a race inside a transaction: roll back, report nothing."""


def token_hash(token: str) -> str:
    """What ``runs.token_hash`` holds for a run token (the tool-call API compares it)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def spec_of(row: dict[str, Any]) -> TaskSpec:
    """The scheduler's view of a ``tasks`` row."""
    try:
        priority = Priority.parse(str(row["priority"] or "standard"))
    except ValueError:
        priority = Priority.STANDARD
    return TaskSpec(
        task_id=row["id"],
        tenant=row["tenant"],
        agent_id=row["agent_id"],
        priority=priority,
        submitted_at=float(row["submitted_at"] or 0.0),
        timeout_s=float(row["timeout_s"]),
        max_attempts=int(row["max_attempts"]),
        not_after=row["not_after"],
        payload={
            "input": _json(row["input"]),
            "intent": row["intent"],
            "budget_usd": row["budget_usd"],
        },
        admitted_revision=row["admitted_revision"] or None,
    )


def record_of(row: dict[str, Any]) -> TaskRecord:
    """A ``tasks`` row as the kernel's :class:`TaskRecord`."""
    return TaskRecord(
        spec=spec_of(row),
        state=TaskState(row["status"]),
        attempts=int(row["attempts"]),
        due_at=row["due_at"],
        cause=row["cause"] or "",
        run_id=row["run_id"],
        lease_expires_at=row["lease_expires_at"],
        updated_at=float(row["updated_at"] or 0.0),
    )


def _run_of(row: dict[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=row["id"],
        task_id=row["task_id"],
        attempt=int(row["attempt"]),
        worker_id=row["worker_id"],
        started_at=float(row["started_at"]),
        lease_expires_at=float(row["lease_expires_at"]),
        finished_at=row["finished_at"],
        outcome=RunOutcome(row["outcome"]) if row["outcome"] else None,
        cause=row["cause"] or "",
        exit_code=row["exit_code"],
    )


def _new_id(prefix: str) -> str:
    """Ids that sort in creation order (artifacts are listed in the order stored)."""
    return f"{prefix}_{time.time_ns():020d}{secrets.token_hex(5)}"


class PiccoloRunStore:
    """The durable :class:`kernel.RunStore` (tables as bound by ``server.db.engine.bind``)."""

    @property
    def _db(self) -> Engine[Any]:
        db: Engine[Any] = Task._meta.db
        return db

    def _transaction(self) -> AbstractAsyncContextManager[Any]:
        db = self._db
        if isinstance(db, SQLiteEngine):
            txn: AbstractAsyncContextManager[Any] = db.transaction(TransactionType.immediate)
        else:
            txn = db.transaction()
        return txn

    async def _task_row(self, task_id: str, *, lock: bool = False) -> dict[str, Any] | None:
        """The task row; locked to the end of the transaction on PostgreSQL when ``lock``."""
        if lock and isinstance(self._db, PostgresEngine):
            rows = await Task.raw("SELECT * FROM tasks WHERE id = {} FOR UPDATE", task_id)
            return dict(rows[0]) if rows else None
        row = await Task.select().where(Task.id == task_id).first()
        return dict(row) if row else None

    async def _set_task(
        self, task_id: str, values: dict[Any, Any], *, status: Sequence[str], **match: Any
    ) -> bool:
        """Conditional update of a task: applies only while it is in ``status`` (and ``match``)."""
        where = (Task.id == task_id) & Task.status.is_in(list(status))
        for column, value in match.items():
            col = getattr(Task, column)
            where &= col.is_null() if value is None else col == value
        done = await Task.update(values).where(where).returning(Task.id)
        return bool(done)

    # -- reads ---------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self._task_row(task_id)
        return record_of(row) if row else None

    async def pending(self, now: float, per_tenant: int | None = None) -> list[str]:
        due = Task.due_at.is_null() | (Task.due_at <= now)
        where = (Task.status == TaskState.QUEUED.value) | (
            (Task.status == TaskState.RETRY_WAIT.value) & due
        )
        if per_tenant is None:
            rows = await Task.select(Task.id).where(where).order_by(Task.submitted_at, Task.id)
            return [r["id"] for r in rows]
        tenants = await Task.select(Task.tenant).where(where).distinct()
        found: list[tuple[float, str]] = []
        for tenant in sorted(r["tenant"] for r in tenants):
            oldest = Task.select(Task.id, Task.submitted_at).where(where & (Task.tenant == tenant))
            rows = await oldest.order_by(Task.submitted_at, Task.id).limit(per_tenant)
            found += [(float(r["submitted_at"]), r["id"]) for r in rows]
        return [task_id for _, task_id in sorted(found)]

    async def runs(self, task_id: str) -> list[RunRecord]:
        rows = await Run.select().where(Run.task_id == task_id).order_by(Run.attempt)
        return [_run_of(r) for r in rows]

    async def artifacts(self, run_id: str) -> list[StoredArtifact]:
        cols = (Artifact.name, Artifact.sha256, Artifact.size, Artifact.content)
        rows = await Artifact.select(*cols).where(Artifact.run_id == run_id).order_by(Artifact.id)
        return [
            StoredArtifact(
                run_id=run_id,
                name=r["name"],
                sha256=r["sha256"],
                size=int(r["size"]),
                data=bytes(r["content"] or b""),
            )
            for r in rows
        ]

    # -- claim ---------------------------------------------------------------------

    async def _expire(self, row: dict[str, Any], now: float) -> dict[str, Any] | None:
        """Close the run of a dead worker; requeue or dead-letter its task (the row after)."""
        run_id = row["run_id"]
        closed: dict[Any, Any] = {
            Run.outcome: RunOutcome.LEASE_EXPIRED.value,
            Run.status: RunOutcome.LEASE_EXPIRED.value,
            Run.finished_at: now,
            Run.cause: "lease expired",
        }
        await Run.update(closed).where((Run.id == run_id) & Run.outcome.is_null())
        attempts, most = int(row["attempts"]), int(row["max_attempts"])
        values: dict[Any, Any] = {Task.updated_at: now, Task.lease_expires_at: None}
        if attempts >= most:
            values[Task.status] = TaskState.DEAD_LETTERED.value
            values[Task.cause] = f"lease expired on attempt {attempts} of {most}"
        else:
            values[Task.status] = TaskState.QUEUED.value
            values[Task.due_at] = None
        running = (TaskState.RUNNING.value,)
        if not await self._set_task(row["id"], values, status=running, run_id=run_id):
            return None
        return {**row, **{col._meta.name: v for col, v in values.items()}}

    async def _lease_of(self, run_id: str) -> float:
        got = await Run.select(Run.lease_expires_at).where(Run.id == run_id).first()
        return float(got["lease_expires_at"]) if got else 0.0

    async def claim(self, task_id: str, worker_id: str, now: float, lease_s: float) -> Claim | None:
        try:
            async with self._transaction():
                return await self._claim(task_id, worker_id, now, lease_s)
        except _Raced:
            return None

    async def _claim(
        self, task_id: str, worker_id: str, now: float, lease_s: float
    ) -> Claim | None:
        row = await self._task_row(task_id, lock=True)
        if row is None:
            return None
        if row["status"] == TaskState.RUNNING.value and row["run_id"]:
            if await self._lease_of(row["run_id"]) > now:
                return None
            row = await self._expire(row, now)
            if row is None:
                raise _Raced
        if row["status"] == TaskState.RETRY_WAIT.value and (row["due_at"] or 0.0) > now:
            return None
        if row["status"] not in _WAITING:
            return None
        seen = int(row["attempts"])
        attempt, run_id, expires = seen + 1, f"run_{uuid.uuid4().hex}", now + lease_s
        values = {
            Task.status: TaskState.RUNNING.value,
            Task.attempts: attempt,
            Task.run_id: run_id,
            Task.lease_expires_at: expires,
            Task.due_at: None,
            Task.updated_at: now,
        }
        if not await self._set_task(task_id, values, status=_WAITING, attempts=seen):
            raise _Raced
        token = secrets.token_urlsafe(24)
        run = Run(
            id=run_id,
            tenant=row["tenant"],
            task_id=task_id,
            status="running",
            attempt=attempt,
            created_at=utcnow(),
            agent_id=row["agent_id"],
            worker_id=worker_id,
            started_at=now,
            lease_expires_at=expires,
            token_hash=token_hash(token),
        )
        try:
            await Run.insert(run)
        except Exception as exc:  # the unique (task_id, attempt) index: another worker won
            raise _Raced from exc
        return Claim(
            run_id=run_id,
            task=spec_of(row),
            attempt=attempt,
            worker_id=worker_id,
            lease_expires_at=expires,
            run_token=token,
        )

    # -- leases --------------------------------------------------------------------

    async def renew_lease(self, run_id: str, worker_id: str, now: float, lease_s: float) -> bool:
        async with self._transaction():
            run = (
                await Run.select(Run.task_id, Run.outcome, Run.worker_id)
                .where(Run.id == run_id)
                .first()
            )
            if run is None or run["outcome"] is not None or run["worker_id"] != worker_id:
                return False
            expires = now + lease_s
            values = {Task.lease_expires_at: expires}
            running = (TaskState.RUNNING.value,)
            if not await self._set_task(run["task_id"], values, status=running, run_id=run_id):
                return False
            await Run.update({Run.lease_expires_at: expires}).where(Run.id == run_id)
            return True

    async def requeue_expired_leases(self, now: float) -> list[str]:
        requeued: list[str] = []
        async with self._transaction():
            expired = (Task.status == TaskState.RUNNING.value) & (Task.lease_expires_at <= now)
            ids = [r["id"] for r in await Task.select(Task.id).where(expired).order_by(Task.id)]
            for task_id in ids:
                row = await self._task_row(task_id, lock=True)
                if row is None or row["status"] != TaskState.RUNNING.value or not row["run_id"]:
                    continue
                if await self._lease_of(row["run_id"]) > now:
                    continue
                if await self._expire(row, now) is not None:
                    requeued.append(task_id)
        return requeued

    # -- finish --------------------------------------------------------------------

    async def finish(
        self, run_id: str, result: RunResult, now: float, then: NextStep
    ) -> Finished | None:
        async with self._transaction():
            run = await Run.select(Run.task_id, Run.tenant).where(Run.id == run_id).first()
            if run is None:
                return None
            row = await self._task_row(run["task_id"], lock=True)
            if row is None:
                return None
            closed: dict[Any, Any] = {
                Run.outcome: result.outcome.value,
                Run.status: result.outcome.value,
                Run.finished_at: now,
                Run.cause: result.cause,
                Run.exit_code: result.exit_code,
            }
            update = Run.update(closed).where((Run.id == run_id) & Run.outcome.is_null())
            state = TaskState(row["status"])
            if not await update.returning(Run.id):
                stored = await Run.select(Run.outcome).where(Run.id == run_id).first()
                outcome = RunOutcome(stored["outcome"]) if stored else result.outcome
                return Finished(run_id=run_id, outcome=outcome, task_state=state, applied=False)
            await self._store_artifacts(run_id, row, result)
            if state is TaskState.RUNNING and row["run_id"] == run_id:
                if not can_transition(state, then.state):
                    raise ValueError(f"illegal transition `{state.value}` -> `{then.state.value}`")
                values = {
                    Task.status: then.state.value,
                    Task.due_at: then.due_at,
                    Task.cause: then.cause,
                    Task.lease_expires_at: None,
                    Task.updated_at: now,
                }
                await self._set_task(row["id"], values, status=(state.value,), run_id=run_id)
                state = then.state
            return Finished(run_id=run_id, outcome=result.outcome, task_state=state, applied=True)

    async def _store_artifacts(self, run_id: str, task: dict[str, Any], result: RunResult) -> None:
        rows: dict[str, Artifact] = {}
        for out in result.outputs:
            if out.name in rows:
                continue
            rows[out.name] = Artifact(
                id=_new_id("art"),
                tenant=task["tenant"],
                run_id=run_id,
                task_id=task["id"],
                name=out.name,
                size=len(out.data),
                sha256=hashlib.sha256(out.data).hexdigest(),
                content=out.data,
                uri="",
                created_at=utcnow(),
            )
        if rows:
            insert = Artifact.insert(*rows.values())
            await insert.on_conflict(target=(Artifact.run_id, Artifact.name), action="DO NOTHING")

    # -- closing -------------------------------------------------------------------

    async def cancel(self, task_id: str, now: float, cause: str = "") -> TaskState | None:
        async with self._transaction():
            row = await self._task_row(task_id, lock=True)
            if row is None:
                return None
            state = TaskState(row["status"])
            if state.terminal:
                return state
            values = {
                Task.status: TaskState.CANCELLED.value,
                Task.cause: cause or "cancelled",
                Task.updated_at: now,
            }
            moved = await self._set_task(task_id, values, status=(state.value,))
            return TaskState.CANCELLED if moved else state

    async def _close_waiting(self, task_id: str, now: float, state: TaskState, cause: str) -> bool:
        values = {Task.status: state.value, Task.cause: cause, Task.updated_at: now}
        async with self._transaction():
            return await self._set_task(task_id, values, status=_WAITING)

    async def dead_letter(self, task_id: str, now: float, cause: str) -> bool:
        return await self._close_waiting(task_id, now, TaskState.DEAD_LETTERED, cause)

    async def refuse(self, task_id: str, now: float, cause: str) -> bool:
        return await self._close_waiting(task_id, now, TaskState.FAILED, cause)


__all__ = ["PiccoloRunStore", "record_of", "spec_of", "token_hash"]
