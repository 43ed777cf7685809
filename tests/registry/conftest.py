"""Evidence made by the real tools: keys, in-toto layouts and links, DSSE envelopes.

Keys are generated once per session; everything signed is signed by the
libraries themselves, never written by hand.
"""

from __future__ import annotations

import base64
import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from in_toto.models.layout import Inspection, Layout, Step
from in_toto.models.link import FILENAME_FORMAT
from in_toto.models.metadata import Metablock
from in_toto.runlib import in_toto_run
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, Signer, SSlibKey

from registry import InMemoryTrustStore, Purpose, TrustRoot

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ARTIFACT = b"model weights v1\n"
# in-toto 3.1.0 records artifacts through a pathspec API that pathspec now deprecates.
GITWILDMATCH_DEPRECATION = "GitWildMatchPattern"
BUILDER = "https://github.com/aion/builders/gha@v1"


@dataclass(frozen=True)
class Keys:
    owner: CryptoSigner
    func1: CryptoSigner
    func2: CryptoSigner
    attester: CryptoSigner
    stranger: CryptoSigner
    ec_attester: CryptoSigner
    func1_private: Ed25519PrivateKey


@pytest.fixture(scope="session")
def keys() -> Keys:
    func1_private = Ed25519PrivateKey.generate()
    return Keys(
        owner=CryptoSigner.generate_ed25519(),
        func1=CryptoSigner(func1_private),
        func2=CryptoSigner.generate_ed25519(),
        attester=CryptoSigner.generate_ed25519(),
        stranger=CryptoSigner.generate_ed25519(),
        ec_attester=CryptoSigner.generate_ecdsa(),
        func1_private=func1_private,
    )


def root(signer: Signer, purpose: Purpose, **kwargs: Any) -> TrustRoot:
    return TrustRoot.from_public_key(signer.public_key.to_dict(), purpose, **kwargs)


@pytest.fixture
def store(keys: Keys) -> InMemoryTrustStore:
    return InMemoryTrustStore(
        [
            root(keys.owner, Purpose.LAYOUT_OWNER),
            root(keys.attester, Purpose.ATTESTER),
            root(keys.ec_attester, Purpose.ATTESTER),
            root(keys.func1, Purpose.FUNCTIONARY),
            root(keys.func2, Purpose.FUNCTIONARY),
        ]
    )


def key_dict(signer: Signer) -> dict[str, Any]:
    return {**signer.public_key.to_dict(), "keyid": signer.public_key.keyid}


def make_layout(
    functionaries: list[Signer],
    *,
    threshold: int = 1,
    expires: datetime = NOW + timedelta(days=30),
    product_rules: list[list[str]] | None = None,
    inspections: list[Inspection] | None = None,
) -> Layout:
    layout = Layout()
    layout.expires = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    for signer in functionaries:
        layout.add_functionary_key(key_dict(signer))
    step = Step(name="build")
    step.pubkeys = list(dict.fromkeys(s.public_key.keyid for s in functionaries))
    step.threshold = threshold
    step.expected_products = product_rules or [["CREATE", "model.bin"], ["DISALLOW", "*"]]
    layout.steps = [step]
    layout.inspect = inspections or []
    return layout


def sign_layout(layout: Layout, *signers: Signer) -> bytes:
    metadata = Metablock(signed=layout)
    for signer in signers:
        metadata.create_signature(signer)
    return json.dumps(metadata.to_dict()).encode()


def make_link(workdir: Path, signer: Signer, files: dict[str, bytes]) -> tuple[str, bytes]:
    """Run the `build` step with in-toto over ``files`` in ``workdir``; name and link bytes."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", GITWILDMATCH_DEPRECATION, DeprecationWarning)
        link = in_toto_run(
            "build",
            [],
            sorted(files),
            [],
            signer=signer,
            base_path=str(workdir),
            metadata_directory=str(workdir),  # in-toto writes the link file; keep it in tmp
        )
    name = FILENAME_FORMAT.format(step_name="build", keyid=signer.public_key.keyid)
    return name, json.dumps(link.to_dict()).encode()


def alias_signer(keys: Keys, alias: str) -> CryptoSigner:
    """func1's private key presented under a second key id."""
    public = keys.func1.public_key
    return CryptoSigner(
        keys.func1_private, SSlibKey(alias, public.keytype, public.scheme, public.keyval)
    )


def slsa_statement(
    digest: str,
    *,
    builder: str = BUILDER,
    parameters: dict[str, Any] | None = None,
    predicate_type: str = "https://slsa.dev/provenance/v1",
    statement_type: str = "https://in-toto.io/Statement/v1",
) -> dict[str, Any]:
    return {
        "_type": statement_type,
        "subject": [{"name": "model.bin", "digest": {"sha256": digest}}],
        "predicateType": predicate_type,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://aion.dev/build/model@v1",
                "externalParameters": parameters if parameters is not None else {"repository": "x"},
            },
            "runDetails": {"builder": {"id": builder}},
        },
    }


def envelope(
    statement: dict[str, Any],
    signer: Signer,
    *,
    payload_type: str = "application/vnd.in-toto+json",
) -> bytes:
    env = Envelope(json.dumps(statement).encode(), payload_type, {})
    env.sign(signer)
    return json.dumps(env.to_dict()).encode()


def replace_payload(raw: bytes, statement: dict[str, Any]) -> bytes:
    """Swap the signed payload for another one, keeping the signature (a forgery)."""
    data = json.loads(raw)
    data["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(data).encode()
