package envoyauthz

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/agentpdp/agentpdp/pdp"
)

// constDecider answers every input with one effect, recording nothing.
type constDecider pdp.Effect

func (c constDecider) Decide(context.Context, *pdp.Input) pdp.Decision {
	return pdp.Decision{ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Effect: pdp.Effect(c), PolicyRevision: "sha256:abc",
		Reasons: []pdp.Reason{{Rule: "policies/github.rego#" + string(c), Effect: pdp.Effect(c), Message: "example"}}}
}

// envoyMCPRequest is a tools/call as Envoy sends it with the example
// envoy.yaml: mTLS principal, the usual headers, the body as bytes.
func envoyMCPRequest() *authv3.CheckRequest {
	return checkReq("POST", "/mcp",
		principal("spiffe://example.org/agent/reviewer"), ext("server", "github"),
		jsonBody(toolsCall),
		hdr(":scheme", "https"), hdr("accept", "application/json, text/event-stream"),
		hdr("content-length", "118"), hdr("mcp-protocol-version", "2025-06-18"),
		hdr("mcp-session-id", "5f0c9e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6"), hdr("x-forwarded-proto", "https"),
		hdr("x-request-id", "9b2f1c3e-1111-4a2b-9c3d-123456789abc"), hdr("x-envoy-auth-partial-body", "false"),
		hdr("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"))
}

func FuzzMapRequest(f *testing.F) {
	for _, r := range []*authv3.CheckRequest{
		envoyMCPRequest(),
		checkReq("GET", "/v1/items?a=1&b=%20", principal("spiffe://x/a"), hdr("x-forwarded-client-cert", `By=spiffe://x/gw;URI=spiffe://x/a`)),
		checkReq("POST", "/form", rawBody("application/x-www-form-urlencoded", []byte("a=1&b=2"))),
		checkReq("POST", "/mcp", jsonBody(`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`)),
		{},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, []byte(nil))
	}
	base, _ := proto.Marshal(checkReq("POST", "/mcp", hdr("content-type", "application/json")))
	f.Add(base, []byte(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`))
	f.Add(base, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,{"b":null}]}}}`))
	f.Add(base, []byte{0xff, '{'})
	f.Add(base, []byte("\xef\xbb\xbf "+toolsCall))
	f.Add(base, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`))
	f.Add(base, []byte(`{"id":1,"method":"Tools/Call","params":{"name":"a"}}`))
	for _, p := range []string{"/api/read/../admin", "/api/read/%2e%2e/admin", "/api/read/..%2fadmin", "/a//b/./c?access_token=x", `/a\b`, "/a/..;/b"} {
		b, _ := proto.Marshal(checkReq("GET", p))
		f.Add(b, []byte(nil))
	}

	s := newServer(f, Config{MaxHeaderBytes: 4096, MaxBodyBytes: 4096, TrustedHeaders: true}, constDecider(pdp.Allow))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data, rawBody []byte) {
		req := &authv3.CheckRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		if hr := req.GetAttributes().GetRequest().GetHttp(); hr != nil && len(rawBody) > 0 {
			hr.RawBody = rawBody
		}
		// mapRequest directly: Check would turn a panic into a deny.
		in, rej := s.mapRequest(ctx, proto.Clone(req).(*authv3.CheckRequest), time.Now())
		if in == nil {
			t.Fatal("no input, not even a partial one")
		}
		// Whole or partial, the input must be loggable as valid UTF-8
		// JSON, and never carry the credential.
		js, err := json.Marshal(in)
		if err != nil || !utf8.Valid(js) || strings.Contains(string(js), `\ufffd`) {
			t.Fatalf("input does not marshal cleanly: %s, %v", js, err)
		}
		if v, ok := in.Action.HTTP.Headers["authorization"]; ok && v != pdp.Redacted {
			t.Fatalf("authorization copied into the input: %q", v)
		}
		if in.Action.Kind == "" || in.Context.Door != "envoy" {
			t.Fatalf("incomplete input %+v", in)
		}
		if rej != nil {
			if rej.rule == "" || rej.msg == "" || !strings.HasPrefix(rej.rule, "builtin#") {
				t.Fatalf("rejection without a reason: %+v", rej)
			}
		} else {
			if (in.Action.Kind == "mcp.tools/call" || in.Action.Kind == "mcp.prompts/get") && in.Action.Tool == "" {
				t.Fatalf("%s without a tool", in.Action.Kind)
			}
			checkMapped(t, s, in)
		}
		resp, err := s.Check(ctx, req)
		if err != nil || resp == nil {
			t.Fatalf("Check: %v, %v", resp, err)
		}
		if dr := resp.GetDeniedResponse(); dr != nil {
			var b body
			if err := json.Unmarshal([]byte(dr.GetBody()), &b); err != nil || b.DecisionID == "" {
				t.Fatalf("deny body %q: %v", dr.GetBody(), err)
			}
			if len(b.Reasons) == 0 || b.Reasons[0].Rule == ruleInternal {
				t.Fatalf("Check panicked: %+v", b)
			}
			if rej == nil {
				t.Fatal("denied a request the decider allowed")
			}
		} else if rej != nil {
			t.Fatalf("allowed a request the door rejected (%s)", rej.msg)
		}
	})
}

// checkMapped holds an accepted input to the door's promises: one
// canonical path, JSON-RPC never passed as plain HTTP, no credential
// parameter in clear.
func checkMapped(t *testing.T, s *Server, in *pdp.Input) {
	h := &in.Action.HTTP
	if p := h.Path; p != "*" {
		if again, err := canonicalPath(p); err != nil || again != p || !strings.HasPrefix(p, "/") ||
			strings.Contains(p, "//") || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../") {
			t.Fatalf("path %q (raw %q) is not canonical: %q %v", p, h.RawPath, again, err)
		}
	}
	switch b := h.Body.(type) {
	case map[string]any, []any:
		if s.methods.Resembles(b) && in.Action.Kind == "http" {
			if m, ok := b.(map[string]any); !ok || m["method"] != nil {
				t.Fatalf("a JSON-RPC-like body passed as plain HTTP: %v", b)
			}
		}
	}
	for k, vs := range h.Query {
		if s.credentialParam(k) {
			for _, v := range vs {
				if v != pdp.Redacted {
					t.Fatalf("credential parameter %s in clear", k)
				}
			}
		}
	}
}

// The door's own overhead: mapping, response building and metrics, with a
// decider that costs nothing.
func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name   string
		effect pdp.Effect
		req    *authv3.CheckRequest
	}{
		{"mcp-allow", pdp.Allow, envoyMCPRequest()},
		{"mcp-deny", pdp.Deny, envoyMCPRequest()},
		{"http-get-allow", pdp.Allow, checkReq("GET", "/v1/items?a=1", principal("spiffe://x/a"))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newServer(b, Config{TrustedHeaders: true}, constDecider(bc.effect))
			ctx := context.Background()
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if resp, _ := s.Check(ctx, bc.req); resp == nil {
					b.Fatal("no response")
				}
			}
		})
	}
}

// BenchmarkMap is mapping alone.
func BenchmarkMap(b *testing.B) {
	for _, bc := range []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"mcp-tools-call", envoyMCPRequest()},
		{"http-get", checkReq("GET", "/v1/items?a=1", principal("spiffe://x/a"))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newServer(b, Config{}, constDecider(pdp.Allow))
			ctx := context.Background()
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if _, rej := s.mapRequest(ctx, bc.req, time.Now()); rej != nil {
					b.Fatal(rej)
				}
			}
		})
	}
}
