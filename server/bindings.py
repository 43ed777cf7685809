"""Tools, tool bindings and policy attachments of agents — each change gated and recorded."""

from __future__ import annotations

from typing import Any

from engine import Decision, Mode, Resource
from server.agents import AgentService, new_id
from server.auth import Caller, utcnow
from server.db.tables import AgentToolBinding, Bundle, PolicyEnforcement, Tool
from server.errors import ConflictError, NotFoundError
from server.gate import Gate, Parked
from server.policies import GLOBAL_TENANT


class BindingService:
    """Tool bindings and policy modes of one tenant's agents."""

    def __init__(self, gate: Gate, agents: AgentService) -> None:
        self._gate = gate
        self._agents = agents

    async def tools(self, caller: Caller) -> dict[str, Any]:
        """The tenant's tools."""
        rows = (
            await Tool.select()
            .where(Tool.tenant == caller.tenant)
            .order_by(Tool.id)
            .output(load_json=True)
        )
        return {
            "items": [
                {**{k: v for k, v in r.items() if k != "tenant"}, "id": r["name"]} for r in rows
            ]
        }

    async def _agent_context(self, caller: Caller, agent_id: str) -> tuple[dict[str, Any], Any]:
        """The agent as a decision's context sees it, and the version the change must find."""
        row = await self._agents.row(caller, agent_id)
        return {"id": agent_id, "tenant": caller.tenant, "status": row["status"]}, row["updated_at"]

    async def bind(
        self,
        caller: Caller,
        agent_id: str,
        tool_id: str,
        config: dict[str, Any],
        trace: str,
        approval: str | None = None,
    ) -> dict[str, Any]:
        """Gate `tool.bind`, then bind."""
        agent, seen = await self._agent_context(caller, agent_id)
        tool = (
            await Tool.select()
            .where((Tool.tenant == caller.tenant) & (Tool.name == tool_id))
            .first()
        )
        if tool is None:
            raise NotFoundError(f"unknown tool `{tool_id}`")
        if await AgentToolBinding.exists().where(
            (AgentToolBinding.tenant == caller.tenant)
            & (AgentToolBinding.agent_id == agent_id)
            & (AgentToolBinding.tool_id == tool_id)
        ):
            raise ConflictError(f"tool `{tool_id}` is already bound to agent `{agent_id}`")
        resource = Resource(
            type="tool", id=tool_id, tenant=caller.tenant, attributes={"category": tool["category"]}
        )
        context = {
            "agent": agent,
            "tenant": {"allowed_tools": await self._agents.allowed_tools(caller.tenant)},
        }

        async def store(_: Decision) -> None:
            await self._agents.touch(caller, agent_id, seen)
            await AgentToolBinding.insert(
                AgentToolBinding(
                    id=new_id("atb"),
                    tenant=caller.tenant,
                    agent_id=agent_id,
                    tool_id=tool_id,
                    config=config,
                    created_at=utcnow(),
                )
            )

        governed = await self._gate.govern(
            caller,
            "tool.bind",
            resource,
            context,
            store,
            modes=await self._agents.modes(caller, agent_id),
            park=Parked("tool.bind", {"agent_id": agent_id, "tool_id": tool_id, "config": config}),
            approval=approval,
            trace_id=trace,
        )
        return {
            **await self._agents.get(caller, agent_id),
            **governed.summary(),
        }

    async def unbind(
        self, caller: Caller, agent_id: str, tool_id: str, trace: str, approval: str | None = None
    ) -> dict[str, Any]:
        """Gate `tool.unbind`, then unbind."""
        agent, seen = await self._agent_context(caller, agent_id)
        where = (
            (AgentToolBinding.tenant == caller.tenant)
            & (AgentToolBinding.agent_id == agent_id)
            & (AgentToolBinding.tool_id == tool_id)
        )
        if not await AgentToolBinding.exists().where(where):
            raise NotFoundError(f"tool `{tool_id}` is not bound to agent `{agent_id}`")
        resource = Resource(type="tool", id=tool_id, tenant=caller.tenant, attributes={})

        async def store(_: Decision) -> None:
            await self._agents.touch(caller, agent_id, seen)
            await AgentToolBinding.delete().where(where)

        governed = await self._gate.govern(
            caller,
            "tool.unbind",
            resource,
            {"agent": agent},
            store,
            modes=await self._agents.modes(caller, agent_id),
            park=Parked("tool.unbind", {"agent_id": agent_id, "tool_id": tool_id}),
            approval=approval,
            trace_id=trace,
        )
        return {
            **await self._agents.get(caller, agent_id),
            **governed.summary(),
        }

    async def set_mode(
        self, caller: Caller, agent_id: str, bundle: str, mode: Mode, trace: str
    ) -> dict[str, Any]:
        """Attach ``bundle`` to the agent with ``mode`` (gated as `agent.update`)."""
        row = await self._agents.row(caller, agent_id)
        if not await Bundle.exists().where(
            Bundle.tenant.is_in([caller.tenant, GLOBAL_TENANT]) & (Bundle.name == bundle)
        ):
            raise NotFoundError(f"unknown policy bundle `{bundle}`")
        resource = await self._agents.resource(caller, row)
        context = {"changes": {"policies": {bundle: mode.value}}}
        where = (
            (PolicyEnforcement.tenant == caller.tenant)
            & (PolicyEnforcement.agent_id == agent_id)
            & (PolicyEnforcement.bundle == bundle)
        )

        async def store(_: Decision) -> None:
            await self._agents.touch(caller, agent_id, row["updated_at"])
            if await PolicyEnforcement.exists().where(where):
                await PolicyEnforcement.update({PolicyEnforcement.mode: mode.value}).where(where)
            else:
                await PolicyEnforcement.insert(
                    PolicyEnforcement(
                        id=new_id("pen"),
                        tenant=caller.tenant,
                        agent_id=agent_id,
                        bundle=bundle,
                        mode=mode.value,
                    )
                )

        governed = await self._gate.govern(
            caller, "agent.update", resource, context, store, trace_id=trace
        )
        return {
            **await self._agents.get(caller, agent_id),
            **governed.summary(),
        }
