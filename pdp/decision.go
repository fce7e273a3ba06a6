package pdp

// Effect is what a door does with a call.
type Effect string

const (
	Allow   Effect = "allow"
	Deny    Effect = "deny"
	Approve Effect = "approve" // hold for a human
)

// Reason is one rule that fired.
type Reason struct {
	// Effect is the effect the rule asked for.
	Effect  Effect `json:"effect"`
	Message string `json:"message,omitempty"`
	// Rule identifies the rule: "<file>#<id>" (CEL), "<file>#<set>[:<id>]"
	// (Rego) or "builtin#<name>" (inventory, errors).
	Rule string `json:"rule"`
	// Shadow rules are logged but do not change the effect.
	Shadow bool `json:"shadow,omitempty"`
}

// ApprovalRequest says who must approve a held call.
type ApprovalRequest struct {
	Approvers []string `json:"approvers"`
	// GrantTTL is how long a given approval may be used (shortest rule's).
	GrantTTL string `json:"grant_ttl,omitempty"`
	// ID is the approval this call waits on or used, once a Holder has
	// seen it.
	ID     string `json:"id,omitempty"`
	Min    int    `json:"min"`
	Reason string `json:"reason,omitempty"`
	// State is the approval's state as the Holder left it: pending, or
	// consumed when this call used the grant.
	State string `json:"state,omitempty"`
	// TTL is how long the request stays pending (shortest rule's).
	TTL string `json:"ttl,omitempty"`
}

// ApprovalID is the approval the decision waits on or used, or "".
func (d *Decision) ApprovalID() string {
	if d.Approval == nil {
		return ""
	}
	return d.Approval.ID
}

// Decision is the PDP's answer for one Input.
type Decision struct {
	Approval *ApprovalRequest `json:"approval,omitempty"`
	ID       string           `json:"decision_id"`
	Effect   Effect           `json:"effect"`
	// Headers are request headers the allow rules ask to set upstream
	// (only with effect allow).
	Headers map[string]string `json:"headers,omitempty"`
	// InputHash is "sha256:<hex>" of the canonical input as evaluated
	// (before redaction for the log).
	InputHash      string   `json:"input_hash,omitempty"`
	PolicyRevision string   `json:"policy_revision"`
	Reasons        []Reason `json:"reasons"`
	// Shadow is true when the shadow rules would have changed the effect;
	// ShadowEffect is the effect had they been enforced.
	Shadow       bool   `json:"shadow"`
	ShadowEffect Effect `json:"shadow_effect,omitempty"`
	// Status is the HTTP status (400–599) the deny rules ask a door to
	// answer with (Envoy door); 0 leaves the door's default. Set only when
	// every enforced deny rule asks for the same one.
	Status int `json:"status,omitempty"`
}

// failClosed turns d into a deny for an internal failure (a panic, a log
// that cannot be written): what only an allow or a hold carries goes, and
// so does the deny rules' status, which described their refusal, not this.
func (d *Decision) failClosed(rule, msg string) {
	d.Effect, d.Approval, d.Headers, d.Status = Deny, nil, nil, 0
	d.Reasons = append(d.Reasons, Reason{Rule: rule, Effect: Deny, Message: msg})
}

// Statuses a deny rule may ask for.
const (
	minDenyStatus = 400
	maxDenyStatus = 599
)
