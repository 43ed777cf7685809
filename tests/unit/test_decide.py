"""Combining engine verdicts into one decision: modes, fail-closed, deny-overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from engine import (
    Bundle,
    Decision,
    EngineVerdict,
    EvalError,
    InvalidInput,
    Mode,
    Outcome,
    PolicySet,
    Reason,
    apply_approval_obligations,
    combine,
    compile_bundles,
    decide,
)

Make = Callable[..., Bundle]

REGO_DENY_PROD = """package aion.agent.deploy

deny contains "rego: no prod" if input.resource.attributes.env == "prod"

obligations contains {"audit": true} if true
"""

CEDAR_DENY_TEST = """permit(principal, action, resource);
@id("cedar.no-test") @message("cedar: no test")
forbid(principal, action, resource) when { resource has env && resource.env == "test" };
"""

REGO_ERRORS = 'package aion.agent.deploy\n\ndeny contains "x" if 1 / input.context.zero > 0\n'


@pytest.fixture
def rego_set(make_bundle: Make) -> PolicySet:
    bundle = make_bundle({"p.rego": REGO_DENY_PROD}, "rego-bundle", {"revision": "r-41"})
    return compile_bundles([bundle])


@pytest.fixture
def both_engines(make_bundle: Make, cedar_schema: str) -> PolicySet:
    rego = make_bundle({"p.rego": REGO_DENY_PROD}, "rego-bundle", {"revision": "7"})
    cedar = make_bundle(
        {"s.cedarschema": cedar_schema, "p.cedar": CEDAR_DENY_TEST},
        "cedar-bundle",
        {"revision": "2026.03.1"},
    )
    return compile_bundles([rego, cedar])


def test_unknown_action_is_invalid_input(rego_set: PolicySet, make_request: Any, now: Any) -> None:
    with pytest.raises(InvalidInput, match=r"unknown action `agent\.explode`") as info:
        decide(rego_set, make_request("agent.explode"), now=now)
    assert info.value.code == "invalid_input"


def test_no_participating_engine_denies(
    rego_set: PolicySet, make_request: Any, decide_now: Any
) -> None:
    decision = decide_now(rego_set, make_request("memory.write", resource_type="memory"))
    assert (decision.allowed, decision.outcome, decision.verdict_allowed) == (
        False,
        Outcome.DENY,
        False,
    )
    assert [(r.engine, r.policy) for r in decision.reasons] == [("engine", "no_policy")]


@pytest.mark.parametrize("mode", list(Mode))
def test_no_policy_denies_in_every_mode(mode: Mode, make_request: Any, decide_now: Any) -> None:
    empty = compile_bundles([])
    decision = decide_now(empty, make_request(), mode=mode)
    assert (decision.allowed, decision.outcome) == (False, Outcome.DENY)


@pytest.mark.parametrize("mode", [Mode.WARN, Mode.AUDIT])
def test_warn_and_audit_let_a_policy_deny_through(
    mode: Mode, rego_set: PolicySet, make_request: Any, decide_now: Any
) -> None:
    decision = decide_now(rego_set, make_request(attributes={"env": "prod"}), mode=mode)
    assert (decision.allowed, decision.outcome, decision.verdict_allowed) == (
        True,
        Outcome.ALLOW,
        False,
    )
    assert decision.mode is mode
    assert [r.message for r in decision.reasons] == ["rego: no prod"]


def test_enforce_denies_and_keeps_the_obligations_for_later_modes(
    rego_set: PolicySet, make_request: Any, decide_now: Any
) -> None:
    allowed = decide_now(rego_set, make_request())
    assert (allowed.allowed, allowed.obligations) == (True, [{"audit": True}])
    denied = decide_now(rego_set, make_request(attributes={"env": "prod"}))
    # A per-bundle warn/audit mode or an approval may still let it through: then they bind.
    assert (denied.allowed, denied.outcome, denied.obligations) == (
        False,
        Outcome.DENY,
        [{"audit": True}],
    )


def test_require_approval_makes_a_deny_pending(
    rego_set: PolicySet, make_request: Any, decide_now: Any
) -> None:
    decision = decide_now(
        rego_set, make_request(attributes={"env": "prod"}), mode=Mode.REQUIRE_APPROVAL
    )
    assert (decision.allowed, decision.outcome, decision.verdict_allowed) == (
        False,
        Outcome.PENDING_APPROVAL,
        False,
    )
    assert [r.message for r in decision.reasons] == ["rego: no prod"]
    fine = decide_now(rego_set, make_request(), mode=Mode.REQUIRE_APPROVAL)
    assert (fine.allowed, fine.outcome) == (True, Outcome.ALLOW)


@pytest.mark.parametrize("mode", list(Mode))
def test_engine_error_denies_in_every_mode(
    mode: Mode, make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    policy_set = compile_bundles([make_bundle({"p.rego": REGO_ERRORS})])
    decision = decide_now(policy_set, make_request(context={"zero": 0}), mode=mode)
    assert (decision.allowed, decision.outcome, decision.verdict_allowed) == (
        False,
        Outcome.DENY,
        False,
    )
    assert [e.code for e in decision.errors] == ["rego_eval_error"]
    assert "rego_eval_error" in [r.policy for r in decision.reasons]


@pytest.mark.parametrize("mode", list(Mode))
def test_time_limit_zero_denies_with_evaluation_timeout(
    mode: Mode, rego_set: PolicySet, make_request: Any, decide_now: Any
) -> None:
    decision = decide_now(rego_set, make_request(), mode=mode, time_limit_us=0)
    assert (decision.allowed, decision.outcome) == (False, Outcome.DENY)
    assert [e.code for e in decision.errors] == ["evaluation_timeout"]
    assert [r.policy for r in decision.reasons] == ["evaluation_timeout"]


def test_decision_records_revisions_and_ids(
    both_engines: PolicySet, make_request: Any, now: Any
) -> None:
    decision = decide(both_engines, make_request(), now=now, decision_id="d-1")
    assert decision.revisions == {"rego-bundle": "7", "cedar-bundle": "2026.03.1"}
    assert (decision.decision_id, decision.action) == ("d-1", "agent.deploy")
    generated = decide(both_engines, make_request(), now=now)
    assert generated.decision_id and generated.decision_id != "d-1"


def test_both_engines_allow(both_engines: PolicySet, make_request: Any, decide_now: Any) -> None:
    decision = decide_now(both_engines, make_request())
    assert decision.allowed
    assert sorted((e.engine, e.participated, e.allowed) for e in decision.engines) == [
        ("cedar", True, True),
        ("rego", True, True),
    ]


@pytest.mark.parametrize(
    "case",
    [("test", "cedar", "cedar: no test"), ("prod", "rego", "rego: no prod")],
    ids=["rego-allows-cedar-denies", "cedar-allows-rego-denies"],
)
def test_deny_overrides_across_engines(
    case: tuple[str, str, str], both_engines: PolicySet, make_request: Any, decide_now: Any
) -> None:
    env, denying_engine, message = case
    decision = decide_now(both_engines, make_request(attributes={"env": env}))
    assert not decision.allowed
    assert [(r.engine, r.message) for r in decision.reasons] == [(denying_engine, message)]
    by_engine = {e.engine: e.allowed for e in decision.engines}
    assert by_engine == {"rego": denying_engine != "rego", "cedar": denying_engine != "cedar"}


def test_policy_set_digest_tracks_content(make_bundle: Make) -> None:
    one = compile_bundles([make_bundle({"p.rego": REGO_DENY_PROD})])
    same = compile_bundles([make_bundle({"p.rego": REGO_DENY_PROD})])
    other = compile_bundles([make_bundle({"p.rego": REGO_DENY_PROD + "\n"})])
    assert one.digest == same.digest
    assert one.digest != other.digest


class _Exploding:
    engine_name = "exploding"

    def participates(self, action: str) -> bool:
        return True

    def evaluate(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        raise RuntimeError("boom")


def test_an_evaluator_that_raises_denies(
    rego_set: PolicySet, make_request: Any, decide_now: Any
) -> None:
    broken = PolicySet(
        rego_set.revisions, rego_set.digest, (*rego_set.evaluators, _Exploding()), None, None
    )
    decision = decide_now(broken, make_request(), mode=Mode.AUDIT)
    assert (decision.allowed, decision.outcome) == (False, Outcome.DENY)
    assert [e.engine for e in decision.errors] == ["exploding"]


# --- combine, directly ------------------------------------------------------------------------


def _verdict(
    engine: str, *, deny: str = "", error: str = "", permitted: bool = True
) -> EngineVerdict:
    verdict = EngineVerdict(engine, participated=True, permitted=permitted)
    if deny:
        verdict.denies.append(Reason(engine, f"{engine}.deny", deny))
    if error:
        verdict.errors.append(EvalError(engine, error, "failed"))
    return verdict


def test_combine_is_order_independent() -> None:
    verdicts = [_verdict("rego", deny="r"), _verdict("cedar", deny="c"), _verdict("remote")]
    kwargs: dict[str, Any] = {"action": "agent.deploy", "decision_id": "x", "revisions": {}}
    forward = combine(verdicts, **kwargs)
    backward = combine(list(reversed(verdicts)), **kwargs)
    assert forward == backward
    assert [r.message for r in forward.reasons] == ["c", "r"]


def test_combine_non_participants_do_not_allow() -> None:
    idle = EngineVerdict("rego", participated=False)
    decision = combine([idle], action="agent.deploy", decision_id="x", revisions={})
    assert not decision.allowed
    assert [r.policy for r in decision.reasons] == ["no_policy"]


def test_combine_a_verdict_that_did_not_permit_denies() -> None:
    decision = combine(
        [_verdict("rego"), _verdict("cedar", permitted=False)],
        action="agent.deploy",
        decision_id="x",
        revisions={},
    )
    assert (decision.allowed, decision.verdict_allowed) == (False, False)


def test_combine_over_the_time_limit() -> None:
    kwargs: dict[str, Any] = {"action": "agent.deploy", "decision_id": "x", "revisions": {}}
    within = combine([_verdict("rego")], duration_us=100.0, time_limit_us=100.0, **kwargs)
    over = combine([_verdict("rego")], duration_us=100.5, time_limit_us=100.0, **kwargs)
    assert within.allowed
    assert not over.allowed
    assert [e.code for e in over.errors] == ["evaluation_timeout"]


def test_a_require_approval_obligation_parks_an_allow_until_approved() -> None:
    allowed = Decision(
        decision_id="d",
        action="agent.deploy",
        allowed=True,
        outcome=Outcome.ALLOW,
        mode=Mode.ENFORCE,
        verdict_allowed=True,
        reasons=[],
        warnings=[],
        obligations=[{"type": "require_approval", "role": "admin"}],
        engines=[],
        revisions={},
        errors=[],
        duration_us=1.0,
    )
    parked = apply_approval_obligations(allowed)
    assert (parked.allowed, parked.outcome) == (False, Outcome.PENDING_APPROVAL)
    assert apply_approval_obligations(allowed, approved=True) == allowed
    plain = msgspec.structs.replace(allowed, obligations=[{"type": "log"}])
    assert apply_approval_obligations(plain) == plain
    denied = msgspec.structs.replace(allowed, allowed=False, outcome=Outcome.DENY)
    assert apply_approval_obligations(denied) == denied
