// Package pdp is the policy decision point: it turns an Input into a Decision
// by evaluating Rego and CEL policies, and records every decision.
//
// Struct fields are declared in the order of their JSON names so that
// encoding/json writes keys sorted, which is what RFC 8785 canonical form and
// the hash-chained decision log need, without a second pass.
package pdp

import "time"

// Input is the document every door builds: `input` in Rego, and the
// variables agent, user, delegation, action and context in CEL.
// Absent things are absent: zero values are omitted from JSON and Rego, and
// CEL's has() is false for them.
type Input struct {
	Action     Action     `json:"action"`
	Agent      Agent      `json:"agent,omitzero"`
	Context    Context    `json:"context"`
	Delegation Delegation `json:"delegation,omitzero"`
	User       User       `json:"user,omitzero"`
}

// Agent is the caller's own identity, merged with its inventory entry.
type Agent struct {
	AllowedActions    []string       `json:"allowed_actions,omitempty"`
	AllowedUserGroups []string       `json:"allowed_user_groups,omitempty"`
	Authn             string         `json:"authn,omitempty"`
	Claims            map[string]any `json:"claims,omitempty"`
	Environment       string         `json:"environment,omitempty"`
	Expires           time.Time      `json:"expires,omitzero"`
	ID                string         `json:"id,omitempty"`
	MaxCallsPerMinute int            `json:"max_calls_per_minute,omitempty"`
	OwnerTeam         string         `json:"owner_team,omitempty"`
	// Registered is true when the agent was found in the inventory.
	Registered       bool     `json:"registered,omitempty"`
	RequiresApproval []string `json:"requires_approval,omitempty"`
	TrustLevel       string   `json:"trust_level,omitempty"`
	Type             string   `json:"type,omitempty"`

	// inv is the inventory entry merged in; its prebuilt Rego terms are
	// reused while the lists still are the inventory's own.
	inv *InventoryAgent
}

// User is the human the agent acts for.
type User struct {
	Claims map[string]any `json:"claims,omitempty"`
	Groups []string       `json:"groups,omitempty"`
	ID     string         `json:"id,omitempty"`
}

// Delegation is the chain from the user to the acting agent, outermost first.
type Delegation struct {
	Chain       []string       `json:"chain,omitempty"`
	Constraints map[string]any `json:"constraints,omitempty"`
	Purpose     string         `json:"purpose,omitempty"`
}

// Action is what the agent is trying to do.
type Action struct {
	Arguments map[string]any `json:"arguments,omitempty"`
	// Digest binds an approval to this exact call; see Digest.
	Digest string `json:"digest,omitempty"`
	HTTP   HTTP   `json:"http,omitzero"`
	// Kind is mcp.<method> (mcp.tools/call, …) or http.
	Kind     string `json:"kind"`
	Resource string `json:"resource,omitempty"`
	Server   string `json:"server,omitempty"`
	Tool     string `json:"tool,omitempty"`
}

// HTTP is the request as seen by Envoy.
type HTTP struct {
	Body          any               `json:"body,omitempty"`
	BodyTruncated bool              `json:"body_truncated,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	Host          string            `json:"host,omitempty"`
	Method        string            `json:"method,omitempty"`
	// Path is canonical: unreserved characters percent-decoded, dot
	// segments removed, slashes merged (what the upstream serves).
	Path  string              `json:"path,omitempty"`
	Query map[string][]string `json:"query,omitempty"`
	// RawPath is the path as sent, when it differs from Path.
	RawPath string `json:"raw_path,omitempty"`
}

// Context is everything about the call that is not who or what.
type Context struct {
	Door string `json:"door,omitempty"`
	// Extensions are door-specific string attributes (Envoy context_extensions).
	Extensions     map[string]string `json:"extensions,omitempty"`
	Rate           Rate              `json:"rate,omitzero"`
	RequestID      string            `json:"request_id,omitempty"`
	SessionID      string            `json:"session_id,omitempty"`
	Source         Source            `json:"source,omitzero"`
	Time           time.Time         `json:"time,omitzero"`
	ToolDefinition ToolDefinition    `json:"tool_definition,omitzero"`
}

// Source is the network peer.
type Source struct {
	Address   string `json:"address,omitempty"`
	Principal string `json:"principal,omitempty"`
}

// Rate is filled by the PDP from its per-agent sliding window.
type Rate struct {
	AgentCallsLastMinute int `json:"agent_calls_last_minute"`
}

// ToolDefinition lets policy notice a tool whose definition changed under it.
type ToolDefinition struct {
	Changed    bool   `json:"changed,omitempty"`
	Hash       string `json:"hash,omitempty"`
	PinnedHash string `json:"pinned_hash,omitempty"`
}
