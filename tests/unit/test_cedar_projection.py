"""Sending Cedar only the attributes policies can read never changes a decision."""

from __future__ import annotations

import json
from typing import Any

import cedarpy
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cedar import CompiledCedar
from engine.cedar_entities import EVERYTHING, AttributeUse, request_entities
from engine.verdict import EngineVerdict

POLICIES = """
@id("p") permit(principal in Role::"operator", action == Action::"agent.deploy", resource)
when { resource.tenant == principal.tenant };
@id("f-model") forbid(principal, action, resource)
when { context has model && context.model.privacy == "allow-api" && context.intent == "invoice_ocr" };
@id("f-status") forbid(principal, action, resource) when { resource has status && resource.status == "disabled" };
@id("f-budget") forbid(principal, action, resource)
when { context has budget && context.budget.greaterThan(decimal("0.2")) };
"""


def _est(text: str) -> list[dict[str, Any]]:
    doc = json.loads(cedarpy.policies_to_json_str(text))
    return list(doc["staticPolicies"].values())


def test_names_come_from_attribute_access_and_has() -> None:
    use = AttributeUse.of(_est(POLICIES))
    assert use.names == frozenset({"tenant", "model", "privacy", "intent", "status", "budget"})
    assert use.whole_context is False
    assert use.context({"model": {}, "request_id": "r", "noise": 1}) == {"model": {}}
    assert use.attrs({"status": "x", "config": {"big": 1}}) == {"status": "x"}


def test_context_used_as_a_value_is_sent_whole() -> None:
    use = AttributeUse.of(_est('permit(principal, action, resource) when { context == {"a": 1} };'))
    assert use.whole_context is True
    assert use.context({"a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_everything_leaves_all_in() -> None:
    assert EVERYTHING.context({"x": 1}) == {"x": 1}
    request, entities = request_entities(
        {
            "action": "agent.deploy",
            "principal": {"id": "u", "tenant": "t", "roles": [], "kind": "user"},
            "resource": {"type": "agent", "id": "a", "tenant": "t", "attributes": {"k": 1}},
            "context": {"c": 2},
        }
    )
    assert request["context"] == {"c": 2}
    assert entities[1]["attrs"] == {"k": 1, "tenant": "t"}


def _evaluate(use: AttributeUse, doc: dict[str, Any]) -> EngineVerdict:
    compiled = CompiledCedar(
        cedarpy.PolicySet.from_str(POLICIES), {}, frozenset({"agent.deploy"}), use
    )
    return compiled.evaluate("agent.deploy", doc, 0)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from(["allow-api", "local-only", "disabled", "t"])
    | st.floats(0, 1, allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["privacy", "x"]), inner, max_size=2)
    ),
    max_leaves=6,
)
keys = st.sampled_from(
    ["model", "intent", "budget", "status", "tenant", "request_id", "config", "privacy"]
)


@settings(max_examples=300)
@given(
    st.dictionaries(keys, values, max_size=5),
    st.dictionaries(keys, values, max_size=5),
    st.sampled_from([["operator"], ["developer"], []]),
    st.sampled_from(["t", "other"]),
)
def test_projection_never_changes_the_decision(
    context: dict[str, Any], attributes: dict[str, Any], roles: list[str], tenant: str
) -> None:
    doc = {
        "action": "agent.deploy",
        "principal": {"id": "u", "tenant": "t", "roles": roles, "kind": "user"},
        "resource": {"type": "agent", "id": "a", "tenant": tenant, "attributes": attributes},
        "context": context,
    }
    full, projected = _evaluate(EVERYTHING, doc), _evaluate(AttributeUse.of(_est(POLICIES)), doc)
    assert projected.allowed == full.allowed
    assert [r.policy for r in projected.denies] == [r.policy for r in full.denies]
    assert [e.code for e in projected.errors] == [e.code for e in full.errors]
