"""Fixtures shared by every test layer."""

from __future__ import annotations

import os

# See server/cli/__init__.py: no native stack trace capture on engine errors.
os.environ.setdefault("RUST_LIB_BACKTRACE", "0")

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, settings

from tests.services import require

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"


# Property tests must not fail on timing (a loaded CI machine): no per-example deadline,
# no "generation is slow" health check. Every property still runs all its examples.
settings.register_profile("aion", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("aion")


@pytest.fixture(scope="session")
def opa_bin() -> Path:
    """The real OPA binary built by scripts/install-opa.sh."""
    found = os.environ.get("AION_OPA_BIN") or shutil.which("opa")
    if not found or not Path(found).exists():
        require("OPA (AION_OPA_BIN)")
    return Path(str(found))


def generate_key_pair(algorithm: str) -> tuple[str, str]:
    """A fresh (private PEM, public PEM) for RS256 (RSA 2048), ES256 (P-256) or EdDSA (Ed25519)."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"no key generator for {algorithm}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.fixture(scope="session")
def key_pair_factory() -> Callable[[str], tuple[str, str]]:
    """Make another key pair on demand (for "right key id, wrong key" cases)."""
    return generate_key_pair


@pytest.fixture(scope="session")
def key_pairs() -> dict[str, tuple[str, str]]:
    """Freshly generated (private PEM, public PEM) per signing algorithm."""
    return {alg: generate_key_pair(alg) for alg in ("RS256", "ES256", "EdDSA")}


@pytest.fixture
def key_files(
    tmp_path: Path, key_pairs: dict[str, tuple[str, str]]
) -> dict[str, tuple[Path, Path]]:
    """The key pairs written to files, as the CLI takes them."""
    out = {}
    for alg, (private, public) in key_pairs.items():
        priv, pub = tmp_path / f"{alg}.pem", tmp_path / f"{alg}.pub"
        priv.write_text(private)
        pub.write_text(public)
        out[alg] = (priv, pub)
    return out
