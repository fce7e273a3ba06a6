package mcpproxy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/approvals"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// holdSession is a session whose decider is a real PDP that holds hold_*
// tools for one "sec" reviewer, with a real approvals service (SQLite).
func holdSession(t *testing.T, holdTimeout time.Duration) (*Session, *fakeUpstream, *clientSink, *approvals.Service) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(`rules:
  - id: any
    effect: allow
    match: "true"
  - id: hold
    effect: approve
    match: action.tool.startsWith("hold_")
    message: a person looks first
    approvers: [sec]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := pdp.LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := approvals.OpenSQLite(context.Background(), filepath.Join(dir, "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc := approvals.New(approvals.Options{Store: store})
	p := pdp.New(set, pdp.Options{AllowUnknownAgents: true, Holder: svc})
	sink := &clientSink{got: make(chan struct{}, 1)}
	s := NewSession("s1", Identity{Agent: pdp.Agent{ID: "a", Authn: "static"}, User: pdp.User{ID: "u"}}, "127.0.0.1:1",
		&Options{Server: "srv", Decider: p, Methods: mcpmsg.Spec, CallTimeout: 5 * time.Second, Approvals: svc, HoldTimeout: holdTimeout}, sink.write)
	up := &fakeUpstream{answer: echoAnswer, fn: s.FromServer}
	s.Attach(up)
	t.Cleanup(func() { s.Close() })
	return s, up, sink, svc
}

// waitFor returns the first client message for which ok is true.
func (c *clientSink) waitFor(t *testing.T, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, m := range c.msgs {
			if ok(m) {
				c.mu.Unlock()
				return m
			}
		}
		c.mu.Unlock()
		select {
		case <-c.got:
		case <-deadline:
			t.Fatal("the awaited message never reached the client")
		}
	}
}

func responseTo(id float64) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["id"] == id && (m["result"] != nil || m["error"] != nil) }
}

func pendingID(t *testing.T, svc *approvals.Service) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l, err := svc.List(context.Background(), approvals.Filter{State: approvals.Pending})
		if err != nil {
			t.Fatal(err)
		}
		if len(l) == 1 {
			return l[0].ID
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no pending approval")
	return ""
}

// Held, with progress to the client; approved; decided again and
// forwarded once; the identical call after that is held again.
func TestHeldCallForwardedWhenApproved(t *testing.T) {
	old := progressEvery
	progressEvery = 20 * time.Millisecond
	t.Cleanup(func() { progressEvery = old })
	s, up, sink, svc := holdSession(t, time.Minute)
	raw := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hold_write","arguments":{"p":".env"},"_meta":{"progressToken":"tok"}}}`)
	s.FromClient(context.Background(), raw)
	sink.waitFor(t, func(m map[string]any) bool {
		p, _ := m["params"].(map[string]any)
		return m["method"] == "notifications/progress" && p["progressToken"] == "tok" && p["progress"].(float64) >= 1
	})
	if n := len(up.forwarded()); n != 0 {
		t.Fatalf("forwarded %d before approval", n)
	}
	id := pendingID(t, svc)
	if _, err := svc.Review(context.Background(), id, approvals.Reviewer{ID: "sec"}, approvals.ReviewRequest{Verdict: approvals.VerdictApprove}); err != nil {
		t.Fatal(err)
	}
	ans := sink.waitFor(t, responseTo(1))
	if res, _ := ans["result"].(map[string]any); res["echo"] != "tools/call" {
		t.Fatalf("answer %v", ans)
	}
	if f := up.forwarded(); len(f) != 1 || string(f[0]) != string(raw) {
		t.Fatalf("forwarded %q", f)
	}
	if a, _ := svc.Get(context.Background(), id); a.State != approvals.Consumed {
		t.Fatalf("grant %s after use", a.State)
	}

	s.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hold_write","arguments":{"p":".env"}}}`))
	if again := pendingID(t, svc); again == id {
		t.Fatal("the used grant was joined")
	}
	if n := len(up.forwarded()); n != 1 {
		t.Fatalf("the replay was forwarded (%d)", n)
	}
}

func TestHeldCallDeniedOrTimedOut(t *testing.T) {
	s, up, sink, svc := holdSession(t, time.Minute)
	s.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hold_write"}}`))
	id := pendingID(t, svc)
	if _, err := svc.Review(context.Background(), id, approvals.Reviewer{ID: "sec"}, approvals.ReviewRequest{Verdict: approvals.VerdictDeny, Comment: "not on a Friday"}); err != nil {
		t.Fatal(err)
	}
	ans := sink.waitFor(t, responseTo(1))
	res, _ := ans["result"].(map[string]any)
	if res["isError"] != true || !strings.Contains(text(res), "sec denied it") || !strings.Contains(text(res), "not on a Friday") {
		t.Fatalf("denied answer %v", ans)
	}

	s2, up2, sink2, svc2 := holdSession(t, 30*time.Millisecond)
	s2.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hold_write"}}`))
	ans = sink2.waitFor(t, responseTo(1))
	res, _ = ans["result"].(map[string]any)
	id2 := pendingID(t, svc2)
	meta, _ := res["_meta"].(map[string]any)
	dec, _ := meta["io.agentpdp/decision"].(map[string]any)
	if res["isError"] != true || dec["status"] != "approval_pending" || dec["approval_id"] != id2 || !strings.Contains(text(res), id2) {
		t.Fatalf("pending answer %v", ans)
	}
	if len(up.forwarded())+len(up2.forwarded()) != 0 {
		t.Fatal("a call that was not approved was forwarded")
	}
}

func text(res map[string]any) string {
	c, _ := res["content"].([]any)
	if len(c) == 0 {
		return ""
	}
	m, _ := c[0].(map[string]any)
	s, _ := m["text"].(string)
	return s
}
