package aion.tool.bind_test

import data.aion.tool.bind
import rego.v1

test_ops_with_autoconfirm_denied if {
	count(bind.deny) == 1 with input as {"resource": {"id": "ops.shell"}, "context": {"config": {"auto_confirm": true}}}
}

test_ops_with_confirmation_allowed if {
	count(bind.deny) == 0 with input as {"resource": {"id": "ops.shell"}, "context": {"config": {"auto_confirm": false}}}
}

test_other_tools_untouched if {
	count(bind.deny) == 0 with input as {"resource": {"id": "web_search"}, "context": {"config": {"auto_confirm": true}}}
}
