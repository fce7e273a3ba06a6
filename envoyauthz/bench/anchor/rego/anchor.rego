# bench/extauthz/policy/anchor.rego in agentpdp's form. The door has already
# verified the JWT (signature, iss, aud, exp), refused a token issued to
# another agent than the mTLS peer, and mapped sub to input.user.id and
# act.sub to the last hop of input.delegation.chain; the PDP itself denies
# an agent missing from the inventory (builtin#unknown-agent) and merges its
# entry into input.agent. What is left for the rules:
package agentpdp.anchor

# The anchor keeps these in data.json; agentpdp's inventory has user groups,
# and the anchor's token carries no groups claim.
users := {
	"spiffe://example.org/agent/code-reviewer": {"alice@example.com", "bob@example.com"},
	"spiffe://example.org/agent/planner": {"carol@example.com"},
	"spiffe://example.org/agent/payments": {"dave@example.com"},
}

destructive_tools := {"delete_branch", "drop_table", "transfer"}

# The anchor reads the agent from the mTLS principal only.
deny contains {"id": "agent-not-mtls", "message": "the agent is not the mTLS peer"} if {
	not input.agent.authn == "mtls"
}

# RFC 8693: the token's current actor is this agent, and its subject is one
# of the users this agent may act for.
deny contains {"id": "not-acting-for-user", "message": "the token does not delegate to this agent for a user it may act for"} if {
	not acting_for_user
}

acting_for_user if {
	n := count(input.delegation.chain)
	n >= 2
	input.delegation.chain[n - 1] == input.agent.id
	input.user.id in users[input.agent.id]
}

deny contains {"id": "destructive-in-prod", "message": "destructive tool and the agent runs in prod"} if {
	input.action.kind == "mcp.tools/call"
	input.agent.environment == "prod"
	input.action.tool in destructive_tools
}

allow contains {"id": "allowed-tool", "message": "the tool is in the agent's allowed_actions"} if {
	input.action.kind == "mcp.tools/call"
	concat(".", [input.action.server, input.action.tool]) in input.agent.allowed_actions
}

allow contains {"id": "api-read", "message": "read-only API"} if {
	input.action.http.method == "GET"
	startswith(concat("", [input.action.http.path, "/"]), "/api/read/")
}
