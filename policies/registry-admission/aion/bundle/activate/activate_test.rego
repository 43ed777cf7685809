package aion.bundle.activate

import rego.v1

import data.aion.lib.registry_admission.testing as t

activate := {
	"action": "bundle.activate",
	"principal": t.security,
	"resource": {
		"type": "bundle",
		"id": "default-safe",
		"tenant": "acme",
		"attributes": {"revision": "2026.11.27.1", "signed": true, "signer_key_id": "acme-bundles-2026"},
	},
	"context": {"trusted_bundle_keys": ["acme-bundles-2026", "aion-release"]},
}

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

test_signed_bundle_from_trusted_key_activates if {
	count(deny) == 0 with input as activate
}

test_unsigned_bundle_denied if {
	denied_by(t.set_attribute(activate, "signed", false)) == {"registry_admission.bundle_unsigned"}
	denied_by(json.patch(activate, [{"op": "remove", "path": "/resource/attributes/signed"}])) == {"registry_admission.bundle_unsigned"}
}

test_untrusted_signer_denied if {
	denied_by(t.set_attribute(activate, "signer_key_id", "someone-else")) == {"registry_admission.bundle_signer_untrusted"}
	denied_by(json.patch(activate, [{"op": "remove", "path": "/resource/attributes/signer_key_id"}])) == {"registry_admission.bundle_signer_untrusted"}
}

test_no_trusted_keys_trusts_nobody if {
	denied_by(t.set_context(activate, "trusted_bundle_keys", [])) == {"registry_admission.bundle_signer_untrusted"}
	denied_by(json.patch(activate, [{"op": "remove", "path": "/context/trusted_bundle_keys"}])) == {"registry_admission.bundle_signer_untrusted"}
}

test_revision_required if {
	denied_by(t.set_attribute(activate, "revision", "")) == {"registry_admission.bundle_revision_missing"}
	denied_by(json.patch(activate, [{"op": "remove", "path": "/resource/attributes/revision"}])) == {"registry_admission.bundle_revision_missing"}
}

test_bundle_type_and_tenant_checked if {
	denied_by(object.union(activate, {"resource": {"type": "model"}})) == {"registry_admission.resource_type"}
	denied_by(object.union(activate, {"resource": {"tenant": "globex"}})) == {"registry_admission.tenant_mismatch"}
}

# A list of the wrong type trusts nobody, and says why.
test_trusted_keys_not_an_array_denied if {
	inp := t.set_context(activate, "trusted_bundle_keys", "acme-bundles-2026")
	denied_by(inp) == {"registry_admission.input_malformed", "registry_admission.bundle_signer_untrusted"}
	reasons := deny with input as inp
	{r.msg | some r in reasons; r.id == "registry_admission.input_malformed"} == {"`context.trusted_bundle_keys` must be an array"}
}
