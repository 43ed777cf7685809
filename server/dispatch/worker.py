"""Composition of a scheduler (for ``aion worker`` and the embedded server) and the worker loop.

A scheduler is the kernel :class:`~kernel.Scheduler` with the server's parts:
:class:`PiccoloRunStore` (wrapped so a tenant's quotas are read from its
settings when the tenant is first seen), :class:`RuntimeRouter`,
:class:`WallClock`, :class:`DbEventSink` and :class:`ServerAdmission`.

Time is **epoch seconds** (:class:`WallClock`): the tasks table keeps
``submitted_at``, ``not_after``, ``due_at`` and leases as epoch seconds, shared
by every worker and the API. ``kernel.SystemClock`` is monotonic time and
must not be used with the database store.

``aion worker`` (:func:`run_worker`) serves jobs from :class:`ArqJobQueue`.
SIGTERM or SIGINT stops it gracefully: it takes no new jobs, lets running runs
finish for up to ``drain_s`` seconds, then abandons the rest to their leases
(another worker re-runs them) and exits. SIGKILL at any moment loses nothing:
every state change is in the database, and a killed run's lease expires.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

from kernel import (
    Claim,
    FairShare,
    Finished,
    NextStep,
    RunRecord,
    RunResult,
    RunStore,
    Scheduler,
    SchedulerConfig,
    StoredArtifact,
    TaskRecord,
    TaskState,
    TenantQuota,
)
from server.bootstrap import policy_service
from server.db.engine import bind, engine_for
from server.db.tables import Decision
from server.decisionlog import PiccoloDecisionLog
from server.dispatch.admission import ServerAdmission
from server.dispatch.events import DbEventSink
from server.dispatch.runtimes import RuntimeRegistry, RuntimeRouter, run_dir, tool_call_url
from server.dispatch.store import PiccoloRunStore
from server.gate import Gate
from server.settings import Settings
from server.state import Services
from server.tenants import TenantDirectory

log = logging.getLogger("aion.worker")


class WallClock:
    """Epoch seconds (``time.time``) and ``asyncio.sleep``: the clock of the database store."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(0.0, seconds))


def default_worker_id() -> str:
    """``hostname:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def tenant_quota(settings: Mapping[str, Any]) -> TenantQuota:
    """A tenant's quota from its settings (``weight``, ``max_concurrent_runs``,
    ``max_starts_per_minute``, ``start_burst``); unset or invalid values mean no limit."""
    weight = settings.get("weight", 1.0)
    concurrent = settings.get("max_concurrent_runs")
    per_minute = settings.get("max_starts_per_minute")
    burst = settings.get("start_burst", 1)
    return TenantQuota(
        weight=float(weight) if isinstance(weight, int | float) and weight > 0 else 1.0,
        max_concurrent=int(concurrent) if isinstance(concurrent, int) and concurrent > 0 else None,
        max_starts_per_minute=float(per_minute)
        if isinstance(per_minute, int | float) and per_minute > 0
        else None,
        burst=int(burst) if isinstance(burst, int) and burst >= 1 else 1,
    )


class QuotaLoadingStore:
    """A :class:`RunStore` that sets a tenant's quota on the fair share the first time one of
    its tasks is read (the scheduler reads a task before queueing it), and again after
    ``refresh_s``."""

    def __init__(
        self, store: RunStore, tenants: TenantDirectory, fair: FairShare, refresh_s: float = 60.0
    ) -> None:
        self.store = store
        self.tenants = tenants
        self.fair = fair
        self.refresh_s = refresh_s
        self._loaded: dict[str, float] = {}

    async def _ensure(self, tenant: str) -> None:
        now = time.monotonic()
        if now - self._loaded.get(tenant, -self.refresh_s) < self.refresh_s:
            return
        self._loaded[tenant] = now
        try:
            settings = await self.tenants.limits(tenant)
        except Exception as exc:  # an unknown tenant or a database hiccup: keep the defaults
            log.warning("quotas of tenant `%s` not loaded: %s", tenant, exc)
            return
        self.fair.set_tenant_quota(tenant, tenant_quota(settings))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        rec = await self.store.get_task(task_id)
        if rec is not None:
            await self._ensure(rec.spec.tenant)
        return rec

    async def pending(self, now: float, per_tenant: int | None = None) -> list[str]:
        return await self.store.pending(now, per_tenant)

    async def claim(self, task_id: str, worker_id: str, now: float, lease_s: float) -> Claim | None:
        return await self.store.claim(task_id, worker_id, now, lease_s)

    async def renew_lease(self, run_id: str, worker_id: str, now: float, lease_s: float) -> bool:
        return await self.store.renew_lease(run_id, worker_id, now, lease_s)

    async def finish(
        self, run_id: str, result: RunResult, now: float, then: NextStep
    ) -> Finished | None:
        return await self.store.finish(run_id, result, now, then)

    async def requeue_expired_leases(self, now: float) -> list[str]:
        return await self.store.requeue_expired_leases(now)

    async def cancel(self, task_id: str, now: float, cause: str = "") -> TaskState | None:
        return await self.store.cancel(task_id, now, cause)

    async def dead_letter(self, task_id: str, now: float, cause: str) -> bool:
        return await self.store.dead_letter(task_id, now, cause)

    async def refuse(self, task_id: str, now: float, cause: str) -> bool:
        return await self.store.refuse(task_id, now, cause)

    async def runs(self, task_id: str) -> list[RunRecord]:
        return await self.store.runs(task_id)

    async def artifacts(self, run_id: str) -> list[StoredArtifact]:
        return await self.store.artifacts(run_id)


def scheduler_config(
    settings: Settings, worker_id: str, concurrency: int | None = None
) -> SchedulerConfig:
    """The kernel settings of one scheduler.

    The store sweep (dead workers' runs, tasks a queue lost) runs every
    ``min(reconcile_s, lease_s)`` seconds; the ``queued`` event is written by
    the submit itself, so the scheduler does not emit it again.
    """
    return SchedulerConfig(
        worker_id=worker_id,
        concurrency=concurrency or settings.worker_concurrency,
        lease_s=settings.lease_s,
        sweep_s=min(settings.reconcile_s, settings.lease_s),
        tool_call_url=tool_call_url(settings),
        emit_queued=False,
    )


def compose_scheduler(
    settings: Settings,
    gate: Gate,
    tenants: TenantDirectory,
    *,
    worker_id: str | None = None,
    concurrency: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Scheduler:
    """A scheduler on the bound database (see the module docstring)."""
    fair = FairShare()
    registry = RuntimeRegistry.load(settings, os.environ if env is None else env)
    return Scheduler(
        store=QuotaLoadingStore(PiccoloRunStore(), tenants, fair),
        runtime=RuntimeRouter(registry, run_dir(settings)),
        clock=WallClock(),
        events=DbEventSink(),
        admission=ServerAdmission(gate),
        config=scheduler_config(settings, worker_id or default_worker_id(), concurrency),
        fairshare=fair,
    )


def build_scheduler(services: Services, **options: Any) -> Scheduler:
    """The scheduler of a server process (embedded dispatch), on its services."""
    return compose_scheduler(services.settings, services.gate, services.tenants, **options)


def worker_gate(settings: Settings, db: Engine[Any] | None = None) -> Gate:
    """A gate for re-decisions in a worker, on ``db`` (default: the bound database). It appends
    to the decision chain but never signs its head (the chain key stays with the servers;
    they sign the head as they go)."""
    db = Decision._meta.db if db is None else db
    # The server's own wiring: a tenant or bundle evaluated by an OPA sidecar is so here too.
    policies = policy_service(settings, TenantDirectory())
    log_ = PiccoloDecisionLog(db)
    return Gate(db, policies, log_, settings.decision_time_limit_ms, chain_key=None)


async def drain(scheduler: Scheduler, bound_s: float) -> bool:
    """Wait up to ``bound_s`` for the running runs to finish; True when none is left."""
    deadline = time.monotonic() + bound_s
    while scheduler.running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return not scheduler.running


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    concurrency: int | None = None,
    drain_s: float = 30.0,
    worker_id: str | None = None,
) -> None:
    """Serve jobs from Redis until ``stop`` is set, then stop gracefully (module docstring)."""
    from server.dispatch.arqqueue import ArqJobQueue  # noqa: PLC0415  (arq only here)

    db = engine_for(settings.database_url, settings.data_dir)
    bind(db)
    pg = db if isinstance(db, PostgresEngine) else None
    if pg is not None:
        await pg.start_connection_pool(min_size=1, max_size=settings.db_pool_size)
    wid = worker_id or default_worker_id()
    size = concurrency or settings.worker_concurrency
    queue = ArqJobQueue(
        settings.redis_url, poll_delay_s=settings.worker_poll_delay_s, max_jobs=max(4 * size, 16)
    )
    gate = worker_gate(settings, db)
    scheduler = compose_scheduler(
        settings, gate, TenantDirectory(), worker_id=wid, concurrency=size
    )
    serving = asyncio.Event()
    serve = asyncio.create_task(scheduler.serve(queue, serving))
    log.info("worker %s serving (concurrency %d)", wid, size)
    try:
        await _first_done(serve, stop)
        queue.stop_receiving()
        serving.set()
        await serve
        if not await drain(scheduler, drain_s):
            log.warning(
                "%d run(s) still running after %gs; abandoned to their leases",
                len(scheduler.running),
                drain_s,
            )
        await scheduler.shutdown()
    finally:
        serving.set()
        serve.cancel()
        await asyncio.gather(serve, return_exceptions=True)
        await queue.close()
        if gate.policies.opa.querier is not None:
            await gate.policies.opa.querier.aclose()
        if pg is not None:
            await pg.close_connection_pool()
        close = getattr(db, "close", None)
        if close is not None and pg is None:
            await close()
    log.info("worker %s stopped", wid)


async def _first_done(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()  # a crashed serve loop is the worker's error


__all__ = [
    "QuotaLoadingStore",
    "WallClock",
    "build_scheduler",
    "compose_scheduler",
    "default_worker_id",
    "drain",
    "run_worker",
    "scheduler_config",
    "tenant_quota",
    "worker_gate",
]
