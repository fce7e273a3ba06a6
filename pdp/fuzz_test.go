package pdp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// FuzzDecodeInput: any bytes either decode to an input that the PDP decides
// without panicking, or are rejected with an error.
func FuzzDecodeInput(f *testing.F) {
	f.Add([]byte(`{"agent":{"id":"a"},"action":{"kind":"mcp.tools/call","tool":"t","arguments":{"x":[1,{"y":null}]}},"context":{"time":"2026-11-24T10:00:00Z"}}`))
	f.Add([]byte(`{"action":{"kind":"http","http":{"body":"x","query":{"a":["1"]}}}}`))
	f.Add([]byte(`{"user":{"groups":"eng"}}`))
	set, err := LoadDir(context.Background(), "testdata/basic")
	if err != nil {
		f.Fatal(err)
	}
	p := New(set, Options{Timeout: time.Second})
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := DecodeInput(b)
		if err != nil {
			return
		}
		d := p.Decide(context.Background(), in)
		// Decide turns a panic into a deny, so a valid effect proves
		// nothing: a panic shows as builtin#internal-error.
		noInternalError(t, d)
		if _, err := json.Marshal(d); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzLoadPolicy: any file contents either load or fail with an error; a
// loaded set decides without panicking.
func FuzzLoadPolicy(f *testing.F) {
	f.Add("package agentpdp.p\n\nallow contains \"x\" if input.agent.id\n", "rules:\n  - id: a\n    effect: deny\n    match: action.tool == 'x'\n", "agents:\n  - id: a\n")
	f.Add("package agentpdp.p\n\ndeny contains {\"id\": 1} if true\n", "rules: []\n", "agents: []\n")
	f.Add("", "rules:\n  - id: a\n    effect: approve\n    match: |\n      has(agent.id)\n    min: 2\n", "")
	f.Fuzz(func(t *testing.T, rego, cel, inv string) {
		fsys := fstest.MapFS{
			"p.rego":         {Data: []byte(rego)},
			"r.yaml":         {Data: []byte(cel)},
			"inventory.yaml": {Data: []byte(inv)},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		set, err := LoadFS(ctx, fsys, "fuzz")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		d := New(set, Options{Timeout: 50 * time.Millisecond}).Decide(ctx, &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "mcp.tools/call", Tool: "x"}})
		noInternalError(t, d)
	})
}

func noInternalError(t *testing.T, d Decision) {
	t.Helper()
	if d.Effect != Allow && d.Effect != Deny && d.Effect != Approve {
		t.Fatalf("effect %q", d.Effect)
	}
	for _, r := range d.Reasons {
		if r.Rule == "builtin#internal-error" || strings.Contains(r.Message, "internal error") {
			t.Fatalf("the decision panicked: %v", d.Reasons)
		}
	}
}
