"""Agent templates and tools registered on verified evidence, decided as `artifact.register`.

The same order as a model (:mod:`server.registration.models`): the evidence is
verified (:func:`~server.registration.evidence.verify_evidence`; a rejection is a 422
with its reason, nothing stored, no decision), the verified bytes are written to the
content-addressed store, then `artifact.register` is decided with
``context.attestations`` and the row is written in the decision's transaction.

The decision's resource is ``{type: "artifact", id: "agent-template:<name>" |
"tool:<name>", attributes: {sha256}}`` (the registry-admission Cedar schema gives an
`Artifact` only ``sha256``). Agent templates live in their own table
(``agent_templates``): the file catalog (:mod:`server.catalog`) ships config schemas
for the agents API and is not tenant data. Tools are the tenant's existing ``tools``
rows: a seeded, unverified tool gets its evidence (``sha256``, ``verified``,
``decision_id``, the facts in ``attributes.attestations``); a new name adds a row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

from engine import Decision, Resource
from registry import Reason
from server.auth import Caller, utcnow
from server.db.tables import AgentTemplate, Tool
from server.errors import ConflictError, InvalidInputError, NotFoundError
from server.gate import Governed
from server.registration.common import (
    MODEL_NAME,
    ArtifactRegister,
    AttestationRejectedError,
)
from server.registration.evidence import Verified, verify_evidence
from server.registration.models import RegistryService, statement_policy
from server.registration.trust import TableTrustStore

Kind = Literal["agent-template", "tool"]


def _facts(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "size": attributes.get("size"),
        "artifact_stored": bool(attributes.get("artifact_stored", False)),
        "attestations": attributes.get("attestations"),
    }


def template_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "sha256": row["sha256"],
        "verified": True,
        **_facts(row["attributes"] or {}),
        "decision_id": row["decision_id"] or None,
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
    }


def tool_view(row: Mapping[str, Any]) -> dict[str, Any]:
    attributes = row["attributes"] or {}
    return {
        "id": row["name"],  # the API names a tool by its name (as `GET /tools` does)
        "name": row["name"],
        "category": row["category"],
        "allowed": bool(row["allowed"]),
        "verified": bool(row["verified"]),
        "sha256": row["sha256"] or None,
        **_facts(attributes),
        "decision_id": row["decision_id"] or None,
    }


class ArtifactRegistry:
    """Agent templates and tools of the caller's tenant."""

    def __init__(self, models: RegistryService) -> None:
        self._models = models

    async def _verify(
        self, caller: Caller, body: ArtifactRegister
    ) -> tuple[Verified, TableTrustStore]:
        if not MODEL_NAME.fullmatch(body.name):
            raise InvalidInputError(
                "`name` must be 1-200 characters: letters, digits and `._:+-`, "
                "starting with a letter or digit"
            )
        trust = TableTrustStore(caller.tenant)
        verified = await verify_evidence(
            body.attestation,
            body.provenance,
            body.artifact_base64,
            body.sha256,
            store=await trust.snapshot(),
            statements=statement_policy(await self._models.settings(caller.tenant)),
            now=utcnow(),
            name=body.name,
        )
        return verified, trust

    async def _register(
        self,
        caller: Caller,
        kind: Kind,
        body: ArtifactRegister,
        trace_id: str,
        write: Any,
    ) -> Governed:
        verified, trust = await self._verify(caller, body)
        await self._models.put_blobs(verified.blobs)
        stored = {
            "sha256": verified.sha256,
            "size": verified.size,
            "artifact_stored": bool(verified.blobs),
            "attestations": verified.attestations,
            **({"files": verified.files} if verified.files else {}),
        }

        async def store(decision: Decision) -> None:
            if not await trust.all_active(verified.signers, utcnow()):
                raise AttestationRejectedError(
                    "a key that signed the evidence was revoked or expired during registration",
                    reason=Reason.REVOKED_KEY.value,
                )
            await write(decision, verified, stored)

        resource = Resource(
            type="artifact",
            id=f"{kind}:{body.name}",
            tenant=caller.tenant,
            attributes={"sha256": verified.sha256},
        )
        return await self._models.gate.govern(
            caller,
            "artifact.register",
            resource,
            {"attestations": verified.attestations},
            store,
            trace_id=trace_id,
        )

    # agent templates

    async def templates(self, caller: Caller) -> dict[str, Any]:
        rows = (
            await AgentTemplate.select()
            .where(AgentTemplate.tenant == caller.tenant)
            .order_by(AgentTemplate.name)
            .output(load_json=True)
        )
        return {"items": [template_view(r) for r in rows]}

    async def template(self, caller: Caller, ident: str) -> dict[str, Any]:
        """One template by id or name; another tenant's answers like a missing one (404)."""
        row = (
            await AgentTemplate.select()
            .where(
                (AgentTemplate.tenant == caller.tenant)
                & ((AgentTemplate.id == ident) | (AgentTemplate.name == ident))
            )
            .output(load_json=True)
            .first()
        )
        if row is None:
            raise NotFoundError(f"no agent template `{ident}`")
        return template_view(row)

    async def register_template(
        self, caller: Caller, body: ArtifactRegister, trace_id: str
    ) -> dict[str, Any]:
        if await AgentTemplate.exists().where(
            (AgentTemplate.tenant == caller.tenant) & (AgentTemplate.name == body.name)
        ):
            raise ConflictError(f"agent template `{body.name}` is already registered")
        ident = f"tpl_{uuid.uuid4().hex}"

        async def write(decision: Decision, verified: Verified, stored: dict[str, Any]) -> None:
            await AgentTemplate.insert(
                AgentTemplate(
                    id=ident,
                    tenant=caller.tenant,
                    name=body.name,
                    description=body.description,
                    sha256=verified.sha256,
                    attributes=stored,
                    decision_id=decision.decision_id,
                    created_by=caller.subject,
                    created_at=utcnow(),
                )
            )

        governed = await self._register(caller, "agent-template", body, trace_id, write)
        return {**await self.template(caller, ident), **governed.summary()}

    # tools

    async def tool(self, caller: Caller, name: str) -> dict[str, Any]:
        """One tool by name; another tenant's answers like a missing one (404)."""
        row = (
            await Tool.select()
            .where((Tool.tenant == caller.tenant) & (Tool.name == name))
            .output(load_json=True)
            .first()
        )
        if row is None:
            raise NotFoundError(f"no tool `{name}`")
        return tool_view(row)

    async def register_tool(
        self, caller: Caller, body: ArtifactRegister, trace_id: str
    ) -> dict[str, Any]:
        if body.description:
            raise InvalidInputError("`description` is for agent templates")
        existing = (
            await Tool.select(Tool.id, Tool.verified, Tool.attributes)
            .where((Tool.tenant == caller.tenant) & (Tool.name == body.name))
            .output(load_json=True)
            .first()
        )
        if existing is not None and existing["verified"]:
            raise ConflictError(f"tool `{body.name}` is already registered and verified")
        ident = f"{caller.tenant}:{body.name}"
        if len(ident) > 64:
            ident = f"tool_{uuid.uuid4().hex}"

        async def write(decision: Decision, verified: Verified, stored: dict[str, Any]) -> None:
            if existing is not None:  # a seeded, unverified tool gets its evidence
                updated = (
                    await Tool.update(
                        {
                            Tool.sha256: verified.sha256,
                            Tool.verified: True,
                            Tool.decision_id: decision.decision_id,
                            Tool.attributes: {**(existing["attributes"] or {}), **stored},
                        }
                    )
                    .where((Tool.id == existing["id"]) & Tool.verified.eq(False))
                    .returning(Tool.id)
                )
                if not updated:
                    raise ConflictError(f"tool `{body.name}` was registered meanwhile")
                return
            await Tool.insert(
                Tool(
                    id=ident,
                    tenant=caller.tenant,
                    name=body.name,
                    category="",
                    allowed=True,
                    attributes=stored,
                    sha256=verified.sha256,
                    verified=True,
                    decision_id=decision.decision_id,
                )
            )

        governed = await self._register(caller, "tool", body, trace_id, write)
        return {**await self.tool(caller, body.name), **governed.summary()}
