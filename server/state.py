"""The services one server process shares, wired once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piccolo.engine.base import Engine

from server.auth import TokenService
from server.catalog import Catalog
from server.decisionlog import DecisionLog
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
