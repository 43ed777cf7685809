package aion.agent.deploy

import rego.v1

# A deployable Research Copilot: active enforcing bundle, registered and
# verified model, tools the tenant allows.
ready := {
	"action": "agent.deploy",
	"principal": {"id": "olga", "tenant": "acme", "roles": ["operator"], "kind": "user"},
	"resource": {
		"type": "agent",
		"id": "research-copilot",
		"tenant": "acme",
		"attributes": {
			"name": "Research Copilot",
			"template": "autogpt-research",
			"status": "draft",
			"tool_ids": ["web_search", "browser", "file_writer"],
		},
	},
	"context": {
		"policies": [
			{"name": "default-safe", "status": "active", "mode": "enforce"},
			{"name": "research-extra", "status": "draft", "mode": "enforce"},
		],
		"model": {
			"id": "gpt-4o",
			"registered": true,
			"verified": true,
			"privacy": "allow-api",
			"admin_approval_required": false,
		},
		"tenant": {"allowed_tools": ["web_search", "browser", "file_writer", "rag.search"]},
	},
}

# `ready` with the context field `key` replaced by `value`.
with_context(key, value) := json.patch(ready, [{"op": "add", "path": concat("/", ["", "context", key]), "value": value}])

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := {reason.id | some reason in reasons}
}

test_ready_agent_deploys if {
	count(deny) == 0 with input as ready
	count(warn) == 0 with input as ready
	count(obligations) == 0 with input as ready
}

test_agent_without_tools_deploys if {
	inp := json.patch(ready, [{"op": "remove", "path": "/resource/attributes/tool_ids"}])
	count(deny) == 0 with input as inp
}

test_no_policies_denied if {
	denied_by(with_context("policies", [])) == {"deploy_gates.no_active_policy"}
	denied_by(json.patch(ready, [{"op": "remove", "path": "/context/policies"}])) == {"deploy_gates.no_active_policy"}
}

test_only_inactive_policies_denied if {
	inactive := [{"name": "default-safe", "status": "draft", "mode": "enforce"}, {"name": "old", "status": "retired", "mode": "enforce"}]
	denied_by(with_context("policies", inactive)) == {"deploy_gates.no_active_policy"}
}

test_active_policy_in_audit_mode_warns if {
	inp := with_context("policies", [{"name": "default-safe", "status": "active", "mode": "audit"}])
	count(deny) == 0 with input as inp
	reasons := warn with input as inp
	{r.id | some r in reasons} == {"deploy_gates.policy_not_enforced"}
}

test_missing_model_denied if {
	denied_by(json.patch(ready, [{"op": "remove", "path": "/context/model"}])) == {"deploy_gates.model_missing"}
	denied_by(with_context("model", "gpt-4o")) == {"deploy_gates.model_missing"}
}

test_unregistered_model_denied if {
	denied_by(with_context("model", {"id": "gpt-4o", "registered": false, "verified": true})) == {"deploy_gates.model_unregistered"}
	denied_by(with_context("model", {"id": "gpt-4o", "verified": true})) == {"deploy_gates.model_unregistered"}
}

test_unverified_model_denied if {
	denied_by(with_context("model", {"id": "gpt-4o", "registered": true, "verified": false})) == {"deploy_gates.model_unverified"}
	denied_by(with_context("model", {"id": "gpt-4o", "registered": true, "verified": "yes"})) == {"deploy_gates.model_unverified"}
}

test_tool_not_allowed_for_tenant_denied if {
	denied_by(with_context("tenant", {"allowed_tools": ["web_search", "browser"]})) == {"deploy_gates.tool_not_allowed"}
	reasons := deny with input as with_context("tenant", {"allowed_tools": ["web_search", "browser"]})
	[reason.tool | some reason in reasons] == ["file_writer"]
}

test_no_tenant_tool_list_allows_no_tools if {
	inp := json.patch(ready, [{"op": "remove", "path": "/context/tenant"}])
	denied_by(inp) == {"deploy_gates.tool_not_allowed"}
	count(deny) == 3 with input as inp
}

test_disabled_agent_denied if {
	inp := object.union(ready, {"resource": {"attributes": {"status": "disabled"}}})
	denied_by(inp) == {"deploy_gates.agent_disabled"}
}

test_other_tenant_denied if {
	denied_by(object.union(ready, {"principal": {"tenant": "globex"}})) == {"deploy_gates.tenant_mismatch"}
}

test_non_agent_resource_denied if {
	denied_by(object.union(ready, {"resource": {"type": "model"}})) == {"deploy_gates.resource_type"}
}

# FIXTURES: templates without cloud (jarvis, analyst) keep `privacy.allow_cloud: false`.
test_no_cloud_agent_needs_local_model if {
	no_cloud := {"resource": {"attributes": {"policy_overrides": {"privacy": {"allow_cloud": false}}}}}
	denied_by(object.union(ready, no_cloud)) == {"deploy_gates.cloud_not_allowed"}
	local := {"context": {"model": {"id": "llama3.2:3b", "privacy": "local-only"}}}
	count(deny) == 0 with input as object.union(object.union(ready, no_cloud), local)
}

# FIXTURES: registry model gpt-4.5 needs an admin's approval.
test_model_needing_approval_gets_obligation if {
	inp := object.union(ready, {"context": {"model": {"id": "gpt-4.5", "admin_approval_required": true}}})
	count(deny) == 0 with input as inp
	obligations == {{"type": "require_approval", "role": "admin"}} with input as inp
}

test_every_gate_reported_at_once if {
	inp := object.union(ready, {
		"resource": {"attributes": {"status": "disabled"}},
		"context": {"policies": [], "model": {"registered": false, "verified": false}, "tenant": {"allowed_tools": []}},
	})
	denied_by(inp) == {
		"deploy_gates.agent_disabled",
		"deploy_gates.no_active_policy",
		"deploy_gates.model_unregistered",
		"deploy_gates.model_unverified",
		"deploy_gates.tool_not_allowed",
	}
}

# --- malformed input: denied in both engines, never an evaluation error -----

# The messages of the `input_malformed` reasons for `inp`.
malformed_msgs(inp) := {reason.msg |
	some reason in deny with input as inp
	reason.id == "deploy_gates.input_malformed"
}

# In OPA a number's `some .. in` matched nothing: `tool_ids: 5` deployed.
test_tool_ids_not_an_array_denied if {
	inp := object.union(ready, {"resource": {"attributes": {"tool_ids": 5}}})
	denied_by(inp) == {"deploy_gates.input_malformed"}
	malformed_msgs(inp) == {"`resource.attributes.tool_ids` must be an array"}
}

# Absent and null fields keep their own rules; only another type is malformed.
test_null_fields_are_absent_not_malformed if {
	count(deny) == 0 with input as object.union(ready, {"resource": {"attributes": {"tool_ids": null}}})
	denied_by(with_context("policies", null)) == {"deploy_gates.no_active_policy"}
	denied_by(with_context("tenant", {"allowed_tools": null})) == {"deploy_gates.tool_not_allowed"}
}

test_policies_not_an_array_denied if {
	inp := with_context("policies", {"name": "default-safe", "status": "active"})
	denied_by(inp) == {"deploy_gates.input_malformed", "deploy_gates.no_active_policy"}
	malformed_msgs(inp) == {"`context.policies` must be an array"}
	with_junk := with_context("policies", ["default-safe", {"name": "default-safe", "status": "active", "mode": "enforce"}])
	count(deny) == 0 with input as with_junk
	count(warn) == 0 with input as with_junk
}

test_tenant_settings_of_the_wrong_type_denied if {
	malformed_msgs(with_context("tenant", ["web_search"])) == {"`context.tenant` must be an object"}
	denied_by(with_context("tenant", ["web_search"])) == {"deploy_gates.input_malformed", "deploy_gates.tool_not_allowed"}
	inp := with_context("tenant", {"allowed_tools": "web_search,browser,file_writer"})
	malformed_msgs(inp) == {"`context.tenant.allowed_tools` must be an array"}
	denied_by(inp) == {"deploy_gates.input_malformed", "deploy_gates.tool_not_allowed"}
}

test_status_not_a_string_denied if {
	inp := object.union(ready, {"resource": {"attributes": {"status": ["disabled"]}}})
	malformed_msgs(inp) == {"`resource.attributes.status` must be a string"}
}

# `allow_cloud: "false"` is not `false`: ignored, it would let a cloud model through.
test_overrides_of_the_wrong_type_denied if {
	cloud_string := {"resource": {"attributes": {"policy_overrides": {"privacy": {"allow_cloud": "false"}}}}}
	denied_by(object.union(ready, cloud_string)) == {"deploy_gates.input_malformed"}
	malformed_msgs(object.union(ready, cloud_string)) == {"`resource.attributes.policy_overrides.privacy.allow_cloud` must be a boolean"}
	privacy := {"resource": {"attributes": {"policy_overrides": {"privacy": "local-only"}}}}
	malformed_msgs(object.union(ready, privacy)) == {"`resource.attributes.policy_overrides.privacy` must be an object"}
	overrides := {"resource": {"attributes": {"policy_overrides": "none"}}}
	malformed_msgs(object.union(ready, overrides)) == {"`resource.attributes.policy_overrides` must be an object"}
}

# `admin_approval_required: "true"` would otherwise deploy without the approval.
test_approval_flag_not_a_boolean_denied if {
	inp := object.union(ready, {"context": {"model": {"admin_approval_required": "true"}}})
	denied_by(inp) == {"deploy_gates.input_malformed"}
	malformed_msgs(inp) == {"`context.model.admin_approval_required` must be a boolean"}
}

# regorus refuses `%q` of a non-string: such values are printed as `%v`.
test_non_string_values_in_messages if {
	tools := deny with input as object.union(ready, {"resource": {"attributes": {"tool_ids": [7]}}})
	{r.msg | some r in tools} == {"tool 7 is not allowed for tenant \"acme\""}
	models := deny with input as with_context("model", {"id": 5})
	{r.msg | some r in models} == {"model 5 is not registered", "model 5 has no verified attestation"}
	no_cloud := {"resource": {"attributes": {"policy_overrides": {"privacy": {"allow_cloud": false}}}}}
	cloud := deny with input as object.union(ready, object.union(no_cloud, {"context": {"model": {"privacy": 2}}}))
	{r.msg | some r in cloud} == {"the agent does not allow cloud models, and model \"gpt-4o\" has privacy 2"}
}
