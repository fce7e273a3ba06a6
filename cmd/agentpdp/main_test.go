package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestBuiltinExamplesPassTheirTests(t *testing.T) {
	code, out, errs := run(t, "", "test")
	if code != 0 || !strings.Contains(out, " passed, 0 failed") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
}

func TestCheckBuiltin(t *testing.T) {
	code, out, _ := run(t, "", "check")
	if code != 0 || !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, "revision sha256:") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestEvalExplainShowsEachEffect(t *testing.T) {
	for _, effect := range []string{"allow", "deny", "approve"} {
		t.Run(effect, func(t *testing.T) {
			file := filepath.Join("..", "..", "policies", "examples", effect+".json")
			code, out, errs := run(t, "", "eval", "--explain", file)
			if code != 0 || !strings.HasPrefix(out, "effect: "+effect+"\n") || !strings.Contains(out, "#") {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
		})
	}
}

func TestEvalStdinJSON(t *testing.T) {
	code, out, errs := run(t, `{"action": {"kind": "http"}}`, "eval", "-")
	if code != 0 || !strings.Contains(out, `"effect": "deny"`) || !strings.Contains(out, "builtin#no-agent") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
}

func TestBadInputsGiveOneLocatedLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badJSON := write("in.json", "{\n  \"action\": {\"kind\": \"http\",}\n}")
	badCfg := write("agentpdp.yaml", "policies: x\nenvoy:\n  adr: 1\n")
	badRego := write("rego/p.rego", "package agentpdp.p\n\ndeny contains x if {\n")
	write("cel/r.yaml", "rules:\n  - id: a\n    effect: deny\n    match: agent.nmae == 'x'\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", badJSON}, badJSON + ":2:"},
		{[]string{"run", "--config", badCfg}, badCfg + ":3: field adr not found"},
		{[]string{"check", filepath.Dir(badRego)}, badRego + ":4:"},
		{[]string{"check", filepath.Join(dir, "cel")}, filepath.Join(dir, "cel", "r.yaml") + ":4:17: undefined field 'nmae'"},
		{[]string{"check", filepath.Join(dir, "nope")}, "no such file or directory"},
		{[]string{"audit", "verify", filepath.Join(dir, "missing.log")}, "missing.log"},
	} {
		code, out, errs := run(t, "", tc.args...)
		if code != 1 || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, out, errs, tc.want)
		}
		if strings.Count(strings.TrimSpace(errs), "\n") > 0 && !strings.HasPrefix(tc.args[0], "check") {
			t.Errorf("%v: more than one error line: %q", tc.args, errs)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"eval", "--nope"}, {"audit"}} {
		if code, _, _ := run(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := run(t, "", "version"); code != 0 || !strings.HasPrefix(out, "agentpdp ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestConfigPathsAreRelativeToTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agentpdp.yaml")
	if err := os.WriteFile(p, []byte("policies: pol\nenvoy:\n  jwt:\n    hmac_secret_file: secret\n  tls:\n    cert_file: /abs/cert.pem\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policies != filepath.Join(dir, "pol") || cfg.Envoy.JWT.HMACSecretFile != filepath.Join(dir, "secret") || cfg.Envoy.TLS.CertFile != "/abs/cert.pem" {
		t.Fatalf("paths: %q %q %q", cfg.Policies, cfg.Envoy.JWT.HMACSecretFile, cfg.Envoy.TLS.CertFile)
	}
	cfg, err = loadConfig(p, func(k string) string {
		if k == "AGENTPDP_POLICIES" {
			return "/elsewhere"
		}
		return ""
	})
	if err != nil || cfg.Policies != "/elsewhere" {
		t.Fatalf("env override: %q %v", cfg.Policies, err)
	}
}
