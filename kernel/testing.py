"""In-memory twins for tests: a scripted runtime, a static admission check, a driver."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from kernel.clock import ManualClock
from kernel.model import Base, RunOutcome, RunResult, TaskSpec
from kernel.runtime import RunContext
from kernel.scheduler import Scheduler
from kernel.store import Admission


class Step(Base, frozen=True):
    """One scripted attempt: take ``duration`` seconds (None: hang), then report ``result``."""

    duration: float | None = 0.0
    result: RunResult = RunResult(outcome=RunOutcome.SUCCEEDED)


class ScriptedRuntime:
    """A runtime whose attempts follow a script per task id, on a (virtual) clock.

    ``on_start`` is called with the runtime itself at every start, so a test can
    check an invariant (such as a quota) at every step.
    """

    def __init__(
        self,
        clock: ManualClock,
        default: Step | None = None,
        on_start: Callable[[ScriptedRuntime], None] | None = None,
    ) -> None:
        self.clock = clock
        self.default = default or Step()
        self.on_start = on_start
        self._scripts: dict[str, list[Step]] = {}
        self.active: dict[str, TaskSpec] = {}
        self.starts: list[tuple[str, str]] = []
        """(task id, run id) in start order."""
        self.cancelled: list[str] = []
        """Run ids whose call was cancelled."""

    def script(self, task_id: str, *steps: Step) -> None:
        """Attempts of ``task_id`` follow ``steps``; the last step repeats."""
        self._scripts[task_id] = list(steps)

    def active_by_tenant(self) -> Counter[str]:
        """Running calls per tenant."""
        return Counter(spec.tenant for spec in self.active.values())

    def active_by_agent(self) -> Counter[str]:
        """Running calls per agent."""
        return Counter(spec.agent_id for spec in self.active.values())

    async def run(self, task: TaskSpec, ctx: RunContext) -> RunResult:
        steps = self._scripts.get(task.task_id) or [self.default]
        step = steps[min(ctx.attempt, len(steps)) - 1]
        self.active[ctx.run_id] = task
        self.starts.append((task.task_id, ctx.run_id))
        if self.on_start is not None:
            self.on_start(self)
        try:
            if step.duration is None:
                while True:
                    await self.clock.sleep(3600.0)
            await self.clock.sleep(step.duration)
        except BaseException:
            self.cancelled.append(ctx.run_id)
            raise
        finally:
            del self.active[ctx.run_id]
        return step.result


class StaticAdmission:
    """Admission check from a table of refused agents."""

    def __init__(self) -> None:
        self.refused: dict[str, str] = {}
        self.checked: list[str] = []

    def refuse(self, agent_id: str, reason: str) -> None:
        """From now on, tasks of ``agent_id`` are refused at start with ``reason``."""
        self.refused[agent_id] = reason

    async def still_admitted(self, task: TaskSpec) -> Admission:
        self.checked.append(task.task_id)
        reason = self.refused.get(task.agent_id)
        return Admission(allowed=reason is None, reason=reason or "")


async def drive(scheduler: Scheduler, clock: ManualClock, max_steps: int = 100_000) -> None:
    """Run the scheduler on virtual time until it is idle or nothing is left to wait for."""
    for _ in range(max_steps):
        await scheduler.run_until_idle()
        if scheduler.idle:
            return
        deadlines = [t for t in (clock.next_deadline(), scheduler.next_wakeup()) if t is not None]
        if not deadlines:
            return
        clock.advance_to(min(deadlines))
    raise RuntimeError("scheduler still busy after max_steps")
