"""DSSE envelopes carrying in-toto Statements (SLSA provenance v1, model-signing).

The envelope must be signed by a trusted ``attester`` key, carry the in-toto
payload type and statement type, and name our artifact's sha256 among its
subjects. SLSA provenance additionally needs an allowlisted builder and only
known ``externalParameters``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError

from registry.digests import ArtifactDigest, check_sha256, is_placeholder_signature
from registry.errors import Reason, Rejected
from registry.facts import AttestationFacts, EvidenceKind, SubjectDigest
from registry.timeutil import check_now
from registry.trust import Purpose, TrustStore, trusted_signers

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset(
    {"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"}
)
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
MODEL_SIGNING_V1 = "https://model_signing/signature/v1.0"
MIN_SIGNATURE_BYTES = 32


@dataclass(frozen=True, slots=True)
class StatementPolicy:
    """What the tenant accepts in a statement.

    ``builder_ids`` and ``external_parameters`` are allowlists; empty means
    nothing is allowed (fail closed).
    """

    predicate_types: frozenset[str] = frozenset({SLSA_PROVENANCE_V1, MODEL_SIGNING_V1})
    builder_ids: frozenset[str] = frozenset()
    external_parameters: frozenset[str] = frozenset()


def parse_json(raw: bytes | str, what: str) -> Any:
    """JSON from bytes, refused as malformed evidence when it is not."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"{what} is not valid JSON ({exc})") from exc


def _check_signature_strings(data: Mapping[str, Any]) -> None:
    signatures = data.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise Rejected(Reason.BAD_SIGNATURE, "envelope carries no signatures")
    for entry in signatures:
        sig = entry.get("sig") if isinstance(entry, dict) else None
        if not isinstance(sig, str) or is_placeholder_signature(sig):
            raise Rejected(Reason.PLACEHOLDER_SIGNATURE, f"signature `{sig}` is a placeholder")
        if len(sig.strip()) < MIN_SIGNATURE_BYTES:
            raise Rejected(
                Reason.PLACEHOLDER_SIGNATURE, f"signature `{sig}` is too short to be real"
            )


def open_envelope(
    raw: bytes | str, store: TrustStore, now: datetime
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Verify a DSSE envelope against trusted attester keys; the statement and signer ids."""
    data = parse_json(raw, "envelope")
    if not isinstance(data, dict) or "payload" not in data:
        raise Rejected(Reason.MALFORMED_EVIDENCE, "not a DSSE envelope (no `payload`)")
    if data.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
        raise Rejected(
            Reason.UNEXPECTED_PAYLOAD_TYPE,
            f"payloadType `{data.get('payloadType')}`, expected `{IN_TOTO_PAYLOAD_TYPE}`",
        )
    _check_signature_strings(data)
    try:
        envelope = Envelope.from_dict(json.loads(json.dumps(data)))
    except (KeyError, ValueError, TypeError, FormatError) as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"malformed DSSE envelope ({exc})") from exc
    roots = trusted_signers(store, envelope.signatures, Purpose.ATTESTER, now)
    try:
        accepted = envelope.verify([r.sslib_key() for r in roots], threshold=1)
    except VerificationError as exc:
        raise Rejected(Reason.BAD_SIGNATURE, f"envelope signature does not verify ({exc})") from exc
    statement = parse_json(envelope.payload, "statement")
    if not isinstance(statement, dict):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "statement is not a JSON object")
    return statement, tuple(sorted(accepted))


def _subjects(statement: Mapping[str, Any]) -> tuple[SubjectDigest, ...]:
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise Rejected(Reason.MALFORMED_EVIDENCE, "statement has no subjects")
    out = []
    for subject in subjects:
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), dict):
            raise Rejected(Reason.MALFORMED_EVIDENCE, "statement subject without a digest")
        if "sha256" in subject["digest"]:
            name = str(subject.get("name", ""))
            sha = check_sha256(subject["digest"]["sha256"], what=f"subject `{name}` sha256")
            out.append(SubjectDigest(name, sha))
    return tuple(out)


def match_subject(
    subjects: tuple[SubjectDigest, ...], artifact: ArtifactDigest
) -> tuple[SubjectDigest, ...]:
    """The subjects naming the artifact's digest; ``digest_mismatch`` when none does."""
    matched = tuple(s for s in subjects if s.sha256 == artifact.sha256)
    if not matched:
        raise Rejected(
            Reason.DIGEST_MISMATCH,
            f"no subject has the artifact's sha256 `{artifact.sha256}`",
        )
    return matched


def _check_slsa(predicate: Any, policy: StatementPolicy) -> tuple[str, str | None]:
    if not isinstance(predicate, dict):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "SLSA predicate is not an object")
    definition = predicate.get("buildDefinition") or {}
    builder = (predicate.get("runDetails") or {}).get("builder") or {}
    builder_id = builder.get("id") if isinstance(builder, dict) else None
    if not isinstance(builder_id, str) or builder_id not in policy.builder_ids:
        raise Rejected(Reason.UNTRUSTED_BUILDER, f"builder `{builder_id}` is not allowlisted")
    params = definition.get("externalParameters") or {}
    if not isinstance(params, dict):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "externalParameters is not an object")
    unknown = sorted(set(params) - policy.external_parameters)
    if unknown:
        shown = ", ".join(f"`{p}`" for p in unknown)
        raise Rejected(Reason.UNKNOWN_BUILD_PARAMETERS, f"unknown externalParameters: {shown}")
    build_type = definition.get("buildType")
    return builder_id, build_type if isinstance(build_type, str) else None


def verify_statement(
    envelope: bytes | str,
    artifact: ArtifactDigest,
    store: TrustStore,
    *,
    now: datetime,
    policy: StatementPolicy | None = None,
) -> AttestationFacts:
    """Verify a DSSE-enveloped in-toto Statement about ``artifact``.

    Raises :class:`~registry.errors.Rejected` with the first reason found.
    """
    policy = policy or StatementPolicy()
    statement, signers = open_envelope(envelope, store, check_now(now))
    if statement.get("_type") not in STATEMENT_TYPES:
        raise Rejected(
            Reason.UNEXPECTED_STATEMENT_TYPE, f"statement _type `{statement.get('_type')}`"
        )
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or predicate_type not in policy.predicate_types:
        raise Rejected(
            Reason.UNEXPECTED_PREDICATE_TYPE, f"predicateType `{predicate_type}` is not accepted"
        )
    matched = match_subject(_subjects(statement), artifact)
    builder_id = build_type = None
    if predicate_type == SLSA_PROVENANCE_V1:
        builder_id, build_type = _check_slsa(statement.get("predicate"), policy)
    return AttestationFacts(
        kind=EvidenceKind.IN_TOTO_STATEMENT,
        signer_key_ids=signers,
        subject_digests=matched,
        predicate_types=(predicate_type,),
        builder_id=builder_id,
        build_type=build_type,
    )
