"""server.telemetry and server.logs without a server: spans, counters, log lines, exporters.

Anything that needs a fresh process (the global tracer provider is set once,
prometheus-client's multiprocess mode is chosen at import) runs in a subprocess.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from server.logs import JsonFormatter
from server.settings import Settings
from server.telemetry import (
    configure_tracing,
    current_span_id,
    current_trace_id,
    decision_span,
    metrics_exposition,
    observe_decision,
    observe_rate_limited,
    prepare_multiproc_dir,
    start_span,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def _exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing(Settings()).add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def spans(_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    _exporter.clear()
    return _exporter


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_decision_span_is_a_child_of_the_current_span(spans: InMemorySpanExporter) -> None:
    assert current_trace_id() == ""
    with start_span("job", {"aion.job": "j1"}) as job:
        outer = current_trace_id()
        assert outer == trace.format_trace_id(job.get_span_context().trace_id)
        with decision_span("agent.create"):
            assert current_trace_id() == outer
            assert len(current_span_id()) == 16
            observe_decision("agent.create", "allow", 120, {"rego": 80, "cedar": 30})
    finished = {s.name: s for s in spans.get_finished_spans()}
    decision = finished["decision agent.create"]
    assert decision.parent is not None
    assert decision.parent.span_id == finished["job"].context.span_id  # type: ignore[union-attr]
    assert dict(decision.attributes or {}) == {
        "aion.action": "agent.create",
        "aion.decision.outcome": "allow",
        "aion.decision.duration_us": 120,
    }
    assert dict(finished["job"].attributes or {}) == {"aion.job": "j1"}


def test_observe_decision_counts_and_times() -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("aion_decisions_total", action="tool.bind", outcome="deny")
    seconds = value("aion_decision_duration_seconds_sum", action="tool.bind")
    rego = value("aion_decision_engine_duration_seconds_count", engine="rego")
    limited = value("aion_rate_limited_total")
    observe_decision("tool.bind", "deny", 2500, {"rego": 2000})
    observe_rate_limited()
    assert value("aion_decisions_total", action="tool.bind", outcome="deny") == before + 1
    assert value("aion_decision_duration_seconds_sum", action="tool.bind") == pytest.approx(
        seconds + 0.0025
    )
    assert value("aion_decision_engine_duration_seconds_count", engine="rego") == rego + 1
    assert value("aion_rate_limited_total") == limited + 1
    body, content_type = metrics_exposition()
    assert content_type.startswith("text/plain")
    assert b'aion_decisions_total{action="tool.bind",outcome="deny"}' in body


def _record(
    name: str = "aion.test", msg: str = "hello %s", args: tuple[object, ...] = ("x",)
) -> str:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    return JsonFormatter().format(record)


def test_a_log_line_is_one_json_object_with_the_span_ids(spans: InMemorySpanExporter) -> None:
    outside = json.loads(_record())
    assert outside.keys() == {"time", "level", "logger", "message"}
    assert outside["message"] == "hello x"
    assert outside["level"] == "info"
    with start_span("work"):
        inside = json.loads(_record())
        assert inside["trace_id"] == current_trace_id()
        assert inside["span_id"] == current_span_id()


def test_an_access_line_has_method_path_and_status_without_the_query() -> None:
    args = ("127.0.0.1:5000", "GET", "/api/v1/agents?cursor=abc", "1.1", 200)
    line = json.loads(_record("uvicorn.access", '%s - "%s %s HTTP/%s" %d', args))
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/agents", 200)
    assert "\n" not in _record("x", "two\nlines", ())


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_serve_logging_config_applies(log_format: str) -> None:
    code = f"""
        import logging, logging.config
        from server.logs import logging_config
        from server.settings import Settings
        logging.config.dictConfig(logging_config(Settings(log_format="{log_format}")))
        logging.getLogger("aion.server").info("started")
        logging.getLogger("aiosqlite").info("executing with 'a-secret' argument")
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d',
                                                 "1.2.3.4:1", "GET", "/x", "1.1", 204)
    """
    lines = _run(code).stderr.splitlines()
    assert len(lines) == 2, lines  # aiosqlite is held at warning
    assert "a-secret" not in "".join(lines)
    if log_format == "json":
        first, access = (json.loads(line) for line in lines)
        assert (first["logger"], first["message"]) == ("aion.server", "started")
        assert access["status"] == 204
    else:
        assert "INFO aion.server started" in lines[0]


def test_worker_metrics_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    prepare_multiproc_dir(tmp_path)
    code = """
        from server.telemetry import observe_decision
        observe_decision("agent.deploy", "allow", 100, {})
    """
    for _ in range(2):  # two worker processes
        _run(code, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    body, _ = metrics_exposition(str(tmp_path))
    assert b'aion_decisions_total{action="agent.deploy",outcome="allow"} 2.0' in body
    prepare_multiproc_dir(tmp_path)  # a new run starts from nothing
    assert b"agent.deploy" not in metrics_exposition(str(tmp_path))[0]


def test_spans_reach_an_otlp_collector() -> None:
    code = """
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer
        from opentelemetry import trace
        from server.settings import Settings
        from server.telemetry import configure_tracing, decision_span

        seen = []

        class Collector(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                seen.append((self.path, self.headers["content-type"], b"agent.create" in body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Collector)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.server_port}"
        provider = configure_tracing(Settings(otel_exporter_otlp_endpoint=endpoint))
        assert trace.get_tracer_provider() is provider
        with decision_span("agent.create"):
            pass
        assert provider.force_flush(10_000)
        print(seen)
    """
    out = _run(code).stdout
    assert "[('/v1/traces', 'application/x-protobuf', True)]" in out
