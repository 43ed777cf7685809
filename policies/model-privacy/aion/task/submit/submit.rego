# task.submit: a task is handed to an agent. The resource is the agent (type
# `agent`, as stored); the context names the task's `intent`, the routed
# `model` with its privacy level, the optional routing `tier` and the task's
# `budget_usd`. Privacy levels are ordered local-only < hybrid < allow-api:
# an intent allows a model up to its `max_privacy` and no further.
package aion.task.submit

import rego.v1

# The tunables in data.json beside this file (`privacy_rank`, `intents`,
# `budget`), read key by key under other names: the package document holds
# both these rules and that data, so a rule of the same name would recurse.
ranks := data.aion.task.submit.privacy_rank

known_intents := data.aion.task.submit.intents

budget_limits := data.aion.task.submit.budget

agent := input.resource.attributes

intent := known_intents[input.context.intent]

model_rank := ranks[input.context.model.privacy]

# An absent budget is the default; a present one is taken as given.
task_budget := object.get(input.context, "budget_usd", budget_limits.default_usd)

# Template overrides (`budget.usd_max`) may lower the cap, never raise it.
budget_cap := min({budget_limits.cap_usd} | {cap |
	cap := agent.policy_overrides.budget.usd_max
	is_number(cap)
})

deny contains reason if {
	input.principal.tenant != input.resource.tenant
	reason := {
		"id": "model_privacy.tenant_mismatch",
		"msg": sprintf("principal of tenant %q may not submit tasks to an agent of tenant %q", [input.principal.tenant, input.resource.tenant]),
	}
}

deny contains reason if {
	input.resource.type != "agent"
	reason := {"id": "model_privacy.resource_type", "msg": sprintf("task.submit expects the agent as resource, got %q", [input.resource.type])}
}

# The template overrides read below, when present and not null but of another
# type: an override of the wrong type (`usd_max: "0.01"`, `allow_cloud:
# "false"`) would be ignored, not applied. The other fields of the wrong type
# are denied by the rules that read them (an intent of 5 is `intent_unknown`).
deny contains reason if {
	some [path, expected] in [
		[["resource", "attributes", "policy_overrides"], "object"],
		[["resource", "attributes", "policy_overrides", "budget"], "object"],
		[["resource", "attributes", "policy_overrides", "budget", "usd_max"], "number"],
		[["resource", "attributes", "policy_overrides", "privacy"], "object"],
		[["resource", "attributes", "policy_overrides", "privacy", "allow_cloud"], "boolean"],
	]
	reason := malformed(path, expected)
}

deny contains reason if {
	status := object.get(agent, "status", null)
	status != "deployed"
	reason := {"id": "model_privacy.agent_not_deployed", "msg": sprintf("agent %q is not deployed (status %v)", [input.resource.id, status])}
}

deny contains reason if {
	not intent
	reason := {
		"id": "model_privacy.intent_unknown",
		"msg": sprintf("intent %v is not one of %v", [object.get(input.context, "intent", null), object.keys(known_intents)]),
	}
}

deny contains reason if {
	not model_rank
	reason := {
		"id": "model_privacy.model_privacy_unknown",
		"msg": sprintf("the routed model's privacy %v is not one of %v", [object.get(input.context, ["model", "privacy"], null), object.keys(ranks)]),
	}
}

# FIXTURES: invoice_ocr must run on a local model.
deny contains reason if {
	model_rank > ranks[intent.max_privacy]
	reason := {
		"id": "model_privacy.privacy_exceeded",
		"msg": sprintf("intent %q allows models up to %q; model %v is %q", [input.context.intent, intent.max_privacy, object.get(input.context.model, "id", null), input.context.model.privacy]),
	}
}

deny contains reason if {
	tier := input.context.tier
	tiers := intent.tiers
	not tier in tiers
	reason := {
		"id": "model_privacy.tier_not_allowed",
		"msg": sprintf("intent %q runs on tiers %v, not %v", [input.context.intent, tiers, tier]),
	}
}

# Templates without cloud (`privacy.allow_cloud: false`) keep every task local.
deny contains reason if {
	agent.policy_overrides.privacy.allow_cloud == false
	model_rank > ranks["local-only"]
	reason := {
		"id": "model_privacy.cloud_not_allowed",
		"msg": sprintf("agent %q does not allow cloud models; the routed model is %q", [input.resource.id, input.context.model.privacy]),
	}
}

deny contains reason if {
	not valid_budget
	reason := {"id": "model_privacy.budget_invalid", "msg": sprintf("budget_usd must be a non-negative number, got %v", [task_budget])}
}

# FIXTURES: a task with budget 0.5 exceeds the cap of 0.2.
deny contains reason if {
	valid_budget
	task_budget > budget_cap
	reason := {
		"id": "model_privacy.budget_exceeded",
		"msg": sprintf("budget %v USD exceeds the cap of %v USD", [task_budget, budget_cap]),
	}
}

valid_budget if {
	is_number(task_budget)
	task_budget >= 0
}

# A deny reason when the input field at `path` is present, not null, and not
# of type `expected` (a `type_name`); undefined otherwise.
malformed(path, expected) := reason if {
	value := object.get(input, path, null)
	value != null
	type_name(value) != expected
	reason := {
		"id": "model_privacy.input_malformed",
		"msg": sprintf("`%s` must be %s", [concat(".", path), type_articles[expected]]),
	}
}

type_articles := {"object": "an object", "number": "a number", "boolean": "a boolean"}
