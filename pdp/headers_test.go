package pdp

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const headerRules = `rules:
  - id: tenant
    effect: allow
    match: action.tool == "read"
    headers: {X-Tenant: acme, x-trace-policy: "on"}
  - id: shadowed
    effect: allow
    shadow: true
    match: action.tool == "read"
    headers: {x-shadow: "1"}
`

const headerRego = `package agentpdp.h

allow contains {"id": "owner", "headers": {"x-owner-team": input.agent.claims.team}} if input.action.tool == "read"

allow contains {"id": "clash", "headers": {"x-tenant": "other"}} if input.action.tool == "clash"
allow contains "plain" if input.action.tool == "clash"

allow contains {"id": "bad", "headers": {"host": "evil"}} if input.action.tool == "bad-name"

allow contains {"id": "num", "headers": {"x-n": 1}} if input.action.tool == "bad-value"

approve contains {"id": "held", "headers": {"x-a": "b"}} if input.action.tool == "approve-with-headers"
`

func TestAllowRulesSetHeaders(t *testing.T) {
	dir := writeSet(t, map[string]string{"inventory.yaml": inv, "h.yaml": headerRules + `  - id: clash
    effect: allow
    match: action.tool == "clash"
    headers: {x-tenant: acme}
`, "h.rego": headerRego})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	log := &memLog{}
	p := New(set, Options{Log: log})
	in := func(tool string) *Input {
		return &Input{Agent: Agent{ID: "a", Claims: map[string]any{"team": "platform"}}, Action: Action{Kind: "mcp.tools/call", Tool: tool}}
	}

	d := p.Decide(context.Background(), in("read"))
	want := map[string]string{"x-tenant": "acme", "x-trace-policy": "on", "x-owner-team": "platform"}
	if d.Effect != Allow || !maps.Equal(d.Headers, want) {
		t.Fatalf("read: %s %v, want allow with %v", d.Effect, d.Headers, want)
	}
	if x := Explain(d); !strings.Contains(x, "headers set upstream: x-owner-team: platform; x-tenant: acme;") {
		t.Errorf("explain does not show the headers:\n%s", x)
	}
	if r := string(log.recs[0].Result); !strings.Contains(r, `"headers":{"x-owner-team":"platform","x-tenant":"acme","x-trace-policy":"on"}`) {
		t.Fatalf("logged result lacks the headers: %s", r)
	}

	for tool, rule := range map[string]string{
		"clash":     "builtin#header-conflict",
		"bad-name":  "builtin#eval-error",
		"bad-value": "builtin#eval-error",
		// Only allow rules may set headers: anything else is a policy bug.
		"approve-with-headers": "builtin#eval-error",
	} {
		d := p.Decide(context.Background(), in(tool))
		if d.Effect != Deny || d.Headers != nil || !slices.Contains(rules(d), rule) {
			t.Errorf("%s: %s %v %v, want deny by %s", tool, d.Effect, d.Headers, rules(d), rule)
		}
	}
}

// A CEL rule's headers and status are checked at load, located at the rule.
func TestHeaderAndStatusRulesCheckedAtLoad(t *testing.T) {
	for name, tc := range map[string]struct{ rule, want string }{
		"status on allow":   {"effect: allow\n    match: \"true\"\n    status: 403", `only deny rules may set a status`},
		"status on approve": {"effect: approve\n    match: \"true\"\n    status: 403", `only deny rules may set a status`},
		"success status":    {"effect: deny\n    match: \"true\"\n    status: 200", `status 200 is not an HTTP error status`},
		"status too big":    {"effect: deny\n    match: \"true\"\n    status: 600", `status 600 is not an HTTP error status`},
		"deny rule":         {"effect: deny\n    match: \"true\"\n    headers: {x-a: b}", `only allow rules may set headers`},
		"own header":        {"effect: allow\n    match: \"true\"\n    headers: {x-agentpdp-user: root}", `"x-agentpdp-user" is agentpdp's own`},
		"credential":        {"effect: allow\n    match: \"true\"\n    headers: {Authorization: x}", `"authorization" may not be set`},
		"not a token":       {"effect: allow\n    match: \"true\"\n    headers: {\"a b\": x}", `is not an HTTP token`},
		"line break":        {"effect: allow\n    match: \"true\"\n    headers: {x-a: \"b\\r\\nx-b: c\"}", `line break`},
		"twice":             {"effect: allow\n    match: \"true\"\n    headers: {X-A: b, x-a: c}", `named twice`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeSet(t, map[string]string{"inventory.yaml": inv, "h.yaml": "rules:\n  - id: r\n    " + tc.rule + "\n"})
			_, err := LoadDir(context.Background(), dir)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "h.yaml:2:5")) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want h.yaml:2:5 and %q", err, tc.want)
			}
		})
	}
}

func TestYAMLCasesAssertHeaders(t *testing.T) {
	res := runYAMLCases(t, map[string]string{"inventory.yaml": inv, "h.yaml": headerRules, "h_test.yaml": `tests:
  - name: sets both
    input: {agent: {id: a}, action: {kind: http, tool: read}}
    effect: allow
    headers: {x-tenant: acme, x-trace-policy: "on"}
  - name: wrong value
    input: {agent: {id: a}, action: {kind: http, tool: read}}
    effect: allow
    headers: {x-tenant: other, x-trace-policy: "on"}
  - name: none expected
    input: {agent: {id: a}, action: {kind: http, tool: read}}
    effect: allow
    headers: {}
  - name: not checked
    input: {agent: {id: a}, action: {kind: http, tool: read}}
    effect: allow
`})
	var got []bool
	for _, r := range res {
		got = append(got, r.Pass)
	}
	if want := []bool{true, false, false, true}; !slices.Equal(got, want) {
		t.Fatalf("passes %v, want %v: %+v", got, want, res)
	}
	if !strings.Contains(res[1].Detail, "want map[x-tenant:other") {
		t.Errorf("detail %q", res[1].Detail)
	}
}

func TestNoHeadersWhenTheLogFails(t *testing.T) {
	set, err := LoadDir(context.Background(), writeSet(t, map[string]string{"inventory.yaml": inv, "h.yaml": headerRules}))
	if err != nil {
		t.Fatal(err)
	}
	d := New(set, Options{Log: failingLog{}}).Decide(context.Background(), &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http", Tool: "read"}})
	if d.Effect != Deny || d.Headers != nil {
		t.Fatalf("unwritable log: %s with headers %v, want a deny without", d.Effect, d.Headers)
	}
}

const headerExprRules = `rules:
  - id: team
    effect: allow
    match: action.tool == "read"
    headers: {x-tenant: acme}
    header_expressions:
      X-Owner-Team: agent.owner_team
      x-user: '"user=" + user.id'
  - id: level
    effect: allow
    match: action.tool == "level"
    header_expressions: {x-level: agent.claims.level}
`

func TestCELHeaderExpressions(t *testing.T) {
	set, err := LoadDir(context.Background(), writeSet(t, map[string]string{"inventory.yaml": inv, "h.yaml": headerExprRules}))
	if err != nil {
		t.Fatal(err)
	}
	p := New(set, Options{})
	decide := func(team, user, tool string, claims map[string]any) Decision {
		return p.Decide(context.Background(), &Input{Agent: Agent{ID: "a", OwnerTeam: team, Claims: claims},
			User: User{ID: user}, Action: Action{Kind: "mcp.tools/call", Tool: tool}})
	}
	d1 := decide("platform", "alice", "read", nil)
	want1 := map[string]string{"x-tenant": "acme", "x-owner-team": "platform", "x-user": "user=alice"}
	if d1.Effect != Allow || !maps.Equal(d1.Headers, want1) {
		t.Fatalf("read: %s %v, want allow with %v", d1.Effect, d1.Headers, want1)
	}
	// Each firing computes its own values; the first decision keeps its own.
	d2 := decide("payments", "bob", "read", nil)
	if d2.Headers["x-owner-team"] != "payments" || d2.Headers["x-user"] != "user=bob" || d1.Headers["x-owner-team"] != "platform" {
		t.Fatalf("second call %v, first now %v", d2.Headers, d1.Headers)
	}
	if d := decide("t", "u", "level", map[string]any{"level": "gold"}); d.Effect != Allow || d.Headers["x-level"] != "gold" {
		t.Fatalf("dyn string: %s %v", d.Effect, d.Headers)
	}
	// Values the expression cannot give as a header are evaluation errors:
	// the call is denied, never allowed without the header.
	for name, c := range map[string]struct {
		user   string
		claims map[string]any
	}{
		"not a string": {"u", map[string]any{"level": 3}},
		"missing key":  {"u", map[string]any{}},
	} {
		if d := decide("t", c.user, "level", c.claims); d.Effect != Deny || d.Headers != nil || !slices.Contains(rules(d), "builtin#eval-error") {
			t.Errorf("%s: %s %v %v, want deny by builtin#eval-error", name, d.Effect, d.Headers, rules(d))
		}
	}
	if d := decide("t", "a\r\nx-evil: 1", "read", nil); d.Effect != Deny || d.Headers != nil || !slices.Contains(rules(d), "builtin#eval-error") {
		t.Errorf("line break in a value: %s %v %v, want deny by builtin#eval-error", d.Effect, d.Headers, rules(d))
	}
}

// Errors in header_expressions point at the expression, like match errors.
func TestHeaderExpressionErrorsAreLocated(t *testing.T) {
	const head = "rules:\n  - id: r\n    effect: allow\n    match: \"true\"\n"
	for name, c := range map[string]struct{ rule, want string }{
		"unknown field": {"    header_expressions:\n      x-a: agent.nme\n", `h.yaml:6:17: rule "r": header "x-a": undefined field 'nme'`},
		"not a string":  {"    header_expressions:\n      x-a: agent.id\n      x-b: \"1 + 2\"\n", `h.yaml:7:12: rule "r": header "x-b": the expression must give a string, not int`},
		"reserved":      {"    header_expressions:\n      Authorization: user.id\n", `h.yaml:6:22: rule "r": header "authorization" may not be set by policy`},
		"named twice":   {"    headers: {x-a: v}\n    header_expressions:\n      X-A: user.id\n", `h.yaml:7:12: rule "r": header "x-a" is named twice`},
		"on a deny":     {"    header_expressions: {x-a: user.id}\n", `h.yaml:2:5: rule "r": only allow rules may set headers`},
	} {
		t.Run(name, func(t *testing.T) {
			src := head + c.rule
			if name == "on a deny" {
				src = strings.Replace(src, "effect: allow", "effect: deny", 1)
			}
			dir := writeSet(t, map[string]string{"inventory.yaml": inv, "h.yaml": src})
			_, err := LoadDir(context.Background(), dir)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, c.want)) {
				t.Fatalf("error %v, want %s", err, c.want)
			}
		})
	}
}
