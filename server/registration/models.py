"""Registration on verified supply-chain evidence: the tenant's trust roots and its models.

The verification itself is :mod:`registry`'s; this module feeds it the tenant's
trust roots (from the ``trust_roots`` table), its settings (the SLSA builder and
build-parameter allowlists, ``settings.registry``) and the server clock, then
puts the verified facts into the ``model.register`` decision
(``context.attestations``) and stores the model with that decision.

Order of a registration, and why:

1. the body is checked and the artifact hashed (size limit) — nothing stored;
2. the evidence is verified against a snapshot of the tenant's trust roots
   taken for this request (so a revocation committed before the request
   started is effective) — a rejection answers 422 with its reason, nothing
   stored, no decision (there is nothing to decide on);
3. the artifact bytes are written to the content-addressed store *before* the
   decision's transaction: a file named by its own sha256 that no row points to
   (the decision denied, the transaction rolled back) is harmless and is reused
   by the next registration of the same bytes;
4. ``model.register`` is decided; in its transaction the signer keys are checked
   again (a revocation that raced the request refuses it) and the model row is
   written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from piccolo.columns import Column

from engine import Decision, Resource
from registry import (
    FilesystemArtifactStore,
    Reason,
    RegistryError,
    StatementPolicy,
    StoreLimits,
    TrustRoot,
    digest_chunks,
)
from registry.statements import MODEL_SIGNING_V1, SLSA_PROVENANCE_V1
from server.auth import Caller, utcnow
from server.db.tables import Model, Tenant
from server.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from server.gate import Gate, Parked
from server.registration.common import (
    MAX_JSON_ARTIFACT_BYTES,
    MODEL_NAME,
    AttestationRejectedError,
    ModelRegister,
    TrustRootIn,
)
from server.registration.evidence import verify_evidence
from server.registration.trust import (
    TableTrustStore,
    parse_public_key,
    root_view,
)


def model_id(tenant: str, name: str) -> str:
    """A model's id: the convention of the seeded models (``mdl_<tenant>_<name>``)."""
    return f"mdl_{tenant}_{name}"


def _model_view(row: Mapping[str, Any]) -> dict[str, Any]:
    attributes = row["attributes"] or {}
    return {
        "id": row["id"],
        "name": row["name"],
        "reference": f"model://{row['name']}",
        "privacy": row["privacy"],
        "registered": bool(row["registered"]),
        "verified": bool(row["verified"]),
        "admin_approval_required": bool(row["admin_approval_required"]),
        "sha256": row["sha256"] or None,
        "size": attributes.get("size"),
        "artifact_stored": bool(attributes.get("artifact_stored", False)),
        "attestations": attributes.get("attestations"),
        "decision_id": row["decision_id"] or None,
        "created_at": row["created_at"].isoformat(),
    }


def statement_policy(settings: Mapping[str, Any]) -> StatementPolicy:
    """The tenant's accepted SLSA builders and build parameters (``settings.registry``).

    Absent or malformed lists allow nothing: every SLSA statement is then refused
    (`untrusted_builder`), fail closed.
    """
    registry = settings.get("registry")
    registry = registry if isinstance(registry, dict) else {}

    def strings(name: str) -> frozenset[str]:
        value = registry.get(name)
        if not isinstance(value, list):
            return frozenset()
        return frozenset(v for v in value if isinstance(v, str) and v)

    predicate_types = strings("predicate_types") or frozenset(
        {SLSA_PROVENANCE_V1, MODEL_SIGNING_V1}
    )
    return StatementPolicy(
        predicate_types=predicate_types,
        builder_ids=strings("builders"),
        external_parameters=strings("external_parameters"),
    )


class RegistryService:
    """Trust roots and model registration of the caller's tenant."""

    def __init__(self, gate: Gate, data_dir: Path) -> None:
        self._gate = gate
        self._artifacts = FilesystemArtifactStore(
            data_dir / "registry" / "artifacts",
            StoreLimits(max_bytes=MAX_JSON_ARTIFACT_BYTES),
        )

    @property
    def gate(self) -> Gate:
        return self._gate

    # trust roots

    async def add_trust_root(self, caller: Caller, body: TrustRootIn) -> dict[str, Any]:
        """Trust a public key for one purpose (201 with its securesystemslib key id)."""
        expires = body.expires_at
        if expires is not None:
            if expires.tzinfo is None:
                raise InvalidInputError("`expires_at` needs a time zone (e.g. `Z`)")
            if expires <= utcnow():
                raise InvalidInputError("`expires_at` is not in the future")
        try:
            root = TrustRoot.from_public_key(
                parse_public_key(body.public_key), body.purpose, expires=expires
            )
        except RegistryError as exc:
            raise InvalidInputError(f"`public_key`: {exc.message}") from exc
        return await TableTrustStore(caller.tenant).add(root, caller.subject)

    async def trust_roots(self, caller: Caller) -> dict[str, Any]:
        """The tenant's trust roots, revoked ones included."""
        rows = await TableTrustStore(caller.tenant).rows()
        return {"items": [root_view(r) for r in rows]}

    async def revoke_trust_root(self, caller: Caller, key_id: str) -> dict[str, Any]:
        """Revoke a root; effective for every registration that starts afterwards."""
        return await TableTrustStore(caller.tenant).revoke(key_id, caller.subject)

    async def put_blobs(self, blobs: list[bytes]) -> None:
        """Write verified bytes to the content-addressed store (before any transaction)."""
        for blob in blobs:
            digest = digest_chunks([blob], max_bytes=MAX_JSON_ARTIFACT_BYTES).sha256
            await asyncio.to_thread(self._artifacts.put, [blob], expected_sha256=digest)

    # models

    async def models(self, caller: Caller) -> dict[str, Any]:
        """The tenant's models (seeded and registered), by name."""
        rows = (
            await Model.select()
            .where(Model.tenant == caller.tenant)
            .order_by(Model.name)
            .output(load_json=True)
        )
        return {"items": [_model_view(r) for r in rows]}

    async def model(self, caller: Caller, ident: str) -> dict[str, Any]:
        """One model of the tenant; another tenant's answers like a missing one (404)."""
        row = (
            await Model.select()
            .where((Model.tenant == caller.tenant) & (Model.id == ident))
            .output(load_json=True)
            .first()
        )
        if row is None:
            raise NotFoundError(f"no model `{ident}`")
        return _model_view(row)

    async def settings(self, tenant: str) -> dict[str, Any]:
        # Read fresh (not the per-process cache): an allowlist just narrowed must hold now.
        row = (
            await Tenant.select(Tenant.settings)
            .where(Tenant.id == tenant)
            .output(load_json=True)
            .first()
        )
        return dict(row["settings"] or {}) if row else {}

    async def register_model(
        self, caller: Caller, body: ModelRegister, trace_id: str, approval: str | None = None
    ) -> dict[str, Any]:
        """Verify the evidence, decide `model.register`, store the model with the decision.

        A model the policy holds for approval (its `require_approval` obligation, for
        `admin_approval_required`) is parked: the approval runs this again, evidence
        verified anew, as the requester (the bytes are already stored: the parked
        request names them by digest)."""
        name = body.name
        if not MODEL_NAME.fullmatch(name):
            raise InvalidInputError(
                "`name` must be 1-200 characters: letters, digits and `._:+-`, "
                "starting with a letter or digit"
            )
        trust = TableTrustStore(caller.tenant)
        verified = await verify_evidence(
            body.attestation,
            body.provenance,
            body.artifact_base64,
            body.sha256,
            store=await trust.snapshot(),
            statements=statement_policy(await self.settings(caller.tenant)),
            now=utcnow(),
            name=name,
        )
        ident = model_id(caller.tenant, name)
        existing = (
            await Model.select(Model.id, Model.verified)
            .where((Model.tenant == caller.tenant) & (Model.name == name))
            .first()
        )
        if existing is not None and existing["verified"]:
            raise ConflictError(f"model `{name}` is already registered and verified")
        # Before the transaction: content-addressed, so an orphan on rollback is harmless.
        await self.put_blobs(verified.blobs)
        attestations = verified.attestations
        attributes = {
            "sha256": verified.sha256,
            "privacy": body.privacy,
            "admin_approval_required": body.admin_approval_required,
        }
        resource = Resource(type="model", id=name, tenant=caller.tenant, attributes=attributes)
        signers = verified.signers

        async def store(decision: Decision) -> bool:
            if not await trust.all_active(signers, utcnow()):
                raise AttestationRejectedError(
                    "a key that signed the evidence was revoked or expired during registration",
                    reason=Reason.REVOKED_KEY.value,
                )
            stored = {
                "size": verified.size,
                "artifact_stored": bool(verified.blobs),
                "attestations": attestations,
                **({"files": verified.files} if verified.files else {}),
            }
            values: dict[Column | str, Any] = {
                Model.privacy: body.privacy,
                Model.registered: True,
                Model.verified: True,
                Model.admin_approval_required: body.admin_approval_required,
                Model.attributes: {**attributes, **stored},
                Model.sha256: verified.sha256,
                Model.decision_id: decision.decision_id,
            }
            if existing is not None:  # a seeded, unverified model gets its evidence
                updated = (
                    await Model.update(values)
                    .where((Model.id == existing["id"]) & Model.verified.eq(False))
                    .returning(Model.id)
                )
                if not updated:
                    raise ConflictError(f"model `{name}` was registered meanwhile")
                return True
            await Model.insert(
                Model(
                    id=ident,
                    tenant=caller.tenant,
                    name=name,
                    privacy=body.privacy,
                    registered=True,
                    verified=True,
                    admin_approval_required=body.admin_approval_required,
                    attributes={**attributes, **stored},
                    sha256=verified.sha256,
                    decision_id=decision.decision_id,
                    created_at=utcnow(),
                )
            )
            return True

        parked = msgspec.to_builtins(body)
        if parked.pop("artifact_base64", None) is not None:
            parked["sha256"] = verified.sha256  # stored already; the digest names it
        governed = await self._gate.govern(
            caller,
            "model.register",
            resource,
            {"attestations": attestations},
            store,
            park=Parked("model.register", parked),
            approval=approval,
            trace_id=trace_id,
        )
        return {
            **await self.model(caller, existing["id"] if existing else ident),
            **governed.summary(),
        }
