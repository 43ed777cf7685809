"""Structured logs: one JSON object per line, with the request's trace, span and request ids.

``aion serve`` builds :func:`logging_config` once and hands it to uvicorn
(``log_config``), which applies it in every worker, so the access log is
JSON too. :class:`RequestContextMiddleware` gives each request its id (the
caller's ``X-Request-Id`` when it is a sane token, else a new one, echoed in
the response) and a place where the tenant is noted once the caller is known.

Nothing here logs headers or bodies; a log line never carries a credential
or a configuration value. Loggers of libraries that print query arguments at
debug level (``aiosqlite``) are held at ``warning``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from server.settings import Settings

__all__ = [
    "JsonFormatter",
    "RequestContextMiddleware",
    "bind_tenant",
    "current_request_id",
    "logging_config",
]

#: Libraries whose debug lines quote SQL arguments (secrets included): never below warning.
QUIET = ("aiosqlite", "asyncpg", "piccolo")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# One mutable dict per request: a dependency resolved in a child task can still note the tenant.
_request: ContextVar[dict[str, str] | None] = ContextVar("aion_request", default=None)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def current_request_id() -> str:
    """The id of the request being served, or ``""`` outside one."""
    found = _request.get()
    return found.get("request_id", "") if found else ""


def bind_tenant(tenant: str) -> None:
    """Note the authenticated caller's tenant on the request's log lines."""
    found = _request.get()
    if found is not None:
        found["tenant"] = tenant


class RequestContextMiddleware:
    """ASGI middleware: a request id per HTTP request (``X-Request-Id`` in and out)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = _request.set({"request_id": request_id})

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request.reset(token)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "trace_id", "span_id", "request_id", "tenant"}``.

    Ids are present only when known; an exception adds ``exc_type`` and ``exc``
    (the traceback). uvicorn's access lines add ``method``, ``path`` and ``status``.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            doc["trace_id"] = trace.format_trace_id(context.trace_id)
            doc["span_id"] = trace.format_span_id(context.span_id)
        doc.update(_request.get() or {})
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            doc.update(_access_fields(record.args))
        if record.exc_info and record.exc_info[0] is not None:
            doc["exc_type"] = record.exc_info[0].__name__
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def _access_fields(args: tuple[Any, ...]) -> dict[str, Any]:
    # uvicorn's access record: (client_addr, method, full_path, http_version, status_code).
    if len(args) != 5:
        return {}
    _, method, full_path, _, status = args
    return {"method": method, "path": str(full_path).split("?", 1)[0], "status": status}


def logging_config(settings: Settings) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for ``aion serve`` and its uvicorn workers."""
    level = settings.log_level.upper()
    text = settings.log_format == "text"
    formatter = (
        {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
        if text
        else {"()": "server.logs.JsonFormatter"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    loggers: dict[str, Any] = {
        "uvicorn": {"level": level},
        "uvicorn.error": {"level": level},
        "uvicorn.access": {"level": "INFO" if settings.access_log else "WARNING"},
    }
    for name in QUIET:
        loggers[name] = {"level": "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "root": {"level": level, "handlers": ["main"]},
        "loggers": loggers,
    }
