"""Properties of decision combination: deny overrides, order independence, fail closed."""

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import DecisionRequest, Mode, Principal, Resource, combine, decide
from engine.model import EvalError, Reason
from engine.policyset import PolicySet
from engine.verdict import EngineVerdict

reasons = st.builds(
    Reason,
    engine=st.sampled_from(["rego", "cedar"]),
    policy=st.text(min_size=1, max_size=8),
    message=st.text(max_size=12),
)
errors = st.builds(
    EvalError,
    engine=st.sampled_from(["rego", "cedar", "opa"]),
    code=st.sampled_from(["rego_eval_error", "cedar_no_decision", "timeout"]),
    message=st.text(max_size=12),
)


@st.composite
def verdicts(draw: Any, with_error: bool = False) -> EngineVerdict:
    return EngineVerdict(
        engine=draw(st.sampled_from(["rego", "cedar", "opa"])),
        participated=draw(st.booleans()) or with_error,
        denies=draw(st.lists(reasons, max_size=3)),
        warns=draw(st.lists(reasons, max_size=2)),
        errors=draw(st.lists(errors, min_size=1, max_size=2)) if with_error else [],
        permitted=draw(st.booleans()),
    )


modes = st.sampled_from(list(Mode))


def _combine(vs: list[EngineVerdict], mode: Mode = Mode.ENFORCE) -> Any:
    return combine(vs, action="agent.deploy", decision_id="d", revisions={"b": "1"}, mode=mode)


@given(st.lists(verdicts(), max_size=4))
def test_deny_overrides(vs: list[EngineVerdict]) -> None:
    decision = _combine(vs)
    taking_part = [v for v in vs if v.participated]
    expected = bool(taking_part) and all(v.permitted and not v.denies for v in taking_part)
    assert decision.allowed is expected
    if not expected:
        assert decision.reasons, "a deny always names a reason"


@given(st.lists(verdicts(), max_size=4), st.randoms(use_true_random=False), modes)
def test_order_independent(vs: list[EngineVerdict], rnd: Any, mode: Mode) -> None:
    shuffled = list(vs)
    rnd.shuffle(shuffled)
    assert _combine(vs, mode) == _combine(shuffled, mode)


@settings(max_examples=1000)
@given(st.lists(verdicts(), max_size=3), verdicts(with_error=True), modes, st.integers(0, 3))
def test_fail_closed_under_injected_errors(
    vs: list[EngineVerdict], faulty: EngineVerdict, mode: Mode, at: int
) -> None:
    vs.insert(min(at, len(vs)), faulty)
    decision = _combine(vs, mode)
    assert decision.allowed is False
    assert decision.errors
    assert decision.outcome == "deny"


class _Faulty:
    """An engine that misbehaves in a way chosen by the test."""

    engine_name = "faulty"

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def participates(self, action: str) -> bool:
        return True

    def evaluate(self, action: str, doc: dict[str, Any], now_ns: int) -> Any:
        if self.fault == "raise":
            raise RuntimeError("engine crashed")
        if self.fault == "none":
            return None
        if self.fault == "wrong-type":
            return {"allowed": True}
        verdict = EngineVerdict("faulty", participated=True)
        verdict.errors.append(EvalError("faulty", "boom", self.fault))
        return verdict


class _Permit:
    engine_name = "permit"

    def participates(self, action: str) -> bool:
        return True

    def evaluate(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        return EngineVerdict("permit", participated=True)


REQUEST = DecisionRequest(
    action="agent.deploy",
    principal=Principal(id="u", tenant="t", roles=["admin"]),
    resource=Resource(type="agent", id="a", tenant="t"),
)


def test_permitting_engine_alone_allows() -> None:
    # The baseline for the fault test below: without a fault the same set allows.
    ps = PolicySet({}, "d", (_Permit(),), None, None)
    assert decide(ps, REQUEST, now=datetime.now(UTC)).allowed is True


@settings(max_examples=1000)
@given(st.sampled_from(["raise", "none", "wrong-type", "error"]), modes, st.booleans())
def test_decide_fails_closed_on_engine_faults(fault: str, mode: Mode, first: bool) -> None:
    engines = (_Faulty(fault), _Permit()) if first else (_Permit(), _Faulty(fault))
    ps = PolicySet({}, "d", engines, None, None)
    decision = decide(ps, REQUEST, now=datetime.now(UTC), mode=mode)
    assert decision.allowed is False
    assert any(e.engine == "faulty" for e in decision.errors)
