"""Verified facts: what a verifier proved, in the shape of ``context.attestations``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EvidenceKind(StrEnum):
    """The form of evidence a fact set was verified from."""

    IN_TOTO_LAYOUT = "in-toto-layout"
    IN_TOTO_STATEMENT = "in-toto-statement"
    MODEL_SIGNING = "model-signing"
    SIGSTORE_BUNDLE = "sigstore-bundle"


@dataclass(frozen=True, slots=True)
class SubjectDigest:
    """A named artifact and its sha256, as signed and as matched against our bytes."""

    name: str
    sha256: str


@dataclass(frozen=True, slots=True)
class AttestationFacts:
    """Everything a verifier established; only verified values, never claims.

    :meth:`to_context` gives the JSON-ready mapping the server puts into
    ``context.attestations`` of ``model.register`` / ``artifact.register``.
    """

    kind: EvidenceKind
    signer_key_ids: tuple[str, ...]
    subject_digests: tuple[SubjectDigest, ...]
    predicate_types: tuple[str, ...] = ()
    builder_id: str | None = None
    build_type: str | None = None
    layout_name: str | None = None
    layout_expires: datetime | None = None
    step_names: tuple[str, ...] = ()
    inspections_run: tuple[str, ...] = ()
    model_name: str | None = None
    model_digest: str | None = None
    file_digests: tuple[SubjectDigest, ...] = field(default=())

    def to_context(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO 8601 times, lists, no ``None`` values)."""
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "signer_key_ids": list(self.signer_key_ids),
            "subject_digests": [{"name": s.name, "sha256": s.sha256} for s in self.subject_digests],
            "predicate_types": list(self.predicate_types),
        }
        optional: dict[str, Any] = {
            "builder_id": self.builder_id,
            "build_type": self.build_type,
            "layout_name": self.layout_name,
            "layout_expires": self.layout_expires.isoformat() if self.layout_expires else None,
            "model_name": self.model_name,
            "model_digest": self.model_digest,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.step_names:
            out["step_names"] = list(self.step_names)
        if self.inspections_run:
            out["inspections_run"] = list(self.inspections_run)
        if self.file_digests:
            out["file_digests"] = [{"name": s.name, "sha256": s.sha256} for s in self.file_digests]
        return out
