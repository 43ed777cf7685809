"""Sidecar registrations: a named OPA deployment of a tenant, its bearer token, the bundles it
may fetch, and the OPA instances seen behind it.

The token is shown once, at registration; only its sha256 is stored (as API keys are).
Revoking a registration refuses its token at once. Every read is tenant-scoped: another
tenant's sidecar answers like a missing one.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from server.auth import Caller, hash_api_key, utcnow
from server.db.tables import Sidecar, SidecarInstance
from server.errors import ConflictError, InvalidInputError, NotFoundError, UnauthorizedError
from server.policies import PolicyService

TOKEN_PREFIX = "aion_sc_"
MAX_NAME = 200
MAX_BUNDLES = 64
#: Instances remembered per registration; a new one past this replaces the longest silent.
MAX_INSTANCES = 64


@dataclass(frozen=True, slots=True)
class SidecarAuth:
    """The registration a request's bearer token belongs to."""

    id: str
    tenant: str
    name: str
    bundles: tuple[str, ...]

    def may_fetch(self, bundle: str) -> bool:
        """Whether the allowlist (empty: everything) lets this sidecar download ``bundle``."""
        return not self.bundles or bundle in self.bundles


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _clean_bundles(names: list[str]) -> list[str]:
    if len(names) > MAX_BUNDLES:
        raise InvalidInputError(f"a sidecar names at most {MAX_BUNDLES} bundles")
    for name in names:
        if not 1 <= len(name) <= MAX_NAME:
            raise InvalidInputError(f"bundle names are 1 to {MAX_NAME} characters")
    return sorted(set(names))


@contextlib.asynccontextmanager
async def _name_lock(tenant: str, name: str) -> AsyncIterator[None]:
    """A write transaction that holds the lock on (tenant, sidecar name) until it ends."""
    engine = Sidecar._meta.db
    if isinstance(engine, SQLiteEngine):
        async with engine.transaction(TransactionType.immediate):
            yield
        return
    async with engine.transaction():
        key = hashlib.sha256(f"sidecar\x00{tenant}\x00{name}".encode()).digest()
        lock_id = int.from_bytes(key[:8], "big", signed=True)
        await Sidecar.raw("SELECT pg_advisory_xact_lock({})", lock_id)
        yield


async def is_live(sidecar: SidecarAuth) -> bool:
    """Whether ``sidecar`` is still registered (not revoked)."""
    live = (Sidecar.id == sidecar.id) & Sidecar.revoked.eq(False)
    return bool(await Sidecar.exists().where(live))


def instance_row_id(sidecar_id: str, instance_id: str) -> str:
    """The row of one OPA instance of a registration (bounded length, whatever OPA sends)."""
    digest = hashlib.sha256(instance_id.encode()).hexdigest()[:40]
    return f"{sidecar_id}:{digest}"


class SidecarService:
    """Registrations of one server; every method is tenant-scoped by its caller."""

    def __init__(self, policies: PolicyService) -> None:
        self._policies = policies

    async def register(self, caller: Caller, name: str, bundles: list[str]) -> dict[str, Any]:
        """A new registration and its token (shown only here); 409 when a live one of the
        tenant has the same (stripped) name.

        The check and the insert run in one transaction holding a lock on the name (an
        IMMEDIATE transaction on SQLite, a transaction-scoped advisory lock on PostgreSQL),
        so concurrent registrations of one name cannot both succeed.
        """
        name = name.strip()
        if not 1 <= len(name) <= MAX_NAME:
            raise InvalidInputError(f"`name` is 1 to {MAX_NAME} characters")
        allowed = _clean_bundles(bundles)
        async with _name_lock(caller.tenant, name):
            return await self._insert(caller, name, allowed)

    async def _insert(self, caller: Caller, name: str, allowed: list[str]) -> dict[str, Any]:
        live = (
            (Sidecar.tenant == caller.tenant) & (Sidecar.name == name) & Sidecar.revoked.eq(False)
        )
        if await Sidecar.exists().where(live):
            raise ConflictError(f"a sidecar named `{name}` is already registered")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = Sidecar(
            id=f"sdc_{secrets.token_hex(10)}",
            tenant=caller.tenant,
            name=name,
            bundles=allowed,
            token_hash=hash_api_key(token),
            created_by=caller.subject,
            created_at=utcnow(),
        )
        await Sidecar.insert(row)
        return {**self._view(row.to_dict(), []), "token": token}

    async def authenticate(self, authorization: str) -> SidecarAuth:
        """The live registration of an ``Authorization: Bearer`` header, or 401."""
        if not authorization.lower().startswith("bearer "):
            raise UnauthorizedError("missing credential: send `Authorization: Bearer <token>`")
        token = authorization[7:].strip()
        live = (Sidecar.token_hash == hash_api_key(token)) & Sidecar.revoked.eq(False)
        row = await Sidecar.select().where(live).output(load_json=True).first()
        if row is None:
            raise UnauthorizedError("unknown or revoked sidecar token")
        return SidecarAuth(row["id"], row["tenant"], row["name"], tuple(row["bundles"] or ()))

    async def _row(self, caller: Caller, sidecar_id: str) -> dict[str, Any]:
        mine = (Sidecar.id == sidecar_id) & (Sidecar.tenant == caller.tenant)
        row = (
            await Sidecar.select()
            .where(mine & Sidecar.revoked.eq(False))
            .output(load_json=True)
            .first()
        )
        if row is None:
            raise NotFoundError(f"no sidecar `{sidecar_id}`")
        return dict(row)

    async def _instances(self, tenant: str, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids:
            return found
        rows = (
            await SidecarInstance.select()
            .where((SidecarInstance.tenant == tenant) & SidecarInstance.sidecar_id.is_in(ids))
            .order_by(SidecarInstance.instance_id)
            .output(load_json=True)
        )
        for row in rows:
            found[row["sidecar_id"]].append(row)
        return found

    async def _served(self, tenant: str) -> dict[str, str]:
        """bundle name → the revision this server serves the tenant's sidecars now."""
        return {r["name"]: r["revision"] for r in await self._policies.active_rows(tenant)}

    def _view(
        self,
        row: dict[str, Any],
        instances: list[dict[str, Any]],
        served: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        served = served or {}
        return {
            "id": row["id"],
            "name": row["name"],
            "bundles": list(row["bundles"] or []),
            "created_by": row["created_by"],
            "created_at": _iso(row["created_at"]),
            "instances": [_instance_view(i, served) for i in instances],
        }

    async def list(self, caller: Caller) -> dict[str, Any]:
        """The tenant's live registrations, each with the instances seen behind it."""
        rows = (
            await Sidecar.select()
            .where((Sidecar.tenant == caller.tenant) & Sidecar.revoked.eq(False))
            .order_by(Sidecar.name)
            .output(load_json=True)
        )
        instances = await self._instances(caller.tenant, [r["id"] for r in rows])
        served = await self._served(caller.tenant)
        return {"items": [self._view(r, instances[r["id"]], served) for r in rows]}

    async def get(self, caller: Caller, sidecar_id: str) -> dict[str, Any]:
        """One registration of the tenant (404 for another tenant's)."""
        row = await self._row(caller, sidecar_id)
        instances = await self._instances(caller.tenant, [sidecar_id])
        return self._view(row, instances[sidecar_id], await self._served(caller.tenant))

    async def revoke(self, caller: Caller, sidecar_id: str) -> None:
        """Revoke a registration: its token is refused from now on."""
        await self._row(caller, sidecar_id)
        await Sidecar.update({Sidecar.revoked: True, Sidecar.revoked_at: utcnow()}).where(
            (Sidecar.id == sidecar_id) & (Sidecar.tenant == caller.tenant)
        )

    async def record_status(
        self, sidecar: SidecarAuth, instance_id: str, version: str, status: dict[str, Any]
    ) -> None:
        """Remember what one OPA instance of ``sidecar`` last reported."""
        row_id = instance_row_id(sidecar.id, instance_id)
        now = utcnow()
        updated = (
            await SidecarInstance.update(
                {
                    SidecarInstance.status: status,
                    SidecarInstance.version: version,
                    SidecarInstance.reported_at: now,
                }
            )
            .where(SidecarInstance.id == row_id)
            .returning(SidecarInstance.id)
        )
        if updated:
            return
        await self._make_room(sidecar)
        insert = SidecarInstance.insert(
            SidecarInstance(
                id=row_id,
                tenant=sidecar.tenant,
                sidecar_id=sidecar.id,
                instance_id=instance_id,
                version=version,
                status=status,
                reported_at=now,
            )
        )
        # Two first reports of one instance at once: the later one wins the next time.
        await insert.on_conflict(action="DO NOTHING")

    async def _make_room(self, sidecar: SidecarAuth) -> None:
        mine = SidecarInstance.sidecar_id == sidecar.id
        if await SidecarInstance.count().where(mine) < MAX_INSTANCES:
            return
        oldest = (
            await SidecarInstance.select(SidecarInstance.id)
            .where(mine)
            .order_by(SidecarInstance.reported_at)
            .first()
        )
        if oldest is not None:
            await SidecarInstance.delete().where(SidecarInstance.id == oldest["id"])


def _instance_view(row: dict[str, Any], served: dict[str, str]) -> dict[str, Any]:
    status: dict[str, Any] = row["status"] or {}
    bundles = {
        name: {**state, "served_revision": served.get(name)}
        for name, state in (status.get("bundles") or {}).items()
    }
    return {
        "id": row["instance_id"],
        "version": row["version"],
        "reported_at": _iso(row["reported_at"]),
        "labels": status.get("labels", {}),
        "bundles": bundles,
        "plugins": status.get("plugins", {}),
        "errors": status.get("errors", []),
    }


__all__ = ["SidecarAuth", "SidecarService", "instance_row_id", "is_live"]
