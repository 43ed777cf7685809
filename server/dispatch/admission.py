"""`ServerAdmission`: the kernel's admission re-check, right before a task starts.

A task admitted at submit may no longer be runnable when a worker gets to it:

1. its agent must still exist, be ``deployed`` (not ``disabled``) and have an
   active deployment; otherwise it is refused, naming why;
2. when the tenant's active bundle revisions differ from the ones the task
   was admitted under (``tasks.admitted_revision``, canonical JSON), the
   ``task.submit`` decision is taken again through the gate, and recorded in
   the decision log like any decision. A deny refuses the task with the
   decision's reasons.

The re-decision's principal is the **submitter** as the submit saw them (subject,
roles and kind stored on the task), so the re-check can never allow more than the
submitter may do; the record's trace id ``scheduler:<task id>`` shows that it was
the scheduler that asked. (Tasks stored before the roles were kept re-decide with
no roles: fail closed.)
Resource and context are rebuilt as the submit built them: the agent as a
resource (its current attributes), the stored ``intent``, the routed model
with its privacy level, and the stored ``budget_usd``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from kernel import Admission, TaskSpec
from server.agents import AgentService, model_name
from server.auth import ROLES, Caller
from server.catalog import Catalog
from server.db.tables import Agent, Deployment, Model, Task
from server.errors import AppError, PolicyDeniedError
from server.gate import Gate

log = logging.getLogger(__name__)


def revisions_key(revisions: dict[str, str]) -> str:
    """How ``tasks.admitted_revision`` stores a decision's bundle revisions."""
    return json.dumps(revisions, sort_keys=True, separators=(",", ":"))


def submitter(tenant: str, row: dict[str, Any] | None) -> Caller:
    """The principal of a re-decision: the task's submitter, with the roles and kind the
    submit saw (unknown roles are dropped: they would only be refused at the token)."""
    row = row or {}
    roles = row.get("submitted_roles") or []
    if isinstance(roles, str):  # SQLite hands JSON back as text when not asked to load it
        roles = json.loads(roles)
    kind = row.get("submitted_kind") if row.get("submitted_kind") in ("user", "service") else "user"
    return Caller(
        subject=str(row.get("submitted_by") or "unknown"),
        tenant=tenant,
        roles=frozenset(r for r in roles if isinstance(r, str) and r in ROLES),
        kind=str(kind),
    )


class ServerAdmission:
    """The kernel :class:`~kernel.AdmissionCheck` of the server (see the module docstring)."""

    def __init__(self, gate: Gate, catalog: Catalog | None = None) -> None:
        self.gate = gate
        self.agents = AgentService(gate, catalog or Catalog())

    async def still_admitted(self, task: TaskSpec) -> Admission:
        """Whether ``task`` may start now, and why not."""
        where = (Agent.id == task.agent_id) & (Agent.tenant == task.tenant)
        agent = await Agent.select().where(where).output(load_json=True).first()
        if agent is None:
            return Admission(False, f"agent `{task.agent_id}` no longer exists")
        status = agent["status"]
        if status == "disabled":
            return Admission(False, f"agent `{task.agent_id}` is disabled")
        if status != "deployed":
            return Admission(False, f"agent `{task.agent_id}` is not deployed (status `{status}`)")
        active = (
            (Deployment.agent_id == task.agent_id)
            & (Deployment.tenant == task.tenant)
            & (Deployment.status == "active")
        )
        if not await Deployment.exists().where(active):
            return Admission(False, f"agent `{task.agent_id}` has no active deployment")
        try:
            policy_set = await self.gate.policies.active(task.tenant)
            current = revisions_key(dict(policy_set.revisions))
        except Exception as exc:  # the active set cannot load: the gate will deny, with reasons
            log.warning("active policy set of `%s` unavailable: %s", task.tenant, exc)
            current = ""
        # The submit's decision saw the agent as it was then: a change since (its model,
        # configuration, attached policies or modes) is a new situation, decided anew.
        updated = agent.get("updated_at")
        changed = isinstance(updated, datetime) and updated.timestamp() > task.submitted_at
        if current and current == (task.admitted_revision or "") and not changed:
            return Admission(True)
        return await self._decide_again(task, dict(agent))

    async def _context(self, task: TaskSpec, agent: dict[str, Any]) -> dict[str, Any]:
        context: dict[str, Any] = {}
        intent = task.payload.get("intent")
        if intent is not None:
            context["intent"] = intent
        model = (
            await Model.select(Model.name, Model.privacy)
            .where((Model.tenant == task.tenant) & (Model.name == model_name(agent["model"])))
            .first()
        )
        if model is not None:
            context["model"] = {"id": model["name"], "privacy": model["privacy"]}
        budget = task.payload.get("budget_usd")
        if budget is not None:
            context["budget_usd"] = budget
        return context

    async def _decide_again(self, task: TaskSpec, agent: dict[str, Any]) -> Admission:
        who = (Task.submitted_by, Task.submitted_roles, Task.submitted_kind)
        row = await Task.select(*who).where(Task.id == task.task_id).output(load_json=True).first()
        caller = submitter(task.tenant, row)
        resource = await self.agents.resource(caller, agent)
        try:
            await self.gate.govern(
                caller,
                "task.submit",
                resource,
                await self._context(task, agent),
                modes=await self.agents.modes(caller, task.agent_id),
                trace_id=f"scheduler:{task.task_id}",
            )
        except PolicyDeniedError as exc:
            reasons = "; ".join(str(r.get("message", "")) for r in exc.extra.get("reasons", []))
            why = f": {reasons}" if reasons else ""
            return Admission(False, f"`task.submit` re-decided under new policies and denied{why}")
        except AppError as exc:  # the decision could not be recorded: refuse (fail closed)
            return Admission(False, f"`task.submit` could not be re-decided: {exc}")
        return Admission(True)


__all__ = ["ServerAdmission", "revisions_key", "submitter"]
