"""Wire values of the decision model: requests in, decisions out.

All of them are msgspec Structs on one strict base, so unknown fields are
rejected wherever they are decoded (CLI input files, API bodies, job payloads).
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Shared wire rules: unknown fields are an error."""


class Principal(Base, frozen=True):
    """Who asks: a user or a service of one tenant, with its roles."""

    id: str
    tenant: str
    roles: list[str] = msgspec.field(default_factory=list)
    kind: Literal["user", "service"] = "user"


class Resource(Base, frozen=True):
    """What the action is about, as stored (agent, tool, model, task ...)."""

    type: str
    id: str
    tenant: str
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


class DecisionRequest(Base, frozen=True):
    """One gated operation: the ``input`` document of every policy."""

    action: str
    principal: Principal
    resource: Resource
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class Mode(enum.StrEnum):
    """Enforcement mode of an attached policy, applied on top of the raw verdict."""

    ENFORCE = "enforce"
    WARN = "warn"
    AUDIT = "audit"
    REQUIRE_APPROVAL = "require_approval"


class Outcome(enum.StrEnum):
    """What the caller must do with the request."""

    ALLOW = "allow"
    DENY = "deny"
    PENDING_APPROVAL = "pending_approval"


class Reason(Base, frozen=True):
    """Why a rule fired: which engine, which bundle, which rule or policy id, and its message."""

    engine: str
    policy: str
    message: str
    bundle: str = ""
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class EvalError(Base, frozen=True):
    """An evaluation problem; every one of them denies (fail closed)."""

    engine: str
    code: str
    message: str


class EngineResult(Base, frozen=True):
    """What one engine said about one request."""

    engine: str
    participated: bool
    allowed: bool
    deny_count: int = 0
    warn_count: int = 0
    errors: list[EvalError] = msgspec.field(default_factory=list)
    duration_us: float = 0.0


class Decision(Base, frozen=True):
    """The combined, explainable answer to one :class:`DecisionRequest`.

    ``allowed`` is the effective answer after the enforcement ``mode``;
    ``verdict_allowed`` is what the policies said before it.
    """

    decision_id: str
    action: str
    allowed: bool
    outcome: Outcome
    mode: Mode
    verdict_allowed: bool
    reasons: list[Reason]
    warnings: list[Reason]
    obligations: list[dict[str, Any]]
    engines: list[EngineResult]
    revisions: dict[str, str]
    errors: list[EvalError]
    duration_us: float


def to_builtins(value: msgspec.Struct) -> dict[str, Any]:
    """A Struct as plain JSON-compatible builtins."""
    out = msgspec.to_builtins(value)
    assert isinstance(out, dict)
    return out
