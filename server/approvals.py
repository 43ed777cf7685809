"""Approvals: requests a ``require_approval`` policy parked, decided by an admin or security user.

Approving runs the parked operation again as the original requester, with the
approval on record: the decision is evaluated anew (state may have changed),
the ``require_approval`` reasons count as satisfied, and any enforcing deny
still wins — the approval then ends ``failed`` and the refusal is returned.
Both the approval and the new decision are recorded.
"""

from __future__ import annotations

from typing import Any

import msgspec

from server.agents import AgentService
from server.auth import Caller, utcnow
from server.bindings import BindingService
from server.db.tables import Approval
from server.errors import ConflictError, ForbiddenError, NotFoundError
from server.lifecycle import AgentLifecycle
from server.masking import mask
from server.registration import ModelRegister, RegistryService
from server.schemas import AgentUpdate


def _view(row: dict[str, Any], secret: frozenset[str]) -> dict[str, Any]:
    """An approval as the API shows it: the parked arguments with secrets masked."""
    return {
        "id": row["id"],
        "decision_id": row["decision_id"],
        "operation": row["operation"],
        "payload": mask(row["payload"], secret),
        "requested_by": row["requested_by"],
        "status": row["status"],
        "decided_by": row["decided_by"] or None,
        "created_at": row["created_at"].isoformat(),
    }


class ApprovalService:
    """Parked requests of one tenant."""

    def __init__(
        self,
        agents: AgentService,
        lifecycle: AgentLifecycle,
        bindings: BindingService,
        registry: RegistryService,
    ) -> None:
        self._agents = agents
        self._lifecycle = lifecycle
        self._bindings = bindings
        self._registry = registry

    async def list(self, caller: Caller, status: str | None) -> dict[str, Any]:
        """The tenant's approvals, newest first."""
        query = (
            Approval.select()
            .where(Approval.tenant == caller.tenant)
            .order_by(Approval.created_at, ascending=False)
        )
        if status:
            query = query.where(Approval.status == status)
        rows = await query.output(load_json=True)
        return {"items": [_view(r, await self._secret(caller, r)) for r in rows]}

    async def _secret(self, caller: Caller, row: dict[str, Any]) -> frozenset[str]:
        """The secret config fields of the agent an approval is about (none if it is gone)."""
        try:
            agent = await self._agents.row(caller, str(row["payload"].get("agent_id", "")))
        except NotFoundError:
            return frozenset()
        return await self._agents.secret_fields(agent["template_id"])

    async def _pending(self, caller: Caller, approval_id: str) -> dict[str, Any]:
        row = (
            await Approval.select()
            .where((Approval.id == approval_id) & (Approval.tenant == caller.tenant))
            .output(load_json=True)
            .first()
        )
        if row is None:
            raise NotFoundError(f"no approval `{approval_id}`")
        if row["status"] != "pending":
            raise ConflictError(f"approval `{approval_id}` is already {row['status']}")
        return dict(row)

    async def _run(self, requester: Caller, row: dict[str, Any], trace: str) -> dict[str, Any]:
        op, args, approval = row["operation"], row["payload"], row["id"]
        if op == "agent.deploy":
            return await self._lifecycle.deploy(
                requester, args["agent_id"], trace, approval=approval
            )
        if op == "agent.disable":
            return await self._lifecycle.disable(
                requester, args["agent_id"], args.get("reason", ""), trace, approval=approval
            )
        if op == "agent.update":
            body = msgspec.convert(args["changes"], AgentUpdate)
            return await self._agents.update(
                requester, args["agent_id"], body, trace, approval=approval
            )
        if op == "tool.bind":
            return await self._bindings.bind(
                requester,
                args["agent_id"],
                args["tool_id"],
                args.get("config", {}),
                trace,
                approval=approval,
            )
        if op == "tool.unbind":
            return await self._bindings.unbind(
                requester, args["agent_id"], args["tool_id"], trace, approval=approval
            )
        if op == "model.register":
            model = msgspec.convert(args, ModelRegister)
            return await self._registry.register_model(requester, model, trace, approval=approval)
        raise ConflictError(
            f"approval `{approval}` holds an operation this server cannot run: `{op}`"
        )

    async def decide(
        self, caller: Caller, approval_id: str, approve: bool, trace: str
    ) -> dict[str, Any]:
        """Approve (run the parked operation) or reject a pending approval."""
        row = await self._pending(caller, approval_id)
        if caller.kind != "user":
            raise ForbiddenError("approvals are decided by people, not services")
        if caller.subject == row["requested_by"].get("subject"):
            raise ForbiddenError("a request cannot be approved or rejected by the one who made it")
        status = "approved" if approve else "rejected"
        claimed = (
            await Approval.update(
                {
                    Approval.status: status,
                    Approval.decided_by: caller.subject,
                    Approval.decided_at: utcnow(),
                }
            )
            .where((Approval.id == approval_id) & (Approval.status == "pending"))
            .returning(Approval.id)
        )
        if not claimed:
            raise ConflictError(f"approval `{approval_id}` was decided by someone else")
        result: dict[str, Any] | None = None
        if approve:
            who = row["requested_by"]
            requester = Caller(
                who["subject"], caller.tenant, frozenset(who["roles"]), who.get("kind", "user")
            )
            try:
                result = await self._run(requester, row, trace)
            except Exception:
                # Approved, but the operation, evaluated again, was refused: say so on the approval.
                await Approval.update({Approval.status: "failed"}).where(Approval.id == approval_id)
                raise
        return {
            "approval": _view(
                {**row, "status": status, "decided_by": caller.subject},
                await self._secret(caller, row),
            ),
            "result": result,
        }
