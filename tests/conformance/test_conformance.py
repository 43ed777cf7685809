"""Data-driven conformance: folders of YAML cases against the shipped bundles.

Each file under ``cases/`` holds a list of cases::

    - name: shell command chaining is denied
      request: {action: tool.invoke, principal: {...}, resource: {...}, context: {...}}
      mode: enforce            # optional
      expect:
        allowed: false
        outcome: deny          # optional
        reasons: [default_safe.shell_metachar]   # rule ids that must be among the reasons
        engines: [rego, cedar] # optional: engines that must take part

Every case runs through the full path: load, compile, decide.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from engine import (
    DecisionRequest,
    Mode,
    PolicySet,
    compile_bundles,
    decide,
    load_bundle,
)

HERE = Path(__file__).parent
POLICIES = HERE.parent.parent / "policies"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _cases() -> list[Any]:
    params = []
    for file in sorted((HERE / "cases").glob("*.yaml")):
        for case in yaml.safe_load(file.read_text()) or []:
            params.append(pytest.param(case, id=f"{file.stem}: {case['name']}"))
    return params


@pytest.fixture(scope="module")
def shipped() -> PolicySet:
    bundles = [load_bundle(d) for d in sorted(POLICIES.iterdir()) if (d / ".manifest").exists()]
    assert len(bundles) >= 4, "the four shipped bundles are present"
    return compile_bundles(bundles)


@pytest.mark.parametrize("case", _cases())
def test_case(shipped: PolicySet, case: dict[str, Any]) -> None:
    request = msgspec.convert(case["request"], DecisionRequest)
    decision = decide(shipped, request, now=NOW, mode=Mode(case.get("mode", "enforce")))
    expect = case["expect"]
    ids = {r.policy for r in decision.reasons}
    messages = "; ".join(f"{r.policy}: {r.message}" for r in decision.reasons)
    assert decision.allowed is expect["allowed"], f"reasons: {messages}"
    if "outcome" in expect:
        assert decision.outcome == expect["outcome"]
    for rule in expect.get("reasons", []):
        assert rule in ids, f"expected reason `{rule}` among {sorted(ids)}"
    for engine in expect.get("engines", []):
        assert engine in {e.engine for e in decision.engines if e.participated}
    assert not decision.errors, (
        f"conformance cases must not hit evaluation errors: {decision.errors}"
    )
