"""OpenSSF model signatures made with `model-signing` and an elliptic-curve key."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from model_signing import signing

from registry import (
    EvidenceKind,
    InMemoryTrustStore,
    Reason,
    Rejected,
    verify_model_signature,
)

from .conftest import NOW, Keys


@pytest.fixture
def signed_model(keys: Keys, tmp_path: Path) -> tuple[Path, bytes]:
    model = tmp_path / "llama3.2-3b"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00\x01weights")
    (model / "config.json").write_text('{"layers": 2}')
    key = tmp_path / "signing-key.pem"
    key.write_bytes(keys.ec_attester.private_bytes)
    signature = tmp_path / "model.sig"
    signing.Config().use_elliptic_key_signer(private_key=key).sign(model, signature)
    return model, signature.read_bytes()


def _reject(reason: Reason, model: Path, signature: bytes, store: InMemoryTrustStore) -> None:
    with pytest.raises(Rejected) as info:
        verify_model_signature(model, signature, store, now=NOW)
    assert info.value.reason is reason, info.value


def test_model_signature_happy_path(
    keys: Keys, store: InMemoryTrustStore, signed_model: tuple[Path, bytes]
) -> None:
    model, signature = signed_model
    facts = verify_model_signature(model, signature, store, now=NOW)
    assert facts.kind is EvidenceKind.MODEL_SIGNING
    assert facts.signer_key_ids == (keys.ec_attester.public_key.keyid,)
    assert facts.model_name == "llama3.2-3b"
    files = {d.name: d.sha256 for d in facts.file_digests}
    assert files["weights.bin"] == hashlib.sha256(b"\x00\x01weights").hexdigest()
    assert facts.to_context()["model_digest"] == facts.model_digest


def test_tampered_model_file(store: InMemoryTrustStore, signed_model: tuple[Path, bytes]) -> None:
    model, signature = signed_model
    (model / "weights.bin").write_bytes(b"\x00\x01backdoor")
    _reject(Reason.DIGEST_MISMATCH, model, signature, store)


def test_untrusted_model_signer(signed_model: tuple[Path, bytes]) -> None:
    model, signature = signed_model
    _reject(Reason.UNTRUSTED_SIGNER, model, signature, InMemoryTrustStore())


def test_revoked_model_signer(
    keys: Keys, store: InMemoryTrustStore, signed_model: tuple[Path, bytes]
) -> None:
    store.revoke(keys.ec_attester.public_key.keyid)
    model, signature = signed_model
    _reject(Reason.REVOKED_KEY, model, signature, store)


def test_bad_model_signature(store: InMemoryTrustStore, signed_model: tuple[Path, bytes]) -> None:
    model, signature = signed_model
    bundle = json.loads(signature)
    sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    _reject(Reason.BAD_SIGNATURE, model, json.dumps(bundle).encode(), store)
