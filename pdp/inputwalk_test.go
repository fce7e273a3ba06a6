package pdp

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// fullInput sets every field of the input, its inventory lists merged from
// an entry (so the Rego side uses the prebuilt terms).
func fullInput(t *testing.T) *Input {
	t.Helper()
	set, err := LoadFS(context.Background(), fstest.MapFS{"inventory.yaml": {Data: []byte("agents:\n  - id: " + reviewer +
		"\n    type: t\n    owner_team: o\n    environment: prod\n    trust_level: low\n    allowed_actions: [a.*]\n    allowed_user_groups: [g]\n    requires_approval: [r]\n    max_calls_per_minute: 7\n    expires: 2027-01-01T00:00:00+02:00\n")}}, "t")
	if err != nil {
		t.Fatal(err)
	}
	inv := set.Inventory
	in := &Input{
		Agent:      Agent{ID: reviewer, Authn: "mtls", Claims: map[string]any{"z": 1.5, "a": []any{"\u2028", nil, true, 3.0}}},
		User:       User{ID: "alice", Groups: []string{"eng", "é"}, Claims: map[string]any{"\U0001F600": "x", "b": map[string]any{}}},
		Delegation: Delegation{Chain: []string{"alice", reviewer}, Constraints: map[string]any{"max_amount": 100.0}, Purpose: "review"},
		Action: Action{Kind: "mcp.tools/call", Tool: "t", Server: "gh", Resource: "file:///a", Digest: "sha256:x",
			Arguments: map[string]any{"n": 1e21, "s": "x", "l": []any{1.0, "y"}},
			HTTP: HTTP{Method: "POST", Host: "h", Path: "/p", RawPath: "/./p", Query: map[string][]string{"b": {"1", "2"}},
				Headers: map[string]string{"x-b": "1", "content-type": "application/json"}, Body: map[string]any{"a": []any{1.0}}, BodyTruncated: true}},
		Context: Context{Door: "envoy", Time: time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.FixedZone("x", 3600)), RequestID: "r", SessionID: "s",
			Extensions: map[string]string{"server": "gh"}, Source: Source{Address: "127.0.0.1:1", Principal: "spiffe://x"},
			Rate: Rate{AgentCallsLastMinute: 3}, ToolDefinition: ToolDefinition{Changed: true, Hash: "h1", PinnedHash: "h2"}},
	}
	a, ok := inv.Lookup(reviewer)
	if !ok {
		t.Fatal("inventory entry missing")
	}
	a.merge(&in.Agent)
	return in
}

// needsOf compiles a policy reading refs and returns what it needs.
func needsOf(t *testing.T, body string) *inputNeeds {
	t.Helper()
	mod, err := ast.ParseModuleWithOpts("p.rego", "package agentpdp.p\n\n"+body, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	c := ast.NewCompiler()
	if c.Compile(map[string]*ast.Module{"p.rego": mod}); c.Failed() {
		t.Fatal(c.Errors)
	}
	return computeNeeds(c)
}

// TestRegoInputIsLoggedInput: what Rego evaluates is, field for field, the
// JSON the decision log hashes (and the result cache keys on), for the whole
// input and for the parts a policy reads.
func TestRegoInputIsLoggedInput(t *testing.T) {
	needs := map[string]*inputNeeds{
		"all": allNeeds,
		"some": needsOf(t, `allow contains "x" if {
	input.agent.id == "a"
	input.action.http.headers["x-b"] == "1"
	input.context.rate.agent_calls_last_minute > 1
	input.user.groups[_] == "eng"
}`),
		"whole http": needsOf(t, `allow contains "x" if input.action.http.method == input.action.http.raw_path
allow contains "y" if input.action.http`),
		"none": needsOf(t, `allow contains "x" if true`),
	}
	inputs := map[string]*Input{
		"full":    fullInput(t),
		"minimal": {Action: Action{Kind: "http"}},
		"empty":   {},
		"zero rate, empty lists": {Action: Action{Kind: "http", HTTP: HTTP{Headers: map[string]string{}, Query: map[string][]string{}}},
			Agent: Agent{ID: "a", AllowedActions: []string{}}, Context: Context{Rate: Rate{}}},
		"headers the policy does not read": {Action: Action{Kind: "http", HTTP: HTTP{Headers: map[string]string{"x-other": "1"}}}},
	}
	for nn, n := range needs {
		for in_, in := range inputs {
			js, err := appendInputNeeds(nil, in, n)
			if err != nil {
				t.Fatal(err)
			}
			logged, err := ast.ValueFromReader(bytes.NewReader(js))
			if err != nil {
				t.Fatalf("%s/%s: %s: %v", nn, in_, js, err)
			}
			rego, err := regoInput(in, n)
			if err != nil {
				t.Fatal(err)
			}
			if logged.Compare(rego) != 0 {
				t.Errorf("%s needs, %s input:\nRego %v\nlog  %s", nn, in_, rego, js)
			}
		}
	}
}

// Every field of the input types is written by the walk: a field added to
// Input but not to walkInput would be evaluated by CEL but neither logged
// nor seen by Rego.
func TestWalkCoversEveryField(t *testing.T) {
	js, err := appendInput(nil, fullInput(t))
	if err != nil {
		t.Fatal(err)
	}
	var visit func(reflect.Type, string)
	visit = func(ty reflect.Type, path string) {
		for f := range ty.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !bytes.Contains(js, []byte(`"`+name+`":`)) {
				t.Errorf("%s.%s (%q) is not in the walked input %s", path, f.Name, name, js)
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				visit(f.Type, path+"."+name)
			}
		}
	}
	visit(reflect.TypeFor[Input](), "input")
}

// A value Rego cannot hold is an error, not an absent field.
func TestRegoInputError(t *testing.T) {
	in := &Input{Action: Action{Kind: "x", Arguments: map[string]any{"c": make(chan int)}}}
	if _, err := regoInput(in, allNeeds); err == nil || !strings.Contains(err.Error(), "arguments") {
		t.Errorf("regoInput = %v, want an error naming arguments", err)
	}
	set, err := LoadFS(context.Background(), fstest.MapFS{"p.rego": {Data: []byte("package agentpdp.p\n\nallow contains \"x\" if input.action.arguments\n")}}, "t")
	if err != nil {
		t.Fatal(err)
	}
	d := New(set, Options{Timeout: time.Second, AllowUnknownAgents: true}).Decide(context.Background(), in)
	if d.Effect != Deny || !slices.Contains(rules(d), "builtin#eval-error") {
		t.Errorf("decision %+v, want a deny naming the evaluation error", d)
	}
}
