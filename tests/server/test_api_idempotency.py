"""`Idempotency-Key` on POST, on SQLite and PostgreSQL.

A replay with the same key and body returns the first response (with
`Idempotent-Replayed: true`) and runs nothing again: no second agent, no
second decision. The key is the caller's tenant's; another body with the
same key is 409.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from server.db.tables import Agent, IdempotencyKey
from tests.server.api_support import DIRECT, OTHER, TENANT, assert_error

pytestmark = pytest.mark.anyio

REPLAYED = "idempotent-replayed"


def key() -> str:
    return f"idem-{uuid.uuid4().hex}"


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], idem: str | None
) -> httpx.Response:
    extra = {"Idempotency-Key": idem} if idem else {}
    return await client.post("/api/v1/agents", json=body, headers={**headers, **extra})


async def test_a_replay_returns_the_first_response_and_runs_nothing(
    client: httpx.AsyncClient, auth: Any, snapshot: Any
) -> None:
    idem, headers = key(), auth("admin")
    body = {**DIRECT, "name": "Idempotent"}
    before = await snapshot()
    first = await create(client, headers, body, idem)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    after_first = await snapshot()
    assert after_first.agents == before.agents + 1
    assert after_first.decisions[TENANT] == before.decisions[TENANT] + 1

    for _ in range(2):
        again = await create(client, headers, body, idem)
        assert again.status_code == 201
        assert again.headers[REPLAYED] == "true"
        assert again.json() == first.json()
    assert await snapshot() == after_first
    assert await Agent.count().where(Agent.name == "Idempotent") == 1


async def test_the_same_key_with_another_body_is_409(
    client: httpx.AsyncClient, auth: Any, snapshot: Any
) -> None:
    idem, headers = key(), auth("admin")
    first = await create(client, headers, {**DIRECT, "name": "First"}, idem)
    assert first.status_code == 201, first.text
    before = await snapshot()
    other = await create(client, headers, {**DIRECT, "name": "Second"}, idem)
    assert_error(other, 409, "conflict")
    assert REPLAYED not in other.headers
    # The same body on another path is another request too.
    elsewhere = await client.post(
        "/api/v1/decide",
        json={**DIRECT, "name": "First"},
        headers={**headers, "Idempotency-Key": idem},
    )
    assert_error(elsewhere, 409, "conflict")
    assert await snapshot() == before
    assert await Agent.count().where(Agent.name == "Second") == 0


async def test_keys_are_per_tenant(client: httpx.AsyncClient, auth: Any, snapshot: Any) -> None:
    idem, body = key(), {**DIRECT, "name": "Per Tenant"}
    before = await snapshot()
    kept_before = {
        t: await IdempotencyKey.count().where(IdempotencyKey.tenant == t) for t in (TENANT, OTHER)
    }
    mine = await create(client, auth("admin"), body, idem)
    theirs = await create(client, auth("admin", tenant=OTHER), body, idem)
    assert (mine.status_code, theirs.status_code) == (201, 201), theirs.text
    assert REPLAYED not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    after = await snapshot()
    assert after.agents == before.agents + 2
    assert after.decisions == {t: n + 1 for t, n in before.decisions.items()}
    kept_after = {
        t: await IdempotencyKey.count().where(IdempotencyKey.tenant == t) for t in (TENANT, OTHER)
    }
    assert kept_after == {t: n + 1 for t, n in kept_before.items()}, (
        "one stored response per tenant"
    )
    # Each tenant's replay is its own first response.
    replay = await create(client, auth("admin", tenant=OTHER), body, idem)
    assert replay.headers[REPLAYED] == "true"
    assert replay.json()["id"] == theirs.json()["id"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**DIRECT, "model": "model://no-such-model"}, 404, "not_found"),
        ({**DIRECT, "unknown_field": 1}, 400, "invalid_input"),
    ],
    ids=["404", "400"],
)
async def test_a_client_error_is_replayed_too(
    client: httpx.AsyncClient,
    auth: Any,
    snapshot: Any,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    idem, headers = key(), auth("admin")
    before = await snapshot()
    first = await create(client, headers, body, idem)
    assert_error(first, status, code)
    again = await create(client, headers, body, idem)
    assert_error(again, status, code)
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()
    assert await snapshot() == before


async def test_a_policy_deny_is_replayed_without_a_second_decision(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, new_agent: Any
) -> None:
    """The seeded model is unverified: deploy is denied, and the deny is recorded once."""
    agent_id = (await new_agent(DIRECT))["id"]
    idem, headers = key(), auth("admin")
    url = f"/api/v1/agents/{agent_id}/deploy"
    before = await snapshot()
    first = await client.post(url, headers={**headers, "Idempotency-Key": idem})
    denied = assert_error(first, 403, "policy_denied")
    after_first = await snapshot()
    assert after_first.decisions[TENANT] == before.decisions[TENANT] + 1
    again = await client.post(url, headers={**headers, "Idempotency-Key": idem})
    assert again.headers[REPLAYED] == "true"
    assert assert_error(again, 403, "policy_denied")["decision_id"] == denied["decision_id"]
    assert await snapshot() == after_first


async def test_without_a_key_every_post_runs(
    client: httpx.AsyncClient, auth: Any, snapshot: Any
) -> None:
    body = {**DIRECT, "name": "No Key"}
    before = await snapshot()
    first = await create(client, auth("admin"), body, None)
    second = await create(client, auth("admin"), body, None)
    assert (first.status_code, second.status_code) == (201, 201)
    assert REPLAYED not in second.headers
    assert first.json()["id"] != second.json()["id"]
    after = await snapshot()
    assert after.agents == before.agents + 2
    assert after.decisions[TENANT] == before.decisions[TENANT] + 2


async def test_a_refused_credential_claims_no_key(
    client: httpx.AsyncClient, auth: Any, snapshot: Any
) -> None:
    """A 401 is answered by the handlers; the key stays free for the real request."""
    idem, body = key(), {**DIRECT, "name": "After 401"}
    bad = {"Authorization": "Bearer not-a-token"}
    assert_error(await create(client, bad, body, idem), 401, "unauthorized")
    assert await IdempotencyKey.count().where(IdempotencyKey.id.like(f"%:{idem}")) == 0
    created = await create(client, auth("admin"), body, idem)
    assert created.status_code == 201, created.text
    assert REPLAYED not in created.headers


async def test_keys_are_per_caller(client: httpx.AsyncClient, auth: Any, snapshot: Any) -> None:
    """Another user of the same tenant replaying a key would skip their own role checks."""
    idem, body = key(), {**DIRECT, "name": "Per Caller"}
    first = await create(client, auth("admin", subject="usr_first"), body, idem)
    second = await create(client, auth("admin", subject="usr_second"), body, idem)
    assert (first.status_code, second.status_code) == (201, 201)
    assert REPLAYED not in second.headers
    assert first.json()["id"] != second.json()["id"]
