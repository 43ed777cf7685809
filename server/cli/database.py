"""Running a command's coroutine on the server's database (SQLite under ``--data-dir`` or
PostgreSQL at ``--database-url``; defaults from ``AION_*``), on its own event loop."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from server.cli.common import fail
from server.db.engine import bind, engine_for
from server.settings import Settings

T = TypeVar("T")


def run_on_database(args: argparse.Namespace, work: Callable[[Any], Awaitable[T]], doing: str) -> T:
    """Bind the tables to the database named by ``args`` and run ``work(engine)``.

    A missing SQLite file, or a database that cannot be used, is a usage error naming
    ``doing`` (``read the decision log``); other exceptions propagate.
    """
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
            return await work(engine)
        finally:
            close = getattr(engine, "close", None)  # kept SQLite connections of this loop
            if close is not None:
                await close()

    try:
        return asyncio.run(main())
    except Exception as exc:
        if isinstance(exc, OSError | sqlite3.Error) or type(exc).__module__.startswith("asyncpg"):
            fail(f"cannot {doing} ({type(exc).__name__}: {exc})")
        raise
