package approvals

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/approvals/oidctest"
)

// syncBuf is a log sink tests read while servers write.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type webEnv struct {
	svc    *Service
	idp    *oidctest.Provider
	public string
	logs   *syncBuf
	clk    *clock
}

// newWebEnv serves the API and the page (as agentpdp does) on loopback,
// signing in with a real OIDC provider on loopback too, as sam of security.
func newWebEnv(t *testing.T) *webEnv {
	t.Helper()
	st, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "approvals.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{t: time.Now()}
	logs := &syncBuf{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	svc := New(Options{Store: st, Log: &records{}, Now: clk.now, Logger: logger, Redact: []string{"action.arguments.token"}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + lis.Addr().String()
	idp := oidctest.Start(t, oidctest.User{Sub: "sam", Email: "sam@example.com", Groups: []string{"security"}},
		oidctest.Client{ID: "agentpdp", Secret: "s3cret", RedirectURIs: []string{public + "/auth/callback"}})
	cfg := OIDCConfig{Issuer: idp.Issuer, ClientID: "agentpdp"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	web, err := NewWeb(WebOptions{Service: svc, OIDC: cfg, ClientSecret: "s3cret", PublicURL: public, Logger: logger, Now: clk.now,
		SessionKey: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	api := &API{Service: svc, Auth: AnyOf{StaticTokens{}, web.Bearer()}, Logger: logger, Page: web.Handler()}
	srv := NewServer(api.Handler())
	srv.RegisterOnShutdown(web.Shutdown)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { web.Shutdown(); _ = srv.Close() })
	return &webEnv{svc: svc, idp: idp, public: public, logs: logs, clk: clk}
}

// browser is a cookie-keeping client that does not follow redirects, so
// each step of the sign-in can be looked at.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func location(t *testing.T, resp *http.Response, want int) string {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d", resp.Request.URL, resp.StatusCode, want)
	}
	return resp.Header.Get("Location")
}

// startSignIn goes to the page, is sent to the provider, and returns the
// callback URL the provider sends the browser back to.
func (e *webEnv) startSignIn(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, _ := get(t, c, e.public+"/")
	if loc := location(t, resp, http.StatusSeeOther); loc != "/auth/login" {
		t.Fatalf("signed out page sends to %q", loc)
	}
	resp, _ = get(t, c, e.public+"/auth/login")
	authz := location(t, resp, http.StatusFound)
	u, _ := url.Parse(authz)
	q := u.Query()
	if !strings.HasPrefix(authz, e.idp.Issuer+"/authorize?") || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("state") == "" || q.Get("nonce") == "" || q.Get("redirect_uri") != e.public+"/auth/callback" {
		t.Fatalf("authorization request %s", authz)
	}
	resp, _ = get(t, c, authz)
	return location(t, resp, http.StatusFound)
}

// signIn signs c in (as whoever the provider signs in) and returns the
// session's CSRF token from the page.
func (e *webEnv) signIn(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, _ := get(t, c, e.startSignIn(t, c))
	if loc := location(t, resp, http.StatusSeeOther); loc != "/" {
		t.Fatalf("after sign-in: %s", loc)
	}
	var sc string
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, "agentpdp_session=") {
			sc = v
		}
	}
	for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=28800"} {
		if !strings.Contains(sc, attr) {
			t.Errorf("session cookie %q lacks %s", sc, attr)
		}
	}
	if strings.Contains(sc, "Secure") {
		t.Errorf("session cookie %q is Secure on an http URL (the browser would drop it)", sc)
	}
	resp, page := get(t, c, e.public+"/")
	if resp.StatusCode != 200 || !strings.Contains(page, `<strong id="me">`+e.idp.CurrentUser().Sub+`</strong>`) {
		t.Fatalf("page after sign-in: %d\n%s", resp.StatusCode, page)
	}
	i := strings.Index(page, `name="csrf-token" content="`)
	if i < 0 {
		t.Fatal("no CSRF token on the page")
	}
	rest := page[i+len(`name="csrf-token" content="`):]
	return rest[:strings.IndexByte(rest, '"')]
}

func (e *webEnv) post(t *testing.T, c *http.Client, path string, form url.Values, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.public+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestWebSignInAndReview: a reviewer signs in with the provider, sees the
// held call, and reviews it; a POST without the CSRF token, from a foreign
// Origin or to a foreign Host is refused; the Service's refusals reach the
// reviewer with its reason.
func TestWebSignInAndReview(t *testing.T) {
	e := newWebEnv(t)
	d := hold(t, e.svc, map[string]any{"path": "/srv/.env", "token": "hunter2"})
	c := browser(t)
	csrf := e.signIn(t, c)

	resp, _ := get(t, c, e.public+"/approvals/"+d.Approval.ID) // a URL elicitation's link
	if loc := location(t, resp, http.StatusSeeOther); loc != "/#approval-"+d.Approval.ID {
		t.Errorf("the approval's link leads to %s", loc)
	}
	resp, page := get(t, c, e.public+"/")
	if !strings.Contains(page, `id="approval-`+d.Approval.ID+`"`) {
		t.Error("the page has no anchor for the approval's link")
	}
	for _, want := range []string{"mcp.tools/call fs/write_file", "spiffe://example.org/agent/writer", "carol", "/srv/.env",
		"policies/fs.cel#secrets", "writes a secret file", "0 of 2 from alice, group:security", d.Approval.ID} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	if strings.Contains(page, "hunter2") {
		t.Error("the page shows a redacted argument")
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("security headers: %v", resp.Header)
	}

	ap, _ := e.svc.Get(context.Background(), d.Approval.ID)
	path := "/ui/approvals/" + ap.ID + "/review"
	form := url.Values{"verdict": {"approve"}, "digest": {ap.Digest}, "comment": {"checked the diff"}}
	good := map[string]string{"Origin": e.public, "X-CSRF-Token": csrf}
	for name, hdr := range map[string]map[string]string{
		"no CSRF token":    {"Origin": e.public},
		"wrong CSRF token": {"Origin": e.public, "X-CSRF-Token": csrf + "x"},
		"foreign Origin":   {"Origin": "http://evil.example", "X-CSRF-Token": csrf},
		"no Origin":        {"X-CSRF-Token": csrf},
		"cross-site fetch": {"Origin": e.public, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
		"rebound Host":     {"Origin": "http://evil.example:" + strings.Split(e.public, ":")[2], "X-CSRF-Token": csrf, "Host": "evil.example:" + strings.Split(e.public, ":")[2]},
	} {
		if code, _ := e.post(t, c, path, form, hdr); code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, code)
		}
	}
	if a, _ := e.svc.Get(context.Background(), ap.ID); len(a.Reviews) != 0 {
		t.Fatalf("a refused POST reviewed: %+v", a.Reviews)
	}
	if !strings.Contains(e.logs.String(), "missing or wrong CSRF token") || !strings.Contains(e.logs.String(), "foreign Origin") {
		t.Error("refusals not logged")
	}

	// The digest the reviewer saw must be the approval's.
	if code, out := e.post(t, c, path, url.Values{"verdict": {"approve"}, "digest": {"sha256:" + strings.Repeat("0", 64)}}, good); code != 403 || !strings.Contains(out["detail"].(string), "digest does not match") {
		t.Errorf("another digest: %d %v", code, out)
	}
	if code, out := e.post(t, c, path, url.Values{"verdict": {"approve"}}, good); code != 400 {
		t.Errorf("no digest: %d %v", code, out)
	}
	if code, out := e.post(t, c, path, form, good); code != 200 || out["message"] != "pending: 1 of 2 approvals" {
		t.Fatalf("approve: %d %v", code, out)
	}
	if code, out := e.post(t, c, path, form, good); code != 403 || out["detail"] != "this reviewer has already reviewed it" {
		t.Errorf("second approval by the same reviewer: %d %v", code, out)
	}
	a, _ := e.svc.Get(context.Background(), ap.ID)
	if len(a.Reviews) != 1 || a.Reviews[0].By != "sam" || a.Reviews[0].Comment != "checked the diff" {
		t.Fatalf("reviews: %+v", a.Reviews)
	}
	if _, list := get(t, c, e.public+"/ui/list"); !strings.Contains(list, "1 of 2") || !strings.Contains(list, "checked the diff") ||
		!strings.Contains(list, "this reviewer has already reviewed it") {
		t.Errorf("the list after the review:\n%s", list)
	}

	// carol is the person the agent acts for: the page says she may not
	// review, and the Service refuses her with that reason.
	e.idp.SetUser(oidctest.User{Sub: "carol", Groups: []string{"security"}})
	defer e.idp.SetUser(oidctest.User{Sub: "sam", Email: "sam@example.com", Groups: []string{"security"}})
	cc := browser(t)
	ccsrf := e.signIn(t, cc)
	if _, list := get(t, cc, e.public+"/ui/list"); !strings.Contains(list, "You cannot review this: nobody reviews a call made for themselves") {
		t.Errorf("carol's page does not say why she cannot review:\n%s", list)
	}
	if code, out := e.post(t, cc, path, form, map[string]string{"Origin": e.public, "X-CSRF-Token": ccsrf}); code != 403 || out["detail"] != "nobody reviews a call made for themselves" {
		t.Errorf("carol approving: %d %v", code, out)
	}
	if code, _ := e.post(t, cc, path, form, good); code != 403 {
		t.Errorf("carol with sam's CSRF token: %d", code)
	}

	// Signing out ends the session in this browser.
	if code, _ := e.post(t, c, "/auth/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": e.public}); code != 200 {
		t.Fatalf("sign out: %d", code)
	}
	if resp, _ := get(t, c, e.public+"/ui/list"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after sign-out: %d", resp.StatusCode)
	}
}

// TestWebSignInRefusals: every broken sign-in is refused.
func TestWebSignInRefusals(t *testing.T) {
	e := newWebEnv(t)
	signedIn := func(c *http.Client) bool {
		resp, _ := get(t, c, e.public+"/ui/list")
		return resp.StatusCode == 200
	}
	refused := func(t *testing.T, c *http.Client, cb, want string) {
		t.Helper()
		resp, body := get(t, c, cb)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, want) {
			t.Errorf("callback: %d %s, want 403 %q", resp.StatusCode, body, want)
		}
		if signedIn(c) {
			t.Error("signed in after a refused callback")
		}
	}

	t.Run("wrong state", func(t *testing.T) {
		c := browser(t)
		cb := e.startSignIn(t, c)
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Set("state", "attackers-state")
		u.RawQuery = q.Encode()
		refused(t, c, u.String(), "state does not match")
	})
	t.Run("no sign-in started here", func(t *testing.T) {
		cb := e.startSignIn(t, browser(t))
		refused(t, browser(t), cb, "not started in this browser")
	})
	t.Run("replayed code", func(t *testing.T) {
		c := browser(t)
		cb := e.startSignIn(t, c)
		pub, _ := url.Parse(e.public + "/auth/")
		flow := c.Jar.Cookies(pub)
		resp, _ := get(t, c, cb)
		location(t, resp, http.StatusSeeOther)
		// A second browser replays the whole callback, flow cookie and all.
		c2 := browser(t)
		c2.Jar.SetCookies(pub, flow)
		refused(t, c2, cb, "did not accept the code")
		if !strings.Contains(e.logs.String(), "the code was already used") {
			t.Error("the provider's reason is not in the log")
		}
	})
	t.Run("another sign-in's code (bad PKCE verifier)", func(t *testing.T) {
		victim, attacker := browser(t), browser(t)
		mine := e.startSignIn(t, victim)
		theirs := e.startSignIn(t, attacker)
		// The victim's state and cookie, with the attacker's code: the
		// exchange carries the victim's verifier, not the one the code
		// was issued for.
		mu, _ := url.Parse(mine)
		tu, _ := url.Parse(theirs)
		q := mu.Query()
		q.Set("code", tu.Query().Get("code"))
		mu.RawQuery = q.Encode()
		refused(t, victim, mu.String(), "did not accept the code")
		if !strings.Contains(e.logs.String(), "code_verifier does not match") {
			t.Error("the provider's PKCE reason is not in the log", e.logs.String())
		}
	})
	t.Run("bad PKCE verifier at the provider", func(t *testing.T) {
		cb := e.startSignIn(t, browser(t))
		u, _ := url.Parse(cb)
		resp, err := http.PostForm(e.idp.Issuer+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")},
			"redirect_uri": {e.public + "/auth/callback"}, "client_id": {"agentpdp"}, "client_secret": {"s3cret"},
			"code_verifier": {strings.Repeat("a", 43)}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "invalid_grant") {
			t.Errorf("token with a bad verifier: %d %s", resp.StatusCode, b)
		}
	})
	t.Run("forged session cookie", func(t *testing.T) {
		c := browser(t)
		e.signIn(t, c)
		pub, _ := url.Parse(e.public + "/")
		for _, ck := range c.Jar.Cookies(pub) {
			if ck.Name == "agentpdp_session" {
				p, sig, _ := strings.Cut(ck.Value, ".")
				ck.Value = p + "x." + sig
				c.Jar.SetCookies(pub, []*http.Cookie{ck})
			}
		}
		if signedIn(c) {
			t.Error("a tampered session cookie was accepted")
		}
	})
	t.Run("expired session", func(t *testing.T) {
		c := browser(t)
		e.signIn(t, c)
		e.clk.add(DefaultSessionTTL + time.Second)
		defer e.clk.add(-DefaultSessionTTL - time.Second)
		if signedIn(c) {
			t.Error("a session past 8h was accepted")
		}
	})
}

// TestWebEvents: the live stream says when an approval appears or changes.
func TestWebEvents(t *testing.T) {
	e := newWebEnv(t)
	c := browser(t)
	e.signIn(t, c)
	if resp, _ := get(t, browser(t), e.public+"/ui/events"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("events without a session: %d", resp.StatusCode)
	}
	resp, err := c.Get(e.public + "/ui/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("the stream ended")
				}
				if l == want {
					return
				}
			case <-timeout:
				t.Fatalf("no %q on the stream", want)
			}
		}
	}
	next(": live") // subscribed: what happens from now on is heard
	d := hold(t, e.svc, map[string]any{"path": "/srv/.env"})
	next("data: " + d.Approval.ID)
	if _, err := e.svc.Review(context.Background(), d.Approval.ID, Reviewer{ID: "sam", Groups: []string{"security"}}, ReviewRequest{Verdict: VerdictDeny}); err != nil {
		t.Fatal(err)
	}
	next("data: " + d.Approval.ID)
	if _, list := get(t, c, e.public+"/ui/list"); !strings.Contains(list, "<strong>sam</strong> denied") || !strings.Contains(list, `data-state="denied"`) {
		t.Errorf("the list after the denial:\n%s", list)
	}
}

// TestAPIBearerJWT: the provider's JWTs authenticate the REST API (aud =
// the client id); a stranger's key, another audience or an expired token
// do not.
func TestAPIBearerJWT(t *testing.T) {
	e := newWebEnv(t)
	d := hold(t, e.svc, map[string]any{"path": "/srv/.env"})
	sam := oidctest.User{Sub: "sam", Groups: []string{"security"}}
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	expired := e.idp.Claims(sam, "agentpdp", time.Hour)
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	call := func(tok, verdict string) int {
		req, _ := http.NewRequest("POST", e.public+"/v1/approvals/"+d.Approval.ID+"/"+verdict, strings.NewReader(`{"comment":"via the API"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, tok := range map[string]string{
		"stranger's key":   oidctest.SignWith(stranger, "x", e.idp.Claims(sam, "agentpdp", time.Hour)),
		"another audience": e.idp.Sign(e.idp.Claims(sam, "someone-else", time.Hour)),
		"expired":          e.idp.Sign(expired),
		"not a JWT":        "sam-token",
		"groups not strings": e.idp.Sign(func() map[string]any {
			c := e.idp.Claims(sam, "agentpdp", time.Hour)
			c["groups"] = []any{"security", 7}
			return c
		}()),
	} {
		if code := call(tok, "approve"); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	// The call is made for carol; her token names her by another subject,
	// with carol as its verified email: still her own call.
	carol := e.idp.Claims(oidctest.User{Sub: "00u-carol", Email: "carol", Groups: []string{"security"}}, "agentpdp", time.Hour)
	carol["email_verified"] = true
	if code := call(e.idp.Sign(carol), "approve"); code != http.StatusForbidden {
		t.Errorf("carol under her subject: %d, want 403", code)
	}
	if code := call(e.idp.Sign(e.idp.Claims(sam, "agentpdp", time.Hour)), "approve"); code != 200 {
		t.Fatalf("the provider's token: %d", code)
	}
	a, _ := e.svc.Get(context.Background(), d.Approval.ID)
	if len(a.Reviews) != 1 || a.Reviews[0].By != "sam" || a.Reviews[0].Comment != "via the API" {
		t.Fatalf("reviews: %+v", a.Reviews)
	}
}

// TestWebSecureCookies: with an https public URL the cookies are Secure
// and host-bound, and HSTS is sent.
func TestWebSecureCookies(t *testing.T) {
	e := newWebEnv(t)
	cfg := OIDCConfig{Issuer: e.idp.Issuer, ClientID: "agentpdp"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	web, err := NewWeb(WebOptions{Service: e.svc, OIDC: cfg, PublicURL: "https://approvals.example.com", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	web.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "https://approvals.example.com/auth/login", nil))
	sc := rec.Header().Get("Set-Cookie")
	if rec.Code != http.StatusFound || !strings.HasPrefix(sc, "__Secure-agentpdp_signin=") || !strings.Contains(sc, "; Secure") ||
		!strings.Contains(sc, "HttpOnly") || rec.Header().Get("Strict-Transport-Security") == "" {
		t.Errorf("login over https: %d, cookie %q, headers %v", rec.Code, sc, rec.Header())
	}
	if web.cookie != "__Host-agentpdp_session" {
		t.Errorf("session cookie name %q", web.cookie)
	}
	rec = httptest.NewRecorder()
	web.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "https://evil.example/auth/login", nil))
	if rec.Code != http.StatusForbidden {
		t.Errorf("another host: %d", rec.Code)
	}
}
