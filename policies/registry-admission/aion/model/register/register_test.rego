package aion.model.register

import rego.v1

import data.aion.lib.registry_admission.testing as t

llama := t.registration("model.register", "model", "llama3.2-3b", {"privacy": "local-only", "admin_approval_required": false})

denied_by(inp) := ids if {
	reasons := deny with input as inp
	ids := t.ids(reasons)
}

# The same placeholder digest everywhere, so only the digest rule speaks.
with_digest(value) := json.patch(llama, [
	{"op": "replace", "path": "/resource/attributes/sha256", "value": value},
	{"op": "replace", "path": "/resource/attributes/checksums_sha256", "value": value},
	{"op": "replace", "path": "/context/attestations/subject_digests", "value": [concat("", ["sha256:", value])]},
])

test_verified_model_registers if {
	count(deny) == 0 with input as llama
	count(warn) == 0 with input as llama
	count(obligations) == 0 with input as llama
}

test_model_without_optional_integrity_fields_registers if {
	inp := t.with_attributes(llama, {"sha256": t.digest, "privacy": "hybrid"})
	count(deny) == 0 with input as inp
}

# FIXTURES: `minisign:ABC123`.
test_placeholder_signature_denied if {
	denied_by(t.set_attribute(llama, "signature", "minisign:ABC123")) == {"registry_admission.signature_placeholder"}
	every signature in ["minisign:", "sig:TODO", "cosign:0000", "minisign:ABC123DEF456"] {
		"registry_admission.signature_placeholder" in denied_by(t.set_attribute(llama, "signature", signature))
	}
}

test_unverified_signature_denied if {
	unverified := t.set_context(llama, "signature_verified", false)
	denied_by(unverified) == {"registry_admission.signature_unverified"}
	denied_by(json.patch(llama, [{"op": "remove", "path": "/context/signature_verified"}])) == {"registry_admission.signature_unverified"}
	placeholder := t.set_attribute(unverified, "signature", "minisign:ABC123")
	denied_by(placeholder) == {"registry_admission.signature_placeholder", "registry_admission.signature_unverified"}
}

test_non_string_signature_is_unverified_not_placeholder if {
	denied_by(t.set_context(t.set_attribute(llama, "signature", {"sig": "x"}), "signature_verified", false)) == {"registry_admission.signature_unverified"}
}

# FIXTURES: an all-zero sha256.
test_zero_digest_denied if {
	denied_by(with_digest("0000000000000000000000000000000000000000000000000000000000000000")) == {"registry_admission.sha256_zero"}
}

# FIXTURES: a 32-hex-digit "sha256".
test_truncated_digest_denied if {
	denied_by(with_digest("d41d8cd98f00b204e9800998ecf8427e")) == {"registry_admission.sha256_truncated"}
}

test_malformed_digest_denied if {
	every value in [
		"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
		"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0",
		"not-a-digest",
		"",
	] {
		denied_by(with_digest(value)) == {"registry_admission.sha256_invalid"}
	}
}

test_missing_digest_denied if {
	denied_by(t.with_attributes(llama, {"privacy": "local-only"})) == {"registry_admission.sha256_missing"}
	"registry_admission.sha256_missing" in denied_by(t.set_attribute(llama, "sha256", 42))
}

# FIXTURES: an SPDX SBOM with no packages.
test_empty_sbom_denied if {
	denied_by(t.set_attribute(llama, "sbom", {"spdxVersion": "SPDX-2.3", "packages": []})) == {"registry_admission.sbom_empty"}
	denied_by(t.set_attribute(llama, "sbom", {"spdxVersion": "SPDX-2.3"})) == {"registry_admission.sbom_empty"}
	denied_by(t.set_attribute(llama, "sbom", {"packages": "llama.cpp"})) == {"registry_admission.sbom_empty"}
}

test_missing_sbom_warns if {
	inp := json.patch(llama, [{"op": "remove", "path": "/resource/attributes/sbom"}])
	count(deny) == 0 with input as inp
	t.ids(warn) == {"registry_admission.sbom_missing"} with input as inp
}

# FIXTURES: a stale CHECKSUMS.txt.
test_stale_checksums_denied if {
	denied_by(t.set_attribute(llama, "checksums_stale", true)) == {"registry_admission.checksums_stale"}
	other := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	denied_by(t.set_attribute(llama, "checksums_sha256", other)) == {"registry_admission.checksums_stale"}
}

test_missing_attestations_denied if {
	denied_by(json.patch(llama, [{"op": "remove", "path": "/context/attestations"}])) == {"registry_admission.attestation_missing"}
	denied_by(t.set_context(llama, "attestations", [])) == {"registry_admission.attestation_missing"}
}

test_unverified_attestations_denied if {
	denied_by(t.set_attestation(llama, "verified", false)) == {"registry_admission.attestation_unverified"}
	denied_by(t.set_attestation(llama, "verified", "true")) == {"registry_admission.attestation_unverified"}
}

# Evidence about another artifact proves nothing about this one.
test_attestation_for_other_digest_denied if {
	other := "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	denied_by(t.set_attestation(llama, "subject_digests", [other])) == {"registry_admission.digest_mismatch"}
	denied_by(t.set_attestation(llama, "subject_digests", [])) == {"registry_admission.digest_mismatch"}
}

test_provenance_required if {
	denied_by(t.set_attestation(llama, "predicate_types", ["https://spdx.dev/Document"])) == {"registry_admission.provenance_missing"}
	count(deny) == 0 with input as t.set_attestation(llama, "predicate_types", ["https://slsa.dev/provenance/v0.2"])
}

test_builder_required if {
	denied_by(t.set_attestation(llama, "builder_id", " ")) == {"registry_admission.builder_missing"}
}

test_signer_required if {
	denied_by(t.set_attestation(llama, "signer_key_ids", [])) == {"registry_admission.signer_missing"}
}

test_model_privacy_required if {
	denied_by(t.set_attribute(llama, "privacy", "public")) == {"registry_admission.model_privacy_invalid"}
	denied_by(json.patch(llama, [{"op": "remove", "path": "/resource/attributes/privacy"}])) == {"registry_admission.model_privacy_invalid"}
}

# FIXTURES: registry model gpt-4.5 is admin_approval_required.
test_admin_approval_obligation if {
	gpt := t.registration("model.register", "model", "gpt-4.5", {"privacy": "allow-api", "admin_approval_required": true})
	count(deny) == 0 with input as gpt
	obligations == {{"type": "require_approval", "role": "admin"}} with input as gpt
}

test_other_tenant_denied if {
	denied_by(object.union(llama, {"resource": {"tenant": "globex"}})) == {"registry_admission.tenant_mismatch"}
}

test_wrong_resource_type_denied if {
	denied_by(object.union(llama, {"resource": {"type": "artifact"}})) == {"registry_admission.resource_type"}
}

# The old registry manifest, all placeholders at once: every one is named.
test_old_manifest_rejected_with_every_reason if {
	old := {
		"sha256": "d41d8cd98f00b204e9800998ecf8427e",
		"signature": "minisign:ABC123",
		"sbom": {"spdxVersion": "SPDX-2.3", "packages": []},
		"checksums_stale": true,
		"privacy": "allow-api",
	}
	inp := json.patch(t.with_attributes(llama, old), [{"op": "replace", "path": "/context", "value": {}}])
	denied_by(inp) == {
		"registry_admission.sha256_truncated",
		"registry_admission.signature_placeholder",
		"registry_admission.signature_unverified",
		"registry_admission.sbom_empty",
		"registry_admission.checksums_stale",
		"registry_admission.attestation_missing",
	}
}

# --- malformed input: denied in both engines, never an evaluation error -----

# The messages of the `input_malformed` reasons for `inp`.
malformed_msgs(inp) := {reason.msg |
	some reason in deny with input as inp
	reason.id == "registry_admission.input_malformed"
}

# In OPA `count` of a string is its length: a single key id as a string
# counted as a signer.
test_attestation_lists_of_the_wrong_type_denied if {
	subjects := t.set_attestation(llama, "subject_digests", concat("", ["sha256:", t.digest]))
	denied_by(subjects) == {"registry_admission.input_malformed", "registry_admission.digest_mismatch"}
	malformed_msgs(subjects) == {"`context.attestations.subject_digests` must be an array"}
	predicates := t.set_attestation(llama, "predicate_types", "https://slsa.dev/provenance/v1")
	denied_by(predicates) == {"registry_admission.input_malformed", "registry_admission.provenance_missing"}
	malformed_msgs(predicates) == {"`context.attestations.predicate_types` must be an array"}
	signers := t.set_attestation(llama, "signer_key_ids", "acme-release-2026")
	denied_by(signers) == {"registry_admission.input_malformed", "registry_admission.signer_missing"}
	malformed_msgs(signers) == {"`context.attestations.signer_key_ids` must be an array"}
}

# Absent and null fields keep their own rules; only another type is malformed.
test_null_attestation_lists_are_absent_not_malformed if {
	denied_by(t.set_attestation(llama, "signer_key_ids", null)) == {"registry_admission.signer_missing"}
}

test_flags_of_the_wrong_type_denied if {
	stale := t.set_attribute(llama, "checksums_stale", "true")
	denied_by(stale) == {"registry_admission.input_malformed"}
	malformed_msgs(stale) == {"`resource.attributes.checksums_stale` must be a boolean"}
	approval := t.set_attribute(llama, "admin_approval_required", "true")
	denied_by(approval) == {"registry_admission.input_malformed"}
	malformed_msgs(approval) == {"`resource.attributes.admin_approval_required` must be a boolean"}
}
