package pdp

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

func viaEncodingJSON(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	out, err := jcs.Transform(bytes.TrimSpace(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEncodersMatchEncodingJSON(t *testing.T) {
	full := benchInput()
	full.Agent = Agent{ID: reviewer, Authn: "mtls", Type: "t", OwnerTeam: "o", Environment: "prod", TrustLevel: "low",
		Claims: map[string]any{"z": 1.5, "a": []any{"\u2028", nil, true}}, Registered: true, AllowedActions: []string{"a.*"},
		AllowedUserGroups: []string{"g"}, RequiresApproval: []string{"r"}, MaxCallsPerMinute: 7, Expires: t0.Add(time.Hour)}
	full.User = User{ID: "alice", Groups: []string{"eng", "é"}, Claims: map[string]any{"\U0001F600": "x", "b": map[string]any{}}}
	full.Delegation.Purpose = "review <PR> & \"42\""
	full.Action.Resource, full.Action.Digest = "file:///etc/passwd", "sha256:x"
	full.Action.HTTP = HTTP{Method: "POST", Host: "h", Path: "/p?q", RawPath: "/./p", Query: map[string][]string{"b": {"1", "2"}, "a": {}},
		Headers: map[string]string{"x-b": "1", "content-type": "application/json"}, Body: []any{1e21, 1e-7, -0.0}, BodyTruncated: true}
	full.Context = Context{Door: "envoy", Time: t0.Add(123456789), RequestID: "r", SessionID: "s", Extensions: map[string]string{"server": "gh"},
		Source: Source{Address: "127.0.0.1:1", Principal: "spiffe://x"}, Rate: Rate{AgentCallsLastMinute: 3},
		ToolDefinition: ToolDefinition{Changed: true, Hash: "h1", PinnedHash: "h2"}}
	for name, in := range map[string]*Input{"minimal": {Action: Action{Kind: "http"}}, "bench": benchInput(), "full": full} {
		got, err := appendInput(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		if want := viaEncodingJSON(t, in); !bytes.Equal(got, want) {
			t.Errorf("%s input:\n got %s\nwant %s", name, got, want)
		}
	}
	for name, d := range map[string]*Decision{
		"allow": {ID: "id", Effect: Allow, PolicyRevision: "sha256:r", Reasons: []Reason{{Rule: "a#b", Effect: Allow, Message: "m"}}},
		"approve": {ID: "id", Effect: Approve, InputHash: "sha256:i", PolicyRevision: "r", Shadow: true, ShadowEffect: Deny,
			Approval: &ApprovalRequest{Approvers: []string{"group:a"}, Min: 2, TTL: "1h", Reason: "big"},
			Reasons:  []Reason{{Rule: "x", Effect: Approve}, {Rule: "y", Effect: Deny, Shadow: true}}},
		"empty": {},
	} {
		got, err := appendDecision(nil, d)
		if err != nil {
			t.Fatal(err)
		}
		if want := viaEncodingJSON(t, d); !bytes.Equal(got, want) {
			t.Errorf("%s decision:\n got %s\nwant %s", name, got, want)
		}
	}
}

func FuzzAppendInputCanonical(f *testing.F) {
	f.Add([]byte(`{"action":{"kind":"http","arguments":{"a":[1,"\u2028",{"b":null}]}},"user":{"claims":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := DecodeInput(b)
		if err != nil {
			return
		}
		out, err := appendInput(nil, in)
		if err != nil {
			return // no canonical form (e.g. invalid UTF-8): the caller denies
		}
		if !jcs.IsCanonical(out) {
			t.Fatalf("not canonical: %s", out)
		}
	})
}

func BenchmarkEncodeInput(b *testing.B) {
	in := benchInput()
	b.Run("appender", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 2048)
		for b.Loop() {
			var err error
			if buf, err = appendInput(buf[:0], in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			viaEncodingJSON(b, in)
		}
	})
}
