package agentpdp.users_test

import data.agentpdp.users

ids(set) := {x.id | some x in set}

reviewer := {"id": "spiffe://example.org/agent/code-reviewer", "allowed_user_groups": ["eng"]}

planner := {"id": "spiffe://example.org/agent/planner", "allowed_user_groups": ["research", "agent:self"]}

action := {"kind": "mcp.tools/call", "server": "github", "tool": "create_issue"}

test_user_in_allowed_group_passes if {
	count(users.deny) == 0 with input as {"agent": reviewer, "user": {"id": "alice@example.com", "groups": ["sales", "eng"]}, "action": action}
}

test_user_outside_allowed_groups_denied if {
	"user-not-in-allowed-groups" in ids(users.deny) with input as {"agent": reviewer, "user": {"id": "bob@example.com", "groups": ["sales"]}, "action": action}
}

test_user_without_groups_denied if {
	"user-not-in-allowed-groups" in ids(users.deny) with input as {"agent": reviewer, "user": {"id": "bob@example.com"}, "action": action}
}

test_agent_without_allowed_groups_acts_for_nobody if {
	"user-not-in-allowed-groups" in ids(users.deny) with input as {"agent": {"id": "x"}, "user": {"id": "alice@example.com", "groups": ["eng"]}, "action": action}
}

test_self_group_is_not_a_user_group if {
	"user-not-in-allowed-groups" in ids(users.deny) with input as {"agent": planner, "user": {"id": "mallory@example.com", "groups": ["agent:self"]}, "action": action}
}

test_no_user_denied_for_ordinary_agent if {
	ids(users.deny) == {"no-user"} with input as {"agent": reviewer, "action": action}
	ids(users.deny) == {"no-user"} with input as {"agent": reviewer, "user": {"groups": ["eng"]}, "action": action}
}

test_no_user_allowed_for_self_agent if {
	count(users.deny) == 0 with input as {"agent": planner, "action": action}
}
