"""Observability of the API server: request spans, decision trace ids, /metrics, JSON logs.

Spans are collected by an in-memory exporter added to the process's tracer
provider (the one the first app of the process installed); metrics are read
from ``GET /metrics`` before and after a request; logs are captured with the
server's JSON formatter at debug level, the most talkative.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from server.db.tables import Decision
from server.logs import JsonFormatter, logging_config
from server.ratelimit import MemoryBucketStore, RateLimiter
from server.settings import Settings
from server.state import Services
from server.telemetry import configure_tracing
from server.tenants import TenantDirectory
from tests.server.api_support import CRM, CRM_SECRET, RESEARCH, serve

pytestmark = pytest.mark.anyio

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="session")
def _exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    # The process's provider: installed here, or by the first app already (the same call).
    provider = configure_tracing(Settings())
    assert trace.get_tracer_provider() is provider
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def spans(client: httpx.AsyncClient, _exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The finished spans of this test."""
    _exporter.clear()
    return _exporter


def _server_span(exporter: InMemorySpanExporter, route: str) -> ReadableSpan:
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.SERVER and (s.attributes or {}).get("http.route") == route
    ]
    assert len(found) == 1, [(s.name, s.attributes) for s in exporter.get_finished_spans()]
    return found[0]


async def _trace_id_of(decision_id: str) -> str:
    row = await Decision.select(Decision.record).where(Decision.id == decision_id).first()
    assert row is not None
    record = row["record"]
    return str((json.loads(record) if isinstance(record, str) else record)["trace_id"])


async def test_a_request_has_a_server_span_whose_trace_id_the_decision_records(
    client: httpx.AsyncClient, auth: Any, spans: InMemorySpanExporter
) -> None:
    response = await client.post("/api/v1/agents", json=RESEARCH, headers=auth("admin"))
    assert response.status_code == 201, response.text
    span = _server_span(spans, "/api/v1/agents")
    attributes = dict(span.attributes or {})
    assert span.name == "POST /api/v1/agents"
    assert attributes["http.status_code"] == 201
    assert attributes["http.method"] == "POST"
    assert attributes["aion.tenant"] == "default"
    assert span.parent is None
    assert span.context is not None
    trace_id = trace.format_trace_id(span.context.trace_id)
    assert await _trace_id_of(response.json()["decision_id"]) == trace_id
    assert len(response.headers["x-request-id"]) == 32


async def test_the_route_template_names_the_span_not_the_path(
    client: httpx.AsyncClient, auth: Any, spans: InMemorySpanExporter, target: dict[str, str]
) -> None:
    spans.clear()  # `target` may have made its agent in this test
    response = await client.get(f"/api/v1/agents/{target['agent_id']}", headers=auth("viewer"))
    assert response.status_code == 200
    span = _server_span(spans, "/api/v1/agents/{agent_id}")
    assert (span.attributes or {})["http.status_code"] == 200


async def test_an_incoming_traceparent_is_continued(
    client: httpx.AsyncClient, auth: Any, spans: InMemorySpanExporter
) -> None:
    headers = {**auth("admin"), "traceparent": f"00-{TRACE}-{PARENT}-01"}
    response = await client.post("/api/v1/agents", json=RESEARCH, headers=headers)
    assert response.status_code == 201, response.text
    span = _server_span(spans, "/api/v1/agents")
    assert span.context is not None and span.parent is not None
    assert trace.format_trace_id(span.context.trace_id) == TRACE
    assert trace.format_span_id(span.parent.span_id) == PARENT
    assert span.parent.is_remote
    assert await _trace_id_of(response.json()["decision_id"]) == TRACE


async def test_a_refused_request_has_a_span_with_its_status(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    response = await client.get("/api/v1/agents")
    assert response.status_code == 401
    span = _server_span(spans, "/api/v1/agents")
    assert (span.attributes or {})["http.status_code"] == 401


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, frozenset(labels.items())), 0.0)


async def _metrics(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")  # no credential
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_count_requests_by_route_method_and_status(
    client: httpx.AsyncClient, auth: Any
) -> None:
    labels = {"method": "POST", "path": "/api/v1/agents", "app_name": "aion"}
    before = await _metrics(client)
    for _ in range(2):
        created = await client.post("/api/v1/agents", json=RESEARCH, headers=auth("admin"))
        assert created.status_code == 201
    assert (await client.post("/api/v1/agents", json=RESEARCH)).status_code == 401
    after = await _metrics(client)
    total = "aion_http_requests_total"
    assert _value(after, total, status_code="201", **labels) == (
        _value(before, total, status_code="201", **labels) + 2
    )
    assert _value(after, total, status_code="401", **labels) == (
        _value(before, total, status_code="401", **labels) + 1
    )
    count = "aion_http_request_duration_seconds_count"
    assert _value(after, count, status_code="201", **labels) == (
        _value(before, count, status_code="201", **labels) + 2
    )
    # Scrapes are not requests of the API.
    assert not any("/metrics" in dict(k[1]).get("path", "") for k in _samples(after))


async def test_metrics_count_decisions_by_action_and_outcome(
    client: httpx.AsyncClient, auth: Any
) -> None:
    before = await _metrics(client)
    created = await client.post("/api/v1/agents", json=RESEARCH, headers=auth("admin"))
    assert created.status_code == 201
    after = await _metrics(client)
    name, labels = "aion_decisions_total", {"action": "agent.create", "outcome": "allow"}
    assert _value(after, name, **labels) == _value(before, name, **labels) + 1
    count = "aion_decision_duration_seconds_count"
    assert _value(after, count, action="agent.create") == (
        _value(before, count, action="agent.create") + 1
    )


@pytest.fixture(scope="module")
async def limited_client(_module_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    services = replace(
        _module_services,
        limiter=RateLimiter(MemoryBucketStore(clock=lambda: 1000.0), per_minute=60, burst=1),
        tenants=TenantDirectory(),
    )
    async with serve(services) as client:
        yield client


async def test_metrics_count_rate_limit_refusals(
    svc: Services, limited_client: httpx.AsyncClient, auth: Any
) -> None:
    before = await _metrics(limited_client)
    statuses = [
        (await limited_client.get("/api/v1/agent-catalog", headers=auth("viewer"))).status_code
        for _ in range(3)
    ]
    assert statuses.count(429) >= 2
    after = await _metrics(limited_client)
    assert _value(after, "aion_rate_limited_total") == (
        _value(before, "aion_rate_limited_total") + statuses.count(429)
    )


async def test_metrics_stay_out_of_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/v1/schema/openapi.json")).json()["paths"]
    assert not any("metrics" in path for path in paths)


async def test_metrics_can_be_turned_off(svc: Services) -> None:
    off = replace(svc, settings=replace(svc.settings, metrics_enabled=False))
    async with serve(off) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/api/v1/health")).status_code == 200


@contextmanager
def captured_logs(svc: Services) -> Iterator[io.StringIO]:
    """Every log line, as the server writes it at debug level, in a buffer."""
    config = logging_config(replace(svc.settings, log_level="debug"))
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in config["loggers"]}
    saved_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name, logger in config["loggers"].items():
        logging.getLogger(name).setLevel(logger["level"])
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


async def test_log_lines_are_json_with_trace_request_and_tenant(
    svc: Services, client: httpx.AsyncClient, auth: Any, spans: InMemorySpanExporter
) -> None:
    headers = {**auth("admin"), "x-request-id": "req-42"}
    with captured_logs(svc) as buffer:
        response = await client.post("/api/v1/agents", json=RESEARCH, headers=headers)
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "req-42"
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    span = _server_span(spans, "/api/v1/agents")
    assert span.context is not None
    ours = [line for line in lines if line.get("request_id") == "req-42"]
    assert ours, lines
    for line in ours:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["trace_id"] == trace.format_trace_id(span.context.trace_id)
        assert len(line["span_id"]) == 16
    assert any(line.get("tenant") == "default" for line in ours)


async def test_no_credential_or_secret_config_value_reaches_a_log_line(
    svc: Services, client: httpx.AsyncClient, auth: Any
) -> None:
    headers = auth("admin")
    credential = headers["Authorization"].removeprefix("Bearer ")
    with captured_logs(svc) as buffer:
        created = await client.post("/api/v1/agents", json=CRM, headers=headers)
        assert created.status_code == 201, created.text
        fetched = await client.get(f"/api/v1/agents/{created.json()['id']}", headers=headers)
        assert fetched.status_code == 200
    output = buffer.getvalue()
    assert output.strip(), "the test would pass vacuously without any log line"
    assert CRM_SECRET not in output
    assert credential not in output
    assert credential.split(".")[2] not in output  # not even the token's signature
