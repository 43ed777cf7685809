"""OPA decision-log uploads on SQLite and PostgreSQL: stored as our own records (source `opa`,
masked, hash-chained), idempotent on `decision_id`, refused whole when malformed."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from server.db.tables import Decision
from server.opa.ingest import MAX_DEPTH, MAX_EVENTS, MAX_PATH, TRUNCATED, row_id
from server.state import Services
from tests.server.api_support import OTHER, TENANT, assert_error

pytestmark = pytest.mark.anyio

SHELL_INPUT = {
    "action": "tool.invoke",
    "principal": {"id": "usr_ops", "tenant": TENANT, "roles": ["operator"], "kind": "user"},
    "resource": {"type": "tool", "id": "ops.shell", "tenant": TENANT},
    "context": {"arguments": {"command": "rm -rf /"}, "api_key": "sk-SECRET-123"},
}


def event(decision_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A decision event as OPA v1.22 uploads it."""
    return {
        "labels": {"id": "opa-instance-1", "version": "1.22.3"},
        "decision_id": decision_id or str(uuid.uuid4()),
        "bundles": {"default-safe": {"revision": "2026.11.27.1"}},
        "path": "aion/tool/invoke/deny",
        "input": SHELL_INPUT,
        "result": ["command `rm` is not allowed"],
        "requested_by": "127.0.0.1:49310",
        "timestamp": "2026-11-27T19:18:35.904393315Z",
        "metrics": {"timer_rego_query_eval_ns": 1341375},
        "req_id": 1,
        **fields,
    }


def gz(value: Any) -> bytes:
    return gzip.compress(json.dumps(value).encode())


async def sidecar(client: httpx.AsyncClient, auth: Any, tenant: str = TENANT) -> dict[str, str]:
    response = await client.post(
        "/api/v1/sidecars",
        json={"name": f"ingest-{uuid.uuid4().hex[:8]}"},
        headers=auth("admin", tenant=tenant),
    )
    assert response.status_code == 201, response.text
    return {
        "Authorization": f"Bearer {response.json()['token']}",
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }


async def post_logs(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes
) -> httpx.Response:
    return await client.post("/logs", content=body, headers=headers)


async def stored(tenant: str, *decision_ids: str) -> int:
    ids = [row_id(tenant, d) for d in decision_ids]
    return int(await Decision.count().where((Decision.tenant == tenant) & Decision.id.is_in(ids)))


async def test_events_are_stored_as_opa_decisions(
    client: httpx.AsyncClient, auth: Any, svc: Services
) -> None:
    headers = await sidecar(client, auth)
    denied, allowed = event(), event(path="aion/agent/create", result={"deny": [], "warn": []})
    response = await post_logs(client, headers, gz([denied, allowed]))
    assert response.status_code == 204, response.text
    listed = await client.get("/api/v1/decisions", params={"limit": 10}, headers=auth("auditor"))
    items = {i["id"]: i for i in listed.json()["items"]}
    first = items[row_id(TENANT, denied["decision_id"])]
    assert first["source"] == "opa" and first["action"] == "tool.invoke"
    assert (first["allowed"], first["outcome"]) == (False, "deny")
    assert first["principal_id"] == "usr_ops" and first["resource_id"] == "ops.shell"
    assert first["reasons"] == [
        {
            "policy": "aion/tool/invoke/deny",
            "message": "command `rm` is not allowed",
            "engine": "opa",
        }
    ]
    second = items[row_id(TENANT, allowed["decision_id"])]
    assert (second["allowed"], second["outcome"]) == (True, "allow")
    one = await client.get(f"/api/v1/decisions/{first['id']}", headers=auth("security"))
    assert one.status_code == 200, one.text
    record = one.json()
    assert record["opa"]["decision_id"] == denied["decision_id"]
    assert record["opa"]["path"] == "aion/tool/invoke/deny"
    assert record["opa"]["labels"] == {"id": "opa-instance-1", "version": "1.22.3"}
    assert record["revisions"] == {"default-safe": "2026.11.27.1"}
    assert record["input"]["context"]["api_key"] == "***", "masked as our own records are"
    assert "sk-SECRET-123" not in one.text
    assert record["time"].startswith("2026-11-27T19:18:35.904393")
    # our own decisions keep saying where they come from
    ours = await client.post(
        "/api/v1/decide",
        json={"action": "agent.create", "resource": {"type": "agent", "id": "a"}, "context": {}},
        headers=auth("admin"),
    )
    summary = await client.get("/api/v1/decisions", params={"limit": 1}, headers=auth("admin"))
    assert summary.json()["items"][0]["id"] == ours.json()["decision_id"]
    assert summary.json()["items"][0]["source"] == "aion"


async def test_an_input_outside_our_shape_is_a_data_query(
    client: httpx.AsyncClient, auth: Any
) -> None:
    headers = await sidecar(client, auth)
    lookup = event(path="aion/tool/invoke/shell_allowlist", input={"user": "x"}, result={"a": 1})
    undefined = event(path="httpapi/authz/allow", input=None)
    undefined.pop("result")
    allow = event(path="httpapi/authz/allow", input={"action": "GET"}, result=True)
    assert (await post_logs(client, headers, gz([lookup, undefined, allow]))).status_code == 204
    for ev, verdict in (
        (lookup, (False, "recorded")),
        (undefined, (False, "deny")),
        (allow, (True, "allow")),
    ):
        got = await client.get(
            f"/api/v1/decisions/{row_id(TENANT, ev['decision_id'])}", headers=auth("admin")
        )
        record = got.json()
        assert record["action"] == "data.query"
        assert (record["result"]["allowed"], record["result"]["outcome"]) == verdict
        assert record["resource"]["type"] == "opa.data"
        assert record["resource"]["id"] == ev["path"]
        assert record["principal"]["id"].startswith("opa:ingest-")


async def test_an_ad_hoc_query_event_is_stored_as_a_data_query(
    client: httpx.AsyncClient, auth: Any
) -> None:
    headers = await sidecar(client, auth)
    query = event(query="data.aion.tool.invoke.deny", result=[{"expressions": []}])
    query.pop("path")
    assert (await post_logs(client, headers, gz([query]))).status_code == 204
    got = await client.get(
        f"/api/v1/decisions/{row_id(TENANT, query['decision_id'])}", headers=auth("admin")
    )
    record = got.json()
    assert record["opa"]["query"] == "data.aion.tool.invoke.deny" and record["opa"]["path"] == ""
    assert record["action"] == "tool.invoke", "the input still names our action"
    assert (record["result"]["allowed"], record["result"]["outcome"]) == (False, "recorded")


async def test_an_upload_retried_is_stored_once(
    client: httpx.AsyncClient, auth: Any, snapshot: Callable[[], Any]
) -> None:
    headers = await sidecar(client, auth)
    events = [event() for _ in range(3)]
    assert (await post_logs(client, headers, gz(events))).status_code == 204
    after_first = await snapshot()
    assert (await post_logs(client, headers, gz(events))).status_code == 204
    assert await snapshot() == after_first
    more = [*events, event(), events[0]]
    assert (await post_logs(client, headers, gz(more))).status_code == 204
    assert await stored(TENANT, *(e["decision_id"] for e in more)) == 4
    assert (await snapshot()).decisions[TENANT] == after_first.decisions[TENANT] + 1


async def test_two_tenants_may_upload_the_same_decision_id(
    client: httpx.AsyncClient, auth: Any
) -> None:
    shared = event()
    ours, theirs = await sidecar(client, auth), await sidecar(client, auth, tenant=OTHER)
    assert (await post_logs(client, headers=ours, body=gz([shared]))).status_code == 204
    assert (await post_logs(client, headers=theirs, body=gz([shared]))).status_code == 204
    assert await stored(TENANT, shared["decision_id"]) == 1
    assert await stored(OTHER, shared["decision_id"]) == 1
    mine = row_id(TENANT, shared["decision_id"])
    seen = await client.get(f"/api/v1/decisions/{mine}", headers=auth("admin", tenant=OTHER))
    assert_error(seen, 404, "not_found")


def _bomb() -> bytes:
    return gzip.compress(b"[" + b" " * (9 * 1024 * 1024) + b"]")


MALFORMED = {
    "not-gzip": json.dumps([event()]).encode(),
    "truncated-gzip": gz([event()])[:-12],
    "gzip-bomb": _bomb(),
    "not-json": gzip.compress(b"[{not json"),
    "nan": gzip.compress(b'[{"decision_id": "x", "path": "a/b", "result": NaN}]'),
    "not-an-array": gz({"decision_id": "x", "path": "a/b"}),
    "event-not-object": gz([event(), "event"]),
    "no-decision-id": gz([event(), {k: v for k, v in event().items() if k != "decision_id"}]),
    "decision-id-not-string": gz([event(), event(decision_id=None) | {"decision_id": 42}]),
    "decision-id-too-long": gz([event("x" * 129)]),
    "too-many-events": gz([event() for _ in range(MAX_EVENTS + 1)]),
    "many-tiny-non-objects": gzip.compress(b"[" + b"[]," * 500_000 + b"[]]"),
    "second-gzip-member": gz([event()]) + gz([event()]),
    "garbage-after-gzip": gz([event()]) + b"garbage",
    "json-after-array": gzip.compress(json.dumps([event()]).encode() + b" {}"),
    "over-2-mib": gzip.compress(json.dumps([event(input={"x": "a" * (2 << 20)})]).encode()),
}


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_upload_is_refused_whole(
    client: httpx.AsyncClient, auth: Any, snapshot: Callable[[], Any], body: bytes
) -> None:
    headers = await sidecar(client, auth)
    before = await snapshot()
    assert_error(await post_logs(client, headers, body), 400, "invalid_input")
    assert await snapshot() == before


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"n": value}
    return value


#: Events OPA v1.22.3 really logs (refusing one would block the sidecar's log forever).
ODD_EVENTS: dict[str, dict[str, Any]] = {
    "dash-and-index": event(path="a-b/0", input={"x": 1}, result=True),
    "keyword": event(path="servers/in", result=True),
    "whole-data": event(path="", input=None, result={"aion": {}}),
    "brackets": event(path='aion/tool["x"]', result=True),
    "no-revision": event(bundles={"x": {}, "y": {"revision": "r2"}}),
    "infinite-number": event(input={"x": 1e400}),
    "deep-input": event(input=nested(480)),
    "far-timestamp": event(timestamp="0001-01-01T00:00:00+05:00"),
    "bad-timestamp": event(timestamp="yesterday"),
    "shifted-timestamp": event(timestamp="2026-11-27T20:18:35+01:00"),
    "long-path": event(path="p/" * 1000, result=True),
    "nul-in-ids": event(
        input={"principal": {"id": "u\x00"}, "resource": {"type": "tool", "id": "\x00"}}
    ),
}


async def test_whatever_opa_legitimately_logs_is_stored(
    client: httpx.AsyncClient, auth: Any
) -> None:
    headers = await sidecar(client, auth)
    body = json.dumps(list(ODD_EVENTS.values())).replace("Infinity", "1e400").encode()
    response = await post_logs(client, headers, gzip.compress(body))
    assert response.status_code == 204, response.text
    assert await stored(TENANT, *(e["decision_id"] for e in ODD_EVENTS.values())) == len(ODD_EVENTS)

    async def record(name: str) -> dict[str, Any]:
        rid = row_id(TENANT, ODD_EVENTS[name]["decision_id"])
        got = await client.get(f"/api/v1/decisions/{rid}", headers=auth("admin"))
        assert got.status_code == 200, got.text
        return dict(got.json())

    dash = await record("dash-and-index")
    assert dash["opa"]["path"] == "a-b/0" and dash["resource"]["id"] == "a-b/0"
    assert (dash["result"]["allowed"], dash["result"]["outcome"]) == (True, "allow")
    assert (await record("keyword"))["opa"]["path"] == "servers/in"
    whole = await record("whole-data")
    assert whole["opa"]["path"] == "" and whole["resource"]["id"] == "query"
    assert (await record("brackets"))["opa"]["path"] == 'aion/tool["x"]'
    assert (await record("no-revision"))["revisions"] == {"x": "", "y": "r2"}
    assert (await record("infinite-number"))["input"] == {"x": "1e400"}
    deep = (await record("deep-input"))["input"]
    for _ in range(MAX_DEPTH - 1):
        deep = deep["n"]
    assert deep == {TRUNCATED: f"nested deeper than {MAX_DEPTH} levels"}
    for name in ("far-timestamp", "bad-timestamp"):
        odd = await record(name)
        assert odd["opa"]["timestamp"] == ODD_EVENTS[name]["timestamp"]
        assert odd["opa"]["timestamp_unreadable"] is True
        assert odd["time"] == odd["opa"]["received_at"]
    assert (await record("shifted-timestamp"))["time"] == "2026-11-27T19:18:35+00:00"
    long = await record("long-path")
    assert len(long["opa"]["path"]) == MAX_PATH and long["opa"]["path_truncated"] is True
    nul = await record("nul-in-ids")
    assert nul["principal"]["kind"] == "sidecar" and nul["resource"]["type"] == "opa.data"
    # a retry of the same upload stores nothing twice
    again = await post_logs(client, headers, gzip.compress(body))
    assert again.status_code == 204


async def test_input_nested_deeper_than_the_parser_follows_is_cut_and_stored(
    client: httpx.AsyncClient, auth: Any
) -> None:
    headers = await sidecar(client, auth)
    decision_id = str(uuid.uuid4())
    deep = '{"n":[' * 3000 + '"]{"' + "]}" * 3000
    text = f'[{{"decision_id":"{decision_id}","path":"a/b","input":{deep},"x":"[[{{"}}]'
    response = await post_logs(client, headers, gzip.compress(text.encode()))
    assert response.status_code == 204, response.text
    got = await client.get(
        f"/api/v1/decisions/{row_id(TENANT, decision_id)}", headers=auth("admin")
    )
    value = got.json()["input"]
    while TRUNCATED not in value:
        value = value["n"] if isinstance(value, dict) else value[0]
    assert value == {TRUNCATED: f"nested deeper than {MAX_DEPTH} levels"}


async def test_an_upload_without_a_sidecar_token_is_401_and_stores_nothing(
    client: httpx.AsyncClient, auth: Any, snapshot: Callable[[], Any]
) -> None:
    before = await snapshot()
    body = gz([event()])
    assert_error(await client.post("/logs", content=body), 401, "unauthorized")
    user = {"Authorization": auth("admin")["Authorization"], "Content-Encoding": "gzip"}
    assert_error(await client.post("/logs", content=body, headers=user), 401, "unauthorized")
    assert await snapshot() == before


async def test_the_decision_chain_verifies_after_ingestion(
    client: httpx.AsyncClient, auth: Any, svc: Services, server_keys: Any
) -> None:
    headers = await sidecar(client, auth)
    for _ in range(3):
        assert (await post_logs(client, headers, gz([event(), event()]))).status_code == 204
    verdict = await svc.log.verify(TENANT, server_keys.chain_private.public_key())
    assert verdict.ok, verdict
    assert verdict.checked >= 6
