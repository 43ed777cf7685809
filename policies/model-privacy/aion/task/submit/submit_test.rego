package aion.task.submit

import rego.v1

# A summarize task for the deployed Research Copilot on gpt-4o.
summarize := {
	"action": "task.submit",
	"principal": {"id": "olga", "tenant": "acme", "roles": ["operator"], "kind": "user"},
	"resource": {
		"type": "agent",
		"id": "research-copilot",
		"tenant": "acme",
		"attributes": {"name": "Research Copilot", "template": "autogpt-research", "status": "deployed"},
	},
	"context": {
		"intent": "summarize",
		"tier": "tier1",
		"model": {"id": "gpt-4o", "privacy": "allow-api"},
		"budget_usd": 0.05,
	},
}

# An invoice_ocr task routed to `model`.
invoice_ocr(model) := json.patch(summarize, [
	{"op": "replace", "path": "/context/intent", "value": "invoice_ocr"},
	{"op": "replace", "path": "/context/tier", "value": "tier0"},
	{"op": "replace", "path": "/context/model", "value": model},
])

set_context(inp, key, value) := json.patch(inp, [{"op": "add", "path": concat("/", ["", "context", key]), "value": value}])

drop_context(inp, key) := json.patch(inp, [{"op": "remove", "path": concat("/", ["", "context", key])}])

llama := {"id": "llama3.2:3b", "privacy": "local-only"}

mixtral := {"id": "mixtral-8x7b", "privacy": "hybrid"}

gpt := {"id": "gpt-4o", "privacy": "allow-api"}

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := {reason.id | some reason in reasons}
}

test_summarize_on_any_model_allowed if {
	every model in [llama, mixtral, gpt] {
		count(deny) == 0 with input as set_context(summarize, "model", model)
	}
}

test_invoice_ocr_on_local_model_allowed if {
	count(deny) == 0 with input as invoice_ocr(llama)
}

# FIXTURES: invoice_ocr must run on a local model.
test_invoice_ocr_on_api_model_denied if {
	denied_by(invoice_ocr(gpt)) == {"model_privacy.privacy_exceeded"}
}

test_invoice_ocr_on_hybrid_model_denied if {
	denied_by(invoice_ocr(mixtral)) == {"model_privacy.privacy_exceeded"}
}

test_unknown_or_missing_intent_denied if {
	denied_by(set_context(summarize, "intent", "translate")) == {"model_privacy.intent_unknown"}
	denied_by(drop_context(summarize, "intent")) == {"model_privacy.intent_unknown"}
	denied_by(set_context(summarize, "intent", {"name": "summarize"})) == {"model_privacy.intent_unknown"}
}

test_unknown_model_privacy_denied if {
	denied_by(set_context(summarize, "model", {"id": "gpt-4o"})) == {"model_privacy.model_privacy_unknown"}
	denied_by(set_context(summarize, "model", {"id": "x", "privacy": "public"})) == {"model_privacy.model_privacy_unknown"}
	denied_by(drop_context(summarize, "model")) == {"model_privacy.model_privacy_unknown"}
}

test_tier_outside_intent_denied if {
	denied_by(set_context(invoice_ocr(llama), "tier", "tier1")) == {"model_privacy.tier_not_allowed"}
	denied_by(set_context(summarize, "tier", "tier9")) == {"model_privacy.tier_not_allowed"}
}

test_tier_optional if {
	count(deny) == 0 with input as drop_context(summarize, "tier")
}

# FIXTURES: default budget 0.02 per task, cap 0.2.
test_budget_defaults_to_two_cents if {
	count(deny) == 0 with input as drop_context(summarize, "budget_usd")
	task_budget == 0.02 with input as drop_context(summarize, "budget_usd")
}

test_budget_at_cap_allowed if {
	count(deny) == 0 with input as set_context(summarize, "budget_usd", 0.2)
	count(deny) == 0 with input as set_context(summarize, "budget_usd", 0)
}

# FIXTURES: a task with budget 0.5 exceeds the cap.
test_budget_over_cap_denied if {
	denied_by(set_context(summarize, "budget_usd", 0.5)) == {"model_privacy.budget_exceeded"}
}

test_invalid_budget_denied if {
	every value in [-1, "0.1", null, {"usd": 0.1}] {
		denied_by(set_context(summarize, "budget_usd", value)) == {"model_privacy.budget_invalid"}
	}
}

# FIXTURES: template overrides are inputs to policy, never a way around it.
test_template_budget_override_only_lowers_the_cap if {
	voicebot := {"resource": {"attributes": {"policy_overrides": {"budget": {"usd_max": 0.05}}}}}
	denied_by(object.union(set_context(summarize, "budget_usd", 0.1), voicebot)) == {"model_privacy.budget_exceeded"}
	analyst := {"resource": {"attributes": {"policy_overrides": {"budget": {"usd_max": 1.5}}}}}
	denied_by(object.union(set_context(summarize, "budget_usd", 0.5), analyst)) == {"model_privacy.budget_exceeded"}
	count(deny) == 0 with input as object.union(summarize, analyst)
}

test_no_cloud_template_keeps_tasks_local if {
	jarvis := {"resource": {"attributes": {"policy_overrides": {"privacy": {"allow_cloud": false}}}}}
	denied_by(object.union(summarize, jarvis)) == {"model_privacy.cloud_not_allowed"}
	count(deny) == 0 with input as object.union(set_context(summarize, "model", llama), jarvis)
}

test_undeployed_agent_denied if {
	every status in ["draft", "disabled"] {
		inp := object.union(summarize, {"resource": {"attributes": {"status": status}}})
		denied_by(inp) == {"model_privacy.agent_not_deployed"}
	}
	no_status := json.patch(summarize, [{"op": "remove", "path": "/resource/attributes/status"}])
	denied_by(no_status) == {"model_privacy.agent_not_deployed"}
}

# task.submit is about the agent; a task resource is a malformed request.
test_resource_must_be_the_agent if {
	inp := object.union(summarize, {"resource": {"type": "task"}})
	denied_by(inp) == {"model_privacy.resource_type"}
}

test_other_tenant_denied if {
	denied_by(object.union(summarize, {"principal": {"tenant": "globex"}})) == {"model_privacy.tenant_mismatch"}
}

# --- malformed input: denied in both engines, never an evaluation error -----

# The messages of the `input_malformed` reasons for `inp`.
malformed_msgs(inp) := {reason.msg |
	some reason in deny with input as inp
	reason.id == "model_privacy.input_malformed"
}

# `usd_max: "0.01"` is not a number: ignored, it would leave the cap at 0.2.
test_overrides_of_the_wrong_type_denied if {
	budget := object.union(summarize, {"resource": {"attributes": {"policy_overrides": {"budget": {"usd_max": "0.01"}}}}})
	denied_by(budget) == {"model_privacy.input_malformed"}
	malformed_msgs(budget) == {"`resource.attributes.policy_overrides.budget.usd_max` must be a number"}
	cloud := object.union(summarize, {"resource": {"attributes": {"policy_overrides": {"privacy": {"allow_cloud": "false"}}}}})
	denied_by(cloud) == {"model_privacy.input_malformed"}
	malformed_msgs(cloud) == {"`resource.attributes.policy_overrides.privacy.allow_cloud` must be a boolean"}
	sections := object.union(summarize, {"resource": {"attributes": {"policy_overrides": {"budget": 0.01, "privacy": "local-only"}}}})
	malformed_msgs(sections) == {
		"`resource.attributes.policy_overrides.budget` must be an object",
		"`resource.attributes.policy_overrides.privacy` must be an object",
	}
	overrides := object.union(summarize, {"resource": {"attributes": {"policy_overrides": ["budget"]}}})
	malformed_msgs(overrides) == {"`resource.attributes.policy_overrides` must be an object"}
}

# Absent and null overrides are no overrides.
test_null_overrides_are_absent_not_malformed if {
	count(deny) == 0 with input as object.union(summarize, {"resource": {"attributes": {"policy_overrides": null}}})
	count(deny) == 0 with input as object.union(summarize, {"resource": {"attributes": {"policy_overrides": {"budget": {"usd_max": null}}}}})
}
