"""Digests we compute ourselves, and the checks on digests and signatures we are handed.

The old platform shipped ``integrity {sha256, signature}`` values that nothing
checked: ``minisign:ABC123``, an all-zero sha256, a 32-hex-digit "sha256". Each
is refused here with its own reason.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from registry.errors import Reason, Rejected

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CHUNK_SIZE = 1 << 20

# Signature strings the old platform carried instead of signatures.
PLACEHOLDER_SIGNATURE = re.compile(
    r"(?i)^\s*((minisign|cosign|gpg|pgp|sig|sha256|ed25519)\s*:\s*)?"
    r"(abc123|xyz|todo|tbd|placeholder|changeme|dummy|fake|test|unsigned|none|null|n/a|0+|x+)?\s*$"
)


@dataclass(frozen=True, slots=True)
class ArtifactDigest:
    """The sha256 of an artifact's bytes as we computed them, and their length."""

    sha256: str
    size: int


def check_sha256(value: object, *, what: str = "sha256") -> str:
    """``value`` as a well-formed, non-placeholder sha256 hex digest (lower-cased)."""
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value.strip().lower()):
        shown = value if isinstance(value, str) else type(value).__name__
        raise Rejected(Reason.DIGEST_MALFORMED, f"{what} `{shown}` is not 64 hexadecimal digits")
    digest = value.strip().lower()
    if set(digest) == {"0"}:
        raise Rejected(Reason.DIGEST_ALL_ZERO, f"{what} is all zeros (a placeholder)")
    return digest


def is_placeholder_signature(value: str) -> bool:
    """True for the placeholder strings the old platform used as "signatures"."""
    return bool(PLACEHOLDER_SIGNATURE.fullmatch(value))


def check_integrity(sha256: object, signature: object, artifact: ArtifactDigest) -> None:
    """Check a manifest's ``integrity {sha256, signature}`` against the bytes we hashed.

    A bare signature string is never evidence on its own (evidence is an in-toto
    layout or a DSSE envelope), so a placeholder is refused as such and anything
    else as unsupported.
    """
    declared = check_sha256(sha256, what="integrity.sha256")
    if declared != artifact.sha256:
        raise Rejected(
            Reason.DIGEST_MISMATCH,
            f"integrity.sha256 `{declared}` does not match the artifact (`{artifact.sha256}`)",
        )
    if signature is None:
        return
    if not isinstance(signature, str) or is_placeholder_signature(signature):
        raise Rejected(
            Reason.PLACEHOLDER_SIGNATURE, f"integrity.signature `{signature}` is a placeholder"
        )
    raise Rejected(
        Reason.UNSUPPORTED_SIGNATURE,
        "a bare integrity.signature string is not evidence; supply an in-toto layout "
        "or a DSSE envelope",
    )


def limit_chunks(chunks: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """Pass chunks through, refusing the stream once it exceeds ``max_bytes``."""
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise Rejected(
                Reason.UPLOAD_TOO_LARGE, f"artifact is larger than the limit of {max_bytes} bytes"
            )
        yield chunk


def digest_chunks(
    chunks: Iterable[bytes], *, max_bytes: int, expected_size: int | None = None
) -> ArtifactDigest:
    """Hash a stream of chunks, refusing more than ``max_bytes`` or fewer than announced."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in limit_chunks(chunks, max_bytes):
        size += len(chunk)
        hasher.update(chunk)
    if expected_size is not None and size != expected_size:
        raise Rejected(
            Reason.UPLOAD_TRUNCATED,
            f"artifact has {size} bytes, {expected_size} were announced",
        )
    return ArtifactDigest(hasher.hexdigest(), size)


def read_chunks(path: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The bytes of a file in chunks (the CLI's way to feed :func:`digest_chunks`)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk
