"""One settings object, built once from the environment (``AION_*``) and passed down.

No module reads the environment on its own; the CLI (the composition root)
calls :meth:`Settings.from_env` and hands the result to whatever needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Server settings. Every field can be set as ``AION_<FIELD>`` (upper case)."""

    data_dir: Path = Path(".aion")
    """Embedded default state: SQLite file, keys, built bundles."""
    database_url: str = ""
    """``postgresql://user:pass@host:port/db`` for PostgreSQL; empty for SQLite in ``data_dir``."""
    redis_url: str = ""
    """``redis://...`` to share rate-limit state between workers; empty for in-process."""
    host: str = "127.0.0.1"
    """Address ``aion serve`` binds."""
    port: int = 8080
    """Port ``aion serve`` binds."""
    workers: int = 1
    """Server worker processes."""
    jwt_issuer: str = "aion"
    """Expected ``iss`` of bearer tokens."""
    jwt_audience: str = "aion-api"
    """Expected ``aud`` of bearer tokens."""
    jwt_algorithm: str = "HS256"
    """HS256 (embedded default, secret in ``data_dir``), RS256 or ES256 with ``jwt_public_key``."""
    jwt_public_key: str = ""
    """PEM public key of an external identity provider (RS256/ES256)."""
    jwks_url: str = ""
    """JWKS endpoint of an external identity provider."""
    db_pool_size: int = 10
    """PostgreSQL connections per worker."""
    rate_limit_per_minute: int = 1000
    """Default per-tenant requests per minute (token bucket refill)."""
    rate_limit_burst: int = 200
    """Default per-tenant burst (bucket size)."""
    max_body_bytes: int = 1024 * 1024
    """Largest accepted request body; larger is 413."""
    decision_time_limit_ms: float = 50.0
    """Evaluation time after which a decision is denied."""
    latentbox_enabled: bool = False
    """Serve the LatentBox tool discovery endpoints."""
    dispatch: str = "auto"
    """How approved tasks reach the scheduler: ``embedded`` (a scheduler inside each server
    worker, no Redis), ``queue`` (the outbox relay sends them to arq on ``redis_url``;
    ``aion worker`` runs them), ``off`` (tasks are stored and queued, nothing runs them here),
    or ``auto``: ``queue`` when ``redis_url`` is set, else ``embedded``."""
    worker_concurrency: int = 8
    """Runs one scheduler (one ``aion worker`` or one embedded server worker) executes at once."""
    worker_poll_delay_s: float = 0.05
    """arq's poll delay: how long an idle ``aion worker`` waits before asking Redis again."""
    relay_poll_s: float = 0.5
    """How often the outbox relay looks for committed, unsent tasks (a submit also wakes it)."""
    reconcile_s: float = 30.0
    """How often queued tasks that were sent but not started are sent again (lost jobs)."""
    lease_s: float = 30.0
    """A run's lease: a worker that stops renewing it for this long is taken for dead."""
    run_dir: str = ""
    """Working directories of subprocess runs (empty: ``<data_dir>/runs``)."""
    runtimes_file: str = ""
    """YAML file naming the runtimes agents may use (empty: the shipped
    ``server/dispatch/runtimes.yaml``)."""
    public_url: str = ""
    """This server's URL as runs reach it for tool calls (empty: ``http://<host>:<port>``)."""
    log_format: str = "json"
    """``json`` (one object per line) or ``text``: the log lines of ``aion serve``, access log included."""
    log_level: str = "info"
    """Least severe level logged by ``aion serve`` (``debug``, ``info``, ``warning``, ``error``)."""
    access_log: bool = True
    """Log one line per HTTP request (uvicorn's access log, in ``log_format``)."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics at ``GET /metrics`` (unauthenticated, not in the OpenAPI schema)."""
    metrics_multiproc_dir: str = ""
    """Directory of prometheus-client's multiprocess mode (a file per worker, summed at scrape).

    ``aion serve`` sets it to ``<data_dir>/metrics`` and exports it to its
    workers as ``PROMETHEUS_MULTIPROC_DIR`` too (prometheus-client reads that
    itself at import); empty: each process serves its own metrics.
    """
    otel_service_name: str = "aion-governance"
    """``service.name`` of the spans this server exports."""
    otel_exporter_otlp_endpoint: str = ""
    """Base URL of an OTLP/HTTP collector (``http://collector:4318``; ``/v1/traces`` is appended).

    Empty (the default): no spans unless ``otel_tracing``; decisions and logs still carry the
    trace id of an incoming ``traceparent`` (or the request id).
    """
    otel_console_exporter: bool = False
    """Also print every finished span to stdout (debugging)."""
    otel_sample_ratio: float = 1.0
    """Share of new traces recorded (0.0-1.0); an incoming ``traceparent``'s sampled flag wins."""
    otel_tracing: bool = False
    """Make a span for every request even without an exporter set here (for an embedding
    program's own span processors). On whenever an exporter is set; off otherwise, because
    spans nobody exports cost about a tenth of a decision's time."""
    opa_url: str = ""
    """Base URL of an OPA sidecar (``http://127.0.0.1:8181``) that evaluates the Rego of
    tenants configured ``rego_evaluator: opa`` and of bundles whose manifest asks for it
    (docs/opa-remote.md). Empty: no sidecar; such decisions deny with ``opa_not_configured``."""
    opa_tenant: str = ""
    """The tenant whose bundles the sidecar at ``opa_url`` pulls (with that tenant's sidecar
    token). Only that tenant's decisions go to it; others deny with ``opa_wrong_tenant``
    (revision labels are per tenant, so a sidecar's provenance cannot tell two tenants'
    bundles apart). Required with ``opa_url``."""
    opa_token: str = ""
    """Bearer token sent to the OPA sidecar (its ``--authentication=token``); empty: none."""
    opa_timeout_ms: float = 100.0
    """Hard bound on one query to the OPA sidecar; no answer by then denies (``opa_timeout``).
    The decision's own ``decision_time_limit_ms`` bounds it as well."""
    rego_evaluator: str = "embedded"
    """Where Rego is evaluated for every tenant: ``embedded`` (in process) or ``opa`` (the
    sidecar at ``opa_url``). A tenant's settings ``{"rego_evaluator": ...}`` override it."""
    policies_dir: Path = field(
        default_factory=lambda: Path(__file__).resolve().parent.parent / "policies"
    )
    """Source of the shipped bundles built and activated by the embedded default."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``AION_*`` variables, then explicit overrides (CLI flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"AION_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.type, raw)
        settings = cls(**values)
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given) if given else settings

    @property
    def sqlite(self) -> bool:
        """Whether the embedded SQLite database is used."""
        return not self.database_url.startswith(("postgres://", "postgresql://"))


def _convert(kind: Any, raw: str) -> Any:
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", "")
    if name == "int":
        return int(raw)
    if name == "float":
        return float(raw)
    if name == "bool":
        return raw.lower() in ("1", "true", "yes", "on")
    if name == "Path":
        return Path(raw)
    return raw
