package aion.artifact.register

import rego.v1

import data.aion.lib.registry_admission.testing as t

image := t.registration("artifact.register", "artifact", "research-copilot-image", {"kind": "oci-image"})

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

test_verified_artifact_registers if {
	count(deny) == 0 with input as image
	count(warn) == 0 with input as image
}

test_artifact_needs_no_privacy if {
	not "privacy" in object.keys(image.resource.attributes)
}

test_artifact_placeholders_denied if {
	denied_by(t.set_attribute(image, "signature", "minisign:ABC123")) == {"registry_admission.signature_placeholder"}
	denied_by(t.set_attribute(image, "checksums_stale", true)) == {"registry_admission.checksums_stale"}
	denied_by(t.set_attestation(image, "verified", false)) == {"registry_admission.attestation_unverified"}
}

test_artifact_without_sbom_warns if {
	inp := json.patch(image, [{"op": "remove", "path": "/resource/attributes/sbom"}])
	t.ids(warn) == {"registry_admission.sbom_missing"} with input as inp
}

test_artifact_type_and_tenant_checked if {
	denied_by(object.union(image, {"resource": {"type": "model"}})) == {"registry_admission.resource_type"}
	denied_by(object.union(image, {"principal": {"tenant": "globex"}})) == {"registry_admission.tenant_mismatch"}
}
