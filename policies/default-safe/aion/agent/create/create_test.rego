package aion.agent.create

import rego.v1

import data.aion.lib.default_safe.testing as t

# FIXTURES: the valid create of `autogpt-research` named "Research Copilot".
research_copilot := t.request(
	"agent.create",
	t.resource("agent", "research-copilot", {
		"name": "Research Copilot",
		"template": "autogpt-research",
		"model": "model://gpt-4o",
		"tool_ids": ["web_search", "browser", "file_writer"],
		"status": "draft",
	}),
	{},
)

# A create with exactly these attributes.
create(attributes) := t.request("agent.create", t.resource("agent", "a1", attributes), {})

# The Research Copilot create with some attributes changed.
with_attributes(attributes) := object.union(research_copilot, {"resource": {"attributes": attributes}})

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

test_valid_create_allowed if {
	count(deny) == 0 with input as research_copilot
	count(deny) == 0 with input as object.union(research_copilot, {"principal": t.user(["developer"])})
}

test_name_required if {
	every name in [null, "", "   ", 7] {
		denied_by(with_attributes({"name": name})) == {"default_safe.agent_name_missing"}
	}
	denied_by(create({"model": "llama3.2:3b"})) == {"default_safe.agent_name_missing"}
}

test_model_required if {
	denied_by(with_attributes({"model": ""})) == {"default_safe.agent_model_missing"}
	denied_by(create({"name": "A"})) == {"default_safe.agent_model_missing"}
}

test_tools_must_be_allowed if {
	denied_by(with_attributes({"tool_ids": ["web_search", "ops.reboot"]})) == {"default_safe.tool_not_allowed"}
	tenant := {"context": {"tenant": {"allowed_tools": ["web_search"]}}}
	denied_by(object.union(research_copilot, tenant)) == {"default_safe.tool_not_allowed"}
}

# The old system "deployed" by flipping a status; a new agent cannot start deployed.
test_cannot_create_deployed_or_disabled if {
	denied_by(with_attributes({"status": "deployed"})) == {"default_safe.agent_status_on_create"}
	denied_by(with_attributes({"status": "disabled"})) == {"default_safe.agent_status_on_create"}
}

test_viewer_and_auditor_cannot_create if {
	every roles in [["viewer"], ["auditor"]] {
		denied_by(object.union(research_copilot, {"principal": t.user(roles)})) == {"default_safe.role_not_permitted"}
	}
	denied_by(object.union(research_copilot, {"principal": t.service})) == {"default_safe.role_not_permitted"}
}

test_create_in_other_tenant_denied if {
	denied_by(object.union(research_copilot, {"resource": {"tenant": "globex"}})) == {"default_safe.tenant_mismatch"}
}

test_create_of_non_agent_denied if {
	denied_by(object.union(research_copilot, {"resource": {"type": "tool"}})) == {"default_safe.resource_type"}
}

# `tool_ids: "ops.shell"` is not a list of reviewed tools; it is denied, not skipped.
test_tools_of_another_type_denied if {
	every tools in ["ops.shell", 5, {"ops.shell": true}] {
		denied_by(with_attributes({"tool_ids": tools})) == {"default_safe.input_malformed"}
	}
}

test_tool_entries_of_another_type_not_allowed if {
	reasons := deny with input as with_attributes({"tool_ids": ["web_search", 7]})
	some reason in reasons
	reason.id == "default_safe.tool_not_allowed"
	reason.msg == `tool 7 is not allowed for tenant "acme"`
}

test_status_of_another_type_denied if {
	denied_by(with_attributes({"status": 1})) == {"default_safe.input_malformed"}
	count(deny) == 0 with input as with_attributes({"status": null})
}

test_tenant_tool_list_of_another_type_denied if {
	denied_by(object.union(research_copilot, {"context": {"tenant": 5}})) == {"default_safe.input_malformed"}
}
