"""Ad-hoc decisions and the decision log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from engine import Resource, check_action
from engine.errors import InvalidInput
from server.api.agents import trace_id
from server.api.deps import services
from server.auth import Caller
from server.decisionlog import InvalidCursorError, StoredDecision
from server.errors import InvalidInputError, NotFoundError, UnavailableError
from server.gate import decision_record
from server.schemas import DecideBatchIn, DecideIn

MAX_BATCH = 100


def _summary(found: StoredDecision) -> dict[str, Any]:
    result = found.record.get("result", {})
    return {
        "id": found.id,
        "seq": found.seq,
        "time": found.created_at.isoformat(),
        "action": found.action,
        "principal_id": found.principal_id,
        "resource_type": found.resource_type,
        "resource_id": found.resource_id,
        "allowed": found.allowed,
        "outcome": found.outcome,
        "reasons": result.get("reasons", []),
        "source": found.record.get("source", "aion"),
    }


async def _evaluate(
    state: State, caller: Caller, item: DecideIn, trace: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(decision as returned, record to append) for one ad-hoc request."""
    try:
        check_action(item.action)
    except InvalidInput as exc:
        raise InvalidInputError(exc.message) from exc
    svc = services(state)
    resource = Resource(
        type=item.resource.type,
        id=item.resource.id,
        tenant=caller.tenant,
        attributes=item.resource.attributes,
    )
    decision, request = await svc.gate.evaluate(caller, item.action, resource, item.context)
    record = decision_record(decision, request, trace)
    shadow = await svc.gate.shadow(caller, request)
    if shadow is not None:
        record["shadow"] = shadow
    out: dict[str, Any] = msgspec.to_builtins(decision)
    return out, record


async def _decide(
    state: State, caller: Caller, items: list[DecideIn], trace: str
) -> list[dict[str, Any]]:
    """Evaluate every item, then record them all in one transaction: all answered or none."""
    evaluated = [await _evaluate(state, caller, item, trace) for item in items]
    svc = services(state)
    try:
        await svc.gate.commit(caller.tenant, [record for _, record in evaluated])
    except Exception as exc:  # no decision without a record: refuse rather than answer
        raise UnavailableError(
            f"the decision could not be recorded ({type(exc).__name__})"
        ) from exc
    return [decision for decision, _ in evaluated]


class DecisionController(Controller):
    """`/decide` and `/decisions`."""

    tags = ["decisions"]

    @post(
        "/decide",
        summary="Evaluate one request against the caller's tenant policies",
        status_code=HTTP_200_OK,
    )
    async def decide_one(
        self, state: State, caller: Caller, data: DecideIn, request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        caller.require("decide")
        return (await _decide(state, caller, [data], trace_id(request)))[0]

    @post("/decide/batch", summary="Evaluate up to 100 requests", status_code=HTTP_200_OK)
    async def decide_batch(
        self, state: State, caller: Caller, data: DecideBatchIn, request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        caller.require("decide")
        if not 1 <= len(data.requests) <= MAX_BATCH:
            raise InvalidInputError(
                f"a batch holds 1 to {MAX_BATCH} requests, not {len(data.requests)}"
            )
        return {"decisions": await _decide(state, caller, data.requests, trace_id(request))}

    @get("/decisions", summary="The decision log, newest first, filtered")
    async def list_decisions(
        self,
        state: State,
        caller: Caller,
        action: str | None = None,
        outcome: str | None = None,
        resource_id: str | None = None,
        principal_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = Parameter(default=50, ge=1, le=200),
    ) -> dict[str, Any]:
        caller.require("decisions.read")
        try:
            page = await services(state).log.list(
                caller.tenant,
                action=action,
                outcome=outcome,
                resource_id=resource_id,
                principal_id=principal_id,
                since=since,
                until=until,
                cursor=cursor,
                limit=limit,
            )
        except InvalidCursorError as exc:
            raise InvalidInputError(str(exc)) from exc
        return {"items": [_summary(d) for d in page.items], "next": page.next_cursor}

    @get("/decisions/{decision_id:str}", summary="One decision: the rules that fired and why")
    async def get_decision(self, state: State, caller: Caller, decision_id: str) -> dict[str, Any]:
        caller.require("decisions.read")
        found = await services(state).log.get(caller.tenant, decision_id)
        if found is None:
            raise NotFoundError(f"no decision `{decision_id}`")
        return {**found.record, "seq": found.seq, "hash": found.hash, "prev_hash": found.prev_hash}
