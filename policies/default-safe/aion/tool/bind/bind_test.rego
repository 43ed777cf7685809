package aion.tool.bind

import rego.v1

import data.aion.lib.default_safe.testing as t

agent := {"id": "research-copilot", "tenant": "acme", "status": "draft"}

bind(tool) := t.request("tool.bind", t.resource("tool", tool, {}), {"agent": agent})

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

test_catalog_tool_bound if {
	every tool in ["web_search", "browser", "file_writer", "latentbox:ai:image:midjourney"] {
		count(deny) == 0 with input as bind(tool)
	}
}

test_developer_may_bind_ordinary_tools if {
	count(deny) == 0 with input as object.union(bind("web_search"), {"principal": t.user(["developer"])})
}

test_tool_outside_catalog_denied if {
	denied_by(bind("crypto_miner")) == {"default_safe.tool_not_allowed"}
}

test_tenant_allowed_tools_respected if {
	tenant := {"context": {"tenant": {"allowed_tools": ["web_search"]}}}
	denied_by(object.union(bind("browser"), tenant)) == {"default_safe.tool_not_allowed"}
	count(deny) == 0 with input as object.union(bind("web_search"), tenant)
}

test_ops_tool_needs_operating_role if {
	count(deny) == 0 with input as bind("ops.shell")
	dev := object.union(bind("ops.shell"), {"principal": t.user(["developer"])})
	denied_by(dev) == {"default_safe.privileged_tool_role"}
}

test_cross_tenant_bind_denied if {
	denied_by(object.union(bind("web_search"), {"resource": {"tenant": "globex"}})) == {"default_safe.tenant_mismatch"}
	foreign := object.union(bind("web_search"), {"context": {"agent": {"tenant": "globex"}}})
	denied_by(foreign) == {"default_safe.agent_tenant_mismatch"}
}

test_disabled_agent_gets_no_tools if {
	inp := object.union(bind("web_search"), {"context": {"agent": {"status": "disabled"}}})
	denied_by(inp) == {"default_safe.agent_disabled"}
}

test_services_and_viewers_cannot_bind if {
	denied_by(object.union(bind("web_search"), {"principal": t.service})) == {"default_safe.role_not_permitted"}
	denied_by(object.union(bind("web_search"), {"principal": t.user(["viewer"])})) == {"default_safe.role_not_permitted"}
}

test_wrong_resource_type_denied if {
	denied_by(object.union(bind("web_search"), {"resource": {"type": "agent"}})) == {"default_safe.resource_type"}
}

test_tenant_tool_list_of_another_type_denied if {
	denied_by(object.union(bind("web_search"), {"context": {"tenant": {"allowed_tools": "web_search"}}})) == {"default_safe.input_malformed"}
	denied_by(object.union(bind("web_search"), {"context": {"tenant": ["web_search"]}})) == {"default_safe.input_malformed"}
}
