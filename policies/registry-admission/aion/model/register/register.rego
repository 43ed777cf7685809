# model.register: the resource is the model as it will be stored (`sha256`,
# `privacy`, `admin_approval_required`, optional `signature`, `sbom`,
# `checksums_stale`, `checksums_sha256`); the registry's verification result
# is `context.attestations`. Who may register is Cedar's part.
package aion.model.register

import rego.v1

import data.aion.lib.registry_admission as lib

deny contains reason if some reason in lib.common_deny

deny contains reason if some reason in lib.evidence_deny

# Routing relies on a model's privacy level; a model without one cannot be placed.
deny contains reason if {
	not object.get(input, ["resource", "attributes", "privacy"], null) in data.aion.lib.registry_admission.privacy_levels
	reason := {
		"id": "registry_admission.model_privacy_invalid",
		"msg": sprintf("model privacy %v is not one of %v", [object.get(lib.attributes, "privacy", null), data.aion.lib.registry_admission.privacy_levels]),
	}
}

# `admin_approval_required: "true"` would otherwise skip the approval below.
deny contains reason if {
	reason := lib.malformed(["resource", "attributes", "admin_approval_required"], "boolean")
}

warn contains reason if some reason in lib.evidence_warn

# FIXTURES: registry model gpt-4.5 needs an admin's approval.
obligations contains {"type": "require_approval", "role": "admin"} if {
	lib.attributes.admin_approval_required == true
}
