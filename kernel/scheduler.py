"""The async scheduler: fair-share ready queue in front, durable store behind.

The worker is stateless: every state change is a :class:`~kernel.store.RunStore`
call, and the in-memory structures (ready queue, retry timers, running runs)
are caches rebuilt by :meth:`Scheduler.recover` after a restart.

A task id arrives (from the job queue or :meth:`Scheduler.submit`), its spec is
loaded from the store and queued. :meth:`Scheduler.pump` starts runs up to the
concurrency limit in fair-share order; each start re-checks expiry and
admission, then claims the task in the store. A run races the runtime against
its timeout, a cancellation request and a lost lease; its result moves the task
on (succeeded, retry_wait with a due time, dead_lettered, cancelled).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random as _random
from collections.abc import Awaitable
from dataclasses import dataclass, field

from kernel import serving
from kernel.clock import Clock, first_completed
from kernel.events import Event, EventKind, EventSink
from kernel.fairshare import FairShare
from kernel.model import RandomSource, RetryPolicy, RunOutcome, RunResult, TaskSpec, TaskState
from kernel.queue import JobQueue
from kernel.runtime import RunContext, Runtime, plan_next
from kernel.store import AdmissionCheck, Claim, Finished, NextStep, RunStore

log = logging.getLogger("aion.kernel")

#: Attempts at recording a run's end, and the first pause between them (doubling): a
#: database that stays away longer leaves the run to its lease.
FINISH_ATTEMPTS = 5
FINISH_BACKOFF_S = 0.5


@dataclass(frozen=True)
class SchedulerConfig:
    """Settings of one scheduler (one worker)."""

    worker_id: str
    """Identifies this worker in run rows and leases."""
    concurrency: int = 8
    """Runs executing at once on this worker."""
    lease_s: float = 30.0
    """A run's lease; a worker silent for this long is presumed dead."""
    heartbeat_s: float | None = None
    """Lease renewal interval; default a third of ``lease_s``."""
    sweep_s: float = 30.0
    """How often :meth:`Scheduler.serve` re-reads the store for lost work."""
    tool_call_url: str = ""
    """Tool-call API URL template; ``{run_id}`` is replaced by the run id."""
    intake_s: float | None = 1.0
    """How often :meth:`Scheduler.serve` takes in each tenant's oldest pending tasks from the
    store (``concurrency`` per tenant) besides the queue's jobs: a queue delivers in arrival
    order, so a tenant's single task behind another's backlog would wait for the backlog;
    the intake puts it before the fair share within this interval. None: off."""
    emit_queued: bool = True
    """Emit ``queued`` when a task is taken in; off where the submit already recorded it
    (the server writes it in the submit's transaction)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass
class _Run:
    claim: Claim
    stop: asyncio.Future[str]
    task: asyncio.Task[None] | None = None
    work: asyncio.Task[RunResult] | None = None
    ending: bool = False
    """The run's end is being recorded (possibly waiting to try the store again)."""


_SETTLE_YIELDS = 10


class Scheduler:
    """Tenant-fair, quota-aware executor of approved tasks."""

    def __init__(
        self,
        *,
        store: RunStore,
        runtime: Runtime,
        clock: Clock,
        events: EventSink,
        admission: AdmissionCheck,
        config: SchedulerConfig,
        fairshare: FairShare | None = None,
        random: RandomSource | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self.events = events
        self.admission = admission
        self.config = config
        self.fair = fairshare if fairshare is not None else FairShare()
        self._random = random or _random.Random().random
        self._local: dict[str, TaskSpec] = {}
        self._timers: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._running: dict[str, _Run] = {}
        self._jobs: dict[str, str] = {}
        self._queue: JobQueue | None = None
        self._progress = 0
        self._wake = asyncio.Event()

    # -- introspection -----------------------------------------------------------

    @property
    def running(self) -> list[str]:
        """Ids of the tasks running on this worker."""
        return list(self._running)

    @property
    def idle(self) -> bool:
        """Nothing queued, waiting for a retry, or running here."""
        return not self._local and not self._running

    def next_wakeup(self) -> float | None:
        """The earliest time a retry falls due or a rate quota lifts."""
        times = [due for due, _, task_id in self._timers if task_id in self._local]
        ready = self.fair.next_ready_at(self.clock.now())
        if ready is not None:
            times.append(ready)
        return min(times) if times else None

    # -- intake --------------------------------------------------------------------

    async def submit(self, task_id: str) -> bool:
        """Take a task id in; False when it is unknown, finished, or already handled."""
        if task_id in self._local or task_id in self._running:
            return False
        rec = await self.store.get_task(task_id)
        if rec is None or rec.state.terminal:
            return False
        now = self.clock.now()
        if rec.state is TaskState.RUNNING and (rec.lease_expires_at or 0.0) > now:
            return False
        spec = rec.spec
        self._local[task_id] = spec
        if rec.state is TaskState.RETRY_WAIT and (rec.due_at or 0.0) > now:
            heapq.heappush(self._timers, (rec.due_at or 0.0, next(self._seq), task_id))
        else:
            self.fair.push(spec)
            if rec.state is TaskState.QUEUED and self.config.emit_queued:
                await self._emit(EventKind.QUEUED, spec)
        self._touch()
        return True

    async def recover(self) -> int:
        """Re-read the store: requeue work of dead workers, take in pending tasks."""
        now = self.clock.now()
        for task_id in await self.store.requeue_expired_leases(now):
            rec = await self.store.get_task(task_id)
            if rec is not None and rec.state is TaskState.DEAD_LETTERED:  # out of attempts
                await self._emit(EventKind.DEAD_LETTERED, rec.spec, detail=rec.cause)
        taken = 0
        for task_id in await self.store.pending(now):
            taken += await self.submit(task_id)
        return taken

    async def intake(self) -> int:
        """Take in every tenant's oldest pending tasks (``concurrency`` each) from the store."""
        taken = 0
        pending = await self.store.pending(self.clock.now(), self.config.concurrency)
        for task_id in pending:
            taken += await self.submit(task_id)
        return taken

    async def cancel(self, task_id: str, cause: str = "cancelled by request") -> TaskState | None:
        """Cancel a queued, waiting or running task; the task's state afterwards."""
        before = await self.store.get_task(task_id)
        state = await self.store.cancel(task_id, self.clock.now(), cause)
        spec = self._local.pop(task_id, None)
        if spec is not None:
            self.fair.remove(task_id)
        run = self._running.get(task_id)
        if run is not None:
            if not run.stop.done():
                run.stop.set_result(cause)
        elif before is not None and state is TaskState.CANCELLED and not before.state.terminal:
            if before.state is not TaskState.RUNNING:
                await self._emit(EventKind.CANCELLED, before.spec, detail=cause)
            await self._release_job(task_id)
        self._touch()
        return state

    # -- starting ------------------------------------------------------------------

    async def pump(self) -> int:
        """Start every run that may start now; how many started."""
        now = self.clock.now()
        while self._timers and self._timers[0][0] <= now:
            _, _, task_id = heapq.heappop(self._timers)
            spec = self._local.get(task_id)
            if spec is not None:
                self.fair.push(spec)
        started = 0
        while len(self._running) < self.config.concurrency:
            spec = self.fair.pop_next(now)
            if spec is None:
                break
            self._local.pop(spec.task_id, None)
            started += await self._start(spec, now)
        return started

    async def _start(self, spec: TaskSpec, now: float) -> bool:
        if spec.not_after is not None and now >= spec.not_after:
            self.fair.release(spec, refund=True)
            cause = f"expired: not started before not_after ({spec.not_after:g})"
            if await self.store.dead_letter(spec.task_id, now, cause):
                await self._emit(EventKind.DEAD_LETTERED, spec, detail=cause)
            await self._release_job(spec.task_id)
            return False
        admission = await self.admission.still_admitted(spec)
        if not admission.allowed:
            self.fair.release(spec, refund=True)
            cause = f"refused at start: {admission.reason}"
            if await self.store.refuse(spec.task_id, now, cause):
                await self._emit(EventKind.FAILED, spec, detail=cause)
            await self._release_job(spec.task_id)
            return False
        claim = await self.store.claim(
            spec.task_id, self.config.worker_id, now, self.config.lease_s
        )
        if claim is None:
            self.fair.release(spec, refund=True)
            await self._release_job(spec.task_id)
            await self._emit_if_claim_dead_lettered(spec, now)
            return False
        run = _Run(claim=claim, stop=asyncio.get_running_loop().create_future())
        self._running[spec.task_id] = run
        await self._emit(EventKind.STARTED, spec, run_id=claim.run_id, attempt=claim.attempt)
        run.task = asyncio.create_task(self._execute(run))
        self._touch()
        return True

    async def _emit_if_claim_dead_lettered(self, spec: TaskSpec, now: float) -> None:
        """A claim that finds the previous run's lease lapsed closes it, and dead-letters the
        task when that was its last attempt: the claim's own time marks that move."""
        rec = await self.store.get_task(spec.task_id)
        if rec is not None and rec.state is TaskState.DEAD_LETTERED and rec.updated_at == now:
            await self._emit(EventKind.DEAD_LETTERED, rec.spec, detail=rec.cause)

    # -- running -------------------------------------------------------------------

    async def _execute(self, run: _Run) -> None:
        claim = run.claim
        spec = claim.task
        ctx = RunContext(
            run_id=claim.run_id,
            task_id=spec.task_id,
            attempt=claim.attempt,
            worker_id=claim.worker_id,
            run_token=claim.run_token,
            tool_call_url=self.config.tool_call_url.replace("{run_id}", claim.run_id),
            deadline=self.clock.now() + spec.timeout_s,
        )
        run.work = work = asyncio.create_task(self._call_runtime(spec, ctx))
        timer = asyncio.create_task(self.clock.sleep(spec.timeout_s))
        beat = asyncio.create_task(self._heartbeat(claim))
        try:
            waits: set[asyncio.Future[object]] = {work, timer, beat, run.stop}  # type: ignore[arg-type]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                result = work.result()
            else:
                if timer.done():
                    cause = f"timed out after {spec.timeout_s:g}s"
                    result = RunResult(outcome=RunOutcome.TIMED_OUT, cause=cause)
                elif run.stop.done():
                    result = RunResult(outcome=RunOutcome.CANCELLED, cause=run.stop.result())
                else:
                    cause = "lease lost or task cancelled elsewhere"
                    result = RunResult(outcome=RunOutcome.CANCELLED, cause=cause)
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        finally:
            for helper in (work, timer, beat):
                helper.cancel()
            await asyncio.gather(work, timer, beat, return_exceptions=True)
        await self._finish(run, result)

    async def _call_runtime(self, spec: TaskSpec, ctx: RunContext) -> RunResult:
        try:
            return await self.runtime.run(spec, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            cause = f"runtime error: {type(exc).__name__}: {exc}"
            return RunResult(outcome=RunOutcome.FAILED_RETRYABLE, cause=cause)

    async def _heartbeat(self, claim: Claim) -> None:
        """Renew the lease; return only when the store says the run must stop.

        A renewal that fails (the database is away) is tried again at the next
        beat: if the lease lapses meanwhile, the store answers False then, and
        only the run that holds the task's lease may move it on.
        """
        interval = self.config.heartbeat_s or self.config.lease_s / 3
        while True:
            await self.clock.sleep(interval)
            now = self.clock.now()
            try:
                renewed = await self.store.renew_lease(
                    claim.run_id, claim.worker_id, now, self.config.lease_s
                )
            except Exception as exc:
                log.warning("lease of run %s not renewed: %s", claim.run_id, exc)
                continue
            if not renewed:
                return

    async def _finish(self, run: _Run, result: RunResult) -> None:
        run.ending = True
        claim = run.claim
        spec = claim.task
        now = self.clock.now()
        then = plan_next(spec, claim.attempt, result, now, self.config.retry, self._random)
        try:
            finished = await self._record_end(claim, result, now, then)
        finally:  # the slot is free whatever the store said
            self._running.pop(spec.task_id, None)
            self.fair.release(spec)
            self._touch()
        if finished is None or not finished.applied:
            await self._release_job(spec.task_id)
            return
        state = finished.task_state
        if state is TaskState.RETRY_WAIT:
            due = then.due_at or now
            self._local[spec.task_id] = spec
            heapq.heappush(self._timers, (due, next(self._seq), spec.task_id))
            await self._emit(
                EventKind.RETRY,
                spec,
                detail=then.cause,
                due_at=due,
                run_id=claim.run_id,
                attempt=claim.attempt,
            )
            return
        kind = {
            TaskState.SUCCEEDED: EventKind.SUCCEEDED,
            TaskState.CANCELLED: EventKind.CANCELLED,
            TaskState.DEAD_LETTERED: EventKind.DEAD_LETTERED,
            TaskState.FAILED: EventKind.FAILED,
        }.get(state)
        if kind is not None:
            rec = await self.store.get_task(spec.task_id)
            detail = rec.cause if rec is not None else then.cause
            await self._emit(kind, spec, detail=detail, run_id=claim.run_id, attempt=claim.attempt)
        await self._release_job(spec.task_id)

    async def _record_end(
        self, claim: Claim, result: RunResult, now: float, then: NextStep
    ) -> Finished | None:
        """``store.finish``, tried again with backoff; None when the store stayed away
        (the run's lease then lapses and the task is run again: never lost)."""
        pause = FINISH_BACKOFF_S
        for attempt in range(1, FINISH_ATTEMPTS + 1):
            try:
                return await self.store.finish(claim.run_id, result, now, then)
            except Exception as exc:
                log.warning("end of run %s not recorded (try %d): %s", claim.run_id, attempt, exc)
                if attempt < FINISH_ATTEMPTS:
                    await self.clock.sleep(pause)
                    pause *= 2
        return None

    # -- driving -------------------------------------------------------------------

    def _touch(self) -> None:
        self._progress += 1
        self._wake.set()

    async def _settle(self) -> None:
        """Let started runs proceed until each is finished or blocked (in-memory fakes)."""
        while True:
            before = self._progress
            for _ in range(_SETTLE_YIELDS):
                await asyncio.sleep(0)
            busy = any(
                r.work is not None and r.work.done() and not r.ending
                for r in self._running.values()
            )
            if before == self._progress and not busy:
                return

    async def run_until_idle(self, max_rounds: int = 100_000) -> None:
        """Start and finish everything possible without time passing (for tests).

        Returns when no run can start and every running run waits on the clock
        or on something outside the scheduler. Advance a ``ManualClock`` and call
        again, or use :func:`kernel.testing.drive`.
        """
        for _ in range(max_rounds):
            before = self._progress
            await self.pump()
            await self._settle()
            if self._progress == before:
                return
        raise RuntimeError("scheduler did not settle")

    async def serve(self, queue: JobQueue, stop: asyncio.Event) -> None:
        """Production loop: take jobs from ``queue`` and run them until ``stop`` is set
        (:func:`kernel.serving.serve`)."""
        await serving.serve(self, queue, stop)

    async def take_job(self, queue: JobQueue, job_id: str) -> None:
        """Take in the task of a job from ``queue``; acknowledge at once a job it refuses."""
        self._queue = queue
        if await self.submit(job_id):
            self._jobs[job_id] = job_id
        else:
            await queue.ack(job_id)

    async def wait_for_news(self, *others: Awaitable[object], seconds: float) -> None:
        """Until something changed here (a start, an end, a submit), one of ``others`` is
        done, or ``seconds`` passed."""
        await first_completed(self._wake.wait(), *others, self.clock.sleep(seconds))

    def forget_news(self) -> None:
        """Start a new round: what changed so far has been seen."""
        self._wake.clear()

    async def _release_job(self, task_id: str) -> None:
        """Acknowledge the job of a task that left this worker (its state is stored)."""
        job_id = self._jobs.pop(task_id, None)
        if job_id is not None and self._queue is not None:
            await self._queue.ack(job_id)

    async def shutdown(self) -> None:
        """Stop every run abruptly without recording anything, as if the worker died.

        The runs' leases expire and their tasks are re-run by another worker (or by
        this one after :meth:`recover`). Used for tests and hard stops.
        """
        tasks = [r.task for r in self._running.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        self._local.clear()
        self._timers.clear()

    async def _emit(
        self,
        kind: EventKind,
        spec: TaskSpec,
        *,
        detail: str = "",
        run_id: str | None = None,
        attempt: int | None = None,
        due_at: float | None = None,
    ) -> None:
        event = Event(
            kind=kind,
            task_id=spec.task_id,
            tenant=spec.tenant,
            agent_id=spec.agent_id,
            at=self.clock.now(),
            run_id=run_id,
            attempt=attempt,
            detail=detail,
            due_at=due_at,
        )
        await self.events.emit(event)
