"""Rejections of supply-chain evidence, each with a stable reason code.

A verifier either returns the facts it verified or raises :class:`Rejected`
carrying one :class:`Reason`. The codes are part of the public contract: the
server maps them into ``{code, message}`` errors and decision records, the CLI
prints them as ``reason: <code>: <message>``::

    RegistryError                       (bad arguments, programming mistakes)
     ├── Rejected                       evidence refused; ``reason`` says why
     └── ArtifactError                  artifact store problems
          ├── ArtifactNotFound          artifact_not_found
          └── ArtifactCorrupted         artifact_corrupted
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a piece of evidence was refused. Values never change once shipped."""

    MALFORMED_EVIDENCE = "malformed_evidence"
    BAD_SIGNATURE = "bad_signature"
    UNTRUSTED_SIGNER = "untrusted_signer"
    REVOKED_KEY = "revoked_key"
    KEY_EXPIRED = "key_expired"
    PLACEHOLDER_SIGNATURE = "placeholder_signature"
    UNSUPPORTED_SIGNATURE = "unsupported_signature"
    THRESHOLD_NOT_MET = "threshold_not_met"
    THRESHOLD_ZERO = "threshold_zero"
    LAYOUT_EXPIRED = "layout_expired"
    SUBLAYOUT_UNSUPPORTED = "sublayout_unsupported"
    ARTIFACT_RULE_VIOLATION = "artifact_rule_violation"
    INSPECTION_FAILED = "inspection_failed"
    DIGEST_MISMATCH = "digest_mismatch"
    DIGEST_MALFORMED = "digest_malformed"
    DIGEST_ALL_ZERO = "digest_all_zero"
    UNEXPECTED_PAYLOAD_TYPE = "unexpected_payload_type"
    UNEXPECTED_STATEMENT_TYPE = "unexpected_statement_type"
    UNEXPECTED_PREDICATE_TYPE = "unexpected_predicate_type"
    UNTRUSTED_BUILDER = "untrusted_builder"
    UNKNOWN_BUILD_PARAMETERS = "unknown_build_parameters"
    UPLOAD_TRUNCATED = "upload_truncated"
    UPLOAD_TOO_LARGE = "upload_too_large"
    SIGSTORE_NO_TRUST_ROOT = "sigstore_no_trust_root"
    SIGSTORE_UNSUPPORTED = "sigstore_unsupported"
    UNRESOLVED_REFERENCE = "unresolved_reference"
    DUPLICATE_MANIFEST = "duplicate_manifest"


class RegistryError(Exception):
    """Base of every registry exception; ``code`` is stable and machine-readable."""

    code: str = "registry_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Rejected(RegistryError):
    """Evidence (or an upload) was refused; nothing may be stored."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = reason.value

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ArtifactError(RegistryError):
    """The artifact store cannot serve or accept an artifact."""

    code = "artifact_error"


class ArtifactNotFound(ArtifactError):
    """No artifact with that digest is stored."""

    code = "artifact_not_found"


class ArtifactCorrupted(ArtifactError):
    """Stored bytes no longer hash to their digest (bit rot or tampering)."""

    code = "artifact_corrupted"
