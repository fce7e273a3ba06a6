package pdp

import (
	"time"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// The decision log needs the input and the decision as RFC 8785 canonical
// JSON on every decision. encoding/json plus a canonical check costs several
// microseconds of reflection; these appenders write the same bytes directly
// (TestEncodersMatchEncodingJSON holds them to it). Fields are written in
// key order and omitted when their json tags omit them; an object left empty
// is omitted too, where encoding/json's omitzero would keep an empty but
// non-nil map's parent. The bytes are canonical either way.

// obj writes one JSON object's members, handling the commas.
type obj struct {
	b     []byte
	first bool
	err   error
}

func (o *obj) key(k string) {
	if o.first {
		o.first = false
	} else {
		o.b = append(o.b, ',')
	}
	o.b = append(o.b, '"')
	o.b = append(o.b, k...) // keys here are fixed ASCII names
	o.b = append(o.b, '"', ':')
}

func (o *obj) str(k, v string) {
	if v == "" || o.err != nil {
		return
	}
	o.key(k)
	o.b, o.err = jcs.AppendString(o.b, v)
}

func (o *obj) strAlways(k, v string) {
	if o.err != nil {
		return
	}
	o.key(k)
	o.b, o.err = jcs.AppendString(o.b, v)
}

func (o *obj) boolean(k string, v bool) {
	if v {
		o.key(k)
		o.b = append(o.b, "true"...)
	}
}

func (o *obj) integer(k string, v int, always bool) {
	if v != 0 || always {
		o.key(k)
		o.b = jcs.AppendInt(o.b, int64(v))
	}
}

func (o *obj) timestamp(k string, t time.Time) {
	if t.IsZero() || o.err != nil {
		return
	}
	o.key(k)
	o.b = append(o.b, '"')
	o.b = t.AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
}

func (o *obj) strings(k string, vs []string) {
	if len(vs) == 0 || o.err != nil {
		return
	}
	o.key(k)
	o.b = append(o.b, '[')
	for i, s := range vs {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		if o.b, o.err = jcs.AppendString(o.b, s); o.err != nil {
			return
		}
	}
	o.b = append(o.b, ']')
}

// value writes any JSON value (maps, decoded JSON) through jcs.
func (o *obj) value(k string, v any, present bool) {
	if !present || o.err != nil {
		return
	}
	o.key(k)
	o.b, o.err = jcs.Append(o.b, v)
}

func (o *obj) object(k string, fn func(*obj)) { o.objectOr(k, fn, false) }

// objectOr writes a member object; keepEmpty keeps it as {} when fn wrote
// nothing (fields without omitzero).
func (o *obj) objectOr(k string, fn func(*obj), keepEmpty bool) {
	if o.err != nil {
		return
	}
	n := len(o.b)
	first := o.first
	o.key(k)
	o.b = append(o.b, '{')
	inner := obj{b: o.b, first: true}
	fn(&inner)
	o.b, o.err = inner.b, inner.err
	if inner.first && !keepEmpty { // empty: omitzero drops it
		o.b, o.first = o.b[:n], first
		return
	}
	o.b = append(o.b, '}')
}

func appendObject(dst []byte, fn func(*obj)) ([]byte, error) {
	o := obj{b: append(dst, '{'), first: true}
	fn(&o)
	if o.err != nil {
		return dst, o.err
	}
	return append(o.b, '}'), nil
}

// appendInput writes in as canonical JSON.
func appendInput(dst []byte, in *Input) ([]byte, error) {
	return appendInputNeeds(dst, in, allNeeds)
}

// appendInputNeeds writes the parts of in that n names: with the Rego
// engine's needs, the bytes identify exactly what its policies can read,
// which makes them the result cache's key.
func appendInputNeeds(dst []byte, in *Input, n *inputNeeds) ([]byte, error) {
	return appendObject(dst, func(o *obj) {
		if n.want("action") {
			w := func(f string) bool { return n.wantField("action", f) }
			o.objectOr("action", func(a *obj) {
				act := &in.Action
				a.value("arguments", act.Arguments, len(act.Arguments) > 0 && w("arguments"))
				if w("digest") {
					a.str("digest", act.Digest)
				}
				if w("http") {
					a.object("http", func(h *obj) {
						x := &act.HTTP
						h.value("body", x.Body, x.Body != nil)
						h.boolean("body_truncated", x.BodyTruncated)
						h.value("headers", x.Headers, len(x.Headers) > 0)
						h.str("host", x.Host)
						h.str("method", x.Method)
						h.str("path", x.Path)
						h.value("query", x.Query, len(x.Query) > 0)
					})
				}
				if w("kind") {
					a.strAlways("kind", act.Kind)
				}
				for _, f := range [...]struct{ k, v string }{{"resource", act.Resource}, {"server", act.Server}, {"tool", act.Tool}} {
					if w(f.k) {
						a.str(f.k, f.v)
					}
				}
			}, true)
		}
		if n.want("agent") {
			w := func(f string) bool { return n.wantField("agent", f) }
			o.object("agent", func(g *obj) {
				ag := &in.Agent
				if w("allowed_actions") {
					g.strings("allowed_actions", ag.AllowedActions)
				}
				if w("allowed_user_groups") {
					g.strings("allowed_user_groups", ag.AllowedUserGroups)
				}
				if w("authn") {
					g.str("authn", ag.Authn)
				}
				g.value("claims", ag.Claims, len(ag.Claims) > 0 && w("claims"))
				if w("environment") {
					g.str("environment", ag.Environment)
				}
				if w("expires") {
					g.timestamp("expires", ag.Expires)
				}
				if w("id") {
					g.str("id", ag.ID)
				}
				if w("max_calls_per_minute") {
					g.integer("max_calls_per_minute", ag.MaxCallsPerMinute, false)
				}
				if w("owner_team") {
					g.str("owner_team", ag.OwnerTeam)
				}
				if w("registered") {
					g.boolean("registered", ag.Registered)
				}
				if w("requires_approval") {
					g.strings("requires_approval", ag.RequiresApproval)
				}
				if w("trust_level") {
					g.str("trust_level", ag.TrustLevel)
				}
				if w("type") {
					g.str("type", ag.Type)
				}
			})
		}
		if n.want("context") {
			w := func(f string) bool { return n.wantField("context", f) }
			o.objectOr("context", func(c *obj) {
				cx := &in.Context
				if w("door") {
					c.str("door", cx.Door)
				}
				c.value("extensions", cx.Extensions, len(cx.Extensions) > 0 && w("extensions"))
				if w("rate") {
					c.object("rate", func(r *obj) { r.integer("agent_calls_last_minute", cx.Rate.AgentCallsLastMinute, false) })
				}
				if w("request_id") {
					c.str("request_id", cx.RequestID)
				}
				if w("session_id") {
					c.str("session_id", cx.SessionID)
				}
				if w("source") {
					c.object("source", func(s *obj) {
						s.str("address", cx.Source.Address)
						s.str("principal", cx.Source.Principal)
					})
				}
				if w("time") {
					c.timestamp("time", cx.Time)
				}
				if w("tool_definition") {
					c.object("tool_definition", func(t *obj) {
						t.boolean("changed", cx.ToolDefinition.Changed)
						t.str("hash", cx.ToolDefinition.Hash)
						t.str("pinned_hash", cx.ToolDefinition.PinnedHash)
					})
				}
			}, true)
		}
		if n.want("delegation") {
			w := func(f string) bool { return n.wantField("delegation", f) }
			o.object("delegation", func(d *obj) {
				if w("chain") {
					d.strings("chain", in.Delegation.Chain)
				}
				d.value("constraints", in.Delegation.Constraints, len(in.Delegation.Constraints) > 0 && w("constraints"))
				if w("purpose") {
					d.str("purpose", in.Delegation.Purpose)
				}
			})
		}
		if n.want("user") {
			w := func(f string) bool { return n.wantField("user", f) }
			o.object("user", func(u *obj) {
				u.value("claims", in.User.Claims, len(in.User.Claims) > 0 && w("claims"))
				if w("groups") {
					u.strings("groups", in.User.Groups)
				}
				if w("id") {
					u.str("id", in.User.ID)
				}
			})
		}
	})
}

// appendDecision writes d as canonical JSON.
func appendDecision(dst []byte, d *Decision) ([]byte, error) {
	return appendObject(dst, func(o *obj) {
		if d.Approval != nil {
			o.key("approval")
			o.b = append(o.b, '{')
			a := obj{b: o.b, first: true}
			a.key("approvers")
			if d.Approval.Approvers == nil {
				a.b = append(a.b, "null"...)
			} else {
				a.b = append(a.b, '[')
				for i, s := range d.Approval.Approvers {
					if i > 0 {
						a.b = append(a.b, ',')
					}
					if a.b, a.err = jcs.AppendString(a.b, s); a.err != nil {
						break
					}
				}
				a.b = append(a.b, ']')
			}
			a.integer("min", d.Approval.Min, true)
			a.str("reason", d.Approval.Reason)
			a.str("ttl", d.Approval.TTL)
			o.b, o.err = append(a.b, '}'), a.err
		}
		o.strAlways("decision_id", d.ID)
		o.strAlways("effect", string(d.Effect))
		o.str("input_hash", d.InputHash)
		o.strAlways("policy_revision", d.PolicyRevision)
		o.key("reasons")
		if d.Reasons == nil {
			o.b = append(o.b, "null"...)
		} else {
			o.b = append(o.b, '[')
			for i := range d.Reasons {
				if i > 0 {
					o.b = append(o.b, ',')
				}
				r := &d.Reasons[i]
				if o.b, o.err = appendObject(o.b, func(x *obj) {
					x.strAlways("effect", string(r.Effect))
					x.str("message", r.Message)
					x.strAlways("rule", r.Rule)
					x.boolean("shadow", r.Shadow)
				}); o.err != nil {
					return
				}
			}
			o.b = append(o.b, ']')
		}
		o.key("shadow")
		if d.Shadow {
			o.b = append(o.b, "true"...)
		} else {
			o.b = append(o.b, "false"...)
		}
		o.str("shadow_effect", string(d.ShadowEffect))
	})
}
