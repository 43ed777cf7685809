"""OpenSSF model signatures (``model-signing``) made with a private key.

The library verifies the signature and re-hashes the model directory; we pick
the trusted ``attester`` root the signature's key hint names, hand the library
exactly the bytes we parsed, and report the signed digests as facts.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from registry.errors import Reason, RegistryError, Rejected
from registry.facts import AttestationFacts, EvidenceKind, SubjectDigest
from registry.statements import IN_TOTO_PAYLOAD_TYPE, MODEL_SIGNING_V1, parse_json
from registry.timeutil import check_now
from registry.trust import Purpose, TrustRoot, TrustStore

MAX_SIGNATURE_BYTES = 64 << 20


def _pem_hint(root: TrustRoot) -> str | None:
    try:
        return hashlib.sha256(root.public_pem()).hexdigest()
    except RegistryError:
        return None


def _signing_root(bundle: dict[str, Any], store: TrustStore, now: datetime) -> TrustRoot:
    material = bundle.get("verificationMaterial") or {}
    hint = (material.get("publicKey") or {}).get("hint")
    if not isinstance(hint, str) or not hint:
        raise Rejected(Reason.UNTRUSTED_SIGNER, "model signature names no public key")
    for root in store.list(Purpose.ATTESTER):
        if _pem_hint(root) == hint:
            root.check_active(now)
            return root
    raise Rejected(Reason.UNTRUSTED_SIGNER, f"no trusted attester key has hint `{hint}`")


def _statement(bundle: dict[str, Any]) -> dict[str, Any]:
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "model signature has no DSSE envelope")
    if envelope.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
        raise Rejected(
            Reason.UNEXPECTED_PAYLOAD_TYPE, f"payloadType `{envelope.get('payloadType')}`"
        )
    try:
        payload = base64.b64decode(envelope.get("payload", ""), validate=True)
    except ValueError as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, "envelope payload is not base64") from exc
    statement = parse_json(payload, "statement")
    if not isinstance(statement, dict):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "statement is not a JSON object")
    if statement.get("predicateType") != MODEL_SIGNING_V1:
        raise Rejected(
            Reason.UNEXPECTED_PREDICATE_TYPE,
            f"predicateType `{statement.get('predicateType')}`, expected `{MODEL_SIGNING_V1}`",
        )
    return statement


def _library_verify(model_dir: Path, signature: bytes, public_pem: bytes) -> None:
    # Imported here: model_signing pulls in sigstore and requests (~0.5 s), only needed now.
    from model_signing import verifying  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="aion-modelsig-") as tmp:
        sig_path, key_path = Path(tmp, "model.sig"), Path(tmp, "key.pem")
        sig_path.write_bytes(signature)
        key_path.write_bytes(public_pem)
        config = verifying.Config()  # type: ignore[no-untyped-call]
        config.use_elliptic_key_verifier(public_key=key_path)
        try:
            config.verify(model_dir, sig_path)
        except InvalidSignature as exc:
            raise Rejected(Reason.BAD_SIGNATURE, "model signature does not verify") from exc
        except ValueError as exc:
            reason = Reason.DIGEST_MISMATCH if "mismatch" in str(exc) else Reason.BAD_SIGNATURE
            raise Rejected(reason, f"model does not match its signature ({exc})") from exc
        except (KeyError, TypeError) as exc:
            raise Rejected(Reason.MALFORMED_EVIDENCE, f"malformed model signature ({exc})") from exc


def verify_model_signature(
    model_dir: str | Path,
    signature: bytes,
    store: TrustStore,
    *,
    now: datetime,
) -> AttestationFacts:
    """Verify a model directory against a key-based ``model-signing`` signature."""
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise Rejected(Reason.UPLOAD_TOO_LARGE, "model signature is too large")
    bundle = parse_json(signature, "model signature")
    if not isinstance(bundle, dict):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "model signature is not a JSON object")
    root = _signing_root(bundle, store, check_now(now))
    statement = _statement(bundle)
    _library_verify(Path(model_dir), signature, root.public_pem())
    subject = statement["subject"][0]
    resources = statement.get("predicate", {}).get("resources", [])
    return AttestationFacts(
        kind=EvidenceKind.MODEL_SIGNING,
        signer_key_ids=(root.key_id,),
        subject_digests=(SubjectDigest(subject["name"], subject["digest"]["sha256"]),),
        predicate_types=(MODEL_SIGNING_V1,),
        model_name=subject["name"],
        model_digest=subject["digest"]["sha256"],
        file_digests=tuple(
            SubjectDigest(r["name"], r["digest"]) for r in resources if r["algorithm"] == "sha256"
        ),
    )
