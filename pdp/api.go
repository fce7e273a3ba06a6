package pdp

import "context"

// Decider is what a door needs from the PDP. Decide never fails: an error
// anywhere becomes a deny whose reason names it.
type Decider interface {
	Decide(ctx context.Context, in *Input) Decision
}

// Refuser is the optional half of a Decider that doors use for requests
// they deny without evaluating policy (one they could not parse or
// authenticate): Refuse records that denial, so it gets a decision id and
// a decision-log line like any other. in holds what the door could map.
type Refuser interface {
	Refuse(ctx context.Context, in *Input, reason Reason) Decision
}

// Refuse records a door's own denial through d when d is a Refuser, and
// returns it; otherwise the denial only gets a fresh decision id.
func Refuse(ctx context.Context, d Decider, in *Input, reason Reason) Decision {
	reason.Effect = Deny
	if r, ok := d.(Refuser); ok {
		if dec := r.Refuse(ctx, in, reason); dec.ID != "" {
			return dec
		}
	}
	return Decision{ID: NewDecisionID(), Effect: Deny, Reasons: []Reason{reason}}
}
