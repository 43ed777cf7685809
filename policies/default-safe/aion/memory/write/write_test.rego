package aion.memory.write

import rego.v1

import data.aion.lib.default_safe.testing as t

agent := {"id": "research-copilot", "tenant": "acme", "status": "deployed"}

write := object.union(
	t.request(
		"memory.write",
		t.resource("memory", "research-copilot/notes", {"agent_id": "research-copilot"}),
		{"agent": agent, "size_bytes": 2048},
	),
	{"principal": t.service},
)

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

test_agent_writes_own_memory if {
	count(deny) == 0 with input as write
	count(deny) == 0 with input as object.union(write, {"principal": t.operator})
}

test_cross_tenant_write_denied if {
	denied_by(object.union(write, {"resource": {"tenant": "globex"}})) == {"default_safe.tenant_mismatch"}
	denied_by(object.union(write, {"principal": {"tenant": "globex"}, "context": {"agent": {"tenant": "globex"}}})) == {"default_safe.tenant_mismatch"}
}

test_write_for_foreign_agent_denied if {
	denied_by(object.union(write, {"context": {"agent": {"tenant": "globex"}}})) == {"default_safe.agent_tenant_mismatch"}
}

test_write_to_other_agents_memory_denied if {
	denied_by(object.union(write, {"context": {"agent": {"id": "crm-bot"}}})) == {"default_safe.memory_other_agent"}
}

test_disabled_agent_cannot_write if {
	denied_by(object.union(write, {"context": {"agent": {"status": "disabled"}}})) == {"default_safe.agent_disabled"}
}

test_oversized_write_denied if {
	denied_by(object.union(write, {"context": {"size_bytes": 1048577}})) == {"default_safe.memory_too_large"}
	count(deny) == 0 with input as object.union(write, {"context": {"size_bytes": 1048576}})
}

test_viewer_cannot_write if {
	denied_by(object.union(write, {"principal": t.user(["viewer"])})) == {"default_safe.role_not_permitted"}
}

test_write_to_non_memory_resource_denied if {
	denied_by(object.union(write, {"resource": {"type": "agent"}})) == {"default_safe.resource_type"}
}

# A size of another type is malformed, not compared with the limit.
test_size_of_another_type_denied if {
	every size in ["2048", "huge", [1], {"bytes": 1}, true] {
		denied_by(object.union(write, {"context": {"size_bytes": size}})) == {"default_safe.input_malformed"}
	}
}
