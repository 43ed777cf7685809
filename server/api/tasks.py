"""Tasks, runs and tool calls.

Every route here takes the bearer JWT / API key caller, except
``POST /runs/{id}/tool-calls``: a running agent authenticates with its
run-scoped token (``Authorization: Bearer <run token>``, issued by the
scheduler when the run starts), never with a user's credential.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from server.api.agents import trace_id
from server.api.deps import services
from server.auth import Caller
from server.dispatch.schemas import TaskSubmit, ToolCallIn
from server.dispatch.tasks import TaskService
from server.dispatch.toolcalls import RunCaller, ToolCallService, run_caller
from server.logs import bind_tenant


def _tasks(state: State) -> TaskService:
    svc = services(state)
    return TaskService(svc.gate, svc.agents, svc.dispatch)


def _tool_calls(state: State) -> ToolCallService:
    svc = services(state)
    return ToolCallService(svc.gate, svc.agents, svc.tenants)


def _require_submit(caller: Caller) -> None:
    """Users need a submitting role; services may submit without one (the policy decides)."""
    if caller.kind != "service":
        caller.require("tasks.submit")


async def _run_caller(
    request: Request[object, object, State], state: State, run_id: str
) -> RunCaller:
    """The running agent of run ``run_id`` (its run token), after its tenant's rate limit."""
    who = await run_caller(run_id, request.headers.get("authorization", ""))
    bind_tenant(who.caller.tenant)
    svc = services(state)
    limits = await svc.tenants.limits(who.caller.tenant)
    await svc.limiter.check(
        who.caller.tenant, limits.get("rate_limit_per_minute"), limits.get("rate_limit_burst")
    )
    return who


class TaskController(Controller):
    """Submitting and following tasks; runs, their tool calls and artifacts."""

    tags = ["tasks"]

    @post(
        "/agents/{agent_id:str}/tasks",
        summary="Submit a task to an agent (gated: task.submit)",
        status_code=HTTP_202_ACCEPTED,
    )
    async def submit_task(
        self,
        state: State,
        caller: Caller,
        agent_id: str,
        data: TaskSubmit,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        _require_submit(caller)
        return await _tasks(state).submit(caller, agent_id, data, trace_id(request))

    @get("/tasks", summary="List tasks (cursor pagination)")
    async def list_tasks(
        self,
        state: State,
        caller: Caller,
        agent_id: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = Parameter(default=50, ge=1, le=200),
    ) -> dict[str, Any]:
        caller.require("tasks.read")
        return await _tasks(state).page(caller, agent_id, status, cursor, limit)

    @get("/tasks/{task_id:str}", summary="One task")
    async def get_task(self, state: State, caller: Caller, task_id: str) -> dict[str, Any]:
        caller.require("tasks.read")
        return await _tasks(state).get(caller, task_id)

    @post("/tasks/{task_id:str}/cancel", summary="Cancel a task", status_code=HTTP_200_OK)
    async def cancel_task(self, state: State, caller: Caller, task_id: str) -> dict[str, Any]:
        caller.require("tasks.cancel")
        return await _tasks(state).cancel(caller, task_id)

    @get("/tasks/{task_id:str}/runs", summary="The runs (attempts) of a task")
    async def task_runs(self, state: State, caller: Caller, task_id: str) -> dict[str, Any]:
        caller.require("tasks.read")
        return await _tasks(state).runs(caller, task_id)

    @get("/runs/{run_id:str}", summary="One run with its tool calls")
    async def get_run(self, state: State, caller: Caller, run_id: str) -> dict[str, Any]:
        caller.require("tasks.read")
        return await _tasks(state).run(caller, run_id)

    @get("/runs/{run_id:str}/artifacts", summary="A run's outputs (name, size, sha256)")
    async def run_artifacts(self, state: State, caller: Caller, run_id: str) -> dict[str, Any]:
        caller.require("tasks.read")
        return await _tasks(state).artifacts(caller, run_id)

    @get(
        "/runs/{run_id:str}/artifacts/{name:path}",
        summary="The content of one output",
        media_type="application/octet-stream",
    )
    async def run_artifact(
        self, state: State, caller: Caller, run_id: str, name: str
    ) -> Response[bytes]:
        caller.require("tasks.read")
        content, sha256 = await _tasks(state).artifact(caller, run_id, name.lstrip("/"))
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"ETag": f'"{sha256}"', "X-Content-SHA256": sha256},
        )

    @post(
        "/runs/{run_id:str}/tool-calls",
        summary="A running agent asks to invoke a tool (gated: tool.invoke; run token)",
        status_code=HTTP_200_OK,
        dependencies={"run": Provide(_run_caller)},
    )
    async def tool_call(
        self,
        state: State,
        run: RunCaller,
        data: ToolCallIn,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        return await _tool_calls(state).invoke(run, data, trace_id(request))
