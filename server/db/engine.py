"""piccolo engines for the two supported databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from server.db.tables import ALL_TABLES


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
    return SQLiteEngine(path=str(path))


def bind(engine: Engine[Any]) -> None:
    """Point every table at ``engine`` (one database per process)."""
    for table in ALL_TABLES:
        table._meta.db = engine
