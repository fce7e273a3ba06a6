package pdp

import (
	"context"
	"slices"
	"strings"
	"testing"
)

const statusRules = `rules:
  - id: busy
    effect: deny
    match: action.tool in ["busy", "both", "trial"]
    status: 429
  - id: plain
    effect: deny
    match: action.tool == "mixed"
  - id: busy-again
    effect: deny
    match: action.tool == "mixed"
    status: 429
  - id: trial
    effect: deny
    shadow: true
    match: action.tool == "trial"
    status: 418
`

const statusRego = `package agentpdp.s

deny contains {"id": "legal", "status": 451} if input.action.tool in {"legal", "both"}

allow contains {"id": "ok", "status": 403} if input.action.tool == "allow-with-status"

deny contains {"id": "big", "status": 999} if input.action.tool == "out-of-range"

deny contains {"id": "text", "status": "429"} if input.action.tool == "string-status"
`

func TestDenyRulesSetStatus(t *testing.T) {
	dir := writeSet(t, map[string]string{"inventory.yaml": inv, "s.yaml": statusRules, "s.rego": statusRego})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	log := &memLog{}
	p := New(set, Options{Log: log})
	decide := func(tool string) Decision {
		return p.Decide(context.Background(), &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "mcp.tools/call", Server: "s", Tool: tool}})
	}

	d := decide("busy")
	if d.Effect != Deny || d.Status != 429 {
		t.Fatalf("busy: %s status %d, want deny 429", d.Effect, d.Status)
	}
	if x := Explain(d); !strings.Contains(x, "status: 429") {
		t.Errorf("explain does not show the status:\n%s", x)
	}
	if r := string(log.recs[len(log.recs)-1].Result); !strings.Contains(r, `"status":429}`) {
		t.Errorf("logged result lacks the status: %s", r)
	}

	for tool, want := range map[string]struct {
		status int
		rule   string
	}{
		"legal": {451, "s.rego#deny:legal"},
		// Two enforced denies asking for different statuses: the door's own.
		"both": {0, "s.yaml#busy"},
		// A deny without a status joins one with: the door's own.
		"mixed": {0, "s.yaml#plain"},
		// A shadow deny's status is not enforced.
		"trial": {429, "s.yaml#trial"},
		// Not the policy's to choose: evaluation errors.
		"allow-with-status": {0, "builtin#eval-error"},
		"out-of-range":      {0, "builtin#eval-error"},
		"string-status":     {0, "builtin#eval-error"},
		// Allowed calls carry none (the anchoring allow comes from s.*).
		"unknown": {0, "builtin#default-deny"},
	} {
		d := decide(tool)
		if d.Effect != Deny || d.Status != want.status || !slices.Contains(rules(d), want.rule) {
			t.Errorf("%s: %s status %d %v, want deny %d by %s", tool, d.Effect, d.Status, rules(d), want.status, want.rule)
		}
	}
}

func TestBuiltinRateLimitAsksFor429(t *testing.T) {
	dir := writeSet(t, map[string]string{
		"inventory.yaml": "agents:\n  - id: a\n    allowed_actions: [\"s.*\"]\n    max_calls_per_minute: 2\n",
		"s.yaml":         "rules:\n  - id: open\n    effect: allow\n    match: \"true\"\n  - id: no-writes\n    effect: deny\n    match: action.tool == \"write\"\n",
	})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	p := New(set, Options{})
	decide := func(tool string, calls int) Decision {
		in := &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "mcp.tools/call", Server: "s", Tool: tool}}
		in.Context.Rate.AgentCallsLastMinute = calls
		return p.Decide(context.Background(), in)
	}
	if d := decide("read", 3); d.Effect != Deny || d.Status != 429 || !slices.Contains(rules(d), "builtin#rate-limit") {
		t.Fatalf("over the limit: %s status %d %v, want deny 429 by builtin#rate-limit", d.Effect, d.Status, rules(d))
	}
	// Refused for another reason as well: not a rate problem alone.
	if d := decide("write", 3); d.Effect != Deny || d.Status != 0 {
		t.Fatalf("over the limit and a policy deny: %s status %d, want deny with the door's status", d.Effect, d.Status)
	}
	if d := decide("read", 2); d.Effect != Allow || d.Status != 0 {
		t.Fatalf("at the limit: %s status %d, want allow", d.Effect, d.Status)
	}
}

func TestYAMLCasesAssertStatus(t *testing.T) {
	res := runYAMLCases(t, map[string]string{"inventory.yaml": inv, "s.yaml": statusRules, "s_test.yaml": `tests:
  - name: right status
    input: {agent: {id: a}, action: {kind: http, tool: busy}}
    effect: deny
    status: 429
  - name: wrong status
    input: {agent: {id: a}, action: {kind: http, tool: mixed}}
    effect: deny
    status: 429
`})
	if len(res) != 2 || !res[0].Pass || res[1].Pass || !strings.Contains(res[1].Detail, "status 0, want 429") {
		t.Fatalf("results %+v", res)
	}
}
