# memory.read: as memory.write, without the size limit; the viewer role may read.
package aion.memory.read

import rego.v1

import data.aion.lib.default_safe as lib

deny contains reason if some reason in lib.base_deny

deny contains reason if {
	some reason in lib.memory_owner_deny
}
