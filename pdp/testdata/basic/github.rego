package agentpdp.github

allow contains {"id": "inventory", "message": "tool is in the agent's allowed actions"} if {
	some pattern in input.agent.allowed_actions
	glob.match(pattern, ["."], sprintf("%s.%s", [input.action.server, input.action.tool]))
}

approve contains {"id": "destructive", "message": "destructive tool in prod", "approvers": ["group:sre"], "min": 1, "ttl": "1h"} if {
	startswith(input.action.tool, "delete_")
	input.agent.environment == "prod"
}

deny contains "user is not in an allowed group" if {
	input.user.id
	count({g | some g in input.user.groups; g in input.agent.allowed_user_groups}) == 0
}
