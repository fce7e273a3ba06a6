package pdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// regoSetNames are the partial sets a package under agentpdp.* may define.
var regoSetNames = [...]string{"deny", "approve", "allow"}

// regoSet is one (package, set) pair that the prepared query reads.
type regoSet struct {
	file   string // the module that defines it, for rule ids
	effect Effect
}

type regoEngine struct {
	pq rego.PreparedEvalQuery
	// store holds data (the inventory). Each evaluation opens and aborts
	// its own read transaction, as OPA's SDK does: the in-memory store
	// holds its read lock for a transaction's life, so one shared,
	// never-ended transaction would deadlock any later writer (approvals
	// or bundles may need one). It costs ~1 µs, on cache misses only.
	store storage.Store
	opts  []rego.EvalOption
	sets  []regoSet
	needs *inputNeeds
	// cache is nil when a policy calls a non-deterministic builtin.
	cache *regoCache
}

// parseRego parses one module in OPA v1 syntax.
func parseRego(file string, src []byte) (*ast.Module, error) {
	m, err := ast.ParseModuleWithOpts(file, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err != nil {
		return nil, astErrors(file, err)
	}
	return m, nil
}

// astErrors turns OPA's located errors into SourceErrors.
func astErrors(file string, err error) error {
	aerrs, ok := err.(ast.Errors)
	if !ok {
		return SourceError{File: file, Msg: err.Error()}
	}
	out := make(SourceErrors, 0, len(aerrs))
	for _, e := range aerrs {
		se := SourceError{File: file, Msg: e.Message}
		if e.Location != nil {
			if e.Location.File != "" {
				se.File = e.Location.File
			}
			se.Line, se.Col = e.Location.Row, e.Location.Col
		}
		out = append(out, se)
	}
	return out
}

// newStore holds data.inventory (the file, plus by_id) as AST values, so
// reads convert nothing.
func newStore(inv *Inventory) (storage.Store, error) {
	data := map[string]any{}
	if inv != nil {
		b, err := json.Marshal(inv)
		if err != nil {
			return nil, err
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		// by_id lets policies look an agent up by key, which OPA indexes,
		// instead of scanning the list on every decision.
		byID := map[string]any{}
		if agents, ok := v["agents"].([]any); ok {
			for _, a := range agents {
				if m, ok := a.(map[string]any); ok {
					if id, ok := m["id"].(string); ok {
						byID[id] = m
					}
				}
			}
		}
		v["by_id"] = byID
		data["inventory"] = v
	}
	return inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true)), nil
}

// compileRego compiles the modules and prepares the one query that reads
// every deny/approve/allow set; done once per policy revision.
func compileRego(ctx context.Context, modules map[string]*ast.Module, store storage.Store) (*regoEngine, error) {
	if len(modules) == 0 {
		return nil, nil
	}
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(modules); c.Failed() {
		return nil, astErrors("", c.Errors)
	}
	// Collect the (package, set) pairs in a stable order.
	type key struct{ pkg, set string }
	found := map[key]string{}
	files := make([]string, 0, len(modules))
	for f := range modules {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		m := modules[f]
		pkg := m.Package.Path.String()
		if !strings.HasPrefix(pkg, "data.agentpdp.") {
			continue
		}
		for _, r := range m.Rules {
			name := setName(r)
			for _, s := range regoSetNames {
				if name != s {
					continue
				}
				if r.Head.RuleKind() != ast.MultiValue {
					return nil, SourceError{File: r.Location.File, Line: r.Location.Row, Col: r.Location.Col,
						Msg: fmt.Sprintf("%s must be a partial set (%s contains ... if { ... })", s, s)}
				}
				k := key{pkg, s}
				if _, ok := found[k]; !ok {
					found[k] = f
				}
			}
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	keys := make([]key, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].pkg != keys[j].pkg {
			return keys[i].pkg < keys[j].pkg
		}
		return keys[i].set < keys[j].set
	})
	e := &regoEngine{needs: computeNeeds(c)}
	if deterministic(c) {
		e.cache = newRegoCache(regoCacheSize)
	}
	terms := make([]*ast.Term, len(keys))
	for i, k := range keys {
		ref, err := ast.ParseRef(k.pkg + "." + k.set)
		if err != nil {
			return nil, err
		}
		terms[i] = ast.NewTerm(ref)
		e.sets = append(e.sets, regoSet{file: found[k], effect: Effect(k.set)})
	}
	query := ast.NewBody(ast.Equality.Expr(ast.VarTerm("result"), ast.ArrayTerm(terms...)))
	pq, err := rego.New(
		rego.ParsedQuery(query),
		rego.Compiler(c),
		rego.Store(store),
		// Results are read as AST: converting them to Go values is a
		// large share of a prepared Eval's cost.
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, err
	}
	e.pq = pq
	e.store = store
	return e, nil
}

// errTimeout is eval's error when the query ran out of time.
var errTimeout = errors.New("policy evaluation timed out")

// eval runs the prepared query for in and appends every element of every
// set to hits. The deadline (timeout from now) is set only for a real
// evaluation: a cache hit needs no timer.
func (e *regoEngine) eval(ctx context.Context, timeout time.Duration, in *Input, hits []hit) (_ []hit, err error) {
	var key []byte
	if e.cache != nil {
		bp := keyBufs.Get().(*[]byte)
		defer keyBufs.Put(bp)
		if key, err = appendInputNeeds((*bp)[:0], in, e.needs); err != nil {
			key = nil // no canonical form: evaluate, do not cache
		}
		*bp = key
		if key != nil {
			if cached, ok := e.cache.get(key); ok {
				return append(hits, cached...), nil
			}
		}
	}
	first := len(hits)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	input, err := regoInput(in, e.needs)
	if err != nil {
		return hits, err
	}
	hits, err = e.evalInput(ctx, input, in.Context.Time, hits)
	if err != nil && ctx.Err() != nil {
		return hits, errTimeout
	}
	if err == nil && key != nil {
		e.cache.put(key, append([]hit(nil), hits[first:]...))
	}
	return hits, err
}

// evalInput runs the prepared query; now is what time.now_ns returns.
func (e *regoEngine) evalInput(ctx context.Context, input ast.Value, now time.Time, hits []hit) ([]hit, error) {
	txn, err := e.store.NewTransaction(ctx)
	if err != nil {
		return hits, err
	}
	defer e.store.Abort(ctx, txn)
	rs, err := e.pq.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalTime(now),
		rego.EvalTransaction(txn),
		rego.EvalMetrics(noMetrics))
	if err != nil {
		return hits, err
	}
	if len(rs) != 1 {
		return hits, fmt.Errorf("rego query returned %d results", len(rs))
	}
	t, ok := rs[0].Bindings["result"].(*ast.Term)
	if !ok {
		return hits, fmt.Errorf("rego query returned %T", rs[0].Bindings["result"])
	}
	arr, ok := t.Value.(*ast.Array)
	if !ok || arr.Len() != len(e.sets) {
		return hits, fmt.Errorf("rego query returned %v", t)
	}
	for i, s := range e.sets {
		set, ok := arr.Elem(i).Value.(ast.Set)
		if !ok {
			return hits, fmt.Errorf("%s#%s is not a set", s.file, s.effect)
		}
		var err error
		set.Foreach(func(el *ast.Term) {
			if err != nil {
				return
			}
			var h hit
			h, err = regoHit(s, el)
			hits = append(hits, h)
		})
		if err != nil {
			return hits, err
		}
	}
	return hits, nil
}

var noMetrics = metrics.NoOp()

// setName is the set a rule adds to (deny, approve, allow, or another
// name): the first term of its head's reference.
func setName(r *ast.Rule) string {
	if len(r.Head.Reference) > 0 {
		return r.Head.Reference[0].String()
	}
	return r.Head.Name.String()
}

// regoHit reads one set element: a message string or an object with id,
// message, approvers, min, ttl, grant_ttl, shadow, headers (allow only), status (deny
// only).
func regoHit(s regoSet, el *ast.Term) (hit, error) {
	h := hit{Reason: Reason{Effect: s.effect, Rule: s.file + "#" + string(s.effect)}}
	switch v := el.Value.(type) {
	case ast.String:
		h.Message = string(v)
		return h, nil
	case ast.Object:
		var err error
		v.Foreach(func(k, val *ast.Term) {
			ks, _ := k.Value.(ast.String)
			switch string(ks) {
			case "id", "rule":
				if s, ok := val.Value.(ast.String); ok {
					h.Rule += ":" + string(s)
				}
			case "message", "msg":
				if s, ok := val.Value.(ast.String); ok {
					h.Message = string(s)
				}
			case "approvers":
				h.Approvers = stringsOf(val.Value)
			case "min":
				if n, ok := val.Value.(ast.Number); ok {
					if i, ok := n.Int(); ok {
						h.Min = i
					}
				}
			case "ttl":
				if s, ok := val.Value.(ast.String); ok {
					h.TTL = string(s)
				}
			case "grant_ttl":
				if s, ok := val.Value.(ast.String); ok {
					h.GrantTTL = string(s)
				}
			case "shadow":
				if b, ok := val.Value.(ast.Boolean); ok {
					h.Shadow = bool(b)
				}
			case "headers":
				if err == nil {
					h.Headers, err = regoHeaders(s, val.Value)
				}
			case "status":
				if err == nil {
					h.Status, err = regoStatus(s, val.Value)
				}
			}
		})
		return h, err
	}
	// Anything else still fires; its text is the message.
	h.Message = el.String()
	return h, nil
}

// regoHeaders reads an allow element's headers: an object of strings.
// Anything else fails the evaluation (and so denies): a policy that means
// to set a header must not silently allow without it.
func regoHeaders(s regoSet, v ast.Value) (map[string]string, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s#%s: headers must be an object of strings", s.file, s.effect)
	}
	if s.effect != Allow {
		return nil, fmt.Errorf("%s#%s: only allow rules may set headers", s.file, s.effect)
	}
	h := make(map[string]string, obj.Len())
	var err error
	obj.Foreach(func(k, val *ast.Term) {
		ks, ok1 := k.Value.(ast.String)
		vs, ok2 := val.Value.(ast.String)
		if err != nil {
			return
		}
		if !ok1 || !ok2 {
			err = fmt.Errorf("%s#%s: headers must be an object of strings", s.file, s.effect)
			return
		}
		if why := checkHeader(string(ks), string(vs)); why != "" {
			err = fmt.Errorf("%s#%s: %s", s.file, s.effect, why)
			return
		}
		h[string(ks)] = string(vs)
	})
	return h, err
}

// regoStatus reads a deny element's HTTP status; like headers, a status the
// policy cannot have meant fails the evaluation (a deny all the same).
func regoStatus(s regoSet, v ast.Value) (int, error) {
	if s.effect != Deny {
		return 0, fmt.Errorf("%s#%s: only deny rules may set a status", s.file, s.effect)
	}
	n, ok := v.(ast.Number)
	var st int
	if ok {
		st, ok = n.Int()
	}
	if !ok || st < minDenyStatus || st > maxDenyStatus {
		return 0, fmt.Errorf("%s#%s: status %v is not an HTTP error status (400–599)", s.file, s.effect, v)
	}
	return st, nil
}

func stringsOf(v ast.Value) []string {
	var out []string
	add := func(t *ast.Term) {
		if s, ok := t.Value.(ast.String); ok {
			out = append(out, string(s))
		}
	}
	switch c := v.(type) {
	case *ast.Array:
		c.Foreach(add)
	case ast.Set:
		c.Foreach(add)
	case ast.String:
		out = append(out, string(c))
	}
	return out
}

// inputNeeds says which parts of the input the compiled policies can read:
// building only those is most of what a Rego decision costs otherwise.
type inputNeeds struct {
	all bool
	top map[string]*fieldNeeds
	// http narrows action.http one and two levels further (which of its
	// fields, which headers): Envoy's per-request headers such as
	// x-request-id would otherwise make every input unique.
	http httpNeeds
}

type httpNeeds struct {
	all, allHeaders bool
	fields, headers map[string]bool
}

type fieldNeeds struct {
	all    bool
	fields map[string]bool
}

// computeNeeds walks every compiled module for refs into input. A ref whose
// key is not a constant, or a bare `input`, makes the whole (sub)document
// needed: pruning must never hide anything a policy could look at.
func computeNeeds(c *ast.Compiler) *inputNeeds {
	n := &inputNeeds{top: map[string]*fieldNeeds{}, http: httpNeeds{fields: map[string]bool{}, headers: map[string]bool{}}}
	for _, m := range c.Modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			switch v := t.Value.(type) {
			case ast.Ref:
				if v[0].Equal(ast.InputRootDocument) {
					n.add(v)
					return true
				}
			case ast.Var:
				if v.Equal(ast.InputRootDocument.Value) {
					n.all = true
				}
			}
			return false
		})
	}
	return n
}

func (n *inputNeeds) add(r ast.Ref) {
	if len(r) < 2 {
		n.all = true
		return
	}
	k, ok := r[1].Value.(ast.String)
	if !ok {
		n.all = true
		return
	}
	f := n.top[string(k)]
	if f == nil {
		f = &fieldNeeds{fields: map[string]bool{}}
		n.top[string(k)] = f
	}
	if len(r) < 3 {
		f.all = true
		return
	}
	k2, ok := r[2].Value.(ast.String)
	if !ok {
		f.all = true
		return
	}
	f.fields[string(k2)] = true
	if k == "action" && k2 == "http" {
		n.http.add(r[3:])
	}
}

// add records a ref's path below input.action.http.
func (h *httpNeeds) add(rest ast.Ref) {
	if len(rest) == 0 {
		h.all = true
		return
	}
	k, ok := rest[0].Value.(ast.String)
	if !ok {
		h.all = true
		return
	}
	h.fields[string(k)] = true
	if k != "headers" {
		return
	}
	if len(rest) < 2 {
		h.allHeaders = true
		return
	}
	if name, ok := rest[1].Value.(ast.String); ok {
		h.headers[string(name)] = true
	} else {
		h.allHeaders = true
	}
}

// httpField reports whether action.http's field is read.
func (n *inputNeeds) httpField(field string) bool {
	return n.all || n.http.all || n.http.fields[field]
}

// header reports whether the header of that (lower-case) name is read.
func (n *inputNeeds) header(name string) bool {
	return n.all || n.http.all || n.http.allHeaders || n.http.headers[name]
}

func (n *inputNeeds) want(top string) bool { return n.all || n.top[top] != nil }

// fieldsOf returns the test for top's fields, looking top up once.
func (n *inputNeeds) fieldsOf(top string) func(string) bool {
	if n.all {
		return wantAll
	}
	f := n.top[top]
	switch {
	case f == nil:
		return wantNone
	case f.all:
		return wantAll
	}
	return func(field string) bool { return f.fields[field] }
}

func wantAll(string) bool  { return true }
func wantNone(string) bool { return false }

// allNeeds builds the whole input (tests, explain).
var allNeeds = &inputNeeds{all: true}

// prebuilt returns the inventory's term when cur is still the inventory's
// own slice (not replaced after the merge), else nil.
func prebuilt(cur, own []string, t *ast.Term) *ast.Term {
	if t == nil || len(cur) == 0 || len(cur) != len(own) || unsafe.SliceData(cur) != unsafe.SliceData(own) {
		return nil
	}
	return t
}

func stringsTerm(vs []string) *ast.Term {
	ts := make([]*ast.Term, len(vs))
	for i, s := range vs {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

var keyTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"action", "agent", "context", "delegation", "user",
		"allowed_actions", "allowed_user_groups", "authn", "claims", "environment", "expires", "id",
		"max_calls_per_minute", "owner_team", "registered", "requires_approval", "trust_level", "type",
		"groups", "chain", "constraints", "purpose", "arguments", "digest", "http", "kind", "resource",
		"server", "tool", "body", "body_truncated", "headers", "host", "method", "path", "query", "raw_path",
		"door", "extensions", "rate", "agent_calls_last_minute", "request_id", "session_id", "source",
		"address", "principal", "time", "tool_definition", "changed", "hash", "pinned_hash"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

// keyTerm returns a shared term for a fixed object key.
func keyTerm(k string) *ast.Term {
	if t, ok := keyTerms[k]; ok {
		return t
	}
	return ast.StringTerm(k)
}
