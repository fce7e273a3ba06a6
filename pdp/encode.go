package pdp

import (
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// The decision log needs the input and the decision as RFC 8785 canonical
// JSON on every decision. encoding/json plus a canonical check costs several
// microseconds of reflection; these appenders write the same bytes directly
// (TestEncodersMatchEncodingJSON holds them to it). Fields are written in
// key order and omitted when their json tags omit them; an object left empty
// is omitted too, where encoding/json's omitzero would keep an empty but
// non-nil map's parent. The bytes are canonical either way. The input's
// encoding is in inputwalk.go, beside the Rego AST built from the same walk.

// appendDecision writes d as canonical JSON.
func appendDecision(dst []byte, d *Decision) ([]byte, error) {
	return jcs.AppendObject(dst, func(o *jcs.Object) {
		if ap := d.Approval; ap != nil {
			o.Object("approval", func(a *jcs.Object) {
				if ap.Approvers == nil { // encoding/json's nil slice
					a.Key("approvers")
					a.B = append(a.B, "null"...)
				} else if len(ap.Approvers) == 0 {
					a.Key("approvers")
					a.B = append(a.B, "[]"...)
				} else {
					a.Strings("approvers", ap.Approvers)
				}
				a.Str("grant_ttl", ap.GrantTTL)
				a.Str("id", ap.ID)
				a.Int("min", int64(ap.Min), true)
				a.Str("reason", ap.Reason)
				a.Str("state", ap.State)
				a.Str("ttl", ap.TTL)
			}, true)
		}
		o.StrAlways("decision_id", d.ID)
		o.StrAlways("effect", string(d.Effect))
		o.Value("headers", d.Headers, len(d.Headers) > 0)
		o.Str("input_hash", d.InputHash)
		o.StrAlways("policy_revision", d.PolicyRevision)
		o.Key("reasons")
		if d.Reasons == nil {
			o.B = append(o.B, "null"...)
		} else {
			o.B = append(o.B, '[')
			for i := range d.Reasons {
				if i > 0 {
					o.B = append(o.B, ',')
				}
				r := &d.Reasons[i]
				if o.B, o.Err = jcs.AppendObject(o.B, func(x *jcs.Object) {
					x.StrAlways("effect", string(r.Effect))
					x.Str("message", r.Message)
					x.StrAlways("rule", r.Rule)
					x.Bool("shadow", r.Shadow)
				}); o.Err != nil {
					return
				}
			}
			o.B = append(o.B, ']')
		}
		o.Key("shadow")
		if d.Shadow {
			o.B = append(o.B, "true"...)
		} else {
			o.B = append(o.B, "false"...)
		}
		o.Str("shadow_effect", string(d.ShadowEffect))
		o.Int("status", int64(d.Status), false)
	})
}
