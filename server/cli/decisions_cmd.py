"""`aion decisions verify | export-head` — check and anchor a tenant's decision log.

Both commands open the database the server uses (SQLite under ``--data-dir``
or PostgreSQL at ``--database-url``; defaults from ``AION_*``), bind the piccolo
tables to it and run the log's coroutine on their own event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.cli.common import EXIT_FAIL, EXIT_OK, fail
from server.db.engine import bind, engine_for
from server.decisionlog import DecisionLogError, PiccoloDecisionLog
from server.settings import Settings

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
    """Open the database named by the arguments (or ``AION_*``) and run ``work`` on it."""
    data_dir = Path(args.data_dir) if args.data_dir else None
    url = "" if data_dir is not None else args.database_url
    settings = Settings.from_env(data_dir=data_dir, database_url=url)
    if settings.sqlite:
        url = settings.database_url
        path = Path(url.removeprefix("sqlite:///")) if url else settings.data_dir / "aion.db"
        if not path.is_file():
            fail(f"no database at `{path}` (use --data-dir or --database-url)")
    engine = engine_for(settings.database_url, settings.data_dir)
    bind(engine)

    async def main() -> T:
        try:
            return await work(PiccoloDecisionLog(engine))
        finally:
            close = getattr(engine, "close", None)  # kept SQLite connections of this loop
            if close is not None:
                await close()

    try:
        return asyncio.run(main())
    except DecisionLogError as exc:
        fail(str(exc))
    except Exception as exc:  # a database that cannot be read is not a verdict
        if isinstance(exc, OSError | sqlite3.Error) or type(exc).__module__.startswith("asyncpg"):
            fail(f"cannot read the decision log ({type(exc).__name__}: {exc})")
        raise


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
