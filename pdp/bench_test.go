package pdp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentpdp/agentpdp/pdp/decisionlog"
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

// exampleInputs are the built-in example set's three demo calls.
func exampleInputs(b *testing.B) map[Effect]*Input {
	out := map[Effect]*Input{}
	for _, e := range []Effect{Allow, Deny, Approve} {
		src, err := os.ReadFile("../policies/examples/" + string(e) + ".json")
		if err != nil {
			b.Fatal(err)
		}
		in, err := DecodeInput(src)
		if err != nil {
			b.Fatal(err)
		}
		out[e] = in
	}
	return out
}

// BenchmarkDecide measures Decide on the built-in example policies, one
// engine at a time and together, with the decision log off and on.
// rego-nocache is a cold decision (every input new to the result cache).
func BenchmarkDecide(b *testing.B) {
	set, err := LoadDir(context.Background(), "../policies")
	if err != nil {
		b.Fatal(err)
	}
	inputs := exampleInputs(b)
	for _, engine := range []string{"cel", "rego", "rego-nocache", "both"} {
		for _, effect := range []Effect{Allow, Deny, Approve} {
			b.Run(fmt.Sprintf("engine=%s/input=%s", engine, effect), func(b *testing.B) {
				benchEffect(b, New(onlyEngine(set, engine), Options{}), inputs[effect])
			})
		}
	}
	b.Run("engine=both/input=allow/log=file", func(b *testing.B) {
		sink, err := decisionlog.NewFileSink(filepath.Join(b.TempDir(), "d.log"), 1<<30, 1)
		if err != nil {
			b.Fatal(err)
		}
		l, err := decisionlog.New(decisionlog.Options{}, sink)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		benchEffect(b, New(set, Options{Log: l, Redact: DefaultRedact}), inputs[Allow])
	})
}

func benchEffect(b *testing.B, p *PDP, base *Input) {
	ctx := context.Background()
	first := *base
	want := p.Decide(ctx, &first).Effect
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		in := *base
		if d := p.Decide(ctx, &in); d.Effect != want {
			b.Fatalf("effect %s, want %s", d.Effect, want)
		}
	}
}

// The side-by-side harness's policy in both engines (bench/sidebyside,
// driven by its compare.sh) must keep loading and deciding like the
// harness's references, or the comparison measures something else.
func TestSideBySidePoliciesDecide(t *testing.T) {
	in := func(tool string, args map[string]any) *Input {
		return &Input{
			Agent:      Agent{ID: "spiffe://example.org/agent/code-reviewer"},
			User:       User{ID: "alice@example.com", Groups: []string{"eng"}},
			Delegation: Delegation{Constraints: map[string]any{"allowed_tools": []any{"github.create_issue", "github.get_file", "github.delete_branch"}}},
			Action:     Action{Kind: "mcp.tools/call", Server: "github", Tool: tool, Arguments: args},
			Context:    Context{Time: t0, Rate: Rate{AgentCallsLastMinute: 12}},
		}
	}
	for _, engine := range []string{"rego", "cel"} {
		set, err := LoadDir(context.Background(), "bench/sidebyside/"+engine)
		if err != nil {
			t.Fatal(err)
		}
		p := New(set, Options{})
		for _, c := range []struct {
			in   *Input
			want Effect
		}{
			{in("create_issue", map[string]any{"title": "x"}), Allow},
			{in("delete_branch", nil), Approve},
			{in("get_file", map[string]any{"path": "/etc/passwd"}), Approve},
			{in("merge_pull_request", nil), Deny},
		} {
			if d := p.Decide(context.Background(), c.in); d.Effect != c.want {
				t.Errorf("%s %s: %s, want %s (%v)", engine, c.in.Action.Tool, d.Effect, c.want, rules(d))
			}
		}
	}
}
