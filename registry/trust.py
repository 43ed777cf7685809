"""Trust roots as values, and the store they are kept in.

A trust root is a public key the tenant trusts for one purpose. Verifiers only
ever ask the store; revocation and expiry are therefore effective for the next
verification. Time is passed in, never read here.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.formats import encode_canonical

# The package re-exports SSlibKey without `__all__`, which strict mypy does not see.
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

from registry.errors import Reason, RegistryError, Rejected


class Purpose(StrEnum):
    """What a trust root may vouch for."""

    LAYOUT_OWNER = "layout-owner"
    FUNCTIONARY = "functionary"
    ATTESTER = "attester"
    BUNDLE_SIGNING = "bundle-signing"


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """One trusted public key.

    ``key`` is the securesystemslib key dict (``keytype``, ``scheme``,
    ``keyval``); ``key_id`` is its securesystemslib key id, the id that
    in-toto and DSSE signatures name.
    """

    key_id: str
    key: Mapping[str, Any]
    purpose: Purpose
    expires: datetime | None = None
    revoked: bool = False

    @classmethod
    def from_public_key(
        cls,
        material: str | bytes | Mapping[str, Any],
        purpose: Purpose | str,
        *,
        expires: datetime | None = None,
        key_id: str | None = None,
    ) -> TrustRoot:
        """A trust root from a PEM public key or a securesystemslib key dict."""
        key = _parse_key(material, key_id)
        return cls(key.keyid, key.to_dict(), Purpose(purpose), expires)

    def sslib_key(self) -> SSlibKey:
        """The securesystemslib key (a fresh object; the library mutates dicts)."""
        return SSlibKey.from_dict(self.key_id, copy.deepcopy(dict(self.key)))

    def key_dict(self) -> dict[str, Any]:
        """The key in the dict form in-toto layouts use (with ``keyid``)."""
        return {**copy.deepcopy(dict(self.key)), "keyid": self.key_id}

    def public_pem(self) -> bytes:
        """The public key as PEM (not available for raw ed25519 keys)."""
        public = self.key.get("keyval", {}).get("public", "")
        if not isinstance(public, str) or "BEGIN PUBLIC KEY" not in public:
            raise RegistryError(f"trust root `{self.key_id}` has no PEM form")
        return public.encode()

    def is_active(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now`` (a root expiring exactly now is expired)."""
        return not self.revoked and (self.expires is None or self.expires > now)

    def check_active(self, now: datetime) -> None:
        """Raise the reason this root may not be used at ``now``."""
        if self.revoked:
            raise Rejected(Reason.REVOKED_KEY, f"key `{self.key_id}` has been revoked")
        if self.expires is not None and self.expires <= now:
            raise Rejected(
                Reason.KEY_EXPIRED,
                f"key `{self.key_id}` expired at {self.expires.isoformat()}",
            )


def _parse_key(material: str | bytes | Mapping[str, Any], key_id: str | None) -> SSlibKey:
    try:
        if isinstance(material, Mapping):
            data = copy.deepcopy(dict(material))
            given = data.pop("keyid", None)
            chosen = key_id or given
            if chosen is None:
                chosen = default_key_id(data)
            return SSlibKey.from_dict(chosen, data)
        raw = material.encode() if isinstance(material, str) else material
        return SSlibKey.from_crypto(load_pem_public_key(raw), keyid=key_id)
    except (KeyError, ValueError, TypeError) as exc:
        raise RegistryError(f"not a usable public key ({exc})") from exc


def default_key_id(key: Mapping[str, Any]) -> str:
    """The securesystemslib default key id: sha256 of the canonical JSON of the key."""
    fields = {name: key[name] for name in ("keytype", "scheme", "keyval")}
    canonical = encode_canonical(fields)
    if not isinstance(canonical, str):
        raise RegistryError("key cannot be canonicalised")
    return hashlib.sha256(canonical.encode()).hexdigest()


class TrustStore(Protocol):
    """Where a tenant's trust roots live (the server backs this with a table)."""

    def get(self, key_id: str) -> TrustRoot | None:
        """The root with that key id, revoked or not."""
        ...

    def list(self, purpose: Purpose | None = None) -> Sequence[TrustRoot]:
        """Every root (for one purpose), revoked ones included."""
        ...

    def add(self, root: TrustRoot) -> None:
        """Add or replace a root."""
        ...

    def revoke(self, key_id: str) -> None:
        """Mark a root revoked; effective for the next verification."""
        ...


class InMemoryTrustStore:
    """A :class:`TrustStore` in a dict, for tests, the CLI and request-scoped snapshots."""

    def __init__(self, roots: Iterable[TrustRoot] = ()) -> None:
        self._roots: dict[str, TrustRoot] = {r.key_id: r for r in roots}

    def get(self, key_id: str) -> TrustRoot | None:
        return self._roots.get(key_id)

    def list(self, purpose: Purpose | None = None) -> Sequence[TrustRoot]:
        return [r for r in self._roots.values() if purpose is None or r.purpose == purpose]

    def add(self, root: TrustRoot) -> None:
        self._roots[root.key_id] = root

    def revoke(self, key_id: str) -> None:
        root = self._roots.get(key_id)
        if root is None:
            raise RegistryError(f"no trust root `{key_id}`")
        self._roots[key_id] = replace(root, revoked=True)


def trusted_signers(
    store: TrustStore, key_ids: Iterable[str], purpose: Purpose, now: datetime
) -> list[TrustRoot]:
    """The active roots for ``purpose`` among the key ids that signed something.

    Raises the most specific reason when none is usable: a revoked or expired
    root for that purpose, else ``untrusted_signer``.
    """
    usable: list[TrustRoot] = []
    refusal: Rejected | None = None
    seen = list(dict.fromkeys(key_ids))
    for key_id in seen:
        root = store.get(key_id)
        if root is None or root.purpose != purpose:
            continue
        try:
            root.check_active(now)
        except Rejected as exc:
            refusal = refusal or exc
            continue
        usable.append(root)
    if usable:
        return usable
    if refusal is not None:
        raise refusal
    shown = ", ".join(f"`{k}`" for k in seen) or "none"
    raise Rejected(
        Reason.UNTRUSTED_SIGNER, f"no trusted {purpose.value} key signed this (signers: {shown})"
    )
