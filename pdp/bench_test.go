package pdp

import (
	"context"
	"testing"
)

// onlyEngine returns a copy of set that evaluates one engine, so each
// engine's cost can be read alone.
func onlyEngine(set *PolicySet, engine string) *PolicySet {
	cp := *set
	switch engine {
	case "cel":
		cp.rego = nil
	case "rego":
		cp.cel = nil
	case "rego-nocache":
		cp.cel = nil
		r := *cp.rego
		r.cache = nil
		cp.rego = &r
	}
	return &cp
}

func benchInput() *Input {
	in := call(reviewer, "alice", "create_issue", map[string]any{"repo": "acme/api", "title": "flaky test", "body": "see CI run 1234"})
	in.Delegation = Delegation{Chain: []string{"alice", reviewer}, Constraints: map[string]any{"allowed_tools": []any{"github.*"}}}
	in.Context.Door, in.Context.RequestID = "mcp", "req-1"
	return in
}

func benchDecide(b *testing.B, set *PolicySet, opts Options) {
	p := New(set, opts)
	ctx := context.Background()
	base := benchInput()
	if d := p.Decide(ctx, benchInput()); d.Effect != Allow {
		b.Fatalf("bench input is not allowed: %s", Explain(d))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		in := *base
		p.Decide(ctx, &in)
	}
}

func BenchmarkDecideBasic(b *testing.B) {
	set := loadBasic(b)
	for _, e := range []string{"rego", "rego-nocache"} {
		b.Run("engine="+e, func(b *testing.B) { benchDecide(b, onlyEngine(set, e), Options{}) })
	}
}
