package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestAutoProcs(t *testing.T) {
	for cpus, want := range map[int]int{0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 64: 32} {
		if got := autoProcs(cpus); got != want {
			t.Errorf("autoProcs(%d) = %d, want %d", cpus, got, want)
		}
	}
}

// Not parallel: it changes the process's GOMAXPROCS (restored at the end).
func TestSetProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	noEnv := func(string) string { return "" }

	runtime.GOMAXPROCS(4) // as if Go saw 4 CPUs
	if n, from := setProcs(0, noEnv); n != 2 || runtime.GOMAXPROCS(0) != 2 || !strings.Contains(from, "auto") {
		t.Errorf("auto on 4: %d from %q, GOMAXPROCS %d; want 2 from auto", n, from, runtime.GOMAXPROCS(0))
	}
	if n, from := setProcs(3, noEnv); n != 3 || runtime.GOMAXPROCS(0) != 3 || from != "max_procs" {
		t.Errorf("max_procs 3: %d from %q, GOMAXPROCS %d", n, from, runtime.GOMAXPROCS(0))
	}
	// GOMAXPROCS in the environment: left as Go set it.
	runtime.GOMAXPROCS(5)
	gomaxprocs := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMAXPROCS" {
				return v
			}
			return ""
		}
	}
	if n, from := setProcs(1, gomaxprocs("5")); n != 5 || runtime.GOMAXPROCS(0) != 5 || from != "GOMAXPROCS" {
		t.Errorf("GOMAXPROCS=5 with max_procs 1: %d from %q, GOMAXPROCS %d", n, from, runtime.GOMAXPROCS(0))
	}
	// A value Go ignores does not stop max_procs either.
	if n, from := setProcs(1, gomaxprocs("lots")); n != 1 || runtime.GOMAXPROCS(0) != 1 || from != "max_procs" {
		t.Errorf("GOMAXPROCS=lots with max_procs 1: %d from %q, GOMAXPROCS %d", n, from, runtime.GOMAXPROCS(0))
	}
}

func TestMaxProcsConfig(t *testing.T) {
	checkIntSetting(t, "AGENTPDP_MAX_PROCS", func(c Config) int64 { return int64(c.MaxProcs) }, []intSettingCase{
		{yaml: "", want: 0},
		{yaml: "max_procs: 2\n", want: 2},
		{yaml: "max_procs: 2\n", env: "1", want: 1},
		{yaml: "max_procs: -1\n", err: "max_procs must be between 0 (half the CPUs) and 1024, not -1"},
		{env: "many", err: `AGENTPDP_MAX_PROCS="many"`},
	})
}
