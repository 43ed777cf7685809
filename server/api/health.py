"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from server.api.deps import services
from server.db.tables import Tenant


@get("/health", summary="Liveness", tags=["health"])
async def health() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@get("/ready", summary="Readiness: database reachable, bundles active", tags=["health"])
async def ready(state: State) -> Response[dict[str, Any]]:
    """200 when the database answers and global bundles are active, else 503."""
    svc = services(state)
    checks: dict[str, Any] = {}
    try:
        await Tenant.count()
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, it never raises
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        rows = await svc.policies.active_rows("*")
        checks["bundles"] = {r["name"]: r["revision"] for r in rows} or "none active"
    except Exception as exc:
        checks["bundles"] = f"unavailable: {type(exc).__name__}"
    ok = checks["database"] == "ok" and isinstance(checks["bundles"], dict)
    return Response(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503
    )
