# agent.create: the resource is the agent to be created, its attributes as
# they will be stored (`name`, `model`, `tool_ids`, `status` ...). An agent is
# born undeployed: deploying is agent.deploy's job, behind its own gates.
package aion.agent.create

import rego.v1

import data.aion.lib.default_safe as lib

agent := lib.object_at(input.resource, "attributes")

deny contains reason if some reason in lib.base_deny

deny contains reason if {
	not lib.non_blank(object.get(input, ["resource", "attributes", "name"], null))
	reason := {"id": "default_safe.agent_name_missing", "msg": "an agent needs a non-empty `name`"}
}

deny contains reason if {
	not lib.non_blank(object.get(input, ["resource", "attributes", "model"], null))
	reason := {"id": "default_safe.agent_model_missing", "msg": "an agent needs a `model`"}
}

deny contains reason if {
	some tool in lib.array_at(agent, "tool_ids")
	reason := lib.disallowed_tool(tool)
}

deny contains reason if some reason in lib.tool_list_deny

deny contains reason if {
	some [path, expected] in [
		[["resource", "attributes", "tool_ids"], "array"],
		[["resource", "attributes", "status"], "string"],
	]
	reason := lib.malformed(path, expected)
}

# The old system deployed by flipping a status; a new agent may not arrive deployed.
deny contains reason if {
	agent.status in {"deployed", "disabled"}
	reason := {
		"id": "default_safe.agent_status_on_create",
		"msg": sprintf("an agent cannot be created with status %q", [agent.status]),
	}
}
