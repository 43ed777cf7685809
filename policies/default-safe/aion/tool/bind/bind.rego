# tool.bind: a tool is attached to an agent. The resource is the tool
# (`resource.id` is the tool id, `resource.tenant` the agent's tenant); the
# agent is `context.agent`. Binding is where a tool is reviewed, so the tool
# must be one the tenant allows, and host-level tools need an operating role.
package aion.tool.bind

import rego.v1

import data.aion.lib.default_safe as lib

deny contains reason if some reason in lib.base_deny

deny contains reason if {
	reason := lib.disallowed_tool(input.resource.id)
}

deny contains reason if some reason in lib.tool_list_deny

deny contains reason if {
	lib.privileged_tool(input.resource.id)
	not lib.has_privileged_role
	reason := {
		"id": "default_safe.privileged_tool_role",
		"msg": sprintf("binding %s needs one of the roles %v", [lib.q(input.resource.id), data.aion.lib.default_safe.privileged_tool_roles]),
	}
}
