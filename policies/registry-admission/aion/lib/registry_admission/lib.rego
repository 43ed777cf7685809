# Rules shared by the registry-admission actions. The registry verifies
# attestations (DSSE signatures, in-toto layouts) before it asks, and passes
# the outcome as `context.attestations`; these rules decide whether that
# evidence is enough and whether the integrity data is real. The manifests of
# the old system carried placeholders (`minisign:ABC123`, an all-zero sha256,
# a 32-hex-digit "sha256", an SPDX SBOM without packages, a stale
# CHECKSUMS.txt): each is refused with its own reason id.
package aion.lib.registry_admission

import rego.v1

# The resource each action admits.
resource_types := {"model.register": "model", "artifact.register": "artifact", "bundle.activate": "bundle"}

attributes := input.resource.attributes

attestations := input.context.attestations

# The artifact digest, when it is a string at all.
digest := value if {
	value := attributes.sha256
	is_string(value)
}

common_deny contains reason if {
	input.principal.tenant != input.resource.tenant
	reason := {
		"id": "registry_admission.tenant_mismatch",
		"msg": sprintf("principal of tenant %q may not admit into tenant %q", [input.principal.tenant, input.resource.tenant]),
	}
}

common_deny contains reason if {
	expected := object.get(resource_types, input.action, null)
	input.resource.type != expected
	reason := {
		"id": "registry_admission.resource_type",
		"msg": sprintf("%s expects a resource of type %q, got %q", [input.action, expected, input.resource.type]),
	}
}

# --- the artifact digest -------------------------------------------------

evidence_deny contains reason if {
	not digest
	reason := {"id": "registry_admission.sha256_missing", "msg": "`attributes.sha256` (64 lowercase hex digits) is required"}
}

evidence_deny contains reason if {
	regex.match(`^0+$`, digest)
	reason := {"id": "registry_admission.sha256_zero", "msg": "the sha256 is all zeros: a placeholder, not a digest"}
}

# 32 hex digits is an MD5-sized value passed off as a sha256.
evidence_deny contains reason if {
	regex.match(`^[0-9a-fA-F]{32}$`, digest)
	reason := {"id": "registry_admission.sha256_truncated", "msg": "the sha256 has 32 hex digits; a sha256 has 64"}
}

evidence_deny contains reason if {
	is_string(digest)
	not regex.match(`^[0-9a-f]{64}$`, digest)
	not regex.match(`^[0-9a-fA-F]{32}$`, digest)
	reason := {"id": "registry_admission.sha256_invalid", "msg": sprintf("%q is not 64 lowercase hex digits", [digest])}
}

# --- attestations ----------------------------------------------------------

evidence_deny contains reason if {
	not is_object(object.get(input, ["context", "attestations"], null))
	reason := {"id": "registry_admission.attestation_missing", "msg": "registration needs verified attestations in `context.attestations`"}
}

evidence_deny contains reason if {
	is_object(attestations)
	object.get(attestations, "verified", false) != true
	reason := {"id": "registry_admission.attestation_unverified", "msg": "the attestations did not verify"}
}

# The evidence must be about this artifact, not about some other one.
evidence_deny contains reason if {
	is_object(attestations)
	subject := concat("", ["sha256:", digest])
	not subject in array_at(attestations, "subject_digests")
	reason := {
		"id": "registry_admission.digest_mismatch",
		"msg": sprintf("no attestation subject is %s", [subject]),
	}
}

evidence_deny contains reason if {
	is_object(attestations)
	accepted := data.aion.lib.registry_admission.accepted_predicate_types
	count({t | some t in array_at(attestations, "predicate_types")} & {t | some t in accepted}) == 0
	reason := {
		"id": "registry_admission.provenance_missing",
		"msg": sprintf("no provenance attestation; accepted predicate types: %v", [accepted]),
	}
}

evidence_deny contains reason if {
	is_object(attestations)
	not non_blank(object.get(attestations, "builder_id", null))
	reason := {"id": "registry_admission.builder_missing", "msg": "the provenance names no builder (`builder_id`)"}
}

evidence_deny contains reason if {
	is_object(attestations)
	count(array_at(attestations, "signer_key_ids")) == 0
	reason := {"id": "registry_admission.signer_missing", "msg": "the attestations name no signing key (`signer_key_ids`)"}
}

# The fields read below, when present and not null but of another type;
# absent and null ones keep the rules that read them. A list of another type
# reads as [] (in OPA `count` of a string is its length: one key id as a
# string counted as a signer); `checksums_stale: "true"` would be ignored.
evidence_deny contains reason if {
	some [path, expected] in [
		[["resource", "attributes", "checksums_stale"], "boolean"],
		[["context", "attestations", "subject_digests"], "array"],
		[["context", "attestations", "predicate_types"], "array"],
		[["context", "attestations", "signer_key_ids"], "array"],
	]
	reason := malformed(path, expected)
}

# --- manifest integrity fields ----------------------------------------------

evidence_deny contains reason if {
	placeholder_signature(attributes.signature)
	reason := {
		"id": "registry_admission.signature_placeholder",
		"msg": sprintf("signature %q is a placeholder, not a signature", [attributes.signature]),
	}
}

# A signature counts only once the registry has checked it against the
# artifact and a trusted key, and says so in `context.signature_verified`.
evidence_deny contains reason if {
	"signature" in object.keys(attributes)
	object.get(input.context, "signature_verified", false) != true
	reason := {"id": "registry_admission.signature_unverified", "msg": "the manifest signature was not verified"}
}

evidence_deny contains reason if {
	"sbom" in object.keys(attributes)
	not sbom_lists_packages
	reason := {"id": "registry_admission.sbom_empty", "msg": "the SBOM lists no packages"}
}

evidence_deny contains reason if {
	attributes.checksums_stale == true
	reason := {"id": "registry_admission.checksums_stale", "msg": "CHECKSUMS.txt is stale"}
}

evidence_deny contains reason if {
	listed := attributes.checksums_sha256
	listed != object.get(attributes, "sha256", null)
	reason := {
		"id": "registry_admission.checksums_stale",
		"msg": sprintf("CHECKSUMS.txt lists %v, the artifact is %v", [listed, object.get(attributes, "sha256", null)]),
	}
}

evidence_warn contains reason if {
	not "sbom" in object.keys(object.get(input, ["resource", "attributes"], {}))
	reason := {"id": "registry_admission.sbom_missing", "msg": "no SBOM was supplied (`attributes.sbom`)"}
}

# --- helpers -------------------------------------------------------------

# Known placeholders, and anything shaped `scheme:SHORT` (no real signature
# is under 32 characters).
placeholder_signature(signature) if signature in data.aion.lib.registry_admission.placeholder_signatures

placeholder_signature(signature) if {
	is_string(signature)
	regex.match(`^[A-Za-z0-9_-]+:[A-Za-z0-9+/=]{0,31}$`, signature)
}

sbom_lists_packages if {
	is_array(attributes.sbom.packages)
	count(attributes.sbom.packages) > 0
}

non_blank(value) if {
	is_string(value)
	trim_space(value) != ""
}

# `obj[key]` when it is an array; [] otherwise (absent, null, or another type: see malformed).
array_at(obj, key) := value if {
	is_object(obj)
	value := obj[key]
	is_array(value)
} else := []

# A deny reason when the input field at `path` is present, not null, and not
# of type `expected` (a `type_name`); undefined otherwise.
malformed(path, expected) := reason if {
	value := object.get(input, path, null)
	value != null
	type_name(value) != expected
	reason := {
		"id": "registry_admission.input_malformed",
		"msg": sprintf("`%s` must be %s", [concat(".", path), type_articles[expected]]),
	}
}

type_articles := {"array": "an array", "boolean": "a boolean"}
