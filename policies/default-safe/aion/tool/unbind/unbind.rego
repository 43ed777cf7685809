# tool.unbind: detaching a tool only removes capability, so beyond the shared
# rules (tenant, resource type, roles) nothing is asked. It stays possible for
# a disabled agent, so that the agent can be cleaned up.
package aion.tool.unbind

import rego.v1

import data.aion.lib.default_safe as lib

deny contains reason if some reason in lib.base_deny
