package pdp

import (
	"sync"
	"time"
)

// rateWindow counts calls per agent over the last minute in one-second
// buckets: a sliding window accurate to a second, O(1) per call, and a
// fixed 60 counters per agent.
// Each agent has its own lock, so agents never wait on each other; only
// registered agents are counted, so the map is bounded by the inventory.
type rateWindow struct {
	agents sync.Map // agent id → *agentBuckets
}

type agentBuckets struct {
	mu     sync.Mutex
	counts [60]uint32
	secs   [60]int64 // the unix second each bucket holds
}

func newRateWindow() *rateWindow { return &rateWindow{} }

// hit records one call at now and returns the calls in the 60 s up to and
// including it.
func (w *rateWindow) hit(agent string, now time.Time) int {
	sec := now.Unix()
	v, ok := w.agents.Load(agent)
	if !ok {
		v, _ = w.agents.LoadOrStore(agent, &agentBuckets{})
	}
	b := v.(*agentBuckets)
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sec % 60
	if i < 0 {
		i += 60
	}
	if b.secs[i] != sec {
		b.secs[i], b.counts[i] = sec, 0
	}
	b.counts[i]++
	total := 0
	for j := range b.counts {
		if sec-b.secs[j] < 60 {
			total += int(b.counts[j])
		}
	}
	return total
}
