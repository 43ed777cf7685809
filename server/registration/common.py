"""What registration shares: limits, request bodies, the rejection errors."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from registry import (
    Reason,
    Rejected,
)
from server.errors import (
    AppError,
)
from server.schemas import Body

MAX_JSON_ARTIFACT_BYTES = 16 * 1024 * 1024
#: The request body limit of `POST /models`: the base64 artifact plus room for the evidence.
MAX_JSON_BODY_BYTES = (MAX_JSON_ARTIFACT_BYTES + 2) // 3 * 4 + 1024 * 1024
PRIVACY_LEVELS = ("local-only", "hybrid", "allow-api")
#: Model names are what `model://<name>` references resolve to (the last path segment).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,199}")
#: Inline model-signing files: at most this many, and MAX_JSON_ARTIFACT_BYTES in total.
MAX_INLINE_FILES = 256
#: Links of one in-toto registration.
MAX_LINKS = 64


class AttestationRejectedError(AppError):
    """The evidence was refused by verification; ``reason`` is the registry's reason code."""

    status, code = 422, "attestation_rejected"


class UploadTooLargeError(AppError):
    """The artifact is larger than this form of upload takes."""

    status, code = 413, "payload_too_large"


def rejected(exc: Rejected) -> AppError:
    """The API error of a registry rejection (413 for an oversized artifact, else 422)."""
    if exc.reason is Reason.UPLOAD_TOO_LARGE:
        return UploadTooLargeError(exc.message, reason=exc.reason.value)
    return AttestationRejectedError(exc.message, reason=exc.reason.value)


# --- wire schemas ---------------------------------------------------------------


class TrustRootIn(Body):
    """`POST /trust-roots`: a public key (PEM, or securesystemslib key JSON) and its purpose."""

    public_key: str
    purpose: Literal["layout-owner", "functionary", "attester", "bundle-signing"]
    expires_at: datetime | None = None


class AttestationIn(Body, tag_field="kind", tag="dsse"):
    """Evidence: a DSSE envelope carrying an in-toto Statement (`kind: "dsse"`)."""

    envelope: dict[str, Any]


class InTotoIn(Body, tag_field="kind", tag="in-toto"):
    """Evidence: a signed in-toto layout and its links by file name (`STEP.KEYID8.link`)."""

    layout: dict[str, Any]
    links: dict[str, dict[str, Any]]


class ModelSigningIn(Body, tag_field="kind", tag="model-signing"):
    """Evidence: an OpenSSF model-signing bundle and the signed directory's files inline
    (relative path -> base64)."""

    signature: dict[str, Any]
    files: dict[str, str]


#: Every evidence kind, told apart by `kind`.
Evidence = AttestationIn | InTotoIn | ModelSigningIn


class ModelRegister(Body):
    """`POST /models`: the model file (base64) or its sha256, and the evidence about it."""

    name: str
    privacy: Literal["local-only", "hybrid", "allow-api"]
    attestation: Evidence
    admin_approval_required: bool = False
    artifact_base64: str | None = None
    sha256: str | None = None
    provenance: AttestationIn | None = None
    """SLSA provenance (DSSE) about the same artifact, alongside an `in-toto` or
    `model-signing` attestation: the shipped `registry-admission` policy requires a
    provenance predicate and a builder id, which layouts and model signatures lack."""


class ArtifactRegister(Body):
    """`POST /agent-templates`, `POST /tools`: the artifact (base64) or its sha256, the
    evidence, optional SLSA provenance; decided as `artifact.register`."""

    name: str
    attestation: Evidence
    artifact_base64: str | None = None
    sha256: str | None = None
    provenance: AttestationIn | None = None
    description: str = ""


# --- trust roots ------------------------------------------------------------------
