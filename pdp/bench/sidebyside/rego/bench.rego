# shared/bench/pdp/testdata/policy.rego, rule for rule, reading agentpdp's
# inventory (data.inventory.by_id, allowed_actions).
package agentpdp.bench

registered := data.inventory.by_id[input.agent.id]

tool_name := concat(".", [input.action.server, input.action.tool])

destructive_tools := {"delete_branch", "drop_table", "transfer"}

tool_in(list) if {
	some t in list
	t == tool_name
}

tool_in(list) if {
	some t in list
	endswith(t, ".*")
	startswith(tool_name, trim_suffix(t, "*"))
}

user_group_ok if {
	some g in input.user.groups
	g in registered.allowed_user_groups
}

sensitive(s) if contains(s, ".env")

sensitive(s) if contains(s, "/.ssh/")

sensitive(s) if startswith(s, "/etc/")

deny contains {"id": "agent.unknown", "message": "agent is not in the inventory"} if {
	not registered
}

deny contains {"id": "agent.expired", "message": "agent registration has expired"} if {
	time.parse_rfc3339_ns(registered.expires) <= time.parse_rfc3339_ns(input.context.time)
}

deny contains {"id": "user.group", "message": "user is in none of the agent's allowed groups"} if {
	registered
	not user_group_ok
}

deny contains {"id": "delegation.tool", "message": "tool is outside the delegation's allowed_tools"} if {
	not tool_in(input.delegation.constraints.allowed_tools)
}

deny contains {"id": "rate.limit", "message": "agent call rate is above max_calls_per_minute"} if {
	input.context.rate.agent_calls_last_minute > registered.max_calls_per_minute
}

approve contains {"id": "tool.destructive", "message": "destructive tool in prod needs human approval"} if {
	input.action.tool in destructive_tools
	registered.environment == "prod"
}

approve contains {"id": "args.sensitive_path", "message": "an argument names a sensitive path"} if {
	some v in input.action.arguments
	is_string(v)
	sensitive(v)
}

allow contains {"id": "tool.inventory", "message": "tool is in the agent's allowed_tools"} if {
	tool_in(registered.allowed_actions)
}
