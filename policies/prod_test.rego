package agentpdp.prod_test

import data.agentpdp.prod

ids(set) := {x.id | some x in set}

# input.agent as the PDP merges it from the inventory.
reviewer := {
	"id": "spiffe://example.org/agent/code-reviewer",
	"registered": true,
	"environment": "prod",
	"owner_team": "platform",
	"allowed_actions": ["github.*", "fs.read_file"],
	"requires_approval": ["github.merge_pull_request"],
}

planner := {
	"id": "spiffe://example.org/agent/planner",
	"registered": true,
	"environment": "dev",
	"owner_team": "research",
	"allowed_actions": ["github.*", "fs.*"],
}

call(agent, server, tool) := {"agent": agent, "action": {"kind": "mcp.tools/call", "server": server, "tool": tool}}

test_allowed_action_allows if {
	"allowed-action" in ids(prod.allow) with input as call(reviewer, "github", "create_issue")
	"allowed-action" in ids(prod.allow) with input as call(reviewer, "fs", "read_file")
}

test_action_outside_allowed_actions_does_not_allow if {
	count(prod.allow) == 0 with input as call(reviewer, "fs", "write_file")
	count(prod.allow) == 0 with input as call(reviewer, "payments", "transfer")
}

test_not_allowed_tool_denied_by_name if {
	some d in prod.deny with input as call(reviewer, "fs", "write_file")
	d.id == "not-allowed"
	d.message == "fs.write_file is not in the agent's allowed_actions"
}

test_not_allowed_request_without_tool_denied if {
	some d in prod.deny with input as {"agent": reviewer, "action": {"kind": "mcp.prompts/get", "server": "github"}}
	d.id == "not-allowed"
	d.message == "no rule allows this kind of request for this agent"
}

test_allowed_call_not_denied if {
	count(prod.deny) == 0 with input as call(reviewer, "github", "delete_branch")
	count(prod.deny) == 0 with input as {"agent": reviewer, "action": {"kind": "mcp.tools/list"}}
}

test_no_allowed_actions_allows_nothing if {
	count(prod.allow) == 0 with input as call({"id": "x", "environment": "prod"}, "github", "create_issue")
}

test_discovery_allowed_for_registered_agents if {
	"discovery" in ids(prod.allow) with input as {"agent": reviewer, "action": {"kind": "mcp.tools/list", "server": "github"}}
	count(prod.allow) == 0 with input as {"agent": {"id": "x"}, "action": {"kind": "mcp.tools/list", "server": "github"}}
	count(prod.allow) == 0 with input as {"agent": reviewer, "action": {"kind": "mcp.resources/read", "server": "fs"}}
}

test_destructive_in_prod_needs_one_sre if {
	some a in prod.approve with input as call(reviewer, "github", "delete_branch")
	a.id == "destructive-in-prod"
	a.approvers == ["group:sre"]
	a.min == 1
}

test_every_destructive_kind_in_prod if {
	every tool in ["delete_repo", "drop_table", "force_push", "transfer_repository", "destroy_env", "purge_cache", "truncate_table"] {
		"destructive-in-prod" in ids(prod.approve) with input as call(reviewer, "github", tool)
	}
}

test_destructive_in_dev_needs_no_approval if {
	count(prod.approve) == 0 with input as call(planner, "github", "delete_branch")
}

test_ordinary_tool_in_prod_needs_no_approval if {
	count(prod.approve) == 0 with input as call(reviewer, "github", "create_issue")
	count(prod.approve) == 0 with input as call(reviewer, "github", "list_deleted_items")
}

test_payments_transfer_is_not_destructive if {
	not "destructive-in-prod" in ids(prod.approve) with input as call(reviewer, "payments", "transfer")
}

test_inventory_requires_approval_waits_for_security if {
	some a in prod.approve with input as call(reviewer, "github", "merge_pull_request")
	a.id == "inventory-requires-approval"
	a.approvers == ["group:security"]
}

test_requires_approval_never_names_the_owner_team if {
	some a in prod.approve with input as call(reviewer, "github", "merge_pull_request")
	a.id == "inventory-requires-approval"
	not concat(":", ["group", reviewer.owner_team]) in a.approvers
}

test_patterns_are_globs_over_server_tool if {
	agent := object.union(reviewer, {"allowed_actions": ["fs.read_file", "*.get_*"]})
	"allowed-action" in ids(prod.allow) with input as call(agent, "fs", "read_file")
	"allowed-action" in ids(prod.allow) with input as call(agent, "jira", "get_ticket")
	count(prod.allow) == 0 with input as call(agent, "fs", "read_file_raw")
	count(prod.allow) == 0 with input as call(agent, "jira", "set_ticket")
	"allowed-action" in ids(prod.allow) with input as call(object.union(reviewer, {"allowed_actions": ["*"]}), "any", "thing")
}

test_malformed_patterns_allow_nothing if {
	agent := object.union(reviewer, {"allowed_actions": [42, "[", {"a": 1}]})
	count(prod.allow) == 0 with input as call(agent, "github", "create_issue")
	"not-allowed" in ids(prod.deny) with input as call(agent, "github", "create_issue")
}

test_tool_without_server_is_not_allowed if {
	count(prod.allow) == 0 with input as {"agent": reviewer, "action": {"kind": "mcp.tools/call", "tool": "create_issue"}}
}
