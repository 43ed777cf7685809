"""Values of the scheduler: tasks, priorities, quotas, run results, task states.

All of them are msgspec Structs on one strict, frozen base so the server can put
them on the wire (job payloads, run rows) without a second schema.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from enum import IntEnum, StrEnum
from typing import Any

import msgspec


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Common wire rules of every kernel value."""


class Priority(IntEnum):
    """Priority inside one tenant; a lower value starts first."""

    CRITICAL = 0
    HIGH = 1
    STANDARD = 2
    BULK = 3

    @property
    def label(self) -> str:
        """The wire name: ``critical``, ``high``, ``standard`` or ``bulk``."""
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Priority:
        """The priority named ``name`` (case-insensitive); ValueError for anything else."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown priority `{name}`") from None


class TaskSpec(Base, frozen=True):
    """What the scheduler needs to know about one approved task."""

    task_id: str
    tenant: str
    agent_id: str
    priority: Priority = Priority.STANDARD
    submitted_at: float = 0.0
    timeout_s: float = 300.0
    max_attempts: int = 3
    not_after: float | None = None
    """Expiry: a task that has not started by this time is dead-lettered, never run."""
    payload: Mapping[str, Any] = msgspec.field(default_factory=dict)
    admitted_revision: str | None = None
    """Policy bundle revision the task was admitted under (for the re-check at start)."""


class RunOutcome(StrEnum):
    """How one run ended."""

    SUCCEEDED = "succeeded"
    FAILED_RETRYABLE = "failed_retryable"
    FAILED_PERMANENT = "failed_permanent"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LEASE_EXPIRED = "lease_expired"
    """Store-only: the worker stopped renewing its lease (died); never returned by a runtime."""


class Artifact(Base, frozen=True):
    """One output file of a run, with its content digest."""

    name: str
    data: bytes
    sha256: str

    @classmethod
    def of(cls, name: str, data: bytes) -> Artifact:
        """An artifact with its sha256 computed from ``data``."""
        return cls(name=name, data=data, sha256=hashlib.sha256(data).hexdigest())


class RunResult(Base, frozen=True):
    """What a runtime reports for one run."""

    outcome: RunOutcome
    cause: str = ""
    outputs: tuple[Artifact, ...] = ()
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""


class TaskState(StrEnum):
    """Durable state of a task (the ``tasks.status`` column)."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"

    @property
    def terminal(self) -> bool:
        """True when no transition leaves this state."""
        return not TRANSITIONS[self]


_S = TaskState

#: Allowed task state transitions. ``failed`` is the terminal state of a task
#: refused by the admission re-check at start; ``dead_lettered`` holds tasks that
#: failed permanently, ran out of attempts or expired, with the cause.
TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED, _S.DEAD_LETTERED, _S.FAILED}),
    _S.RUNNING: frozenset(
        {_S.SUCCEEDED, _S.RETRY_WAIT, _S.DEAD_LETTERED, _S.CANCELLED, _S.QUEUED, _S.FAILED}
    ),
    _S.RETRY_WAIT: frozenset({_S.RUNNING, _S.CANCELLED, _S.DEAD_LETTERED, _S.FAILED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.DEAD_LETTERED: frozenset(),
}


def can_transition(source: TaskState, target: TaskState) -> bool:
    """True when ``source -> target`` is an allowed transition."""
    return target in TRANSITIONS[source]


class TenantQuota(Base, frozen=True):
    """Limits of one tenant. ``None`` means unlimited."""

    weight: float = 1.0
    """Share of starts relative to other backlogged tenants (must be > 0)."""
    max_concurrent: int | None = None
    max_starts_per_minute: float | None = None
    burst: int = 1
    """Token-bucket capacity of the start-rate quota: starts allowed back to back."""

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError("tenant weight must be > 0")


class AgentQuota(Base, frozen=True):
    """Limits of one agent, across its tenant's tasks. ``None`` means unlimited."""

    max_concurrent: int | None = None
    max_starts_per_minute: float | None = None
    burst: int = 1


RandomSource = Callable[[], float]
"""A source of floats in [0, 1): ``random.Random(seed).random`` in tests."""


class RetryPolicy(Base, frozen=True):
    """Exponential backoff: ``min(cap, base * factor**(attempt-1))``, minus jitter.

    Jitter shortens the delay by up to ``jitter`` (a fraction) using the injected
    random source, so retries of many tasks spread out, yet a seeded source gives
    the same delays in every test run. The delay never exceeds ``cap_s``.
    """

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    jitter: float = 0.1
    retry_timeouts: bool = True
    """Whether a timed-out run is retried like a retryable failure."""

    def delay(self, attempt: int, random: RandomSource) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(0, attempt - 1)
        raw = self.cap_s if exponent > 64 else self.base_s * self.factor**exponent
        capped = min(self.cap_s, raw) if math.isfinite(raw) else self.cap_s
        return capped * (1.0 - self.jitter * random())
