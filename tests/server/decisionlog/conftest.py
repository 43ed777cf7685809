"""Fixtures of the decision-log tests: every backend (SQLite, memory, PostgreSQL), a key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.server.conftest_decisionlog import (
    PG_URL,
    Backend,
    MemoryBackend,
    PostgresBackend,
    SqliteBackend,
    copy_db,
    create_database,
    drop_database,
    migrate,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database made by the real piccolo migration (copied for each test)."""
    return migrate(tmp_path_factory.mktemp("migrated"))


@pytest.fixture(scope="module")
def pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database made by the real migrations (a template for each test)."""
    url = create_database()
    try:
        migrate(tmp_path_factory.mktemp("pg"), url)
        yield urlparse(url).path.lstrip("/")
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "memory", *(["postgres"] if PG_URL else [])])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_db: Path
) -> AsyncIterator[Backend]:
    made: Backend = MemoryBackend()
    if request.param == "sqlite":
        copy_db(migrated_db, tmp_path / "aion.db")
        made = SqliteBackend(tmp_path / "aion.db")
    elif request.param == "postgres":
        made = PostgresBackend(create_database(request.getfixturevalue("pg_template")))
    yield made
    await made.aclose()
    if isinstance(made, PostgresBackend):
        drop_database(made.url)


@pytest.fixture
async def sqlite(tmp_path: Path, migrated_db: Path) -> AsyncIterator[SqliteBackend]:
    copy_db(migrated_db, tmp_path / "aion.db")
    made = SqliteBackend(tmp_path / "aion.db")
    yield made
    await made.aclose()


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()
