package pdp

import "context"

// Decider is what a door needs from the PDP. Decide never fails: an error
// anywhere becomes a deny whose reason names it.
type Decider interface {
	Decide(ctx context.Context, in *Input) Decision
}
