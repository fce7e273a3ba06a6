package pdp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func digestInput(t testing.TB, args string) *Input {
	t.Helper()
	in := &Input{
		Agent: Agent{ID: "spiffe://example.org/agent/code-reviewer", Type: "coding-assistant"},
		User:  User{ID: "alice@example.com", Groups: []string{"eng"}},
		Action: Action{
			Kind: "mcp.tools/call", Server: "github", Tool: "create_issue",
			Resource: "file:///repo/README.md",
			HTTP: HTTP{
				Method: "POST", Host: "api.example.com", Path: "/v1/pay",
				Query:   map[string][]string{"b": {"2"}, "a": {"1", "0"}},
				Headers: map[string]string{"x-request-id": "r1"},
				Body:    map[string]any{"amount": 10.5},
			},
		},
		Context: Context{Door: "mcp", RequestID: "req-1", SessionID: "s-1", Time: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)},
	}
	if err := json.Unmarshal([]byte(args), &in.Action.Arguments); err != nil {
		t.Fatal(err)
	}
	return in
}

const digestArgs = `{"repo":"agentpdp/agentpdp","title":"Fix it","labels":["bug","ci"],"meta":{"z":1,"a":[true,null]}}`

// The exact document hashed, so other implementations can reproduce it.
func TestDigestDocument(t *testing.T) {
	in := digestInput(t, digestArgs)
	doc, err := appendDigestDoc(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"agent":"spiffe://example.org/agent/code-reviewer",` +
		`"arguments":{"labels":["bug","ci"],"meta":{"a":[true,null],"z":1},"repo":"agentpdp/agentpdp","title":"Fix it"},` +
		`"http":{"body":{"amount":10.5},"host":"api.example.com","method":"POST","path":"/v1/pay","query":{"a":["1","0"],"b":["2"]}},` +
		`"kind":"mcp.tools/call","resource":"file:///repo/README.md","server":"github","tool":"create_issue","user":"alice@example.com"}`
	if string(doc) != want {
		t.Fatalf("digest document\n got %s\nwant %s", doc, want)
	}
	sum := sha256.Sum256([]byte(want))
	if got := Digest(in); got != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("Digest = %s", got)
	}
}

func TestDigestAbsentIsOmitted(t *testing.T) {
	in := &Input{Action: Action{Kind: "http", HTTP: HTTP{Method: "GET"}}}
	doc, err := appendDigestDoc(nil, in)
	if err != nil || string(doc) != `{"http":{"method":"GET"},"kind":"http"}` {
		t.Errorf("doc = %s, %v", doc, err)
	}
	empty := &Input{Action: Action{Kind: "http", HTTP: HTTP{Method: "GET"}, Arguments: map[string]any{}}}
	if Digest(in) != Digest(empty) {
		t.Error("empty arguments should count as absent, as in the input document")
	}
	// An empty-string argument is a value, not an absence.
	withEmpty := &Input{Action: Action{Kind: "http", HTTP: HTTP{Method: "GET"}, Arguments: map[string]any{"a": ""}}}
	if Digest(in) == Digest(withEmpty) {
		t.Error("an argument with an empty value must change the digest")
	}
}

func TestDigestIgnoresKeyOrder(t *testing.T) {
	a := digestInput(t, digestArgs)
	b := digestInput(t, `{"meta":{"a":[true,null],"z":1.0},"title":"Fix it","labels":["bug","ci"],"repo":"agentpdp/agentpdp"}`)
	if Digest(a) != Digest(b) {
		t.Errorf("same call, different member order: %s != %s", Digest(a), Digest(b))
	}
	// Repeated calls agree (map iteration order varies between them).
	for range 20 {
		if Digest(a) != Digest(b) {
			t.Fatal("digest not deterministic")
		}
	}
}

func TestDigestBindsTheCall(t *testing.T) {
	base := Digest(digestInput(t, digestArgs))
	changes := map[string]func(*Input){
		"argument":        func(in *Input) { in.Action.Arguments["title"] = "Fix it!" },
		"nested argument": func(in *Input) { in.Action.Arguments["meta"].(map[string]any)["z"] = 2.0 },
		"new argument":    func(in *Input) { in.Action.Arguments["x"] = nil },
		"argument type":   func(in *Input) { in.Action.Arguments["labels"] = "bug,ci" },
		"tool":            func(in *Input) { in.Action.Tool = "delete_repo" },
		"server":          func(in *Input) { in.Action.Server = "gitlab" },
		"kind":            func(in *Input) { in.Action.Kind = "mcp.resources/read" },
		"resource":        func(in *Input) { in.Action.Resource = "" },
		"user":            func(in *Input) { in.User.ID = "bob@example.com" },
		"no user":         func(in *Input) { in.User.ID = "" },
		"agent":           func(in *Input) { in.Agent.ID = "spiffe://example.org/agent/other" },
		"http method":     func(in *Input) { in.Action.HTTP.Method = "PUT" },
		"http host":       func(in *Input) { in.Action.HTTP.Host = "evil.example.com" },
		"http path":       func(in *Input) { in.Action.HTTP.Path = "/v1/pay/" },
		"http query":      func(in *Input) { in.Action.HTTP.Query["a"] = []string{"0", "1"} },
		"http body":       func(in *Input) { in.Action.HTTP.Body = map[string]any{"amount": 1e6} },
	}
	for name, change := range changes {
		in := digestInput(t, digestArgs)
		change(in)
		if Digest(in) == base {
			t.Errorf("changing the %s did not change the digest", name)
		}
	}
	same := map[string]func(*Input){
		"request id":   func(in *Input) { in.Context.RequestID = "req-2" },
		"time":         func(in *Input) { in.Context.Time = in.Context.Time.Add(time.Hour) },
		"session":      func(in *Input) { in.Context.SessionID = "s-2" },
		"headers":      func(in *Input) { in.Action.HTTP.Headers["x-request-id"] = "r2" },
		"user groups":  func(in *Input) { in.User.Groups = nil },
		"agent type":   func(in *Input) { in.Agent.Type = "other" },
		"rate":         func(in *Input) { in.Context.Rate.AgentCallsLastMinute = 99 },
		"digest field": func(in *Input) { in.Action.Digest = "sha256:00" },
	}
	for name, change := range same {
		in := digestInput(t, digestArgs)
		change(in)
		if Digest(in) != base {
			t.Errorf("changing the %s changed the digest", name)
		}
	}
}

func TestDigestNoCanonicalForm(t *testing.T) {
	for name, in := range map[string]*Input{
		"NaN argument":      {Action: Action{Kind: "x", Arguments: map[string]any{"n": math.NaN()}}},
		"invalid UTF-8":     {Action: Action{Kind: "x", Tool: "a\xffb"}},
		"unsupported type":  {Action: Action{Kind: "x", HTTP: HTTP{Body: make(chan int)}}},
		"bad utf-8 in user": {User: User{ID: "\xc3"}, Action: Action{Kind: "x"}},
	} {
		if _, err := DigestErr(in); err == nil {
			t.Errorf("%s: DigestErr gave no error", name)
		}
		a, b := Digest(in), Digest(in)
		if a == b || !strings.HasPrefix(a, "sha256:") || len(a) != 71 {
			t.Errorf("%s: Digest must be random and unmatchable, got %s and %s", name, a, b)
		}
	}
}

func BenchmarkDigest(b *testing.B) {
	in := digestInput(b, `{"repo":"agentpdp/agentpdp","title":"Fix the flaky test in pdp/decisionlog",
		"body":"The test waits on a sleep; use a condition instead.\nSee #42 and the CI logs.","labels":["bug","ci","good first issue"],
		"assignees":["alice","bob"],"milestone":3,"draft":false,"meta":{"source":"agent","priority":2,"tags":{"team":"platform"}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if d := Digest(in); len(d) != 71 {
			b.Fatal(d)
		}
	}
}
