"""Explicit limits: body size (413) and per-tenant rate limits (429 with Retry-After).

Both refuse before anything is read or decided, so a refused call changes
nothing. The limits are made tiny through the services the app is built on
(and a tenant's own settings), with a fake clock instead of sleeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from server.db.tables import Tenant
from server.ratelimit import MemoryBucketStore, RateLimiter
from server.state import Services
from server.tenants import TenantDirectory
from tests.server.api_support import (
    DIRECT,
    ENDPOINTS,
    OTHER,
    TENANT,
    WITH_BODY,
    Endpoint,
    assert_error,
    call,
    serve,
)

pytestmark = pytest.mark.anyio

LIMIT = 2048


@pytest.fixture(scope="module")
async def _small(_module_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    limited = replace(
        _module_services, settings=replace(_module_services.settings, max_body_bytes=LIMIT)
    )
    async with serve(limited) as client:
        yield client


@pytest.fixture
def small(svc: Services, _small: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of an app that takes bodies of at most LIMIT bytes."""
    return _small


def _padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON, padded with trailing whitespace to exactly ``size`` bytes (still valid)."""
    raw = json.dumps(body).encode()
    assert len(raw) < size
    return raw + b" " * (size - len(raw))


def _headers(auth: Any) -> dict[str, str]:
    return auth("admin") | {"Content-Type": "application/json"}


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=lambda e: e.name)
async def test_oversize_body_is_413(
    small: httpx.AsyncClient,
    auth: Any,
    snapshot: Any,
    target: dict[str, str],
    endpoint: Endpoint,
) -> None:
    agent_url = f"/api/v1/agents/{target['agent_id']}"
    before_view = (await small.get(agent_url, headers=auth("admin"))).json()
    before = await snapshot()
    url = endpoint.url(**target)
    assert endpoint.body is not None

    response = await small.request(
        endpoint.method, url, content=_padded(endpoint.body, LIMIT + 1), headers=_headers(auth)
    )
    assert_error(response, 413, "payload_too_large")

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        data = _padded(endpoint.body or {}, 4 * LIMIT)
        for start in range(0, len(data), 512):
            yield data[start : start + 512]

    chunked = await small.request(endpoint.method, url, content=stream(), headers=_headers(auth))
    assert_error(chunked, 413, "payload_too_large")
    assert await snapshot() == before
    assert (await small.get(agent_url, headers=auth("admin"))).json() == before_view


async def test_body_at_the_limit_is_accepted(
    small: httpx.AsyncClient, auth: Any, snapshot: Any
) -> None:
    before = await snapshot()
    response = await small.post(
        "/api/v1/agents", content=_padded(DIRECT, LIMIT), headers=_headers(auth)
    )
    assert response.status_code == 201, response.text
    assert (await snapshot()).agents == before.agents + 1


@pytest.mark.parametrize(
    "idempotency_key",
    [None, "key-1"],
    ids=["plain", "idempotency-key"],
)
async def test_an_oversize_body_is_not_read_to_the_end(
    small: httpx.AsyncClient, auth: Any, snapshot: Any, idempotency_key: str | None
) -> None:
    """The limit protects memory: reading stops soon after LIMIT bytes, not at the end."""
    data = _padded(DIRECT, 64 * LIMIT)
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(data), 512):
            sent += 512
            yield data[start : start + 512]

    headers = _headers(auth) | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
    before = await snapshot()
    response = await small.post("/api/v1/agents", content=stream(), headers=headers)
    assert_error(response, 413, "payload_too_large")
    assert await snapshot() == before
    assert sent <= LIMIT + 2 * 512, f"read {sent} bytes of a body limited to {LIMIT}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
async def _limited(_module_services: Services) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    services = replace(_module_services)  # its own limiter, swapped in per test
    async with serve(services) as client:
        yield services, client


@pytest.fixture
def limited(
    svc: Services, _limited: tuple[Services, httpx.AsyncClient], clock: FakeClock
) -> httpx.AsyncClient:
    """A client of an app whose default limit is a burst of 3, refilled at 60 per minute."""
    services, client = _limited
    services.limiter = RateLimiter(MemoryBucketStore(clock=clock), per_minute=60, burst=3)
    services.tenants = TenantDirectory()  # as a fresh process: no tenant settings cached yet
    return client


async def _spend(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> None:
    for _ in range(count):
        response = await client.get("/api/v1/agent-catalog", headers=headers)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
async def test_over_the_limit_is_429_with_retry_after(
    limited: httpx.AsyncClient,
    auth: Any,
    snapshot: Any,
    target: dict[str, str],
    endpoint: Endpoint,
) -> None:
    role = "auditor" if endpoint.name.startswith("decisions") else "admin"
    await _spend(limited, auth("admin"), 3)
    before = await snapshot()
    response = await call(limited, endpoint, auth(role), **target)
    assert_error(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "1"  # one token per second at 60 per minute
    assert await snapshot() == before


async def test_the_bucket_refills_and_tenants_have_their_own(
    limited: httpx.AsyncClient, auth: Any, clock: FakeClock
) -> None:
    mine, theirs = auth("viewer"), auth("viewer", tenant=OTHER)
    await _spend(limited, mine, 3)
    assert_error(await limited.get("/api/v1/agents", headers=mine), 429, "rate_limited")
    await _spend(limited, theirs, 3)  # another tenant's bucket is full
    clock.now += 1.0
    await _spend(limited, mine, 1)
    assert_error(await limited.get("/api/v1/agents", headers=mine), 429, "rate_limited")
    clock.now += 60.0
    await _spend(limited, mine, 3)  # refilled up to the burst, not beyond
    assert_error(await limited.get("/api/v1/agents", headers=mine), 429, "rate_limited")


async def test_a_tenants_own_settings_override_the_default(
    limited: httpx.AsyncClient, auth: Any
) -> None:
    """globex: burst 2 at 6 per minute, so the third call waits 10 s; default keeps burst 3."""
    settings = {"rate_limit_per_minute": 6, "rate_limit_burst": 2}
    await Tenant.update({Tenant.settings: settings}).where(Tenant.id == OTHER)
    try:
        theirs = auth("viewer", tenant=OTHER)
        await _spend(limited, theirs, 2)
        refused = await limited.get("/api/v1/agents", headers=theirs)
        assert_error(refused, 429, "rate_limited")
        assert refused.headers["retry-after"] == "10"
        await _spend(limited, auth("viewer", tenant=TENANT), 3)
    finally:
        await Tenant.update({Tenant.settings: {}}).where(Tenant.id == OTHER)


async def test_errors_always_have_code_and_message(
    client: httpx.AsyncClient, auth: Any, target: dict[str, str]
) -> None:
    admin = auth("admin")
    agent = f"/api/v1/agents/{target['agent_id']}"
    cases = [
        (client.get("/api/v1/no-such-route", headers=admin), 404),
        (client.delete("/api/v1/agents", headers=admin), 405),
        (client.put(agent, json={}, headers=admin), 405),
        (client.post("/api/v1/agents", content=b"{not json", headers=_headers(auth)), 400),
        (client.post("/api/v1/agents", content=b"", headers=_headers(auth)), 400),
        (client.get("/api/v1/agents", params={"limit": "x"}, headers=admin), 400),
        (client.get("/api/v1/decisions", params={"cursor": "!!"}, headers=admin), 400),
        (client.get("/api/v1/decisions", params={"since": "yesterday"}, headers=admin), 400),
        (client.get("/api/v1/agent-catalog/no-such-template", headers=admin), 404),
        (client.post("/api/v1/decide", json={"action": "x.y", "resource": {}}, headers=admin), 400),
        (
            client.post(
                "/api/v1/decide",
                json={"action": "agent.teleport", "resource": {"type": "agent", "id": "a"}},
                headers=admin,
            ),
            400,
        ),
        (client.post("/api/v1/decide/batch", json={"requests": []}, headers=admin), 400),
        (client.get(agent, headers={}), 401),
        (client.get(agent, headers=auth("auditor")), 403),
    ]
    for request, status in cases:
        response = await request
        assert response.status_code == status, (response.request.url, response.text)
        body = response.json()
        assert isinstance(body.get("code"), str) and body["code"], body
        assert isinstance(body.get("message"), str) and body["message"], body
