"""A compiled policy set decides the same from any thread (regorus engines may not cross threads)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from engine import DecisionRequest, compile_bundles, decide
from engine.bundle import load_bundle

POLICIES = Path(__file__).resolve().parents[2] / "policies"
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def _request(tool: str) -> DecisionRequest:
    return DecisionRequest(
        action="tool.invoke",
        principal={"id": "u", "tenant": "t", "roles": ["developer"], "kind": "user"},
        resource={"type": "tool", "id": tool, "tenant": "t", "attributes": {}},
        context={"tool": tool, "arguments": {"url": "http://[::1]/"}},
    )


def test_decisions_from_other_threads_equal_the_compiling_threads() -> None:
    policy_set = compile_bundles([load_bundle(POLICIES / "default-safe")])
    requests = [_request(t) for t in ("http.get", "rm", "web_search", "ops.shell")]
    here = [decide(policy_set, r, now=NOW, decision_id="d", time_limit_us=1e9) for r in requests]
    with ThreadPoolExecutor(max_workers=4) as pool:
        there = list(
            pool.map(
                lambda r: decide(policy_set, r, now=NOW, decision_id="d", time_limit_us=1e9),
                requests * 4,
            )
        )
    assert all(not d.errors for d in there), [d.errors for d in there if d.errors]
    for i, decision in enumerate(there):
        expected = here[i % len(requests)]
        assert (decision.allowed, decision.reasons) == (expected.allowed, expected.reasons)
    assert any(not d.allowed for d in here) and any(d.reasons for d in here)
