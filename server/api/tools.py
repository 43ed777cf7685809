"""Tools, bindings and policy modes of agents."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK

from engine import Mode
from server.api.agents import trace_id
from server.api.deps import services
from server.auth import Caller
from server.bindings import BindingService
from server.schemas import PolicyModeIn, ToolBind


def _bindings(state: State) -> BindingService:
    svc = services(state)
    return BindingService(svc.gate, svc.agents)


class ToolController(Controller):
    """`/tools` and the tool and policy attachments of an agent."""

    tags = ["tools"]

    @get("/tools", summary="The tenant's tools")
    async def list_tools(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("tools.read")
        return await _bindings(state).tools(caller)

    @post(
        "/agents/{agent_id:str}/tools",
        summary="Bind a tool (gated: tool.bind)",
        status_code=HTTP_200_OK,
    )
    async def bind_tool(
        self,
        state: State,
        caller: Caller,
        agent_id: str,
        data: ToolBind,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("tools.bind")
        return await _bindings(state).bind(
            caller, agent_id, data.tool_id, data.config, trace_id(request)
        )

    @delete(
        "/agents/{agent_id:str}/tools/{tool_id:str}",
        summary="Unbind a tool (gated: tool.unbind)",
        status_code=HTTP_200_OK,
    )
    async def unbind_tool(
        self,
        state: State,
        caller: Caller,
        agent_id: str,
        tool_id: str,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("tools.bind")
        return await _bindings(state).unbind(caller, agent_id, tool_id, trace_id(request))

    @put(
        "/agents/{agent_id:str}/policies/{bundle:str}",
        summary="Attach a bundle with a mode (gated: agent.update)",
    )
    async def set_policy_mode(
        self,
        state: State,
        caller: Caller,
        agent_id: str,
        bundle: str,
        data: PolicyModeIn,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("policies.attach")
        return await _bindings(state).set_mode(
            caller, agent_id, bundle, Mode(data.mode), trace_id(request)
        )
