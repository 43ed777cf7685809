"""Agent lifecycle: create, read, update, deploy, disable — each change gated and recorded."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from engine import Decision, Mode, Resource
from server.auth import Caller, utcnow
from server.catalog import Catalog
from server.db.tables import (
    Agent,
    AgentToolBinding,
    Bundle,
    Deployment,
    Model,
    PolicyEnforcement,
    Tool,
)
from server.errors import ConflictError, InvalidInputError, NotFoundError
from server.gate import Gate, Parked
from server.masking import mask
from server.schemas import AgentCreate, AgentUpdate

#: Catalog `llm_profile` → the model a template agent runs on.
PROFILE_MODELS = {
    "openai": "model://gpt-4o",
    "local": "model://llama3.2:3b",
    "ollama": "model://llama3.2:3b",
}
GLOBAL = "*"


def model_name(reference: str) -> str:
    """``model://gpt-4o`` → ``gpt-4o``; ``model://ollama/llama3.2-3b`` → ``llama3.2-3b``."""
    return reference.removeprefix("model://").rsplit("/", 1)[-1]


def new_id(prefix: str) -> str:
    """An opaque id with a type prefix."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def shape(
    row: dict[str, Any],
    tools: list[str],
    policies: list[dict[str, str]],
    deployment: dict[str, Any] | None,
    secret: frozenset[str],
) -> dict[str, Any]:
    """An agent as the API shows it (secret config fields masked)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "template_id": row["template_id"],
        "model": row["model"],
        "config": mask(row["config"], secret),
        "status": row["status"],
        "tool_ids": sorted(tools),
        "policy_ids": [p["bundle"] for p in policies],
        "policies": policies,
        "deployment": None
        if deployment is None
        else {"id": deployment["id"], "created_at": deployment["created_at"].isoformat()},
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def bind_tools(tenant: str, agent_id: str, tools: list[str], now: datetime) -> None:
    """Bind ``tools`` to an agent in one statement."""
    if tools:
        await AgentToolBinding.insert(
            *(
                AgentToolBinding(
                    id=new_id("atb"), tenant=tenant, agent_id=agent_id, tool_id=tool, created_at=now
                )
                for tool in tools
            )
        )


async def attach_policies(tenant: str, agent_id: str, modes: dict[str, str]) -> None:
    """Attach bundles to an agent with their modes, in one statement."""
    if modes:
        await PolicyEnforcement.insert(
            *(
                PolicyEnforcement(
                    id=new_id("pen"), tenant=tenant, agent_id=agent_id, bundle=bundle, mode=mode
                )
                for bundle, mode in modes.items()
            )
        )


class AgentService:
    """The agent lifecycle of one tenant's caller."""

    def __init__(self, gate: Gate, catalog: Catalog) -> None:
        self._gate = gate
        self._catalog = catalog

    async def row(self, caller: Caller, agent_id: str) -> dict[str, Any]:
        """The stored agent of the caller's tenant, or 404."""
        row = (
            await Agent.select()
            .output(load_json=True)
            .where((Agent.id == agent_id) & (Agent.tenant == caller.tenant))
            .first()
        )
        if row is None:
            raise NotFoundError(f"no agent `{agent_id}`")
        return dict(row)

    async def links(self, tenant: str, agent_id: str) -> tuple[list[str], list[dict[str, str]]]:
        """The agent's bound tools and attached policies (with modes)."""
        tools = await AgentToolBinding.select(AgentToolBinding.tool_id).where(
            (AgentToolBinding.tenant == tenant) & (AgentToolBinding.agent_id == agent_id)
        )
        policies = await PolicyEnforcement.select(
            PolicyEnforcement.bundle, PolicyEnforcement.mode
        ).where((PolicyEnforcement.tenant == tenant) & (PolicyEnforcement.agent_id == agent_id))
        return sorted(t["tool_id"] for t in tools), [dict(p) for p in policies]

    async def secret_fields(self, template_id: str | None) -> frozenset[str]:
        """Config fields of a template declared ``format: secret``."""
        return self._catalog.get(template_id).secret_fields if template_id else frozenset()

    async def view(self, caller: Caller, row: dict[str, Any]) -> dict[str, Any]:
        """An agent as the API shows it (secrets masked)."""
        tools, policies = await self.links(caller.tenant, row["id"])
        deployment = (
            await Deployment.select(Deployment.id, Deployment.created_at)
            .where(
                (Deployment.tenant == caller.tenant)
                & (Deployment.agent_id == row["id"])
                & (Deployment.status == "active")
            )
            .first()
        )
        return shape(row, tools, policies, deployment, await self.secret_fields(row["template_id"]))

    async def get(self, caller: Caller, agent_id: str) -> dict[str, Any]:
        """One agent of the caller's tenant (404 for any other)."""
        return await self.view(caller, await self.row(caller, agent_id))

    async def page(self, caller: Caller, cursor: str | None, limit: int) -> dict[str, Any]:
        """A page of agents, oldest first; ``next`` is the cursor of the following page."""
        query = (
            Agent.select()
            .output(load_json=True)
            .where(Agent.tenant == caller.tenant)
            .order_by(Agent.id)
            .limit(limit + 1)
        )
        if cursor:
            query = query.where(Agent.id > cursor)
        rows = list(await query)
        page = rows[:limit]
        return {
            "items": [await self.view(caller, r) for r in page],
            "next": page[-1]["id"] if len(rows) > limit else None,
        }

    async def touch(
        self, caller: Caller, agent_id: str, seen: datetime, values: dict[Any, Any] | None = None
    ) -> None:
        """Change the agent only if it is still as it was when the request was decided.

        Decisions are evaluated from state read before their transaction; a
        concurrent change in between (a tool bound, a model swapped) must not
        ride on a decision that never saw it: 409, and nothing is written.
        """
        changed = (
            await Agent.update({Agent.updated_at: utcnow(), **(values or {})})
            .where(
                (Agent.id == agent_id)
                & (Agent.tenant == caller.tenant)
                & (Agent.updated_at == seen)
            )
            .returning(Agent.id)
        )
        if not changed:
            raise ConflictError(
                f"agent `{agent_id}` changed while this request was decided; send it again"
            )

    async def modes(self, caller: Caller, agent_id: str) -> dict[str, Mode]:
        """The enforcement mode of each bundle attached to the agent."""
        _, policies = await self.links(caller.tenant, agent_id)
        return {p["bundle"]: Mode(p["mode"]) for p in policies}

    async def allowed_tools(self, tenant: str) -> list[str]:
        """The tools the tenant allows."""
        rows = await Tool.select(Tool.name).where((Tool.tenant == tenant) & Tool.allowed.eq(True))
        return sorted(r["name"] for r in rows)

    async def _check_refs(
        self, caller: Caller, model: str | None, tools: list[str], policies: list[str]
    ) -> None:
        if model is not None:
            found = await Model.exists().where(
                (Model.tenant == caller.tenant) & (Model.name == model_name(model))
            )
            if not found:
                raise NotFoundError(f"unknown model `{model}`")
        if tools:
            rows = await Tool.select(Tool.name).where(
                (Tool.tenant == caller.tenant) & Tool.name.is_in(tools)
            )
            missing = sorted(set(tools) - {r["name"] for r in rows})
            if missing:
                raise NotFoundError(f"unknown tool(s) {', '.join(f'`{t}`' for t in missing)}")
        if policies:
            rows = await Bundle.select(Bundle.name).where(
                Bundle.tenant.is_in([caller.tenant, GLOBAL]) & Bundle.name.is_in(policies)
            )
            missing = sorted(set(policies) - {r["name"] for r in rows})
            if missing:
                raise NotFoundError(
                    f"unknown policy bundle(s) {', '.join(f'`{p}`' for p in missing)}"
                )

    def _resolve(self, body: AgentCreate) -> tuple[str, str, list[str], dict[str, Any]]:
        """(name, model, tool_ids, config) of a create request, template or direct form."""
        if body.template_id is not None:
            template = self._catalog.get(body.template_id)
            template.check(body.config)
            profile = str(body.config.get("llm_profile", ""))
            model = body.model or PROFILE_MODELS.get(profile, "")
            tools = body.tool_ids or list(template.doc["recipe"]["tools"])
            return body.name or str(template.doc["name"]), model, tools, body.config
        if not body.name or not body.model:
            raise InvalidInputError(
                "give `template_id` and `config`, or the direct form with `name` and `model`"
            )
        return body.name, body.model, body.tool_ids, body.config

    async def create(self, caller: Caller, body: AgentCreate, trace_id: str) -> dict[str, Any]:
        """Gate `agent.create`, then store the agent, its tool bindings and policy attachments."""
        name, model, tools, config = self._resolve(body)
        await self._check_refs(caller, model, tools, body.policy_ids)
        agent_id = new_id("agt")
        secret = await self.secret_fields(body.template_id)
        resource = Resource(
            type="agent",
            id=agent_id,
            tenant=caller.tenant,
            attributes=mask(
                {
                    "name": name,
                    "template": body.template_id,
                    "model": model,
                    "tool_ids": tools,
                    "policy_ids": body.policy_ids,
                    "status": "created",
                    "config": config,
                },
                secret,
            ),
        )
        context = {"tenant": {"allowed_tools": await self.allowed_tools(caller.tenant)}}

        stored: dict[str, Any] = {}

        async def store(decision: Decision) -> None:
            now = utcnow()
            agent = Agent(
                id=agent_id,
                tenant=caller.tenant,
                name=name,
                template_id=body.template_id,
                model=model,
                config=config,
                status="created",
                created_by=caller.subject,
                created_at=now,
                updated_at=now,
            )
            await Agent.insert(agent)
            await bind_tools(caller.tenant, agent_id, tools, now)
            await attach_policies(
                caller.tenant, agent_id, dict.fromkeys(body.policy_ids, "enforce")
            )
            stored.update(agent.to_dict())

        governed = await self._gate.govern(
            caller, "agent.create", resource, context, store, trace_id=trace_id
        )
        policies = [{"bundle": b, "mode": "enforce"} for b in body.policy_ids]
        return {**shape(stored, tools, policies, None, secret), **governed.summary()}

    async def attributes(self, caller: Caller, row: dict[str, Any]) -> dict[str, Any]:
        """An agent as a decision resource sees it."""
        tools, policies = await self.links(caller.tenant, row["id"])
        return {
            "name": row["name"],
            "template": row["template_id"],
            "model": row["model"],
            "status": row["status"],
            "tool_ids": tools,
            "policy_ids": [p["bundle"] for p in policies],
        }

    async def resource(self, caller: Caller, row: dict[str, Any]) -> Resource:
        """A stored agent as the resource of a decision about it."""
        return Resource(
            type="agent",
            id=row["id"],
            tenant=caller.tenant,
            attributes=await self.attributes(caller, row),
        )

    async def update(
        self,
        caller: Caller,
        agent_id: str,
        body: AgentUpdate,
        trace_id: str,
        approval: str | None = None,
    ) -> dict[str, Any]:
        """Gate `agent.update` with the changes; store them if allowed."""
        row = await self.row(caller, agent_id)
        kept_modes = {b: m.value for b, m in (await self.modes(caller, agent_id)).items()}
        changes = {
            k: v
            for k, v in {
                "name": body.name,
                "model": body.model,
                "config": body.config,
                "policy_ids": body.policy_ids,
                "tool_ids": body.tool_ids,
                "status": body.status,
            }.items()
            if v is not None
        }
        if not changes:
            raise InvalidInputError("nothing to change")
        if body.config is not None and row["template_id"]:
            self._catalog.get(row["template_id"]).check(body.config)
        await self._check_refs(caller, body.model, body.tool_ids or [], body.policy_ids or [])
        secret = await self.secret_fields(row["template_id"])
        resource = await self.resource(caller, row)
        context = {
            "changes": mask(changes, secret),
            "tenant": {"allowed_tools": await self.allowed_tools(caller.tenant)},
        }

        async def store(decision: Decision) -> None:
            now = utcnow()
            values: dict[Any, Any] = {}
            for column, key in (
                (Agent.name, "name"),
                (Agent.model, "model"),
                (Agent.config, "config"),
                (Agent.status, "status"),
            ):
                if key in changes:
                    values[column] = changes[key]
            await self.touch(caller, agent_id, row["updated_at"], values)
            if body.tool_ids is not None:
                await AgentToolBinding.delete().where(
                    (AgentToolBinding.tenant == caller.tenant)
                    & (AgentToolBinding.agent_id == agent_id)
                )
                await bind_tools(caller.tenant, agent_id, body.tool_ids, now)
            if body.policy_ids is not None:
                await PolicyEnforcement.delete().where(
                    (PolicyEnforcement.tenant == caller.tenant)
                    & (PolicyEnforcement.agent_id == agent_id)
                )
                # Bundles that stay attached keep their mode; new ones start in enforce.
                await attach_policies(
                    caller.tenant,
                    agent_id,
                    {b: kept_modes.get(b, "enforce") for b in body.policy_ids},
                )

        governed = await self._gate.govern(
            caller,
            "agent.update",
            resource,
            context,
            store,
            modes=await self.modes(caller, agent_id),
            park=Parked(
                "agent.update", {"agent_id": agent_id, "changes": msgspec.to_builtins(body)}
            ),
            approval=approval,
            trace_id=trace_id,
        )
        return {**await self.get(caller, agent_id), **governed.summary()}
