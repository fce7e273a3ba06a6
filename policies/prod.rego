# What an agent may do at all (its inventory allowed_actions), and what needs
# a human first in production.
#
# Patterns in allowed_actions and requires_approval are globs over
# "server.tool": "*" matches any run of characters, so "github.*" covers every
# GitHub tool and "fs.read_file" only that one. Rules here are written inline
# (no helper functions) because every rule evaluation is paid on every call.
package agentpdp.prod

# Ordinary calls pass: server.tool matches the agent's allowed_actions.
allow contains {"id": "allowed-action", "message": "the tool is in the agent's allowed_actions"} if {
	name := concat(".", [input.action.server, input.action.tool])
	some pattern in input.agent.allowed_actions
	glob.match(pattern, null, name)
}

# MCP discovery names no tool. Listing is allowed for registered agents; the
# proxy then decides each listed tool through these same rules.
allow contains {"id": "discovery", "message": "MCP discovery by a registered agent"} if {
	input.action.kind in {
		"mcp.initialize", "mcp.ping", "mcp.server/discover", "mcp.logging/setLevel", "mcp.completion/complete",
		"mcp.tools/list", "mcp.prompts/list", "mcp.resources/list", "mcp.resources/templates/list",
	}
	# The list request itself. Its items are decided one by one (they name a
	# tool, prompt or resource): a tool is shown only to an agent that may
	# call it (allowed-action above).
	not input.action.tool
	not input.action.resource
	input.agent.registered
}

# Resources are read-only context: a registered agent may list and read
# them; sensitive.yaml holds secrets and system files for review.
allow contains {"id": "resources", "message": "a registered agent may read resources"} if {
	input.action.kind in {"mcp.resources/read", "mcp.resources/subscribe", "mcp.resources/unsubscribe", "mcp.resources/list", "mcp.resources/templates/list"}
	input.action.resource
	input.agent.registered
}

deny contains {"id": "not-allowed", "message": not_allowed_message} if count(allow) == 0

default not_allowed_message := "no rule allows this kind of request for this agent"

not_allowed_message := sprintf("%s.%s is not in the agent's allowed_actions", [input.action.server, input.action.tool])

# Irreversible tools in production wait for one SRE: delete_*, drop_*,
# destroy_*, purge_*, truncate_*, transfer_* (a repository, say), force_push,
# reset_hard. payments.transfer is not among them: money movement is
# payments.yaml's business, with finance approvers.
approve contains {
	"id": "destructive-in-prod",
	"message": concat("", [input.action.tool, " is destructive and the agent runs in prod: one SRE must approve"]),
	"approvers": ["group:sre"],
	"min": 1,
	"ttl": "1h",
} if {
	input.agent.environment == "prod"
	regex.match(`^(delete|drop|destroy|purge|truncate|transfer)_|^(force_push|reset_hard)$`, input.action.tool)
}

# The inventory's requires_approval patterns wait for one security
# reviewer. Not the agent's owning team: its members may not review their
# own agent's calls (DESIGN §5), so naming them would hold calls nobody can
# approve.
approve contains {
	"id": "inventory-requires-approval",
	"message": concat("", [name, " is in the agent's requires_approval list"]),
	"approvers": ["group:security"],
	"min": 1,
} if {
	name := concat(".", [input.action.server, input.action.tool])
	some pattern in input.agent.requires_approval
	glob.match(pattern, null, name)
}
