"""The tenant's trust roots: the ``trust_roots`` table as a :class:`registry.TrustStore`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registry import (
    InMemoryTrustStore,
    Purpose,
    TrustRoot,
)
from server.auth import utcnow
from server.db.tables import RegistryTrustRoot
from server.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
)


def root_of(row: Mapping[str, Any]) -> TrustRoot:
    return TrustRoot(
        key_id=row["key_id"],
        key=row["key"],
        purpose=Purpose(row["purpose"]),
        expires=row["expires_at"],
        revoked=bool(row["revoked"]),
    )


def root_view(row: Mapping[str, Any]) -> dict[str, Any]:
    key = row["key"]
    public = key.get("keyval", {}).get("public", "")

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "key_id": row["key_id"],
        "purpose": row["purpose"],
        "keytype": key.get("keytype"),
        "scheme": key.get("scheme"),
        "public_key": public,
        "expires_at": iso(row["expires_at"]),
        "revoked": bool(row["revoked"]),
        "revoked_at": iso(row["revoked_at"]),
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
    }


class TableTrustStore:
    """A tenant's trust roots in the ``trust_roots`` table.

    :class:`registry.TrustStore` is synchronous (verifiers run without I/O) and
    the database is asynchronous, so verification runs against
    :meth:`snapshot`, an :class:`~registry.InMemoryTrustStore` of the tenant's
    rows read for that one request: a key added or revoked is effective for
    every registration that starts after the change committed.
    """

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    async def rows(self) -> list[dict[str, Any]]:
        """Every root of the tenant, revoked ones included (by key id)."""
        rows = (
            await RegistryTrustRoot.select()
            .where(RegistryTrustRoot.tenant == self.tenant)
            .order_by(RegistryTrustRoot.key_id)
            .output(load_json=True)
        )
        return [dict(r) for r in rows]

    async def snapshot(self) -> InMemoryTrustStore:
        """The tenant's roots as a :class:`registry.TrustStore` for one verification."""
        return InMemoryTrustStore(root_of(r) for r in await self.rows())

    async def add(self, root: TrustRoot, created_by: str) -> dict[str, Any]:
        """Store a new root; a key id the tenant already has (revoked or not) is a conflict."""
        row_id = f"{self.tenant}:{root.key_id}"
        if await RegistryTrustRoot.exists().where(RegistryTrustRoot.id == row_id):
            raise ConflictError(
                f"key `{root.key_id}` is already a trust root of this tenant "
                "(a revoked key stays revoked)"
            )
        await RegistryTrustRoot.insert(
            RegistryTrustRoot(
                id=row_id,
                tenant=self.tenant,
                key_id=root.key_id,
                purpose=root.purpose.value,
                key=dict(root.key),
                expires_at=root.expires,
                revoked=False,
                created_by=created_by,
                created_at=utcnow(),
            )
        )
        return await self.view(root.key_id)

    async def view(self, key_id: str) -> dict[str, Any]:
        """One root as the API shows it; 404 when the tenant has no such key."""
        row = (
            await RegistryTrustRoot.select()
            .where((RegistryTrustRoot.tenant == self.tenant) & (RegistryTrustRoot.key_id == key_id))
            .output(load_json=True)
            .first()
        )
        if row is None:
            raise NotFoundError(f"no trust root `{key_id}`")
        return root_view(row)

    async def revoke(self, key_id: str, revoked_by: str) -> dict[str, Any]:
        """Mark a root revoked (kept, so it is refused as `revoked_key`); idempotent."""
        await self.view(key_id)
        await RegistryTrustRoot.update(
            {
                RegistryTrustRoot.revoked: True,
                RegistryTrustRoot.revoked_at: utcnow(),
                RegistryTrustRoot.revoked_by: revoked_by,
            }
        ).where(
            (RegistryTrustRoot.tenant == self.tenant)
            & (RegistryTrustRoot.key_id == key_id)
            & RegistryTrustRoot.revoked.eq(False)
        )
        return await self.view(key_id)

    async def all_active(self, key_ids: list[str], now: datetime) -> bool:
        """Whether every key id is still an unrevoked, unexpired root (read in the caller's
        transaction: a revocation that committed meanwhile is seen)."""
        rows = await RegistryTrustRoot.select().where(
            (RegistryTrustRoot.tenant == self.tenant)
            & RegistryTrustRoot.key_id.is_in(key_ids)
            & RegistryTrustRoot.revoked.eq(False)
        )
        live = {r["key_id"] for r in rows if r["expires_at"] is None or r["expires_at"] > now}
        return set(key_ids) <= live


def parse_public_key(text: str) -> str | dict[str, Any]:
    """The key material of a request: PEM as is, or a securesystemslib key JSON object."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError as exc:
            raise InvalidInputError("`public_key` is neither PEM nor key JSON") from exc
        if not isinstance(value, dict):
            raise InvalidInputError("`public_key` key JSON must be an object")
        return value
    return text


# --- models -----------------------------------------------------------------------
