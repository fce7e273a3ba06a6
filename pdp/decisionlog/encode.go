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
	w := recWriter{b: append(b, '{')}
	w.str("agent", r.Agent)
	w.str("approval_id", r.ApprovalID)
	w.strAlways("decision_id", r.DecisionID)
	if len(r.DelegationChain) > 0 {
		w.key("delegation_chain")
		w.b = append(w.b, '[')
		for i, s := range r.DelegationChain {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.string(s)
		}
		w.b = append(w.b, ']')
	}
	w.strAlways("effect", r.Effect)
	w.str("event", r.Event)
	hashAt = len(w.b)
	if len(r.Input) > 0 {
		w.key("input")
		w.b = append(w.b, r.Input...)
	}
	w.str("input_hash", r.InputHash)
	if len(r.Labels) > 0 {
		w.key("labels")
		if w.b, err = jcs.Append(w.b, r.Labels); err != nil {
			return w.b, 0, err
		}
	}
	w.key("latency_ns")
	w.b = jcs.AppendInt(w.b, r.LatencyNS)
	w.str("path", r.Path)
	w.str("policy_revision", r.PolicyRevision)
	w.strAlways("prev_hash", r.PrevHash)
	if len(r.Reasons) > 0 {
		w.key("reasons")
		w.b = append(w.b, '[')
		for i, s := range r.Reasons {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.string(s)
		}
		w.b = append(w.b, ']')
	}
	if len(r.Result) > 0 {
		w.key("result")
		w.b = append(w.b, r.Result...)
	}
	w.key("seq")
	if r.Seq <= 1<<53 {
		w.b = strconv.AppendUint(w.b, r.Seq, 10)
	} else {
		w.b = jcs.AppendInt(w.b, int64(r.Seq)) // unreachable in practice
	}
	if r.Shadow {
		w.key("shadow")
		w.b = append(w.b, "true"...)
	}
	w.strAlways("timestamp", r.Timestamp)
	w.str("user", r.User)
	if w.err != nil {
		return w.b, 0, w.err
	}
	return append(w.b, '}'), hashAt, nil
}

// recWriter appends the members of one object; keys are plain ASCII
// literals given in sorted order, so they need no escaping.
type recWriter struct {
	b   []byte
	n   int
	err error
}

func (w *recWriter) key(k string) {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *recWriter) string(s string) {
	var err error
	w.b, err = jcs.AppendString(w.b, s)
	if err != nil && w.err == nil {
		w.err = err
	}
}

// str writes an omitempty string member.
func (w *recWriter) str(k, v string) {
	if v != "" {
		w.strAlways(k, v)
	}
}

func (w *recWriter) strAlways(k, v string) {
	w.key(k)
	w.string(v)
}
