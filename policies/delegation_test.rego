package agentpdp.delegation_test

import data.agentpdp.delegation

ids(set) := {x.id | some x in set}

reviewer_id := "spiffe://example.org/agent/code-reviewer"

planner_id := "spiffe://example.org/agent/planner"

# data.inventory as the PDP stores it: the file plus by_id.
inventory := {
	"agents": [{"id": reviewer_id}, {"id": planner_id}],
	"by_id": {reviewer_id: {"id": reviewer_id}, planner_id: {"id": planner_id}},
}

with_constraints(c, server, tool) := {
	"agent": {"id": reviewer_id},
	"delegation": {"chain": ["alice@example.com", reviewer_id], "constraints": c},
	"action": {"kind": "mcp.tools/call", "server": server, "tool": tool},
}

with_chain(chain) := {
	"agent": {"id": reviewer_id},
	"delegation": {"chain": chain},
	"action": {"kind": "mcp.tools/call", "server": "github", "tool": "create_issue"},
}

test_tool_inside_constraints_passes if {
	count(delegation.deny) == 0 with input as with_constraints({"allowed_tools": ["github.*"]}, "github", "create_issue")
		with data.inventory as inventory
	count(delegation.deny) == 0 with input as with_constraints({"allowed_tools": ["fs.read_file"]}, "fs", "read_file")
		with data.inventory as inventory
}

test_tool_outside_constraints_denied if {
	"tool-outside-delegation" in ids(delegation.deny) with input as with_constraints({"allowed_tools": ["github.*"]}, "fs", "write_file")
		with data.inventory as inventory
}

test_constraints_are_server_qualified if {
	# "read_file" alone does not cover fs.read_file.
	"tool-outside-delegation" in ids(delegation.deny) with input as with_constraints({"allowed_tools": ["read_file"]}, "fs", "read_file")
		with data.inventory as inventory
}

test_empty_allowed_tools_denies_every_tool if {
	"tool-outside-delegation" in ids(delegation.deny) with input as with_constraints({"allowed_tools": []}, "github", "create_issue")
		with data.inventory as inventory
}

test_malformed_allowed_tools_denies if {
	"tool-outside-delegation" in ids(delegation.deny) with input as with_constraints({"allowed_tools": "github.*"}, "github", "create_issue")
		with data.inventory as inventory
}

test_other_constraints_do_not_limit_tools if {
	count(delegation.deny) == 0 with input as with_constraints({"max_amount": 100}, "fs", "write_file")
		with data.inventory as inventory
}

test_chain_ending_at_agent_passes if {
	count(delegation.deny) == 0 with input as with_chain(["alice@example.com", planner_id, reviewer_id])
		with data.inventory as inventory
}

test_chain_ending_elsewhere_denied if {
	"chain-not-ending-at-agent" in ids(delegation.deny) with input as with_chain(["alice@example.com", reviewer_id, planner_id])
		with data.inventory as inventory
	"chain-not-ending-at-agent" in ids(delegation.deny) with input as with_chain([])
		with data.inventory as inventory
}

test_no_chain_no_delegation_denial if {
	count(delegation.deny) == 0 with input as {"agent": {"id": reviewer_id}, "action": {"server": "github", "tool": "create_issue"}}
		with data.inventory as inventory
}

test_unregistered_agent_in_chain_denied if {
	denials := delegation.deny with input as with_chain(["alice@example.com", "spiffe://evil.example/agent/x", reviewer_id])
		with data.inventory as inventory
	ids(denials) == {"unregistered-agent-in-chain"}
}
