"""Wire schemas of the API: msgspec Structs on one strict base (unknown fields are 400)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Body(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every request body: a field the API does not know is refused."""


class AgentCreate(Body):
    """`POST /agents`: a catalog template with its config, or the direct form.

    ``id``, ``tenant``, ``status`` and ``deployment`` are not fields: the server sets them.
    """

    name: str | None = None
    template_id: str | None = None
    model: str | None = None
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    policy_ids: list[str] = msgspec.field(default_factory=list)
    tool_ids: list[str] = msgspec.field(default_factory=list)


class AgentUpdate(Body):
    """`PATCH /agents/{id}`: only the fields to change; ``status`` may only go back to ``draft``."""

    name: str | None = None
    model: str | None = None
    config: dict[str, Any] | None = None
    policy_ids: list[str] | None = None
    tool_ids: list[str] | None = None
    status: Literal["draft"] | None = None


class AgentDisable(Body):
    """`POST /agents/{id}/disable`."""

    reason: str = ""


class ResourceIn(Body):
    """The resource of an ad-hoc decision (its tenant is the caller's)."""

    type: str
    id: str
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


class DecideIn(Body):
    """`POST /decide`: one request; the principal is the caller."""

    action: str
    resource: ResourceIn
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class DecideBatchIn(Body):
    """`POST /decide/batch`: up to 100 requests."""

    requests: list[DecideIn]


class ToolBind(Body):
    """`POST /agents/{id}/tools`."""

    tool_id: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class PolicyModeIn(Body):
    """`PUT /agents/{id}/policies/{bundle}`."""

    mode: Literal["enforce", "warn", "audit", "require_approval"] = "enforce"


class KeyIn(Body):
    """`POST /keys`: a public key the tenant trusts for bundle signatures."""

    key_id: str
    public_key: str
    algorithm: str = "ES256"


class RevisionIn(Body):
    """`POST /bundles/{name}/activate` and `/shadow`."""

    revision: str


class ImpactIn(Body):
    """`POST /bundles/{name}/impact`."""

    revision: str
    limit: int = 1000


class ApprovalIn(Body):
    """`POST /approvals/{id}`."""

    decision: Literal["approve", "reject"]
