"""Authentication (401) and role (403) matrices over every endpoint.

A bad credential is refused before anything is read or decided; a role that
may not use an endpoint gets 403 `forbidden` before any policy is evaluated,
so neither leaves a decision behind.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import httpx
import jwt
import pytest
from litestar.routes import HTTPRoute

from server.auth import hash_api_key, new_api_key, utcnow
from server.bootstrap import Keys
from server.db.tables import ApiKey
from tests.server.api_support import (
    ENDPOINTS,
    ROLES,
    TENANT,
    Endpoint,
    assert_error,
    call,
)

pytestmark = pytest.mark.anyio

# Probes, the schema and the Prometheus scrape (docs/observability.md; AION_METRICS_ENABLED).
PUBLIC = re.compile(r"^/api(/v1)?/(health|ready)$|^/api/v1/schema|^/metrics$")


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "usr_mallory",
        "tenant": TENANT,
        "roles": ["admin"],
        "kind": "user",
        "iss": "aion",
        "aud": "aion-api",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(secret: bytes, algorithm: str = "HS256", **changes: Any) -> str:
    return jwt.encode(_claims(**changes), secret, algorithm=algorithm)


def _tampered(secret: bytes) -> str:
    """A valid viewer token whose payload was swapped for an admin one (signature kept)."""
    header, _, signature = _signed(secret, roles=["viewer"]).split(".")
    return f"{header}.{_b64(_claims(roles=['admin']))}.{signature}"


def bad_credentials(secret: bytes) -> dict[str, dict[str, str]]:
    """Header sets that must all be answered 401."""
    now = int(time.time())
    bearer = {
        "garbage": "not-a-jwt",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.",
        "wrong key": _signed(b"another-secret-" + secret),
        "HS512 with the right key": _signed(secret, "HS512"),
        "tampered payload": _tampered(secret),
        "expired": _signed(secret, iat=now - 7200, nbf=now - 7200, exp=now - 60),
        "nbf in the future": _signed(secret, nbf=now + 3600, exp=now + 7200),
        "iat in the future": _signed(secret, iat=now + 3600, exp=now + 7200),
        "no exp": _signed(secret, exp=None),
        "wrong issuer": _signed(secret, iss="evil-idp"),
        "wrong audience": _signed(secret, aud="other-api"),
        "unknown role": _signed(secret, roles=["superuser"]),
        "roles not a list": _signed(secret, roles="admin"),
        "no tenant": _signed(secret, tenant=None),
        "unknown tenant": _signed(secret, tenant="no-such-tenant"),
        "bad kind": _signed(secret, kind="robot"),
    }
    cases = {name: {"Authorization": f"Bearer {value}"} for name, value in bearer.items()}
    cases["no credential"] = {}
    cases["not bearer"] = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}
    cases["empty bearer"] = {"Authorization": "Bearer "}
    cases["unknown api key"] = {"X-API-Key": "aion_not-a-real-key"}
    return cases


CASES = (
    "no credential",
    "not bearer",
    "empty bearer",
    "unknown api key",
    "garbage",
    "alg none",
    "wrong key",
    "HS512 with the right key",
    "tampered payload",
    "expired",
    "nbf in the future",
    "iat in the future",
    "no exp",
    "wrong issuer",
    "wrong audience",
    "unknown role",
    "roles not a list",
    "no tenant",
    "unknown tenant",
    "bad kind",
)


def test_the_case_list_is_complete() -> None:
    assert sorted(bad_credentials(b"k" * 64)) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
async def test_bad_credential_is_401(
    client: httpx.AsyncClient,
    server_keys: Keys,
    snapshot: Any,
    target: dict[str, str],
    endpoint: Endpoint,
    case: str,
) -> None:
    headers = bad_credentials(server_keys.jwt_secret)[case]
    before = await snapshot()
    response = await call(client, endpoint, headers, **target)
    assert_error(response, 401, "unauthorized")
    assert response.headers.get("www-authenticate", "").startswith("Bearer")
    assert await snapshot() == before


async def test_every_route_requires_a_credential(
    client: httpx.AsyncClient, server_app: Any
) -> None:
    """Every route the app serves, present and future, answers 401 without a credential."""
    checked, open_routes = 0, []
    for route in server_app.routes:
        if not isinstance(route, HTTPRoute) or PUBLIC.search(route.path):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"probe_\1", route.path)
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            response = await client.request(method, path, content=b"{}")
            checked += 1
            if response.status_code != 401 or set(response.json()) < {"code", "message"}:
                open_routes.append(f"{method} {route.path}: {response.status_code}")
    assert checked >= 2 * len(ENDPOINTS)
    assert not open_routes, open_routes


async def test_public_routes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/health")).json() == {"status": "ok"}
    ready = await client.get("/api/v1/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == "ok"


def _matrix() -> list[tuple[Endpoint, str]]:
    return [(e, role) for e in ENDPOINTS for role in ROLES]


@pytest.mark.parametrize(
    ("endpoint", "role"), _matrix(), ids=[f"{e.name}-{r}" for e, r in _matrix()]
)
async def test_roles(
    client: httpx.AsyncClient,
    auth: Any,
    snapshot: Any,
    target: dict[str, str],
    endpoint: Endpoint,
    role: str,
) -> None:
    """A role outside the endpoint's set: 403 `forbidden`, nothing decided; inside: let through."""
    before = await snapshot()
    response = await call(client, endpoint, auth(role), **target)
    if role in endpoint.allowed:  # let through: whatever the policy or the state says next
        assert response.status_code != 401, response.text
        assert response.json().get("code") != "forbidden", response.text
        return
    assert_error(response, 403, "forbidden")
    assert await snapshot() == before


async def test_developer_deploy_is_forbidden_before_the_policy(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, target: dict[str, str]
) -> None:
    before = await snapshot()
    response = await client.post(
        f"/api/v1/agents/{target['agent_id']}/deploy", headers=auth("developer")
    )
    body = assert_error(response, 403, "forbidden")
    assert "decision_id" not in body
    assert await snapshot() == before


async def test_roles_are_additive(
    client: httpx.AsyncClient, auth: Any, target: dict[str, str]
) -> None:
    """Viewer plus operator may deploy: the operator role grants it (the policy still decides)."""
    response = await client.post(
        f"/api/v1/agents/{target['agent_id']}/deploy", headers=auth("viewer", "operator")
    )
    assert response.status_code in (200, 403), response.text
    assert response.json().get("code") != "forbidden"


async def test_no_roles_may_do_nothing(
    client: httpx.AsyncClient, auth: Any, target: dict[str, str]
) -> None:
    for endpoint in ENDPOINTS:
        response = await call(client, endpoint, auth(), **target)
        assert_error(response, 403, "forbidden")


async def test_api_keys_are_checked_by_hash_and_revocable(
    client: httpx.AsyncClient, svc: Any
) -> None:
    key = new_api_key()
    await ApiKey.insert(
        ApiKey(
            id="key_ci",
            tenant=TENANT,
            subject="svc_ci",
            roles=["operator"],
            key_hash=hash_api_key(key),
            created_at=utcnow(),
        )
    )
    assert (await client.get("/api/v1/agents", headers={"X-API-Key": key})).status_code == 200
    refused = await client.get("/api/v1/decisions", headers={"X-API-Key": key})
    assert_error(refused, 403, "forbidden")  # the key's roles apply
    stored = await ApiKey.select(ApiKey.key_hash).where(ApiKey.id == "key_ci").first()
    assert stored is not None and key not in str(stored)
    await ApiKey.update({ApiKey.revoked: True}).where(ApiKey.id == "key_ci")
    revoked = await client.get("/api/v1/agents", headers={"X-API-Key": key})
    assert_error(revoked, 401, "unauthorized")
