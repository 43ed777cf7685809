# Fixtures shared by the registry-admission tests (a test file: not shipped
# as policy, not counted for coverage).
package aion.lib.registry_admission.testing

import rego.v1

# sha256("test"): a well-formed digest.
digest := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

security := {"id": "sam", "tenant": "acme", "roles": ["security"], "kind": "user"}

# Evidence as the registry reports it after verifying a DSSE envelope.
attestations := {
	"verified": true,
	"predicate_types": ["https://slsa.dev/provenance/v1", "https://spdx.dev/Document"],
	"builder_id": "https://ci.acme.example/builders/model-packager@v2",
	"signer_key_ids": ["acme-release-2026"],
	"subject_digests": [concat("", ["sha256:", digest])],
	"layout": {"steps": ["build", "scan"], "keys": ["acme-release-2026"]},
}

# A real-looking minisign signature (base64 of 74 bytes), verified by the registry.
signature := "minisign:RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNS"

integrity := {
	"sha256": digest,
	"signature": signature,
	"sbom": {"spdxVersion": "SPDX-2.3", "packages": [{"name": "llama.cpp", "versionInfo": "b3600"}]},
	"checksums_stale": false,
	"checksums_sha256": digest,
}

registration(action, type, id, attributes) := {
	"action": action,
	"principal": security,
	"resource": {"type": type, "id": id, "tenant": "acme", "attributes": object.union(integrity, attributes)},
	"context": {"attestations": attestations, "signature_verified": true},
}

# `inp` with its whole attribute set replaced.
with_attributes(inp, attributes) := json.patch(inp, [{"op": "replace", "path": "/resource/attributes", "value": attributes}])

# `inp` with attribute `key` set to `value`.
set_attribute(inp, key, value) := json.patch(inp, [{"op": "add", "path": concat("/", ["", "resource", "attributes", key]), "value": value}])

set_context(inp, key, value) := json.patch(inp, [{"op": "add", "path": concat("/", ["", "context", key]), "value": value}])

set_attestation(inp, key, value) := json.patch(inp, [{"op": "add", "path": concat("/", ["", "context", "attestations", key]), "value": value}])

ids(reasons) := {reason.id | some reason in reasons}
