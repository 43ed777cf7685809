# tool.invoke: an agent (or a user testing it) calls a tool. The resource is
# the tool (`resource.id` is the tool id), the call's arguments arrive as
# `context.arguments`. Argument rules per tool live in shell.rego, files.rego
# and http.rego of this package; their allowlists in data.json beside them.
package aion.tool.invoke

import rego.v1

import data.aion.lib.default_safe as lib

# Not named `allowlists`: that key belongs to the data document at this path.
tool_lists := data.aion.tool.invoke.allowlists

tool := input.resource.id

deny contains reason if some reason in lib.base_deny

deny contains reason if {
	reason := lib.disallowed_tool(tool)
}

deny contains reason if some reason in lib.tool_list_deny

# The agent's bindings and the call's arguments, when given, must be a list
# and an object: a binding list of another type would skip the check below.
deny contains reason if {
	some [path, expected] in [
		[["context", "agent", "tool_ids"], "array"],
		[["context", "arguments"], "object"],
	]
	reason := lib.malformed(path, expected)
}

# When the caller names the agent and its bindings, the tool must be bound to
# it: binding is where tools are reviewed, invoking must not skip that step.
deny contains reason if {
	bound := lib.context_agent.tool_ids
	is_array(bound)
	not tool in bound
	reason := {
		"id": "default_safe.tool_not_bound",
		"msg": sprintf("tool %s is not bound to agent %s", [lib.q(tool), lib.agent_label]),
		"tool": tool,
	}
}

# Host-level tools must never run unattended: `auto_confirm` skips the human
# confirmation, so anything but an explicit `false` is refused.
deny contains reason if {
	startswith(tool, "ops.")
	auto_confirm_requested
	reason := {
		"id": "default_safe.ops_auto_confirm",
		"msg": sprintf("auto_confirm is not allowed on %s: ops tools need a human confirmation", [lib.q(tool)]),
	}
}

auto_confirm_requested if input.context.arguments.auto_confirm != false

auto_confirm_requested if input.context.auto_confirm != false
