"""Every evidence kind of a registration, verified against the tenant's trust roots.

One entry point, :func:`verify_evidence`, for models, agent templates and tools:

- ``dsse``: an in-toto Statement in a DSSE envelope (``registry.verify_statement``)
  about the uploaded artifact (or its given sha256);
- ``in-toto``: a signed layout and its links (``registry.verify_layout``) whose steps
  must have produced the artifact; the layout is signed by a ``layout-owner`` root and
  every counted functionary key must be an active ``functionary`` root;
- ``model-signing``: an OpenSSF model-signing bundle over a small directory sent inline
  (``files``: relative path -> base64), written to a temporary directory and verified
  there by ``registry.verify_model_signature``; the model digest is the artifact's sha256.

An optional ``provenance`` DSSE envelope (SLSA) about the same digest may accompany an
``in-toto`` or ``model-signing`` attestation; its facts are merged (predicate types,
builder id, signer key ids, subjects), which is what the shipped ``registry-admission``
policy needs (it requires a provenance predicate type and a builder id).

Nothing here stores anything: a :class:`Rejected` is mapped to the API error by the
caller (``common.rejected``), before any decision.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from registry import (
    ArtifactDigest,
    AttestationFacts,
    InMemoryLinkSource,
    LayoutPolicy,
    Reason,
    Rejected,
    StatementPolicy,
    TrustStore,
    check_sha256,
    digest_chunks,
    verify_layout,
    verify_model_signature,
    verify_statement,
)
from server.errors import InvalidInputError
from server.registration.common import (
    MAX_INLINE_FILES,
    MAX_JSON_ARTIFACT_BYTES,
    MAX_LINKS,
    AttestationIn,
    Evidence,
    InTotoIn,
    ModelSigningIn,
    UploadTooLargeError,
    rejected,
)

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class Verified:
    """What verification established about one registration."""

    sha256: str
    size: int | None
    attestations: dict[str, Any]
    """``context.attestations`` of the decision (and what the row keeps)."""
    signers: list[str]
    """Every trust root that signed: checked again in the decision's transaction."""
    blobs: list[bytes] = field(default_factory=list)
    """Bytes to put in the content-addressed store (the artifact, or the model's files)."""
    files: list[dict[str, Any]] = field(default_factory=list)


def decode_upload(text: str, what: str, max_bytes: int = MAX_JSON_ARTIFACT_BYTES) -> bytes:
    """Base64 of an upload: 413 beyond ``max_bytes``; 400 when not base64; a string cut
    short (not a whole number of 4-character groups) is `upload_truncated`."""
    if len(text) > (max_bytes + 2) // 3 * 4 + 4:
        raise UploadTooLargeError(
            f"{what} is larger than the limit of {max_bytes} bytes",
            reason=Reason.UPLOAD_TOO_LARGE.value,
        )
    if not _BASE64.fullmatch(text):
        raise InvalidInputError(f"{what} is not valid base64")
    if len(text) % 4:
        raise rejected(
            Rejected(
                Reason.UPLOAD_TRUNCATED,
                f"{what} ends mid-group ({len(text)} base64 characters): the upload is cut short",
            )
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"{what} is not valid base64") from exc


def _artifact(
    artifact_base64: str | None, sha256: str | None
) -> tuple[ArtifactDigest, bytes | None]:
    if (artifact_base64 is None) == (sha256 is None):
        raise InvalidInputError("give exactly one of `artifact_base64` and `sha256`")
    try:
        if artifact_base64 is not None:
            data = decode_upload(artifact_base64, "`artifact_base64`")
            return digest_chunks([data], max_bytes=MAX_JSON_ARTIFACT_BYTES), data
        return ArtifactDigest(check_sha256(sha256, what="`sha256`"), 0), None
    except Rejected as exc:
        raise rejected(exc) from exc


def _relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\0" in name
        or path.is_absolute()
        or any(part in {"", ".", ".."} for part in name.split("/"))
    ):
        raise InvalidInputError(f"`files`: `{name}` is not a relative path inside the model")
    return path


def _model_files(files: dict[str, str]) -> dict[PurePosixPath, bytes]:
    if not files:
        raise InvalidInputError("`files` is empty: send the signed model's files")
    if len(files) > MAX_INLINE_FILES:
        raise InvalidInputError(f"`files` has more than {MAX_INLINE_FILES} files")
    out: dict[PurePosixPath, bytes] = {}
    total = 0
    for name, text in files.items():
        data = decode_upload(text, f"`files[{name}]`")
        total += len(data)
        if total > MAX_JSON_ARTIFACT_BYTES:
            raise UploadTooLargeError(
                f"the model's files are larger than {MAX_JSON_ARTIFACT_BYTES} bytes in total",
                reason=Reason.UPLOAD_TOO_LARGE.value,
            )
        out[_relative(name)] = data
    return out


def _verify_model_files(
    files: dict[PurePosixPath, bytes], signature: bytes, store: TrustStore, now: datetime
) -> AttestationFacts:
    with tempfile.TemporaryDirectory(prefix="aion-model-") as tmp:
        model = Path(tmp, "model")
        for name, data in files.items():
            target = model.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return verify_model_signature(model, signature, store, now=now)


def merge(primary: AttestationFacts, provenance: AttestationFacts | None) -> dict[str, Any]:
    """``context.attestations``: the verified facts in the shape the registry-admission
    policies read (``verified: true``, ``subject_digests`` as ``sha256:<hex>``, the named
    subjects under ``subjects``), with a provenance statement's facts merged in."""
    facts = primary.to_context()
    if provenance is not None:
        extra = provenance.to_context()
        facts["predicate_types"] = sorted({*facts["predicate_types"], *extra["predicate_types"]})
        facts["signer_key_ids"] = sorted({*facts["signer_key_ids"], *extra["signer_key_ids"]})
        seen = {(s["name"], s["sha256"]) for s in facts["subject_digests"]}
        facts["subject_digests"] += [
            s for s in extra["subject_digests"] if (s["name"], s["sha256"]) not in seen
        ]
        for key in ("builder_id", "build_type"):
            if key in extra:
                facts[key] = extra[key]
        facts["provenance"] = extra
    subjects = list(facts["subject_digests"])
    return {
        **facts,
        "verified": True,
        "subjects": subjects,
        "subject_digests": sorted({f"sha256:{s['sha256']}" for s in subjects}),
    }


async def verify_evidence(
    attestation: Evidence,
    provenance: AttestationIn | None,
    artifact_base64: str | None,
    sha256: str | None,
    *,
    store: TrustStore,
    statements: StatementPolicy,
    now: datetime,
    name: str,
) -> Verified:
    """Verify a registration's evidence (400/413/422 on failure, nothing stored)."""
    if provenance is not None and isinstance(attestation, AttestationIn):
        raise InvalidInputError("`provenance` accompanies an `in-toto` or `model-signing` kind")
    blobs: list[bytes] = []
    files: list[dict[str, Any]] = []
    size: int | None = None
    try:
        if isinstance(attestation, ModelSigningIn):
            if artifact_base64 is not None or sha256 is not None:
                raise InvalidInputError(
                    "a `model-signing` registration sends the model as `files`, "
                    "not `artifact_base64` or `sha256`"
                )
            model = _model_files(attestation.files)
            signature = json.dumps(attestation.signature).encode()
            facts = await asyncio.to_thread(_verify_model_files, model, signature, store, now)
            if not facts.model_digest:
                raise Rejected(Reason.MALFORMED_EVIDENCE, "the model signature names no digest")
            size = sum(len(d) for d in model.values())
            digest = ArtifactDigest(facts.model_digest, size)
            blobs = list(model.values())
            files = [
                {
                    "name": str(n),
                    "size": len(d),
                    "sha256": digest_chunks([d], max_bytes=MAX_JSON_ARTIFACT_BYTES).sha256,
                }
                for n, d in sorted(model.items())
            ]
        else:
            digest, data = _artifact(artifact_base64, sha256)
            size = digest.size if data is not None else None
            blobs = [data] if data is not None else []
            if isinstance(attestation, InTotoIn):
                if len(attestation.links) > MAX_LINKS:
                    raise InvalidInputError(f"`links` has more than {MAX_LINKS} links")
                links = InMemoryLinkSource(
                    {k: json.dumps(v).encode() for k, v in attestation.links.items()}
                )
                facts = verify_layout(
                    json.dumps(attestation.layout).encode(),
                    links,
                    digest,
                    store,
                    now=now,
                    policy=LayoutPolicy(require_functionary_roots=True),
                    name=name,
                )
            else:
                facts = verify_statement(
                    json.dumps(attestation.envelope), digest, store, now=now, policy=statements
                )
        extra = None
        if provenance is not None:
            extra = verify_statement(
                json.dumps(provenance.envelope), digest, store, now=now, policy=statements
            )
    except Rejected as exc:
        raise rejected(exc) from exc
    signers = sorted({*facts.signer_key_ids, *(extra.signer_key_ids if extra else ())})
    return Verified(
        sha256=digest.sha256,
        size=size,
        attestations=merge(facts, extra),
        signers=signers,
        blobs=blobs,
        files=files,
    )
