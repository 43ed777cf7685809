"""Per-bundle enforcement modes on top of a decision."""

from __future__ import annotations

from engine import Mode, apply_bundle_modes, combine
from engine.model import EvalError, Reason
from engine.verdict import EngineVerdict


def _denied(*bundles: str, error: bool = False):  # type: ignore[no-untyped-def]
    verdict = EngineVerdict("rego", participated=True)
    verdict.denies += [Reason("rego", f"{b}.rule", f"denied by {b}", b) for b in bundles]
    if error:
        verdict.errors.append(EvalError("rego", "rego_eval_error", "boom"))
    return combine([verdict], action="agent.deploy", decision_id="d", revisions={})


def test_enforce_by_default() -> None:
    decision = _denied("a")
    assert apply_bundle_modes(decision, {"b": Mode.WARN}) == decision
    assert apply_bundle_modes(decision, {"a": Mode.ENFORCE}).allowed is False


def test_warn_lets_through_with_warnings() -> None:
    decision = apply_bundle_modes(_denied("a"), {"a": Mode.WARN})
    assert (decision.allowed, decision.outcome, decision.mode) == (True, "allow", Mode.WARN)
    assert [w.policy for w in decision.warnings] == ["a.rule"]
    assert decision.verdict_allowed is False


def test_audit_records_only() -> None:
    decision = apply_bundle_modes(_denied("a"), {"a": Mode.AUDIT})
    assert (decision.allowed, decision.mode) == (True, Mode.AUDIT)
    assert [r.policy for r in decision.reasons] == ["a.rule"]


def test_one_enforcing_bundle_still_blocks() -> None:
    decision = apply_bundle_modes(_denied("a", "b"), {"a": Mode.WARN})
    assert decision.allowed is False


def test_require_approval_parks() -> None:
    decision = apply_bundle_modes(_denied("a", "b"), {"a": Mode.WARN, "b": Mode.REQUIRE_APPROVAL})
    assert (decision.allowed, decision.outcome) == (False, "pending_approval")


def test_errors_always_deny() -> None:
    decision = apply_bundle_modes(_denied("a", error=True), {"a": Mode.AUDIT})
    assert (decision.allowed, decision.outcome) == (False, "deny")


def test_reasons_without_bundle_block() -> None:
    verdict = EngineVerdict("cedar", participated=True, permitted=False)
    decision = combine([verdict], action="agent.deploy", decision_id="d", revisions={})
    assert apply_bundle_modes(decision, {"a": Mode.AUDIT}).allowed is False


def test_approval_satisfies_require_approval_only() -> None:
    approved = apply_bundle_modes(_denied("a"), {"a": Mode.REQUIRE_APPROVAL}, approved=True)
    assert (approved.allowed, approved.mode) == (True, Mode.REQUIRE_APPROVAL)
    still = apply_bundle_modes(_denied("a", "b"), {"a": Mode.REQUIRE_APPROVAL}, approved=True)
    assert still.allowed is False, "an approval does not override an enforcing bundle"
