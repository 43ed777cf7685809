"""`aion decisions verify | export-head` — check and anchor a tenant's decision log.

Both commands open the database the server uses (SQLite under ``--data-dir``
or PostgreSQL at ``--database-url``; defaults from ``AION_*``), bind the piccolo
tables to it and run the log's coroutine on their own event loop.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.cli.common import EXIT_FAIL, EXIT_OK, fail
from server.cli.database import run_on_database
from server.decisionlog import DecisionLogError, PiccoloDecisionLog

T = TypeVar("T")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {what} `{path}` ({exc.strerror or exc})")


def load_public_key(path: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (usage error otherwise)."""
    try:
        key = serialization.load_pem_public_key(_read(path, "public key"))
    except ValueError as exc:
        fail(f"`{path}`: not a PEM public key ({exc})")
    if not isinstance(key, Ed25519PublicKey):
        fail(f"`{path}`: not an Ed25519 public key")
    return key


def load_private_key(path: str) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM file (usage error otherwise)."""
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:
        fail(f"`{path}`: not an unencrypted PEM private key ({exc})")
    if not isinstance(key, Ed25519PrivateKey):
        fail(f"`{path}`: not an Ed25519 private key")
    return key


def _run(args: argparse.Namespace, work: Callable[[PiccoloDecisionLog], Awaitable[T]]) -> T:
    """Run ``work`` on the decision log of the database named by the arguments."""
    try:
        return run_on_database(
            args, lambda engine: work(PiccoloDecisionLog(engine)), "read the decision log"
        )
    except DecisionLogError as exc:
        fail(str(exc))


def cmd_verify(args: argparse.Namespace) -> int:
    """Walk the tenant's chain; exit 0 when intact, 1 naming the first bad record."""
    key = load_public_key(args.public_key)
    tenant = args.tenant
    result = _run(
        args, lambda log: log.verify(tenant, key, require_signed_head=args.require_signed)
    )
    if not result.ok:
        where = f"seq {result.first_bad_seq}" if result.first_bad_seq is not None else "head"
        name = f" ({result.first_bad_id})" if result.first_bad_id else ""
        print(f"tenant {tenant}: TAMPERED at {where}{name}: {result.problem}")
        return EXIT_FAIL
    signed = f"signed head at seq {result.signed_seq}" if result.signed_seq else "head not signed"
    print(f"tenant {tenant}: {result.checked} decisions intact ({signed})")
    return EXIT_OK


def cmd_export_head(args: argparse.Namespace) -> int:
    """Print the tenant's signed head as JSON (signing the current head with --private-key)."""
    key = load_private_key(args.private_key) if args.private_key else None
    tenant = args.tenant

    async def work(log: PiccoloDecisionLog) -> Any:
        return await (log.sign_head(tenant, key) if key else log.export_head(tenant))

    head = _run(args, work)
    if not head["signature"]:
        print(
            f"error: tenant {tenant} has no signed head (sign it with --private-key)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    print(json.dumps(head, sort_keys=True))
    return EXIT_OK


def _database_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="tenant whose chain to use")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", help="embedded data directory (SQLite `aion.db`)")
    where.add_argument("--database-url", help="postgresql://user:pass@host:port/db")


def register(commands: Any) -> None:
    """Add `aion decisions ...` to the command tree."""
    parser = commands.add_parser("decisions", help="verify and anchor the decision log")
    sub = parser.add_subparsers(dest="decisions_command", required=True, metavar="COMMAND")
    verify = sub.add_parser("verify", help="detect edited, deleted, reordered or truncated rows")
    _database_args(verify)
    verify.add_argument("--public-key", required=True, help="Ed25519 PEM key of the head signer")
    verify.add_argument(
        "--require-signed-head",
        dest="require_signed",
        action="store_true",
        help="fail when the head was never signed",
    )
    verify.set_defaults(handler=cmd_verify)
    export = sub.add_parser("export-head", help="print the signed chain head as JSON")
    _database_args(export)
    export.add_argument("--private-key", help="Ed25519 PEM key: sign the current head first")
    export.set_defaults(handler=cmd_export_head)
