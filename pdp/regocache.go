package pdp

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// regoCache remembers what the Rego sets held for a given (pruned) input.
// With data fixed per revision and no non-deterministic builtin in the
// policies, Rego's result is a pure function of the input it can read, so
// a repeated call (the same agent, user and tool; the arguments too when a
// policy reads them) skips evaluation. Keys are the input's AST hash; a hit
// is confirmed by comparing the whole value, so a collision is a miss.
type regoCache struct {
	mu      sync.Mutex
	max     int
	entries map[int][]regoCacheEntry
	size    int
}

type regoCacheEntry struct {
	input ast.Value
	hits  []hit
}

const regoCacheSize = 4096

func newRegoCache(max int) *regoCache {
	return &regoCache{max: max, entries: make(map[int][]regoCacheEntry)}
}

func (c *regoCache) get(in ast.Value) ([]hit, bool) {
	h := in.Hash()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries[h] {
		if e.input.Compare(in) == 0 {
			return e.hits, true
		}
	}
	return nil, false
}

func (c *regoCache) put(in ast.Value, hits []hit) {
	h := in.Hash()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size >= c.max {
		// Drop an arbitrary bucket: cheap, and a working set larger than
		// the cache only loses hits, never correctness.
		for k, b := range c.entries {
			delete(c.entries, k)
			c.size -= len(b)
			break
		}
	}
	c.entries[h] = append(c.entries[h], regoCacheEntry{input: in, hits: hits})
	c.size++
}

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
