"""piccolo engines for the two supported databases."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiosqlite
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, dict_factory

from server.db.tables import ALL_TABLES


class _Pooled:
    """An aiosqlite connection whose ``close`` returns it to its pool."""

    def __init__(self, connection: Any, pool: list[Any]) -> None:
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_pool", pool)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection, name, value)

    async def close(self) -> None:
        self._pool.append(self._connection)


class TunedSQLiteEngine(SQLiteEngine):
    """SQLite for a server: write-ahead log, commits without a sync per transaction, writers
    that wait for the lock (30 s) instead of failing at once, and connections kept open.

    piccolo opens a connection (and its aiosqlite thread) per query; that cost
    dominated a decision. Connections are pooled per event loop instead: a
    transaction takes one and gives it back; queries outside a transaction
    share one, one at a time. ``synchronous=NORMAL`` in WAL mode keeps the
    database consistent after a crash; a power loss may lose the last commits.
    PostgreSQL is the choice where that matters.
    """

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path=path, **kwargs)
        self._pools: dict[int, list[Any]] = {}
        self._shared: dict[int, tuple[Any, asyncio.Lock]] = {}

    async def _open(self) -> Any:
        connection = aiosqlite.connect(**self.connection_kwargs)
        # Kept connections must not hold the process open at exit: their
        # worker threads are daemons (aiosqlite 0.22 starts the thread on await).
        connection._thread.daemon = True
        connection = await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]
        for pragma in ("foreign_keys = 1", "busy_timeout = 30000", "synchronous = NORMAL"):
            await connection.execute(f"PRAGMA {pragma}")
        return connection

    async def close(self) -> None:
        """Close this event loop's kept connections (on shutdown)."""
        key = id(asyncio.get_running_loop())
        for connection in self._pools.pop(key, []):
            await connection.close()
        shared = self._shared.pop(key, None)
        if shared is not None:
            await shared[0].close()

    async def get_connection(self) -> Any:
        pool = self._pools.setdefault(id(asyncio.get_running_loop()), [])
        connection = pool.pop() if pool else await self._open()
        return _Pooled(connection, pool)

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        key = id(asyncio.get_running_loop())
        if key not in self._shared:
            self._shared[key] = (await self._open(), asyncio.Lock())
        connection, lock = self._shared[key]
        async with lock:
            async with connection.execute(query, args or []) as cursor:
                rows = await cursor.fetchall()
            await connection.commit()
        return rows


def engine_for(database_url: str, data_dir: str | Path) -> Engine[Any]:
    """PostgreSQL for a ``postgresql://`` URL, else the SQLite file under ``data_dir``."""
    if database_url.startswith(("postgres://", "postgresql://")):
        url = urlparse(database_url)
        return PostgresEngine(
            config={
                "host": url.hostname or "localhost",
                "port": url.port or 5432,
                "user": url.username or "postgres",
                "password": url.password or "",
                "database": url.path.lstrip("/") or "aion",
            }
        )
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
    else:
        path = Path(data_dir) / "aion.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:  # persistent: every later connection uses the WAL
        connection.execute("PRAGMA journal_mode = WAL")
    return TunedSQLiteEngine(path=str(path), timeout=30)


def bind(engine: Engine[Any]) -> None:
    """Point every table at ``engine`` (one database per process)."""
    for table in ALL_TABLES:
        table._meta.db = engine
