"""Digests we compute, integrity declarations we are handed, and the artifact store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from registry import (
    ArtifactCorrupted,
    ArtifactDigest,
    ArtifactNotFound,
    FilesystemArtifactStore,
    InMemoryArtifactStore,
    Reason,
    Rejected,
    StoreLimits,
    check_integrity,
    digest_chunks,
)

DATA = b"agent template bundle"
SHA = hashlib.sha256(DATA).hexdigest()
DIGEST = ArtifactDigest(SHA, len(DATA))


def _reason(exc: pytest.ExceptionInfo[Rejected]) -> Reason:
    return exc.value.reason


@pytest.mark.parametrize(
    ("sha256", "signature", "reason"),
    [
        ("0" * 64, None, Reason.DIGEST_ALL_ZERO),
        (hashlib.md5(DATA).hexdigest(), None, Reason.DIGEST_MALFORMED),
        (hashlib.sha256(b"stale").hexdigest(), None, Reason.DIGEST_MISMATCH),
        (SHA, "minisign:ABC123", Reason.PLACEHOLDER_SIGNATURE),
        (SHA, "", Reason.PLACEHOLDER_SIGNATURE),
        (
            SHA,
            "minisign:RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3",
            Reason.UNSUPPORTED_SIGNATURE,
        ),
    ],
)
def test_integrity_declarations_of_the_old_platform(
    sha256: str, signature: str | None, reason: Reason
) -> None:
    with pytest.raises(Rejected) as info:
        check_integrity(sha256, signature, DIGEST)
    assert _reason(info) is reason


def test_integrity_with_matching_digest_and_no_signature() -> None:
    check_integrity(SHA.upper(), None, DIGEST)


def test_digest_chunks_streams() -> None:
    assert digest_chunks([DATA[:5], DATA[5:]], max_bytes=100) == DIGEST


def test_upload_too_large() -> None:
    with pytest.raises(Rejected) as info:
        digest_chunks([DATA, DATA], max_bytes=len(DATA) + 1)
    assert _reason(info) is Reason.UPLOAD_TOO_LARGE


def test_upload_truncated() -> None:
    with pytest.raises(Rejected) as info:
        digest_chunks([DATA[:4]], max_bytes=100, expected_size=len(DATA))
    assert _reason(info) is Reason.UPLOAD_TRUNCATED


@pytest.fixture(params=["filesystem", "memory"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> FilesystemArtifactStore | InMemoryArtifactStore:
    limits = StoreLimits(max_bytes=64)
    if request.param == "filesystem":
        return FilesystemArtifactStore(tmp_path / "artifacts", limits)
    return InMemoryArtifactStore(limits)


def test_store_round_trip(store: FilesystemArtifactStore | InMemoryArtifactStore) -> None:
    assert store.put([DATA[:3], DATA[3:]], expected_sha256=SHA) == DIGEST
    assert store.exists(SHA)
    assert store.get(SHA) == DATA
    assert b"".join(store.stream(SHA)) == DATA
    store.delete(SHA)
    assert not store.exists(SHA)
    with pytest.raises(ArtifactNotFound):
        store.get(SHA)


def test_store_size_limit(store: FilesystemArtifactStore | InMemoryArtifactStore) -> None:
    with pytest.raises(Rejected) as info:
        store.put([b"x" * 40, b"x" * 40])
    assert _reason(info) is Reason.UPLOAD_TOO_LARGE
    assert not store.exists(hashlib.sha256(b"x" * 80).hexdigest())


def test_store_refuses_declared_digest_mismatch(
    store: FilesystemArtifactStore | InMemoryArtifactStore,
) -> None:
    with pytest.raises(Rejected) as info:
        store.put([DATA], expected_sha256=hashlib.sha256(b"else").hexdigest())
    assert _reason(info) is Reason.DIGEST_MISMATCH
    assert not store.exists(SHA)


def test_store_rejects_malformed_digest(
    store: FilesystemArtifactStore | InMemoryArtifactStore,
) -> None:
    with pytest.raises(Rejected) as info:
        store.get("../../etc/passwd")
    assert _reason(info) is Reason.DIGEST_MALFORMED


def test_filesystem_corruption_detected_on_read(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    store.put([DATA])
    (tmp_path / SHA[:2] / SHA).write_bytes(b"bit rot")
    with pytest.raises(ArtifactCorrupted):
        store.get(SHA)
    with pytest.raises(ArtifactCorrupted):
        list(store.stream(SHA))


def test_memory_corruption_detected_on_read() -> None:
    store = InMemoryArtifactStore()
    store.put([DATA])
    store.blobs[SHA] = b"bit rot"
    with pytest.raises(ArtifactCorrupted):
        store.get(SHA)


def test_filesystem_leaves_no_temp_files(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path, StoreLimits(max_bytes=4))
    with pytest.raises(Rejected):
        store.put([DATA])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
