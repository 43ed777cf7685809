# agent.deploy: the resource is the agent as stored; the context carries what
# the server knows about it: its attached policies, its model as registered,
# and the tenant's settings. In the old system deploying only flipped a
# status; here every gate must hold. Who may deploy is Cedar's part
# (policies.cedar at the bundle root).
package aion.agent.deploy

import rego.v1

agent := input.resource.attributes

model := input.context.model

# The lists read below, as arrays whatever the input holds: a field of another
# type reads as [] here and is denied as `deploy_gates.input_malformed`.
tool_ids := array_at(agent, "tool_ids")

policies := array_at(input.context, "policies")

deny contains reason if {
	input.principal.tenant != input.resource.tenant
	reason := {
		"id": "deploy_gates.tenant_mismatch",
		"msg": sprintf("principal of tenant %q may not deploy an agent of tenant %q", [input.principal.tenant, input.resource.tenant]),
	}
}

deny contains reason if {
	input.resource.type != "agent"
	reason := {"id": "deploy_gates.resource_type", "msg": sprintf("agent.deploy expects an agent, got %q", [input.resource.type])}
}

deny contains reason if {
	agent.status == "disabled"
	reason := {"id": "deploy_gates.agent_disabled", "msg": sprintf("agent %q is disabled and cannot be deployed", [input.resource.id])}
}

# The fields read below, when present and not null but of another type;
# absent and null ones keep the rules that read them (no model is
# `model_missing`, no tool list allows no tool). An override of the wrong type
# (`allow_cloud: "false"`) or approval flag (`"true"`) would otherwise be
# ignored, not applied.
deny contains reason if {
	some [path, expected] in [
		[["resource", "attributes", "status"], "string"],
		[["resource", "attributes", "tool_ids"], "array"],
		[["resource", "attributes", "policy_overrides"], "object"],
		[["resource", "attributes", "policy_overrides", "privacy"], "object"],
		[["resource", "attributes", "policy_overrides", "privacy", "allow_cloud"], "boolean"],
		[["context", "policies"], "array"],
		[["context", "tenant"], "object"],
		[["context", "tenant", "allowed_tools"], "array"],
		[["context", "model", "admin_approval_required"], "boolean"],
	]
	reason := malformed(path, expected)
}

# Every deployed agent runs under at least one active policy bundle.
deny contains reason if {
	not has_active_policy
	reason := {
		"id": "deploy_gates.no_active_policy",
		"msg": sprintf("agent %q has no attached policy bundle with status `active`", [input.resource.id]),
	}
}

deny contains reason if {
	not is_object(object.get(input, ["context", "model"], null))
	reason := {"id": "deploy_gates.model_missing", "msg": "agent.deploy needs `context.model`, the agent's model as registered"}
}

deny contains reason if {
	is_object(model)
	object.get(model, "registered", false) != true
	reason := {"id": "deploy_gates.model_unregistered", "msg": sprintf("model %s is not registered", [q(object.get(model, "id", ""))])}
}

deny contains reason if {
	is_object(model)
	object.get(model, "verified", false) != true
	reason := {
		"id": "deploy_gates.model_unverified",
		"msg": sprintf("model %s has no verified attestation", [q(object.get(model, "id", ""))]),
	}
}

# Tools are checked against the tenant's list as the server passes it; no
# list means no tool is allowed (fail closed), not every tool.
deny contains reason if {
	some tool in tool_ids
	not tool in array_at(object_at(object.get(input, "context", {}), "tenant"), "allowed_tools")
	reason := {
		"id": "deploy_gates.tool_not_allowed",
		"msg": sprintf("tool %s is not allowed for tenant %q", [q(tool), input.resource.tenant]),
		"tool": tool,
	}
}

# Template overrides such as `privacy.allow_cloud: false` tighten policy; they
# are inputs to it, never a way around it.
deny contains reason if {
	agent.policy_overrides.privacy.allow_cloud == false
	model.privacy != "local-only"
	reason := {
		"id": "deploy_gates.cloud_not_allowed",
		"msg": sprintf("the agent does not allow cloud models, and model %s has privacy %s", [q(model.id), q(model.privacy)]),
	}
}

obligations contains {"type": "require_approval", "role": "admin"} if {
	model.admin_approval_required == true
}

# Active bundles that only warn or audit do not block anything at run time.
warn contains reason if {
	has_active_policy
	not has_enforcing_policy
	reason := {
		"id": "deploy_gates.policy_not_enforced",
		"msg": "no attached active policy bundle is in `enforce` mode: violations will be reported, not blocked",
	}
}

has_active_policy if {
	some policy in policies
	is_object(policy)
	policy.status == "active"
}

has_enforcing_policy if {
	some policy in policies
	is_object(policy)
	policy.status == "active"
	object.get(policy, "mode", "enforce") == "enforce"
}

# --- helpers: total over every input shape, in regorus and in OPA ----------

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
# of type `expected` (a `type_name`); undefined otherwise.
malformed(path, expected) := reason if {
	value := object.get(input, path, null)
	value != null
	type_name(value) != expected
	reason := {
		"id": "deploy_gates.input_malformed",
		"msg": sprintf("`%s` must be %s", [concat(".", path), type_articles[expected]]),
	}
}

type_articles := {"object": "an object", "array": "an array", "string": "a string", "boolean": "a boolean"}
