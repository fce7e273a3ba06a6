package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/policies"
)

// The README is run as written: the quick start step by step against the
// real binary, and every "$ agentpdp …" sample. Decision ids and the
// policy revision change from run to run (the revision with every policy
// edit), so they are compared as placeholders; everything else must match.

var (
	uuidRe     = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	revisionRe = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	// The tests serve the approvals API on a free port; the README
	// shows the default one.
	statusURLRe = regexp.MustCompile(`"status_url":"http://127\.0\.0\.1:[0-9]+/`)
)

func masked(s string) string {
	s = statusURLRe.ReplaceAllString(s, `"status_url":"http://127.0.0.1:9494/`)
	return revisionRe.ReplaceAllString(uuidRe.ReplaceAllString(s, "<decision-id>"), "sha256:<revision>")
}

type mdBlock struct{ lang, text string }

// readmeBlocks returns the fenced blocks of the README section under
// heading (up to the next heading of its level), in order.
func readmeBlocks(t *testing.T, heading string) []mdBlock {
	t.Helper()
	src, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	if heading != "" {
		i := strings.Index(text, "\n"+heading+"\n")
		if i < 0 {
			t.Fatalf("README has no %q section", heading)
		}
		text = text[i+len(heading)+2:]
		level := heading[:strings.IndexByte(heading, ' ')+1]
		if j := strings.Index(text, "\n"+level); j >= 0 {
			text = text[:j]
		}
	}
	var blocks []mdBlock
	var cur *mdBlock
	for line := range strings.Lines(text) {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &mdBlock{lang: strings.TrimSpace(line[3:])}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line
		}
	}
	return blocks
}

// runREADMECommand runs one README command line from the module root,
// with the binary under test for bin/agentpdp or agentpdp and the given
// replacements of whole arguments or their prefixes.
func runREADMECommand(t *testing.T, line string, replace map[string]string) (string, error) {
	t.Helper()
	args := strings.Fields(strings.TrimPrefix(line, "$ "))
	if args[0] != "bin/agentpdp" && args[0] != "agentpdp" {
		t.Fatalf("not an agentpdp command: %q", line)
	}
	args = args[1:]
	for i, a := range args {
		for from, to := range replace {
			if a == from || strings.HasPrefix(a, from+"/") {
				args[i] = to + a[len(from):]
			}
		}
	}
	cmd := exec.Command(agentpdpBin, args...)
	cmd.Dir = ".." // the README's paths are relative to the repository
	out, err := cmd.Output()
	return string(out), err
}

func TestREADMEQuickStart(t *testing.T) {
	type step struct{ cmd, output string }
	var steps []step
	for _, b := range readmeBlocks(t, "## Quick start") {
		switch {
		case b.lang == "sh":
			for l := range strings.Lines(b.text) {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					steps = append(steps, step{cmd: l})
				}
			}
		case b.lang == "" && len(steps) > 0:
			steps[len(steps)-1].output = b.text // what the command before it prints
		}
	}
	dataDir := t.TempDir()
	replace := map[string]string{"agentpdp-data": dataDir}
	var server *proc
	var decisionIDs []string
	stopped := false
	for _, s := range steps {
		switch {
		case s.cmd == "go build -o bin/agentpdp ./cmd/agentpdp":
			// TestMain built the binary under test with this command.
		case s.cmd == "bin/agentpdp run &":
			// As written, but on free ports and in a temporary data
			// directory (the README's defaults, given as flags).
			server = startProc(t, "run", "--data-dir", dataDir, "--envoy-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
			replace["127.0.0.1:9191"] = server.doorAddr(t, "envoy")
			server.waitLine(t, map[string]any{"msg": "serving", "listener": "admin"})
		case s.cmd == "kill %1":
			if server == nil {
				t.Fatal("the quick start stops a server it did not start")
			}
			server.stop(t)
			stopped = true
		case s.cmd == "make test":
			// This test is part of it.
		case strings.HasPrefix(s.cmd, "bin/agentpdp "):
			if strings.Contains(s.cmd, "127.0.0.1:9191") && (server == nil || stopped) {
				t.Fatalf("%q needs the server running", s.cmd)
			}
			out, err := runREADMECommand(t, s.cmd, replace)
			if err != nil {
				t.Fatalf("%s: %v\n%s", s.cmd, err, out)
			}
			if s.output != "" && masked(out) != masked(s.output) {
				t.Errorf("%s printed\n%s\nthe README shows\n%s", s.cmd, out, s.output)
			}
			if strings.Contains(s.cmd, "--addr") {
				decisionIDs = append(decisionIDs, uuidRe.FindString(out))
			}
		default:
			t.Fatalf("this test does not know how to run the README's quick start step %q", s.cmd)
		}
	}
	if server == nil || !stopped || len(decisionIDs) == 0 {
		t.Fatalf("the quick start no longer starts, asks and stops a server: %q", steps)
	}
	// The server decided and logged what it was asked, in --data-dir.
	logged, err := os.ReadFile(filepath.Join(dataDir, "decisions.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range decisionIDs {
		if id == "" || !strings.Contains(string(logged), `"decision_id":"`+id+`"`) {
			t.Errorf("decision %q is not in %s:\n%s", id, dataDir, logged)
		}
	}
}

// Every "$ agentpdp …" sample in the README prints what it shows.
func TestREADMESamples(t *testing.T) {
	n := 0
	for _, b := range readmeBlocks(t, "") {
		first, rest, _ := strings.Cut(b.text, "\n")
		if !strings.HasPrefix(first, "$ agentpdp ") && !strings.HasPrefix(first, "$ bin/agentpdp ") {
			continue
		}
		n++
		out, err := runREADMECommand(t, first, nil)
		if err != nil {
			t.Errorf("%s: %v\n%s", first, err, out)
			continue
		}
		if masked(out) != masked(rest) {
			t.Errorf("%s printed\n%s\nthe README shows\n%s", first, out, rest)
		}
	}
	if n == 0 {
		t.Fatal("no $ agentpdp samples found in the README")
	}
}

// TestREADMEShowsTheCurrentRevision: the samples compare revisions as
// placeholders, so this holds the revision they show to the built-in
// policy set's: a policy edit that leaves the README's samples stale fails.
func TestREADMEShowsTheCurrentRevision(t *testing.T) {
	set, err := pdp.LoadFS(context.Background(), policies.FS, "builtin:policies")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	shown := regexp.MustCompile(`policy (sha256:[0-9a-f]{64})`).FindAllStringSubmatch(string(src), -1)
	if len(shown) == 0 {
		t.Fatal("the README shows no policy revision")
	}
	for _, m := range shown {
		if m[1] != set.Revision {
			t.Errorf("the README shows policy %s; the built-in set is %s (regenerate the samples)", m[1], set.Revision)
		}
	}
}
