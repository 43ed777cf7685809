"""Package boundaries: no server stack on import, a checked public surface, keyless refusal."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

import registry
from registry import (
    ArtifactDigest,
    InMemoryTrustStore,
    Purpose,
    Reason,
    Rejected,
    TrustRoot,
    verify_sigstore_bundle,
)

from .conftest import NOW, Keys, root

FORBIDDEN = ("litestar", "piccolo", "asyncpg", "redis", "arq", "server", "kernel")
DIGEST = ArtifactDigest(hashlib.sha256(b"x").hexdigest(), 1)


def test_import_registry_loads_no_server_stack() -> None:
    code = "import sys, json, registry\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(json.loads(out.stdout))
    assert "registry.layout" in loaded
    offending = sorted(m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + "."))
    assert offending == []


def test_public_surface_is_all_exported() -> None:
    exported = {name for name in dir(registry) if not name.startswith("_")}
    modules = {
        "digests",
        "errors",
        "facts",
        "index",
        "lock",
        "keyless",
        "layout",
        "links",
        "modelsig",
        "statements",
        "store",
        "timeutil",
        "trust",
    }
    assert exported - modules == set(registry.__all__)


def test_sigstore_bundle_without_trust_root_is_refused() -> None:
    with pytest.raises(Rejected) as info:
        verify_sigstore_bundle(b"{}", DIGEST, trusted_root=None, now=NOW)
    assert info.value.reason is Reason.SIGSTORE_NO_TRUST_ROOT


def test_sigstore_bundle_with_trust_root_is_not_yet_accepted() -> None:
    with pytest.raises(Rejected) as info:
        verify_sigstore_bundle(b"{}", DIGEST, trusted_root=b"{}", now=NOW)
    assert info.value.reason is Reason.SIGSTORE_UNSUPPORTED


def test_trust_root_from_pem_matches_key_dict(keys: Keys) -> None:
    public = keys.ec_attester.public_key
    from_pem = TrustRoot.from_public_key(public.keyval["public"], "attester")
    assert from_pem.key_id == public.keyid == root(keys.ec_attester, Purpose.ATTESTER).key_id
    assert from_pem.public_pem().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_trust_store_lists_by_purpose_and_revokes(keys: Keys) -> None:
    store = InMemoryTrustStore(
        [root(keys.owner, Purpose.LAYOUT_OWNER), root(keys.attester, Purpose.ATTESTER)]
    )
    assert [r.purpose for r in store.list(Purpose.ATTESTER)] == [Purpose.ATTESTER]
    store.revoke(keys.owner.public_key.keyid)
    revoked = store.get(keys.owner.public_key.keyid)
    assert revoked is not None and revoked.revoked
    assert not revoked.is_active(NOW)


def test_rejected_carries_a_stable_code() -> None:
    exc = Rejected(Reason.BAD_SIGNATURE, "nope")
    assert (exc.code, str(exc)) == ("bad_signature", "bad_signature: nope")
    assert len({r.value for r in Reason}) == len(Reason)
