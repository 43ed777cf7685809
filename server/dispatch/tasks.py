"""Tasks and runs as the API sees them: submit (gated `task.submit`), read, cancel.

The task row, its outbox row and its ``queued`` event commit in the transaction
of the decision that admitted it: no task without its decision, and none that
the relay could miss. Tool calls are in :mod:`server.dispatch.toolcalls`.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from piccolo.engine.postgres import PostgresEngine

from engine import Decision
from kernel.model import TaskState
from server.agents import AgentService, model_name
from server.auth import Caller, utcnow
from server.db.tables import Agent, Artifact, Model, Outbox, Run, Task, ToolCall
from server.dispatch.events import append_event
from server.dispatch.port import DispatchPort
from server.dispatch.schemas import TaskSubmit
from server.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from server.gate import Gate
from server.masking import mask


def task_id() -> str:
    """A task id that sorts by submission time: ``tsk_<16 hex of time_ns><8 hex>``."""
    return f"tsk_{time.time_ns():016x}{uuid.uuid4().hex[:8]}"


def iso(epoch: float | None) -> str | None:
    """Epoch seconds (the scheduler's clock) as ISO 8601; None stays None."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _iso_dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): how admitted revisions are stored."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def task_view(row: dict[str, Any]) -> dict[str, Any]:
    """A task as the API shows it (secret-looking input fields masked)."""
    return {
        "id": row["id"],
        "agent_id": row["agent_id"],
        "status": row["status"],
        "priority": row["priority"],
        "intent": row["intent"],
        "input": mask(row["input"]),
        "budget_usd": row["budget_usd"],
        "timeout_s": row["timeout_s"],
        "max_attempts": row["max_attempts"],
        "attempts": row["attempts"],
        "run_id": row["run_id"],
        "cause": row["cause"] or None,
        "decision_id": row["decision_id"],
        "submitted_by": row["submitted_by"],
        "submitted_at": iso(row["submitted_at"]),
        "not_after": iso(row["not_after"]),
        "due_at": iso(row["due_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def run_view(row: dict[str, Any]) -> dict[str, Any]:
    """A run as the API shows it (never its token hash)."""
    return {
        "id": row["id"],
        "task_id": row["task_id"],
        "agent_id": row["agent_id"],
        "attempt": row["attempt"],
        "status": row["status"],
        "outcome": row["outcome"],
        "cause": row["cause"] or None,
        "exit_code": row["exit_code"],
        "worker_id": row["worker_id"],
        "spent_usd": row["spent_usd"],
        "started_at": iso(row["started_at"] or None),
        "finished_at": iso(row["finished_at"]),
        "created_at": _iso_dt(row["created_at"]),
    }


def tool_call_view(row: dict[str, Any]) -> dict[str, Any]:
    """A recorded tool call (its arguments were masked when stored)."""
    return {
        "id": row["id"],
        "tool_id": row["tool_id"],
        "allowed": row["allowed"],
        "decision_id": row["decision_id"],
        "arguments": row["arguments"],
        "created_at": _iso_dt(row["created_at"]),
    }


class TaskService:
    """Submitting, reading and cancelling one tenant's tasks; reading their runs."""

    def __init__(self, gate: Gate, agents: AgentService, dispatch: DispatchPort) -> None:
        self._gate = gate
        self._agents = agents
        self._dispatch = dispatch

    async def _context(self, caller: Caller, row: dict[str, Any], body: TaskSubmit) -> Any:
        """The `task.submit` context: intent, model {id, privacy}, budget only when given."""
        context: dict[str, Any] = {}
        if body.intent is not None:
            context["intent"] = body.intent
        model = (
            await Model.select(Model.name, Model.privacy)
            .where((Model.tenant == caller.tenant) & (Model.name == model_name(row["model"])))
            .first()
        )
        if model is not None:
            context["model"] = {"id": model["name"], "privacy": model["privacy"]}
        if not isinstance(body.budget_usd, msgspec.UnsetType):
            context["budget_usd"] = body.budget_usd
        return context

    async def _unchanged(self, caller: Caller, agent_id: str, seen: datetime) -> None:
        """The agent is as the decision saw it (locked against a concurrent change on
        PostgreSQL until the task commits; SQLite's write transaction already excludes one)."""
        query = Agent.select(Agent.id).where(
            (Agent.id == agent_id) & (Agent.tenant == caller.tenant) & (Agent.updated_at == seen)
        )
        if isinstance(Agent._meta.db, PostgresEngine):
            query = query.lock_rows("SHARE")
        if not await query.first():
            raise ConflictError(
                f"agent `{agent_id}` changed while this task was decided; send it again"
            )

    async def submit(
        self, caller: Caller, agent_id: str, body: TaskSubmit, trace: str
    ) -> dict[str, Any]:
        """Gate `task.submit`; store the task, its outbox row and its `queued` event with the
        decision; then wake dispatch."""
        row = await self._agents.row(caller, agent_id)
        resource = await self._agents.resource(caller, row)
        context = await self._context(caller, row, body)
        new = task_id()
        budget = 0.02 if isinstance(body.budget_usd, msgspec.UnsetType) else body.budget_usd

        async def store(decision: Decision) -> dict[str, Any]:
            await self._unchanged(caller, agent_id, row["updated_at"])
            at = utcnow()
            now = at.timestamp()
            task = Task(
                id=new,
                tenant=caller.tenant,
                agent_id=agent_id,
                input=body.input,
                intent=body.intent,
                priority=body.priority,
                budget_usd=budget,
                status=TaskState.QUEUED.value,
                created_at=at,
                submitted_by=caller.subject,
                submitted_roles=sorted(caller.roles),
                submitted_kind=caller.kind,
                decision_id=decision.decision_id,
                admitted_revision=canonical(decision.revisions),
                timeout_s=body.timeout_s,
                max_attempts=body.max_attempts,
                submitted_at=now,
                not_after=None if body.expires_in_s is None else now + body.expires_in_s,
                updated_at=now,
            )
            await Task.insert(task)
            await Outbox.insert(
                Outbox(id=f"obx_{new}", tenant=caller.tenant, task_id=new, created_at=at)
            )
            await append_event(
                caller.tenant,
                "queued",
                new,
                {
                    "agent_id": agent_id,
                    "priority": body.priority,
                    "decision_id": decision.decision_id,
                },
            )
            return task_view(task.to_dict())

        governed = await self._gate.govern(
            caller,
            "task.submit",
            resource,
            context,
            store,
            modes=await self._agents.modes(caller, agent_id),
            trace_id=trace,
        )
        self._dispatch.kick()
        return {"task_id": new, **governed.value, **governed.summary()}

    async def row(self, caller: Caller, task: str) -> dict[str, Any]:
        """The caller's tenant's task, or 404."""
        found = (
            await Task.select()
            .where((Task.id == task) & (Task.tenant == caller.tenant))
            .output(load_json=True)
            .first()
        )
        if found is None:
            raise NotFoundError(f"no task `{task}`")
        return dict(found)

    async def get(self, caller: Caller, task: str) -> dict[str, Any]:
        """One task."""
        return task_view(await self.row(caller, task))

    async def page(
        self,
        caller: Caller,
        agent_id: str | None,
        status: str | None,
        cursor: str | None,
        limit: int,
    ) -> dict[str, Any]:
        """A page of tasks, oldest first; ``next`` is the cursor of the following page."""
        query = Task.select().where(Task.tenant == caller.tenant)
        if agent_id:
            query = query.where(Task.agent_id == agent_id)
        if status:
            if status not in set(TaskState):
                raise InvalidInputError(
                    f"unknown status `{status}`: one of {', '.join(s.value for s in TaskState)}"
                )
            query = query.where(Task.status == status)
        if cursor:
            query = query.where(Task.id > cursor)
        rows = list(await query.order_by(Task.id).limit(limit + 1).output(load_json=True))
        page = rows[:limit]
        return {
            "items": [task_view(r) for r in page],
            "next": page[-1]["id"] if len(rows) > limit else None,
        }

    async def cancel(self, caller: Caller, task: str) -> dict[str, Any]:
        """Cancel a queued or running task; a finished one is 409 naming its state."""
        state = TaskState(str((await self.row(caller, task))["status"]))
        if state.terminal:
            raise ConflictError(f"task `{task}` is already {state.value}", status=state.value)
        after = await self._dispatch.cancel(task, f"cancelled by {caller.subject}")
        if after is None:
            raise NotFoundError(f"no task `{task}`")
        if after != TaskState.CANCELLED.value:
            raise ConflictError(f"task `{task}` is already {after}", status=after)
        return await self.get(caller, task)

    async def runs(self, caller: Caller, task: str) -> dict[str, Any]:
        """The runs (attempts) of a task, first attempt first."""
        await self.row(caller, task)
        rows = await (
            Run.select()
            .where((Run.tenant == caller.tenant) & (Run.task_id == task))
            .order_by(Run.attempt)
        )
        return {"items": [run_view(r) for r in rows]}

    async def run_row(self, caller: Caller, run: str) -> dict[str, Any]:
        """The caller's tenant's run, or 404."""
        found = await Run.select().where((Run.id == run) & (Run.tenant == caller.tenant)).first()
        if found is None:
            raise NotFoundError(f"no run `{run}`")
        return dict(found)

    async def run(self, caller: Caller, run: str) -> dict[str, Any]:
        """One run with its tool calls, oldest first."""
        row = await self.run_row(caller, run)
        calls = await (
            ToolCall.select()
            .where((ToolCall.tenant == caller.tenant) & (ToolCall.run_id == run))
            .order_by(ToolCall.created_at)
            .output(load_json=True)
        )
        return {**run_view(row), "tool_calls": [tool_call_view(c) for c in calls]}

    async def artifacts(self, caller: Caller, run: str) -> dict[str, Any]:
        """A run's outputs: name, size and sha256."""
        await self.run_row(caller, run)
        rows = await (
            Artifact.select(Artifact.name, Artifact.size, Artifact.sha256, Artifact.created_at)
            .where((Artifact.tenant == caller.tenant) & (Artifact.run_id == run))
            .order_by(Artifact.name)
        )
        return {
            "items": [
                {
                    "name": r["name"],
                    "size": r["size"],
                    "sha256": r["sha256"],
                    "created_at": _iso_dt(r["created_at"]),
                }
                for r in rows
            ]
        }

    async def artifact(self, caller: Caller, run: str, name: str) -> tuple[bytes, str]:
        """(content, sha256) of one stored output of a run, or 404."""
        found = (
            await Artifact.select(Artifact.content, Artifact.sha256)
            .where(
                (Artifact.tenant == caller.tenant)
                & (Artifact.run_id == run)
                & (Artifact.name == name)
            )
            .first()
        )
        if found is None or found["content"] is None:
            raise NotFoundError(f"run `{run}` has no stored artifact `{name}`")
        return bytes(found["content"]), str(found["sha256"])
