"""DSSE envelopes with in-toto Statements, signed with securesystemslib signers."""

from __future__ import annotations

import hashlib
import json

import pytest

from registry import (
    ArtifactDigest,
    EvidenceKind,
    InMemoryTrustStore,
    Purpose,
    Reason,
    Rejected,
    StatementPolicy,
    verify_statement,
)

from .conftest import (
    ARTIFACT,
    BUILDER,
    NOW,
    Keys,
    envelope,
    replace_payload,
    root,
    slsa_statement,
)

DIGEST = ArtifactDigest(hashlib.sha256(ARTIFACT).hexdigest(), len(ARTIFACT))
POLICY = StatementPolicy(
    builder_ids=frozenset({BUILDER}), external_parameters=frozenset({"repository"})
)


def _reject(
    reason: Reason, raw: bytes, store: InMemoryTrustStore, policy: StatementPolicy = POLICY
) -> None:
    with pytest.raises(Rejected) as info:
        verify_statement(raw, DIGEST, store, now=NOW, policy=policy)
    assert info.value.reason is reason, info.value


def test_slsa_provenance_happy_path(keys: Keys, store: InMemoryTrustStore) -> None:
    raw = envelope(slsa_statement(DIGEST.sha256), keys.attester)
    facts = verify_statement(raw, DIGEST, store, now=NOW, policy=POLICY)
    assert facts.kind is EvidenceKind.IN_TOTO_STATEMENT
    assert facts.predicate_types == ("https://slsa.dev/provenance/v1",)
    assert facts.builder_id == BUILDER
    assert facts.build_type == "https://aion.dev/build/model@v1"
    assert facts.signer_key_ids == (keys.attester.public_key.keyid,)
    assert facts.to_context()["subject_digests"] == [{"name": "model.bin", "sha256": DIGEST.sha256}]


def test_statement_v01_and_ecdsa_attester_accepted(keys: Keys, store: InMemoryTrustStore) -> None:
    statement = slsa_statement(DIGEST.sha256, statement_type="https://in-toto.io/Statement/v0.1")
    facts = verify_statement(
        envelope(statement, keys.ec_attester), DIGEST, store, now=NOW, policy=POLICY
    )
    assert facts.signer_key_ids == (keys.ec_attester.public_key.keyid,)


def test_bad_signature(keys: Keys, store: InMemoryTrustStore) -> None:
    raw = envelope(slsa_statement(DIGEST.sha256), keys.attester)
    forged = replace_payload(raw, slsa_statement(DIGEST.sha256, builder="https://evil.example/b"))
    _reject(Reason.BAD_SIGNATURE, forged, store)


def test_untrusted_signer(keys: Keys, store: InMemoryTrustStore) -> None:
    _reject(Reason.UNTRUSTED_SIGNER, envelope(slsa_statement(DIGEST.sha256), keys.stranger), store)


def test_signer_trusted_for_another_purpose(keys: Keys, store: InMemoryTrustStore) -> None:
    _reject(Reason.UNTRUSTED_SIGNER, envelope(slsa_statement(DIGEST.sha256), keys.owner), store)


def test_revoked_key(keys: Keys, store: InMemoryTrustStore) -> None:
    store.revoke(keys.attester.public_key.keyid)
    _reject(Reason.REVOKED_KEY, envelope(slsa_statement(DIGEST.sha256), keys.attester), store)


def test_expired_key(keys: Keys) -> None:
    store = InMemoryTrustStore([root(keys.attester, Purpose.ATTESTER, expires=NOW)])
    _reject(Reason.KEY_EXPIRED, envelope(slsa_statement(DIGEST.sha256), keys.attester), store)


def test_placeholder_signature(keys: Keys, store: InMemoryTrustStore) -> None:
    data = json.loads(envelope(slsa_statement(DIGEST.sha256), keys.attester))
    data["signatures"][0]["sig"] = "minisign:ABC123"  # the old platform's value (FIXTURES.md)
    _reject(Reason.PLACEHOLDER_SIGNATURE, json.dumps(data).encode(), store)


def test_unexpected_payload_type(keys: Keys, store: InMemoryTrustStore) -> None:
    raw = envelope(slsa_statement(DIGEST.sha256), keys.attester, payload_type="application/json")
    _reject(Reason.UNEXPECTED_PAYLOAD_TYPE, raw, store)


def test_unexpected_statement_type(keys: Keys, store: InMemoryTrustStore) -> None:
    statement = slsa_statement(DIGEST.sha256, statement_type="https://example.com/Statement/v9")
    _reject(Reason.UNEXPECTED_STATEMENT_TYPE, envelope(statement, keys.attester), store)


def test_unexpected_predicate_type(keys: Keys, store: InMemoryTrustStore) -> None:
    statement = slsa_statement(DIGEST.sha256, predicate_type="https://slsa.dev/provenance/v0.2")
    _reject(Reason.UNEXPECTED_PREDICATE_TYPE, envelope(statement, keys.attester), store)


def test_digest_mismatch(keys: Keys, store: InMemoryTrustStore) -> None:
    other = hashlib.sha256(b"another model").hexdigest()
    _reject(Reason.DIGEST_MISMATCH, envelope(slsa_statement(other), keys.attester), store)


def test_digest_of_32_hex_digits(keys: Keys, store: InMemoryTrustStore) -> None:
    short = hashlib.md5(ARTIFACT).hexdigest()
    _reject(Reason.DIGEST_MALFORMED, envelope(slsa_statement(short), keys.attester), store)


def test_all_zero_digest(keys: Keys, store: InMemoryTrustStore) -> None:
    _reject(Reason.DIGEST_ALL_ZERO, envelope(slsa_statement("0" * 64), keys.attester), store)


def test_untrusted_builder(keys: Keys, store: InMemoryTrustStore) -> None:
    statement = slsa_statement(DIGEST.sha256, builder="https://ci.example.org/self-hosted")
    _reject(Reason.UNTRUSTED_BUILDER, envelope(statement, keys.attester), store)


def test_empty_builder_allowlist_trusts_no_builder(keys: Keys, store: InMemoryTrustStore) -> None:
    raw = envelope(slsa_statement(DIGEST.sha256), keys.attester)
    _reject(Reason.UNTRUSTED_BUILDER, raw, store, StatementPolicy())


def test_unknown_build_parameters(keys: Keys, store: InMemoryTrustStore) -> None:
    statement = slsa_statement(DIGEST.sha256, parameters={"repository": "x", "inject": "curl | sh"})
    _reject(Reason.UNKNOWN_BUILD_PARAMETERS, envelope(statement, keys.attester), store)


def test_malformed_envelope(store: InMemoryTrustStore) -> None:
    _reject(Reason.MALFORMED_EVIDENCE, b"[]", store)
