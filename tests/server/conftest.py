"""Integration harness of the API server: the real app on real databases, in process.

Every test that asks for ``svc`` or ``client`` runs once on SQLite and once on
PostgreSQL (``AION_TEST_DATABASE_URL``, started by ``scripts/services.sh``;
missing: a failure in CI, a skip elsewhere). Per backend, one database is
migrated with the real piccolo migrations and bootstrapped once (tenants
``default`` and ``globex``, the shipped bundles built, signed and activated);
each test module gets its own copy (SQLite's backup API, ``CREATE DATABASE
... TEMPLATE`` on PostgreSQL), dropped afterwards.

Requests go through ``httpx.ASGITransport`` on the test's own event loop on
the main thread: the compiled Rego engines are bound to the thread that made
them, so Litestar's synchronous TestClient (app on another thread) is not used.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from litestar import Litestar
from piccolo.engine.postgres import PostgresEngine

from server.auth import utcnow
from server.bootstrap import Keys, ensure_keys, ensure_tenant
from server.bootstrap import services as build_services
from server.db.engine import bind
from server.db.tables import Agent, Decision, Event, Outbox, Task, ToolCall
from server.settings import Settings
from server.state import Services
from tests.server.api_support import OTHER, RESEARCH, TENANT, client_of, make_app
from tests.services import (
    admin_sql,
    bootstrap_database,
    close_engine,
    postgres_url,
    with_database,
)

BACKENDS = ("sqlite", "postgres")


def _test_settings(**values: Any) -> Settings:
    # Generous limits: the rate-limit and body-size tests build their own services.
    # A wide evaluation time limit: a loaded CI machine must not turn allows into
    # timeouts (the limit itself is the engine's tests' business).
    return Settings(
        rate_limit_per_minute=1_000_000,
        rate_limit_burst=1_000_000,
        decision_time_limit_ms=2000.0,
        otel_tracing=True,  # spans for the telemetry tests; production turns them on with an exporter
        **values,
    )


async def _bootstrap(settings: Settings, keys: Keys) -> None:
    await bootstrap_database(settings, keys, (TENANT, OTHER))


@dataclass
class _Templates:
    """One migrated, bootstrapped database per backend, made on first use."""

    root: Path
    keys: Keys
    made: dict[str, Settings] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)  # PostgreSQL ones, dropped at the end

    async def get(self, backend: str) -> Settings:
        if backend not in self.made:
            if backend == "sqlite":
                settings = _test_settings(data_dir=self.root / "template-sqlite")
            else:
                name = f"aion_tpl_{uuid.uuid4().hex[:12]}"
                await admin_sql(f'CREATE DATABASE "{name}"')
                self.databases.append(name)
                url = with_database(postgres_url(), name)
                settings = _test_settings(data_dir=self.root / "template-pg", database_url=url)
            await _bootstrap(settings, self.keys)
            self.made[backend] = settings
        return self.made[backend]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def server_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """The embedded keys (JWT secret, bundle and chain signing), shared by every database."""
    return ensure_keys(tmp_path_factory.mktemp("server-keys"))


@pytest.fixture(scope="session")
async def _templates(
    tmp_path_factory: pytest.TempPathFactory, server_keys: Keys
) -> AsyncIterator[_Templates]:
    templates = _Templates(tmp_path_factory.mktemp("server-templates"), server_keys)
    yield templates
    for name in templates.databases:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
async def server_db(
    request: pytest.FixtureRequest,
    _templates: _Templates,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Settings]:
    """A fresh, bootstrapped database of this module, on each backend."""
    backend = str(request.param)
    if backend == "postgres":
        postgres_url()  # skip (or fail in CI) before touching anything
    template = await _templates.get(backend)
    data_dir = tmp_path_factory.mktemp(f"server-{backend}")
    if backend == "sqlite":
        # SQLite's backup API, not a file copy: the template may be in WAL mode.
        with (
            closing(sqlite3.connect(template.data_dir / "aion.db")) as source,
            closing(sqlite3.connect(data_dir / "aion.db")) as copy,
        ):
            source.backup(copy)
        yield replace(template, data_dir=data_dir)
        return
    name = f"aion_test_{uuid.uuid4().hex[:12]}"
    source = urlparse(template.database_url).path[1:]
    await admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        yield replace(template, data_dir=data_dir, database_url=with_database(postgres_url(), name))
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
async def _module_services(server_db: Settings, server_keys: Keys) -> AsyncIterator[Services]:
    services = build_services(server_db, server_keys)
    yield services
    await close_engine(services.db)


@pytest.fixture
def svc(_module_services: Services) -> Services:
    """This module's services, with the tables bound to its database (one binding per process)."""
    bind(_module_services.db)
    return _module_services


@pytest.fixture(scope="module")
async def server_app(_module_services: Services) -> AsyncIterator[Litestar]:
    # One app per module (building one takes ~80 ms), started once like a server.
    app = make_app(_module_services)
    db = _module_services.db
    async with app.lifespan():
        # A pool (unless start-up made one): a fresh connection per query makes
        # the PostgreSQL runs several times slower than the SQLite ones.
        pooled = isinstance(db, PostgresEngine) and db.pool is None
        if pooled:
            await db.start_connection_pool(min_size=1, max_size=8)
        try:
            yield app
        finally:
            if pooled:
                await db.close_connection_pool()


@pytest.fixture
async def client(svc: Services, server_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on this module's database."""
    async with client_of(server_app) as c:
        yield c


@pytest.fixture(scope="module")
async def target(_module_services: Services, server_app: Litestar) -> dict[str, str]:
    """An agent of the default tenant and its create decision, for endpoints that name one."""
    bind(_module_services.db)
    admin = _module_services.tokens.issue(
        tenant=TENANT, subject="usr_owner", roles=["admin"], now=utcnow()
    )
    async with client_of(server_app) as client:
        created = await client.post(
            "/api/v1/agents",
            json={"name": "Target", "model": "model://gpt-4o", "tool_ids": ["web_search"]},
            headers={"Authorization": f"Bearer {admin}"},
        )
    assert created.status_code == 201, created.text
    return {"agent_id": created.json()["id"], "decision_id": created.json()["decision_id"]}


TokenFactory = Callable[..., str]
HeadersFactory = Callable[..., dict[str, str]]


@pytest.fixture
def token(svc: Services) -> TokenFactory:
    """A signed token: ``token("operator", "viewer", tenant="globex", subject="usr_x")``."""

    def issue(*roles: str, tenant: str = TENANT, subject: str = "usr_test", **kw: Any) -> str:
        return svc.tokens.issue(
            tenant=tenant, subject=subject, roles=list(roles), now=utcnow(), **kw
        )

    return issue


@pytest.fixture
def auth(token: TokenFactory) -> HeadersFactory:
    """Authorization headers: ``auth("admin")``, ``auth("operator", tenant="globex")``."""

    def headers(*roles: str, tenant: str = TENANT, subject: str = "usr_test") -> dict[str, str]:
        return {"Authorization": f"Bearer {token(*roles, tenant=tenant, subject=subject)}"}

    return headers


@pytest.fixture
async def fresh_tenant(svc: Services) -> str:
    """A new tenant of this module's database (seed tools and models), for a test that changes
    tenant-wide state (trusted keys, active bundles) without touching the shared tenants."""
    tid, created = await ensure_tenant(f"t-{uuid.uuid4().hex[:12]}")
    assert created
    return tid


@dataclass(frozen=True)
class Counts:
    """Rows a refused request must not have added: agents, tasks with their outbox rows,
    events and tool calls, and decisions per tenant."""

    agents: int
    dispatch: tuple[int, int, int, int]
    decisions: dict[str, int]


@pytest.fixture
def snapshot(svc: Services) -> Callable[[], Any]:
    """``before = await snapshot()`` ... ``assert await snapshot() == before``."""

    async def take() -> Counts:
        decisions = {t: await Decision.count().where(Decision.tenant == t) for t in (TENANT, OTHER)}
        dispatch = tuple([await t.count() for t in (Task, Outbox, Event, ToolCall)])
        return Counts(await Agent.count(), dispatch, decisions)  # type: ignore[arg-type]

    return take


@pytest.fixture
def new_agent(client: httpx.AsyncClient, auth: HeadersFactory) -> Callable[..., Any]:
    """Create an agent through the API (admin of ``tenant``); returns the response body."""

    async def create(body: dict[str, Any] | None = None, tenant: str = TENANT) -> dict[str, Any]:
        response = await client.post(
            "/api/v1/agents", json=body or RESEARCH, headers=auth("admin", tenant=tenant)
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    return create
