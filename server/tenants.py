"""Tenant settings as request handling needs them: read at most every few seconds per process."""

from __future__ import annotations

import time
from typing import Any

from engine.opa_remote import EVALUATORS
from server.db.tables import Tenant
from server.errors import InvalidInputError, NotFoundError, UnauthorizedError

#: Tenant settings written through :func:`update_settings`, each with its allowed values.
SETTABLE: dict[str, tuple[str, ...]] = {"rego_evaluator": EVALUATORS}


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

    async def rego_evaluator(self, tenant: str, default: str) -> str:
        """Where the tenant's Rego is evaluated (its ``rego_evaluator`` setting, else
        ``default``); a tenant that does not exist gets ``default``."""
        try:
            settings = await self.limits(tenant)
        except UnauthorizedError:
            return default
        return str(settings.get("rego_evaluator", default))

    def forget(self, tenant: str) -> None:
        """Drop this process's cached settings of ``tenant`` (after a change)."""
        self._cache.pop(tenant, None)


async def update_settings(tenant: str, changes: dict[str, str | None]) -> dict[str, Any]:
    """Set (or, with None, remove) settings of ``tenant``; the settings as stored afterwards.

    Only the keys of :data:`SETTABLE` are written here, each checked against its
    allowed values. Other processes see the change within their cache's TTL.
    """
    for key, value in changes.items():
        allowed = SETTABLE.get(key)
        if allowed is None:
            raise InvalidInputError(
                f"tenant setting `{key}` cannot be set here; settable: {', '.join(SETTABLE)}"
            )
        if value is not None and value not in allowed:
            raise InvalidInputError(f"`{key}` is one of {', '.join(allowed)}, not `{value}`")
    row = (
        await Tenant.select(Tenant.settings)
        .where(Tenant.id == tenant)
        .output(load_json=True)
        .first()
    )
    if row is None:
        raise NotFoundError(f"tenant `{tenant}` does not exist")
    settings: dict[str, Any] = dict(row["settings"] or {})
    for key, value in changes.items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    await Tenant.update({Tenant.settings: settings}).where(Tenant.id == tenant)
    return settings
