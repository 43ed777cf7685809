# Request builders shared by the default-safe tests (a test file: it is not
# shipped as policy and not counted for coverage).
package aion.lib.default_safe.testing

import rego.v1

operator := {"id": "alice", "tenant": "acme", "roles": ["operator"], "kind": "user"}

user(roles) := object.union(operator, {"roles": roles})

service := {"id": "agent-7", "tenant": "acme", "roles": [], "kind": "service"}

resource(type, id, attributes) := {"type": type, "id": id, "tenant": "acme", "attributes": attributes}

request(action, res, context) := {
	"action": action,
	"principal": operator,
	"resource": res,
	"context": context,
}

# A tool.invoke request as the runtime sends it.
invoke(tool, arguments) := request("tool.invoke", resource("tool", tool, {}), {"arguments": arguments})

# The reason ids of a deny (or warn) set.
ids(reasons) := {reason.id | some reason in reasons}
