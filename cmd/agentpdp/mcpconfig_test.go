package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The mcp: section is checked at load, each mistake named.
func TestMCPConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"mcp:\n  upstreams:\n    - {name: a, urll: http://x}\n", "urll"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: A, url: http://x}\n", `name "A"`},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, url: http://x}\n    - {name: a, url: http://y}\n", "used twice"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a}\n", "a url or a command"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, url: http://x, command: [x]}\n", "a url or a command"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, url: ftp://x}\n", "not an http(s) URL"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, command: [x], sse: true}\n", "are for a url, not a command"},
		{"mcp:\n  upstreams:\n    - {name: a, url: http://x}\n", "say who the callers are"},
		{"mcp:\n  identity: {user: u}\n  upstreams:\n    - {name: a, url: http://x}\n", "mcp.identity.agent"},
		{"mcp:\n  call_timeout: -1s\n", "call_timeout"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, command: [x], credentials: {mode: static, value_file: f}}\n", "env_files"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, url: http://x, env_files: {T: f}}\n", "are for a command"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, url: http://x, stateless: true, stateful: true}\n", "stateless is neither"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, url: http://x, stateless: true, sse: true}\n", "stateless is neither"},
		{"mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: a, url: http://x, credentials: {mode: static, value: inline}}\n", "value"},
	} {
		f := filepath.Join(t.TempDir(), "agentpdp.yaml")
		if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(f, func(string) string { return "" })
		if err == nil {
			err = cfg.finish()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
	// A good one loads with its defaults.
	f := filepath.Join(t.TempDir(), "agentpdp.yaml")
	if err := os.WriteFile(f, []byte("mcp:\n  identity: {agent: a}\n  upstreams:\n    - {name: gh, url: http://127.0.0.1:1/mcp}\n    - {name: fs, command: [node, x.js]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(f, func(string) string { return "" })
	if err == nil {
		err = cfg.finish()
	}
	if err != nil || cfg.MCP.Addr != defaultMCPAddr || len(cfg.MCP.Upstreams) != 2 {
		t.Errorf("good config: %v %+v", err, cfg.MCP)
	}
}
