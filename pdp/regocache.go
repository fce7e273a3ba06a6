package pdp

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// regoCache remembers what the Rego sets held for a given (pruned) input.
// With data fixed per revision and no non-deterministic builtin in the
// policies, Rego's result is a pure function of the input it can read, so
// a repeated call (the same agent, user and tool; the arguments too when a
// policy reads them) skips evaluation. The key is the canonical JSON of
// exactly the input parts the policies can read (appendInputNeeds), so
// equal keys mean equal Rego inputs.
type regoCache struct {
	mu      sync.Mutex
	max     int
	entries map[string][]hit
}

const regoCacheSize = 4096

func newRegoCache(max int) *regoCache {
	return &regoCache{max: max, entries: make(map[string][]hit)}
}

func (c *regoCache) get(key []byte) ([]hit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.entries[string(key)]
	return h, ok
}

func (c *regoCache) put(key []byte, hits []hit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Drop an arbitrary entry: cheap, and a working set larger than
		// the cache only loses hits, never correctness.
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[string(key)] = hits
}

// keyBufs reuses cache-key buffers.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// deterministic reports whether the compiled policies call no
// non-deterministic builtin (time.now_ns, http.send, rand.intn, …).
func deterministic(c *ast.Compiler) bool {
	ok := true
	check := func(op ast.Ref) {
		if b, found := ast.BuiltinMap[op.String()]; found && b.IsNondeterministic() {
			ok = false
		}
	}
	for _, m := range c.Modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				check(e.Operator())
			}
			return !ok
		})
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if call, isCall := t.Value.(ast.Call); isCall && len(call) > 0 {
				if r, isRef := call[0].Value.(ast.Ref); isRef {
					check(r)
				}
			}
			return !ok
		})
	}
	return ok
}
