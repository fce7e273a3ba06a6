package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestFloorPercent(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live, roots, floor uint64
		want               int
	}{
		{0, 0, 16 * mb, 100},              // no reading yet
		{3 * mb, 0, 16 * mb, 433},         // goal 3+13 MB
		{2 * mb, 1 * mb, 16 * mb, 466},    // roots count: 2 + 3×4.66 = 16
		{8 * mb, 0, 16 * mb, 100},         // half the floor: Go's default reaches it
		{7 * mb, 2 * mb, 16 * mb, 100},    // 7 + 9 = 16: so does it here
		{100 * mb, 0, 16 * mb, 100},       // big heap: floor irrelevant
		{7 * mb, 0, 16 * mb, 128},         // just under half
		{1 << 10, 0, 16 * mb, 2000},       // capped
		{6 * mb, 0, 13 * mb, 116},         // rounds down
		{4 * mb, 0, 16*mb + 1, 300},       // integer percent
		{1 * mb, 0, 1 * mb, 100},          // live at the floor
		{5 * mb, 0, 200 * mb, 2000},       // capped at 2000 (goal 105 MB, not 200)
		{50 * mb, 0, 200 * mb, 300},       // goal 200 MB
		{99 * mb, 0, 200 * mb, 102},       // goal ~200 MB
		{101 * mb, 0, 200 * mb, 100},      // over half
		{60 * mb, 30 * mb, 200 * mb, 155}, // 60 + 90×1.55 ≈ 200
	} {
		if got := floorPercent(c.live, c.roots, c.floor); got != c.want {
			t.Errorf("floorPercent(%d, %d, %d) = %d, want %d", c.live, c.roots, c.floor, got, c.want)
		}
	}
}

func readGC(t *testing.T) (percent, goal uint64) {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// collectUntil runs collections until cond holds (the floor tunes in a
// cleanup after a collection, on another goroutine) or 10 s pass.
func collectUntil(t *testing.T, what string, cond func(percent, goal uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		p, g := readGC(t)
		if cond(p, g) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC %d, heap goal %d bytes", what, p, g)
		}
		runtime.Gosched()
	}
}

// The floor raises the heap goal of this small test process to the floor,
// and stopping it gives GOGC=100 back. Not parallel: it sets the process's
// GC percent (starting from 100 whatever GOGC the test runs with).
func TestHeapFloor(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(defaultGCPercent))
	const floor = 32 << 20
	stop := startHeapFloor(floor)
	collectUntil(t, "goal never reached the floor", func(p, g uint64) bool {
		return p > defaultGCPercent && g >= floor*9/10
	})
	stop()
	if p, _ := readGC(t); p != defaultGCPercent {
		t.Fatalf("after stop: GOGC %d, want %d", p, defaultGCPercent)
	}
	// No tuning after stop: collections leave the default alone.
	for range 3 {
		runtime.GC()
	}
	if p, _ := readGC(t); p != defaultGCPercent {
		t.Fatalf("collections after stop: GOGC %d, want %d", p, defaultGCPercent)
	}

	// A floor below what the process already holds changes nothing.
	stop = startHeapFloor(1 << 10)
	defer stop()
	for range 3 {
		runtime.GC()
		if p, _ := readGC(t); p != defaultGCPercent {
			t.Fatalf("tiny floor: GOGC %d, want %d", p, defaultGCPercent)
		}
	}
}

func TestGCHeapFloorConfig(t *testing.T) {
	checkIntSetting(t, "AGENTPDP_GC_HEAP_FLOOR_MB", func(c Config) int64 { return c.GCHeapFloorMB }, []intSettingCase{
		{yaml: "", want: 16},
		{yaml: "gc_heap_floor_mb: 0\n", want: 0},
		{yaml: "gc_heap_floor_mb: 64\n", env: "8", want: 8},
		{yaml: "gc_heap_floor_mb: -1\n", err: "gc_heap_floor_mb must be between 0 and 1048576, not -1"},
		{env: "lots", err: `AGENTPDP_GC_HEAP_FLOOR_MB="lots"`},
	})
}

// intSettingCase is one numeric setting given in the file and/or its
// AGENTPDP_* variable, and what loading and checking the config gives.
type intSettingCase struct {
	yaml, env string
	want      int64
	err       string
}

func checkIntSetting(t *testing.T, envName string, get func(Config) int64, cases []intSettingCase) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agentpdp.yaml")
	for _, c := range cases {
		if err := os.WriteFile(p, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		env := func(k string) string {
			if k == envName {
				return c.env
			}
			return ""
		}
		cfg, err := loadConfig(p, env)
		if err == nil {
			err = cfg.finish()
		}
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q %s=%q: error %v, want %q", c.yaml, envName, c.env, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%q %s=%q: %v", c.yaml, envName, c.env, err)
		case c.err == "" && get(cfg) != c.want:
			t.Errorf("%q %s=%q: got %d, want %d", c.yaml, envName, c.env, get(cfg), c.want)
		}
	}
}
