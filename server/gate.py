"""The gate: every mutating request becomes a decision, recorded with the change it allows.

``govern`` evaluates the request against the tenant's active policy set, then,
in one transaction, appends the decision record and (only when allowed)
applies the change. A deny is recorded too and then answered with 403
``policy_denied``; a decision log that cannot be written fails the request and
nothing changes ("no change without a decision, no decision without a record").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from piccolo.engine.base import Engine

from engine import (
    Decision,
    DecisionRequest,
    EngineVerdict,
    EvalError,
    Mode,
    Outcome,
    Resource,
    apply_approval_obligations,
    apply_bundle_modes,
    combine,
    decide_async,
)
from server.auth import Caller, utcnow
from server.db.tables import Approval
from server.decisionlog import DecisionLog
from server.errors import AppError, ApprovalPendingError, PolicyDeniedError, UnavailableError
from server.groupcommit import GroupCommitter
from server.masking import mask
from server.policies import PolicyService
from server.telemetry import decision_span, observe_decision

T = TypeVar("T")

#: How often the gate signs a tenant's decision-chain head (whichever comes first).
SIGN_EVERY_SECONDS = 1.0
SIGN_EVERY_RECORDS = 100


@dataclass(frozen=True)
class Parked:
    """How to park a request a ``require_approval`` policy holds: the operation and its arguments."""

    operation: str
    payload: dict[str, Any]

    async def store(self, caller: Caller, decision_id: str) -> str:
        """Write the approval row (inside the decision's transaction); its id."""
        approval_id = f"apr_{uuid.uuid4().hex[:20]}"
        await Approval.insert(
            Approval(
                id=approval_id,
                tenant=caller.tenant,
                decision_id=decision_id,
                operation=self.operation,
                payload=self.payload,
                status="pending",
                created_at=utcnow(),
                requested_by={
                    "subject": caller.subject,
                    "roles": sorted(caller.roles),
                    "kind": caller.kind,
                },
            )
        )
        return approval_id


@dataclass
class Governed:
    """The decision and, when it allowed the change, what the change returned."""

    decision: Decision
    value: Any = None

    def summary(self) -> dict[str, Any]:
        """What a response says about the decision that allowed it."""
        return {
            "decision_id": self.decision.decision_id,
            "mode": self.decision.mode.value,
            "warnings": [
                {"policy": w.policy, "message": w.message} for w in self.decision.warnings
            ],
        }


def decision_record(decision: Decision, request: DecisionRequest, trace_id: str) -> dict[str, Any]:
    """What the decision log keeps of one decision (secrets masked)."""
    doc = msgspec.to_builtins(request)
    return {
        "id": decision.decision_id,
        "time": utcnow().isoformat(),
        "principal": doc["principal"],
        "action": request.action,
        "resource": {k: doc["resource"][k] for k in ("type", "id", "tenant")},
        "input": mask(doc),
        "result": {
            "allowed": decision.allowed,
            "outcome": decision.outcome.value,
            "mode": decision.mode.value,
            "verdict_allowed": decision.verdict_allowed,
            "reasons": msgspec.to_builtins(decision.reasons),
            "warnings": msgspec.to_builtins(decision.warnings),
            "obligations": decision.obligations,
            "errors": msgspec.to_builtins(decision.errors),
        },
        "revisions": decision.revisions,
        "engines": msgspec.to_builtins(decision.engines),
        "duration_us": decision.duration_us,
        "trace_id": trace_id,
    }


class Gate:
    """Decide, record and apply, atomically."""

    def __init__(
        self,
        db: Engine[Any],
        policies: PolicyService,
        log: DecisionLog,
        time_limit_ms: float,
        chain_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self._chain_key = chain_key
        self._signed: dict[str, tuple[float, int]] = {}
        self._db = db
        self.policies = policies
        self._log = log
        self._limit_us = time_limit_ms * 1000
        self._committer = GroupCommitter(log, self)

    async def evaluate(
        self,
        caller: Caller,
        action: str,
        resource: Resource,
        context: dict[str, Any],
        mode: Mode = Mode.ENFORCE,
    ) -> tuple[Decision, DecisionRequest]:
        """The decision for one request (nothing recorded yet)."""
        with decision_span(action):
            decision, request = await self._evaluate(caller, action, resource, context, mode)
            engines = {e.engine: e.duration_us for e in decision.engines if e.participated}
            observe_decision(action, decision.outcome.value, decision.duration_us, engines)
        return decision, request

    async def _evaluate(
        self,
        caller: Caller,
        action: str,
        resource: Resource,
        context: dict[str, Any],
        mode: Mode,
    ) -> tuple[Decision, DecisionRequest]:
        request = DecisionRequest(
            action=action, principal=caller.principal(), resource=resource, context=context
        )
        decision_id = f"dec_{uuid.uuid4().hex}"
        try:
            policy_set = await self.policies.active(caller.tenant)
        except Exception as exc:  # an active bundle that cannot be loaded or compiled: deny, named
            broken = EngineVerdict("engine", participated=True, permitted=False)
            broken.errors.append(
                EvalError(
                    "engine",
                    "policy_set_unavailable",
                    f"the tenant's active policy set cannot be loaded: {type(exc).__name__}: {exc}",
                )
            )
            failed = combine(
                [broken], action=action, decision_id=decision_id, revisions={}, mode=mode
            )
            return failed, request
        decision = await decide_async(
            policy_set,
            request,
            now=utcnow(),
            mode=mode,
            decision_id=decision_id,
            time_limit_us=self._limit_us,
        )
        return decision, request

    async def record(self, tenant: str, *records: dict[str, Any]) -> None:
        """Append decision records in the caller's transaction; sign the chain head now and then.

        The head is signed when this process has not signed the tenant's head
        for ``SIGN_EVERY_SECONDS`` or ``SIGN_EVERY_RECORDS`` appends, so a
        truncation is detectable up to at most that many of the latest
        records (signing every record cost two statements per decision).
        """
        await self._log.append_many(tenant, records)
        if self._chain_key is None:
            return
        now = time.monotonic()
        last, count = self._signed.get(tenant, (0.0, 0))
        count += len(records)
        if now - last >= SIGN_EVERY_SECONDS or count >= SIGN_EVERY_RECORDS:
            await self._log.sign_head(tenant, self._chain_key)
            self._signed[tenant] = (now, 0)
        else:
            self._signed[tenant] = (last, count)

    async def commit(self, tenant: str, records: list[dict[str, Any]]) -> None:
        """Append records that allow no change (ad-hoc decisions), sharing transactions with
        concurrent requests (group commit); returns once they are committed, all or none."""
        await self._committer.append(tenant, records)

    async def shadow(self, caller: Caller, request: DecisionRequest) -> dict[str, Any] | None:
        """What the tenant's shadow revisions would have decided (recorded, no effect)."""
        try:
            policy_set = await self.policies.shadow(caller.tenant)
        except Exception as exc:  # a shadow that no longer compiles must not stop the tenant
            return {"error": f"{type(exc).__name__}: {exc}"}
        if policy_set is None:
            return None
        decision = await decide_async(
            policy_set, request, now=utcnow(), decision_id="shadow", time_limit_us=self._limit_us
        )
        return {
            "allowed": decision.allowed,
            "outcome": decision.outcome.value,
            "revisions": decision.revisions,
            "reasons": msgspec.to_builtins(decision.reasons),
        }

    async def govern(
        self,
        caller: Caller,
        action: str,
        resource: Resource,
        context: dict[str, Any],
        apply: Callable[[Decision], Awaitable[T]] | None = None,
        *,
        mode: Mode = Mode.ENFORCE,
        modes: Mapping[str, Mode] | None = None,
        park: Parked | None = None,
        approval: str | None = None,
        trace_id: str = "",
        refused: Callable[[Decision], Awaitable[None]] | None = None,
    ) -> Governed:
        """Decide ``action``; record it; run ``apply`` in the same transaction if allowed.

        ``refused`` runs in that transaction instead when the decision does not
        allow the change (and it is not parked): what a refusal leaves behind
        (a denied tool call on its run) commits with the decision's record.
        """
        decision, request = await self.evaluate(caller, action, resource, context, mode)
        if modes:
            decision = apply_bundle_modes(decision, modes, approved=approval is not None)
        decision = apply_approval_obligations(decision, approved=approval is not None)
        record = decision_record(decision, request, trace_id)
        if approval is not None:
            record["approval"] = approval
        shadow = await self.shadow(caller, request)
        if shadow is not None:
            record["shadow"] = shadow
        value: Any = None
        approval_id = ""
        try:
            async with self._log.transaction():
                # The change first, the record last: the tenant's chain head is locked
                # from the append to the commit, so it is held for as short as possible.
                if decision.outcome is Outcome.ALLOW and apply is not None:
                    value = await apply(decision)
                elif decision.outcome is Outcome.PENDING_APPROVAL and park is not None:
                    approval_id = await park.store(caller, decision.decision_id)
                elif refused is not None and decision.outcome is not Outcome.ALLOW:
                    await refused(decision)
                await self.record(caller.tenant, record)
        except AppError:
            raise
        except Exception as exc:  # the record or the change failed: nothing was committed
            raise UnavailableError(
                f"the decision could not be recorded, nothing changed ({type(exc).__name__})"
            ) from exc
        reasons = [
            {"policy": r.policy, "message": r.message, "engine": r.engine} for r in decision.reasons
        ]
        if decision.outcome is Outcome.PENDING_APPROVAL and park is not None:
            raise ApprovalPendingError(
                f"`{action}` is parked until an admin or security user approves it",
                approval_id=approval_id,
                decision_id=decision.decision_id,
                status="pending_approval",
                reasons=reasons,
            )
        if decision.outcome is not Outcome.ALLOW:
            raise PolicyDeniedError(
                f"`{action}` denied by policy"
                if decision.outcome is Outcome.DENY
                else f"`{action}` needs approval",
                decision_id=decision.decision_id,
                outcome=decision.outcome.value,
                reasons=reasons,
            )
        return Governed(decision, value)
