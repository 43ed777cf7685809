"""opa-python-client against a real `aion serve`, and the same queries against a real OPA.

Both servers hold the shipped bundles (ours installs them at first start; OPA
loads the same sources built with `aion bundle build` and verified with our
key); the answers must agree with each other and with the embedded engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from opa_client import OpaClient
from opa_client.opa_async import AsyncOpaClient

from engine import DecisionRequest, PolicySet, compile_bundles, decide, load_bundle
from server.cli.main import main
from tests.services import aion_serve, free_port

pytestmark = pytest.mark.anyio

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
CASES = REPO / "tests" / "conformance" / "cases"
PACKAGES = {"agent.deploy": "aion.agent.deploy", "tool.invoke": "aion.tool.invoke"}


def _requests() -> list[dict[str, Any]]:
    docs = []
    for file in ("deploy-gates.yaml", "tool-bypasses.yaml"):
        for case in yaml.safe_load((CASES / file).read_text()):
            if case["request"]["action"] in PACKAGES:
                request = msgspec.convert(case["request"], DecisionRequest)
                docs.append(msgspec.to_builtins(request))
    return docs


REQUESTS = _requests()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):  # bounded wait for start-up (60 s), polling a health endpoint
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering at all is ready
        except OSError:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def aion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """`aion serve` with its shipped bundles: (port, admin token of tenant `default`)."""
    with aion_serve(tmp_path_factory.mktemp("aion-serve")) as (base, token):
        yield int(base.rsplit(":", 1)[1]), token


@pytest.fixture(scope="module")
def opa(
    opa_bin: Path,
    key_pairs: dict[str, tuple[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    """A real `opa run --server` with the shipped bundles, built and signed by `aion`."""
    tmp = tmp_path_factory.mktemp("opa-serve")
    private, public = tmp / "signing.pem", tmp / "signing.pub"
    private.write_text(key_pairs["ES256"][0])
    public.write_text(key_pairs["ES256"][1])
    archives = []
    for source in sorted(p for p in POLICIES.iterdir() if (p / ".manifest").exists()):
        archive = tmp / f"{source.name}.tar.gz"
        build = ["bundle", "build", str(source), "-o", str(archive)]
        assert main([*build, "--signing-key", str(private), "--signing-alg", "ES256"]) == 0
        archives.append(str(archive))
    port = free_port()
    out = tmp / "opa.log"
    with out.open("w") as log:
        proc = subprocess.Popen(
            [
                str(opa_bin),
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{port}",
                "--verification-key",
                str(public),
                "--signing-alg",
                "ES256",
                "--bundle",
                *archives,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(f"http://127.0.0.1:{port}/health?bundles", proc, out)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def embedded() -> PolicySet:
    return compile_bundles([load_bundle(POLICIES / name) for name in sorted(os.listdir(POLICIES))])


def _rego_denials(policy_set: PolicySet, doc: dict[str, Any]) -> set[str]:
    request = msgspec.convert(doc, DecisionRequest)
    decision = decide(policy_set, request, now=datetime.now(UTC), decision_id="embedded")
    return {r.message for r in decision.reasons if r.engine == "rego"}


def _messages(denials: list[Any]) -> set[str]:
    return {d["msg"] if isinstance(d, dict) else str(d) for d in denials}


def _canonical(value: Any) -> Any:
    """Sets travel as arrays in both servers, possibly in another order: compare them sorted."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _post(port: int, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/data/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def test_async_client_answers_as_the_embedded_engine(
    aion: tuple[int, str], embedded: PolicySet
) -> None:
    port, token = aion
    async with AsyncOpaClient(host="127.0.0.1", port=port, token=token, retries=0) as client:
        for doc in REQUESTS:
            package = PACKAGES[doc["action"]]
            whole = await client.query_rule(doc, package)
            rule = await client.query_rule(doc, package, rule_name="deny")
            assert _messages(whole["result"]["deny"]) == _rego_denials(embedded, doc)
            assert _canonical(rule["result"]) == _canonical(whole["result"]["deny"])
            assert whole["decision_id"].startswith("dec_")
            undefined = await client.query_rule(doc, package, rule_name="no_such_rule")
            assert list(undefined) == ["decision_id"]


def test_sync_client_answers_as_the_embedded_engine(
    aion: tuple[int, str], embedded: PolicySet
) -> None:
    port, token = aion
    client = OpaClient(host="127.0.0.1", port=port, token=token, retries=0, timeout=10)
    try:
        for doc in REQUESTS[::3]:
            answer = client.query_rule(doc, PACKAGES[doc["action"]], rule_name="deny")
            assert _messages(answer["result"]) == _rego_denials(embedded, doc)
        metrics = client.query_rule({}, "aion.agent.deploy", query_params={"metrics": True})
        assert metrics["metrics"]["timer_server_handler_ns"] > 0
    finally:
        client.close_connection()


async def test_a_bad_token_and_a_bad_path_raise_in_the_client(aion: tuple[int, str]) -> None:
    port, token = aion
    async with AsyncOpaClient(host="127.0.0.1", port=port, token="nope", retries=0) as client:
        with pytest.raises(Exception, match="401"):
            await client.query_rule({}, "aion.agent.deploy")
    async with AsyncOpaClient(host="127.0.0.1", port=port, token=token, retries=0) as client:
        with pytest.raises(Exception, match="400"):
            await client.query_rule({}, "aion.agent.deploy", rule_name="deny[_]")


def _compare(ours: OpaClient, opa: int, doc: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(ours, OPA's) result of the package and of its `deny` rule for ``doc``."""
    package = PACKAGES[doc["action"]]
    path = package.replace(".", "/")
    pairs = []
    for rule in (None, "deny"):
        mine = ours.query_rule(doc, package, rule_name=rule)
        theirs = _post(opa, f"{path}/{rule}" if rule else path, {"input": doc})
        assert ("result" in mine) == ("result" in theirs), (path, rule, doc)
        pairs.append((_canonical(mine.get("result")), _canonical(theirs.get("result"))))
    return pairs


def test_real_opa_gives_the_same_results(aion: tuple[int, str], opa: int) -> None:
    port, token = aion
    ours = OpaClient(host="127.0.0.1", port=port, token=token, retries=0, timeout=10)
    try:
        # Every request: the shipped policies no longer depend on where the engines differ
        # (docs/policies.md); tests/parity compares them on generated inputs.
        for doc in REQUESTS:
            for mine, theirs in _compare(ours, opa, doc):
                assert mine == theirs, doc
        data = ours.query_rule({}, "aion.tool.invoke", rule_name="allowlists")
        assert data["result"] == _post(opa, "aion/tool/invoke/allowlists", {})["result"]
        assert len(REQUESTS) >= 40
    finally:
        ours.close_connection()
