package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// approvals.webhooks is checked at load: keys, URL scheme, the secret
// file (relative to the config file), format and events.
func TestWebhooksConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hook.secret"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(yaml string) (Config, error) {
		f := filepath.Join(dir, "agentpdp.yaml")
		if err := os.WriteFile(f, []byte("data_dir: "+dir+"\napprovals:\n  webhooks:\n"+yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(f, func(string) string { return "" })
		if err == nil {
			err = cfg.finish()
		}
		return cfg, err
	}
	for _, tc := range []struct{ yaml, want string }{
		{"    - {url: https://h.example/x, secret_file: hook.secret, retries: 3}\n", "retries"},
		{"    - {url: ftp://h.example/x, secret_file: hook.secret}\n", "not an http(s) URL"},
		{"    - {url: h.example/x, secret_file: hook.secret}\n", "not an http(s) URL"},
		{"    - {url: https://h.example/x}\n", "needs secret_file"},
		{"    - {url: https://h.example/x, secret_file: missing.secret}\n", "webhooks[0].secret_file"},
		{"    - {url: https://h.example/x, secret_file: hook.secret, format: teams}\n", "format"},
		{"    - {url: https://h.example/x, secret_file: hook.secret, events: [requested, approve]}\n", `"approve"`},
		{"    - {url: https://h.example/x, secret_file: hook.secret, max_attempts: -2}\n", "negative"},
	} {
		if _, err := load(tc.yaml); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
	cfg, err := load("    - {url: https://h.example/x, secret_file: hook.secret}\n    - {url: http://127.0.0.1:1/, secret_file: " +
		filepath.Join(dir, "hook.secret") + ", format: slack, events: [consumed], timeout: 2s, max_attempts: 3}\n")
	if err != nil || len(cfg.Approvals.hooks) != 2 || cfg.Approvals.Webhooks[0].SecretFile != filepath.Join(dir, "hook.secret") {
		t.Fatalf("good config: %v %+v", err, cfg.Approvals.Webhooks)
	}
}
