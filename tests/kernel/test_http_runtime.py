"""The chat-completions runtime against an in-process fake endpoint."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from kernel.model import RunOutcome, TaskSpec
from kernel.runtime import RunContext
from kernel.runtimes.http import HttpRuntime, HttpRuntimeConfig

pytestmark = pytest.mark.anyio

CONFIG = HttpRuntimeConfig(
    base_url="https://models.example/v1/",
    model="tiny-1",
    api_key="sk-test",
    system_prompt="Be brief.",
)
CTX = RunContext(run_id="run-9", task_id="t", attempt=1, worker_id="w", run_token="tok")


def _task(payload: dict[str, object]) -> TaskSpec:
    return TaskSpec(task_id="t", tenant="t1", agent_id="a1", payload=payload)


async def test_completion_becomes_an_artifact() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = {"choices": [{"message": {"role": "assistant", "content": "4"}}]}
        return httpx.Response(200, json=reply)

    runtime = HttpRuntime(CONFIG, transport=httpx.MockTransport(handler))
    result = await runtime.run(_task({"input": "2+2?"}), CTX)
    assert result.outcome is RunOutcome.SUCCEEDED
    (request,) = seen
    assert str(request.url) == "https://models.example/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert json.loads(request.content) == {
        "model": "tiny-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
        ],
    }
    arts = {a.name: a for a in result.outputs}
    assert arts["completion.txt"].data == b"4"
    assert arts["completion.txt"].sha256 == hashlib.sha256(b"4").hexdigest()


async def test_explicit_messages_are_sent_as_given() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    messages = [{"role": "user", "content": "hi"}]
    runtime = HttpRuntime(CONFIG, transport=httpx.MockTransport(handler))
    await runtime.run(_task({"messages": messages}), CTX)
    assert bodies[0]["messages"] == messages


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (429, RunOutcome.FAILED_RETRYABLE),
        (503, RunOutcome.FAILED_RETRYABLE),
        (400, RunOutcome.FAILED_PERMANENT),
        (401, RunOutcome.FAILED_PERMANENT),
    ],
)
async def test_error_statuses(status: int, outcome: RunOutcome) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json={}))
    result = await HttpRuntime(CONFIG, transport=transport).run(_task({"input": "x"}), CTX)
    assert result.outcome is outcome
    assert str(status) in result.cause


async def test_malformed_reply_is_permanent_and_network_errors_retryable() -> None:
    garbage = httpx.MockTransport(lambda request: httpx.Response(200, text="not json"))
    result = await HttpRuntime(CONFIG, transport=garbage).run(_task({"input": "x"}), CTX)
    assert result.outcome is RunOutcome.FAILED_PERMANENT

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down = HttpRuntime(CONFIG, transport=httpx.MockTransport(refuse))
    result = await down.run(_task({"input": "x"}), CTX)
    assert result.outcome is RunOutcome.FAILED_RETRYABLE
    assert "unreachable" in result.cause
