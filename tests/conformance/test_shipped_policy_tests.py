"""The shipped bundles' own Rego and Cedar tests pass, with 100% Rego line coverage."""

from __future__ import annotations

from pathlib import Path

from engine.testing import Outcome, discover_and_run

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_shipped_policy_tests_pass_with_full_coverage() -> None:
    report = discover_and_run([POLICIES], coverage=True)
    failed = [
        f"{r.file}: {r.name}: {r.message}"
        for r in report.results
        if r.outcome in (Outcome.FAILED, Outcome.ERRORED)
    ]
    assert failed == []
    rego = [r for r in report.results if r.name.startswith("data.")]
    cedar = [r for r in report.results if not r.name.startswith("data.")]
    assert len(rego) >= 50, "every shipped bundle carries real Rego tests"
    assert len(cedar) >= 10, "and Cedar tests"
    assert {c.file.split("/policies/")[-1].split("/")[0] for c in report.coverage} >= {
        "default-safe",
        "deploy-gates",
        "model-privacy",
        "registry-admission",
    }
    uncovered = {c.file: c.not_covered for c in report.coverage if c.not_covered}
    assert uncovered == {}
    assert report.coverage_percent == 100.0
