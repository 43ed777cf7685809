# memory.write: the resource is the memory namespace (type `memory`) of one
# tenant, usually owned by one agent (`attributes.agent_id`); the writing
# agent is `context.agent`, the value's size `context.size_bytes`.
package aion.memory.write

import rego.v1

import data.aion.lib.default_safe as lib

deny contains reason if some reason in lib.base_deny

deny contains reason if {
	some reason in lib.memory_owner_deny
}

deny contains reason if {
	size := input.context.size_bytes
	is_number(size)
	size > data.aion.memory.write.max_value_bytes
	reason := {
		"id": "default_safe.memory_too_large",
		"msg": sprintf("memory value of %v bytes exceeds %v", [size, data.aion.memory.write.max_value_bytes]),
	}
}

deny contains reason if {
	reason := lib.malformed(["context", "size_bytes"], "number")
}
