"""Tenant settings as request handling needs them: read at most every few seconds per process."""

from __future__ import annotations

import time
from typing import Any

from server.db.tables import Tenant
from server.errors import UnauthorizedError


class TenantDirectory:
    """Per-process cache of tenant settings (rate limits and the like)."""

    def __init__(self, ttl_seconds: float = 5.0) -> None:
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def limits(self, tenant: str) -> dict[str, Any]:
        """The tenant's settings; 401 when the tenant does not exist."""
        now = time.monotonic()
        cached = self._cache.get(tenant)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        row = (
            await Tenant.select(Tenant.settings)
            .where(Tenant.id == tenant)
            .output(load_json=True)
            .first()
        )
        if row is None:
            raise UnauthorizedError(f"tenant `{tenant}` does not exist")
        settings: dict[str, Any] = row["settings"] or {}
        self._cache[tenant] = (now, settings)
        return settings
