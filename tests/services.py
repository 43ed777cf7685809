"""The real services the integration tests use (started by `make test`): where they are, and
what a test does without them — skip, or fail when ``CI=true``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest

from server.bootstrap import Keys, ensure_tenant, install_shipped_bundles, migrate
from server.db.engine import bind, engine_for
from server.settings import Settings

BIN = Path(sys.executable).parent


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


async def bootstrap_database(settings: Settings, keys: Keys, tenants: tuple[str, ...]) -> None:
    """Migrate ``settings``' database, create ``tenants``, build and activate the shipped
    bundles signed with ``keys`` (what the server and dispatch suites start from)."""
    migrate(settings)
    db = engine_for(settings.database_url, settings.data_dir)
    bind(db)
    try:
        for tenant in tenants:
            await ensure_tenant(tenant)
        await install_shipped_bundles(settings, keys)
    finally:
        await close_engine(db)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def aion_serve(
    workdir: Path, env: dict[str, str] | None = None, *, drop: tuple[str, ...] = ()
) -> Iterator[tuple[str, str]]:
    """A real `aion serve` on a free port with a fresh data directory under ``workdir``,
    started and healthy: (base URL, its one-time admin token). Rate limits are lifted;
    ``env`` adds settings, ``drop`` removes inherited ones (e.g. ``AION_DATABASE_URL``)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "AION_RATE_LIMIT_PER_MINUTE": "100000000",
        "AION_RATE_LIMIT_BURST": "100000000",
        **(env or {}),
    }
    for name in drop:
        environment.pop(name, None)
    out = workdir / "serve.log"
    with out.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "aion"), "serve", "--data-dir", str(workdir / "data"), "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60  # bounded wait for start-up, polling its health
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, out.read_text()
                assert time.monotonic() < deadline, f"aion serve did not start: {out.read_text()}"
                time.sleep(0.1)
        lines = out.read_text().splitlines()
        marker = next(i for i, line in enumerate(lines) if line.startswith("one-time admin token"))
        yield base, lines[marker + 1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
