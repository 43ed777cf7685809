"""Impact analysis: replay recorded decision inputs against a candidate policy set.

Before a revision goes live, the last N recorded requests of the tenant are
decided again against the set activation would give, and every decision that
would flip is returned (a set evaluated by an OPA sidecar asks the sidecar).
Inputs are replayed as recorded (secrets masked), so a rule that reads a
masked value sees ``***``. Only the server's own decisions are replayed:
records ingested from OPA sidecars or answered through the Data API (``source``
``opa`` / ``data-api``) carry a query's result, not an action's decision, and are
counted as skipped.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine import DecisionRequest, PolicySet, decide_async
from server.auth import Caller, utcnow
from server.decisionlog import DecisionLog

PAGE = 200


async def replay(
    log: DecisionLog, caller: Caller, candidate: PolicySet, limit: int, time_limit_us: float
) -> dict[str, Any]:
    """Decide the tenant's last ``limit`` recorded requests against ``candidate``."""
    replayed = skipped = 0
    flips: list[dict[str, Any]] = []
    cursor: str | None = None
    while replayed + skipped < limit:
        page = await log.list(
            caller.tenant, cursor=cursor, limit=min(PAGE, limit - replayed - skipped)
        )
        for item in page.items:
            if item.record.get("source", "aion") != "aion":
                skipped += 1
                continue
            try:
                request = msgspec.convert(item.record.get("input"), DecisionRequest)
            except (msgspec.ValidationError, TypeError):
                skipped += 1
                continue
            before = bool(item.record.get("result", {}).get("allowed"))
            after = await decide_async(
                candidate,
                request,
                now=utcnow(),
                decision_id=f"impact-{item.id}",
                time_limit_us=time_limit_us,
            )
            replayed += 1
            if after.allowed != before:
                flips.append(
                    {
                        "decision_id": item.id,
                        "action": item.action,
                        "resource_id": item.resource_id,
                        "principal_id": item.principal_id,
                        "before": "allow" if before else "deny",
                        "after": "allow" if after.allowed else "deny",
                        "reasons": [
                            {"policy": r.policy, "message": r.message} for r in after.reasons
                        ],
                    }
                )
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return {
        "replayed": replayed,
        "skipped": skipped,
        "flipped": len(flips),
        "flips": flips,
        "revisions": candidate.revisions,
    }
