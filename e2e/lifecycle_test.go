package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// waitExit waits at most d for agentpdp to exit on its own and returns
// its exit code.
func (p *proc) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("agentpdp still running %s after the failure:\n%s", d, p.log())
	}
	_ = p.cmd.Wait() // the exit code is the point, not the error
	if !p.cmd.ProcessState.Exited() {
		t.Fatalf("agentpdp did not exit on its own: %v\n%s", p.cmd.ProcessState, p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestComponentSetupFailureExits: a component that cannot start (the admin
// port is taken) makes agentpdp exit non-zero at once, naming it, even
// though the Envoy door was already listening.
func TestComponentSetupFailureExits(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer taken.Close()
	p := startAgentpdp(t, fmt.Sprintf("data_dir: %s\nadmin:\n  addr: %s\nenvoy:\n  addr: 127.0.0.1:0\n", t.TempDir(), taken.Addr()))
	p.waitLine(t, map[string]any{"msg": "serving", "door": "envoy"})
	if code := p.waitExit(t, time.Second); code == 0 {
		t.Errorf("agentpdp exited 0 with its admin port taken:\n%s", p.log())
	}
	if want := "agentpdp: admin: listen tcp " + taken.Addr().String(); !strings.Contains(p.log(), want) {
		t.Errorf("stderr does not say %q:\n%s", want, p.log())
	}
}
