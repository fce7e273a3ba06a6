package pdp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A panic inside one engine is a deny naming that engine; the built-in
// checks made before it still count.
func TestEnginePanicDenies(t *testing.T) {
	set := onlyEngine(loadBasic(t), "cel")
	cel := slices.Clone(set.cel)
	broken := *cel[0]
	broken.prg = nil // Eval on a nil program panics
	set.cel = append(cel, &broken)
	p := New(set, Options{Timeout: time.Second})
	d := p.Decide(context.Background(), call(reviewer, "alice@example.com", "github.create_issue", nil))
	if d.Effect != Deny {
		t.Fatalf("effect %s after a panicking engine", d.Effect)
	}
	var named bool
	for _, r := range d.Reasons {
		named = named || (r.Rule == "builtin#eval-error" && strings.HasPrefix(r.Message, "CEL: internal error"))
		if r.Rule == "builtin#internal-error" {
			t.Errorf("the engine's panic took the whole decision down: %v", d.Reasons)
		}
	}
	if !named {
		t.Errorf("reasons %v do not name the CEL engine", d.Reasons)
	}
	// An unknown agent is still reported beside the panic.
	d = p.Decide(context.Background(), call("spiffe://example.org/agent/nobody", "", "x", nil))
	if !slices.Contains(rules(d), "builtin#unknown-agent") || !slices.Contains(rules(d), "builtin#eval-error") {
		t.Errorf("reasons %v", d.Reasons)
	}
}

// Policy swaps while decisions run: every decision is made and logged
// against one whole revision (run with -race). Each goroutine swaps before
// it decides, so swaps and decisions interleave by construction.
func TestSwapDuringConcurrentDecide(t *testing.T) {
	allowSet := writeAndLoad(t, "allow")
	denySet := writeAndLoad(t, "deny")
	log := &memLog{}
	p := New(allowSet, Options{Timeout: 10 * time.Second, Log: log, AllowUnknownAgents: true})
	want := map[string]Effect{allowSet.Revision: Allow, denySet.Revision: Deny}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				if (g+i)%2 == 0 {
					p.Swap(denySet)
				} else {
					p.Swap(allowSet)
				}
				in := &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http", Tool: fmt.Sprint(i)}}
				d := p.Decide(context.Background(), in)
				if w, ok := want[d.PolicyRevision]; !ok || d.Effect != w {
					t.Errorf("decision %s under revision %s", d.Effect, d.PolicyRevision)
					return
				}
			}
		}()
	}
	wg.Wait()
	log.mu.Lock()
	got := len(log.recs)
	log.mu.Unlock()
	if got != 4*300 {
		t.Errorf("%d decisions logged, want %d", got, 4*300)
	}
}

func writeAndLoad(t *testing.T, effect string) *PolicySet {
	t.Helper()
	dir := writeSet(t, map[string]string{"r.yaml": "rules:\n  - id: r\n    effect: " + effect + "\n    match: \"true\"\n",
		"p.rego": "package agentpdp.p\n\n" + effect + " contains \"rego\" if input.action.kind == \"http\"\n"})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// The Rego result cache never holds more than its bound.
func TestRegoCacheBounded(t *testing.T) {
	c := newRegoCache(16)
	for i := range 1000 {
		c.put([]byte(fmt.Sprint(i)), nil)
		if len(c.entries) > 16 {
			t.Fatalf("%d entries after %d puts", len(c.entries), i+1)
		}
	}
	if _, ok := c.get([]byte("999")); !ok {
		t.Error("the newest entry was dropped")
	}
	// Through the PDP: distinct inputs past the bound keep it bounded.
	set := onlyEngine(loadBasic(t), "rego")
	p := New(set, Options{Timeout: time.Second})
	for i := range regoCacheSize + 100 {
		p.Decide(context.Background(), call(reviewer, "alice", fmt.Sprint("tool", i), nil))
	}
	if n := len(set.rego.cache.entries); n > regoCacheSize || n == 0 {
		t.Errorf("cache holds %d entries, bound %d", n, regoCacheSize)
	}
}
