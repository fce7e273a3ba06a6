package e2e

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/envoyauthz"
	"github.com/agentpdp/agentpdp/mcpproxy"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// lastInput records what a door asked the PDP.
type lastInput struct {
	mu sync.Mutex
	in *pdp.Input
}

func (l *lastInput) Decide(_ context.Context, in *pdp.Input) pdp.Decision {
	l.mu.Lock()
	c := *in
	l.in = &c
	l.mu.Unlock()
	return pdp.Decision{ID: pdp.NewDecisionID(), Effect: pdp.Deny, Reasons: []pdp.Reason{{Rule: "t#r", Effect: pdp.Deny, Message: "recorded"}}}
}

func (l *lastInput) take() *pdp.Input {
	l.mu.Lock()
	defer l.mu.Unlock()
	in := l.in
	l.in = nil
	return in
}

// TestDoorsMapMCPAlike: one table of JSON-RPC messages through both doors
// (the MCP proxy's session, the Envoy door's Check of the same body): the
// same action and digest for the same caller, and the same refusals.
func TestDoorsMapMCPAlike(t *testing.T) {
	const agent = "spiffe://example.org/agent/a"
	rec := &lastInput{}
	envoy, err := envoyauthz.New(envoyauthz.Config{}, rec, nil, nil)
	must(t, err)
	defer envoy.Close()
	var answered []byte
	sess := mcpproxy.NewSession("s", mcpproxy.Identity{Agent: pdp.Agent{ID: agent, Authn: "mtls"}}, "", &mcpproxy.Options{
		Server: "github", Decider: rec, Methods: mcpmsg.Spec, CallTimeout: time.Second,
	}, func(msg []byte, _ string) { answered = msg })
	sess.Attach(nopUpstream{})
	defer sess.Close()

	for _, tc := range []struct {
		name, body string
		refused    bool
	}{
		{"tools/call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"title":"x","labels":["a"],"n":1.5}}}`, false},
		{"tools/call, keys in another order", `{"params":{"arguments":{"n":1.5,"labels":["a"],"title":"x"},"name":"create_issue"},"method":"tools/call","id":"z","jsonrpc":"2.0"}`, false},
		{"resources/read", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///repo/.env"}}`, false},
		{"prompts/get", `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"review","arguments":{"pr":"42"}}}`, false},
		{"tools/list", `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`, false},
		{"duplicate key", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a","name":"b"}}`, true},
		{"case-colliding keys", `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"a","NAME":"b"}}`, true},
		{"method in another case", `{"jsonrpc":"2.0","id":7,"method":"Tools/Call","params":{"name":"a"}}`, true},
		{"no id on a request", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answered = nil
			sess.FromClient(context.Background(), []byte(tc.body))
			viaMCP := rec.take()
			resp, err := envoy.Check(context.Background(), check(agent, "POST", "/mcp", jsonCT, tc.body))
			must(t, err)
			viaEnvoy := rec.take()
			if tc.refused {
				if viaMCP != nil || viaEnvoy != nil || answered == nil || resp.GetDeniedResponse().GetStatus().GetCode() != 400 {
					t.Errorf("not refused alike: mcp asked %v, envoy asked %v, envoy answered %v", viaMCP, viaEnvoy, resp.GetDeniedResponse().GetStatus())
				}
				return
			}
			if viaMCP == nil || viaEnvoy == nil {
				t.Fatalf("a door did not ask: mcp %v envoy %v", viaMCP, viaEnvoy)
			}
			a, b := viaMCP.Action, viaEnvoy.Action
			b.HTTP = pdp.HTTP{} // the Envoy door adds what it saw of the HTTP request
			if !reflect.DeepEqual(a, b) {
				t.Errorf("actions differ:\n mcp   %+v\n envoy %+v", a, b)
			}
			// The digest binds the call, not the door: the same caller and
			// call give the same digest once the HTTP wrapping is set aside.
			viaEnvoy.Action.HTTP = pdp.HTTP{}
			if pdp.Digest(viaMCP) != pdp.Digest(viaEnvoy) {
				t.Errorf("digests differ: %s %s", pdp.Digest(viaMCP), pdp.Digest(viaEnvoy))
			}
		})
	}
}

type nopUpstream struct{}

func (nopUpstream) Send(context.Context, []byte, string) error { return nil }
func (nopUpstream) Close() error                               { return nil }
