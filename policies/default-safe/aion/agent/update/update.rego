# agent.update: the resource is the agent as stored; `context.changes` holds
# the fields the request would change. Updates may not do the work of the
# gated actions: status goes through agent.deploy / agent.disable, and a
# deployed agent's model, tools and policies change only by deploying again.
package aion.agent.update

import rego.v1

import data.aion.lib.default_safe as lib

changes := lib.object_at(input.context, "changes")

# Fields a deploy gate has checked; changing them on a live agent would
# bypass the gate.
gated_fields := {"model", "tool_ids", "policy_ids"}

deny contains reason if some reason in lib.base_deny

deny contains reason if {
	changes.status in {"deployed", "disabled"}
	reason := {
		"id": "default_safe.status_change_forbidden",
		"msg": sprintf("status %q is set by agent.deploy or agent.disable, not by an update", [changes.status]),
	}
}

deny contains reason if {
	changes.tenant != input.resource.tenant
	reason := {"id": "default_safe.tenant_change_forbidden", "msg": "an agent cannot move to another tenant"}
}

deny contains reason if {
	"name" in object.keys(changes)
	not lib.non_blank(object.get(changes, "name", null))
	reason := {"id": "default_safe.agent_name_missing", "msg": "an agent needs a non-empty `name`"}
}

deny contains reason if {
	"model" in object.keys(changes)
	not lib.non_blank(object.get(changes, "model", null))
	reason := {"id": "default_safe.agent_model_missing", "msg": "an agent needs a `model`"}
}

deny contains reason if {
	some tool in lib.array_at(changes, "tool_ids")
	reason := lib.disallowed_tool(tool)
}

deny contains reason if some reason in lib.tool_list_deny

# The fields read above, when given, must have their types: `changes: 5` or
# `tool_ids: "ops.shell"` would otherwise pass every check.
deny contains reason if {
	some [path, expected] in [
		[["context", "changes"], "object"],
		[["context", "changes", "status"], "string"],
		[["context", "changes", "tool_ids"], "array"],
		[["resource", "attributes", "status"], "string"],
	]
	reason := lib.malformed(path, expected)
}

# Taking the agent back to draft in the same update is the way to change it;
# deploying it again then re-runs every deploy gate.
deny contains reason if {
	input.resource.attributes.status == "deployed"
	object.get(changes, "status", "") != "draft"
	touched := gated_fields & {key | some key, _ in changes}
	count(touched) > 0
	reason := {
		"id": "default_safe.deployed_agent_change",
		"msg": sprintf("%v of a deployed agent change only with `status: draft` and a new deploy", [sort(touched)]),
	}
}
