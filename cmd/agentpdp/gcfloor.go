package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// heapFloor keeps the GC's heap goal at or above floor bytes by raising the
// GC percent while the live heap is small. agentpdp lives in a few MB, so
// with Go's default (GOGC=100: goal twice the live heap, at least 4 MB) it
// collects a dozen times a second under load, and the checks that overlap
// a collection are the p99. Once the live heap reaches half the floor the
// percent is Go's default again, so the floor bounds the memory it costs.
// GOGC in the environment wins: the floor is not started then.
type heapFloor struct {
	floor   uint64
	mu      sync.Mutex
	stopped bool
	percent int // what we last set
	sample  []metrics.Sample
}

const (
	defaultGCPercent = 100
	// maxGCPercent caps the raise for a nearly empty heap (the goal is
	// floor anyway; this only guards against a live reading of a few KB).
	maxGCPercent = 2000
)

// startHeapFloor starts tuning after every collection; stop restores
// GOGC=100 and ends the tuning.
func startHeapFloor(floor uint64) (stop func()) {
	h := &heapFloor{floor: floor, percent: defaultGCPercent,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}}
	h.arm()
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.stopped = true
		debug.SetGCPercent(defaultGCPercent)
	}
}

// gcSentinel is garbage the moment it is made: its cleanup runs after the
// next collection. Not tiny-allocated (16 bytes or more), so the cleanup is
// not held up by a neighbour.
type gcSentinel struct{ _ [32]byte }

func (h *heapFloor) arm() {
	runtime.AddCleanup(new(gcSentinel), func(h *heapFloor) {
		if h.tune() {
			h.arm()
		}
	}, h)
}

// tune sets the percent for the live heap the last collection left; false
// once stopped.
func (h *heapFloor) tune() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	metrics.Read(h.sample)
	var v [3]uint64 // live heap, stacks, globals
	for i, s := range h.sample {
		if s.Value.Kind() != metrics.KindUint64 {
			return true // not in this runtime: leave GOGC alone
		}
		v[i] = s.Value.Uint64()
	}
	if p := floorPercent(v[0], v[1]+v[2], h.floor); p != h.percent {
		debug.SetGCPercent(p)
		h.percent = p
	}
	return true
}

// floorPercent is the GC percent whose heap goal reaches floor, never below
// Go's default. The runtime's goal is live + (live + roots)×p/100, roots
// being the scannable stacks and globals.
func floorPercent(live, roots, floor uint64) int {
	base := live + roots
	if live == 0 || live+base >= floor {
		return defaultGCPercent
	}
	p := (floor - live) * 100 / base
	return int(min(max(p, defaultGCPercent), maxGCPercent))
}
