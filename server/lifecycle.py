"""Deploying and disabling agents: the gates that put an agent into service and take it out."""

from __future__ import annotations

from typing import Any

from engine import Decision
from server.agents import AgentService, model_name, new_id
from server.auth import Caller, utcnow
from server.db.tables import Agent, Deployment, Model
from server.gate import Gate, Parked


class AgentLifecycle:
    """`agent.deploy` and `agent.disable` for one tenant's callers."""

    def __init__(self, gate: Gate, agents: AgentService) -> None:
        self._gate = gate
        self._agents = agents

    async def _deploy_context(self, caller: Caller, row: dict[str, Any]) -> dict[str, Any]:
        _, policies = await self._agents.links(caller.tenant, row["id"])
        active = {r["name"] for r in await self._gate.policies.active_rows(caller.tenant)}
        model = (
            await Model.select()
            .where((Model.tenant == caller.tenant) & (Model.name == model_name(row["model"])))
            .first()
        )
        return {
            "policies": [
                {
                    "name": p["bundle"],
                    "status": "active" if p["bundle"] in active else "inactive",
                    "mode": p["mode"],
                }
                for p in policies
            ],
            "model": None
            if model is None
            else {
                "id": model["name"],
                "registered": model["registered"],
                "verified": model["verified"],
                "privacy": model["privacy"],
                "admin_approval_required": model["admin_approval_required"],
            },
            "tenant": {"allowed_tools": await self._agents.allowed_tools(caller.tenant)},
        }

    async def deploy(
        self, caller: Caller, agent_id: str, trace_id: str, approval: str | None = None
    ) -> dict[str, Any]:
        """Gate `agent.deploy` (active bundle, registered verified model, allowed tools, role)."""
        row = await self._agents.row(caller, agent_id)
        resource = await self._agents.resource(caller, row)
        context = await self._deploy_context(caller, row)

        async def store(decision: Decision) -> None:
            now = utcnow()
            await Deployment.update({Deployment.status: "superseded"}).where(
                (Deployment.tenant == caller.tenant)
                & (Deployment.agent_id == agent_id)
                & (Deployment.status == "active")
            )
            await Deployment.insert(
                Deployment(
                    id=new_id("dep"),
                    tenant=caller.tenant,
                    agent_id=agent_id,
                    status="active",
                    decision_id=decision.decision_id,
                    created_at=now,
                )
            )
            await self._agents.touch(
                caller, agent_id, row["updated_at"], {Agent.status: "deployed"}
            )

        governed = await self._gate.govern(
            caller,
            "agent.deploy",
            resource,
            context,
            store,
            modes=await self._agents.modes(caller, agent_id),
            park=Parked("agent.deploy", {"agent_id": agent_id}),
            approval=approval,
            trace_id=trace_id,
        )
        return {**await self._agents.get(caller, agent_id), **governed.summary()}

    async def disable(
        self, caller: Caller, agent_id: str, reason: str, trace_id: str, approval: str | None = None
    ) -> dict[str, Any]:
        """Gate `agent.disable`; a disabled agent takes no new tasks."""
        row = await self._agents.row(caller, agent_id)
        resource = await self._agents.resource(caller, row)

        async def store(decision: Decision) -> None:
            await self._agents.touch(
                caller, agent_id, row["updated_at"], {Agent.status: "disabled"}
            )
            await Deployment.update({Deployment.status: "stopped"}).where(
                (Deployment.tenant == caller.tenant)
                & (Deployment.agent_id == agent_id)
                & (Deployment.status == "active")
            )

        context: dict[str, Any] = {"reason": reason} if reason else {}
        governed = await self._gate.govern(
            caller,
            "agent.disable",
            resource,
            context,
            store,
            modes=await self._agents.modes(caller, agent_id),
            park=Parked("agent.disable", {"agent_id": agent_id, "reason": reason}),
            approval=approval,
            trace_id=trace_id,
        )
        return {**await self._agents.get(caller, agent_id), **governed.summary()}
