"""Tenant bundles and keys: upload (verified, anti-rollback), activate (gated), shadow, impact.

A tenant's bundle of the same name as a global one takes its place for that
tenant. Uploading never changes a decision; activation does, and is itself a
gated, logged decision (`bundle.activate`) — rolling back is activating an
older stored revision explicitly.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from engine import (
    BundleError,
    EngineError,
    Resource,
    SignatureError,
    VerificationKey,
    compile_bundles,
    verify_files,
)
from engine.bundle import Bundle as LoadedBundle
from engine.bundle import bundle_from_files, read_tarball
from engine.bundle.signing import ALGORITHMS, revision_key
from registry import Purpose, RegistryError
from server.auth import Caller, utcnow
from server.db.tables import Bundle, TrustedKey
from server.errors import ConflictError, InvalidInputError, NotFoundError
from server.gate import Gate
from server.policies import GLOBAL_TENANT, PolicyService
from server.registration.trust import TableTrustStore


def _row_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "revision": row["revision"],
        "digest": row["digest"],
        "status": row["status"],
        "signed_by": row["signed_by"],
        "scope": "global" if row["tenant"] == GLOBAL_TENANT else "tenant",
        "created_at": row["created_at"].isoformat(),
    }


def _fits(key: Any, algorithm: str) -> bool:
    """Whether a public key can verify signatures of ``algorithm``."""
    if algorithm.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm.startswith("ES"):
        curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}.get(algorithm)
        return (
            isinstance(key, ec.EllipticCurvePublicKey)
            and curve is not None
            and isinstance(key.curve, curve)
        )
    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


#: JWT algorithm of a bundle signature by a trust root's key type.
_JWT_ALGORITHMS = {"ecdsa": "ES256", "ed25519": "EdDSA", "rsa": "RS256"}


class BundleService:
    """Bundles and trusted keys of one tenant."""

    def __init__(self, gate: Gate, policies: PolicyService) -> None:
        self._gate = gate
        self._policies = policies

    async def add_key(
        self, caller: Caller, key_id: str, algorithm: str, public_key: str
    ) -> dict[str, Any]:
        """Trust a public key for this tenant's bundles."""
        if algorithm not in ALGORITHMS or algorithm == "HS256":
            raise InvalidInputError(
                f"algorithm must be one of {', '.join(a for a in ALGORITHMS if a != 'HS256')}"
            )
        try:
            key = serialization.load_pem_public_key(public_key.encode())
        except (ValueError, TypeError) as exc:
            raise InvalidInputError("`public_key` is not a PEM public key") from exc
        if not _fits(key, algorithm):
            raise InvalidInputError(
                f"the key is a {type(key).__name__}, which cannot verify `{algorithm}` signatures"
            )
        row_id = f"{caller.tenant}:{key_id}"
        if await TrustedKey.exists().where(TrustedKey.id == row_id):
            raise ConflictError(f"key `{key_id}` is already trusted")
        await TrustedKey.insert(
            TrustedKey(
                id=row_id,
                tenant=caller.tenant,
                key_id=key_id,
                algorithm=algorithm,
                public_key=public_key,
                created_at=utcnow(),
            )
        )
        return {"key_id": key_id, "algorithm": algorithm, "public_key": public_key}

    async def keys(self, caller: Caller) -> dict[str, Any]:
        """The tenant's trusted keys (public material only)."""
        rows = (
            await TrustedKey.select()
            .where(TrustedKey.tenant == caller.tenant)
            .order_by(TrustedKey.key_id)
        )
        return {"items": [{k: r[k] for k in ("key_id", "algorithm", "public_key")} for r in rows]}

    async def _trusted(self, tenant: str) -> dict[str, VerificationKey]:
        """The tenant's bundle keys (`/keys`) and its active `bundle-signing` trust roots
        (`/trust-roots`, named by their securesystemslib key id, revocable)."""
        rows = await TrustedKey.select().where(TrustedKey.tenant == tenant)
        keys = {r["key_id"]: VerificationKey(r["public_key"], r["algorithm"]) for r in rows}
        roots = await TableTrustStore(tenant).snapshot()
        now = utcnow()
        for root in roots.list(Purpose.BUNDLE_SIGNING):
            algorithm = _JWT_ALGORITHMS.get(str(root.key.get("keytype", "")))
            if algorithm is not None and root.is_active(now):
                with contextlib.suppress(ValueError, RegistryError):  # no PEM form: not usable
                    keys.setdefault(
                        root.key_id, VerificationKey(root.public_pem().decode(), algorithm)
                    )
        return keys

    async def _revisions(self, tenant: str, name: str) -> list[dict[str, Any]]:
        rows = await Bundle.select().where((Bundle.tenant == tenant) & (Bundle.name == name))
        return sorted(rows, key=lambda r: revision_key(r["revision"]))

    async def upload(self, caller: Caller, archive: bytes) -> dict[str, Any]:
        """Verify and store a signed bundle; nothing is activated."""
        try:
            files = read_tarball(archive, "upload")
            name = bundle_from_files(files, "upload").manifest.metadata.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidInputError("the bundle manifest needs `metadata.name`")
            stored = await self._revisions(caller.tenant, name)
            last = stored[-1]["revision"] if stored else None
            claims = verify_files(
                files, await self._trusted(caller.tenant), now=utcnow(), last_revision=last
            )
            bundle = bundle_from_files(files, name)
            compile_bundles([bundle])
        except SignatureError as exc:
            raise InvalidInputError(f"{exc.code}: {exc.message}") from exc
        except EngineError as exc:
            raise InvalidInputError(f"{exc.code}: {exc.message}") from exc
        row = Bundle(
            id=f"bnd_{secrets.token_hex(10)}",
            tenant=caller.tenant,
            name=name,
            revision=bundle.revision,
            digest=bundle.digest,
            status="stored",
            signed_by=claims.key_id,
            archive=base64.b64encode(archive).decode(),
            created_at=utcnow(),
        )
        try:
            await Bundle.insert(row)
        except (
            Exception
        ) as exc:  # the unique (tenant, name, revision) index: a concurrent upload won
            raise ConflictError(
                f"revision `{bundle.revision}` of `{name}` is already stored"
            ) from exc
        return _row_view(row.to_dict())

    async def list_all(self, caller: Caller) -> dict[str, Any]:
        """Every stored revision the tenant can use (its own and the global ones)."""
        rows = (
            await Bundle.select()
            .where(Bundle.tenant.is_in([caller.tenant, GLOBAL_TENANT]))
            .order_by(Bundle.name)
        )
        return {"items": [_row_view(r) for r in rows]}

    async def get(self, caller: Caller, name: str) -> dict[str, Any]:
        """The revisions of one bundle name."""
        rows = await Bundle.select().where(
            Bundle.tenant.is_in([caller.tenant, GLOBAL_TENANT]) & (Bundle.name == name)
        )
        if not rows:
            raise NotFoundError(f"no bundle `{name}`")
        return {
            "name": name,
            "revisions": [
                _row_view(r) for r in sorted(rows, key=lambda r: revision_key(r["revision"]))
            ],
        }

    async def _tenant_row(self, caller: Caller, name: str, revision: str) -> dict[str, Any]:
        row = (
            await Bundle.select()
            .where(
                (Bundle.tenant == caller.tenant)
                & (Bundle.name == name)
                & (Bundle.revision == revision)
            )
            .first()
        )
        if row is None:
            raise NotFoundError(
                f"no stored revision `{revision}` of bundle `{name}` in this tenant"
            )
        return dict(row)

    async def candidate(self, caller: Caller, name: str, revision: str) -> list[LoadedBundle]:
        """The tenant's active bundles with ``name`` replaced by ``revision``: what activation would give."""
        row = await self._tenant_row(caller, name, revision)
        current = [r for r in await self._policies.active_rows(caller.tenant) if r["name"] != name]
        bundles = [await self._policies.bundle(r["id"], r["name"]) for r in current]
        bundles.append(await self._policies.bundle(row["id"], name))
        try:
            compile_bundles(bundles)
        except BundleError as exc:
            raise InvalidInputError(f"{exc.code}: {exc.message}") from exc
        except EngineError as exc:
            raise InvalidInputError(f"{exc.code}: {exc.message}") from exc
        return bundles

    async def _still_valid(self, row: dict[str, Any], keys: dict[str, VerificationKey]) -> None:
        """Verify a stored revision again at activation: its signer may have been removed from the
        tenant's trusted keys, or its signature's validity window may have closed since upload."""
        archive = await Bundle.select(Bundle.archive).where(Bundle.id == row["id"]).first()
        files = read_tarball(base64.b64decode(archive["archive"] if archive else ""), row["name"])
        try:
            verify_files(files, keys, now=utcnow())
        except SignatureError as exc:
            raise InvalidInputError(
                f"{exc.code}: revision `{row['revision']}` no longer verifies: {exc.message}"
            ) from exc

    async def activate(
        self, caller: Caller, name: str, revision: str, trace: str, *, shadow: bool = False
    ) -> dict[str, Any]:
        """Gate `bundle.activate`; make ``revision`` the active (or shadow) revision of ``name``."""
        row = await self._tenant_row(caller, name, revision)
        if shadow and row["status"] == "active":
            raise ConflictError(
                f"revision `{revision}` of `{name}` is the active one; only another revision can shadow it"
            )
        await self.candidate(caller, name, revision)
        keys = await self._trusted(caller.tenant)
        await self._still_valid(row, keys)
        trusted = sorted(keys)
        resource = Resource(
            type="bundle",
            id=name,
            tenant=caller.tenant,
            attributes={
                "revision": revision,
                "signed": True,
                "signer_key_id": row["signed_by"],
                "digest": row["digest"],
            },
        )
        context: dict[str, Any] = {"trusted_bundle_keys": trusted}
        if shadow:
            context["shadow"] = True
        status = "shadow" if shadow else "active"

        async def store(_: Any) -> None:
            await Bundle.update({Bundle.status: "stored"}).where(
                (Bundle.tenant == caller.tenant) & (Bundle.name == name) & (Bundle.status == status)
            )
            await Bundle.update({Bundle.status: status}).where(Bundle.id == row["id"])

        governed = await self._gate.govern(
            caller, "bundle.activate", resource, context, store, trace_id=trace
        )
        self._policies.invalidate(caller.tenant)
        return {**await self.get(caller, name), **governed.summary()}
