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
			"principal of tenant %s may not act on a resource of tenant %s",
			[q(input.principal.tenant), q(input.resource.tenant)],
		),
	}
}

base_deny contains reason if {
	expected := object.get(resource_types, input.action, null)
	input.resource.type != expected
	reason := {
		"id": "default_safe.resource_type",
		"msg": sprintf("%s expects a resource of type %s, got %s", [input.action, q(expected), q(input.resource.type)]),
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
	agent_tenant := context_agent.tenant
	agent_tenant != input.principal.tenant
	reason := {
		"id": "default_safe.agent_tenant_mismatch",
		"msg": sprintf("agent %s belongs to tenant %s, not %s", [agent_label, q(agent_tenant), q(input.principal.tenant)]),
	}
}

base_deny contains reason if {
	input.action in agent_actions
	context_agent.status == "disabled"
	reason := {
		"id": "default_safe.agent_disabled",
		"msg": sprintf("agent %s is disabled", [agent_label]),
	}
}

# The agent fields read above, and its status where it is read.
base_deny contains reason if {
	some [path, expected] in [
		[["context", "agent"], "object"],
		[["context", "agent", "id"], "string"],
		[["context", "agent", "tenant"], "string"],
	]
	reason := malformed(path, expected)
}

base_deny contains reason if {
	input.action in agent_actions
	reason := malformed(["context", "agent", "status"], "string")
}

# The agent a request names (`context.agent`); {} when it names none.
context_agent := object_at(object_at(input, "context"), "agent")

# The named agent's id for messages: quoted, or `null` when it has none.
agent_label := q(object.get(context_agent, "id", null))

# A user acts through its roles; a service (a running agent or worker) may do
# the runtime actions only, never change agents or bindings.
may_act if {
	some role in array_at(input.principal, "roles")
	role in data.aion.lib.default_safe.action_roles[input.action]
}

may_act if {
	input.principal.kind == "service"
	input.action in data.aion.lib.default_safe.service_actions
}

# The tools a tenant may use: its own list when the request carries one (the
# server passes the tenant's settings), otherwise the shipped catalog.
allowed_tools := {tool | some tool in tenant_tools} if {
	tenant_tools := object.get(input, ["context", "tenant", "allowed_tools"], null)
	is_array(tenant_tools)
} else := {tool | some tool in data.aion.lib.default_safe.known_tools}

# For the actions that call `disallowed_tool`: the tenant's tool list, when
# given, must be a list (anything else would fall back to the catalog).
tool_list_deny contains reason if {
	some [path, expected] in [
		[["context", "tenant"], "object"],
		[["context", "tenant", "allowed_tools"], "array"],
	]
	reason := malformed(path, expected)
}

# A deny reason for a tool the tenant may not use; undefined when it may.
disallowed_tool(tool) := reason if {
	not tool in allowed_tools
	reason := {
		"id": "default_safe.tool_not_allowed",
		"msg": sprintf("tool %s is not allowed for tenant %s", [q(tool), q(input.resource.tenant)]),
		"tool": tool,
	}
}

# Tools that act on the host (ops.*) are bound only by roles that operate it.
privileged_tool(tool) if {
	some prefix in data.aion.lib.default_safe.privileged_tool_prefixes
	startswith(tool, prefix)
}

has_privileged_role if {
	some role in array_at(input.principal, "roles")
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
	caller := context_agent.id
	owner != caller
	reason := {
		"id": "default_safe.memory_other_agent",
		"msg": sprintf("agent %s may not use the memory of agent %s", [q(caller), q(owner)]),
	}
}

memory_owner_deny contains reason if {
	reason := malformed(["resource", "attributes", "agent_id"], "string")
}

# ---- total over input shapes -------------------------------------------------
# The bundle must decide alike in the embedded engine and in OPA: no builtin may
# see a type it refuses (regorus raises where OPA is undefined), so values from
# input are type-checked before use, and a field of the wrong type is denied.

# `%q` of a string; any other value as `%v` (regorus refuses `%q` of a non-string).
q(value) := sprintf("%q", [value]) if {
	is_string(value)
} else := sprintf("%v", [value])

# `obj[key]` when it is an array; [] otherwise (absent, null, or another type: see malformed).
array_at(obj, key) := value if {
	is_object(obj)
	value := obj[key]
	is_array(value)
} else := []

# `obj[key]` when it is an object; {} otherwise (absent, null, or another type: see malformed).
object_at(obj, key) := value if {
	is_object(obj)
	value := obj[key]
	is_object(value)
} else := {}

# A deny reason when the input field at `path` is present, not null, and not
# of type `expected` (a `type_name`); undefined otherwise. Absent and null fields keep
# the rules that read them (a missing name is `agent_name_missing`).
malformed(path, expected) := reason if {
	value := object.get(input, path, null)
	value != null
	type_name(value) != expected
	reason := {
		"id": "default_safe.input_malformed",
		"msg": sprintf("`%s` must be %s", [concat(".", path), type_articles[expected]]),
	}
}

type_articles := {"object": "an object", "array": "an array", "string": "a string", "number": "a number"}
