package agentpdp.github_test

import data.agentpdp.github

test_allow_inventory if {
	count(github.allow) == 1 with input as {"agent": {"allowed_actions": ["github.*"]}, "action": {"server": "github", "tool": "create_issue"}}
}

test_inventory_visible if {
	count(data.inventory.agents) == 2
	data.inventory.by_id["spiffe://example.org/agent/old"].environment == "dev"
}
