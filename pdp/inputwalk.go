package pdp

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// The input reaches policy twice on every decision: as canonical JSON
// (hashed and logged, and the Rego result cache's key) and as Rego's AST.
// walkInput is the one description of which fields exist and when they are
// absent; jsonFields and regoFields only write what it hands them, so the
// log binds exactly what Rego evaluated (TestRegoInputIsLoggedInput).
// Fields go in key order (RFC 8785 needs it, the AST does not mind). Absent
// things are absent: empty strings, zero numbers, false, empty lists and
// maps are left out, as the Input's json tags say; action and context are
// always there (their tags have no omitempty). CEL reads the typed Input
// itself (cel.go).

// fieldWriter is what walkInput writes to.
type fieldWriter interface {
	// open starts a nested object member; close ends it, dropping it when
	// it has no members unless keepEmpty.
	open(k string)
	close(keepEmpty bool)
	str(k, v string, always bool)
	boolean(k string, v bool)
	integer(k string, v int)
	time(k string, t time.Time)
	// list writes a string array; pre is the inventory's prebuilt Rego
	// term for it, or nil.
	list(k string, vs []string, pre *ast.Term)
	// value writes a decoded JSON value (arguments, claims, a body).
	value(k string, v any)
	// strMap writes the members of m that keep accepts (nil: all).
	strMap(k string, m map[string]string, keep func(string) bool)
	strsMap(k string, m map[string][]string)
}

// walkInput writes the parts of in that n names.
func walkInput(f fieldWriter, in *Input, n *inputNeeds) {
	if n.want("action") {
		w, a := n.fieldsOf("action"), &in.Action
		f.open("action")
		if len(a.Arguments) > 0 && w("arguments") {
			f.value("arguments", a.Arguments)
		}
		if w("digest") {
			f.str("digest", a.Digest, false)
		}
		if w("http") {
			h, hw := &a.HTTP, n.httpField
			f.open("http")
			if h.Body != nil && hw("body") {
				f.value("body", h.Body)
			}
			if hw("body_truncated") {
				f.boolean("body_truncated", h.BodyTruncated)
			}
			if len(h.Headers) > 0 && hw("headers") {
				f.strMap("headers", h.Headers, n.header)
			}
			for _, x := range [...]struct{ k, v string }{{"host", h.Host}, {"method", h.Method}, {"path", h.Path}} {
				if hw(x.k) {
					f.str(x.k, x.v, false)
				}
			}
			if len(h.Query) > 0 && hw("query") {
				f.strsMap("query", h.Query)
			}
			if hw("raw_path") {
				f.str("raw_path", h.RawPath, false)
			}
			f.close(false)
		}
		if w("kind") {
			f.str("kind", a.Kind, true)
		}
		for _, x := range [...]struct{ k, v string }{{"resource", a.Resource}, {"server", a.Server}, {"tool", a.Tool}} {
			if w(x.k) {
				f.str(x.k, x.v, false)
			}
		}
		f.close(true)
	}
	if n.want("agent") {
		w, a := n.fieldsOf("agent"), &in.Agent
		var inv InventoryAgent
		if a.inv != nil {
			inv = *a.inv
		}
		f.open("agent")
		if w("allowed_actions") {
			f.list("allowed_actions", a.AllowedActions, prebuilt(a.AllowedActions, inv.AllowedActions, inv.terms.allowedActions))
		}
		if w("allowed_user_groups") {
			f.list("allowed_user_groups", a.AllowedUserGroups, prebuilt(a.AllowedUserGroups, inv.AllowedUserGroups, inv.terms.allowedUserGroups))
		}
		if w("authn") {
			f.str("authn", a.Authn, false)
		}
		if len(a.Claims) > 0 && w("claims") {
			f.value("claims", a.Claims)
		}
		if w("environment") {
			f.str("environment", a.Environment, false)
		}
		if w("expires") {
			f.time("expires", a.Expires)
		}
		if w("id") {
			f.str("id", a.ID, false)
		}
		if w("max_calls_per_minute") {
			f.integer("max_calls_per_minute", a.MaxCallsPerMinute)
		}
		if w("owner_team") {
			f.str("owner_team", a.OwnerTeam, false)
		}
		if w("registered") {
			f.boolean("registered", a.Registered)
		}
		if w("requires_approval") {
			f.list("requires_approval", a.RequiresApproval, prebuilt(a.RequiresApproval, inv.RequiresApproval, inv.terms.requiresApproval))
		}
		if w("trust_level") {
			f.str("trust_level", a.TrustLevel, false)
		}
		if w("type") {
			f.str("type", a.Type, false)
		}
		f.close(false)
	}
	if n.want("context") {
		w, c := n.fieldsOf("context"), &in.Context
		f.open("context")
		if w("door") {
			f.str("door", c.Door, false)
		}
		if len(c.Extensions) > 0 && w("extensions") {
			f.strMap("extensions", c.Extensions, nil)
		}
		if w("rate") {
			f.open("rate")
			f.integer("agent_calls_last_minute", c.Rate.AgentCallsLastMinute)
			f.close(false)
		}
		if w("request_id") {
			f.str("request_id", c.RequestID, false)
		}
		if w("session_id") {
			f.str("session_id", c.SessionID, false)
		}
		if w("source") {
			f.open("source")
			f.str("address", c.Source.Address, false)
			f.str("principal", c.Source.Principal, false)
			f.close(false)
		}
		if w("time") {
			f.time("time", c.Time)
		}
		if w("tool_definition") {
			f.open("tool_definition")
			f.boolean("changed", c.ToolDefinition.Changed)
			f.str("hash", c.ToolDefinition.Hash, false)
			f.str("pinned_hash", c.ToolDefinition.PinnedHash, false)
			f.close(false)
		}
		f.close(true)
	}
	if n.want("delegation") {
		w, d := n.fieldsOf("delegation"), &in.Delegation
		f.open("delegation")
		if w("chain") {
			f.list("chain", d.Chain, nil)
		}
		if len(d.Constraints) > 0 && w("constraints") {
			f.value("constraints", d.Constraints)
		}
		if w("purpose") {
			f.str("purpose", d.Purpose, false)
		}
		f.close(false)
	}
	if n.want("user") {
		w, u := n.fieldsOf("user"), &in.User
		f.open("user")
		if len(u.Claims) > 0 && w("claims") {
			f.value("claims", u.Claims)
		}
		if w("groups") {
			f.list("groups", u.Groups, nil)
		}
		if w("id") {
			f.str("id", u.ID, false)
		}
		f.close(false)
	}
}

// appendInput writes in as canonical JSON.
func appendInput(dst []byte, in *Input) ([]byte, error) {
	return appendInputNeeds(dst, in, allNeeds)
}

// appendInputNeeds writes the parts of in that n names as canonical JSON:
// with the Rego engine's needs, the bytes identify exactly what its
// policies can read, which makes them the result cache's key.
func appendInputNeeds(dst []byte, in *Input, n *inputNeeds) ([]byte, error) {
	// Pooled: walked through an interface, the writer would escape to the
	// heap on every decision.
	f := jsonWriters.Get().(*jsonFields)
	out, err := jcs.AppendObject(dst, func(o *jcs.Object) {
		f.o = o
		walkInput(f, in, n)
	})
	*f = jsonFields{}
	jsonWriters.Put(f)
	return out, err
}

var jsonWriters = sync.Pool{New: func() any { return new(jsonFields) }}

// regoInput builds the parts of in that n names as a Rego value, straight
// from the typed Input (no JSON round trip). A value Rego cannot hold is
// an error: it must not look absent to a policy.
func regoInput(in *Input, n *inputNeeds) (ast.Value, error) {
	f := regoFields{stack: [maxInputDepth + 1]ast.Object{ast.NewObjectWithCapacity(5)}}
	walkInput(&f, in, n)
	return f.stack[0], f.err
}

// maxInputDepth is the deepest object walkInput opens (action.http).
const maxInputDepth = 3

// jsonFields writes canonical JSON, the bytes encoding/json would write
// for the Input, in one pass (TestEncodersMatchEncodingJSON).
type jsonFields struct {
	o     *jcs.Object
	marks [maxInputDepth]jcs.Mark
	depth int
}

func (f *jsonFields) open(k string) {
	f.marks[f.depth] = f.o.Open(k)
	f.depth++
}

func (f *jsonFields) close(keepEmpty bool) {
	f.depth--
	f.o.Close(f.marks[f.depth], keepEmpty)
}

func (f *jsonFields) str(k, v string, always bool) {
	if always {
		f.o.StrAlways(k, v)
	} else {
		f.o.Str(k, v)
	}
}

func (f *jsonFields) boolean(k string, v bool) { f.o.Bool(k, v) }
func (f *jsonFields) integer(k string, v int)  { f.o.Int(k, int64(v), false) }
func (f *jsonFields) time(k string, t time.Time) {
	if !t.IsZero() {
		f.o.Time(k, t.UTC())
	}
}
func (f *jsonFields) list(k string, vs []string, _ *ast.Term) { f.o.Strings(k, vs) }
func (f *jsonFields) value(k string, v any)                   { f.o.Value(k, v, true) }
func (f *jsonFields) strsMap(k string, m map[string][]string) { f.o.Value(k, m, len(m) > 0) }

func (f *jsonFields) strMap(k string, m map[string]string, keep func(string) bool) {
	if keep == nil {
		f.o.Value(k, m, len(m) > 0)
		return
	}
	names := make([]string, 0, len(m))
	for name := range m {
		if keep(name) {
			names = append(names, name)
		}
	}
	// Map keys may need escaping and sort in UTF-16 order (RFC 8785).
	slices.SortFunc(names, jcs.Compare)
	f.open(k)
	for _, name := range names {
		f.o.Pair(name, m[name])
	}
	f.close(false)
}

// regoFields builds Rego's AST.
type regoFields struct {
	stack [maxInputDepth + 1]ast.Object
	keys  [maxInputDepth + 1]string
	depth int
	err   error
}

func (f *regoFields) put(k string, t *ast.Term) { f.stack[f.depth].Insert(keyTerm(k), t) }

func (f *regoFields) open(k string) {
	f.depth++
	f.keys[f.depth] = k
	f.stack[f.depth] = ast.NewObjectWithCapacity(4)
}

func (f *regoFields) close(keepEmpty bool) {
	o, k := f.stack[f.depth], f.keys[f.depth]
	f.stack[f.depth] = nil
	f.depth--
	if o.Len() > 0 || keepEmpty {
		f.put(k, ast.NewTerm(o))
	}
}

func (f *regoFields) str(k, v string, always bool) {
	if v != "" || always {
		f.put(k, ast.StringTerm(v))
	}
}

func (f *regoFields) boolean(k string, v bool) {
	if v {
		f.put(k, ast.InternedTerm(true))
	}
}

func (f *regoFields) integer(k string, v int) {
	if v != 0 {
		f.put(k, ast.InternedTerm(v))
	}
}

func (f *regoFields) time(k string, t time.Time) {
	if !t.IsZero() {
		f.put(k, ast.StringTerm(t.UTC().Format(time.RFC3339Nano)))
	}
}

func (f *regoFields) list(k string, vs []string, pre *ast.Term) {
	switch {
	case pre != nil:
		f.put(k, pre)
	case len(vs) > 0:
		f.put(k, stringsTerm(vs))
	}
}

func (f *regoFields) value(k string, v any) {
	av, err := ast.InterfaceToValue(v)
	if err != nil {
		if f.err == nil {
			f.err = fmt.Errorf("input %s: %w", k, err)
		}
		return
	}
	f.put(k, ast.NewTerm(av))
}

func (f *regoFields) strMap(k string, m map[string]string, keep func(string) bool) {
	o := ast.NewObjectWithCapacity(len(m))
	for name, v := range m {
		if keep == nil || keep(name) {
			o.Insert(ast.StringTerm(name), ast.StringTerm(v))
		}
	}
	if o.Len() > 0 {
		f.put(k, ast.NewTerm(o))
	}
}

func (f *regoFields) strsMap(k string, m map[string][]string) {
	o := ast.NewObjectWithCapacity(len(m))
	for name, vs := range m {
		o.Insert(ast.StringTerm(name), stringsTerm(vs))
	}
	f.put(k, ast.NewTerm(o))
}
