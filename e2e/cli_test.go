package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// run serves an empty policy directory (files may arrive later) with a
// warning, and denies; check refuses it.
func TestEmptyPolicySet(t *testing.T) {
	pol, data := t.TempDir(), t.TempDir()
	p := startProc(t, "run", "--policies", pol, "--data-dir", data, "--envoy-addr", "127.0.0.1:0", "--admin-addr", "off")
	p.waitLine(t, map[string]any{"level": "WARN", "msg": "no policy files: every call is denied (default deny) until some arrive", "dir": pol})
	addr := p.doorAddr(t, "envoy")
	out, err := exec.Command(agentpdpBin, "eval", "--envoy", "--addr", addr, "--explain", "../policies/examples/check.json").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "effect: deny\n") || !strings.Contains(string(out), "envoy: answers 403 itself") {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = exec.Command(agentpdpBin, "check", pol).CombinedOutput()
	if code := exitCode(err); code != 1 || string(out) != "agentpdp: no policy files in "+pol+"\n" {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// eval --addr waits (up to --timeout) for a server still starting, as
// after `agentpdp run &`, and reaches a door on a Unix socket.
func TestEvalAddrWaitsForTheServer(t *testing.T) {
	dir := t.TempDir()
	sock := "unix://" + filepath.Join(dir, "envoy.sock")
	eval := exec.Command(agentpdpBin, "eval", "--envoy", "--addr", sock, "--timeout", "60s", "--explain", "../policies/examples/check.json")
	var out strings.Builder
	eval.Stdout, eval.Stderr = &out, &out
	must(t, eval.Start())
	p := startProc(t, "run", "--data-dir", dir, "--envoy-addr", sock, "--admin-addr", "off")
	p.waitLine(t, map[string]any{"msg": "serving", "door": "envoy"})
	if err := eval.Wait(); err != nil || !strings.HasPrefix(out.String(), "effect: approve\n") {
		t.Fatalf("%v\n%s", err, out.String())
	}
}
