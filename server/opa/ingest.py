"""OPA decision-log uploads (``POST /logs``) → records of the tenant's decision log.

OPA (v1.22) posts a gzipped JSON array of decision events (``Content-Encoding: gzip``) and,
when the answer is not 2xx, puts the chunk back and retries it forever: a refused event
would stop the sidecar's decision log for good. So an upload is refused (400, nothing
stored) only when it is not a gzipped JSON array of objects, an event has no string
``decision_id``, or it exceeds the bounds; everything else OPA can send is stored as it
came, made safe: the path kept raw (never evaluated here), a missing bundle revision as
``""``, numbers Python cannot hold as their text, input nested deeper than
``MAX_DEPTH`` cut with a marker, an unreadable timestamp replaced by the receive time (the
raw text kept under ``opa.timestamp``). Every record is built and checked before the
transaction opens, so a record problem never becomes a 503 OPA retries.

Each event becomes one record with ``source: "opa"``, its row id derived from (tenant, OPA
``decision_id``), so an upload OPA retries stores nothing twice and two tenants' decision
ids never collide. The events of one upload are appended in one transaction, hash-chained
like the server's own decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.actions import ACTIONS
from engine.opaquery import DENY_RULES, interpret_result
from server.auth import utcnow
from server.db.tables import Decision
from server.decisionchain import canonical_json
from server.decisionlog import DecisionLog
from server.errors import AppError, InvalidInputError, UnavailableError
from server.gate import Gate
from server.masking import mask
from server.opa.sidecars import SidecarAuth
from server.opa.wire import gunzip, parse_events

#: Bounds of one upload. OPA's default upload chunk is 32 KiB compressed
#: (``decision_logs.reporting.upload_size_limit_bytes``); 2 MiB decompressed is plenty.
MAX_DECOMPRESSED = 2 * 1024 * 1024
MAX_EVENTS = 1000
MAX_DECISION_ID = 128
#: Longest path kept (longer: cut, ``opa.path_truncated``); deepest nesting kept in an event.
MAX_PATH = 1000
MAX_DEPTH = 64
TRUNCATED = "aion.truncated"
QUERY_ACTION = "data.query"
SOURCE = "opa"


@dataclass(frozen=True, slots=True)
class Stored:
    """What one upload did."""

    received: int
    stored: int


def row_id(tenant: str, decision_id: str) -> str:
    """The decision-log row id of an OPA decision of ``tenant`` (64 characters)."""
    key = f"{tenant}\x00{decision_id}".encode("utf-8", "surrogatepass")
    return f"opa_{hashlib.sha256(key).hexdigest()[:60]}"


def _fail(index: int, message: str) -> InvalidInputError:
    return InvalidInputError(f"decision log event {index}: {message}; nothing was stored")


def bounded(value: Any, depth: int = MAX_DEPTH) -> Any:
    """``value`` with anything nested deeper than ``depth`` replaced by a truncation marker."""
    if isinstance(value, dict | list) and depth <= 0:
        return {TRUNCATED: f"nested deeper than {MAX_DEPTH} levels"}
    if isinstance(value, dict):
        return {k: bounded(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [bounded(v, depth - 1) for v in value]
    return value


def _column(text: str) -> str:
    """``text`` safe for an indexed text column (no NUL, valid UTF-8)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _path(event: dict[str, Any]) -> tuple[str, bool]:
    """The raw path OPA logged (``""``: ``POST /v1/data`` or an ad-hoc query), and whether
    it was cut to ``MAX_PATH``. Never parsed as a reference: it is only recorded."""
    path = event.get("path")
    if not isinstance(path, str):
        return "", False
    return path[:MAX_PATH], len(path) > MAX_PATH


def _time(event: dict[str, Any], now: datetime) -> datetime | None:
    """The event's time in UTC; None when it cannot be read (the caller uses ``now``)."""
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _revisions(event: dict[str, Any]) -> dict[str, str]:
    """bundle name → revision; OPA omits an empty revision, stored as ``""``."""
    bundles = event.get("bundles")
    if not isinstance(bundles, dict):
        return {}
    revisions: dict[str, str] = {}
    for name, info in bundles.items():
        revision = info.get("revision") if isinstance(info, dict) else None
        revisions[str(name)] = revision if isinstance(revision, str) else ""
    return revisions


def _short(value: Any, size: int) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= size:
        return None
    return value if _column(value) == value else None


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


def _views(inp: dict[str, Any], path: str, ctx: _Context) -> tuple[dict[str, Any], ...]:
    """(principal, resource) as the record shows them."""
    principal = _subject(inp.get("principal"))
    resource = _subject(inp.get("resource"))
    if resource is None or _short(resource.get("type"), 64) is None:
        fallback = _column(path)[:200] or "query"
        resource_view = {"type": "opa.data", "id": fallback, "tenant": ctx.tenant}
    else:
        resource_view = {"type": resource["type"], "id": resource["id"], "tenant": ctx.tenant}
    principal_view = (
        mask(principal)
        if principal is not None
        else {"id": _column(f"opa:{ctx.sidecar.name}")[:200], "kind": "sidecar"}
    )
    return principal_view, resource_view


def _record(index: int, raw: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    decision_id = raw.get("decision_id")
    if not isinstance(decision_id, str) or not 1 <= len(decision_id) <= MAX_DECISION_ID:
        raise _fail(index, f"`decision_id` is a string of 1 to {MAX_DECISION_ID} characters")
    event: dict[str, Any] = bounded(raw)
    path, cut = _path(event)
    segments = tuple(path.split("/")) if path else ()
    given: Any = event.get("input")
    inp: dict[str, Any] = given if isinstance(given, dict) else {}
    action = inp.get("action") if inp.get("action") in ACTIONS else QUERY_ACTION
    principal_view, resource_view = _views(inp, path, ctx)
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
    moment = _time(event, ctx.now)
    opa: dict[str, Any] = {
        "decision_id": decision_id,
        "path": path,
        "labels": mask(event.get("labels") or {}),
        "timestamp": event.get("timestamp"),
        "sidecar": {"id": ctx.sidecar.id, "name": ctx.sidecar.name},
        "received_at": ctx.now.isoformat(),
    }
    if cut:
        opa["path_truncated"] = True
    if moment is None and event.get("timestamp") is not None:
        opa["timestamp_unreadable"] = True
    for extra in ("query", "requested_by", "erased", "masked", "trace_id", "span_id"):
        if extra in event:
            opa[extra] = event[extra]
    record = {
        "id": row_id(ctx.tenant, decision_id),
        "time": (moment or ctx.now).isoformat(),
        "source": SOURCE,
        "principal": principal_view,
        "action": action,
        "resource": resource_view,
        "input": mask(given),
        "result": result,
        "revisions": _revisions(event),
        "opa": opa,
    }
    try:
        canonical_json(record)  # what the log will hash: checked before any transaction
    except (TypeError, ValueError) as exc:  # pragma: no cover - parse_events yields plain JSON
        raise _fail(index, f"not storable as JSON ({exc})") from exc
    return record


def read_upload(body: bytes, tenant: str, sidecar: SidecarAuth) -> list[dict[str, Any]]:
    """The records of an upload, one per distinct decision id; 400 if the upload is malformed.

    CPU-bound (gunzip, JSON, masking): the endpoint runs it in a worker thread.
    """
    raw = gunzip(body, MAX_DECOMPRESSED, "decision log")
    events = parse_events(raw, MAX_EVENTS, "decision log")
    ctx = _Context(tenant, sidecar, utcnow().astimezone(UTC))
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


async def ingest(
    log: DecisionLog,
    gate: Gate,
    sidecar: SidecarAuth,
    body: bytes,
    slots: asyncio.Semaphore | None = None,
) -> Stored:
    """Check a whole upload (in a worker thread, at most ``slots`` at once), then store its
    new events."""
    async with slots or contextlib.nullcontext():
        records = await asyncio.to_thread(read_upload, body, sidecar.tenant, sidecar)
    if not records:
        return Stored(0, 0)
    return Stored(len(records), await store(log, gate, sidecar.tenant, records))
