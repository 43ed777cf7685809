"""The ready queue: weighted fair share across tenants, strict priority inside one.

Pure and synchronous; time comes in as an argument.

Across tenants: **start-time fair queuing** (SFQ) on a virtual time line. Every
tenant carries a start tag; the eligible tenant with the lowest tag starts next,
and each start moves that tenant's tag forward by ``1 / weight``. The virtual
time is the tag of the most recent start. A tenant that was idle, or blocked by
its own quota, is lifted to the current virtual time before it competes, so it
banks no credit: it cannot run a burst to "catch up" on time it did not use.

Why SFQ rather than deficit round robin: every task costs one start slot (run
length is unknown at start), so the quantum bookkeeping of DRR buys nothing,
while SFQ gives the bound we test directly: a tenant that becomes backlogged
starts within one start per other backlogged tenant (scaled by weights), however
deep the other queues are. Ties go to the tenant served least recently.

Inside a tenant: strict priority (critical > high > standard > bulk), FIFO
within a priority. A task whose agent is at its quota is skipped in favour of
the next eligible task (work conserving) and keeps its place.

Quotas: per tenant and per agent, a concurrency limit and a start-rate token
bucket (``max_starts_per_minute`` refill, ``burst`` capacity).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kernel.model import AgentQuota, Priority, TaskSpec, TenantQuota


class TokenBucket:
    """Start-rate limiter: ``per_minute`` tokens a minute, at most ``burst`` saved."""

    def __init__(self, per_minute: float, burst: int) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate quota needs per_minute > 0 and burst >= 1")
        self._rate = per_minute / 60.0
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
        elif now > self._last:
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now

    def ready(self, now: float) -> bool:
        """True when a start is allowed at ``now``."""
        self._refill(now)
        return self._tokens >= 1.0

    def take(self, now: float) -> None:
        """Spend one token (call only after :meth:`ready`)."""
        self._refill(now)
        self._tokens -= 1.0

    def refund(self) -> None:
        """Give back a token spent on a start that did not happen."""
        self._tokens = min(self._capacity, self._tokens + 1.0)

    def ready_at(self, now: float) -> float:
        """The earliest time a token is available."""
        self._refill(now)
        missing = max(0.0, 1.0 - self._tokens)
        return now + missing / self._rate


@dataclass
class _Limiter:
    """Concurrency and start rate of one tenant or one agent."""

    max_concurrent: int | None
    bucket: TokenBucket | None
    running: int = 0

    def allows(self, now: float) -> bool:
        if self.max_concurrent is not None and self.running >= self.max_concurrent:
            return False
        return self.bucket is None or self.bucket.ready(now)

    def rate_blocked_until(self, now: float) -> float | None:
        """When only the rate blocks a start: the time it lifts."""
        if self.max_concurrent is not None and self.running >= self.max_concurrent:
            return None
        if self.bucket is None or self.bucket.ready(now):
            return None
        return self.bucket.ready_at(now)


def _limiter(quota: TenantQuota | AgentQuota, running: int = 0) -> _Limiter:
    per_minute = quota.max_starts_per_minute
    bucket = None if per_minute is None else TokenBucket(per_minute, quota.burst)
    return _Limiter(max_concurrent=quota.max_concurrent, bucket=bucket, running=running)


@dataclass
class _Tenant:
    start_tag: float = 0.0
    served: int = -1
    size: int = 0
    # priority -> agent id -> FIFO of (arrival sequence, task)
    lanes: list[dict[str, deque[tuple[int, TaskSpec]]]] = field(
        default_factory=lambda: [{} for _ in Priority]
    )


@dataclass(frozen=True)
class TenantCounts:
    """Queued and running tasks of one tenant, as seen by this structure."""

    queued: int
    running: int


CanStart = Callable[[TaskSpec], bool]


class FairShare:
    """Per-tenant ready queues with weighted fair share and quotas."""

    def __init__(
        self,
        *,
        tenant_quotas: Mapping[str, TenantQuota] | None = None,
        agent_quotas: Mapping[str, AgentQuota] | None = None,
        default_tenant: TenantQuota | None = None,
        default_agent: AgentQuota | None = None,
    ) -> None:
        self._tenant_quotas = dict(tenant_quotas or {})
        self._agent_quotas = dict(agent_quotas or {})
        self._default_tenant = default_tenant or TenantQuota()
        self._default_agent = default_agent or AgentQuota()
        self._tenants: dict[str, _Tenant] = {}
        self._where: dict[str, TaskSpec] = {}
        self._tenant_limits: dict[str, _Limiter] = {}
        self._agent_limits: dict[str, _Limiter] = {}
        self._seq = itertools.count()
        self._starts = itertools.count()
        self._vtime = 0.0

    # -- quotas ------------------------------------------------------------------

    def tenant_quota(self, tenant: str) -> TenantQuota:
        """The quota in force for ``tenant``."""
        return self._tenant_quotas.get(tenant, self._default_tenant)

    def agent_quota(self, agent_id: str) -> AgentQuota:
        """The quota in force for ``agent_id``."""
        return self._agent_quotas.get(agent_id, self._default_agent)

    def set_tenant_quota(self, tenant: str, quota: TenantQuota) -> None:
        """Replace a tenant's quota; its running count is kept, its rate bucket is fresh."""
        self._tenant_quotas[tenant] = quota
        old = self._tenant_limits.get(tenant)
        self._tenant_limits[tenant] = _limiter(quota, old.running if old else 0)

    def set_agent_quota(self, agent_id: str, quota: AgentQuota) -> None:
        """Replace an agent's quota; its running count is kept, its rate bucket is fresh."""
        self._agent_quotas[agent_id] = quota
        old = self._agent_limits.get(agent_id)
        self._agent_limits[agent_id] = _limiter(quota, old.running if old else 0)

    def _tenant_limit(self, tenant: str) -> _Limiter:
        found = self._tenant_limits.get(tenant)
        if found is None:
            found = self._tenant_limits[tenant] = _limiter(self.tenant_quota(tenant))
        return found

    def _agent_limit(self, agent_id: str) -> _Limiter:
        found = self._agent_limits.get(agent_id)
        if found is None:
            found = self._agent_limits[agent_id] = _limiter(self.agent_quota(agent_id))
        return found

    # -- queue operations --------------------------------------------------------

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._where

    def push(self, task: TaskSpec) -> bool:
        """Queue ``task``; False (and no change) when a task with its id is already queued."""
        if task.task_id in self._where:
            return False
        tenant = self._tenants.setdefault(task.tenant, _Tenant())
        if tenant.size == 0:
            tenant.start_tag = max(tenant.start_tag, self._vtime)
        lane = tenant.lanes[task.priority].setdefault(task.agent_id, deque())
        lane.append((next(self._seq), task))
        tenant.size += 1
        self._where[task.task_id] = task
        return True

    def remove(self, task_id: str) -> TaskSpec | None:
        """Take a queued task out (cancellation); None when it is not queued here."""
        task = self._where.pop(task_id, None)
        if task is None:
            return None
        tenant = self._tenants[task.tenant]
        lane = tenant.lanes[task.priority][task.agent_id]
        for entry in lane:
            if entry[1].task_id == task_id:
                lane.remove(entry)
                break
        if not lane:
            del tenant.lanes[task.priority][task.agent_id]
        tenant.size -= 1
        return task

    def _candidate(
        self, tenant: _Tenant, now: float, can_start: CanStart | None
    ) -> tuple[int, TaskSpec] | None:
        """The first eligible task of a tenant: highest priority, then oldest."""
        for lanes in tenant.lanes:
            best: tuple[int, TaskSpec] | None = None
            for agent_id, lane in lanes.items():
                head = lane[0]
                if best is not None and head[0] > best[0]:
                    continue
                if not self._agent_limit(agent_id).allows(now):
                    continue
                if can_start is not None and not can_start(head[1]):
                    continue
                best = head
            if best is not None:
                return best
        return None

    def pop_next(self, now: float, can_start: CanStart | None = None) -> TaskSpec | None:
        """Take the next task to start at ``now`` and count it as running.

        ``can_start`` is an extra gate applied to the head of each agent's lane
        (for example a paused agent). None when nothing may start now.
        """
        chosen: tuple[tuple[float, int], str, TaskSpec] | None = None
        for name, tenant in self._tenants.items():
            if tenant.size == 0 or not self._tenant_limit(name).allows(now):
                continue
            candidate = self._candidate(tenant, now, can_start)
            if candidate is None:
                continue
            # No credit below the virtual time, even after being blocked by a quota.
            tenant.start_tag = max(tenant.start_tag, self._vtime)
            key = (tenant.start_tag, tenant.served)
            if chosen is None or key < chosen[0]:
                chosen = (key, name, candidate[1])
        if chosen is None:
            return None
        _, name, task = chosen
        tenant = self._tenants[name]
        self._vtime = tenant.start_tag
        tenant.start_tag += 1.0 / self.tenant_quota(name).weight
        tenant.served = next(self._starts)
        self.remove(task.task_id)
        for limit in (self._tenant_limit(name), self._agent_limit(task.agent_id)):
            limit.running += 1
            if limit.bucket is not None:
                limit.bucket.take(now)
        return task

    def release(self, task: TaskSpec, *, refund: bool = False) -> None:
        """A task popped by :meth:`pop_next` stopped running.

        ``refund`` gives the start-rate token back, for a start that never
        happened (expired, refused, or claimed elsewhere).
        """
        for limit in (
            self._tenant_limits.get(task.tenant),
            self._agent_limits.get(task.agent_id),
        ):
            if limit is None:
                continue
            limit.running = max(0, limit.running - 1)
            if refund and limit.bucket is not None:
                limit.bucket.refund()

    def counts(self, tenant: str) -> TenantCounts:
        """Queued and running counts of ``tenant``."""
        queued = self._tenants[tenant].size if tenant in self._tenants else 0
        limit = self._tenant_limits.get(tenant)
        return TenantCounts(queued=queued, running=limit.running if limit else 0)

    def next_ready_at(self, now: float) -> float | None:
        """When a start-rate quota that blocks a queued task lifts (a wake-up hint)."""
        times: list[float] = []
        for name, tenant in self._tenants.items():
            if tenant.size == 0:
                continue
            blocked = self._tenant_limit(name).rate_blocked_until(now)
            if blocked is not None:
                times.append(blocked)
            for lanes in tenant.lanes:
                for agent_id in lanes:
                    blocked = self._agent_limit(agent_id).rate_blocked_until(now)
                    if blocked is not None:
                        times.append(blocked)
        return min(times) if times else None
