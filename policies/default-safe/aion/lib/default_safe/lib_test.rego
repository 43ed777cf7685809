package aion.lib.default_safe

import rego.v1

import data.aion.lib.default_safe.testing as t

invoke := t.invoke("rag.search", {"query": "x"})

# The ids and messages of the malformed-input reasons `base_deny` gives for `inp`.
malformed_msgs(inp) := {reason.msg |
	some reason in base_deny with input as inp
	reason.id == "default_safe.input_malformed"
}

test_q_quotes_strings_and_prints_the_rest if {
	q("a b") == `"a b"`
	q("") == `""`
	q(5) == "5"
	q(null) == "null"
	q(true) == "true"
	q(["x"]) == `["x"]`
	q({"a": 1}) == `{"a": 1}`
}

test_array_at_and_object_at_are_total if {
	array_at({"k": [1]}, "k") == [1]
	every doc in [{}, {"k": null}, {"k": "x"}, {"k": {}}, "not an object", 5, null, []] {
		array_at(doc, "k") == []
	}
	object_at({"k": {"a": 1}}, "k") == {"a": 1}
	every doc in [{}, {"k": null}, {"k": "x"}, {"k": []}, "not an object", 5, null, []] {
		object_at(doc, "k") == {}
	}
}

test_malformed_only_for_present_values_of_another_type if {
	inp := {"a": {"s": "text", "n": 5, "z": null, "o": "flat"}}
	m := malformed(["a", "n"], "string") with input as inp
	m == {"id": "default_safe.input_malformed", "msg": "`a.n` must be a string"}
	malformed(["a", "s"], "array").msg == "`a.s` must be an array" with input as inp
	malformed(["a", "s"], "number").msg == "`a.s` must be a number" with input as inp
	malformed(["a"], "array").msg == "`a` must be an array" with input as inp
	every path in [["a", "s"], ["a", "z"], ["a", "missing"], ["a", "o", "deeper"], ["b"]] {
		not_malformed(path, "string", inp)
	}
}

not_malformed(path, expected, inp) if {
	count({m | m := malformed(path, expected)}) == 0 with input as inp
}

test_agent_of_another_type_is_malformed_for_every_action if {
	every action, _ in resource_types {
		inp := object.union(invoke, {"action": action, "context": {"agent": "research-copilot"}})
		malformed_msgs(inp) == {"`context.agent` must be an object"}
	}
}

test_agent_fields_of_another_type_are_malformed if {
	agent := {"id": 7, "tenant": ["acme"], "status": false}
	malformed_msgs(object.union(invoke, {"context": {"agent": agent}})) == {
		"`context.agent.id` must be a string",
		"`context.agent.tenant` must be a string",
		"`context.agent.status` must be a string",
	}
}

# Unbinding does not read the agent's status, so its type is not checked there.
test_agent_status_checked_only_where_read if {
	unbind := object.union(invoke, {"action": "tool.unbind", "context": {"agent": {"status": 1}}})
	malformed_msgs(unbind) == set()
}

test_null_and_absent_agent_fields_are_not_malformed if {
	malformed_msgs(object.union(invoke, {"context": {"agent": null}})) == set()
	malformed_msgs(object.union(invoke, {"context": {"agent": {"id": null, "tenant": "acme"}}})) == set()
}

# An agent without an id still belongs to a tenant: the check may not depend on the id.
test_agent_without_id_of_other_tenant_denied if {
	some reason in base_deny with input as object.union(invoke, {"context": {"agent": {"tenant": "globex"}}})
	reason.id == "default_safe.agent_tenant_mismatch"
	reason.msg == `agent null belongs to tenant "globex", not "acme"`
}

test_non_string_tenant_named_in_message if {
	some reason in base_deny with input as object.union(invoke, {"context": {"agent": {"id": "a1", "tenant": 5}}})
	reason.id == "default_safe.agent_tenant_mismatch"
	reason.msg == `agent "a1" belongs to tenant 5, not "acme"`
}

tool_list_msgs(inp) := {reason.msg | some reason in tool_list_deny with input as inp}

test_tool_list_of_another_type_is_malformed if {
	tool_list_msgs(object.union(invoke, {"context": {"tenant": "acme"}})) == {"`context.tenant` must be an object"}
	tool_list_msgs(object.union(invoke, {"context": {"tenant": {"allowed_tools": "rag.search"}}})) == {"`context.tenant.allowed_tools` must be an array"}
	tool_list_msgs(object.union(invoke, {"context": {"tenant": {"allowed_tools": ["rag.search"]}}})) == set()
}

test_memory_owner_of_another_type_is_malformed if {
	inp := object.union(invoke, {"resource": {"attributes": {"agent_id": 7}}, "context": {"agent": {"id": "a1"}}})
	ids := {reason.id | some reason in memory_owner_deny with input as inp}
	ids == {"default_safe.input_malformed", "default_safe.memory_other_agent"}
}
