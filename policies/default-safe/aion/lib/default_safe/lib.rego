# Rules shared by every action of the default-safe bundle: tenant isolation,
# the resource each action must be about, who may act, and which tools a
# tenant may use. Action packages include `base_deny` in their own `deny`.
package aion.lib.default_safe

import rego.v1

# Tunables (roles per action, the tool catalog) are in data.json beside this
# file, read key by key: reading this package's whole document would recurse.

# The resource type each action is about. A request about anything else is
# malformed, and a malformed request must not slip past type-specific rules.
resource_types := {
	"agent.create": "agent",
	"agent.update": "agent",
	"agent.disable": "agent",
	"tool.bind": "tool",
	"tool.unbind": "tool",
	"tool.invoke": "tool",
	"memory.write": "memory",
	"memory.read": "memory",
}

# Actions an agent performs itself; a disabled agent may do none of them
# (unbinding stays possible so that a disabled agent can be cleaned up).
agent_actions := {"tool.invoke", "tool.bind", "memory.write", "memory.read"}

base_deny contains reason if {
	input.principal.tenant != input.resource.tenant
	reason := {
		"id": "default_safe.tenant_mismatch",
		"msg": sprintf(
			"principal of tenant %q may not act on a resource of tenant %q",
			[input.principal.tenant, input.resource.tenant],
		),
	}
}

base_deny contains reason if {
	expected := object.get(resource_types, input.action, null)
	input.resource.type != expected
	reason := {
		"id": "default_safe.resource_type",
		"msg": sprintf("%s expects a resource of type %q, got %q", [input.action, expected, input.resource.type]),
	}
}

base_deny contains reason if {
	not may_act
	reason := {
		"id": "default_safe.role_not_permitted",
		"msg": sprintf("none of the roles %v may perform %s", [object.get(input.principal, "roles", []), input.action]),
	}
}

# The agent a tool or memory request is made for must be of the caller's tenant:
# naming another tenant's agent would let one tenant act through another's.
base_deny contains reason if {
	agent_tenant := input.context.agent.tenant
	agent_tenant != input.principal.tenant
	reason := {
		"id": "default_safe.agent_tenant_mismatch",
		"msg": sprintf("agent %q belongs to tenant %q, not %q", [input.context.agent.id, agent_tenant, input.principal.tenant]),
	}
}

base_deny contains reason if {
	input.action in agent_actions
	input.context.agent.status == "disabled"
	reason := {
		"id": "default_safe.agent_disabled",
		"msg": sprintf("agent %q is disabled", [input.context.agent.id]),
	}
}

# A user acts through its roles; a service (a running agent or worker) may do
# the runtime actions only, never change agents or bindings.
may_act if {
	some role in input.principal.roles
	role in data.aion.lib.default_safe.action_roles[input.action]
}

may_act if {
	input.principal.kind == "service"
	input.action in data.aion.lib.default_safe.service_actions
}

# The tools a tenant may use: its own list when the request carries one (the
# server passes the tenant's settings), otherwise the shipped catalog.
allowed_tools := {tool | some tool in input.context.tenant.allowed_tools} if {
	is_array(input.context.tenant.allowed_tools)
} else := {tool | some tool in data.aion.lib.default_safe.known_tools}

# A deny reason for a tool the tenant may not use; undefined when it may.
disallowed_tool(tool) := reason if {
	not tool in allowed_tools
	reason := {
		"id": "default_safe.tool_not_allowed",
		"msg": sprintf("tool %q is not allowed for tenant %q", [tool, input.resource.tenant]),
		"tool": tool,
	}
}

# Tools that act on the host (ops.*) are bound only by roles that operate it.
privileged_tool(tool) if {
	some prefix in data.aion.lib.default_safe.privileged_tool_prefixes
	startswith(tool, prefix)
}

has_privileged_role if {
	some role in input.principal.roles
	role in data.aion.lib.default_safe.privileged_tool_roles
}

# A non-empty string after trimming; names, models and ids must be real values.
non_blank(value) if {
	is_string(value)
	trim_space(value) != ""
}

# An agent's memory is its own: an agent may not read or write the memory
# namespace of another agent, even within the tenant.
memory_owner_deny contains reason if {
	owner := input.resource.attributes.agent_id
	caller := input.context.agent.id
	owner != caller
	reason := {
		"id": "default_safe.memory_other_agent",
		"msg": sprintf("agent %q may not use the memory of agent %q", [caller, owner]),
	}
}
