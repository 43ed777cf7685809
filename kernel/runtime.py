"""The `Runtime` port (how one run executes) and the next-step rules for its result."""

from __future__ import annotations

from typing import Protocol

from kernel.model import (
    Base,
    RandomSource,
    RetryPolicy,
    RunOutcome,
    RunResult,
    TaskSpec,
    TaskState,
)
from kernel.store import NextStep


class RunContext(Base, frozen=True):
    """What a runtime gets to know about the run it executes."""

    run_id: str
    task_id: str
    attempt: int
    worker_id: str
    run_token: str
    """Secret for the tool-call API (``AION_RUN_TOKEN`` in a subprocess)."""
    tool_call_url: str = ""
    """Where the run asks before invoking a tool (``AION_TOOL_CALL_URL``)."""
    deadline: float = 0.0
    """Scheduler clock time at which the run is timed out."""


class Runtime(Protocol):
    """Executes one run. Must stop promptly (and clean up) when cancelled.

    Failures are results, not exceptions: an exception escaping ``run`` is
    treated as a retryable failure with the exception as its cause.
    """

    async def run(self, task: TaskSpec, ctx: RunContext) -> RunResult:
        """Run ``task`` once and report how it ended."""
        ...


_RETRYABLE = frozenset({RunOutcome.FAILED_RETRYABLE, RunOutcome.LEASE_EXPIRED})


def plan_next(
    task: TaskSpec,
    attempt: int,
    result: RunResult,
    now: float,
    policy: RetryPolicy,
    random: RandomSource,
) -> NextStep:
    """Where a task goes after attempt number ``attempt`` ended with ``result``."""
    outcome = result.outcome
    cause = result.cause or outcome.value
    if outcome is RunOutcome.SUCCEEDED:
        return NextStep(state=TaskState.SUCCEEDED)
    if outcome is RunOutcome.CANCELLED:
        return NextStep(state=TaskState.CANCELLED, cause=cause)
    retryable = outcome in _RETRYABLE or (outcome is RunOutcome.TIMED_OUT and policy.retry_timeouts)
    if retryable and attempt < task.max_attempts:
        due = now + policy.delay(attempt, random)
        return NextStep(state=TaskState.RETRY_WAIT, due_at=due, cause=cause)
    if retryable:
        return NextStep(
            state=TaskState.DEAD_LETTERED,
            cause=f"gave up after {attempt} of {task.max_attempts} attempts: {cause}",
        )
    if outcome is RunOutcome.FAILED_PERMANENT:
        return NextStep(state=TaskState.DEAD_LETTERED, cause=f"permanent failure: {cause}")
    return NextStep(state=TaskState.DEAD_LETTERED, cause=cause)
