package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// fakeUpstream records what was forwarded and answers through fn as a
// server would (unit tests only; e2e/ runs real servers).
type fakeUpstream struct {
	mu     sync.Mutex
	sent   [][]byte
	answer func(msg []byte) [][]byte // replies to a forwarded message
	fn     ServerMessage
	closed bool
}

func (f *fakeUpstream) Send(_ context.Context, msg []byte, stream string) error {
	f.mu.Lock()
	f.sent = append(f.sent, append([]byte(nil), msg...))
	ans := f.answer
	f.mu.Unlock()
	if ans != nil {
		for _, r := range ans(msg) {
			f.fn(r, stream, nil)
		}
	}
	return nil
}

func (f *fakeUpstream) Close() error { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }

func (f *fakeUpstream) forwarded() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.sent...)
}

// ruleDecider decides by tool name: "deny_*" deny, "hold_*" approve, the
// rest allow; list items named "secret*" are denied.
type ruleDecider struct {
	mu      sync.Mutex
	inputs  []pdp.Input
	refused []pdp.Reason
}

func (r *ruleDecider) Decide(_ context.Context, in *pdp.Input) pdp.Decision {
	r.mu.Lock()
	r.inputs = append(r.inputs, *in)
	r.mu.Unlock()
	d := pdp.Decision{ID: pdp.NewDecisionID(), Effect: pdp.Allow}
	switch {
	case strings.HasPrefix(in.Action.Tool, "deny_"), strings.HasPrefix(in.Action.Tool, "secret"):
		d.Effect = pdp.Deny
		d.Reasons = []pdp.Reason{{Rule: "t.yaml#no", Effect: pdp.Deny, Message: "not this one"}}
	case strings.HasPrefix(in.Action.Tool, "hold_"):
		d.Effect = pdp.Approve
		d.Reasons = []pdp.Reason{{Rule: "t.yaml#hold", Effect: pdp.Approve, Message: "a person looks first"}}
	}
	return d
}

func (r *ruleDecider) Refuse(_ context.Context, _ *pdp.Input, reason pdp.Reason) pdp.Decision {
	r.mu.Lock()
	r.refused = append(r.refused, reason)
	r.mu.Unlock()
	return pdp.Decision{ID: pdp.NewDecisionID(), Effect: pdp.Deny, Reasons: []pdp.Reason{reason}}
}

// echoAnswer answers a request with {"echo": <method>}.
func echoAnswer(msg []byte) [][]byte {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(msg, &m)
	if len(m.ID) == 0 {
		return nil
	}
	return [][]byte{[]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"echo":"` + m.Method + `"}}`)}
}

type clientSink struct {
	mu   sync.Mutex
	msgs []map[string]any
	got  chan struct{}
}

func (c *clientSink) write(msg []byte, _ string) {
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		m = map[string]any{"unreadable": string(msg)}
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.got <- struct{}{}:
	default:
	}
}

func (c *clientSink) last(t *testing.T) map[string]any {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		if n := len(c.msgs); n > 0 {
			m := c.msgs[n-1]
			c.mu.Unlock()
			return m
		}
		c.mu.Unlock()
		select {
		case <-c.got:
		case <-deadline:
			t.Fatal("nothing reached the client")
		}
	}
}

func newTestSession(t *testing.T, answer func([]byte) [][]byte, timeout time.Duration) (*Session, *fakeUpstream, *clientSink, *ruleDecider) {
	t.Helper()
	d := &ruleDecider{}
	sink := &clientSink{got: make(chan struct{}, 1)}
	s := NewSession("s1", Identity{Agent: pdp.Agent{ID: "a", Authn: "static"}, User: pdp.User{ID: "u"}}, "127.0.0.1:1",
		&Options{Server: "srv", Decider: d, Methods: mcpmsg.Spec, CallTimeout: timeout}, sink.write)
	up := &fakeUpstream{answer: answer, fn: s.FromServer}
	s.Attach(up)
	t.Cleanup(func() { s.Close() })
	return s, up, sink, d
}

// An allowed call is forwarded byte for byte, with the input built from it.
func TestAllowedCallForwardedExactly(t *testing.T) {
	s, up, sink, d := newTestSession(t, echoAnswer, time.Second)
	raw := []byte(`{"jsonrpc":"2.0","id":7,  "method":"tools/call","params":{"name":"make","arguments":{"n":1}}}`)
	s.FromClient(context.Background(), raw)
	if f := up.forwarded(); len(f) != 1 || string(f[0]) != string(raw) {
		t.Fatalf("forwarded %q, want the exact bytes", f)
	}
	if res, _ := sink.last(t)["result"].(map[string]any); res["echo"] != "tools/call" {
		t.Errorf("answer %v", sink.last(t))
	}
	in := d.inputs[0]
	if in.Action.Kind != "mcp.tools/call" || in.Action.Tool != "make" || in.Action.Server != "srv" || in.Agent.ID != "a" ||
		in.User.ID != "u" || in.Context.Door != "mcp" || in.Context.SessionID != "s1" || in.Context.RequestID != "7" {
		t.Errorf("input %+v", in)
	}
}

// A denied or held tools/call is answered by the door, never forwarded.
func TestRefusedCallsAnsweredNotForwarded(t *testing.T) {
	for _, tc := range []struct{ tool, want string }{{"deny_it", "agentpdp denied this call: not this one"}, {"hold_it", "waiting for a person"}} {
		s, up, sink, _ := newTestSession(t, echoAnswer, time.Second)
		s.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"`+tc.tool+`"}}`))
		m := sink.last(t)
		res, _ := m["result"].(map[string]any)
		content, _ := res["content"].([]any)
		if m["id"] != "x" || res["isError"] != true || len(content) != 1 || !strings.Contains(content[0].(map[string]any)["text"].(string), tc.want) {
			t.Errorf("%s: answer %v", tc.tool, m)
		}
		if len(up.forwarded()) != 0 {
			t.Errorf("%s was forwarded", tc.tool)
		}
	}
	// Another request kind gets a JSON-RPC error with the decision id.
	s, _, sink, _ := newTestSession(t, echoAnswer, time.Second)
	s.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"deny_p"}}`))
	e, _ := sink.last(t)["error"].(map[string]any)
	if e["code"] != float64(codeDenied) || e["data"].(map[string]any)["decision_id"] == "" {
		t.Errorf("prompts/get refusal %v", sink.last(t))
	}
}

// List results keep only the items policy does not deny.
func TestListFiltered(t *testing.T) {
	s, _, sink, d := newTestSession(t, func(msg []byte) [][]byte {
		return [][]byte{[]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"},{"name":"secret_tool"},{"name":"hold_x"}],"nextCursor":"c"}}`)}
	}, time.Second)
	s.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	res := sink.last(t)["result"].(map[string]any)
	var names []string
	for _, it := range res["tools"].([]any) {
		names = append(names, it.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "ok,hold_x" || res["nextCursor"] != "c" {
		t.Errorf("filtered list %v", res)
	}
	var kinds []string
	for _, in := range d.inputs[1:] {
		kinds = append(kinds, in.Action.Kind+":"+in.Action.Tool)
	}
	if strings.Join(kinds, ",") != "mcp.tools/list:ok,mcp.tools/list:secret_tool,mcp.tools/list:hold_x" {
		t.Errorf("item decisions %v", kinds)
	}
}

// What the door cannot read is refused with a logged decision.
func TestMalformedRefusedAndLogged(t *testing.T) {
	for _, raw := range []string{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, `{"jsonrpc":"2.0","id":1,"method":"Tools/Call"}`, `not json`} {
		s, up, sink, d := newTestSession(t, echoAnswer, time.Second)
		s.FromClient(context.Background(), []byte(raw))
		e, _ := sink.last(t)["error"].(map[string]any)
		if e == nil || len(d.refused) != 1 || len(up.forwarded()) != 0 {
			t.Errorf("%s: answer %v, refused %v, forwarded %q", raw, sink.last(t), d.refused, up.forwarded())
		}
	}
}

// An upstream that does not answer gives the client an error in time; one
// that goes away fails what is pending and ends the session.
func TestUpstreamHangsOrDies(t *testing.T) {
	s, _, sink, _ := newTestSession(t, nil, 50*time.Millisecond)
	s.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}`))
	if e, _ := sink.last(t)["error"].(map[string]any); e == nil || !strings.Contains(e["message"].(string), "did not answer") {
		t.Errorf("hung upstream: %v", sink.last(t))
	}
	s, _, sink, _ = newTestSession(t, nil, time.Minute)
	s.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}`))
	s.FromServer(nil, "", errors.New("crashed"))
	if e, _ := sink.last(t)["error"].(map[string]any); e == nil || !strings.Contains(e["message"].(string), "went away") {
		t.Errorf("dead upstream: %v", sink.last(t))
	}
	select {
	case <-s.Done():
	case <-time.After(time.Second):
		t.Error("the session outlived its upstream")
	}
}

// A client's response passes only for a request the server made, once.
func TestClientResponsesOnlyToServerRequests(t *testing.T) {
	s, up, _, _ := newTestSession(t, nil, time.Second)
	resp := []byte(`{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept"}}`)
	s.FromClient(context.Background(), resp)
	if len(up.forwarded()) != 0 {
		t.Fatal("a response to no server request was forwarded")
	}
	s.FromServer([]byte(`{"jsonrpc":"2.0","id":"srv-1","method":"elicitation/create","params":{}}`), "", nil)
	s.FromClient(context.Background(), resp)
	s.FromClient(context.Background(), resp)
	if f := up.forwarded(); len(f) != 1 || string(f[0]) != string(resp) {
		t.Errorf("forwarded %q, want the one answer once", f)
	}
}

// BenchmarkSessionToolCall is the door's own work for one allowed
// tools/call: read, decide (a constant decider), forward, match the answer.
func BenchmarkSessionToolCall(b *testing.B) {
	benchRequest(b, &Options{Server: "srv", Decider: allowDecider{}, Methods: mcpmsg.Spec, CallTimeout: time.Minute}, echoAnswer,
		[]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_issue","arguments":{"repo":"a/b","title":"flaky test"}}}`))
}

// benchRequest measures a session with opts taking the client request raw,
// which its upstream answers with answer, and the answer reaching the
// client.
func benchRequest(b *testing.B, opts *Options, answer func([]byte) [][]byte, raw []byte) {
	var n int
	sink := func([]byte, string) { n++ }
	s := NewSession("s1", Identity{Agent: pdp.Agent{ID: "a"}}, "", opts, sink)
	up := &fakeUpstream{answer: answer, fn: s.FromServer}
	s.Attach(up)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		up.sent = up.sent[:0]
		s.FromClient(ctx, raw)
	}
	if n != b.N {
		b.Fatalf("%d answers for %d requests", n, b.N)
	}
}

// allowDecider measures the door alone.
type allowDecider struct{}

func (allowDecider) Decide(context.Context, *pdp.Input) pdp.Decision {
	return pdp.Decision{ID: "id", Effect: pdp.Allow}
}

// A NUL inside a claim cannot make two callers one (the bridge and the
// token-exchange cache are keyed by caller).
func TestCallerKeyNotFooledByNUL(t *testing.T) {
	a := Identity{Agent: pdp.Agent{ID: "a"}, User: pdp.User{ID: "b\x00c"}}
	b := Identity{Agent: pdp.Agent{ID: "a\x00b"}, User: pdp.User{ID: "c"}}
	if a.key() == b.key() || a.same(b) {
		t.Fatal("two callers share a key")
	}
	if !a.same(Identity{Agent: pdp.Agent{ID: "a"}, User: pdp.User{ID: "b\x00c"}}) {
		t.Fatal("the same caller is not the same")
	}
}

// A list result the door cannot read is refused under the request's own
// id, so the client's request ends (it was answered with a null id, and
// the request's stream waited until the client gave up).
func TestUnreadableListAnsweredUnderItsID(t *testing.T) {
	s, _, sink, _ := newTestSession(t, func(msg []byte) [][]byte {
		return [][]byte{[]byte(`{"jsonrpc":"2.0","id":7,"result":{"tools":[],"tools":[]}}`)}
	}, time.Second)
	s.FromClient(context.Background(), []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`))
	got := sink.last(t)
	if got["id"] != float64(7) || got["error"] == nil {
		t.Fatalf("answer %v, want an error under id 7", got)
	}
}

// On a bridged session (a stateless caller) a server request cannot reach
// the client: the door answers the server -32601, and the client sees
// nothing of it.
func TestBridgedSessionRefusesServerRequests(t *testing.T) {
	s, up, sink, _ := newTestSession(t, nil, time.Second)
	s.noServerReqs.Store(true)
	s.FromServer([]byte(`{"jsonrpc":"2.0","id":5,"method":"sampling/createMessage","params":{}}`), "", nil)
	deadline := time.Now().Add(5 * time.Second)
	for len(up.forwarded()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	f := up.forwarded()
	var reply struct {
		ID    int `json:"id"`
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if len(f) != 1 || json.Unmarshal(f[0], &reply) != nil || reply.ID != 5 || reply.Error.Code != mcpmsg.CodeMethodNotFound {
		t.Fatalf("the upstream got %q, want a -32601 answer to id 5", f)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.msgs) != 0 {
		t.Fatalf("the client got %v", sink.msgs)
	}
}

// BenchmarkSessionToolsList is the door's own work for a tools/list and
// its answer (20 tools with schemas): the items decided, the Mcp-Param
// declarations learnt and the definitions pinned (in memory); filtered,
// one tool is denied and the list re-encoded.
func BenchmarkSessionToolsList(b *testing.B) {
	var tools []string
	for i := range 20 {
		tools = append(tools, fmt.Sprintf(`{"name":"tool_%d","description":"Does thing %d to a repository, with care.","inputSchema":{"type":"object","properties":{"repo":{"type":"string","description":"owner/name"},"region":{"type":"string","x-mcp-header":"Region"},"count":{"type":"integer","minimum":1,"maximum":100}},"required":["repo"]}}`, i, i))
	}
	for _, bc := range []struct {
		name string
		d    pdp.Decider
	}{{"kept", allowDecider{}}, {"filtered", denyDecider{"tool_7"}}} {
		b.Run(bc.name, func(b *testing.B) {
			answer := []byte(`{"jsonrpc":"2.0","id":7,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`)
			pins, _ := OpenPins("")
			benchRequest(b, &Options{Server: "srv", Decider: bc.d, Methods: mcpmsg.Spec, CallTimeout: time.Minute, Pins: pins, ParamHeaders: NewParamHeaders()},
				func([]byte) [][]byte { return [][]byte{answer} }, []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`))
			if d := pins.Definition("srv", "tool_3"); d.Hash == "" {
				b.Fatal("tool_3 was not pinned")
			}
		})
	}
}

// denyDecider denies one tool and allows the rest.
type denyDecider struct{ tool string }

func (d denyDecider) Decide(_ context.Context, in *pdp.Input) pdp.Decision {
	if in.Action.Tool == d.tool {
		return pdp.Decision{ID: "id", Effect: pdp.Deny}
	}
	return pdp.Decision{ID: "id", Effect: pdp.Allow}
}
