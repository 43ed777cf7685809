"""The real services the integration tests use (started by `make test`): where they are, and
what a test does without them — skip, or fail when ``CI=true``."""

from __future__ import annotations

import os
from typing import Any, NoReturn
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest


def require(what: str) -> NoReturn:
    """A missing service: a failure in CI, a skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI but was not set", pytrace=False)
    pytest.skip(f"{what} not available (run `make test`)")


def postgres_url() -> str:
    """The test PostgreSQL server (``AION_TEST_DATABASE_URL``)."""
    url = os.environ.get("AION_TEST_DATABASE_URL", "")
    return url or require("PostgreSQL (AION_TEST_DATABASE_URL; `scripts/services.sh` starts one)")


def redis_url() -> str:
    """The test Redis server (``AION_TEST_REDIS_URL``)."""
    url = os.environ.get("AION_TEST_REDIS_URL", "")
    return url or require("Redis (AION_TEST_REDIS_URL; `scripts/redis.sh` starts one)")


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name``."""
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


async def admin_sql(sql: str) -> None:
    """Run one statement on the PostgreSQL server's maintenance database."""
    connection = await asyncpg.connect(postgres_url())
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def close_engine(db: Any) -> None:
    """Close the connections an engine keeps for this event loop (if it keeps any)."""
    close = getattr(db, "close", None)
    if close is not None:
        await close()
