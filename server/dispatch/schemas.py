"""Wire schemas of the task and tool-call API (request bodies on the strict base)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from server.schemas import Body

Priority = Literal["critical", "high", "standard", "bulk"]


class TaskSubmit(Body):
    """`POST /agents/{id}/tasks`.

    ``id``, ``status``, ``tenant``, ``attempts`` and the scheduler's columns are
    not fields: the server sets them (a body that names one is 400).
    ``budget_usd`` absent means the policy default (0.02 USD); ``null`` is refused.
    """

    input: dict[str, Any]
    intent: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    priority: Priority = "standard"
    budget_usd: float | msgspec.UnsetType = msgspec.UNSET
    timeout_s: Annotated[float, msgspec.Meta(ge=1, le=86400)] = 300.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    expires_in_s: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)] | None = None
    """When given, the task expires (dead-lettered, never started) this many seconds after submit."""


class ToolCallIn(Body):
    """`POST /runs/{id}/tool-calls`: what a running agent asks to invoke."""

    tool_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
