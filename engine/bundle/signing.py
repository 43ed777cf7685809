"""Bundle signatures in OPA's format, verified fail-closed.

`.signatures.json` is ``{"signatures": ["<JWT>"]}``. The JWT payload lists
every file of the bundle with its digest (:mod:`engine.bundle.canonical`),
plus ``keyid`` (deprecated in OPA, still written for old readers), optional
``scope``, ``iat`` and ``iss``. We add an optional validity window (``nbf`` /
``exp``), checked against a time the caller passes in, and anti-rollback:
the signed manifest revision must be newer than the last accepted one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jwt

from engine.bundle.canonical import HASH_ALGORITHMS, file_digest
from engine.bundle.files import SIGNATURES_FILE
from engine.bundle.manifest import parse_manifest
from engine.errors import RollbackError, SignatureError

#: Asymmetric algorithms we sign and verify with; HS256 is accepted for OPA parity.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A trusted key: PEM public key (or HMAC secret), its algorithm and optional scope."""

    key: str
    algorithm: str = "RS256"
    scope: str = ""


@dataclass(frozen=True, slots=True)
class SignedClaims:
    """What a verified signature vouches for."""

    key_id: str
    algorithm: str
    files: dict[str, str]
    claims: dict[str, Any] = field(default_factory=dict)


def _check_alg(alg: str) -> None:
    if alg not in ALGORITHMS:
        raise SignatureError(
            f"unsupported signing algorithm `{alg}`; use one of {', '.join(ALGORITHMS)}"
        )


def sign_files(
    files: Mapping[str, bytes],
    private_key: str,
    *,
    algorithm: str = "RS256",
    key_id: str = "default",
    scope: str = "",
    issued_at: datetime | None = None,
    issuer: str = "",
    not_before: datetime | None = None,
    expires: datetime | None = None,
) -> bytes:
    """The `.signatures.json` content signing every file in ``files`` except itself."""
    _check_alg(algorithm)
    listing = [
        {"name": name, "hash": file_digest(name, raw), "algorithm": "SHA-256"}
        for name, raw in sorted(files.items())
        if name != SIGNATURES_FILE
    ]
    payload: dict[str, Any] = {"files": listing, "keyid": key_id}
    for claim, value in (("scope", scope), ("iss", issuer)):
        if value:
            payload[claim] = value
    for claim, when in (("iat", issued_at), ("nbf", not_before), ("exp", expires)):
        if when is not None:
            payload[claim] = int(when.timestamp())
    try:
        token = jwt.encode(payload, private_key, algorithm=algorithm, headers={"kid": key_id})
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise SignatureError(f"cannot sign with the given key and `{algorithm}`: {exc}") from exc
    return json.dumps({"signatures": [token]}, indent=2).encode() + b"\n"


def _token(files: Mapping[str, bytes]) -> str:
    raw = files.get(SIGNATURES_FILE)
    if raw is None:
        raise SignatureError("bundle is not signed: `.signatures.json` is missing")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise SignatureError(f"`.signatures.json`: invalid JSON ({exc})") from exc
    sigs = doc.get("signatures") if isinstance(doc, dict) else None
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], str):
        raise SignatureError("`.signatures.json`: expected exactly one JWT in `signatures`")
    return sigs[0]


def _decode(token: str, keys: Mapping[str, VerificationKey], key_id: str | None) -> SignedClaims:
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise SignatureError(f"`.signatures.json`: malformed JWT ({exc})") from exc
    kid = key_id or header.get("kid") or unverified.get("keyid")
    if not isinstance(kid, str) or not kid:
        raise SignatureError("signature names no key id (`kid`)")
    trusted = keys.get(kid)
    if trusted is None:
        raise SignatureError(f"signature key `{kid}` is not trusted")
    alg = header.get("alg")
    if alg != trusted.algorithm:
        raise SignatureError(
            f"signature algorithm `{alg}` does not match key `{kid}` ({trusted.algorithm})"
        )
    _check_alg(trusted.algorithm)
    try:
        claims = jwt.decode(
            token,
            trusted.key,
            algorithms=[trusted.algorithm],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
            },
        )
    except jwt.InvalidKeyError as exc:
        raise SignatureError(f"trusted key `{kid}` is not a valid {trusted.algorithm} key") from exc
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise SignatureError(f"signature does not verify with key `{kid}`: {exc}") from exc
    listing = claims.get("files")
    if not isinstance(listing, list):
        raise SignatureError("signature payload has no `files` list")
    files: dict[str, str] = {}
    for entry in listing:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SignatureError("signature payload has a malformed file entry")
        files[entry["name"].lstrip("/")] = f"{entry.get('algorithm', '')}:{entry.get('hash', '')}"
    if claims.get("scope", "") != trusted.scope:
        raise SignatureError(
            f"signature scope `{claims.get('scope', '')}` does not match `{trusted.scope}`"
        )
    return SignedClaims(kid, trusted.algorithm, files, claims)


def _check_files(files: Mapping[str, bytes], signed: dict[str, str]) -> None:
    present = {n for n in files if n != SIGNATURES_FILE}
    missing = sorted(set(signed) - present)
    if missing:
        raise SignatureError(f"files signed but not in bundle: {', '.join(missing)}")
    extra = sorted(present - set(signed))
    if extra:
        raise SignatureError(f"files in bundle but not signed: {', '.join(extra)}")
    for name in sorted(present):
        algorithm, _, want = signed[name].partition(":")
        if not algorithm:
            raise SignatureError(f"`{name}`: no hashing algorithm in signature")
        if algorithm not in HASH_ALGORITHMS:
            raise SignatureError(f"`{name}`: unsupported hashing algorithm `{algorithm}`")
        got = file_digest(name, files[name], algorithm)
        if got != want.lower():
            raise SignatureError(f"`{name}`: digest mismatch (signed {want}, found {got})")


def _check_window(claims: dict[str, Any], now: datetime) -> None:
    ts = now.timestamp()
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if isinstance(nbf, int | float) and ts < nbf:
        raise SignatureError(f"bundle signature is not valid before {int(nbf)}")
    if isinstance(exp, int | float) and ts >= exp:
        raise SignatureError(f"bundle signature expired at {int(exp)}")


def revision_key(revision: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order of revisions: `9` < `10`, `2026.1.9` < `2026.1.10`."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.findall(r"\d+|[^\d.\-_+]+", revision)
    )


def check_rollback(revision: str, last_accepted: str | None) -> None:
    """Refuse a revision that is not strictly newer than ``last_accepted``."""
    if last_accepted is None:
        return
    if not revision:
        raise RollbackError("bundle has no revision; a revision is needed to prevent rollback")
    if revision_key(revision) <= revision_key(last_accepted):
        raise RollbackError(
            f"revision `{revision}` is not newer than the last accepted revision `{last_accepted}`"
        )


def verify_files(
    files: Mapping[str, bytes],
    keys: Mapping[str, VerificationKey],
    *,
    now: datetime,
    key_id: str | None = None,
    last_revision: str | None = None,
) -> SignedClaims:
    """Verify a bundle's signature fail-closed and return what it vouches for.

    Checks, in order: exactly one JWT, a trusted key id with its own algorithm,
    the signature, the scope, the exact file set and every digest, the
    validity window at ``now``, and that the revision is newer than
    ``last_revision`` for this bundle name.
    """
    signed = _decode(_token(files), keys, key_id)
    _check_files(files, signed.files)
    _check_window(signed.claims, now)
    check_rollback(parse_manifest(files.get(".manifest")).revision, last_revision)
    return signed
