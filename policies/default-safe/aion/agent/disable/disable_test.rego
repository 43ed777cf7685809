package aion.agent.disable

import rego.v1

import data.aion.lib.default_safe.testing as t

disable := t.request(
	"agent.disable",
	t.resource("agent", "research-copilot", {"status": "deployed"}),
	{"reason": "incident 42: unexpected egress"},
)

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

test_operator_security_admin_may_disable if {
	every roles in [["operator"], ["security"], ["admin"]] {
		count(deny) == 0 with input as object.union(disable, {"principal": t.user(roles)})
	}
	count(warn) == 0 with input as disable
}

test_developer_and_viewer_may_not_disable if {
	every roles in [["developer"], ["viewer"], ["auditor"]] {
		denied_by(object.union(disable, {"principal": t.user(roles)})) == {"default_safe.role_not_permitted"}
	}
}

test_disable_in_other_tenant_denied if {
	denied_by(object.union(disable, {"resource": {"tenant": "globex"}})) == {"default_safe.tenant_mismatch"}
}

test_disable_without_reason_warns if {
	inp := object.union(disable, {"context": {"reason": ""}})
	count(deny) == 0 with input as inp
	t.ids(warn) == {"default_safe.disable_without_reason"} with input as inp
}
