"""The active policy set of a tenant: its active bundles plus the global ones, compiled once.

A tenant's active bundle takes the place of a global bundle of the same name.
Bundles are stored as signed archives (verified when uploaded or built); the
compiled set is cached by the digests of the active revisions, so a tenant's
set compiles once per activation, in every worker. A ``shadow`` revision is
evaluated beside the active set, recorded, and has no effect.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from engine import PolicySet, PolicySetCache
from engine.bundle import Bundle, bundle_from_files, read_tarball
from server.db.tables import Bundle as BundleRow

GLOBAL_TENANT = "*"


def bundle_from_row(name: str, archive_b64: str) -> Bundle:
    """A stored archive as a loaded bundle."""
    return bundle_from_files(read_tarball(base64.b64decode(archive_b64), name), name)


class PolicyService:
    """Loads and compiles active (and shadow) bundles per tenant."""

    def __init__(self, cache: PolicySetCache | None = None, ttl_seconds: float = 1.0) -> None:
        self._cache = cache or PolicySetCache()
        self._bundles: dict[str, Bundle] = {}
        self._ttl = ttl_seconds
        self._rows_cache: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}

    def invalidate(self, tenant: str) -> None:
        """Forget what this process knows of a tenant's bundle rows (after an activation)."""
        for status in ("active", "shadow"):
            self._rows_cache.pop((tenant, status), None)
        if tenant == GLOBAL_TENANT:
            self._rows_cache.clear()

    async def _rows(self, tenant: str, status: str) -> list[dict[str, Any]]:
        """Bundle rows by status, read at most once per ``ttl_seconds`` per process.

        Another worker's activation is seen within ``ttl_seconds``; this
        process's own activations are seen at once (:meth:`invalidate`).
        """
        cached = self._rows_cache.get((tenant, status))
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        rows = await self._load_rows(tenant, status)
        self._rows_cache[(tenant, status)] = (now, rows)
        return rows

    async def _load_rows(self, tenant: str, status: str) -> list[dict[str, Any]]:
        rows = await (
            BundleRow.select(BundleRow.id, BundleRow.name, BundleRow.revision, BundleRow.tenant)
            .where((BundleRow.status == status) & BundleRow.tenant.is_in([tenant, GLOBAL_TENANT]))
            .order_by(BundleRow.name)
        )
        chosen: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["name"] not in chosen or row["tenant"] != GLOBAL_TENANT:
                chosen[row["name"]] = dict(row)
        return [chosen[name] for name in sorted(chosen)]

    async def active_rows(self, tenant: str) -> list[dict[str, Any]]:
        """(id, name, revision, tenant) of the bundles a tenant's decisions use."""
        return await self._rows(tenant, "active")

    async def bundle(self, row_id: str, name: str) -> Bundle:
        """A stored revision, loaded once per process."""
        found = self._bundles.get(row_id)
        if found is None:
            row = await BundleRow.select(BundleRow.archive).where(BundleRow.id == row_id).first()
            if row is None:
                raise LookupError(f"bundle row {row_id} vanished")
            found = bundle_from_row(name, row["archive"])
            self._bundles[row_id] = found
        return found

    async def active(self, tenant: str) -> PolicySet:
        """The compiled active set (one cheap query when nothing changed)."""
        rows = await self.active_rows(tenant)
        return self._cache.get([await self.bundle(r["id"], r["name"]) for r in rows])

    async def shadow(self, tenant: str) -> PolicySet | None:
        """The active set with each shadow revision in place of its active one; None without shadows."""
        shadows = {
            r["name"]: r for r in await self._rows(tenant, "shadow") if r["tenant"] == tenant
        }
        if not shadows:
            return None
        rows = [r for r in await self.active_rows(tenant) if r["name"] not in shadows] + list(
            shadows.values()
        )
        return self._cache.get([await self.bundle(r["id"], r["name"]) for r in rows])
