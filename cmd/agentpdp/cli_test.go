package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// usageCommands lists the subcommands named in usage ("audit verify" as
// one), so a command added there is covered by the help test below.
func usageCommands() []string {
	var out []string
	for l := range strings.Lines(usage) {
		f := strings.Fields(l)
		if !strings.HasPrefix(l, "  agentpdp ") || len(f) < 2 {
			continue
		}
		name := f[1]
		if name == "audit" && len(f) > 2 {
			name += " " + f[2]
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

func TestHelpOnEverySubcommand(t *testing.T) {
	cmds := usageCommands()
	for _, want := range []string{"run", "eval", "test", "check", "audit verify", "version"} {
		if !slices.Contains(cmds, want) {
			t.Fatalf("usage does not list %q: %v", want, cmds)
		}
	}
	// The flags each command's help must show, besides its synopsis.
	flags := map[string][]string{
		"run":          {"-config", "-policies", "-data-dir", "-envoy-addr", "-admin-addr", "-decision-log"},
		"eval":         {"-policies", "-explain", "-envoy", "-config", "-addr", "-timeout"},
		"test":         {"-v"},
		"audit verify": {"-log"},
	}
	for _, cmd := range cmds {
		args := strings.Fields(cmd)
		var first string
		for _, h := range []string{"-h", "--help", "-help"} {
			code, out, errs := run(t, "", append(args, h)...)
			if code != 0 || errs != "" || !strings.HasPrefix(out, "Usage: agentpdp "+cmd) {
				t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want exit 0 and its usage on stdout", cmd, h, code, out, errs)
			}
			for _, f := range flags[cmd] {
				if !regexp.MustCompile(`\n  ` + f + `[ \t\n]`).MatchString(out) {
					t.Errorf("%s %s does not show flag %s:\n%s", cmd, h, f, out)
				}
			}
			if first == "" {
				first = out
			} else if out != first {
				t.Errorf("%s %s differs from -h:\n%s\n----\n%s", cmd, h, out, first)
			}
		}
		// help CMD says the same.
		if code, out, _ := run(t, "", "help", args[0]); code != 0 || out != first {
			t.Errorf("help %s: exit %d\n%s\nwant\n%s", args[0], code, out, first)
		}
	}
	if code, out, _ := run(t, "", "audit", "-h"); code != 0 || !strings.HasPrefix(out, "Usage: agentpdp audit verify") {
		t.Errorf("audit -h: exit %d\n%s", code, out)
	}
}

func TestCheckEmptyPolicySet(t *testing.T) {
	dir := t.TempDir()
	// What is not a policy file does not count.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "", "check", dir)
	if code != 1 || out != "" || errs != "agentpdp: no policy files in "+dir+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestRunWarnsOnEmptyPolicySet(t *testing.T) {
	logger, log := testLogger()
	cfg := testConfig(t)
	cfg.Policies = t.TempDir()
	cfg.DecisionLog.File = "off"
	cfg.Admin.Addr = "off"
	cfg.Envoy.Addr = "127.0.0.1:0"
	if err := cfg.finish(); err != nil {
		t.Fatal(err)
	}
	comps, closeAll, err := setup(t.Context(), cfg, logger)
	defer closeAll()
	if err != nil || len(comps) != 3 { // the Envoy door, the approvals sweeper and API
		t.Fatalf("setup: %v, %d components", err, len(comps))
	}
	if !strings.Contains(log.String(), `"level":"WARN","msg":"no policy files: every call is denied (default deny) until some arrive","dir":"`+cfg.Policies+`"`) {
		t.Errorf("no warning:\n%s", log)
	}
}

// The config file's YAML errors point at the line to fix (yaml.v3 says
// line 4 for the first, line 1 for the second).
func TestConfigYAMLErrorLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ src, want string }{
		{"policies: p\ndata_dir: d\nadmin: {addr: x}\nenvoy:\n  addr: a\n  jwt:\n    issuer: i\n    audiences: [a]\n    claims:\n      user: sub\n    hmac_secret_file: s\n  tls:\n    cert_file: c\n   key_file: k\n",
			":14: did not find expected key"},
		{"admin:\n  addr: x\n\tpprof: true\n", ":3:1: found a tab character"},
	} {
		p := filepath.Join(dir, "agentpdp.yaml")
		if err := os.WriteFile(p, []byte(tc.src), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs := run(t, "", "run", "--config", p)
		if code != 1 || !strings.HasPrefix(errs, "agentpdp: "+p+tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("exit %d, stderr %q; want %s", code, errs, p+tc.want)
		}
	}
}

// eval's JSON errors carry a line and column, also where encoding/json
// gives no offset.
func TestEvalErrorsAreLocated(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ src, want string }{
		{"{\n  \"action\": {\"kind\": \"http\"},\n  \"agnt\": {}\n}\n", `:3:3: json: unknown field "agnt"`},
		{"{\n  \"action\": {\"kind\": \"http\",\n", ":2:29: unexpected EOF"},
		{"{\n  \"action\": {\"kind\": \"http\"}\n}\n}\n", ":4:1: trailing data"},
	} {
		p := filepath.Join(dir, "in.json")
		if err := os.WriteFile(p, []byte(tc.src), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out, errs := run(t, "", "eval", p); code != 1 || out != "" || !strings.HasPrefix(errs, "agentpdp: "+p+tc.want) {
			t.Errorf("exit %d, stdout %q, stderr %q; want %s", code, out, errs, p+tc.want)
		}
	}
	// From stdin the file is "-".
	if code, _, errs := run(t, `{"action": {"kind": "http", "tol": 1}}`, "eval"); code != 1 || !strings.HasPrefix(errs, `agentpdp: -:1:29: json: unknown field "tol"`) {
		t.Errorf("stdin: exit %d, stderr %q", code, errs)
	}
}

// check warns about approve rules nobody could review, unless the config
// names default approvers.
func TestCheckWarnsOnApproveWithoutApprovers(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte("rules:\n  - id: hold-me\n    effect: approve\n    match: \"true\"\n  - id: fine\n    effect: approve\n    match: \"true\"\n    approvers: [group:sec]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.rego"), []byte("package agentpdp.x\n\napprove contains \"needs a look\" if input.action.tool == \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run(t, "", "check", dir)
	if code != 0 || !strings.Contains(out, "warning: r.yaml#hold-me holds calls but names no approvers") ||
		!strings.Contains(out, "warning: x.rego:3 approve holds calls") || strings.Contains(out, "#fine") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	cfg := filepath.Join(t.TempDir(), "agentpdp.yaml")
	if err := os.WriteFile(cfg, []byte("approvals:\n  default_approvers: [group:sec]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := run(t, "", "check", "--config", cfg, dir); code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("with default approvers: exit %d:\n%s", code, out)
	}
}
