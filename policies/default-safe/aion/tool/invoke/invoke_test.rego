package aion.tool.invoke

import rego.v1

import data.aion.lib.default_safe.testing as t

search := t.invoke("rag.search", {"query": "quarterly report"})

test_tool_without_argument_rules_allowed if {
	count(deny) == 0 with input as search
}

test_service_principal_may_invoke if {
	count(deny) == 0 with input as object.union(search, {"principal": t.service})
}

test_other_tenant_denied if {
	inp := object.union(search, {"resource": {"tenant": "globex"}})
	denied_by(inp) == {"default_safe.tenant_mismatch"}
}

test_wrong_resource_type_denied if {
	inp := object.union(search, {"resource": {"type": "agent"}})
	denied_by(inp) == {"default_safe.resource_type"}
}

test_read_only_roles_denied if {
	every roles in [["viewer"], ["auditor"], [], ["viewer", "auditor"]] {
		inp := object.union(search, {"principal": t.user(roles)})
		denied_by(inp) == {"default_safe.role_not_permitted"}
	}
}

test_unknown_tool_denied if {
	denied_by(t.invoke("ops.reboot", {})) == {"default_safe.tool_not_allowed"}
}

test_tenant_tool_list_replaces_catalog if {
	tenant := {"context": {"arguments": {}, "tenant": {"allowed_tools": ["rag.search", "crm.custom"]}}}
	count(deny) == 0 with input as object.union(t.invoke("crm.custom", {}), tenant)
	denied_by(object.union(get("https://example.com/"), tenant)) == {"default_safe.tool_not_allowed"}
}

test_tool_must_be_bound_to_the_agent if {
	agent := {"id": "research-copilot", "tenant": "acme", "status": "deployed", "tool_ids": ["web_search"]}
	denied_by(object.union(search, {"context": {"agent": agent}})) == {"default_safe.tool_not_bound"}
	bound := object.union(agent, {"tool_ids": ["rag.search"]})
	count(deny) == 0 with input as object.union(search, {"context": {"agent": bound}})
}

test_agent_of_other_tenant_denied if {
	inp := object.union(search, {"context": {"agent": {"id": "a1", "tenant": "globex"}}})
	denied_by(inp) == {"default_safe.agent_tenant_mismatch"}
}

test_disabled_agent_denied if {
	inp := object.union(search, {"context": {"agent": {"id": "a1", "tenant": "acme", "status": "disabled"}}})
	denied_by(inp) == {"default_safe.agent_disabled"}
}

test_reasons_are_objects_with_ids_and_messages if {
	reasons := deny with input as shell("rm -rf / ; x")
	count(reasons) == 3
	every reason in reasons {
		startswith(reason.id, "default_safe.")
		reason.msg != ""
	}
}

# A binding list of another type must not skip the binding check (OPA would
# otherwise allow `tool_ids: 5` where the embedded engine errors).
test_bindings_of_another_type_denied if {
	every bound in [5, "rag.search", {"rag.search": true}, true] {
		agent := {"id": "a1", "tenant": "acme", "tool_ids": bound}
		denied_by(object.union(search, {"context": {"agent": agent}})) == {"default_safe.input_malformed"}
	}
}

test_arguments_of_another_type_denied if {
	every arguments in ["query", 1, ["x"]] {
		denied_by(t.invoke("rag.search", arguments)) == {"default_safe.input_malformed"}
	}
	denied_by(t.invoke("file.read", "/data/x")) == {"default_safe.input_malformed", "default_safe.path_invalid"}
}

test_tenant_tool_list_of_another_type_denied if {
	inp := object.union(search, {"context": {"tenant": {"allowed_tools": "rag.search"}}})
	denied_by(inp) == {"default_safe.input_malformed"}
}

# The binding check does not depend on the agent naming itself.
test_agent_without_id_must_have_the_tool_bound if {
	inp := object.union(search, {"context": {"agent": {"tenant": "acme", "tool_ids": ["web_search"]}}})
	reasons := deny with input as inp
	some reason in reasons
	reason.id == "default_safe.tool_not_bound"
	reason.msg == `tool "rag.search" is not bound to agent null`
}
