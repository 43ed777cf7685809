"""`aion tenants set TENANT KEY=VALUE ...`: write the tenant settings an operator may change.

Today that is ``rego_evaluator`` (``embedded`` or ``opa``: docs/opa-remote.md).
``KEY=`` (no value) removes a setting. Running servers see the change within
their settings cache (5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.bootstrap import ensure_keys, services
from server.cli.common import EXIT_OK, fail
from server.errors import AppError
from server.settings import Settings
from server.tenants import SETTABLE, update_settings


def _changes(items: list[str]) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"`{item}` is not KEY=VALUE (settable: {', '.join(SETTABLE)})")
        changes[key] = value or None
    return changes


def cmd_tenant_set(args: argparse.Namespace) -> int:
    """Set (or remove) settings of one tenant and print them as stored."""
    changes = _changes(args.setting)
    settings = Settings.from_env(
        data_dir=Path(args.data_dir) if args.data_dir else None, database_url=args.database_url
    )

    async def run() -> dict[str, Any]:
        services(settings, ensure_keys(settings.data_dir))
        return await update_settings(args.tenant, changes)

    try:
        stored = asyncio.run(run())
    except AppError as exc:
        fail(exc.message)
    print(json.dumps(stored, sort_keys=True))
    return EXIT_OK


def add_parser(tenants: Any, db_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `set` to the `aion tenants` command group."""
    p = tenants.add_parser(
        "set", help="set tenant settings, e.g. `rego_evaluator=opa` (`KEY=` removes one)"
    )
    p.add_argument("tenant")
    p.add_argument("setting", nargs="+", metavar="KEY=VALUE")
    db_flags(p)
    p.set_defaults(handler=cmd_tenant_set)
