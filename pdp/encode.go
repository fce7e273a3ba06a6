package pdp

import (
	"slices"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// The decision log needs the input and the decision as RFC 8785 canonical
// JSON on every decision. encoding/json plus a canonical check costs several
// microseconds of reflection; these appenders write the same bytes directly
// (TestEncodersMatchEncodingJSON holds them to it). Fields are written in
// key order and omitted when their json tags omit them; an object left empty
// is omitted too, where encoding/json's omitzero would keep an empty but
// non-nil map's parent. The bytes are canonical either way.

// appendInput writes in as canonical JSON.
func appendInput(dst []byte, in *Input) ([]byte, error) {
	return appendInputNeeds(dst, in, allNeeds)
}

// appendInputNeeds writes the parts of in that n names: with the Rego
// engine's needs, the bytes identify exactly what its policies can read,
// which makes them the result cache's key.
func appendInputNeeds(dst []byte, in *Input, n *inputNeeds) ([]byte, error) {
	return jcs.AppendObject(dst, func(o *jcs.Object) {
		if n.want("action") {
			w := n.fieldsOf("action")
			o.Object("action", func(a *jcs.Object) {
				act := &in.Action
				a.Value("arguments", act.Arguments, len(act.Arguments) > 0 && w("arguments"))
				if w("digest") {
					a.Str("digest", act.Digest)
				}
				if w("http") {
					a.Object("http", func(h *jcs.Object) {
						x, hw := &act.HTTP, n.httpField
						h.Value("body", x.Body, x.Body != nil && hw("body"))
						if hw("body_truncated") {
							h.Bool("body_truncated", x.BodyTruncated)
						}
						if len(x.Headers) > 0 && hw("headers") {
							h.Object("headers", func(hs *jcs.Object) { appendHeaders(hs, x.Headers, n) }, false)
						}
						for _, f := range [...]struct{ k, v string }{{"host", x.Host}, {"method", x.Method}, {"path", x.Path}} {
							if hw(f.k) {
								h.Str(f.k, f.v)
							}
						}
						h.Value("query", x.Query, len(x.Query) > 0 && hw("query"))
						if hw("raw_path") {
							h.Str("raw_path", x.RawPath)
						}
					}, false)
				}
				if w("kind") {
					a.StrAlways("kind", act.Kind)
				}
				for _, f := range [...]struct{ k, v string }{{"resource", act.Resource}, {"server", act.Server}, {"tool", act.Tool}} {
					if w(f.k) {
						a.Str(f.k, f.v)
					}
				}
			}, true)
		}
		if n.want("agent") {
			w := n.fieldsOf("agent")
			o.Object("agent", func(g *jcs.Object) {
				ag := &in.Agent
				if w("allowed_actions") {
					g.Strings("allowed_actions", ag.AllowedActions)
				}
				if w("allowed_user_groups") {
					g.Strings("allowed_user_groups", ag.AllowedUserGroups)
				}
				if w("authn") {
					g.Str("authn", ag.Authn)
				}
				g.Value("claims", ag.Claims, len(ag.Claims) > 0 && w("claims"))
				if w("environment") {
					g.Str("environment", ag.Environment)
				}
				if w("expires") {
					g.Time("expires", ag.Expires)
				}
				if w("id") {
					g.Str("id", ag.ID)
				}
				if w("max_calls_per_minute") {
					g.Int("max_calls_per_minute", int64(ag.MaxCallsPerMinute), false)
				}
				if w("owner_team") {
					g.Str("owner_team", ag.OwnerTeam)
				}
				if w("registered") {
					g.Bool("registered", ag.Registered)
				}
				if w("requires_approval") {
					g.Strings("requires_approval", ag.RequiresApproval)
				}
				if w("trust_level") {
					g.Str("trust_level", ag.TrustLevel)
				}
				if w("type") {
					g.Str("type", ag.Type)
				}
			}, false)
		}
		if n.want("context") {
			w := n.fieldsOf("context")
			o.Object("context", func(c *jcs.Object) {
				cx := &in.Context
				if w("door") {
					c.Str("door", cx.Door)
				}
				c.Value("extensions", cx.Extensions, len(cx.Extensions) > 0 && w("extensions"))
				if w("rate") {
					c.Object("rate", func(r *jcs.Object) { r.Int("agent_calls_last_minute", int64(cx.Rate.AgentCallsLastMinute), false) }, false)
				}
				if w("request_id") {
					c.Str("request_id", cx.RequestID)
				}
				if w("session_id") {
					c.Str("session_id", cx.SessionID)
				}
				if w("source") {
					c.Object("source", func(s *jcs.Object) {
						s.Str("address", cx.Source.Address)
						s.Str("principal", cx.Source.Principal)
					}, false)
				}
				if w("time") {
					c.Time("time", cx.Time)
				}
				if w("tool_definition") {
					c.Object("tool_definition", func(t *jcs.Object) {
						t.Bool("changed", cx.ToolDefinition.Changed)
						t.Str("hash", cx.ToolDefinition.Hash)
						t.Str("pinned_hash", cx.ToolDefinition.PinnedHash)
					}, false)
				}
			}, true)
		}
		if n.want("delegation") {
			w := n.fieldsOf("delegation")
			o.Object("delegation", func(d *jcs.Object) {
				if w("chain") {
					d.Strings("chain", in.Delegation.Chain)
				}
				d.Value("constraints", in.Delegation.Constraints, len(in.Delegation.Constraints) > 0 && w("constraints"))
				if w("purpose") {
					d.Str("purpose", in.Delegation.Purpose)
				}
			}, false)
		}
		if n.want("user") {
			w := n.fieldsOf("user")
			o.Object("user", func(u *jcs.Object) {
				u.Value("claims", in.User.Claims, len(in.User.Claims) > 0 && w("claims"))
				if w("groups") {
					u.Strings("groups", in.User.Groups)
				}
				if w("id") {
					u.Str("id", in.User.ID)
				}
			}, false)
		}
	})
}

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
				a.Int("min", int64(ap.Min), true)
				a.Str("reason", ap.Reason)
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

// appendHeaders writes the headers n wants, names sorted as RFC 8785
// requires (header names are lower-case ASCII, so byte order is UTF-16 order).
func appendHeaders(o *jcs.Object, h map[string]string, n *inputNeeds) {
	names := make([]string, 0, len(h))
	for k := range h {
		if n.header(k) {
			names = append(names, k)
		}
	}
	slices.SortFunc(names, jcs.Compare)
	for _, k := range names {
		o.Pair(k, h[k])
	}
}
