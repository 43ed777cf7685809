"""OPA's Data API over a tenant's active policy set: validate, evaluate, record.

A query names a plain data path (``aion/agent/deploy``) inside one of the
tenant's active bundles' roots, evaluates it in process with the server
clock, and is recorded in the tenant's decision log (group commit) before it
is answered: no answer without a record, as for ``POST /api/v1/decide``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from engine import ACTIONS, PolicySet
from engine.errors import InvalidInput
from engine.opaquery import interpret_result, parse_data_path, path_in_roots
from engine.regodata import RegoQueryError
from server.auth import Caller, utcnow
from server.errors import AppError, InvalidInputError, UnavailableError
from server.masking import mask
from server.state import Services

SOURCE = "data-api"
QUERY_ACTION = "data.query"
_RESOURCE_ID_MAX = 200  # the decision log's resource_id column


class InvalidPathError(InvalidInputError):
    """A data path that is not a plain reference (the injection of CVE-2025-46569)."""

    code = "invalid_path"


class PathOutsideRootsError(InvalidInputError):
    """A data path no active bundle of the tenant owns."""

    code = "path_outside_roots"


class QueryEvaluationError(AppError):
    """The query was evaluated (and recorded) but failed: OPA's 500 ``internal_error``."""

    status, code = 500, "internal_error"


@dataclass(frozen=True)
class DataQuery:
    """A validated query: its path segments and its input (None: no input)."""

    segments: tuple[str, ...]
    input: Any = None

    @property
    def path(self) -> str:
        """The path as the client named it, without the surrounding slashes."""
        return "/".join(self.segments)


@dataclass
class DataAnswer:
    """What one query decided, and how long it took."""

    decision_id: str
    time: datetime = field(default_factory=utcnow)
    """The server clock's time the query was evaluated at (``time.now_ns``)."""
    defined: bool = False
    result: Any = None
    error: str = ""
    revisions: dict[str, str] = field(default_factory=dict)
    eval_ns: int = 0


def parse_path(path: str) -> tuple[str, ...]:
    """The segments of ``path``; 400 ``invalid_path`` unless it is a plain reference."""
    try:
        return parse_data_path(path)
    except InvalidInput as exc:
        raise InvalidPathError(exc.message) from exc


MAX_INPUT_DEPTH = 64
"""Nesting allowed in an input document: deeper is refused (400) before it is evaluated,
masked or recorded, all of which walk it."""


def _within_depth(value: Any) -> Any:
    """``value``, or 400 when it nests deeper than :data:`MAX_INPUT_DEPTH`."""
    level = [value]
    for _ in range(MAX_INPUT_DEPTH + 1):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return value
    raise InvalidInputError(f"the input nests deeper than {MAX_INPUT_DEPTH} levels")


def _decode(raw: bytes, what: str) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"{what} is not JSON: {exc}") from exc
    except RecursionError as exc:  # msgspec's own bound on nesting
        raise InvalidInputError(f"{what} nests too deeply") from exc


def input_from_body(raw: bytes) -> Any:
    """The ``input`` of a POST body (``{"input": ...}``; empty: no input); 400 otherwise."""
    if not raw.strip():
        return None
    body = _decode(raw, "the body")
    if not isinstance(body, dict):
        raise InvalidInputError('the body is a JSON object: `{"input": ...}`')
    unknown = sorted(set(body) - {"input"})
    if unknown:
        raise InvalidInputError(f"unknown fields {unknown}: the body holds only `input`")
    return _within_depth(body.get("input"))


def input_from_query(text: str | None) -> Any:
    """The ``input`` query parameter of a GET (JSON text; absent: no input); 400 otherwise."""
    if text is None:
        return None
    return _within_depth(_decode(text.encode(), "the `input` parameter"))


async def active_roots(svc: Services, tenant: str) -> list[str]:
    """The roots of every bundle in the tenant's active set (its own and the global ones)."""
    roots: list[str] = []
    for row in await svc.policies.active_rows(tenant):
        bundle = await svc.policies.bundle(row["id"], row["name"])
        roots.extend(bundle.manifest.roots)
    return roots


def _evaluate(policy_set: PolicySet, query: DataQuery, answer: DataAnswer) -> None:
    started = time.perf_counter_ns()
    now = answer.time
    now_ns = int(now.replace(microsecond=0).timestamp()) * 1_000_000_000 + now.microsecond * 1000
    if policy_set.rego is not None:
        try:
            answer.defined, answer.result = policy_set.rego.evaluate_path(
                query.segments, query.input, now_ns
            )
        except RegoQueryError as exc:
            answer.error = exc.message
    answer.eval_ns = time.perf_counter_ns() - started


def _action(input_doc: Any) -> str:
    named = input_doc.get("action") if isinstance(input_doc, dict) else None
    return named if isinstance(named, str) and named in ACTIONS else QUERY_ACTION


def query_record(
    caller: Caller, query: DataQuery, answer: DataAnswer, trace: str
) -> dict[str, Any]:
    """The decision record of one query (input and result masked)."""
    verdict = interpret_result(query.segments, answer.result, defined=answer.defined)
    allowed = verdict.allowed and not answer.error
    outcome = "deny" if answer.error else verdict.outcome
    result: dict[str, Any] = {
        "allowed": allowed,
        "outcome": outcome,
        "defined": answer.defined,
        "reasons": [],
        "errors": (
            [{"engine": "rego", "code": "rego_eval_error", "message": answer.error}]
            if answer.error
            else []
        ),
    }
    if answer.defined:
        result["value"] = mask(answer.result)
    return {
        "id": answer.decision_id,
        "time": answer.time.isoformat(),
        "source": SOURCE,
        "principal": msgspec.to_builtins(caller.principal()),
        "action": _action(query.input),
        "resource": {
            "type": "data",
            "id": query.path[:_RESOURCE_ID_MAX],
            "tenant": caller.tenant,
        },
        "path": query.path,
        "input": mask(query.input),
        "result": result,
        "revisions": answer.revisions,
        "engines": [{"engine": "rego", "duration_us": answer.eval_ns / 1000}],
        "duration_us": answer.eval_ns / 1000,
        "trace_id": trace,
    }


async def answer_query(svc: Services, caller: Caller, query: DataQuery, trace: str) -> DataAnswer:
    """Evaluate ``query`` against the caller's tenant's active set and record it.

    400 ``path_outside_roots`` (nothing recorded) when no active bundle owns
    the path; 503 when the record cannot be written; 500 ``internal_error``
    (recorded) when the evaluation failed.
    """
    if not path_in_roots(query.segments, await active_roots(svc, caller.tenant)):
        raise PathOutsideRootsError(
            f"`{query.path}` is not inside the root of any active bundle of the tenant"
        )
    answer = DataAnswer(decision_id=f"dec_{uuid.uuid4().hex}")
    try:
        policy_set = await svc.policies.active(caller.tenant)
    except Exception as exc:  # a bundle that no longer loads or compiles: recorded, then 500
        answer.error = f"the tenant's active policy set cannot be loaded: {type(exc).__name__}"
    else:
        answer.revisions = dict(policy_set.revisions)
        _evaluate(policy_set, query, answer)
    try:
        await svc.gate.commit(caller.tenant, [query_record(caller, query, answer, trace)])
    except Exception as exc:  # no decision without a record: refuse rather than answer
        raise UnavailableError(
            f"the decision could not be recorded ({type(exc).__name__})"
        ) from exc
    if answer.error:
        raise QueryEvaluationError(answer.error, decision_id=answer.decision_id)
    return answer
