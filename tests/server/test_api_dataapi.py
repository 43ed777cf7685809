"""OPA's Data API on our server (`/v1/data/{path}`), on SQLite and PostgreSQL.

Answers in OPA's shape, as the embedded engine decides; every query recorded
before it is answered; paths that are not plain references (the injection of
CVE-2025-46569) or lie outside the tenant's active bundles refused with
nothing recorded; tenants see only their own bundles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml

from engine import DecisionRequest, decide
from engine.bundle import write_tarball
from engine.bundle.files import MANIFEST_FILE
from server.auth import utcnow
from server.state import Services
from tests.server.api_support import OTHER, TENANT, assert_error
from tests.server.bundle_support import signed, trust, upload

pytestmark = pytest.mark.anyio

CASES = Path(__file__).resolve().parents[1] / "conformance" / "cases"
DEPLOY_PATH = "/v1/data/aion/agent/deploy"


def _requests(file: str, action: str) -> list[dict[str, Any]]:
    """Request documents of the conformance cases, as our DecisionRequest renders them."""
    cases = yaml.safe_load((CASES / file).read_text())
    return [
        msgspec.to_builtins(msgspec.convert(c["request"], DecisionRequest))
        for c in cases
        if c["request"]["action"] == action
    ]


DEPLOYS = _requests("deploy-gates.yaml", "agent.deploy")
INVOKES = _requests("tool-bypasses.yaml", "tool.invoke")


def _messages(denials: list[Any]) -> set[str]:
    return {d["msg"] if isinstance(d, dict) else str(d) for d in denials}


async def _record(client: httpx.AsyncClient, headers: dict[str, str], decision_id: str) -> Any:
    response = await client.get(f"/api/v1/decisions/{decision_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_post_and_get_answer_as_the_embedded_decision(
    client: httpx.AsyncClient, auth: Any, svc: Services
) -> None:
    headers = auth("operator")
    policy_set = await svc.policies.active(TENANT)
    assert len(DEPLOYS) >= 10 and len(INVOKES) >= 10
    seen = {True: 0, False: 0}
    for doc, package in [(d, "aion/agent/deploy") for d in DEPLOYS] + [
        (d, "aion/tool/invoke") for d in INVOKES
    ]:
        embedded = decide(
            policy_set, msgspec.convert(doc, DecisionRequest), now=utcnow(), decision_id="x"
        )
        rego_denials = {r.message for r in embedded.reasons if r.engine == "rego"}
        posted = await client.post(f"/v1/data/{package}", json={"input": doc}, headers=headers)
        assert posted.status_code == 200, posted.text
        got = await client.get(
            f"/v1/data/{package}/deny", params={"input": json.dumps(doc)}, headers=headers
        )
        assert got.status_code == 200, got.text
        body, rule = posted.json(), got.json()
        assert set(body) == {"result", "decision_id"} and set(rule) == {"result", "decision_id"}
        assert body["decision_id"] != rule["decision_id"]
        assert _messages(body["result"]["deny"]) == rego_denials
        assert _messages(rule["result"]) == rego_denials
        kept = await _record(client, auth("auditor"), body["decision_id"])
        assert kept["source"] == "data-api" and kept["path"] == package
        assert kept["action"] == doc["action"]
        assert kept["result"]["allowed"] is (not rego_denials)
        assert kept["result"]["outcome"] == ("deny" if rego_denials else "allow")
        assert kept["revisions"] == policy_set.revisions
        assert kept["principal"]["id"] == "usr_test"
        seen[not rego_denials] += 1
    assert seen[True] >= 3 and seen[False] >= 3, seen


async def test_undefined_answers_without_result_and_is_recorded(
    client: httpx.AsyncClient, auth: Any
) -> None:
    headers = auth("developer")
    for response in (
        await client.post(f"{DEPLOY_PATH}/no_such_rule", json={"input": {}}, headers=headers),
        await client.get(f"{DEPLOY_PATH}/no_such_rule", headers=headers),
    ):
        assert response.status_code == 200, response.text
        body = response.json()
        assert list(body) == ["decision_id"]
        kept = await _record(client, auth("auditor"), body["decision_id"])
        assert kept["result"]["defined"] is False
        assert (kept["result"]["allowed"], kept["result"]["outcome"]) == (False, "deny")
        assert kept["action"] == "data.query"
        assert kept["path"] == "aion/agent/deploy/no_such_rule"


async def test_a_body_is_optional_and_input_is_masked_in_the_record(
    client: httpx.AsyncClient, auth: Any
) -> None:
    headers = auth("admin")
    for content in (b"", b"{}", b'{"input": null}'):
        response = await client.post(
            f"{DEPLOY_PATH}/deny",
            content=content,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        assert _messages(response.json()["result"]) == {
            "agent.deploy needs `context.model`, the agent's model as registered"
        }
    secret = {"input": {"action": "agent.deploy", "context": {"api_token": "s3cr3t-value"}}}
    answered = await client.post(DEPLOY_PATH, json=secret, headers=headers)
    assert answered.status_code == 200
    kept = await _record(client, headers, answered.json()["decision_id"])
    assert kept["input"]["context"]["api_token"] == "***"
    assert "s3cr3t-value" not in json.dumps(kept)


async def test_a_data_document_and_metrics(client: httpx.AsyncClient, auth: Any) -> None:
    response = await client.get(
        "/v1/data/aion/tool/invoke/allowlists/ops_shell",
        params={"metrics": "true"},
        headers=auth("security"),
    )
    assert response.status_code == 200, response.text
    assert "result" not in response.json(), "`ops.shell` is the key, `ops_shell` is undefined"
    lists = await client.get(
        "/v1/data/aion/tool/invoke/allowlists", params={"metrics": "true"}, headers=auth("admin")
    )
    body = lists.json()
    assert "ls" in body["result"]["ops.shell"]["commands"]
    assert body["metrics"]["timer_server_handler_ns"] > 0
    assert body["metrics"]["timer_rego_query_eval_ns"] > 0


INJECTIONS = [
    "aion/agent/deploy/deny%20%3D%3D%20x",
    "aion%5B0%5D",
    "aion/agent/deploy/deny;x",
    "aion/%2E%2E",
    "aion/agent/deploy/deny%5B_%5D",
    "aion/agent/deploy/deny%0Atrue",
    "aion/agent/deploy/deny%20with%20input%20as%20%7B%7D",
    "aion/agent/deploy/%22deny%22",
    "aion.agent.deploy",
    "aion/agent/deploy/1deny",
    "aion/agent/deploy/not",
    "aion/" + "a/" * 40 + "x",
]


@pytest.mark.parametrize("path", INJECTIONS)
async def test_a_path_that_is_not_a_plain_reference_is_400_and_not_recorded(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, path: str
) -> None:
    before = await snapshot()
    headers = auth("admin")
    posted = await client.post(f"/v1/data/{path}", json={"input": {}}, headers=headers)
    got = await client.get(f"/v1/data/{path}", headers=headers)
    for response in (posted, got):
        body = assert_error(response, 400, "invalid_path")
        assert set(body) == {"code", "message"}
    assert await snapshot() == before


@pytest.mark.parametrize(
    "path", ["aion", "aion/agent", "data/aion/agent/deploy", "system/main", "globex/anything"]
)
async def test_a_path_outside_every_active_root_is_400_and_not_recorded(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, path: str
) -> None:
    before = await snapshot()
    response = await client.post(f"/v1/data/{path}", json={"input": {}}, headers=auth("admin"))
    assert_error(response, 400, "path_outside_roots")
    assert await snapshot() == before


@pytest.mark.parametrize(
    ("content", "query"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"input": {}, "explain": "full"}', None),
        (b'"input"', None),
        (None, "{not json"),
        (b'{"input": ' + b'{"a": ' * 65 + b"1" + b"}" * 66, None),
        (b'{"input": ' + b"[" * 3000 + b"]" * 3000 + b"}", None),
        (None, "[" * 100 + "]" * 100),
    ],
    ids=[
        "body-not-json",
        "body-array",
        "unknown-field",
        "body-string",
        "query-input-not-json",
        "input-65-deep",
        "input-3000-deep",
        "query-input-100-deep",
    ],
)
async def test_an_input_that_is_not_json_is_400_and_not_recorded(
    client: httpx.AsyncClient,
    auth: Any,
    snapshot: Any,
    content: bytes | None,
    query: str | None,
) -> None:
    before = await snapshot()
    headers = {**auth("admin"), "Content-Type": "application/json"}
    if content is not None:
        response = await client.post(DEPLOY_PATH, content=content, headers=headers)
    else:
        response = await client.get(DEPLOY_PATH, params={"input": query}, headers=headers)
    assert_error(response, 400, "invalid_input")
    assert await snapshot() == before


async def test_credentials_and_roles(client: httpx.AsyncClient, auth: Any, snapshot: Any) -> None:
    before = await snapshot()
    for method in ("GET", "POST"):
        assert_error(await client.request(method, DEPLOY_PATH), 401, "unauthorized")
        bad = {"Authorization": "Bearer not-a-token"}
        assert_error(await client.request(method, DEPLOY_PATH, headers=bad), 401, "unauthorized")
        for role in ("viewer", "auditor"):
            response = await client.request(method, DEPLOY_PATH, headers=auth(role))
            assert_error(response, 403, "forbidden")
    # The role is checked before the path: a refused caller learns nothing about it.
    assert_error(await client.get("/v1/data/aion%5B0%5D", headers=auth("viewer")), 403, "forbidden")
    assert await snapshot() == before


async def test_an_unwritable_decision_log_is_503_and_no_answer(
    client: httpx.AsyncClient, auth: Any, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("decision log volume is read-only")

    with monkeypatch.context() as patch:
        patch.setattr(svc.log, "append", refuse)
        patch.setattr(svc.log, "append_many", refuse)
        response = await client.post(DEPLOY_PATH, json={"input": {}}, headers=auth("admin"))
    assert_error(response, 503, "unavailable")
    assert "result" not in response.json()


# -- a tenant's own bundle ----------------------------------------------------------------------

PRIVATE = """package tenantdata.private

import rego.v1

secret_word := "rosebud"

clash := 1

clash := 2 if input.clash
"""


def _private_bundle() -> bytes:
    manifest = {"revision": "1", "roots": ["tenantdata/private"], "metadata": {"name": "private"}}
    files = {
        MANIFEST_FILE: json.dumps(manifest).encode(),
        "tenantdata/private/private.rego": PRIVATE.encode(),
    }
    return write_tarball(signed(files))


@pytest.fixture
async def private_tenant(client: httpx.AsyncClient, auth: Any, fresh_tenant: str) -> str:
    """A fresh tenant with its own active bundle `private` (root `tenantdata/private`)."""
    headers = auth("admin", tenant=fresh_tenant)
    await trust(client, headers)
    stored = await upload(client, headers, _private_bundle())
    assert stored.status_code == 201, stored.text
    activated = await client.post(
        "/api/v1/bundles/private/activate", json={"revision": "1"}, headers=headers
    )
    assert activated.status_code == 200, activated.text
    return fresh_tenant


async def test_tenants_see_only_their_own_bundles(
    client: httpx.AsyncClient, auth: Any, private_tenant: str
) -> None:
    path = "/v1/data/tenantdata/private/secret_word"
    mine = await client.post(path, json={}, headers=auth("operator", tenant=private_tenant))
    assert mine.status_code == 200, mine.text
    assert mine.json()["result"] == "rosebud"
    for tenant in (TENANT, OTHER):
        theirs = await client.post(path, json={}, headers=auth("admin", tenant=tenant))
        assert_error(theirs, 400, "path_outside_roots")
        assert "rosebud" not in theirs.text
        lookup = await client.get(
            f"/api/v1/decisions/{mine.json()['decision_id']}", headers=auth("admin", tenant=tenant)
        )
        assert_error(lookup, 404, "not_found")
    # The global bundles stay visible to the tenant beside its own.
    shared = await client.get(f"{DEPLOY_PATH}/deny", headers=auth("admin", tenant=private_tenant))
    assert shared.status_code == 200 and "result" in shared.json()


async def test_an_evaluation_error_is_500_in_opa_shape_and_recorded(
    client: httpx.AsyncClient, auth: Any, private_tenant: str
) -> None:
    headers = auth("admin", tenant=private_tenant)
    path = "/v1/data/tenantdata/private/clash"
    assert (await client.post(path, json={"input": {}}, headers=headers)).json()["result"] == 1
    failed = await client.post(path, json={"input": {"clash": True}}, headers=headers)
    body = assert_error(failed, 500, "internal_error")
    assert "conflict" in body["message"]
    assert "result" not in body
    kept = await _record(client, headers, body["decision_id"])
    assert (kept["result"]["allowed"], kept["result"]["outcome"]) == (False, "deny")
    assert kept["result"]["errors"][0]["code"] == "rego_eval_error"


@pytest.mark.parametrize("url", ["/v1/data", "/v1/data/"])
async def test_the_whole_data_document_is_not_served(
    client: httpx.AsyncClient, auth: Any, snapshot: Any, url: str
) -> None:
    """OPA answers the whole data tree here; a client of ours names what it asks."""
    before = await snapshot()
    for method in ("GET", "POST"):
        response = await client.request(method, url, headers=auth("admin"))
        assert_error(response, 400, "invalid_path")
    assert await snapshot() == before


async def test_a_body_over_the_limit_is_413_and_not_recorded(
    client: httpx.AsyncClient, auth: Any, svc: Services, snapshot: Any
) -> None:
    before = await snapshot()
    big = b'{"input": "' + b"x" * svc.settings.max_body_bytes + b'"}'
    headers = {**auth("admin"), "Content-Type": "application/json"}
    response = await client.post(DEPLOY_PATH, content=big, headers=headers)
    assert_error(response, 413, "payload_too_large")
    assert await snapshot() == before
