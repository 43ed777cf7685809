"""Rego evaluation through compile_bundles + decide."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import Bundle, PolicyError, PolicySet, RegoOptions, compile_bundles

Make = Callable[..., Bundle]

DEPLOY = """package aion.agent.deploy

deny contains "production needs the deployer role" if {
	input.resource.attributes.env == "prod"
	not "deployer" in input.principal.roles
}

deny contains {"msg": "budget exceeded", "id": "budget.max", "limit": 10} if {
	input.context.budget > 10
}

warn contains "deploying on a Friday" if input.context.friday

obligations contains {"type": "notify", "channel": "ops"} if input.resource.attributes.env == "prod"
"""

COMMON = """package aion.common

deny contains "tenant mismatch" if input.principal.tenant != input.resource.tenant

warn contains {"msg": "common warning", "id": "common.w"} if input.context.common_warn
"""


def _compile(make_bundle: Make, *sources: str, **kwargs: Any) -> PolicySet:
    files = {f"p{i}.rego": src for i, src in enumerate(sources)}
    return compile_bundles(
        [make_bundle(files, kwargs.pop("name", "b"), kwargs.pop("manifest", None))], **kwargs
    )


def _problems(exc: pytest.ExceptionInfo[PolicyError]) -> list[tuple[str, str, int | None]]:
    return [(p.file, p.code, p.line) for p in exc.value.problems]


def test_allowed_when_nothing_denies(make_bundle: Make, make_request: Any, decide_now: Any) -> None:
    decision = decide_now(_compile(make_bundle, DEPLOY, COMMON), make_request())
    assert (decision.allowed, decision.reasons, decision.errors) == (True, [], [])
    assert [e.engine for e in decision.engines if e.participated] == ["rego"]


def test_string_deny_becomes_a_reason(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    request = make_request(attributes={"env": "prod"})
    decision = decide_now(_compile(make_bundle, DEPLOY, name="platform"), request)
    assert not decision.allowed
    assert [(r.engine, r.bundle, r.policy, r.message) for r in decision.reasons] == [
        ("rego", "platform", "aion.agent.deploy.deny", "production needs the deployer role")
    ]


def test_object_deny_uses_msg_and_id(make_bundle: Make, make_request: Any, decide_now: Any) -> None:
    request = make_request(context={"budget": 11})
    decision = decide_now(_compile(make_bundle, DEPLOY, name="platform"), request)
    assert not decision.allowed
    assert decision.errors == []
    [reason] = decision.reasons
    assert (reason.bundle, reason.policy, reason.message) == (
        "platform",
        "budget.max",
        "budget exceeded",
    )
    assert reason.details == {"limit": 10}


def test_deny_true_is_a_reason(make_bundle: Make, make_request: Any, decide_now: Any) -> None:
    src = (
        "package aion.agent.deploy\n\ndeny := true if input.context.stop\n\ndefault deny := false\n"
    )
    policy_set = _compile(make_bundle, src)
    assert decide_now(policy_set, make_request()).allowed
    [reason] = decide_now(policy_set, make_request(context={"stop": True})).reasons
    assert reason.policy == "aion.agent.deploy.deny"


def test_warn_and_obligations_are_collected(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    request = make_request(
        roles=("deployer",), attributes={"env": "prod"}, context={"friday": True}
    )
    decision = decide_now(_compile(make_bundle, DEPLOY, COMMON), request)
    assert decision.allowed
    assert [(w.policy, w.message) for w in decision.warnings] == [
        ("aion.agent.deploy.warn", "deploying on a Friday")
    ]
    assert decision.obligations == [{"channel": "ops", "type": "notify"}]


def test_undefined_warn_or_obligations_mean_none(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    # Complete rules that do not fire are undefined; only an undefined `deny` fails closed.
    src = """package aion.agent.deploy

deny contains "no" if input.context.bad

warn := "careful" if input.context.careful

obligations := [{"notify": "ops"}] if input.context.notify
"""
    common = 'package aion.common\n\nwarn := "common" if input.context.common\n'
    policy_set = _compile(make_bundle, src, common)
    quiet = decide_now(policy_set, make_request())
    assert (quiet.allowed, quiet.errors, quiet.warnings, quiet.obligations) == (True, [], [], [])
    loud = decide_now(policy_set, make_request(context={"careful": True, "notify": True}))
    assert loud.allowed
    assert [w.message for w in loud.warnings] == ["careful"]
    assert loud.obligations == [{"notify": "ops"}]
    denied = decide_now(policy_set, make_request(context={"bad": True, "common": True}))
    assert [r.message for r in denied.reasons] == ["no"]
    assert [w.policy for w in denied.warnings] == ["aion.common.warn"]


def test_common_package_applies_to_every_action(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    policy_set = _compile(make_bundle, DEPLOY, COMMON)
    assert decide_now(policy_set, make_request()).allowed
    mismatch = make_request(principal_tenant="other", context={"common_warn": True})
    decision = decide_now(policy_set, mismatch)
    assert not decision.allowed
    assert [(r.policy, r.message) for r in decision.reasons] == [
        ("aion.common.deny", "tenant mismatch")
    ]
    assert [(w.policy, w.message) for w in decision.warnings] == [("common.w", "common warning")]


def test_common_alone_does_not_govern_an_action(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    decision = decide_now(_compile(make_bundle, COMMON), make_request())
    assert not decision.allowed
    assert [r.policy for r in decision.reasons] == ["no_policy"]


def test_package_without_deny_fails_closed(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    src = 'package aion.agent.deploy\n\nwarn contains "w" if true\n'
    decision = decide_now(_compile(make_bundle, src), make_request())
    assert not decision.allowed
    assert [e.code for e in decision.errors] == ["undefined_result"]
    assert "data.aion.agent.deploy.deny" in decision.errors[0].message


def test_undefined_deny_fails_closed(make_bundle: Make, make_request: Any, decide_now: Any) -> None:
    src = 'package aion.agent.deploy\n\ndeny := "x" if input.context.never\n'
    decision = decide_now(_compile(make_bundle, src), make_request())
    assert not decision.allowed
    assert [e.code for e in decision.errors] == ["undefined_result"]


@pytest.mark.parametrize(
    ("src", "fragment"),
    [
        (
            "package aion.agent.deploy\n\nv := 1 if true\n\nv := 2 if true\n\n"
            'deny contains "x" if v == 3\n',
            "conflict",
        ),
        (
            'package aion.agent.deploy\n\ndeny contains "x" if 1 / input.context.zero > 0\n',
            "divide by zero",
        ),
    ],
    ids=["complete-rule-conflict", "division-by-zero"],
)
def test_runtime_error_fails_closed(
    src: str, fragment: str, make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    decision = decide_now(_compile(make_bundle, src), make_request(context={"zero": 0}))
    assert not decision.allowed
    assert [e.code for e in decision.errors] == ["rego_eval_error"]
    assert fragment in decision.errors[0].message
    assert "Stack backtrace" not in decision.errors[0].message


# --- capabilities ----------------------------------------------------------------------------

HTTP_CALL = """package aion.agent.deploy

deny contains "remote says no" if {
	resp := http.send({"method": "GET", "url": "http://example.invalid"})
	resp.status_code != 200
}
"""

HTTP_WITH_ONLY = """package aion.agent.deploy

mock(_) := {"status_code": 200}

status := 200

deny contains "x" if {
	s := status with http.send as mock
	s != 200
}
"""

RUNTIME = """package aion.agent.deploy

deny contains "env" if opa.runtime().env.STAGE == "prod"
"""


@pytest.mark.parametrize(
    ("src", "builtin", "line"),
    [(HTTP_CALL, "http.send", 4), (HTTP_WITH_ONLY, "http.send", 8), (RUNTIME, "opa.runtime", 3)],
    ids=["call", "with-target", "opa.runtime"],
)
def test_impure_builtins_are_refused_at_compile(
    src: str, builtin: str, line: int, make_bundle: Make
) -> None:
    with pytest.raises(PolicyError) as info:
        _compile(make_bundle, src)
    assert _problems(info) == [("p0.rego", "rego_capability_error", line)]
    assert f"`{builtin}`" in info.value.problems[0].message


def test_every_refused_use_is_reported(make_bundle: Make) -> None:
    with pytest.raises(PolicyError) as info:
        _compile(make_bundle, HTTP_CALL, RUNTIME)
    assert sorted(_problems(info)) == [
        ("p0.rego", "rego_capability_error", 4),
        ("p1.rego", "rego_capability_error", 3),
    ]


@pytest.mark.parametrize("src", [HTTP_CALL, HTTP_WITH_ONLY], ids=["call", "with-target"])
def test_enabling_the_capability_compiles(src: str, make_bundle: Make) -> None:
    options = RegoOptions(capabilities=frozenset({"http.send"}))
    assert _compile(make_bundle, src, rego_options=options).participating("agent.deploy") == [
        "rego"
    ]


def test_enabling_one_capability_does_not_enable_others(make_bundle: Make) -> None:
    options = RegoOptions(capabilities=frozenset({"http.send"}))
    with pytest.raises(PolicyError, match=r"opa\.runtime"):
        _compile(make_bundle, RUNTIME, rego_options=options)


# --- time ------------------------------------------------------------------------------------

NOW_NS = """package aion.agent.deploy

deny contains sprintf("%d", [time.now_ns()]) if input.context.show_time

deny contains "before 2002" if time.now_ns() < time.parse_rfc3339_ns("2002-01-01T00:00:00Z")
"""


def test_time_now_ns_is_the_time_passed_to_decide(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    policy_set = _compile(make_bundle, NOW_NS)
    # 999999 µs: a float of nanoseconds since 1970 would be off by ~100 ns here.
    when = datetime(2001, 9, 9, 1, 46, 40, 999999, tzinfo=UTC)
    expected_ns = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    decision = decide_now(policy_set, make_request(context={"show_time": True}), when=when)
    assert sorted(r.message for r in decision.reasons) == sorted([str(expected_ns), "before 2002"])
    later = decide_now(policy_set, make_request(), when=datetime(2002, 6, 1, tzinfo=UTC))
    assert later.allowed


def test_time_is_per_decision(make_bundle: Make, make_request: Any, decide_now: Any) -> None:
    policy_set = _compile(make_bundle, NOW_NS)
    old = decide_now(policy_set, make_request(), when=datetime(2001, 1, 1, tzinfo=UTC))
    new = decide_now(policy_set, make_request(), when=datetime(2003, 1, 1, tzinfo=UTC))
    again = decide_now(policy_set, make_request(), when=datetime(2001, 1, 1, tzinfo=UTC))
    assert (old.allowed, new.allowed, again.allowed) == (False, True, False)


# --- Rego versions ---------------------------------------------------------------------------

V0 = """package aion.agent.deploy

deny["v0 syntax"] {
	input.context.old
}
"""


def test_v0_syntax_is_refused_by_default(make_bundle: Make) -> None:
    with pytest.raises(PolicyError) as info:
        _compile(make_bundle, V0)
    assert _problems(info) == [("p0.rego", "rego_parse_error", 3)]


def test_v0_syntax_compiles_with_v0_compatible(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    policy_set = _compile(make_bundle, V0, rego_options=RegoOptions(v0_compatible=True))
    decision = decide_now(policy_set, make_request(context={"old": True}))
    assert [r.message for r in decision.reasons] == ["v0 syntax"]


def test_v0_syntax_compiles_with_manifest_rego_version_0(
    make_bundle: Make, make_request: Any, decide_now: Any
) -> None:
    policy_set = _compile(make_bundle, V0, manifest={"rego_version": 0})
    assert decide_now(policy_set, make_request()).allowed
    assert not decide_now(policy_set, make_request(context={"old": True})).allowed


def test_parse_errors_name_file_and_line(make_bundle: Make) -> None:
    with pytest.raises(PolicyError) as info:
        _compile(make_bundle, DEPLOY, "package aion.agent.create\n\ndeny contains if {\n")
    [problem] = info.value.problems
    assert (problem.file, problem.code) == ("p1.rego", "rego_parse_error")
    assert problem.line is not None
    assert str(problem).startswith(f"p1.rego:{problem.line}")
