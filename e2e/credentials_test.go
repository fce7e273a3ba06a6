package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// tokenEndpoint is an OAuth token endpoint in the test process: client
// credentials and RFC 8693 token exchange for client agentpdp, answering
// with signed JWTs that expire after life.
type tokenEndpoint struct {
	t        *testing.T
	srv      *httptest.Server
	life     time.Duration
	issued   atomic.Int64
	mu       sync.Mutex
	requests []map[string]string
}

func newTokenEndpoint(t *testing.T, life time.Duration) *tokenEndpoint {
	e := &tokenEndpoint{t: t, life: life}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *tokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/broken" {
		http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusInternalServerError)
		return
	}
	id, secret, ok := r.BasicAuth()
	must(e.t, r.ParseForm())
	req := map[string]string{}
	for k := range r.PostForm {
		req[k] = r.PostForm.Get(k)
	}
	e.mu.Lock()
	e.requests = append(e.requests, req)
	e.mu.Unlock()
	if !ok || id != "agentpdp" || secret != "client-secret" {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	b := jwt.NewBuilder().Issuer("https://as.test").JwtID(fmt.Sprintf("jti-%d", e.issued.Add(1))).
		IssuedAt(time.Now()).Expiration(time.Now().Add(e.life))
	if aud := req["audience"]; aud != "" {
		b = b.Audience([]string{aud})
	}
	switch req["grant_type"] {
	case "client_credentials":
		b = b.Subject("agentpdp")
	case "urn:ietf:params:oauth:grant-type:token-exchange":
		// The subject token is the user's token as agentpdp verified it:
		// the exchanged token names the same user, the agent as actor.
		sub, err := jwt.ParseInsecure([]byte(req["subject_token"]))
		if err != nil {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		user, _ := sub.Subject()
		var act map[string]any
		_ = sub.Get("act", &act)
		b = b.Subject(user).Claim("act", act)
	default:
		http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
		return
	}
	tok, err := b.Build()
	must(e.t, err)
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), []byte("the-authorization-servers-own-signing-key")))
	must(e.t, err)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": string(signed), "token_type": "Bearer", "expires_in": int(e.life / time.Second)})
}

// authUpstream is a Streamable HTTP MCP server that answers a tool call
// with the Authorization header it received, and keeps every one.
type authUpstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newAuthUpstream(t *testing.T) *authUpstream {
	u := &authUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Get("Authorization"))
		u.mu.Unlock()
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		must(t, json.Unmarshal(body, &m))
		if len(m.ID) == 0 {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		result := map[string]any{"content": []any{map[string]any{"type": "text", "text": r.Header.Get("Authorization")}}}
		switch m.Method {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
			result = map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}}, "serverInfo": map[string]any{"name": "auth-upstream", "version": "1"}}
		case "tools/list":
			result = map[string]any{"tools": []any{map[string]any{"name": "whoami", "inputSchema": map[string]any{"type": "object"}}}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *authUpstream) headers() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

func claimsOf(t *testing.T, bearer string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(bearer, "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", bearer)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(b, &m))
	return m
}

// TestUpstreamCredentials: the caller's token never reaches an upstream;
// each gets its configured credential (static from a file, client
// credentials, an RFC 8693 exchange naming the agent as actor, or, where a
// person wrote passthrough, the caller's own); tokens are cached until
// they near expiry; a failing token endpoint denies the call, logged.
func TestUpstreamCredentials(t *testing.T) {
	const life = 2 * time.Second
	as := newTokenEndpoint(t, life)
	ups := map[string]*authUpstream{}
	for _, n := range []string{"none", "static", "cc", "exchange", "passthrough", "broken"} {
		ups[n] = newAuthUpstream(t)
	}
	dir, secret, pol, logFile := tokenSetup(t, "has(user.id)")
	clientSecret := filepath.Join(dir, "client.secret")
	must(t, os.WriteFile(clientSecret, []byte("client-secret\n"), 0o600))
	actorFile := filepath.Join(dir, "agent.token")
	must(t, os.WriteFile(actorFile, []byte("the-agents-own-token\n"), 0o600))
	staticFile := filepath.Join(dir, "static.token")
	must(t, os.WriteFile(staticFile, []byte("Bearer static-upstream-token\n"), 0o600))
	p := startMCPDoor(t, pol, dir, logFile, fmt.Sprintf(`  jwt: {issuer: https://idp.test, audiences: [agentpdp], hmac_secret_file: %[1]s}
  upstreams:
    - {name: none, url: %[2]s}
    - {name: static, url: %[3]s, credentials: {mode: static, value_file: %[4]s}}
    - {name: cc, url: %[5]s, credentials: {mode: client_credentials, token_url: %[6]s, client_id: agentpdp, client_secret_file: %[7]s, audience: cc-api}}
    - {name: exchange, url: %[8]s, credentials: {mode: token_exchange, token_url: %[6]s, client_id: agentpdp, client_secret_file: %[7]s, audience: exchange-api, actor_token_file: %[12]s}}
    - {name: passthrough, url: %[9]s, credentials: {mode: passthrough}}
    - {name: broken, url: %[10]s, credentials: {mode: client_credentials, token_url: %[11]s, client_id: agentpdp, client_secret_file: %[7]s}}
`, secret, ups["none"].srv.URL, ups["static"].srv.URL, staticFile, ups["cc"].srv.URL, as.srv.URL+"/token",
		clientSecret, ups["exchange"].srv.URL, ups["passthrough"].srv.URL, ups["broken"].srv.URL, as.srv.URL+"/broken", actorFile))
	p.waitLine(t, map[string]any{"msg": "an upstream gets the callers' own tokens (credentials.mode: passthrough): it, or whoever compromises it, can replay them elsewhere", "upstream": "passthrough"})
	base := "http://" + p.doorAddr(t, "mcp")
	userTok := userToken(t, "alice@example.com", []string{"eng"}, reviewer)
	whoami := func(name string, calls int) []map[string]any {
		steps := []clientStep{}
		for range calls {
			steps = append(steps, clientStep{"op": "callTool", "name": "whoami"})
		}
		return runClient(t, map[string]any{"transport": "http", "url": base + "/mcp/" + name,
			"headers": map[string]string{"Authorization": "Bearer " + userTok}, "steps": steps})
	}

	for name, want := range map[string]string{"none": "", "static": "Bearer static-upstream-token", "passthrough": "Bearer " + userTok} {
		if got := text(whoami(name, 1)[0]); got != want {
			t.Errorf("%s upstream saw %q, want %q", name, got, want)
		}
	}
	cc := text(whoami("cc", 1)[0])
	if c := claimsOf(t, cc); c["sub"] != "agentpdp" || fmt.Sprint(c["aud"]) != "[cc-api]" {
		t.Errorf("client credentials token %v", c)
	}
	res := whoami("exchange", 2)
	ex := claimsOf(t, text(res[0]))
	act, _ := ex["act"].(map[string]any)
	if ex["sub"] != "alice@example.com" || act["sub"] != reviewer || fmt.Sprint(ex["aud"]) != "[exchange-api]" {
		t.Errorf("exchanged token %v", ex)
	}
	if text(res[1]) != text(res[0]) {
		t.Error("the exchanged token was not reused while valid")
	}
	// Once it nears expiry, a fresh one is fetched.
	deadline := time.Now().Add(life)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if again := claimsOf(t, text(whoami("exchange", 1)[0])); again["jti"] == ex["jti"] {
		t.Errorf("an expired token was reused: jti %v", again["jti"])
	}
	// The exchange got the user's token as subject, and its audience.
	var exchanged bool
	as.mu.Lock()
	for _, r := range as.requests {
		exchanged = exchanged || (r["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange" && r["subject_token"] == userTok &&
			r["audience"] == "exchange-api" && r["actor_token"] == "the-agents-own-token")
	}
	as.mu.Unlock()
	if !exchanged {
		t.Error("no token exchange request carried the user's token, the agent's actor token and the audience")
	}

	// No upstream but the passthrough one ever saw the caller's token.
	for name, u := range ups {
		for _, h := range u.headers() {
			if name != "passthrough" && strings.Contains(h, userTok) {
				t.Errorf("the %s upstream saw the caller's token", name)
			}
		}
	}

	// A token endpoint that fails: the call is denied, named and logged.
	broken := postMCP(t, base+"/mcp/broken", initializeMsg, map[string]string{"Authorization": "Bearer " + userTok})
	if !strings.Contains(broken.body, "no credential for the upstream") || len(ups["broken"].headers()) != 0 {
		t.Errorf("broken token endpoint: %s (upstream saw %v)", broken.body, ups["broken"].headers())
	}
	var refused, loggedJTI bool
	for _, r := range decisions(t, logFile) {
		if rs, _ := r["reasons"].([]any); len(rs) > 0 && rs[0] == "builtin#upstream-credentials" {
			refused = true
		}
		ctx, _ := r["input"].(map[string]any)["context"].(map[string]any)
		ext, _ := ctx["extensions"].(map[string]any)
		if ext["upstream_credentials"] == "token_exchange" && ext["upstream_token_jti"] == ex["jti"] && ext["upstream_token_sub"] == "alice@example.com" {
			loggedJTI = true
		}
		if b, _ := json.Marshal(r); strings.Contains(string(b), "static-upstream-token") || strings.Contains(string(b), text(res[0])[len("Bearer "):]) {
			t.Errorf("a credential reached the decision log: %s", b)
		}
	}
	if !refused || !loggedJTI {
		t.Errorf("decision log: refusal logged %v, exchanged token's jti and subject logged %v", refused, loggedJTI)
	}
	verifyLog(t, logFile)
}

// TestStdioUpstreamEnvironment: a stdio server gets the credentials the
// configuration names (env_files) and an allow list of agentpdp's
// environment, not agentpdp's own secrets. server-everything's get-env
// tool shows what it got.
func TestStdioUpstreamEnvironment(t *testing.T) {
	dir := peersDir(t)
	t.Setenv("AGENTPDP_OWN_SECRET", "must-not-reach-a-server")
	t.Setenv("SHARED_ON_PURPOSE", "named-in-inherit_env")
	tmp := t.TempDir()
	secretFile := filepath.Join(tmp, "github.token")
	must(t, os.WriteFile(secretFile, []byte("ghp_from_a_file\n"), 0o600))
	logFile := filepath.Join(tmp, "decisions.log")
	p := startMCPDoor(t, allowAll(t), tmp, logFile, fmt.Sprintf(`  identity: {agent: tester}
  upstreams:
    - name: everything
      command: [node, %s, stdio]
      env: {PLAIN_SETTING: "on"}
      env_files: {GITHUB_TOKEN: %s}
      inherit_env: [SHARED_ON_PURPOSE]
`, peerServer(dir, "server-everything"), secretFile))
	base := "http://" + p.doorAddr(t, "mcp")
	env := text(runClient(t, map[string]any{"transport": "http", "url": base + "/mcp/everything",
		"steps": []clientStep{{"op": "callTool", "name": "get-env"}}})[0])
	for _, want := range []string{"ghp_from_a_file", "named-in-inherit_env", "PLAIN_SETTING", "PATH"} {
		if !strings.Contains(env, want) {
			t.Errorf("the server's environment lacks %s: %.300s", want, env)
		}
	}
	if strings.Contains(env, "must-not-reach-a-server") {
		t.Error("agentpdp's own environment reached the server")
	}
}
