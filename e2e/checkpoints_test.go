package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDecisionLogCheckpoints: the binary signs checkpoints of its decision
// log with a key kept outside its data dir, and a record cut from the
// log's end once it has stopped, which the hash chain alone cannot show,
// fails `audit verify --checkpoints` naming the missing record; the intact
// log passes.
func TestDecisionLogCheckpoints(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys", "checkpoint.pem")
	must(t, os.MkdirAll(filepath.Dir(keyFile), 0o700))
	out, err := exec.Command(agentpdpBin, "audit", "keygen", "--out", keyFile).CombinedOutput()
	if err != nil {
		t.Fatalf("audit keygen: %v\n%s", err, out)
	}
	keyID := regexp.MustCompile(`key_id (ed25519:[0-9a-f]{16})`).FindSubmatch(out)
	if keyID == nil {
		t.Fatalf("keygen names no key_id:\n%s", out)
	}

	data := filepath.Join(dir, "data")
	logFile := filepath.Join(data, "decisions.log")
	p := startAgentpdp(t, fmt.Sprintf("data_dir: %s\ndecision_log:\n  checkpoint_every: 2\n  checkpoint_key_file: %s\nadmin:\n  addr: 127.0.0.1:0\nenvoy:\n  addr: 127.0.0.1:0\n", data, keyFile))
	p.waitLine(t, map[string]any{"msg": "decision log checkpoints", "key_id": string(keyID[1])})
	adminAddr := p.listenerAddr(t, "admin")
	client := envoyClient(t, p.doorAddr(t, "envoy"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const decisions = 5
	for range decisions {
		_, err := client.Check(ctx, check(reviewer, "GET", "/v1/things", nil, ""))
		must(t, err)
	}
	// Every decision is logged before it is answered: the head is final.
	metrics := httpGet(t, "http://"+adminAddr+"/metrics")
	if !regexp.MustCompile(`(?m)^agentpdp_decision_log_head_seq 5$`).MatchString(metrics) {
		t.Errorf("/metrics: %q", regexp.MustCompile(`(?m)^agentpdp_decision_log_head_seq.*$`).FindString(metrics))
	}
	p.stop(t)

	verify := func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(agentpdpBin, append([]string{"audit", "verify"}, args...)...).CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit):
			return string(out), exit.ExitCode()
		}
		t.Fatal(err)
		return "", 0
	}
	cps := logFile + ".checkpoints"
	args := []string{"--log", logFile, "--checkpoints", cps, "--public-key", keyFile + ".pub"}
	// Checkpoints by count (every 2 records: which ones depends on timing)
	// and at shutdown (seq 5), all signed.
	out2, code := verify(args...)
	if code != 0 || !regexp.MustCompile(`(?m)^[1-9] checkpoint signature\(s\) verified with `+string(keyID[1])+`$`).MatchString(out2) ||
		!strings.Contains(out2, "ok: 5 records in 1 file(s)") || !strings.Contains(out2, "the last at seq 5") {
		t.Fatalf("the intact log: exit %d\n%s", code, out2)
	}

	src, err := os.ReadFile(logFile)
	must(t, err)
	lines := bytes.SplitAfter(src, []byte("\n"))
	must(t, os.WriteFile(logFile, bytes.Join(lines[:decisions-1], nil), 0o600))
	out2, code = verify(args...)
	if code != 1 || !strings.Contains(out2, "the log ends at seq 4 ("+logFile+":4), but this checkpoint says seq 5: 1 record missing at the tail (seq 5)") {
		t.Fatalf("the last record cut: exit %d\n%s", code, out2)
	}
	// The chain alone still holds: that is why checkpoints exist.
	if out2, code = verify(logFile); code != 0 {
		t.Fatalf("without checkpoints: exit %d\n%s", code, out2)
	}
	// And the binary will not continue a log behind its checkpoint.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second) // a binary that serves anyway is stopped
	defer rcancel()
	out, err = exec.CommandContext(rctx, agentpdpBin, "run", "--data-dir", data, "--envoy-addr", "127.0.0.1:0", "--admin-addr", "off").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the log ends at seq 4 but its last checkpoint ("+cps+") is at seq 5") {
		t.Fatalf("run on a cut log: %v\n%s", err, out)
	}
}
