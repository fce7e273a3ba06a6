package approvals

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

//go:embed web
var webFS embed.FS

var pageTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"join": strings.Join,
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).ParseFS(webFS, "web/page.html"))

// DefaultSessionTTL is how long a reviewer stays signed in.
const DefaultSessionTTL = 8 * time.Hour

// signinTTL is how long a sign-in may take at the provider.
const signinTTL = 10 * time.Minute

// WebOptions configure the reviewers' page.
type WebOptions struct {
	Service *Service
	OIDC    OIDCConfig
	// ClientSecret is the OIDC client's secret ("" for a public client).
	ClientSecret string
	// PublicURL is how browsers reach the page (http://host:port or
	// https://…); only its host and the listener's loopback names are
	// served, and its scheme decides whether cookies are Secure.
	PublicURL string
	// SessionKey signs the session cookies (at least 32 bytes); replicas
	// that share it share sessions. Nil: a random key, per process.
	SessionKey []byte
	SessionTTL time.Duration
	// HTTPClient reaches the OIDC provider (default: 10 s timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Web is the reviewers' page: OIDC sign-in, the held calls, approve and
// deny, live updates. It is served beside the API on the approvals
// listener.
type Web struct {
	opts     WebOptions
	oidc     *oidcClient
	seal     sealer
	public   *url.URL
	redirect string
	secure   bool
	cookie   string

	mu      sync.Mutex
	closing chan struct{}
}

// NewWeb makes the page. opts.OIDC must have been validated.
func NewWeb(opts WebOptions) (*Web, error) {
	pub, err := url.Parse(opts.PublicURL)
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" {
		return nil, fmt.Errorf("approvals public URL %q is not an http(s) URL", opts.PublicURL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.SessionKey == nil {
		opts.SessionKey = make([]byte, 32)
		_, _ = rand.Read(opts.SessionKey)
		opts.Logger.Warn("approvals: no session_key_file: sessions are signed with a random key, so they end when this process does and other replicas do not accept them")
	}
	if len(opts.SessionKey) < 32 {
		return nil, errors.New("the approvals session key must be at least 32 bytes")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	w := &Web{opts: opts, seal: sealer{opts.SessionKey}, public: pub, secure: pub.Scheme == "https", closing: make(chan struct{}),
		oidc: &oidcClient{cfg: opts.OIDC, secret: opts.ClientSecret, hc: opts.HTTPClient}}
	w.redirect = opts.OIDC.RedirectURL
	if w.redirect == "" {
		w.redirect = strings.TrimSuffix(opts.PublicURL, "/") + "/auth/callback"
	}
	// A __Host- cookie is bound to this host and path, never a parent
	// domain's; browsers allow the prefix only on Secure cookies.
	w.cookie = "agentpdp_session"
	if w.secure {
		w.cookie = "__Host-agentpdp_session"
	}
	return w, nil
}

// Bearer is the Authenticator for the API's bearer JWTs from the same
// provider.
func (w *Web) Bearer() Authenticator { return OIDCBearer{w.oidc} }

// Shutdown ends the live-update streams, so a server shutdown does not
// wait for them.
func (w *Web) Shutdown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.closing:
	default:
		close(w.closing)
	}
}

func (w *Web) log() *slog.Logger { return w.opts.Logger }

// Handler serves the page's routes; mount it at "/" beside the API.
func (w *Web) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", w.withSession(w.page, true))
	mux.HandleFunc("GET /auth/login", w.login)
	mux.HandleFunc("GET /auth/callback", w.callback)
	mux.HandleFunc("POST /auth/logout", w.post(w.logout))
	mux.HandleFunc("GET /ui/list", w.withSession(w.list, false))
	mux.HandleFunc("GET /ui/events", w.withSession(w.events, false))
	mux.HandleFunc("POST /ui/approvals/{id}/review", w.post(w.review))
	mux.HandleFunc("GET /assets/{file}", w.asset)
	// Where a held 2026-07-28 call's URL elicitation sends the person: the
	// page, at that call's card.
	mux.HandleFunc("GET /approvals/{id}", func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, "/#approval-"+url.PathEscape(r.PathValue("id")), http.StatusSeeOther)
	})
	return w.guard(mux)
}

// guard sets the security headers and serves only the hosts the page is
// reached by: a DNS-rebinding page on another name that resolves here is
// refused.
func (w *Web) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := rw.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer a browser sends
		// "Origin: null" on same-origin POSTs, which the Origin check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if w.secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !w.hostOK(r, r.Host) {
			w.refuse(rw, r, http.StatusForbidden, "unexpected Host", "host", r.Host)
			return
		}
		next.ServeHTTP(rw, r)
	})
}

// hostOK: the public URL's host, or a loopback name with the port this
// connection came in on.
func (w *Web) hostOK(r *http.Request, host string) bool {
	host = strings.ToLower(host)
	if host == strings.ToLower(w.public.Host) {
		return true
	}
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		return false
	}
	switch name {
	case "localhost", "127.0.0.1", "[::1]", "::1":
	default:
		return false
	}
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	_, lport, err := net.SplitHostPort(la.String())
	return err == nil && lport == port
}

// originOK checks a state-changing request came from this page.
func (w *Web) originOK(r *http.Request) error {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return fmt.Errorf("Sec-Fetch-Site %s", s)
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return errors.New("no Origin")
	}
	u, err := url.Parse(o)
	if err != nil || u.Path != "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("bad Origin %q", o)
	}
	if strings.EqualFold(u.Scheme+"://"+u.Host, w.public.Scheme+"://"+w.public.Host) {
		return nil
	}
	if strings.EqualFold(u.Host, r.Host) && w.hostOK(r, u.Host) && !strings.EqualFold(u.Host, w.public.Host) {
		return nil // a loopback name of this listener
	}
	return fmt.Errorf("foreign Origin %q", o)
}

// refuse answers 401/403 and logs why: every doubt is a refusal.
func (w *Web) refuse(rw http.ResponseWriter, r *http.Request, status int, why string, args ...any) {
	w.log().Warn("approvals page: refused", append([]any{"why", why, "status", status, "path", r.URL.Path, "remote", r.RemoteAddr}, args...)...)
	problem(rw, status, http.StatusText(status), why)
}

func (w *Web) setCookie(rw http.ResponseWriter, name, value, path string, ttl time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, Secure: w.secure, SameSite: http.SameSiteLaxMode}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(ttl.Seconds())
	}
	http.SetCookie(rw, c)
}

func (w *Web) signinCookie() string {
	if w.secure {
		return "__Secure-agentpdp_signin"
	}
	return "agentpdp_signin"
}

// session reads the signed-in reviewer, if any.
func (w *Web) session(r *http.Request) (*session, error) {
	c, err := r.Cookie(w.cookie)
	if err != nil {
		return nil, errors.New("not signed in")
	}
	var s session
	if err := w.seal.open("session", c.Value, &s, w.opts.Now()); err != nil {
		return nil, fmt.Errorf("session cookie: %w", err)
	}
	if s.Reviewer.ID == "" || s.CSRF == "" {
		return nil, errors.New("session cookie without reviewer")
	}
	return &s, nil
}

// withSession serves signed-in reviewers; others are sent to sign in (a
// page) or refused (the page's own requests).
func (w *Web) withSession(h func(http.ResponseWriter, *http.Request, *session), toLogin bool) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		s, err := w.session(r)
		if err != nil {
			if toLogin {
				http.Redirect(rw, r, "/auth/login", http.StatusSeeOther)
				return
			}
			w.refuse(rw, r, http.StatusUnauthorized, "sign in first", "error", err)
			return
		}
		h(rw, r, s)
	}
}

// post serves state-changing requests: from this page's origin, in a
// session, with the session's CSRF token.
func (w *Web) post(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		if err := w.originOK(r); err != nil {
			w.refuse(rw, r, http.StatusForbidden, "cross-origin request refused", "error", err, "origin", r.Header.Get("Origin"))
			return
		}
		s, err := w.session(r)
		if err != nil {
			w.refuse(rw, r, http.StatusUnauthorized, "sign in first", "error", err)
			return
		}
		r.Body = http.MaxBytesReader(rw, r.Body, 64<<10)
		tok := r.Header.Get("X-CSRF-Token")
		if tok == "" {
			tok = r.PostFormValue("csrf")
		}
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
			w.refuse(rw, r, http.StatusForbidden, "missing or wrong CSRF token", "reviewer", s.Reviewer.ID)
			return
		}
		h(rw, r, s)
	}
}

// login starts the authorization code flow with PKCE, state and nonce.
func (w *Web) login(rw http.ResponseWriter, r *http.Request) {
	p, err := w.oidc.get(r.Context())
	if err != nil {
		w.log().Error("approvals page: OIDC provider unavailable", "error", err)
		problem(rw, http.StatusServiceUnavailable, "sign-in is unavailable", "the OIDC provider could not be reached")
		return
	}
	f := signin{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Exp: w.opts.Now().Add(signinTTL).Unix()}
	sealed, err := w.seal.seal("signin", &f)
	if err != nil {
		problem(rw, http.StatusInternalServerError, "sign-in failed", "")
		return
	}
	w.setCookie(rw, w.signinCookie(), sealed, "/auth/", signinTTL)
	u := w.oidc.oauth2(p, w.redirect).AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce))
	http.Redirect(rw, r, u, http.StatusFound)
}

// callback finishes the sign-in: the state must be this browser's, the
// code is exchanged with this browser's PKCE verifier, the ID token must
// verify and carry this browser's nonce.
func (w *Web) callback(rw http.ResponseWriter, r *http.Request) {
	fail := func(why string, err error) {
		w.log().Warn("approvals page: sign-in refused", "why", why, "error", err, "remote", r.RemoteAddr)
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		rw.WriteHeader(http.StatusForbidden)
		_ = pageTmpl.ExecuteTemplate(rw, "signin-failed", why)
	}
	c, err := r.Cookie(w.signinCookie())
	if err != nil {
		fail("this sign-in was not started in this browser, or took too long", err)
		return
	}
	var f signin
	if err := w.seal.open("signin", c.Value, &f, w.opts.Now()); err != nil {
		fail("this sign-in was not started in this browser, or took too long", err)
		return
	}
	// The flow is spent whatever happens next.
	w.setCookie(rw, w.signinCookie(), "", "/auth/", 0)
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		fail("the identity provider refused: "+e+" "+q.Get("error_description"), nil)
		return
	}
	if st := q.Get("state"); st == "" || subtle.ConstantTimeCompare([]byte(st), []byte(f.State)) != 1 {
		fail("the sign-in's state does not match this browser's", nil)
		return
	}
	p, err := w.oidc.get(r.Context())
	if err != nil {
		fail("the identity provider could not be reached", err)
		return
	}
	ctx := oidc.ClientContext(r.Context(), w.opts.HTTPClient)
	tok, err := w.oidc.oauth2(p, w.redirect).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		fail("the identity provider did not accept the code", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail("the identity provider sent no ID token", nil)
		return
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: w.opts.OIDC.ClientID}).Verify(ctx, raw)
	if err != nil {
		fail("the ID token did not verify", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		fail("the ID token's nonce is not this sign-in's", nil)
		return
	}
	rv, err := w.oidc.reviewer(idt)
	if err != nil {
		fail("the ID token does not say who you are", err)
		return
	}
	s := session{Reviewer: rv, Exp: w.opts.Now().Add(w.opts.SessionTTL).Unix(), CSRF: randomToken()}
	sealed, err := w.seal.seal("session", &s)
	if err != nil {
		fail("the session could not be made", err)
		return
	}
	w.setCookie(rw, w.cookie, sealed, "/", w.opts.SessionTTL)
	w.log().Info("approvals page: reviewer signed in", "reviewer", rv.ID, "groups", rv.Groups)
	http.Redirect(rw, r, "/", http.StatusSeeOther)
}

func (w *Web) logout(rw http.ResponseWriter, r *http.Request, s *session) {
	w.setCookie(rw, w.cookie, "", "/", 0)
	w.log().Info("approvals page: reviewer signed out", "reviewer", s.Reviewer.ID)
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTmpl.ExecuteTemplate(rw, "signed-out", nil)
}

// card is one approval as the page shows it.
type card struct {
	*Approval
	Call      string
	Args      string
	Approvals int
	// Blocked says why this reviewer may not review it ("" if they may).
	Blocked   string
	ExpiresIn string
}

type pageData struct {
	Me      Reviewer
	CSRF    string
	Pending []card
	Recent  []card
}

func (w *Web) data(ctx context.Context, s *session) (*pageData, error) {
	svc := w.opts.Service
	pending, err := svc.List(ctx, Filter{State: Pending, Limit: 200})
	if err != nil {
		return nil, err
	}
	all, err := svc.List(ctx, Filter{Limit: 30})
	if err != nil {
		return nil, err
	}
	now := w.opts.Now()
	d := &pageData{Me: s.Reviewer, CSRF: s.CSRF}
	for _, a := range pending {
		c := w.card(a, now)
		c.Blocked = svc.refuseReviewer(a, s.Reviewer, ReviewRequest{Verdict: VerdictApprove})
		d.Pending = append(d.Pending, c)
	}
	for _, a := range all {
		if a.State != Pending && len(d.Recent) < 10 {
			d.Recent = append(d.Recent, w.card(a, now))
		}
	}
	return d, nil
}

func (w *Web) card(a *Approval, now time.Time) card {
	c := card{Approval: a, Approvals: a.Approvals()}
	str := func(k string) string { s, _ := a.Action[k].(string); return s }
	if m := str("method"); m != "" {
		c.Call = strings.TrimSpace(fmt.Sprintf("HTTP %s %s%s", m, str("host"), str("path")))
	} else {
		c.Call = strings.TrimSpace(fmt.Sprintf("%s %s", str("kind"), strings.Trim(str("server")+"/"+str("tool"), "/")))
	}
	if r := str("resource"); r != "" {
		c.Call += " " + r
	}
	if args, ok := a.Action["arguments"]; ok {
		b, _ := json.MarshalIndent(args, "", "  ")
		c.Args = string(b)
	}
	if d := a.ExpiresAt.Sub(now).Round(time.Second); d > 0 {
		c.ExpiresIn = "in " + d.String()
	} else {
		c.ExpiresIn = "now"
	}
	return c
}

func (w *Web) render(rw http.ResponseWriter, r *http.Request, s *session, name string) {
	d, err := w.data(r.Context(), s)
	if err != nil {
		w.log().Error("approvals page: store", "error", err)
		problem(rw, http.StatusServiceUnavailable, "the approvals store failed", "")
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.ExecuteTemplate(rw, name, d); err != nil {
		w.log().Error("approvals page: template", "error", err)
	}
}

func (w *Web) page(rw http.ResponseWriter, r *http.Request, s *session) {
	w.render(rw, r, s, "page.html")
}
func (w *Web) list(rw http.ResponseWriter, r *http.Request, s *session) { w.render(rw, r, s, "list") }

// review is the page's approve or deny. The digest is the call the
// reviewer saw; the Service refuses it if the approval holds another.
func (w *Web) review(rw http.ResponseWriter, r *http.Request, s *session) {
	verdict, digest := r.PostFormValue("verdict"), r.PostFormValue("digest")
	if verdict != VerdictApprove && verdict != VerdictDeny {
		problem(rw, http.StatusBadRequest, "bad request", "verdict must be approve or deny")
		return
	}
	if digest == "" {
		problem(rw, http.StatusBadRequest, "bad request", "the digest of the call you reviewed is missing")
		return
	}
	a, err := w.opts.Service.Review(r.Context(), r.PathValue("id"), s.Reviewer, ReviewRequest{Verdict: verdict, Comment: r.PostFormValue("comment"), Digest: digest})
	if err != nil {
		reviewProblem(rw, w.log(), "approvals page: review", err)
		return
	}
	msg := fmt.Sprintf("%s: %d of %d approvals", a.State, a.Approvals(), a.Min)
	if verdict == VerdictDeny {
		msg = "denied"
	}
	writeJSON(rw, http.StatusOK, map[string]any{"id": a.ID, "state": a.State, "message": msg})
}

// events is a Server-Sent Events stream: "change" with an approval id
// whenever one changes (here or on another replica), fed by Store.Watch.
// It ends with the session, so an expired reviewer stops hearing.
func (w *Web) events(rw http.ResponseWriter, r *http.Request, s *session) {
	rc := http.NewResponseController(rw)
	_ = rc.SetWriteDeadline(time.Time{}) // the server's write timeout is for ordinary answers
	changed := make(chan string, 16)
	stop := w.opts.Service.Store().Watch(func(id string) {
		select {
		case changed <- id:
		default: // the page refetches the whole list anyway
		}
	})
	defer stop()
	rw.Header().Set("Content-Type", "text/event-stream")
	rw.Header().Set("X-Accel-Buffering", "no")
	rw.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(rw, "retry: 2000\n: live\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	end := time.NewTimer(time.Until(time.Unix(s.Exp, 0)))
	defer end.Stop()
	ping := time.NewTicker(20 * time.Second)
	defer ping.Stop()
	for {
		var msg string
		select {
		case id := <-changed:
			msg = "event: change\ndata: " + id + "\n\n"
		case <-ping.C:
			msg = ": ping\n\n"
		case <-end.C:
			return
		case <-w.closing:
			return
		case <-r.Context().Done():
			return
		}
		if _, err := io.WriteString(rw, msg); err != nil || rc.Flush() != nil {
			return
		}
	}
}

func (w *Web) asset(rw http.ResponseWriter, r *http.Request) {
	types := map[string]string{"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
	name := r.PathValue("file")
	ct, ok := types[name]
	if !ok {
		http.NotFound(rw, r)
		return
	}
	b, err := webFS.ReadFile("web/" + name)
	if err != nil {
		http.NotFound(rw, r)
		return
	}
	rw.Header().Set("Content-Type", ct)
	_, _ = rw.Write(b)
}
