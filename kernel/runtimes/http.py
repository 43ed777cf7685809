"""HTTP runtime: one call to an OpenAI-compatible chat-completions endpoint.

``POST {base_url}/chat/completions`` with ``model`` and ``messages``; the
assistant's reply is stored as the artifact ``completion.txt`` and the raw
response body as ``response.json``.

Messages come from the task payload: ``payload["messages"]`` when present (a
list of ``{role, content}``), otherwise one user message whose content is
``payload["input"]`` (JSON-encoded unless it is a string), after an optional
system prompt.

Outcomes: 2xx with a reply succeeded; 408, 409, 429 and 5xx, timeouts and
connection errors are retryable; other 4xx and malformed replies are permanent.
The transport is injectable (``httpx.MockTransport`` in tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from kernel.model import Artifact, RunOutcome, RunResult, TaskSpec
from kernel.runtime import RunContext

_RETRY_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class HttpRuntimeConfig:
    """One model endpoint."""

    base_url: str
    """For example ``https://api.example.com/v1`` (``/chat/completions`` is appended)."""
    model: str
    api_key: str = ""
    """Sent as ``Authorization: Bearer``; never logged."""
    timeout_s: float = 60.0
    system_prompt: str = ""
    max_tokens: int | None = None
    temperature: float | None = None


def build_messages(payload: dict[str, Any], system_prompt: str) -> list[dict[str, Any]]:
    """The ``messages`` of the request for a task payload."""
    given = payload.get("messages")
    if isinstance(given, list):
        return list(given)
    value = payload.get("input", "")
    content = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": content})
    return messages


class HttpRuntime:
    """Runs a task as one chat-completions request."""

    def __init__(
        self, config: HttpRuntimeConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.transport = transport

    def request_body(self, task: TaskSpec) -> dict[str, Any]:
        """The JSON body sent for ``task``."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": build_messages(dict(task.payload), self.config.system_prompt),
        }
        if self.config.max_tokens is not None:
            body["max_tokens"] = self.config.max_tokens
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        return body

    async def run(self, task: TaskSpec, ctx: RunContext) -> RunResult:
        """POST the request and classify the answer."""
        cfg = self.config
        headers = {"X-AION-Run-Id": ctx.run_id}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        async with httpx.AsyncClient(transport=self.transport, timeout=cfg.timeout_s) as client:
            try:
                response = await client.post(url, json=self.request_body(task), headers=headers)
            except httpx.TimeoutException as exc:
                return _fail(RunOutcome.FAILED_RETRYABLE, f"model endpoint timed out: {exc}")
            except httpx.TransportError as exc:
                return _fail(RunOutcome.FAILED_RETRYABLE, f"model endpoint unreachable: {exc}")
        return _classify(response)


def _fail(outcome: RunOutcome, cause: str) -> RunResult:
    return RunResult(outcome=outcome, cause=cause)


def _classify(response: httpx.Response) -> RunResult:
    status = response.status_code
    if status in _RETRY_STATUS or status >= 500:
        return _fail(RunOutcome.FAILED_RETRYABLE, f"model endpoint answered {status}")
    if status >= 400:
        return _fail(RunOutcome.FAILED_PERMANENT, f"model endpoint answered {status}")
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return _fail(RunOutcome.FAILED_PERMANENT, "malformed chat-completions response")
    if not isinstance(content, str):
        return _fail(RunOutcome.FAILED_PERMANENT, "chat-completions reply has no text content")
    return RunResult(
        outcome=RunOutcome.SUCCEEDED,
        outputs=(
            Artifact.of("completion.txt", content.encode()),
            Artifact.of("response.json", response.content),
        ),
    )
