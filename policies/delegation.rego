# The delegation the agent acts under: the chain from the user to the acting
# agent (outermost first), and the constraints the user or an upstream agent
# attached to it.
package agentpdp.delegation

# With constraints.allowed_tools present, only tools matching one of its globs
# over "server.tool" pass ("github.*", "fs.read_file"). Malformed constraints
# (not a list of strings) match nothing, so they deny.
deny contains {"id": "tool-outside-delegation", "message": msg} if {
	allowed := input.delegation.constraints.allowed_tools
	input.action.tool
	name := concat(".", [input.action.server, input.action.tool])
	count({p | some p in allowed; glob.match(p, null, name)}) == 0
	msg := sprintf("the delegation allows only %v; %s is outside it", [allowed, name])
}

# The last hop must be the caller itself; anything else is a token minted for
# someone else. An empty chain ends nowhere, so it is denied too.
deny contains {"id": "chain-not-ending-at-agent", "message": msg} if {
	chain := input.delegation.chain
	not chain[count(chain) - 1] == input.agent.id
	msg := sprintf("delegation chain %v does not end at the acting agent", [chain])
}

# Every agent that passed the call along must be one we know
# (data.inventory.by_id is the inventory keyed by agent id). The acting agent
# is checked by the PDP itself; users are not SPIFFE ids and are skipped.
deny contains {"id": "unregistered-agent-in-chain", "message": msg} if {
	some hop in input.delegation.chain
	hop != input.agent.id
	startswith(hop, "spiffe://")
	not data.inventory.by_id[hop]
	msg := sprintf("%s in the delegation chain is not in the inventory", [hop])
}
