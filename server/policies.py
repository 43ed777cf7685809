"""The active policy set of a tenant: its active bundles plus the global ones, compiled once.

A tenant's active bundle takes the place of a global bundle of the same name.
Bundles are stored as signed archives (verified when uploaded or built); the
compiled set is cached by the digests of the active revisions, so a tenant's
set compiles once per activation, in every worker. A ``shadow`` revision is
evaluated beside the active set, recorded, and has no effect.

Where Rego is evaluated (in process, or by an OPA sidecar: docs/opa-remote.md)
is part of the compiled set: the server default, a tenant's
``rego_evaluator`` setting, or a bundle's manifest metadata.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from engine import OpaQuerier, PolicySet, PolicySetCache, RemoteRego
from engine.bundle import Bundle, bundle_from_files, read_tarball
from engine.errors import BundleError
from engine.opa_remote import EVALUATORS
from server.db.tables import Bundle as BundleRow
from server.tenants import TenantDirectory

GLOBAL_TENANT = "*"


def bundle_from_row(name: str, archive_b64: str) -> Bundle:
    """A stored archive as a loaded bundle."""
    return bundle_from_files(read_tarball(base64.b64decode(archive_b64), name), name)


@dataclass(frozen=True)
class OpaSetup:
    """The OPA sidecar of this process, and where Rego is evaluated by default."""

    querier: OpaQuerier | None = None
    """None when no ``opa_url`` is configured: remote evaluation then denies, named."""
    default_evaluator: str = "embedded"
    """``embedded`` or ``opa``, for tenants whose settings name none."""
    timeout_s: float = 0.1
    """Hard bound on one query to the sidecar."""
    tenant: str = ""
    """The tenant whose bundles the sidecar pulls (its sidecar token's tenant). Revision
    labels are each tenant's own, so only this tenant's decisions may go there."""


class PolicyService:
    """Loads and compiles active (and shadow) bundles per tenant."""

    def __init__(
        self,
        cache: PolicySetCache | None = None,
        ttl_seconds: float = 1.0,
        *,
        opa: OpaSetup | None = None,
        tenants: TenantDirectory | None = None,
    ) -> None:
        self._cache = cache or PolicySetCache()
        self.opa = opa or OpaSetup()
        self._tenants = tenants
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

    async def remote(self, tenant: str) -> RemoteRego:
        """Where the tenant's Rego is evaluated: the tenant's ``rego_evaluator`` setting, else
        the server's; bundles whose manifest asks for OPA go there in any case."""
        evaluator = self.opa.default_evaluator
        if self._tenants is not None:
            evaluator = await self._tenants.rego_evaluator(tenant, evaluator)
        if evaluator not in EVALUATORS:
            raise BundleError(
                f"tenant `{tenant}`: `rego_evaluator` is `{evaluator}`; "
                f"expected one of {', '.join(EVALUATORS)}"
            )
        refusal = ""
        if self.opa.querier is not None and not self.opa.tenant:
            refusal = (
                "AION_OPA_TENANT is not set: whose bundles the OPA sidecar serves is unknown, "
                "so it decides for no tenant"
            )
        elif self.opa.querier is not None and tenant != self.opa.tenant:
            refusal = (
                f"the OPA sidecar serves tenant `{self.opa.tenant}`'s bundles "
                f"(AION_OPA_TENANT), not tenant `{tenant}`'s"
            )
        return RemoteRego(self.opa.querier, evaluator == "opa", self.opa.timeout_s, refusal)

    async def active(self, tenant: str) -> PolicySet:
        """The compiled active set (one cheap query when nothing changed)."""
        rows = await self.active_rows(tenant)
        bundles = [await self.bundle(r["id"], r["name"]) for r in rows]
        return self._cache.get(bundles, await self.remote(tenant))

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
        bundles = [await self.bundle(r["id"], r["name"]) for r in rows]
        return self._cache.get(bundles, await self.remote(tenant))
