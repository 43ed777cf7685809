# artifact.register: any other supply-chain artifact (agent images, tool
# packages, datasets). The same evidence as for models is required.
package aion.artifact.register

import rego.v1

import data.aion.lib.registry_admission as lib

deny contains reason if some reason in lib.common_deny

deny contains reason if some reason in lib.evidence_deny

warn contains reason if some reason in lib.evidence_warn
