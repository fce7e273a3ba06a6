package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// The anchor policy port (envoyauthz/bench/anchor/cel): agents are mTLS
// peers, the user comes from an RFC 8693 token, GET /api/read/... is open.
const (
	codeReviewer = "spiffe://example.org/agent/code-reviewer"
	gateway      = "spiffe://example.org/envoy/gateway"
)

// hardenedDoor runs agentpdp on the anchor policy with extra envoy config.
func hardenedDoor(t *testing.T, envoyExtra string) (client authv3.AuthorizationClient, cc *grpc.ClientConn, p *proc, logFile, adminAddr string) {
	t.Helper()
	return jwtDoor(t, "../envoyauthz/bench/anchor/cel", "", envoyExtra)
}

// jwtDoor runs agentpdp's Envoy door and admin listener on policies (a
// directory relative to e2e/), verifying tokens signed with hmacSecret,
// with top added to the config and envoyExtra to its envoy: section
// (indented two spaces), and dials the door.
func jwtDoor(t *testing.T, policies, top, envoyExtra string) (client authv3.AuthorizationClient, cc *grpc.ClientConn, p *proc, logFile, adminAddr string) {
	t.Helper()
	dir := t.TempDir()
	logFile = filepath.Join(dir, "decisions.log")
	policies, err := filepath.Abs(policies)
	must(t, err)
	secretFile := filepath.Join(dir, "hmac.secret")
	must(t, os.WriteFile(secretFile, []byte(hmacSecret), 0o600))
	p = startAgentpdp(t, fmt.Sprintf(`
policies: %s
data_dir: %s
decision_log:
  file: %s
admin:
  addr: 127.0.0.1:0
envoy:
  addr: 127.0.0.1:0
  jwt:
    issuer: https://idp.test
    audiences: [agentpdp]
    hmac_secret_file: %s
%s%s`, policies, dir, logFile, secretFile, envoyExtra, top))
	addr := p.doorAddr(t, "envoy")
	adminAddr = p.listenerAddr(t, "admin")
	cc = dialEnvoy(t, addr)
	return authv3.NewAuthorizationClient(cc), cc, p, logFile, adminAddr
}

// answer is what Envoy would do with a CheckResponse.
type answer struct {
	status  int // 200 = forwarded
	id      string
	rule    string // first reason's rule
	message string // first reason's message (what the caller reads)
	grpcMsg string
	headers map[string]string
}

func ask(t *testing.T, client authv3.AuthorizationClient, req *authv3.CheckRequest) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, req)
	must(t, err)
	a := answer{grpcMsg: resp.GetStatus().GetMessage()}
	if resp.GetStatus().GetCode() == int32(code.Code_OK) {
		a.status = 200
		a.headers = headerMap(resp.GetOkResponse().GetHeaders())
		a.id = a.headers["x-agentpdp-decision-id"]
		return a
	}
	dr := resp.GetDeniedResponse()
	a.status = int(dr.GetStatus().GetCode())
	a.headers = headerMap(dr.GetHeaders())
	var b struct {
		DecisionID string `json:"decision_id"`
		Reasons    []struct{ Rule, Message string }
	}
	if err := json.Unmarshal([]byte(dr.GetBody()), &b); err != nil {
		t.Fatalf("deny body %q: %v", dr.GetBody(), err)
	}
	a.id = b.DecisionID
	if len(b.Reasons) > 0 {
		a.rule, a.message = b.Reasons[0].Rule, b.Reasons[0].Message
	}
	return a
}

// TestEnvoyDoorTrusts drives the real binary with the requests that reached
// an allow before the door was hardened, beside their near misses: none of
// the attacks is allowed with the default config, and every refusal is in
// the decision log with a reason a person can act on.
func TestEnvoyDoorTrusts(t *testing.T) {
	client, cc, p, logFile, adminAddr := hardenedDoor(t, "")
	alice := userToken(t, "alice@example.com", nil, codeReviewer)
	auth := func(h map[string]string) map[string]string { return withAuth(h, alice) }

	type tc struct {
		name   string
		req    *authv3.CheckRequest
		status int
		rule   string // the refusal's rule, logged
		// logged: a substring of the logged input or reasons
		logged string
	}
	cases := []tc{
		// 1. x-forwarded-client-cert is a header any client can send.
		{"XFCC naming the agent, no certificate", check("", "GET", "/api/read/report", auth(map[string]string{"x-forwarded-client-cert": "By=" + gateway + ";URI=" + codeReviewer}), ""),
			403, "anchor.yaml#agent-not-mtls", `"authn":"jwt"`},
		{"near miss: the mTLS peer", check(codeReviewer, "GET", "/api/read/report", auth(nil), ""), 200, "", ""},

		// 2. One canonical path: decided as what the upstream serves.
		{"dot-dot out of the open prefix", check(codeReviewer, "GET", "/api/read/../admin", auth(nil), ""), 403, "builtin#default-deny", `"raw_path":"/api/read/../admin"`},
		{"encoded dot-dot", check(codeReviewer, "GET", "/api/read/%2e%2e/admin", auth(nil), ""), 403, "builtin#default-deny", `"path":"/api/admin"`},
		{"dot-dot through an encoded slash", check(codeReviewer, "GET", "/api/read/..%2fadmin", auth(nil), ""), 400, "builtin#bad-request", "encoded"},
		{"backslash", check(codeReviewer, "GET", `/api/read/..\admin`, auth(nil), ""), 400, "builtin#bad-request", "backslash"},
		{"NUL byte", check(codeReviewer, "GET", "/api/read/x%00.txt", auth(nil), ""), 400, "builtin#bad-request", "path"},
		{"Tomcat dot-dot-semicolon", check(codeReviewer, "GET", "/api/read/..;/admin", auth(nil), ""), 400, "builtin#bad-request", "path"},
		{"near miss: a dot segment that stays inside", check(codeReviewer, "GET", "/api/read/./sub/../report", auth(nil), ""), 200, "", ""},
		{"near miss: an escaped space", check(codeReviewer, "GET", "/api/read/q%20r", auth(nil), ""), 200, "", ""},

		// 3. JSON read one way, JSON-RPC found whatever the wrapping.
		{"duplicate tool name", check(codeReviewer, "POST", "/mcp", auth(jsonCT), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","name":"delete_branch"}}`),
			400, "builtin#bad-request", "duplicate member name"},
		{"names differing in case", check(codeReviewer, "POST", "/mcp", auth(jsonCT), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","Name":"delete_branch"}}`),
			400, "builtin#bad-request", "differ only in case"},
		{"Tools/Call on the open GET path", check(codeReviewer, "GET", "/api/read/x", auth(map[string]string{"content-type": "text/plain"}), `{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"delete_branch"}}`),
			400, "builtin#bad-request", "not in the MCP specification"},
		{"no jsonrpc member", check(codeReviewer, "GET", "/api/read/x", auth(nil), `{"id":1,"method":"tools/call","params":{"name":"delete_branch"}}`),
			400, "builtin#bad-request", `must be \"2.0\"`},
		{"a call behind a byte order mark, as text, on the open path", check(codeReviewer, "GET", "/api/read/x", auth(map[string]string{"content-type": "text/plain"}), "\xef\xbb\xbf "+toolCall("delete_branch", `{"branch":"main"}`)),
			403, "anchor.yaml#destructive-in-prod", `"kind":"mcp.tools/call"`},
		{"a call as a form, on the open path", check(codeReviewer, "GET", "/api/read/x", auth(map[string]string{"content-type": "application/x-www-form-urlencoded"}), toolCall("delete_branch", `{}`)),
			403, "anchor.yaml#destructive-in-prod", `"tool":"delete_branch"`},
		{"JSON-shaped text that is no JSON", check(codeReviewer, "GET", "/api/read/x", auth(map[string]string{"content-type": "text/plain"}), `{"jsonrpc":"2.0",}`),
			400, "builtin#bad-request", "byte"},
		{"near miss: a well-formed call", check(codeReviewer, "POST", "/mcp", auth(jsonCT), toolCall("create_issue", `{"title":"x"}`)), 200, "", ""},
		{"near miss: plain JSON with a method member", check(codeReviewer, "GET", "/api/read/x", auth(jsonCT), `{"method":"card"}`), 200, "", ""},

		// 4. A token in the query is never logged in clear.
		{"access_token in the query", check(codeReviewer, "GET", "/api/read/report?access_token=SECRET-QUERY-TOKEN&page=2", auth(nil), ""), 200, "", `"access_token":["[REDACTED]"]`},

		// 5. The caller learns the class, the log the whole reason.
		{"expired token", check(codeReviewer, "GET", "/api/read/report", withAuth(nil, expiredToken(t)), ""), 401, "builtin#unauthenticated", "expired at"},
		{"Basic credentials", check(codeReviewer, "GET", "/api/read/report", map[string]string{"authorization": "Basic YTpi"}, ""), 401, "builtin#unauthenticated", "not one Bearer token"},
		{"two Bearer tokens", check(codeReviewer, "GET", "/api/read/report", map[string]string{"authorization": "Bearer " + alice + ",Bearer " + alice}, ""), 401, "builtin#unauthenticated", "not one Bearer token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := ask(t, client, c.req)
			if a.status != c.status || (c.rule != "" && a.rule != c.rule) {
				t.Fatalf("got %d %s %q, want %d %s\n%s", a.status, a.rule, a.message, c.status, c.rule, p.log())
			}
			rec := decisionRecord(t, logFile, a.id)
			line, _ := json.Marshal(rec)
			if c.logged != "" && !bytes.Contains(line, []byte(c.logged)) {
				t.Errorf("the log line lacks %s: %s", c.logged, line)
			}
			if c.status != 200 && !bytes.Contains(line, []byte(c.rule)) {
				t.Errorf("the refusal's rule %s is not logged: %s", c.rule, line)
			}
			for _, secret := range []string{"SECRET-QUERY-TOKEN", alice} {
				if bytes.Contains(line, []byte(secret)) {
					t.Errorf("a credential reached the decision log: %s", line)
				}
			}
			if c.status == 401 {
				// Answers say little: a class, never the verifier's chain.
				if strings.Contains(a.message, "identity:") || strings.Contains(a.grpcMsg, "identity:") || strings.Contains(a.message, " at ") {
					t.Errorf("the answer says too much: %q / %q", a.message, a.grpcMsg)
				}
				if !strings.HasPrefix(a.headers["www-authenticate"], `Bearer error="`) {
					t.Errorf("WWW-Authenticate = %q", a.headers["www-authenticate"])
				}
			}
		})
	}

	// 6. What gRPC refuses before the door is counted and logged.
	raw := func(b []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var out []byte
		return cc.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", b, &out, grpc.ForceCodecV2(rawCodec{}))
	}
	// CheckRequest.attributes.request.http.method = "\xff": invalid UTF-8.
	badUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xff})
	badUTF8 = protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), badUTF8)
	badUTF8 = protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), badUTF8)
	badUTF8 = protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), badUTF8)
	for _, r := range []struct {
		name string
		body []byte
		code codes.Code
	}{
		{"garbage protobuf", []byte{0xff, 0xff, 0xff, 0xff}, codes.Internal},
		{"invalid UTF-8 in a string", badUTF8, codes.Internal},
		{"over the size limit", make([]byte, 5<<20), codes.ResourceExhausted},
	} {
		if err := raw(r.body); status.Code(err) != r.code {
			t.Errorf("%s: %v, want %s", r.name, err, r.code)
		}
	}
	metrics := httpGet(t, "http://"+adminAddr+"/metrics")
	for reason, n := range map[string]string{"malformed": "2", "too_large": "1"} {
		re := regexp.MustCompile(`(?m)^agentpdp_envoy_transport_rejections_total\{reason="` + reason + `"\} (\d+)$`)
		if m := re.FindStringSubmatch(metrics); m == nil || m[1] != n {
			t.Errorf("transport rejections %s = %v, want %s", reason, m, n)
		}
	}
	p.waitLine(t, map[string]any{"msg": "check refused by gRPC before the door", "reason": "too_large"})
	verifyLog(t, logFile)
}

// With xfcc.trust, the header names the agent only when a proxy in
// xfcc.by set it.
func TestEnvoyDoorTrustsXFCCWhenConfigured(t *testing.T) {
	client, _, p, logFile, _ := hardenedDoor(t, "  xfcc: {trust: true, by: ["+gateway+"]}\n")
	alice := userToken(t, "alice@example.com", nil, codeReviewer)
	xfcc := func(by string) map[string]string {
		return withAuth(map[string]string{"x-forwarded-client-cert": "By=" + by + ";Hash=abc;URI=" + codeReviewer}, alice)
	}
	if a := ask(t, client, check("", "GET", "/api/read/report", xfcc(gateway), "")); a.status != 200 {
		t.Fatalf("vouched XFCC: %+v\n%s", a, p.log())
	}
	a := ask(t, client, check("", "GET", "/api/read/report", xfcc("spiffe://example.org/somebody-else"), ""))
	if a.status != 403 || a.rule != "builtin#unauthenticated" {
		t.Fatalf("XFCC set by an unlisted proxy: %+v", a)
	}
	rec := decisionRecord(t, logFile, a.id)
	if line, _ := json.Marshal(rec); !bytes.Contains(line, []byte("not in envoy.xfcc.by")) {
		t.Errorf("the log does not say why: %s", line)
	}
}

func expiredToken(t *testing.T) string {
	t.Helper()
	return signedToken(t, "alice@example.com", nil, codeReviewer, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
}

// verifyLog runs `agentpdp audit verify` on the log.
func verifyLog(t *testing.T, logFile string) {
	t.Helper()
	out, err := exec.Command(agentpdpBin, "audit", "verify", logFile).CombinedOutput()
	if err != nil {
		t.Errorf("audit verify: %v\n%s", err, out)
	}
}

// rawCodec sends bytes as they are, so a test can send what no proto
// marshaller would.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }
