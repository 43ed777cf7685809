"""The services one server process shares, wired once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from piccolo.engine.base import Engine

from server.agents import AgentService
from server.auth import TokenService
from server.catalog import Catalog
from server.decisionlog import DecisionLog
from server.dispatch.port import DispatchPort, NoDispatch
from server.gate import Gate
from server.policies import PolicyService
from server.ratelimit import RateLimiter
from server.settings import Settings
from server.tenants import TenantDirectory


@dataclass
class Services:
    """Everything a request handler may need; built by :func:`server.bootstrap.services`."""

    settings: Settings
    db: Engine[Any]
    tokens: TokenService
    catalog: Catalog
    policies: PolicyService
    log: DecisionLog
    gate: Gate
    limiter: RateLimiter
    tenants: TenantDirectory
    data_dir: Path
    dispatch: DispatchPort = field(default_factory=NoDispatch)
    """Wakes the outbox relay after a submit; cancels running work (set by the composition root)."""

    @cached_property
    def agents(self) -> AgentService:
        """The agent service every agent-scoped handler shares (stateless; built once)."""
        return AgentService(self.gate, self.catalog)
