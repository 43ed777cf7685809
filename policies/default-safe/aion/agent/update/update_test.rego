package aion.agent.update

import rego.v1

import data.aion.lib.default_safe.testing as t

stored := {
	"name": "Research Copilot",
	"template": "autogpt-research",
	"model": "model://gpt-4o",
	"tool_ids": ["web_search"],
	"status": "draft",
}

update(status, change) := t.request(
	"agent.update",
	t.resource("agent", "research-copilot", object.union(stored, {"status": status})),
	{"changes": change},
)

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

test_ordinary_updates_allowed if {
	count(deny) == 0 with input as update("draft", {"name": "Research Copilot v2"})
	count(deny) == 0 with input as update("draft", {"model": "llama3.2:3b", "tool_ids": ["browser"]})
	count(deny) == 0 with input as update("deployed", {"name": "Renamed while live"})
	count(deny) == 0 with input as update("disabled", {"status": "draft"})
}

test_update_without_changes_allowed if {
	inp := object.union(update("draft", {}), {"context": {}})
	count(deny) == 0 with input as object.remove(inp, ["context"])
}

# Status is what the deploy and disable gates guard; an update cannot set it.
test_status_cannot_be_set_to_deployed_or_disabled if {
	denied_by(update("draft", {"status": "deployed"})) == {"default_safe.status_change_forbidden"}
	denied_by(update("deployed", {"status": "disabled"})) == {"default_safe.status_change_forbidden"}
}

test_tenant_cannot_change if {
	denied_by(update("draft", {"tenant": "globex"})) == {"default_safe.tenant_change_forbidden"}
	count(deny) == 0 with input as update("draft", {"tenant": "acme"})
}

test_name_and_model_cannot_be_blanked if {
	denied_by(update("draft", {"name": " "})) == {"default_safe.agent_name_missing"}
	denied_by(update("draft", {"model": null})) == {"default_safe.agent_model_missing"}
}

test_new_tools_must_be_allowed if {
	denied_by(update("draft", {"tool_ids": ["web_search", "keylogger"]})) == {"default_safe.tool_not_allowed"}
}

test_live_agent_model_tools_policies_frozen if {
	denied_by(update("deployed", {"model": "model://gpt-4.5"})) == {"default_safe.deployed_agent_change"}
	denied_by(update("deployed", {"tool_ids": ["ops.shell"]})) == {"default_safe.deployed_agent_change"}
	denied_by(update("deployed", {"policy_ids": []})) == {"default_safe.deployed_agent_change"}
}

test_live_agent_changes_with_back_to_draft if {
	count(deny) == 0 with input as update("deployed", {"status": "draft", "model": "llama3.2:3b"})
}

test_update_by_viewer_or_other_tenant_denied if {
	denied_by(object.union(update("draft", {}), {"principal": t.user(["viewer"])})) == {"default_safe.role_not_permitted"}
	denied_by(object.union(update("draft", {}), {"principal": {"tenant": "globex"}})) == {"default_safe.tenant_mismatch"}
}

test_changes_of_another_type_denied if {
	every change in [5, "model", ["model"]] {
		denied_by(update("deployed", change)) == {"default_safe.input_malformed"}
	}
}

test_changed_fields_of_another_type_denied if {
	denied_by(update("draft", {"tool_ids": "keylogger"})) == {"default_safe.input_malformed"}
	denied_by(update("draft", {"status": 1})) == {"default_safe.input_malformed"}
	denied_by(update(1, {"name": "x"})) == {"default_safe.input_malformed"}
}

test_tenant_tool_list_of_another_type_denied if {
	inp := object.union(update("draft", {"tool_ids": ["browser"]}), {"context": {"tenant": {"allowed_tools": {}}}})
	denied_by(inp) == {"default_safe.input_malformed"}
}
