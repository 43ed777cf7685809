"""Agents: the governed lifecycle."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, patch, post
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from server.agents import AgentService
from server.api.deps import services
from server.auth import Caller
from server.lifecycle import AgentLifecycle
from server.schemas import AgentCreate, AgentDisable, AgentUpdate
from server.telemetry import current_trace_id


def _agents(state: State) -> AgentService:
    svc = services(state)
    return svc.agents


def _lifecycle(state: State) -> AgentLifecycle:
    svc = services(state)
    return AgentLifecycle(svc.gate, svc.agents)


def trace_id(request: Request[Any, Any, Any]) -> str:
    """The trace id for the decision record: the request span's (32 hex characters).

    Without a valid span: the caller's W3C ``traceparent`` trace id, else ``X-Request-Id``.
    """
    current = current_trace_id()
    if current:
        return current
    parent = request.headers.get("traceparent", "")
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 else request.headers.get("x-request-id", "")


class AgentController(Controller):
    """`/agents`: every change is a decision, recorded with the change."""

    path = "/agents"
    tags = ["agents"]

    @get("/", summary="List agents (cursor pagination)")
    async def list_agents(
        self,
        state: State,
        caller: Caller,
        cursor: str | None = None,
        limit: int = Parameter(default=50, ge=1, le=200),
    ) -> dict[str, Any]:
        caller.require("agents.read")
        return await _agents(state).page(caller, cursor, limit)

    @post("/", summary="Create an agent (gated: agent.create)", status_code=HTTP_201_CREATED)
    async def create_agent(
        self, state: State, caller: Caller, data: AgentCreate, request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        caller.require("agents.write")
        return await _agents(state).create(caller, data, trace_id(request))

    @get("/{agent_id:str}", summary="One agent")
    async def get_agent(self, state: State, caller: Caller, agent_id: str) -> dict[str, Any]:
        caller.require("agents.read")
        return await _agents(state).get(caller, agent_id)

    @patch("/{agent_id:str}", summary="Change an agent (gated: agent.update)")
    async def update_agent(
        self,
        state: State,
        caller: Caller,
        agent_id: str,
        data: AgentUpdate,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("agents.write")
        return await _agents(state).update(caller, agent_id, data, trace_id(request))

    @post(
        "/{agent_id:str}/deploy",
        summary="Deploy an agent (gated: agent.deploy)",
        status_code=HTTP_200_OK,
    )
    async def deploy_agent(
        self, state: State, caller: Caller, agent_id: str, request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        caller.require("agents.deploy")
        return await _lifecycle(state).deploy(caller, agent_id, trace_id(request))

    @post(
        "/{agent_id:str}/disable",
        summary="Disable an agent (gated: agent.disable)",
        status_code=HTTP_200_OK,
    )
    async def disable_agent(
        self,
        state: State,
        caller: Caller,
        agent_id: str,
        request: Request[Any, Any, Any],
        data: AgentDisable | None = None,
    ) -> dict[str, Any]:
        caller.require("agents.disable")
        return await _lifecycle(state).disable(
            caller, agent_id, data.reason if data else "", trace_id(request)
        )
