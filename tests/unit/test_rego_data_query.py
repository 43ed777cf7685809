"""CompiledRego.evaluate_path: OPA's Data API query of a plain data path, in process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine import Bundle, InvalidInput, compile_bundles
from engine.rego import CompiledRego
from engine.regodata import RegoQueryError

Make = Callable[..., Bundle]

POLICY = """package aion.agent.deploy

import rego.v1

deny contains "no model" if not input.context.model

deny contains {"id": "env", "msg": "prod needs review"} if input.resource.attributes.env == "prod"

allow if count(deny) == 0

limit := data.aion.agent.deploy.limits.max

has_input if input

input_kind := type_name(input)

now := time.now_ns()

nested.inner := 5

double(x) := x * 2

doubled := double(limit)

conflict := 1

conflict := 2 if input.clash
"""

DATA = '{"limits": {"max": 3}}'


@pytest.fixture
def rego(make_bundle: Make) -> CompiledRego:
    bundle = make_bundle(
        {"aion/agent/deploy/p.rego": POLICY, "aion/agent/deploy/data.json": DATA},
        "gates",
        {"roots": ["aion/agent/deploy"]},
    )
    compiled = compile_bundles([bundle]).rego
    assert compiled is not None
    return compiled


DEPLOY = ("aion", "agent", "deploy")
GOOD = {"context": {"model": "m"}, "resource": {"attributes": {"env": "dev"}}}


def test_a_rule_answers_its_value(rego: CompiledRego) -> None:
    assert rego.evaluate_path((*DEPLOY, "allow"), GOOD, 0) == (True, True)
    prod = {"resource": {"attributes": {"env": "prod"}}}
    defined, deny = rego.evaluate_path((*DEPLOY, "deny"), prod, 0)
    assert defined
    assert sorted(deny, key=str) == sorted(
        ["no model", {"id": "env", "msg": "prod needs review"}], key=str
    )


def test_a_package_answers_its_rules_and_data(rego: CompiledRego) -> None:
    defined, value = rego.evaluate_path(DEPLOY, GOOD, 0)
    assert defined
    assert value["deny"] == [] and value["allow"] is True
    assert value["limits"] == {"max": 3} and value["limit"] == 3
    assert rego.evaluate_path((*DEPLOY, "limits", "max"), GOOD, 0) == (True, 3)


def test_reference_heads_and_functions_as_in_opa(rego: CompiledRego) -> None:
    assert rego.evaluate_path((*DEPLOY, "nested"), GOOD, 0) == (True, {"inner": 5})
    assert rego.evaluate_path((*DEPLOY, "nested", "inner"), GOOD, 0) == (True, 5)
    assert rego.evaluate_path((*DEPLOY, "doubled"), GOOD, 0) == (True, 6)
    _, package = rego.evaluate_path(DEPLOY, GOOD, 0)
    assert package["nested"] == {"inner": 5} and package["doubled"] == 6
    assert "double" not in package, "a function is not part of its package's document"


def test_a_prefix_of_packages_is_their_tree(rego: CompiledRego) -> None:
    defined, value = rego.evaluate_path(("aion",), GOOD, 0)
    assert defined
    assert value["agent"]["deploy"]["limit"] == 3
    assert value["agent"]["deploy"]["allow"] is True


@pytest.mark.parametrize(
    "path",
    [("aion", "nope"), (*DEPLOY, "nope"), (*DEPLOY, "limit", "deeper"), ("other",)],
)
def test_an_undefined_path_is_not_defined(rego: CompiledRego, path: tuple[str, ...]) -> None:
    assert rego.evaluate_path(path, GOOD, 0) == (False, None)


def test_a_rule_without_a_value_is_undefined(rego: CompiledRego) -> None:
    # `allow` is not true for a denied input and has no default: undefined, as in OPA.
    assert rego.evaluate_path((*DEPLOY, "allow"), {}, 0) == (False, None)


def test_no_input_leaves_input_undefined_even_after_a_query_with_one(
    rego: CompiledRego,
) -> None:
    assert rego.evaluate_path((*DEPLOY, "has_input"), GOOD, 0) == (True, True)
    assert rego.evaluate_path((*DEPLOY, "has_input"), None, 0) == (False, None)
    assert rego.evaluate_path((*DEPLOY, "input_kind"), None, 0) == (False, None)
    assert rego.evaluate_path((*DEPLOY, "input_kind"), [1, 2], 0) == (True, "array")
    assert rego.evaluate_path((*DEPLOY, "input_kind"), "text", 0) == (True, "string")


def test_time_now_ns_is_the_time_passed_in(rego: CompiledRego) -> None:
    assert rego.evaluate_path((*DEPLOY, "now"), GOOD, 1_700_000_000_123_456_789) == (
        True,
        1_700_000_000_123_456_789,
    )
    assert rego.evaluate_path((*DEPLOY, "now"), None, 42) == (True, 42)


@pytest.mark.parametrize(
    "segments",
    [
        ("aion", "agent", "deploy", "deny == x"),
        ("aion[0]",),
        ("aion", "agent", "deploy", "deny;x"),
        ("aion", ".."),
        ("aion/agent",),
        ("aion", ""),
        ("aion", "1x"),
        ("aion", 'x"]'),
        (),
    ],
)
def test_a_path_that_is_not_a_plain_reference_is_refused(
    rego: CompiledRego, segments: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidInput):
        rego.evaluate_path(segments, GOOD, 0)


def test_an_evaluation_error_raises_with_the_engine_message(rego: CompiledRego) -> None:
    with pytest.raises(RegoQueryError) as raised:
        rego.evaluate_path((*DEPLOY, "conflict"), {"clash": True}, 0)
    assert raised.value.code == "rego_eval_error"
    assert "conflict" in raised.value.message
    assert "Stack backtrace" not in raised.value.message
    # The engine stays usable afterwards.
    assert rego.evaluate_path((*DEPLOY, "conflict"), {}, 0) == (True, 1)


def test_the_decision_path_is_unchanged_by_data_queries(
    rego: CompiledRego,
) -> None:
    rego.evaluate_path((*DEPLOY, "deny"), {"resource": {"attributes": {"env": "prod"}}}, 0)
    verdict = rego.evaluate("agent.deploy", {**GOOD, "action": "agent.deploy"}, 0)
    assert verdict.participated and not verdict.errors
    assert verdict.denies == []
