"""Content-addressed artifact storage: bytes in, sha256 out, verified on every read.

The :class:`ArtifactStore` protocol only speaks digests and chunk streams, so an
S3-compatible implementation (multipart upload, ranged reads) fits behind it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from registry.digests import CHUNK_SIZE, ArtifactDigest, check_sha256, limit_chunks
from registry.errors import ArtifactCorrupted, ArtifactNotFound, Reason, Rejected

DEFAULT_MAX_BYTES = 2 << 30


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Upload limits of a store."""

    max_bytes: int = DEFAULT_MAX_BYTES


class ArtifactStore(Protocol):
    """Artifacts addressed by the sha256 of their bytes."""

    def put(self, chunks: Iterable[bytes], *, expected_sha256: str | None = None) -> ArtifactDigest:
        """Store a stream; refuses oversize uploads and a digest other than ``expected_sha256``."""
        ...

    def get(self, sha256: str) -> bytes:
        """The whole artifact, verified against its digest."""
        ...

    def stream(self, sha256: str) -> Iterator[bytes]:
        """The artifact in chunks; raises :class:`ArtifactCorrupted` at the end if it is."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether an artifact with that digest is stored."""
        ...

    def delete(self, sha256: str) -> None:
        """Remove the artifact (no error if absent)."""
        ...


def _check_expected(actual: ArtifactDigest, expected: str | None) -> None:
    if expected is not None and check_sha256(expected) != actual.sha256:
        raise Rejected(
            Reason.DIGEST_MISMATCH,
            f"upload hashes to `{actual.sha256}`, `{expected}` was declared",
        )


def _verified(sha256: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
        yield chunk
    if hasher.hexdigest() != sha256:
        raise ArtifactCorrupted(f"artifact `{sha256}` no longer matches its digest")


class FilesystemArtifactStore:
    """Artifacts as files ``<root>/<aa>/<sha256>``, written atomically (temp file + rename)."""

    def __init__(self, root: str | Path, limits: StoreLimits | None = None) -> None:
        self._root = Path(root)
        self._limits = limits or StoreLimits()

    def _path(self, sha256: str) -> Path:
        digest = check_sha256(sha256)
        return self._root / digest[:2] / digest

    def put(self, chunks: Iterable[bytes], *, expected_sha256: str | None = None) -> ArtifactDigest:
        self._root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._root, prefix=".upload-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                digest = self._write(chunks, handle)
                handle.flush()
                os.fsync(handle.fileno())
            _check_expected(digest, expected_sha256)
            target = self._path(digest.sha256)
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return digest

    def _write(self, chunks: Iterable[bytes], handle: IO[bytes]) -> ArtifactDigest:
        hasher = hashlib.sha256()
        size = 0
        for chunk in limit_chunks(chunks, self._limits.max_bytes):
            size += len(chunk)
            hasher.update(chunk)
            handle.write(chunk)
        return ArtifactDigest(hasher.hexdigest(), size)

    def get(self, sha256: str) -> bytes:
        return b"".join(self.stream(sha256))

    def stream(self, sha256: str) -> Iterator[bytes]:
        path = self._path(sha256)
        if not path.is_file():
            raise ArtifactNotFound(f"no artifact `{sha256}`")
        return _verified(check_sha256(sha256), self._read(path))

    @staticmethod
    def _read(path: Path) -> Iterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)


class InMemoryArtifactStore:
    """An :class:`ArtifactStore` in a dict, for unit tests."""

    def __init__(self, limits: StoreLimits | None = None) -> None:
        self._limits = limits or StoreLimits()
        self.blobs: dict[str, bytes] = {}

    def put(self, chunks: Iterable[bytes], *, expected_sha256: str | None = None) -> ArtifactDigest:
        data = b"".join(limit_chunks(chunks, self._limits.max_bytes))
        digest = ArtifactDigest(hashlib.sha256(data).hexdigest(), len(data))
        _check_expected(digest, expected_sha256)
        self.blobs[digest.sha256] = data
        return digest

    def get(self, sha256: str) -> bytes:
        return b"".join(self.stream(sha256))

    def stream(self, sha256: str) -> Iterator[bytes]:
        digest = check_sha256(sha256)
        if digest not in self.blobs:
            raise ArtifactNotFound(f"no artifact `{sha256}`")
        return _verified(digest, [self.blobs[digest]])

    def exists(self, sha256: str) -> bool:
        return check_sha256(sha256) in self.blobs

    def delete(self, sha256: str) -> None:
        self.blobs.pop(check_sha256(sha256), None)
