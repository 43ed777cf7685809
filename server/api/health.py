"""Liveness, readiness and Prometheus metrics (none of them needs a credential)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from server.api.deps import services
from server.db.tables import Tenant
from server.telemetry import SKIP_TELEMETRY, metrics_exposition


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


@get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    include_in_schema=False,
    opt={SKIP_TELEMETRY: True},
    sync_to_thread=False,
)
def metrics(state: State) -> Response[bytes]:
    """Every metric of this process, or of every worker under ``aion serve``."""
    body, content_type = metrics_exposition(services(state).settings.metrics_multiproc_dir)
    return Response(body, media_type=content_type)
