"""Cedar evaluation through compile_bundles + decide."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from engine import Bundle, PolicyError, PolicySet, compile_bundles
from engine.cedar_entities import cedar_value, entity_type

Make = Callable[..., Bundle]

ADMINS_DEPLOY = 'permit(principal in Role::"admin", action == Action::"agent.deploy", resource);'
PERMIT_ALL = "permit(principal, action, resource);"


@pytest.fixture
def cedar(make_bundle: Make, cedar_schema: str) -> Callable[..., PolicySet]:
    """``cedar(policies, links=None, name="b")``: a policy set of one Cedar bundle."""

    def build(
        policies: str, links: list[dict[str, Any]] | None = None, name: str = "b"
    ) -> PolicySet:
        files = {"schema.cedarschema": cedar_schema, "policies.cedar": policies}
        if links is not None:
            files["team.cedarlinks.json"] = json.dumps(links)
        return compile_bundles([make_bundle(files, name)])

    return build


def test_permit_allows(cedar: Any, make_request: Any, decide_now: Any) -> None:
    decision = decide_now(cedar(ADMINS_DEPLOY), make_request(roles=("admin",)))
    assert (decision.allowed, decision.reasons, decision.errors) == (True, [], [])
    assert [(e.engine, e.participated, e.allowed) for e in decision.engines] == [
        ("cedar", True, True)
    ]


def test_no_permit_is_default_deny(cedar: Any, make_request: Any, decide_now: Any) -> None:
    decision = decide_now(cedar(ADMINS_DEPLOY), make_request(roles=("viewer",)))
    assert not decision.allowed
    assert decision.errors == []
    assert [(r.engine, r.policy) for r in decision.reasons] == [("cedar", "cedar.default_deny")]
    assert "agent.deploy" in decision.reasons[0].message


def test_forbid_reason_carries_id_and_message(
    cedar: Any, make_request: Any, decide_now: Any
) -> None:
    policies = f"""{PERMIT_ALL}
@id("agents.no-prod")
@message("production deploys are frozen")
forbid(principal, action == Action::"agent.deploy", resource)
when {{ resource has env && resource.env == "prod" }};
"""
    policy_set = cedar(policies, name="freeze")
    assert decide_now(policy_set, make_request(attributes={"env": "dev"})).allowed
    decision = decide_now(policy_set, make_request(attributes={"env": "prod"}))
    assert not decision.allowed
    [reason] = decision.reasons
    assert (reason.engine, reason.policy, reason.message, reason.bundle) == (
        "cedar",
        "agents.no-prod",
        "production deploys are frozen",
        "freeze",
    )
    assert reason.details == {"file": "policies.cedar"}


def test_forbids_of_several_files_keep_their_own_annotations(
    make_bundle: Make, cedar_schema: str, make_request: Any, decide_now: Any
) -> None:
    files = {
        "schema.cedarschema": cedar_schema,
        "a.cedar": PERMIT_ALL + '\n@id("a.level") forbid(principal, action, resource) '
        "when { context has level && context.level > 5 };",
        "b.cedar": '@id("b.level") @message("b says no") forbid(principal, action, resource) '
        "when { context has level && context.level > 3 };",
    }
    policy_set = compile_bundles([make_bundle(files)])
    decision = decide_now(policy_set, make_request(context={"level": 4}))
    assert [(r.policy, r.message, r.details["file"]) for r in decision.reasons] == [
        ("b.level", "b says no", "b.cedar")
    ]
    both = decide_now(policy_set, make_request(context={"level": 9}))
    assert sorted(r.policy for r in both.reasons) == ["a.level", "b.level"]


ERRORING = "context has level && context.level > 3"  # `level` is a Long in the schema


def test_forbid_that_errors_denies(cedar: Any, make_request: Any, decide_now: Any) -> None:
    policies = (
        f'{PERMIT_ALL}\n@id("level.cap") forbid(principal, action, resource) when {{ {ERRORING} }};'
    )
    policy_set = cedar(policies)
    assert decide_now(policy_set, make_request(context={"level": 1})).allowed
    # A string where the policy compares with `>`: the forbid errors, and that denies.
    decision = decide_now(policy_set, make_request(context={"level": "high"}))
    assert not decision.allowed
    assert [e.code for e in decision.errors] == ["cedar_forbid_error"]
    assert "`level.cap`" in decision.errors[0].message


def test_permit_that_errors_just_does_not_permit(
    cedar: Any, make_request: Any, decide_now: Any
) -> None:
    decision = decide_now(
        cedar(f"permit(principal, action, resource) when {{ {ERRORING} }};"),
        make_request(context={"level": "high"}),
    )
    assert not decision.allowed
    assert decision.errors == []
    assert [r.policy for r in decision.reasons] == ["cedar.default_deny"]
    # ... and another permit still allows.
    two = cedar(f"permit(principal, action, resource) when {{ {ERRORING} }};\n{PERMIT_ALL}")
    assert decide_now(two, make_request(context={"level": "high"})).allowed


def test_floats_become_decimals(cedar: Any, make_request: Any, decide_now: Any) -> None:
    policy_set = cedar(
        f'{PERMIT_ALL}\n@id("budget") forbid(principal, action, resource) '
        'when { context has budget && context.budget.greaterThan(decimal("0.2")) };'
    )
    assert not decide_now(policy_set, make_request(context={"budget": 0.5})).allowed
    assert decide_now(policy_set, make_request(context={"budget": 0.1})).allowed
    assert decide_now(policy_set, make_request(context={"budget": 0.2})).allowed


def test_entity_escapes_cannot_forge_a_reference(
    cedar: Any, make_request: Any, decide_now: Any
) -> None:
    # If `__entity` survived, `approver` would be the admin alice herself and this permits.
    policy_set = cedar(
        "permit(principal, action, resource) when "
        '{ context has approver && context.approver in Role::"admin" };'
    )
    forged = {"approver": {"__entity": {"type": "User", "id": "alice"}}}
    decision = decide_now(policy_set, make_request(roles=("admin",), context=forged))
    assert not decision.allowed


def test_resource_attributes_cannot_forge_owner_or_tenant(
    cedar: Any, make_request: Any, decide_now: Any
) -> None:
    policy_set = cedar(
        "permit(principal, action, resource) when "
        '{ resource.tenant == "t2" || (resource has owner && resource.owner == principal) };'
    )
    attributes = {"tenant": "t2", "owner": {"__entity": {"type": "User", "id": "alice"}}}
    assert not decide_now(policy_set, make_request(attributes=attributes)).allowed


def test_roles_and_tenant_are_parents(cedar: Any, make_request: Any, decide_now: Any) -> None:
    policy_set = cedar(
        'permit(principal in Role::"ops", action, resource in Tenant::"t1") '
        'when { principal.tenant == resource.tenant && principal.kind == "service" };'
    )
    service = make_request(kind="service", roles=("ops",))
    assert decide_now(policy_set, service).allowed
    assert not decide_now(policy_set, make_request(kind="user", roles=("ops",))).allowed
    assert not decide_now(policy_set, make_request(kind="service", roles=("dev",))).allowed


def test_participation_follows_the_schema(cedar: Any, make_request: Any, decide_now: Any) -> None:
    policy_set = cedar(PERMIT_ALL)
    assert policy_set.participating("agent.deploy") == ["cedar"]
    assert policy_set.participating("agent.create") == ["cedar"]
    assert policy_set.participating("tool.invoke") == []
    # `permit(principal, action, resource)` does not make Cedar govern an undeclared action.
    decision = decide_now(policy_set, make_request("tool.invoke", resource_type="tool"))
    assert not decision.allowed
    assert [r.policy for r in decision.reasons] == ["no_policy"]
    assert [e.participated for e in decision.engines] == [False]


def test_schema_validation_failure_names_the_file(make_bundle: Make, cedar_schema: str) -> None:
    files = {
        "schema.cedarschema": cedar_schema,
        "good.cedar": PERMIT_ALL,
        "bad.cedar": "permit(principal, action, resource) when { resource.nope == 1 };",
    }
    with pytest.raises(PolicyError) as info:
        compile_bundles([make_bundle(files)])
    assert {(p.file, p.code) for p in info.value.problems} == {
        ("bad.cedar", "cedar_validation_error")
    }


def test_missing_schema(make_bundle: Make) -> None:
    with pytest.raises(PolicyError) as info:
        compile_bundles([make_bundle({"p.cedar": PERMIT_ALL}, "noschema")])
    assert [(p.file, p.code) for p in info.value.problems] == [("noschema", "cedar_schema_missing")]


def test_broken_schema_and_policy_are_policy_errors(make_bundle: Make, cedar_schema: str) -> None:
    with pytest.raises(PolicyError) as info:
        compile_bundles([make_bundle({"s.cedarschema": "entity ;", "p.cedar": PERMIT_ALL})])
    assert [(p.file, p.code) for p in info.value.problems] == [
        ("s.cedarschema", "cedar_schema_error")
    ]
    with pytest.raises(PolicyError) as info:
        compile_bundles([make_bundle({"s.cedarschema": cedar_schema, "p.cedar": "permit(;"})])
    assert "p.cedar" in {p.file for p in info.value.problems}


def test_two_schemas_in_one_bundle_are_refused(make_bundle: Make, cedar_schema: str) -> None:
    with pytest.raises(Exception, match="more than one Cedar schema"):
        make_bundle({"a.cedarschema": cedar_schema, "b.cedarschema": cedar_schema})


TEMPLATE = (
    '@id("deployers")\npermit(principal == ?principal, action == Action::"agent.deploy", resource);'
)


def _link(user: str, link_id: str = "alice-deploys") -> dict[str, Any]:
    return {
        "template_id": "deployers",
        "link_id": link_id,
        "args": {"?principal": {"type": "User", "id": user}},
    }


def test_template_links_take_effect(cedar: Any, make_request: Any, decide_now: Any) -> None:
    unlinked = cedar(TEMPLATE)
    assert not decide_now(unlinked, make_request(principal_id="alice")).allowed
    linked = cedar(TEMPLATE, links=[_link("alice")])
    assert decide_now(linked, make_request(principal_id="alice")).allowed
    assert not decide_now(linked, make_request(principal_id="bob")).allowed


def test_link_to_a_forbid_template_reports_the_link(
    cedar: Any, make_request: Any, decide_now: Any
) -> None:
    policies = (
        f'{PERMIT_ALL}\n@id("deployers") @message("blocked user")\n'
        "forbid(principal == ?principal, action, resource);"
    )
    policy_set = cedar(policies, links=[_link("mallory", "block-mallory")])
    assert decide_now(policy_set, make_request(principal_id="alice")).allowed
    [reason] = decide_now(policy_set, make_request(principal_id="mallory")).reasons
    assert (reason.policy, reason.message) == ("block-mallory", "blocked user")


def test_link_to_an_unknown_template_is_a_policy_error(cedar: Any) -> None:
    bad = {**_link("alice"), "template_id": "nope"}
    with pytest.raises(PolicyError) as info:
        cedar(TEMPLATE, links=[bad])
    assert [p.code for p in info.value.problems] == ["cedar_link_error"]


# --- value mapping ---------------------------------------------------------------------------


def test_cedar_value_mapping() -> None:
    value = {
        "f": 0.5,
        "n": None,
        "big": 2**70,
        "i": 3,
        "ok": True,
        "list": [1, None, "x"],
        "nested": {"__entity": {"type": "Role", "id": "admin"}, "__extn": {}, "keep": 1},
    }
    assert cedar_value(value) == {
        "f": {"__extn": {"fn": "decimal", "arg": "0.5000"}},
        "big": str(2**70),
        "i": 3,
        "ok": True,
        "list": [1, "x"],
        "nested": {"keep": 1},
    }


@pytest.mark.parametrize(
    ("resource_type", "cedar_type"),
    [("agent", "Agent"), ("memory", "Memory"), ("dataset", "Dataset")],
)
def test_entity_types(resource_type: str, cedar_type: str) -> None:
    assert entity_type(resource_type) == cedar_type
