"""Fixtures of the dispatch tests: migrated databases (SQLite and PostgreSQL) and Redis.

PostgreSQL comes from ``AION_TEST_DATABASE_URL`` and Redis from
``AION_TEST_REDIS_URL`` (``make test`` starts both with ``scripts/services.sh``
and ``scripts/redis.sh``); missing, they are a failure in CI and a skip elsewhere.
Each test module gets its own database per backend, migrated with the real
piccolo migrations and bootstrapped (tenants ``default`` and ``globex``, the
shipped bundles built and activated).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from server.bootstrap import ensure_keys
from server.db.engine import bind, engine_for
from server.settings import Settings
from tests.services import (
    admin_sql,
    bootstrap_database,
    close_engine,
    postgres_url,
    with_database,
)

TENANT = "default"
OTHER = "globex"


async def bootstrap(settings: Settings) -> None:
    """Migrate ``settings``' database, create the test tenants, activate the shipped bundles."""
    await bootstrap_database(settings, ensure_keys(settings.data_dir), (TENANT, OTHER))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Dispatch runs on asyncio."""
    return "asyncio"


@asynccontextmanager
async def fresh_database(backend: str, data_dir: Path) -> AsyncIterator[Settings]:
    """A migrated, bootstrapped database on ``backend`` (dropped afterwards on PostgreSQL)."""
    if backend == "sqlite":
        settings = Settings(data_dir=data_dir)
        await bootstrap(settings)
        yield settings
        return
    name = f"aion_dispatch_{uuid.uuid4().hex[:12]}"
    await admin_sql(f'CREATE DATABASE "{name}"')
    try:
        settings = Settings(data_dir=data_dir, database_url=with_database(postgres_url(), name))
        await bootstrap(settings)
        yield settings
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=("sqlite", "postgres"))
async def dispatch_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """Settings of a fresh, bootstrapped database of this module, on each backend."""
    if request.param == "postgres":
        postgres_url()
    data_dir = tmp_path_factory.mktemp(f"dispatch-{request.param}")
    async with fresh_database(str(request.param), data_dir) as settings:
        yield settings


@pytest.fixture
async def bound(dispatch_db: Settings) -> AsyncIterator[Settings]:
    """The module's database, with the tables bound to it for this test."""
    db = engine_for(dispatch_db.database_url, dispatch_db.data_dir)
    bind(db)
    try:
        yield dispatch_db
    finally:
        await close_engine(db)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A directory for subprocess runs."""
    path = tmp_path / "runs"
    path.mkdir()
    return path
