"""The native scheduler: tenant-aware queues, quotas, runs and runtimes (no server imports).

Ports (Protocols, each with an in-memory twin in this package): ``Clock``,
``RunStore``, ``AdmissionCheck``, ``JobQueue``, ``EventSink``, ``Runtime``.
The HTTP runtime lives in ``kernel.runtimes.http`` and is not imported here,
so importing ``kernel`` never loads ``httpx``.
"""

from kernel.clock import Clock, ManualClock, SystemClock
from kernel.events import Event, EventKind, EventSink, MemoryEventSink
from kernel.fairshare import FairShare, TenantCounts
from kernel.model import (
    AgentQuota,
    Artifact,
    Priority,
    RetryPolicy,
    RunOutcome,
    RunResult,
    TaskSpec,
    TaskState,
    TenantQuota,
)
from kernel.queue import Job, JobQueue, MemoryJobQueue
from kernel.runtime import RunContext, Runtime, plan_next
from kernel.scheduler import Scheduler, SchedulerConfig
from kernel.store import (
    Admission,
    AdmissionCheck,
    Claim,
    Finished,
    MemoryRunStore,
    NextStep,
    RunRecord,
    RunStore,
    StoredArtifact,
    TaskRecord,
)

__all__ = [
    "Admission",
    "AdmissionCheck",
    "AgentQuota",
    "Artifact",
    "Claim",
    "Clock",
    "Event",
    "EventKind",
    "EventSink",
    "FairShare",
    "Finished",
    "Job",
    "JobQueue",
    "ManualClock",
    "MemoryEventSink",
    "MemoryJobQueue",
    "MemoryRunStore",
    "NextStep",
    "Priority",
    "RetryPolicy",
    "RunContext",
    "RunOutcome",
    "RunRecord",
    "RunResult",
    "RunStore",
    "Runtime",
    "Scheduler",
    "SchedulerConfig",
    "StoredArtifact",
    "SystemClock",
    "TaskRecord",
    "TaskSpec",
    "TaskState",
    "TenantCounts",
    "TenantQuota",
    "plan_next",
]
