// Package approvals holds risky calls until the right people approve or deny
// them (DESIGN §5). An approve decision opens, or joins by action digest, a
// pending Approval; reviewers approve or deny it; once approved, the first
// identical call uses the grant (a compare-and-set, so two replicas cannot
// both use it) and is decided again. Every transition is a decision-log
// record on the same hash chain as the decisions.
//
// The Store keeps approvals in SQLite (embedded default) or PostgreSQL
// (shared by replicas); the Service holds the rules; the API serves
// reviewers.
package approvals

import (
	"errors"
	"slices"
	"time"
)

// State is where an approval is in its life.
type State string

const (
	Pending  State = "pending"
	Approved State = "approved"
	Denied   State = "denied"
	Expired  State = "expired"
	Consumed State = "consumed"
)

// Verdicts a reviewer gives.
const (
	VerdictApprove = "approve"
	VerdictDeny    = "deny"
)

// Review is one reviewer's verdict.
type Review struct {
	By      string    `json:"by"`
	Verdict string    `json:"verdict"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
}

// Reason is a rule that fired on the held call, as the reviewer sees it.
type Reason struct {
	Rule    string `json:"rule"`
	Effect  string `json:"effect"`
	Message string `json:"message,omitempty"`
}

// Approval is one held call and what reviewers did about it.
type Approval struct {
	ID     string `json:"id"`
	State  State  `json:"state"`
	Digest string `json:"digest"`
	Agent  string `json:"agent"`
	User   string `json:"user"`
	// OwnerTeam is the agent's owning team: its members may not review.
	OwnerTeam       string   `json:"owner_team,omitempty"`
	DelegationChain []string `json:"delegation_chain,omitempty"`
	// Action is the call's redacted summary: kind, server, tool,
	// resource, arguments (redacted), HTTP method, host and path.
	Action         map[string]any `json:"action"`
	Reasons        []Reason       `json:"reasons,omitempty"`
	DecisionID     string         `json:"decision_id"`
	PolicyRevision string         `json:"policy_revision,omitempty"`
	Approvers      []string       `json:"approvers"`
	Min            int            `json:"min"`
	Reviews        []Review       `json:"reviews"`
	RequestedAt    time.Time      `json:"requested_at"`
	ExpiresAt      time.Time      `json:"expires_at"`
	// GrantTTL is how long the grant lasts once approved.
	GrantTTL       time.Duration `json:"grant_ttl"`
	GrantExpiresAt time.Time     `json:"grant_expires_at,omitzero"`
	UsesLeft       int           `json:"uses_left"`
	UpdatedAt      time.Time     `json:"updated_at"`
}

// Reviewer is an authenticated person acting on approvals.
type Reviewer struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups,omitempty"`
	// Aliases are other names the same person goes by (an OIDC token's
	// subject and verified email): the doors may know a user by either,
	// and nobody reviews their own call under another name.
	Aliases []string `json:"aliases,omitempty"`
}

// is says whether name names r.
func (r Reviewer) is(name string) bool {
	return name != "" && (name == r.ID || slices.Contains(r.Aliases, name))
}

// inSet says whether r is named by an approver entry: their id (or an
// alias), or "group:<g>" for one of their groups.
func (r Reviewer) inSet(approvers []string) bool {
	for _, a := range approvers {
		if r.is(a) || (len(a) > 6 && a[:6] == "group:" && slices.Contains(r.Groups, a[6:])) {
			return true
		}
	}
	return false
}

// Errors the Service and Store return; the API maps them to statuses.
var (
	ErrNotFound = errors.New("no such approval")
	// ErrRefused wraps every reason a review is not accepted.
	ErrRefused = errors.New("review refused")
	// ErrNotPending is a refusal because the approval was already
	// decided or expired (a conflict, not a permission problem).
	ErrNotPending = errors.New("not pending")
)

// Approvals counts the distinct reviewers who approved.
func (a *Approval) Approvals() int {
	n := 0
	for _, r := range a.Reviews {
		if r.Verdict == VerdictApprove {
			n++
		}
	}
	return n
}
