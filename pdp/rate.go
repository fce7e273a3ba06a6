package pdp

import (
	"sync"
	"time"
)

// rateWindow counts calls per agent over the last minute in one-second
// buckets: a sliding window accurate to a second, O(1) per call, and a
// fixed 60 counters per agent.
type rateWindow struct {
	mu     sync.Mutex
	agents map[string]*agentBuckets
}

type agentBuckets struct {
	counts [60]uint32
	secs   [60]int64 // the unix second each bucket holds
}

func newRateWindow() *rateWindow {
	return &rateWindow{agents: map[string]*agentBuckets{}}
}

// hit records one call at now and returns the calls in the 60 s up to and
// including it.
func (w *rateWindow) hit(agent string, now time.Time) int {
	sec := now.Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.agents[agent]
	if b == nil {
		b = &agentBuckets{}
		w.agents[agent] = b
	}
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
