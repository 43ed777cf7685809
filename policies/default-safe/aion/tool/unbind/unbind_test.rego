package aion.tool.unbind

import rego.v1

import data.aion.lib.default_safe.testing as t

unbind := t.request(
	"tool.unbind",
	t.resource("tool", "ops.shell", {}),
	{"agent": {"id": "research-copilot", "tenant": "acme", "status": "disabled"}},
)

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

# Unbinding removes capability: allowed even for a disabled agent and for security.
test_unbind_allowed if {
	count(deny) == 0 with input as unbind
	count(deny) == 0 with input as object.union(unbind, {"principal": t.user(["security"])})
}

test_unbind_other_tenant_denied if {
	denied_by(object.union(unbind, {"resource": {"tenant": "globex"}})) == {"default_safe.tenant_mismatch"}
}

test_unbind_by_viewer_denied if {
	denied_by(object.union(unbind, {"principal": t.user(["viewer"])})) == {"default_safe.role_not_permitted"}
}
