"""`aion registry verify` — check supply-chain evidence in CI before registering.

(`aion registry import` and `aion registry lock` live in :mod:`server.cli.registry_index`.)

Exit 0 prints the verified facts as JSON (what the server puts into
``context.attestations``); exit 1 prints ``reason: <code>: <message>``; exit 2
is a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry import (
    ArtifactDigest,
    AttestationFacts,
    DirectoryLinkSource,
    InMemoryTrustStore,
    LayoutPolicy,
    Purpose,
    RegistryError,
    Rejected,
    StatementPolicy,
    TrustRoot,
    digest_chunks,
    read_chunks,
    verify_layout,
    verify_model_signature,
    verify_statement,
)
from registry.statements import MODEL_SIGNING_V1, SLSA_PROVENANCE_V1
from server.cli import registry_index
from server.cli.common import EXIT_FAIL, EXIT_OK, fail, read_key

DEFAULT_MAX_BYTES = 2 << 30


def _trust_root(path: str, purpose: Purpose) -> TrustRoot:
    text = read_key(path)
    material: str | dict[str, Any] = text
    if not text.lstrip().startswith("-----BEGIN"):
        try:
            material = json.loads(text)
        except ValueError:
            fail(f"key `{path}` is neither a PEM public key nor a securesystemslib key JSON")
    try:
        return TrustRoot.from_public_key(material, purpose)
    except RegistryError as exc:
        fail(f"key `{path}`: {exc.message}")


def _artifact(args: argparse.Namespace) -> ArtifactDigest:
    if not args.artifact:
        fail("--artifact is required with --layout or --attestation")
    if not Path(args.artifact).is_file():
        fail(f"`{args.artifact}`: no such artifact file")
    return digest_chunks(read_chunks(args.artifact), max_bytes=args.max_bytes)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read `{path}` ({exc})")


def _verify_layout(args: argparse.Namespace, now: datetime) -> AttestationFacts:
    if not args.layout_key or not args.links:
        fail("--layout needs --layout-key and --links")
    if not Path(args.links).is_dir():
        fail(f"`{args.links}`: not a directory")
    store = InMemoryTrustStore(_trust_root(k, Purpose.LAYOUT_OWNER) for k in args.layout_key)
    policy = LayoutPolicy(run_inspections=args.run_inspections)
    return verify_layout(
        _read(args.layout),
        DirectoryLinkSource(args.links),
        _artifact(args),
        store,
        now=now,
        policy=policy,
        name=Path(args.layout).stem,
    )


def _verify_attestation(args: argparse.Namespace, now: datetime) -> AttestationFacts:
    if not args.key:
        fail("--attestation needs --key")
    store = InMemoryTrustStore(_trust_root(k, Purpose.ATTESTER) for k in args.key)
    policy = StatementPolicy(
        predicate_types=frozenset(args.predicate_type or {SLSA_PROVENANCE_V1, MODEL_SIGNING_V1}),
        builder_ids=frozenset(args.builder or ()),
        external_parameters=frozenset(args.parameter or ()),
    )
    envelope = _read(args.attestation)
    return verify_statement(envelope, _artifact(args), store, now=now, policy=policy)


def _verify_model(args: argparse.Namespace, now: datetime) -> AttestationFacts:
    if not args.key or not args.model:
        fail("--model-signature needs --key and --model")
    if not Path(args.model).is_dir():
        fail(f"`{args.model}`: not a model directory")
    store = InMemoryTrustStore(_trust_root(k, Purpose.ATTESTER) for k in args.key)
    return verify_model_signature(args.model, _read(args.model_signature), store, now=now)


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify one piece of evidence; print its facts or the reason it was rejected."""
    chosen = [a for a in (args.layout, args.attestation, args.model_signature) if a]
    if len(chosen) != 1:
        fail("give exactly one of --layout, --attestation, --model-signature")
    now = datetime.now(UTC)
    try:
        if args.layout:
            facts = _verify_layout(args, now)
        elif args.attestation:
            facts = _verify_attestation(args, now)
        else:
            facts = _verify_model(args, now)
    except Rejected as exc:
        print(f"reason: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAIL
    print(json.dumps(facts.to_context(), indent=2, sort_keys=True))
    return EXIT_OK


def register(commands: Any) -> None:
    """Add `aion registry ...` to the command tree."""
    parser = commands.add_parser(
        "registry", help="verify supply-chain evidence; import and lock a REGISTRY.yaml"
    )
    sub = parser.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")
    verify = sub.add_parser("verify", help="verify in-toto, DSSE or model-signing evidence")
    verify.add_argument("--artifact", help="the final product / attested artifact")
    verify.add_argument("--layout", help="signed in-toto layout")
    verify.add_argument("--layout-key", action="append", help="trusted layout-owner key")
    verify.add_argument("--links", help="directory with the link metadata")
    verify.add_argument(
        "--run-inspections", action="store_true", help="execute the layout's inspections"
    )
    verify.add_argument("--attestation", help="DSSE envelope with an in-toto Statement")
    verify.add_argument("--model-signature", help="model-signing signature (key-based)")
    verify.add_argument("--model", help="model directory for --model-signature")
    verify.add_argument("--key", action="append", help="trusted attester key (PEM or JSON)")
    verify.add_argument("--builder", action="append", help="allowlisted SLSA builder id")
    verify.add_argument(
        "--parameter", action="append", help="allowlisted SLSA externalParameters name"
    )
    verify.add_argument("--predicate-type", action="append", help="accepted predicate type")
    verify.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="artifact size limit"
    )
    verify.set_defaults(handler=cmd_verify)
    registry_index.register(sub)
