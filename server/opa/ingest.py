"""OPA decision-log uploads (``POST /logs``) → records of the tenant's decision log.

OPA (v1.22) posts a gzipped JSON array of decision events (``Content-Encoding: gzip``).
The upload is checked whole before anything is stored: one malformed event refuses it all
(400, nothing stored). Each event becomes one record with ``source: "opa"``, its row id
derived from (tenant, OPA ``decision_id``), so an upload OPA retries stores nothing twice
and two tenants' decision ids never collide. The events of one upload are appended in one
transaction, hash-chained like the server's own decisions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.actions import ACTIONS
from engine.errors import InvalidInput
from engine.opaquery import DENY_RULES, interpret_result, parse_data_path
from server.auth import utcnow
from server.db.tables import Decision
from server.decisionlog import DecisionLog
from server.errors import AppError, InvalidInputError, UnavailableError
from server.gate import Gate
from server.masking import mask
from server.opa.sidecars import SidecarAuth
from server.opa.wire import gunzip, parse_json

#: Bounds of one upload (OPA's own default upload chunk is 32 KiB compressed).
MAX_DECOMPRESSED = 8 * 1024 * 1024
MAX_EVENTS = 1000
MAX_DECISION_ID = 128
QUERY_ACTION = "data.query"
SOURCE = "opa"


@dataclass(frozen=True, slots=True)
class Stored:
    """What one upload did."""

    received: int
    stored: int


def row_id(tenant: str, decision_id: str) -> str:
    """The decision-log row id of an OPA decision of ``tenant`` (64 characters)."""
    digest = hashlib.sha256(f"{tenant}\x00{decision_id}".encode()).hexdigest()
    return f"opa_{digest[:60]}"


def _fail(index: int, message: str) -> InvalidInputError:
    return InvalidInputError(f"decision log event {index}: {message}; nothing was stored")


def _segments(index: int, event: dict[str, Any]) -> tuple[str, ...]:
    path = event.get("path")
    if (path is None or path == "") and isinstance(event.get("query"), str):
        return ()  # an ad-hoc query (POST /v1/query): no data path
    if not isinstance(path, str):
        raise _fail(index, "`path` is a data path string")
    try:
        return parse_data_path(path)
    except InvalidInput as exc:
        raise _fail(index, exc.message) from exc


def _time(index: int, event: dict[str, Any], now: datetime) -> datetime:
    stamp = event.get("timestamp")
    if stamp is None:
        return now
    if not isinstance(stamp, str):
        raise _fail(index, "`timestamp` is an RFC 3339 string")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise _fail(index, "`timestamp` is an RFC 3339 string") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _revisions(index: int, event: dict[str, Any]) -> dict[str, str]:
    bundles = event.get("bundles") or {}
    if not isinstance(bundles, dict):
        raise _fail(index, "`bundles` is an object of bundle name to {revision}")
    revisions: dict[str, str] = {}
    for name, info in bundles.items():
        revision = info.get("revision") if isinstance(info, dict) else None
        if not isinstance(revision, str):
            raise _fail(index, f"`bundles.{name}.revision` is a string")
        revisions[str(name)] = revision
    return revisions


def _short(value: Any, size: int) -> str | None:
    return value if isinstance(value, str) and 1 <= len(value) <= size else None


def _subject(value: Any) -> dict[str, Any] | None:
    """A principal or resource of our request shape (a dict with a short string ``id``)."""
    if isinstance(value, dict) and _short(value.get("id"), 200) is not None:
        return value
    return None


def _reasons(segments: Sequence[str], result: Any) -> list[dict[str, str]]:
    denials: Any = None
    if segments and segments[-1] in DENY_RULES:
        denials = result
    elif isinstance(result, dict):
        denials = next((result[n] for n in sorted(DENY_RULES) if n in result), None)
    if not isinstance(denials, list):
        return []
    policy = "/".join(segments)
    return [
        {"policy": policy, "message": m, "engine": SOURCE} for m in denials if isinstance(m, str)
    ]


@dataclass(frozen=True, slots=True)
class _Context:
    tenant: str
    sidecar: SidecarAuth
    now: datetime


def _record(index: int, event: Any, ctx: _Context) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise _fail(index, "each event is a JSON object")
    decision_id = _short(event.get("decision_id"), MAX_DECISION_ID)
    if decision_id is None:
        raise _fail(index, f"`decision_id` is a string of 1 to {MAX_DECISION_ID} characters")
    segments = _segments(index, event)
    labels = event.get("labels") or {}
    if not isinstance(labels, dict):
        raise _fail(index, "`labels` is an object")
    moment = _time(index, event, ctx.now)
    revisions = _revisions(index, event)
    given: Any = event.get("input")
    inp: dict[str, Any] = given if isinstance(given, dict) else {}
    action = inp.get("action") if inp.get("action") in ACTIONS else QUERY_ACTION
    principal = _subject(inp.get("principal"))
    resource = _subject(inp.get("resource"))
    path = "/".join(segments)
    if resource is None or _short(resource.get("type"), 64) is None:
        resource_view = {"type": "opa.data", "id": (path or "query")[:200], "tenant": ctx.tenant}
    else:
        resource_view = {"type": resource["type"], "id": resource["id"], "tenant": ctx.tenant}
    principal_view = (
        mask(principal)
        if principal is not None
        else {"id": f"opa:{ctx.sidecar.name}"[:200], "kind": "sidecar"}
    )
    defined = "result" in event
    verdict = interpret_result(segments, event.get("result"), defined=defined)
    result: dict[str, Any] = {
        "allowed": verdict.allowed,
        "outcome": verdict.outcome,
        "defined": defined,
        "reasons": _reasons(segments, event.get("result")),
    }
    if defined:
        result["value"] = mask(event["result"])
    opa: dict[str, Any] = {
        "decision_id": decision_id,
        "path": path,
        "labels": mask(labels),
        "timestamp": event.get("timestamp"),
        "sidecar": {"id": ctx.sidecar.id, "name": ctx.sidecar.name},
        "received_at": ctx.now.isoformat(),
    }
    for extra in ("query", "requested_by", "erased", "masked", "trace_id", "span_id"):
        if extra in event:
            opa[extra] = event[extra]
    return {
        "id": row_id(ctx.tenant, decision_id),
        "time": moment.isoformat(),
        "source": SOURCE,
        "principal": principal_view,
        "action": action,
        "resource": resource_view,
        "input": mask(given),
        "result": result,
        "revisions": revisions,
        "opa": opa,
    }


def read_upload(body: bytes, tenant: str, sidecar: SidecarAuth) -> list[dict[str, Any]]:
    """The records of an upload, one per distinct decision id; 400 if anything is malformed."""
    events = parse_json(gunzip(body, MAX_DECOMPRESSED, "decision log"), "decision log")
    if not isinstance(events, list):
        raise InvalidInputError("decision log: the body is a JSON array of decision events")
    if len(events) > MAX_EVENTS:
        raise InvalidInputError(f"decision log: at most {MAX_EVENTS} events per upload")
    ctx = _Context(tenant, sidecar, utcnow())
    records: dict[str, dict[str, Any]] = {}
    for index, event in enumerate(events):
        record = _record(index, event, ctx)
        records.setdefault(record["id"], record)
    return list(records.values())


async def store(log: DecisionLog, gate: Gate, tenant: str, records: list[dict[str, Any]]) -> int:
    """Append the records not stored yet, in one transaction; how many were new.

    A concurrent upload of the same events may commit first (the row id is unique):
    the transaction is then retried once and finds them stored.
    """
    for attempt in range(2):
        try:
            async with log.transaction():
                ids = [r["id"] for r in records]
                known = await Decision.select(Decision.id).where(
                    (Decision.tenant == tenant) & Decision.id.is_in(ids)
                )
                seen = {row["id"] for row in known}
                new = [r for r in records if r["id"] not in seen]
                if new:
                    await gate.record(tenant, *new)
                return len(new)
        except AppError:
            raise
        except Exception as exc:
            if attempt:
                raise UnavailableError(
                    f"the decision log could not be written, nothing was stored ({type(exc).__name__})"
                ) from exc
    raise AssertionError("unreachable")


async def ingest(log: DecisionLog, gate: Gate, sidecar: SidecarAuth, body: bytes) -> Stored:
    """Check a whole upload, then store its new events."""
    records = read_upload(body, sidecar.tenant, sidecar)
    if not records:
        return Stored(0, 0)
    return Stored(len(records), await store(log, gate, sidecar.tenant, records))
