// Package e2e runs the real agentpdp binary and talks to it as its peers
// do: here, Envoy's ext_authz filter over gRPC.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/agentpdp/agentpdp/approvals/pgtest"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/agentpdp/agentpdp/envoyauthz"
	"github.com/agentpdp/agentpdp/pdp"
)

// agentpdpBin is the binary under test, built once by TestMain.
var agentpdpBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentpdp-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentpdpBin = filepath.Join(dir, "agentpdp")
	build := exec.Command("go", "build", "-o", agentpdpBin, "./cmd/agentpdp")
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building agentpdp: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// Every agentpdp started here serves its approvals API on a free
	// port (the address is in its serving log line), so that tests and a
	// developer's own agentpdp never collide on the default one.
	os.Setenv("AGENTPDP_APPROVALS_ADDR", "127.0.0.1:0")
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running agentpdp with its stderr log lines.
type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
	seen  chan struct{} // pinged on every new line
	done  chan struct{}
}

// startAgentpdp runs the binary with configYAML and waits for its doors.
func startAgentpdp(t *testing.T, configYAML string) *proc {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "agentpdp.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	return startProc(t, "run", "--config", cfgPath)
}

// startProc runs the binary with args, reading its stderr log lines.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(agentpdpBin, args...), seen: make(chan struct{}, 1), done: make(chan struct{})}
	// The config decides GOMAXPROCS (max_procs), not the test's shell.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}

	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line map[string]any
			p.mu.Lock()
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.lines = append(p.lines, line)
			}
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-p.done: // exited on its own; the failure was reported
			p.cmd.Wait()
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("agentpdp exited with %v after SIGTERM\n%s", err, p.log())
		}
	})
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// waitLine waits for a log line with all of want's fields.
func (p *proc) waitLine(t *testing.T, want map[string]any) map[string]any {
	t.Helper()
	return p.waitLineN(t, want, 1)
}

// doorAddr waits for the door (envoy, mcp) to serve and returns its address.
func (p *proc) doorAddr(t *testing.T, door string) string {
	t.Helper()
	return p.waitLine(t, map[string]any{"msg": "serving", "door": door})["addr"].(string)
}

// listenerAddr waits for the listener (admin, approvals) to serve and
// returns its address.
func (p *proc) listenerAddr(t *testing.T, listener string) string {
	t.Helper()
	return p.waitLine(t, map[string]any{"msg": "serving", "listener": listener})["addr"].(string)
}

// waitLineN waits for the n-th log line with all of want's fields.
func (p *proc) waitLineN(t *testing.T, want map[string]any, n int) map[string]any {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		p.mu.Lock()
		seen := 0
		for _, l := range p.lines {
			match := true
			for k, v := range want {
				if l[k] != v {
					match = false
					break
				}
			}
			if match {
				if seen++; seen == n {
					p.mu.Unlock()
					return l
				}
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-p.done:
			t.Fatalf("agentpdp exited before logging %v:\n%s", want, p.log())
		case <-deadline:
			t.Fatalf("no log line %v within 30s:\n%s", want, p.log())
		}
	}
}

const (
	hmacSecret = "e2e-test-secret-that-is-at-least-32-bytes-long"
	reviewer   = "spiffe://example.org/agent/reviewer"
)

// userToken is an RFC 8693 token: sub is the user, act.sub the agent.
func userToken(t *testing.T, user string, groups []string, agent string) string {
	t.Helper()
	return signedToken(t, user, groups, agent, time.Now(), time.Now().Add(time.Hour))
}

// signedToken is an HS256 token from the test issuer for user (with a
// groups claim unless groups is nil), acted on by agent, valid from iat
// to exp.
func signedToken(t *testing.T, user string, groups []string, agent string, iat, exp time.Time) string {
	t.Helper()
	b := jwt.NewBuilder().Issuer("https://idp.test").Audience([]string{"agentpdp"}).Subject(user)
	if groups != nil {
		b = b.Claim("groups", groups)
	}
	tok, err := b.Claim("act", map[string]any{"sub": agent}).IssuedAt(iat).Expiration(exp).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), []byte(hmacSecret)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func check(principal, method, path string, headers map[string]string, body string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":path": path, ":authority": "mcp.internal", "x-request-id": "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: principal, Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		ContextExtensions: map[string]string{"server": "github"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "mcp.internal", Headers: h, RawBody: []byte(body), Size: int64(len(body)),
		}},
	}}
}

// dialEnvoy connects to the Envoy door at addr as Envoy's ext_authz
// filter does (gRPC, plaintext), until the test ends.
func dialEnvoy(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// envoyClient is an ext_authz client of the Envoy door at addr.
func envoyClient(t *testing.T, addr string) authv3.AuthorizationClient {
	t.Helper()
	return authv3.NewAuthorizationClient(dialEnvoy(t, addr))
}

// headerMap is a Check answer's headers (the OK or the denied one's) by name.
func headerMap(hs []*corev3.HeaderValueOption) map[string]string {
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return m
}

func toolCall(tool string, args string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`
}

var jsonCT = map[string]string{"content-type": "application/json"}

func withAuth(h map[string]string, tok string) map[string]string {
	out := map[string]string{"authorization": "Bearer " + tok}
	for k, v := range h {
		out[k] = v
	}
	return out
}

func TestEnvoyDoor(t *testing.T) {
	client, cc, p, logFile, adminAddr := jwtDoor(t, "testdata/envoy", "max_procs: 1\n", "  trusted_headers: true\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Health and reflection answer like any well-behaved gRPC service.
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: envoyauthz.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
	if svcs := listServices(ctx, t, cc); !slices.Contains(svcs, envoyauthz.ServiceName) {
		t.Errorf("reflection lists %v", svcs)
	}

	alice := userToken(t, "alice@example.com", []string{"eng"}, reviewer)
	type want struct {
		status  int // 200 = allowed
		effect  pdp.Effect
		rule    string // a rule in the reasons (deny/approve)
		headers map[string]string
		logged  bool // a decision-log line is expected
		// policyStatus: the status is the deny rule's, logged in result.status
		policyStatus bool
		user         string
	}
	cases := []struct {
		name string
		req  *authv3.CheckRequest
		want want
	}{
		{"agent by SPIFFE principal, user by JWT, MCP tools/call",
			check(reviewer, "POST", "/mcp", withAuth(jsonCT, alice), toolCall("create_issue", `{"repo":"a/b","title":"flaky test"}`)),
			want{status: 200, effect: pdp.Allow, headers: map[string]string{envoyauthz.HeaderAgent: reviewer, envoyauthz.HeaderUser: "alice@example.com"}, logged: true, user: "alice@example.com"}},
		{"plain HTTP GET",
			check(reviewer, "GET", "/v1/status?verbose=1", nil, ""),
			want{status: 200, effect: pdp.Allow, headers: map[string]string{envoyauthz.HeaderAgent: reviewer, "x-owner-team": "platform"}, logged: true}},
		{"plain HTTP POST: the policy's own status",
			check(reviewer, "POST", "/v1/status", jsonCT, `{"reset":true}`),
			want{status: 405, effect: pdp.Deny, rule: "envoy.rego#deny:status-write", logged: true, policyStatus: true}},
		{"plain HTTP GET elsewhere: default deny",
			check(reviewer, "GET", "/v1/admin", nil, ""),
			want{status: 403, effect: pdp.Deny, rule: "builtin#default-deny", logged: true}},
		{"user outside the agent's groups",
			check(reviewer, "POST", "/mcp", withAuth(jsonCT, userToken(t, "bob@example.com", []string{"sales"}, reviewer)), toolCall("create_issue", `{}`)),
			want{status: 403, effect: pdp.Deny, rule: "envoy.rego#deny:user-group", logged: true, user: "bob@example.com"}},
		{"CEL deny on arguments",
			check(reviewer, "POST", "/mcp", withAuth(jsonCT, alice), toolCall("create_issue", `{"title":"the password is hunter2"}`)),
			want{status: 403, effect: pdp.Deny, rule: "tools.yaml#secret-in-title", logged: true}},
		{"destructive tool waits for approval",
			check(reviewer, "POST", "/mcp", withAuth(jsonCT, alice), toolCall("delete_branch", `{"branch":"main"}`)),
			want{status: 403, effect: pdp.Approve, rule: "tools.yaml#destructive", headers: map[string]string{"retry-after": "30"}, logged: true}},
		{"unknown agent",
			check("spiffe://example.org/agent/stranger", "GET", "/v1/status", nil, ""),
			want{status: 403, effect: pdp.Deny, rule: "builtin#unknown-agent", logged: true}},
		{"expired agent",
			check("spiffe://example.org/agent/retired", "GET", "/v1/status", nil, ""),
			want{status: 403, effect: pdp.Deny, rule: "builtin#expired-agent", logged: true}},
		{"token issued to another agent",
			check("spiffe://example.org/agent/retired", "POST", "/mcp", withAuth(jsonCT, alice), toolCall("create_issue", `{}`)),
			want{status: 403, effect: pdp.Deny, rule: "builtin#agent-mismatch", logged: refuserLogs}},
		{"forged token",
			check(reviewer, "POST", "/mcp", withAuth(jsonCT, alice[:len(alice)-4]+"AAAA"), toolCall("create_issue", `{}`)),
			want{status: 401, effect: pdp.Deny, rule: "builtin#unauthenticated", headers: map[string]string{"www-authenticate": `Bearer error="invalid_token"`}, logged: refuserLogs}},
		{"garbage body",
			check(reviewer, "POST", "/mcp", jsonCT, `{"jsonrpc":"2.0","method":`),
			want{status: 400, effect: pdp.Deny, rule: "builtin#bad-request", logged: refuserLogs}},
		{"batch",
			check(reviewer, "POST", "/mcp", jsonCT, "["+toolCall("create_issue", `{}`)+"]"),
			want{status: 400, effect: pdp.Deny, rule: "builtin#bad-request", logged: refuserLogs}},
	}
	counts := map[pdp.Effect]int{}
	ids := map[string]string{} // decision id → case
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			counts[tc.want.effect]++
			var got map[string]string
			var id string
			md := resp.GetDynamicMetadata().AsMap()
			if tc.want.status == 200 {
				if resp.GetStatus().GetCode() != int32(code.Code_OK) || resp.GetOkResponse() == nil {
					t.Fatalf("want OK, got %v", resp)
				}
				got = headerMap(resp.GetOkResponse().GetHeaders())
				id = got[envoyauthz.HeaderDecisionID]
			} else {
				dr := resp.GetDeniedResponse()
				if resp.GetStatus().GetCode() != int32(code.Code_PERMISSION_DENIED) || dr == nil {
					t.Fatalf("want PERMISSION_DENIED, got %v", resp)
				}
				if int(dr.GetStatus().GetCode()) != tc.want.status {
					t.Errorf("HTTP status %d, want %d (body %s)", dr.GetStatus().GetCode(), tc.want.status, dr.GetBody())
				}
				got = headerMap(dr.GetHeaders())
				var b struct {
					DecisionID string `json:"decision_id"`
					Effect     string `json:"effect"`
					Status     string `json:"status"`
					Reasons    []struct{ Rule, Message string }
				}
				if err := json.Unmarshal([]byte(dr.GetBody()), &b); err != nil {
					t.Fatalf("body %q: %v", dr.GetBody(), err)
				}
				ctype := "application/json"
				if tc.want.effect == pdp.Approve {
					ctype = "application/problem+json"
				}
				if got["content-type"] != ctype || b.Effect != string(tc.want.effect) || b.DecisionID != got[envoyauthz.HeaderDecisionID] {
					t.Errorf("body %+v headers %v", b, got)
				}
				if tc.want.effect == pdp.Approve && b.Status != "approval_pending" {
					t.Errorf("approve body %+v", b)
				}
				var rules []string
				for _, r := range b.Reasons {
					rules = append(rules, r.Rule)
					if r.Message == "" {
						t.Errorf("reason %s without a message", r.Rule)
					}
				}
				if !slices.Contains(rules, tc.want.rule) {
					t.Errorf("reasons %v, want %s", rules, tc.want.rule)
				}
				id = b.DecisionID
			}
			if id == "" || md["decision_id"] != id || md["effect"] != string(tc.want.effect) {
				t.Errorf("decision id %q, dynamic metadata %v", id, md)
			}
			for k, v := range tc.want.headers {
				if got[k] != v {
					t.Errorf("header %s = %q, want %q", k, got[k], v)
				}
			}
			if other, dup := ids[id]; dup {
				t.Errorf("decision id %s reused (also %q)", id, other)
			}
			ids[id] = tc.name
			if tc.want.logged {
				rec := decisionRecord(t, logFile, id)
				if rec["effect"] != string(tc.want.effect) {
					t.Errorf("logged effect %v, want %s", rec["effect"], tc.want.effect)
				}
				if tc.want.user != "" && rec["user"] != tc.want.user {
					t.Errorf("logged user %v, want %s", rec["user"], tc.want.user)
				}
				if res, _ := rec["result"].(map[string]any); tc.want.policyStatus && res["status"] != float64(tc.want.status) {
					t.Errorf("logged result status %v, want %d", res["status"], tc.want.status)
				}
				in, _ := json.Marshal(rec["input"])
				if bytes.Contains(in, []byte("Bearer ")) || bytes.Contains(in, []byte(alice)) {
					t.Errorf("the bearer token reached the decision log: %s", in)
				}
				if !bytes.Contains(in, []byte(`"door":"envoy"`)) {
					t.Errorf("logged input is not the envoy door's: %s", in)
				}
			}
		})
	}

	// The checks show up on the admin listener's /metrics.
	metrics := httpGet(t, "http://"+adminAddr+"/metrics")
	for _, e := range []pdp.Effect{pdp.Allow, pdp.Deny, pdp.Approve} {
		re := regexp.MustCompile(`(?m)^agentpdp_envoy_checks_total\{effect="` + string(e) + `"\} (\d+)$`)
		m := re.FindStringSubmatch(metrics)
		if m == nil || m[1] != strconv.Itoa(counts[e]) {
			t.Errorf("agentpdp_envoy_checks_total{effect=%q} = %v, want %d", e, m, counts[e])
		}
	}
	if !strings.Contains(metrics, "agentpdp_envoy_check_duration_seconds_bucket") {
		t.Error("no latency histogram on /metrics")
	}
	// max_procs reached the runtime (and the startup log says so).
	if !regexp.MustCompile(`(?m)^go_sched_gomaxprocs_threads 1$`).MatchString(metrics) {
		t.Errorf("max_procs: 1 not in force; /metrics has %q", regexp.MustCompile(`(?m)^go_sched_gomaxprocs_threads .*$`).FindString(metrics))
	}
	p.waitLine(t, map[string]any{"msg": "scheduler", "gomaxprocs": 1.0, "from": "max_procs"})
	if got := httpGet(t, "http://"+adminAddr+"/readyz"); !strings.Contains(strings.ToLower(got), "ok") && !strings.Contains(strings.ToLower(got), "ready") {
		t.Errorf("/readyz = %q", got)
	}
	if p.cmd.ProcessState != nil {
		t.Fatalf("agentpdp exited early:\n%s", p.log())
	}
}

// refuserLogs says whether the PDP logs the door's own denials
// (pdp.Refuser); without it they appear only in agentpdp's log.
// refuserLogs: the PDP records the door's own denials too.
var refuserLogs = true

// decisionRecord finds the decision-log line for id. The PDP writes it (to
// the OS at least) before Check returns.
func decisionRecord(t *testing.T, file, id string) map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(id)) {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("decision log line %q: %v", sc.Text(), err)
		}
		if ev, _ := rec["event"].(string); rec["decision_id"] == id && !strings.HasPrefix(ev, "approval.") {
			return rec
		}
	}
	t.Fatalf("decision %s is not in %s", id, file)
	return nil
}

func listServices(ctx context.Context, t *testing.T, cc *grpc.ClientConn) []string {
	t.Helper()
	st, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.CloseSend()
	if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.GetName())
	}
	return out
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Errorf("GET %s: %s %s", url, resp.Status, b)
	}
	return string(b)
}
