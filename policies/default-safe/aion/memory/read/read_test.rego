package aion.memory.read

import rego.v1

import data.aion.lib.default_safe.testing as t

read := object.union(
	t.request(
		"memory.read",
		t.resource("memory", "research-copilot/notes", {"agent_id": "research-copilot"}),
		{"agent": {"id": "research-copilot", "tenant": "acme", "status": "deployed"}},
	),
	{"principal": t.service},
)

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

test_agent_reads_own_memory if {
	count(deny) == 0 with input as read
}

test_viewer_may_read if {
	count(deny) == 0 with input as object.union(read, {"principal": t.user(["viewer"])})
}

test_auditor_may_not_read_memory if {
	denied_by(object.union(read, {"principal": t.user(["auditor"])})) == {"default_safe.role_not_permitted"}
}

test_cross_tenant_read_denied if {
	denied_by(object.union(read, {"resource": {"tenant": "globex"}})) == {"default_safe.tenant_mismatch"}
}

test_read_of_other_agents_memory_denied if {
	denied_by(object.union(read, {"context": {"agent": {"id": "crm-bot"}}})) == {"default_safe.memory_other_agent"}
}

test_disabled_agent_cannot_read if {
	denied_by(object.union(read, {"context": {"agent": {"status": "disabled"}}})) == {"default_safe.agent_disabled"}
}

test_owner_of_another_type_denied if {
	inp := object.union(read, {"resource": {"attributes": {"agent_id": 7}}})
	denied_by(inp) == {"default_safe.input_malformed", "default_safe.memory_other_agent"}
}
