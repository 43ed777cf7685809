"""Tool calls of running agents: authenticated by the run-scoped token, gated `tool.invoke`,
and recorded on the run whether the decision allowed the call or not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import Decision, Resource
from kernel.model import TaskState
from server.agents import AgentService, new_id
from server.auth import Caller, utcnow
from server.db.tables import Run, Task, Tool, ToolCall
from server.dispatch.events import append_event
from server.dispatch.schemas import ToolCallIn
from server.dispatch.store import token_hash
from server.errors import (
    ConflictError,
    NotFoundError,
    PolicyDeniedError,
    UnauthorizedError,
)
from server.gate import Gate
from server.masking import mask
from server.tenants import TenantDirectory


@dataclass(frozen=True)
class RunCaller:
    """A running agent, authenticated by its run-scoped token."""

    caller: Caller
    run: dict[str, Any]
    task: dict[str, Any]


async def run_caller(run_id: str, authorization: str) -> RunCaller:
    """The agent of run ``run_id`` from ``Authorization: Bearer <run token>``.

    401: no token, or one that is not run ``run_id``'s; 409: the run is not the
    task's current run, or the task is not running.
    """
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    if not token:
        raise UnauthorizedError("missing run token: send `Authorization: Bearer <run token>`")
    run = await Run.select().where(Run.token_hash == token_hash(token)).first()
    if run is None or run["id"] != run_id:
        raise UnauthorizedError(f"the token is not a token of run `{run_id}`")
    task = (
        await Task.select()
        .where((Task.id == run["task_id"]) & (Task.tenant == run["tenant"]))
        .output(load_json=True)
        .first()
    )
    if task is None:
        raise NotFoundError(f"no task for run `{run_id}`")
    running = task["status"] == TaskState.RUNNING.value and task["run_id"] == run_id
    if not running or run["finished_at"] is not None:
        raise ConflictError(
            f"run `{run_id}` is not running (its task is {task['status']})", status=task["status"]
        )
    agent = run["agent_id"] or task["agent_id"]
    return RunCaller(Caller(agent, run["tenant"], frozenset(), "service"), dict(run), dict(task))


class ToolCallService:
    """`tool.invoke` for running agents; every call is recorded on its run."""

    def __init__(self, gate: Gate, agents: AgentService, tenants: TenantDirectory) -> None:
        self._gate = gate
        self._agents = agents
        self._tenants = tenants

    async def _context(self, who: RunCaller, body: ToolCallIn) -> dict[str, Any]:
        caller, run, task = who.caller, who.run, who.task
        agent = await self._agents.row(caller, caller.subject)
        tool_ids, _ = await self._agents.links(caller.tenant, caller.subject)
        settings = await self._tenants.limits(caller.tenant)
        allowed = settings.get("allowed_tools")
        if not isinstance(allowed, list):
            allowed = await self._agents.allowed_tools(caller.tenant)
        spent = float(run["spent_usd"] or 0.0)
        budget = float(task["budget_usd"])
        return {
            "arguments": body.arguments,
            "agent": {
                "id": caller.subject,
                "tenant": caller.tenant,
                "status": agent["status"],
                "tool_ids": tool_ids,
            },
            "run": {"id": run["id"], "task_id": task["id"], "attempt": run["attempt"]},
            "budget": {
                "task_usd": budget,
                "spent_usd": spent,
                "remaining_usd": max(budget - spent, 0.0),
            },
            "tenant": {"allowed_tools": allowed},
        }

    async def invoke(self, who: RunCaller, body: ToolCallIn, trace: str) -> dict[str, Any]:
        """Decide `tool.invoke`; the call's row and event commit with the decision either way
        (``apply`` when allowed, the gate's ``refused`` hook otherwise)."""
        caller, run = who.caller, who.run
        tool = (
            await Tool.select(Tool.category)
            .where((Tool.tenant == caller.tenant) & (Tool.name == body.tool_id))
            .first()
        )
        resource = Resource(
            type="tool",
            id=body.tool_id,
            tenant=caller.tenant,
            attributes={} if tool is None else {"category": tool["category"]},
        )
        context = await self._context(who, body)
        call_id = new_id("tcl")

        async def record(allowed: bool, decision_id: str) -> None:
            await ToolCall.insert(
                ToolCall(
                    id=call_id,
                    tenant=caller.tenant,
                    run_id=run["id"],
                    task_id=run["task_id"],
                    agent_id=caller.subject,
                    tool_id=body.tool_id,
                    decision_id=decision_id,
                    allowed=allowed,
                    arguments=mask(body.arguments),
                    created_at=utcnow(),
                )
            )
            payload = {
                "task_id": run["task_id"],
                "agent_id": caller.subject,
                "run_id": run["id"],
                "attempt": run["attempt"],
                "tool_id": body.tool_id,
                "allowed": allowed,
                "decision_id": decision_id,
            }
            await append_event(caller.tenant, "tool_call", run["task_id"], payload)

        async def allow(decision: Decision) -> None:
            await record(True, decision.decision_id)

        async def refuse(decision: Decision) -> None:
            await record(False, decision.decision_id)

        try:
            governed = await self._gate.govern(
                caller,
                "tool.invoke",
                resource,
                context,
                allow,
                modes=await self._agents.modes(caller, caller.subject),
                trace_id=trace,
                refused=refuse,
            )
        except PolicyDeniedError as denied:
            raise PolicyDeniedError(denied.message, **denied.extra, tool_call_id=call_id) from None
        return {
            "tool_call_id": call_id,
            "allowed": True,
            "obligations": governed.decision.obligations,
            **governed.summary(),
        }
