# agent.disable: stopping an agent is the safe direction, so only the shared
# rules apply (tenant, resource type, roles: admin, operator, security).
package aion.agent.disable

import rego.v1

import data.aion.lib.default_safe as lib

deny contains reason if some reason in lib.base_deny

# The decision log is the audit trail; a disable without a reason is a gap in it.
warn contains reason if {
	not lib.non_blank(object.get(input, ["context", "reason"], null))
	reason := {"id": "default_safe.disable_without_reason", "msg": "disabling an agent should give `context.reason`"}
}
