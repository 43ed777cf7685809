package aion.tool.bind

import rego.v1

# Operations tools must never be bound with confirmation turned off.
deny contains {"id": "tour.ops_autoconfirm", "msg": msg} if {
	startswith(input.resource.id, "ops.")
	input.context.config.auto_confirm == true
	msg := sprintf("tool `%s` cannot be bound with auto_confirm", [input.resource.id])
}
