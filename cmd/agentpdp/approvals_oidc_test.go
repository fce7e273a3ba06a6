package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApprovalsOIDCConfig: approvals.oidc gets its defaults, its files are
// relative to the config file, and what cannot work is refused at start.
func TestApprovalsOIDCConfig(t *testing.T) {
	dir := t.TempDir()
	load := func(yaml string) (Config, error) {
		t.Helper()
		p := filepath.Join(dir, "agentpdp.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(p, func(string) string { return "" })
		if err != nil {
			return cfg, err
		}
		return cfg, cfg.finish()
	}
	cfg, err := load("approvals:\n  session_key_file: key\n  oidc:\n    issuer: https://idp.example.com\n    client_id: agentpdp\n    client_secret_file: secret\n")
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Approvals.OIDC
	if o.ClientSecretFile != filepath.Join(dir, "secret") || cfg.Approvals.SessionKeyFile != filepath.Join(dir, "key") ||
		o.GroupsClaim != "groups" || o.UserClaim != "sub" || o.APIAudience != "agentpdp" {
		t.Fatalf("oidc config: %+v, session key %q", o, cfg.Approvals.SessionKeyFile)
	}
	for yaml, want := range map[string]string{
		"approvals:\n  oidc:\n    client_id: x\n":                                              "needs issuer and client_id",
		"approvals:\n  oidc:\n    issuer: idp.example.com\n    client_id: x\n":                 "not an http(s) URL",
		"approvals:\n  oidc:\n    issuer: https://i\n    client_id: x\n    user_claim: name\n": "not sub or email",
		"approvals:\n  oidc:\n    issuer: https://i\n    client_id: x\n    audience: y\n":      "field audience not found",
	} {
		if _, err := load(yaml); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}

	// A short session key or a missing secret file stops the start.
	cfg, err = load("approvals:\n  addr: 127.0.0.1:0\n  session_key_file: key\n  oidc:\n    issuer: https://idp.example.com\n    client_id: agentpdp\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, closeAPI, err := approvalsComponents(&cfg, nil, logger); err == nil || !strings.Contains(err.Error(), "want at least 32") {
		t.Errorf("short session key: %v", err)
	} else {
		closeAPI()
	}
	cfg.Approvals.SessionKeyFile = ""
	cfg.Approvals.OIDC.ClientSecretFile = filepath.Join(dir, "missing")
	if _, closeAPI, err := approvalsComponents(&cfg, nil, logger); err == nil || !strings.Contains(err.Error(), "client_secret_file") {
		t.Errorf("missing secret file: %v", err)
	} else {
		closeAPI()
	}
}
