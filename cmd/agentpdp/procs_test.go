package main

import (
	"os"
	"path/filepath"
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
	env := func(k string) string {
		if k == "GOMAXPROCS" {
			return "5"
		}
		return ""
	}
	if n, from := setProcs(1, env); n != 5 || runtime.GOMAXPROCS(0) != 5 || from != "GOMAXPROCS" {
		t.Errorf("GOMAXPROCS=5 with max_procs 1: %d from %q, GOMAXPROCS %d", n, from, runtime.GOMAXPROCS(0))
	}
}

func TestMaxProcsConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agentpdp.yaml")
	for _, c := range []struct {
		yaml, env string
		want      int
		err       string
	}{
		{yaml: "", want: 0},
		{yaml: "max_procs: 2\n", want: 2},
		{yaml: "max_procs: 2\n", env: "1", want: 1},
		{yaml: "max_procs: -1\n", err: "max_procs must be between 0 (half the CPUs) and 1024, not -1"},
		{env: "many", err: `AGENTPDP_MAX_PROCS="many"`},
	} {
		if err := os.WriteFile(p, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		env := func(k string) string {
			if k == "AGENTPDP_MAX_PROCS" {
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
			t.Errorf("%q env %q: error %v, want %q", c.yaml, c.env, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%q env %q: %v", c.yaml, c.env, err)
		case c.err == "" && cfg.MaxProcs != c.want:
			t.Errorf("%q env %q: max_procs %d, want %d", c.yaml, c.env, cfg.MaxProcs, c.want)
		}
	}
}
