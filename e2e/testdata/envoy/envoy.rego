package agentpdp.envoy

# MCP tool calls the agent's inventory entry allows ("github.*").
allow contains {"id": "tool", "message": "the tool is in the agent's allowed actions"} if {
	input.action.kind == "mcp.tools/call"
	some pattern in input.agent.allowed_actions
	glob.match(pattern, ["."], sprintf("%s.%s", [input.action.server, input.action.tool]))
}

# Plain HTTP: registered agents may read the status API; upstream learns
# the agent's team from a header the policy sets.
allow contains {"id": "status-read", "message": "registered agents may read the status API", "headers": {"x-owner-team": input.agent.owner_team}} if {
	input.action.kind == "http"
	input.action.http.method == "GET"
	startswith(input.action.http.path, "/v1/status")
	input.agent.registered
}

# Writes to the status API are refused with 405, not the door's 403.
deny contains {"id": "status-write", "message": "the status API is read-only", "status": 405} if {
	input.action.kind == "http"
	startswith(input.action.http.path, "/v1/status")
	input.action.http.method != "GET"
}

deny contains {"id": "user-group", "message": msg} if {
	input.user.id
	count({g | some g in input.user.groups; g in input.agent.allowed_user_groups}) == 0
	msg := sprintf("%s is in no group this agent may act for", [input.user.id])
}
