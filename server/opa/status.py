"""OPA status reports (``POST /status``), read into the compact state ``GET /sidecars`` shows.

OPA (v1.22) posts its status as plain JSON (``Content-Type: application/json``); a gzipped
body is accepted too. Only what an operator needs is kept: per bundle the active revision,
the last activation and the error OPA reports; each plugin's state; the custom labels.
Metrics (Prometheus included) are dropped.
"""

from __future__ import annotations

from typing import Any

from server.errors import InvalidInputError
from server.opa.wire import decode_json_body

MAX_STATUS_BYTES = 4 * 1024 * 1024
MAX_ID = 128
_BUNDLE_FIELDS = (
    "active_revision",
    "last_successful_activation",
    "last_successful_download",
    "last_request",
    "code",
    "message",
)
MAX_ERRORS = 20
MAX_TEXT = 1000


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _bundle(state: Any) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise InvalidInputError("status: each of `bundles` is an object")
    kept: dict[str, Any] = {k: _text(state.get(k)) for k in _BUNDLE_FIELDS}
    errors = state.get("errors")
    kept["errors"] = (
        [str(e)[:MAX_TEXT] for e in errors[:MAX_ERRORS]] if isinstance(errors, list) else []
    )
    return kept


def _errors(bundles: dict[str, dict[str, Any]], report: dict[str, Any]) -> list[dict[str, Any]]:
    found = [
        {"bundle": name, "code": b["code"], "message": b["message"], "errors": b["errors"]}
        for name, b in sorted(bundles.items())
        if b["code"] or b["message"]
    ]
    for plugin in ("decision_logs", "discovery"):
        part = report.get(plugin)
        if isinstance(part, dict) and (part.get("code") or part.get("message")):
            found.append(
                {
                    "plugin": plugin,
                    "code": _text(part.get("code")),
                    "message": _text(part.get("message")),
                }
            )
    return found[:MAX_ERRORS]


def read_status(body: bytes, content_encoding: str) -> tuple[str, str, dict[str, Any]]:
    """(instance id, OPA version, compact state) of a status report; 400 when malformed."""
    report = decode_json_body(body, content_encoding, MAX_STATUS_BYTES, "status")
    if not isinstance(report, dict):
        raise InvalidInputError("status: the body is a JSON object")
    labels = report.get("labels")
    if not isinstance(labels, dict):
        raise InvalidInputError("status: `labels` is an object")
    instance = labels.get("id")
    if not isinstance(instance, str) or not 1 <= len(instance) <= MAX_ID:
        raise InvalidInputError(f"status: `labels.id` is a string of 1 to {MAX_ID} characters")
    version = labels.get("version")
    raw_bundles = report.get("bundles", {})
    if not isinstance(raw_bundles, dict):
        raise InvalidInputError("status: `bundles` is an object")
    bundles = {str(name)[:200]: _bundle(state) for name, state in raw_bundles.items()}
    plugins_raw = report.get("plugins", {})
    if not isinstance(plugins_raw, dict):
        raise InvalidInputError("status: `plugins` is an object")
    plugins = {
        str(name)[:100]: _text(p.get("state")) if isinstance(p, dict) else None
        for name, p in plugins_raw.items()
    }
    state = {
        "labels": {str(k)[:100]: _text(v) for k, v in labels.items() if k not in ("id", "version")},
        "bundles": bundles,
        "plugins": plugins,
        "errors": _errors(bundles, report),
    }
    return instance, (_text(version) or "")[:64], state
