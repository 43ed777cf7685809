"""The remote evaluator against a real OPA: the same decisions as in process, and every
failure (unreachable, 5xx, timeout, undefined, wrong type, stale revision) denying, named."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from engine import (
    Bundle,
    Decision,
    DecisionRequest,
    Outcome,
    PolicySet,
    RemoteRego,
    compile_bundles,
    decide,
    decide_async,
)
from engine.bundle import bundle_from_files, write_tarball
from engine.bundle.files import build_sources
from engine.opa_client_aiohttp import AiohttpOpaQuerier
from tests.services import free_port

pytestmark = pytest.mark.anyio

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SHIPPED = ("default-safe", "deploy-gates", "model-privacy", "registry-admission")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LIMIT_US = 10_000_000  # generous: a loaded machine must not turn answers into timeouts
TIMEOUT_S = 5.0

READY = {
    "action": "agent.deploy",
    "principal": {"id": "olga", "tenant": "acme", "roles": ["operator"], "kind": "user"},
    "resource": {
        "type": "agent",
        "id": "research-copilot",
        "tenant": "acme",
        "attributes": {
            "name": "Research Copilot",
            "template": "autogpt-research",
            "status": "draft",
            "tool_ids": ["web_search", "browser", "file_writer"],
        },
    },
    "context": {
        "policies": [{"name": "default-safe", "status": "active", "mode": "enforce"}],
        "model": {
            "id": "gpt-4o",
            "registered": True,
            "verified": True,
            "privacy": "allow-api",
            "admin_approval_required": False,
        },
        "tenant": {"allowed_tools": ["web_search", "browser", "file_writer", "rag.search"]},
    },
}


def _request(doc: dict[str, Any]) -> DecisionRequest:
    return msgspec.convert(doc, DecisionRequest)


def _with(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _shell(command: str) -> dict[str, Any]:
    return {
        "action": "tool.invoke",
        "principal": {"id": "alice", "tenant": "acme", "roles": ["operator"], "kind": "user"},
        "resource": {"type": "tool", "id": "ops.shell", "tenant": "acme", "attributes": {}},
        "context": {"arguments": {"command": command}},
    }


REQUESTS = {
    "deploy-ready": READY,
    "deploy-unverified-model": _with(READY, ("context", "model", "verified"), False),
    "deploy-needs-approval": _with(READY, ("context", "model", "admin_approval_required"), True),
    "deploy-by-developer": _with(READY, ("principal", "roles"), ["developer"]),
    "shell-ls": _shell("ls -la"),
    "shell-chained": _shell("ls; rm -rf /"),
}


def _bundle(name: str, files: dict[str, bytes]) -> Bundle:
    return bundle_from_files(files, name)


def _shipped_files(name: str, revision: str | None = None) -> dict[str, bytes]:
    files = build_sources(POLICIES / name)
    if revision is not None:
        manifest = json.loads(files[".manifest"])
        manifest["revision"] = revision
        files[".manifest"] = json.dumps(manifest).encode()
    return files


def _write(directory: Path, name: str, files: dict[str, bytes]) -> Path:
    path = directory / f"{name}.tar.gz"
    path.write_bytes(write_tarball(files))
    return path


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health?bundles", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _run_opa(opa_bin: Path, archives: list[Path]) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(opa_bin), "run", "--server", "--addr", f"127.0.0.1:{port}"]
    command += ["--log-level", "error", "--bundle", *map(str, archives)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(
                    f"OPA exited: {process.stderr.read().decode() if process.stderr else ''}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("OPA did not become healthy within 30 s")
            time.sleep(0.05)  # polling for a condition, with a deadline
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def shipped_opa(opa_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OPA serving the shipped bundles, built by us and loaded as bundle files."""
    directory = tmp_path_factory.mktemp("opa-shipped")
    yield from _run_opa(opa_bin, [_write(directory, n, _shipped_files(n)) for n in SHIPPED])


# `shape` as OPA has it: same name and revision as ours, other content.
SHAPE_SERVED = {
    ".manifest": b'{"revision": "1", "roots": ["aion/agent"]}',
    "aion/agent/create/create.rego": b'package aion.agent.create\n\ndeny := "one string"\n',
    "aion/agent/update/update.rego": (
        b"package aion.agent.update\n\n"
        b'deny contains "no" if false\n\n'
        b"level := 1 if input.context.a\n\n"
        b"level := 2 if input.context.b\n"
    ),
    "aion/agent/disable/disable.rego": (
        b'package aion.agent.disable\n\ndeny contains "too many" if count(input.context.items) > 2\n'
    ),
}
# `shape` as we have it.
SHAPE_OURS = {
    **SHAPE_SERVED,
    "aion/agent/create/create.rego": b'package aion.agent.create\n\ndeny contains "no" if false\n',
    "aion/agent/deploy/deploy.rego": b'package aion.agent.deploy\n\ndeny contains "no" if false\n',
}


@pytest.fixture(scope="module")
def shape_opa(opa_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("opa-shape")
    yield from _run_opa(opa_bin, [_write(directory, "shape", SHAPE_SERVED)])


async def _querier(url: str) -> AsyncIterator[AiohttpOpaQuerier]:
    querier = AiohttpOpaQuerier(url, timeout_s=TIMEOUT_S)
    try:
        yield querier
    finally:
        await querier.aclose()


@pytest.fixture
async def shipped(shipped_opa: str) -> AsyncIterator[AiohttpOpaQuerier]:
    async for querier in _querier(shipped_opa):
        yield querier


def _shipped_set(querier: AiohttpOpaQuerier | None, **revisions: str) -> PolicySet:
    bundles = [_bundle(n, _shipped_files(n, revisions.get(n.replace("-", "_")))) for n in SHIPPED]
    remote = RemoteRego(querier, all_bundles=True, timeout_s=TIMEOUT_S)
    return compile_bundles(bundles, remote=remote)


def _comparable(decision: Decision) -> dict[str, Any]:
    def reasons(items: list[Any]) -> list[tuple[str, str, str, str]]:
        return sorted(
            ("rego" if r.engine == "opa" else r.engine, r.policy, r.message, r.bundle)
            for r in items
        )

    return {
        "allowed": decision.allowed,
        "outcome": decision.outcome,
        "reasons": reasons(decision.reasons),
        "warnings": reasons(decision.warnings),
        "obligations": decision.obligations,
        "errors": decision.errors,
        "revisions": decision.revisions,
    }


def _denied_by(decision: Decision, code: str) -> str:
    assert not decision.allowed
    assert decision.outcome is Outcome.DENY
    found = [e for e in decision.errors if e.code == code]
    assert found, decision.errors
    assert any(r.engine == "opa" and r.policy == code for r in decision.reasons)
    return found[0].message


async def test_the_sidecar_decides_the_shipped_bundles_as_we_do(
    shipped: AiohttpOpaQuerier,
) -> None:
    remote_set = _shipped_set(shipped)
    local_set = compile_bundles([_bundle(n, _shipped_files(n)) for n in SHIPPED])
    outcomes = set()
    for name, doc in REQUESTS.items():
        request = _request(doc)
        remote = await decide_async(remote_set, request, now=NOW, time_limit_us=LIMIT_US)
        local = decide(local_set, request, now=NOW, time_limit_us=LIMIT_US)
        assert _comparable(remote) == _comparable(local), name
        assert "opa" in [e.engine for e in remote.engines if e.participated], name
        outcomes.add(remote.allowed)
    assert outcomes == {True, False}  # both allows and denies were compared


async def test_a_sidecar_serving_another_revision_does_not_decide(
    shipped: AiohttpOpaQuerier,
) -> None:
    stale = _shipped_set(shipped, deploy_gates="2099.1.1.1")
    decision = await decide_async(stale, _request(READY), now=NOW, time_limit_us=LIMIT_US)
    message = _denied_by(decision, "opa_revision_mismatch")
    assert "`deploy-gates` at revision `2026.11.27.1`, not `2099.1.1.1`" in message


async def test_an_unreachable_sidecar_denies() -> None:
    async for querier in _querier(f"http://127.0.0.1:{free_port()}"):  # nothing listens
        decision = await decide_async(
            _shipped_set(querier), _request(READY), now=NOW, time_limit_us=LIMIT_US
        )
        _denied_by(decision, "opa_unreachable")


async def test_a_sidecar_that_accepts_and_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        querier = AiohttpOpaQuerier(url, timeout_s=0.2)
        try:
            policy_set = compile_bundles(
                [_bundle(n, _shipped_files(n)) for n in SHIPPED],
                remote=RemoteRego(querier, all_bundles=True, timeout_s=0.2),
            )
            decision = await decide_async(
                policy_set, _request(READY), now=NOW, time_limit_us=LIMIT_US
            )
        finally:
            await querier.aclose()
    assert "within 200 ms" in _denied_by(decision, "opa_timeout")


@pytest.fixture
async def shape(shape_opa: str) -> AsyncIterator[PolicySet]:
    async for querier in _querier(shape_opa):
        yield compile_bundles(
            [_bundle("shape", SHAPE_OURS)],
            remote=RemoteRego(querier, all_bundles=True, timeout_s=TIMEOUT_S),
        )


def _shape_request(action: str, context: dict[str, Any] | None = None) -> DecisionRequest:
    doc = _with(READY, ("action",), action)
    doc["context"] = context or {}
    return _request(doc)


async def test_a_package_the_sidecar_does_not_have_is_undefined(shape: PolicySet) -> None:
    decision = await decide_async(
        shape, _shape_request("agent.deploy"), now=NOW, time_limit_us=LIMIT_US
    )
    assert "`aion/agent/deploy`" in _denied_by(decision, "opa_undefined")


async def test_a_deny_of_the_wrong_type_denies(shape: PolicySet) -> None:
    decision = await decide_async(
        shape, _shape_request("agent.create"), now=NOW, time_limit_us=LIMIT_US
    )
    assert "not str" in _denied_by(decision, "opa_bad_result")


async def test_a_conflict_error_in_the_sidecar_denies_with_its_status(shape: PolicySet) -> None:
    fine = await decide_async(
        shape, _shape_request("agent.update", {"a": True}), now=NOW, time_limit_us=LIMIT_US
    )
    assert fine.allowed, fine.errors  # the same package answers when the rules agree
    conflict = await decide_async(
        shape,
        _shape_request("agent.update", {"a": True, "b": True}),
        now=NOW,
        time_limit_us=LIMIT_US,
    )
    assert "HTTP 500" in _denied_by(conflict, "opa_http_error")


async def test_a_builtin_type_error_in_the_sidecar_denies_as_in_process(shape: PolicySet) -> None:
    # Without strict builtin errors OPA would read `count(5)` as undefined and allow.
    request = _shape_request("agent.disable", {"items": 5})
    remote = await decide_async(shape, request, now=NOW, time_limit_us=LIMIT_US)
    assert "HTTP 500" in _denied_by(remote, "opa_http_error")
    local = decide(
        compile_bundles([_bundle("shape", SHAPE_OURS)]), request, now=NOW, time_limit_us=LIMIT_US
    )
    assert not local.allowed and local.errors
    fine = await decide_async(
        shape, _shape_request("agent.disable", {"items": [1]}), now=NOW, time_limit_us=LIMIT_US
    )
    assert fine.allowed, fine.errors


# --- the real client against a small HTTP server of ours: headers, bodies, no retries ----

TINY = {
    ".manifest": b'{"revision": "1", "roots": ["aion/agent/deploy"]}',
    "aion/agent/deploy/deploy.rego": b'package aion.agent.deploy\n\ndeny contains "no" if false\n',
}


class _FakeOpa(BaseHTTPRequestHandler):
    """Answers `POST /v1/data/...` the way the test says; records what it was sent."""

    answer: ClassVar[tuple[int, str, bytes]] = (200, "application/json", b"{}")
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).seen.append((self.path, self.headers.get("Authorization", "")))
        status, content_type, body = type(self).answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def fake_opa() -> Iterator[tuple[str, type[_FakeOpa]]]:
    _FakeOpa.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpa)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _FakeOpa
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def _tiny_decision(url: str, token: str = "") -> Decision:
    querier = AiohttpOpaQuerier(url, token=token, timeout_s=TIMEOUT_S)
    try:
        policy_set = compile_bundles(
            [_bundle("tiny", TINY)],
            remote=RemoteRego(querier, all_bundles=True, timeout_s=TIMEOUT_S),
        )
        return await decide_async(policy_set, _request(READY), now=NOW, time_limit_us=LIMIT_US)
    finally:
        await querier.aclose()


async def test_the_client_sends_the_token_and_asks_for_provenance(
    fake_opa: tuple[str, type[_FakeOpa]],
) -> None:
    url, handler = fake_opa
    body = {
        "result": {"deny": ["from the fake"]},
        "provenance": {"bundles": {"tiny": {"revision": "1"}}},
    }
    handler.answer = (200, "application/json", json.dumps(body).encode())
    decision = await _tiny_decision(url, token="s3cret")
    assert [(r.engine, r.message) for r in decision.reasons] == [("opa", "from the fake")]
    assert handler.seen == [
        ("/v1/data/aion/agent/deploy?provenance=true&strict-builtin-errors=true", "Bearer s3cret")
    ]


async def test_a_body_that_is_not_json_denies(fake_opa: tuple[str, type[_FakeOpa]]) -> None:
    url, handler = fake_opa
    handler.answer = (200, "text/html", b"<html>a proxy's login page</html>")
    _denied_by(await _tiny_decision(url), "opa_bad_result")


async def test_a_502_denies_at_once_without_retrying(fake_opa: tuple[str, type[_FakeOpa]]) -> None:
    url, handler = fake_opa
    handler.answer = (502, "application/json", b'{"code": "bad_gateway"}')
    assert "HTTP 502" in _denied_by(await _tiny_decision(url), "opa_http_error")
    assert len(handler.seen) == 1  # the client's default would have retried 502 twice


async def test_concurrent_first_queries_open_one_session(
    fake_opa: tuple[str, type[_FakeOpa]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import engine.opa_client_aiohttp as module

    opened: list[object] = []

    class Counting(module.AsyncOpaClient):  # type: ignore[misc]
        async def __aenter__(self) -> Any:
            opened.append(self)
            await asyncio.sleep(0)  # let the other first queries reach the same point
            return await super().__aenter__()

    monkeypatch.setattr(module, "AsyncOpaClient", Counting)
    url, handler = fake_opa
    body = {"result": {"deny": []}, "provenance": {"bundles": {"tiny": {"revision": "1"}}}}
    handler.answer = (200, "application/json", json.dumps(body).encode())
    querier = AiohttpOpaQuerier(url, timeout_s=TIMEOUT_S)
    try:
        answers = await asyncio.gather(
            *(querier.query("aion/agent/deploy", {}, timeout_s=TIMEOUT_S) for _ in range(5))
        )
    finally:
        await querier.aclose()
    assert [a.status for a in answers] == [200] * 5
    assert len(opened) == 1
