# Agents act for people: an agent may act only for users in one of its
# inventory allowed_user_groups.
#
# A call with no user is the agent acting on its own authority. That is
# allowed only for an agent whose inventory lists the pseudo-group
# "agent:self" (say, a nightly job); every other agent must say whom it acts
# for. "agent:self" never matches a real user's group of the same name.
package agentpdp.users

deny contains {"id": "user-not-in-allowed-groups", "message": msg} if {
	input.user.id
	count({g | some g in input.user.groups; g != "agent:self"; g in input.agent.allowed_user_groups}) == 0
	msg := sprintf("%s is in no group this agent may act for", [input.user.id])
}

deny contains {"id": "no-user", "message": "the call names no user and this agent may not act on its own"} if {
	not input.user.id
	not "agent:self" in input.agent.allowed_user_groups
}
