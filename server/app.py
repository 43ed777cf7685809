"""The Litestar application: routes under `/api/v1` (and the original `/api`), errors mapped once.

Every request gets a request id, a server span (continuing an incoming W3C
``traceparent``) and request metrics; ``GET /metrics`` serves Prometheus.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import msgspec
from litestar import Litestar, Request, Response, Router
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.plugins.opentelemetry import OpenTelemetryConfig
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import Scope
from piccolo.engine.postgres import PostgresEngine

from server.api.agents import AgentController
from server.api.approvals import ApprovalController
from server.api.bundles import BundleController
from server.api.catalog import CatalogController
from server.api.dataapi import data_api
from server.api.decisions import DecisionController
from server.api.deps import caller
from server.api.events import EventController
from server.api.health import health, metrics, ready
from server.api.latentbox import LatentBoxController
from server.api.opa import OpaServiceController
from server.api.registry import (
    AgentTemplateController,
    ModelController,
    ToolRegistryController,
    TrustRootController,
)
from server.api.sidecars import SidecarController
from server.api.tasks import TaskController
from server.api.tools import ToolController
from server.auth import Caller
from server.dispatch.port import RunningDispatch
from server.errors import AppError, RateLimitedError
from server.idempotency import idempotency_middleware
from server.logs import RequestContextMiddleware, bind_tenant
from server.state import Services
from server.telemetry import (
    SKIP_TELEMETRY,
    RouteSpanMiddleware,
    configure_tracing,
    mark_worker_exited,
    observe_rate_limited,
    set_span_attributes,
    tracing_enabled,
)

log = logging.getLogger("aion.server")

_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _app_error(_: Request[Any, Any, Any], exc: AppError) -> Response[dict[str, Any]]:
    if isinstance(exc, RateLimitedError):
        observe_rate_limited()
    return Response(exc.body(), status_code=exc.status, headers=exc.headers())


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    detail = exc.extra if isinstance(exc.extra, list) else []
    message = (
        "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in detail)
        or exc.detail
    )
    return Response({"code": "invalid_input", "message": message}, status_code=400)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return Response(
        {"code": code, "message": exc.detail}, status_code=exc.status_code, headers=exc.headers
    )


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return Response({"code": "internal_error", "message": "internal error"}, status_code=500)


class ErrorBody(msgspec.Struct):
    """Every error answer."""

    code: str
    message: str


_ERROR_STATUSES = {
    400: "invalid input (unknown fields included)",
    401: "missing or invalid credential",
    403: "forbidden by role, or denied by policy (`policy_denied` with decision_id and reasons)",
    404: "not found (another tenant's objects included)",
    409: "conflict (duplicate, or Idempotency-Key reused with another body)",
    413: "request body too large",
    429: "over the tenant's rate limit (Retry-After)",
    503: "the decision could not be recorded; nothing changed",
}


def _document_errors(app: Litestar) -> None:
    """Every route documents the `{code, message}` errors it can answer."""
    errors = {
        status: ResponseSpec(data_container=ErrorBody, description=text, generate_examples=False)
        for status, text in _ERROR_STATUSES.items()
    }
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.include_in_schema and handler.handler_name not in ("health",):
                handler.responses = {**errors, **(handler.responses or {})}


async def _caller(request: Request[object, object, State], state: State) -> Caller:
    """The authenticated caller, with its tenant noted on the request's span and log lines."""
    who = await caller(request, state)
    bind_tenant(who.tenant)
    set_span_attributes({"aion.tenant": who.tenant})
    log.debug("caller %s (%s) of tenant %s", who.subject, who.kind, who.tenant)
    return who


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    # Litestar runs the OpenTelemetry middleware around routing (so 404s are traced too): the
    # route is not known yet. The span is named by its method until RouteSpanMiddleware renames it.
    return str(scope.get("method", "")) or str(scope.get("type", "")), {}


def _middleware(services: Services) -> list[Any]:
    """The server span, request ids, its route, request metrics, then idempotency."""
    # ASGI middleware classes of our own: Litestar's types want its own ASGI scope types.
    layers: list[Any] = [cast(Any, RequestContextMiddleware)]
    if tracing_enabled(services.settings):
        tracing = OpenTelemetryConfig(
            scope_span_details_extractor=_span_details,
            exclude_spans=["receive", "send"],
            exclude="^/metrics$",
        )
        layers = [tracing.middleware, *layers, cast(Any, RouteSpanMiddleware)]
    if services.settings.metrics_enabled:
        counting = PrometheusConfig(
            app_name="aion", prefix="aion_http", group_path=True, exclude_opt_key=SKIP_TELEMETRY
        )
        layers.append(counting.middleware)
    layers.append(idempotency_middleware(services))
    return layers


def _routes() -> list[Any]:
    return [
        health,
        ready,
        CatalogController,
        AgentController,
        ToolController,
        BundleController,
        ApprovalController,
        LatentBoxController,
        DecisionController,
        TaskController,
        EventController,
        TrustRootController,
        ModelController,
        AgentTemplateController,
        ToolRegistryController,
        SidecarController,
    ]


def create_app(services: Services) -> Litestar:
    """The ASGI app over already-built services (installs this process's tracing on first use)."""
    configure_tracing(services.settings)
    handlers: list[Any] = [
        Router(path="/api/v1", route_handlers=_routes()),
        Router(path="/api", route_handlers=_routes(), include_in_schema=False),
        data_api,  # OPA's Data API at the root: /v1/data/{path}
        OpaServiceController,  # OPA's service API for sidecars: /bundles, /logs, /status
    ]
    if services.settings.metrics_enabled:
        handlers.append(metrics)
    config = AppConfig(
        route_handlers=handlers,
        dependencies={"caller": Provide(_caller)},
        middleware=_middleware(services),
        exception_handlers={
            AppError: _app_error,
            ValidationException: _validation,
            HTTPException: _http,
            Exception: _internal,
        },
        request_max_body_size=services.settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="AION Governance API", version="1.0.0", path="/api/v1/schema"
        ),
        debug=False,
    )

    opened: list[bool] = []

    async def open_database() -> None:
        # A pool somebody else opened (a test harness, an embedding program) is theirs to close.
        if isinstance(services.db, PostgresEngine) and services.db.pool is None:
            await services.db.start_connection_pool(
                min_size=2, max_size=services.settings.db_pool_size
            )
            opened.append(True)

    async def close_database() -> None:
        if isinstance(services.db, PostgresEngine) and opened:
            await services.db.close_connection_pool()
            opened.clear()
        close = getattr(services.db, "close", None)
        if close is not None:
            await close()
        mark_worker_exited(services.settings.metrics_multiproc_dir)

    async def start_dispatch() -> None:
        if isinstance(services.dispatch, RunningDispatch):
            await services.dispatch.start()

    async def stop_dispatch() -> None:
        if isinstance(services.dispatch, RunningDispatch):
            await services.dispatch.stop()

    config.on_startup.extend([open_database, start_dispatch])

    async def close_opa() -> None:
        if services.policies.opa.querier is not None:
            await services.policies.opa.querier.aclose()

    config.on_shutdown.extend([stop_dispatch, close_opa, close_database])
    app = Litestar.from_config(config)
    _document_errors(app)
    app.state["services"] = services
    return app
