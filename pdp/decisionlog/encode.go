package decisionlog

import (
	"strconv"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// appendRecord writes rec as canonical JSON without "hash", by hand rather
// than through encoding/json: this is on every decision's path. Strings go
// through jcs so they are escaped exactly as the canonical form requires.
// hashAt is where `,"hash":…` belongs: after "event" (or "effect"), before
// "input".
func appendRecord(b []byte, r *Record) (out []byte, hashAt int, err error) {
	out, err = jcs.AppendObject(b, func(w *jcs.Object) {
		w.Str("agent", r.Agent)
		w.Str("approval_id", r.ApprovalID)
		w.StrAlways("decision_id", r.DecisionID)
		w.Strings("delegation_chain", r.DelegationChain)
		w.StrAlways("effect", r.Effect)
		w.Str("event", r.Event)
		hashAt = len(w.B)
		w.Raw("input", r.Input)
		w.Str("input_hash", r.InputHash)
		w.Value("labels", r.Labels, len(r.Labels) > 0)
		w.Int("latency_ns", r.LatencyNS, true)
		w.Str("path", r.Path)
		w.Str("policy_revision", r.PolicyRevision)
		w.StrAlways("prev_hash", r.PrevHash)
		w.Strings("reasons", r.Reasons)
		w.Raw("result", r.Result)
		w.Key("seq")
		if r.Seq <= 1<<53 {
			w.B = strconv.AppendUint(w.B, r.Seq, 10)
		} else {
			w.B = jcs.AppendInt(w.B, int64(r.Seq)) // unreachable in practice
		}
		w.Bool("shadow", r.Shadow)
		w.StrAlways("timestamp", r.Timestamp)
		w.Str("user", r.User)
	})
	return out, hashAt, err
}
