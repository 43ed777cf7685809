"""Traces and metrics: the small API the server's modules call, and the per-process set-up.

Modules call the OpenTelemetry *API* through the helpers here
(:func:`start_span`, :func:`decision_span`, :func:`observe_decision`, ...);
they work whether or not an SDK is installed (without one, spans are
no-ops that still carry an incoming trace id). The composition root of a
worker process (:func:`server.asgi.create`) installs the SDK once with
:func:`configure_tracing`.

Metrics are ``prometheus-client`` collectors in the process's default
registry. Under ``aion serve`` every worker writes them to files in
``metrics_multiproc_dir`` (prometheus-client's multiprocess mode) and
:func:`metrics_exposition` sums the workers' files at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from server.settings import Settings

__all__ = [
    "DECISIONS",
    "DECISION_SECONDS",
    "ENGINE_SECONDS",
    "RATE_LIMITED",
    "SKIP_TELEMETRY",
    "RouteSpanMiddleware",
    "configure_tracing",
    "current_span_id",
    "current_trace_id",
    "decision_span",
    "mark_worker_exited",
    "metrics_exposition",
    "observe_decision",
    "observe_rate_limited",
    "prepare_multiproc_dir",
    "set_span_attributes",
    "start_span",
    "tracing_enabled",
]

TRACER_NAME = "aion.server"

#: Route handlers with ``opt={SKIP_TELEMETRY: True}`` are left out of the request metrics.
SKIP_TELEMETRY = "skip_telemetry"

#: Decision latencies are microseconds to tens of milliseconds (the default limit is 50 ms).
_DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

DECISIONS = Counter(
    "aion_decisions_total", "Policy decisions, by action and outcome", ["action", "outcome"]
)
DECISION_SECONDS = Histogram(
    "aion_decision_duration_seconds",
    "Policy evaluation time of one decision",
    ["action"],
    buckets=_DECISION_BUCKETS,
)
ENGINE_SECONDS = Histogram(
    "aion_decision_engine_duration_seconds",
    "Evaluation time of one engine (rego, cedar, ...) within a decision",
    ["engine"],
    buckets=_DECISION_BUCKETS,
)
RATE_LIMITED = Counter(
    "aion_rate_limited_total", "Requests refused with 429 by a tenant's rate limit"
)


def configure_tracing(settings: Settings) -> TracerProvider:
    """Install the OpenTelemetry SDK for this process, unless an SDK provider is installed already.

    Spans are always made (so decisions and logs carry trace ids); they are
    exported only when ``otel_exporter_otlp_endpoint`` (OTLP over HTTP) or
    ``otel_console_exporter`` says so. The first provider of a process wins
    (OpenTelemetry's global provider is set once): an embedding program's, or
    the first app's.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    resource = Resource.create({SERVICE_NAME: settings.otel_service_name})
    sampler = ParentBased(TraceIdRatioBased(settings.otel_sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    if settings.otel_exporter_otlp_endpoint:
        # Imported only when used: the exporter pulls in protobuf.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if settings.otel_console_exporter:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def tracing_enabled(settings: Settings) -> bool:
    """Whether requests get server spans: an exporter is set, or ``otel_tracing`` asks for them."""
    return bool(
        settings.otel_tracing
        or settings.otel_exporter_otlp_endpoint
        or settings.otel_console_exporter
    )


def start_span(
    name: str, attributes: Mapping[str, AttributeValue] | None = None
) -> AbstractContextManager[Span]:
    """A span, child of the current one, current for the ``with`` block (``job``, ``run``, ...)."""
    return trace.get_tracer(TRACER_NAME).start_as_current_span(name, attributes=attributes)


def decision_span(action: str) -> AbstractContextManager[Span]:
    """The span of one policy decision (``decision agent.create``), current for the block."""
    return start_span(f"decision {action}", {"aion.action": action})


def observe_decision(
    action: str, outcome: str, duration_us: float, engines: Mapping[str, float]
) -> None:
    """Count one decision and its evaluation time (``engines``: engine name to microseconds).

    Also sets the outcome on the current span (the decision span when called inside one).
    """
    DECISIONS.labels(action, outcome).inc()
    DECISION_SECONDS.labels(action).observe(duration_us / 1e6)
    for engine, micros in engines.items():
        ENGINE_SECONDS.labels(engine).observe(micros / 1e6)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("aion.decision.outcome", outcome)
        span.set_attribute("aion.decision.duration_us", duration_us)


def observe_rate_limited() -> None:
    """Count one request refused by a tenant's rate limit (429)."""
    RATE_LIMITED.inc()


class RouteSpanMiddleware:
    """ASGI middleware behind routing: names the request's server span by its route template.

    ``POST /api/v1/agents/{agent_id}/deploy`` with ``http.route`` set, so spans
    group by operation rather than by object id.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = scope.get("path_template")
        span = trace.get_current_span()
        if route and span.is_recording():
            span.update_name(f"{scope.get('method', scope['type'])} {route}")
            span.set_attribute("http.route", route)
        await self.app(scope, receive, send)


def set_span_attributes(attributes: Mapping[str, AttributeValue]) -> None:
    """Set ``attributes`` on the current span (nothing when it is not recording)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


def current_trace_id() -> str:
    """The current span's trace id as 32 hex characters, or ``""`` without a valid span."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


def current_span_id() -> str:
    """The current span's id as 16 hex characters, or ``""`` without a valid span."""
    context = trace.get_current_span().get_span_context()
    return trace.format_span_id(context.span_id) if context.is_valid else ""


def metrics_exposition(multiproc_dir: str = "") -> tuple[bytes, str]:
    """The Prometheus text exposition of this process, or of every worker in ``multiproc_dir``."""
    registry = REGISTRY
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def prepare_multiproc_dir(path: Path) -> None:
    """Create ``path`` empty of earlier runs' metric files (prometheus-client requires a clean one)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def mark_worker_exited(multiproc_dir: str) -> None:
    """Drop this worker's live gauges from the shared metric files (call on worker shutdown)."""
    if multiproc_dir:
        multiprocess.mark_process_dead(os.getpid(), path=multiproc_dir)  # type: ignore[no-untyped-call]
