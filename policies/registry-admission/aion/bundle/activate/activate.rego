# bundle.activate: the resource is the bundle (`signed`, `signer_key_id`,
# `revision`); the tenant's trusted bundle keys are `context.trusted_bundle_keys`.
# The engine verifies the signature and refuses rollbacks itself; policy
# decides which keys are trusted and refuses unsigned bundles outright.
package aion.bundle.activate

import rego.v1

import data.aion.lib.registry_admission as lib

bundle := input.resource.attributes

deny contains reason if some reason in lib.common_deny

deny contains reason if {
	object.get(bundle, "signed", false) != true
	reason := {"id": "registry_admission.bundle_unsigned", "msg": sprintf("bundle %q is not signed", [input.resource.id])}
}

deny contains reason if {
	bundle.signed == true
	not object.get(bundle, "signer_key_id", null) in lib.array_at(object.get(input, "context", {}), "trusted_bundle_keys")
	reason := {
		"id": "registry_admission.bundle_signer_untrusted",
		"msg": sprintf("bundle %q is signed by %v, not by a trusted key", [input.resource.id, object.get(bundle, "signer_key_id", null)]),
	}
}

# Keys of another type trust nobody (see bundle_signer_untrusted), and say why.
deny contains reason if {
	reason := lib.malformed(["context", "trusted_bundle_keys"], "array")
}

deny contains reason if {
	not lib.non_blank(object.get(input, ["resource", "attributes", "revision"], null))
	reason := {"id": "registry_admission.bundle_revision_missing", "msg": sprintf("bundle %q has no revision", [input.resource.id])}
}
