package mcpproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/identity"
	"github.com/agentpdp/agentpdp/pdp/jcs"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// UpstreamConfig is where a proxied server is: a Streamable HTTP URL, or a
// command to run per session (stdio).
type UpstreamConfig struct {
	URL     string
	Command *Command
	// SSE says URL is a legacy HTTP+SSE endpoint (2024-11-05), not
	// Streamable HTTP.
	SSE bool
	// Stateful says the URL's server speaks only the stateful era: a
	// 2026-07-28 client is bridged (as it always is to a command or SSE).
	Stateful bool
	// Stateless says the URL's server speaks only 2026-07-28: a stateful
	// client is bridged to it.
	Stateless bool
}

// HTTPConfig configures the Streamable HTTP side facing clients.
type HTTPConfig struct {
	// Listen is the listener's address; its host names what Host and
	// Origin may say (DNS rebinding).
	Listen string
	// Path is where the MCP endpoint is (default /mcp).
	Path     string
	Upstream UpstreamConfig
	// StaticIdentity names the one local agent a loopback listener serves;
	// refused on other listeners.
	StaticIdentity *Identity
	// JWT verifies Bearer tokens as the Envoy door does.
	JWT *identity.JWTConfig
	// MTLS: the listener requires client certificates, whose SPIFFE ID is
	// the agent (the listener's TLS is the caller's to set up).
	MTLS bool
	// AllowedHosts and AllowedOrigins add to the listener's own names.
	AllowedHosts   []string
	AllowedOrigins []string
	// IdleTimeout ends sessions with no traffic (default 30 min).
	IdleTimeout time.Duration
	// Client is used to reach an HTTP upstream (default: a client that
	// never follows redirects off the upstream).
	Client *http.Client
}

// HTTPHandler serves MCP's Streamable HTTP transport in front of one
// upstream, a session per client.
type HTTPHandler struct {
	cfg      HTTPConfig
	opts     *Options
	verifier *identity.Verifier
	hosts    map[string]bool
	origins  map[string]bool
	log      *slog.Logger
	stop     context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*httpSession
	// bridges are the stateful sessions agentpdp keeps for stateless
	// callers, by caller.
	bmu     sync.Mutex
	bridges map[callerKey]*bridge
}

// httpSession is a Session with its client-facing streams.
type httpSession struct {
	*Session
	mu      sync.Mutex
	waiters map[string]chan clientMsg // open POST streams, by request id
	get     chan []byte               // the GET stream, when open
	backlog [][]byte                  // for the GET stream not yet open
	// progress maps a progress token to the request it reports on.
	progress map[string]string
}

// clientMsg is a message on its way to a POST stream; final: it is the
// response that ends the stream (toClientFunc).
type clientMsg struct {
	msg   []byte
	final bool
}

// NewHTTPHandler makes the handler; Close ends its sessions.
func NewHTTPHandler(cfg HTTPConfig, opts *Options) (*HTTPHandler, error) {
	if cfg.Path == "" {
		cfg.Path = "/mcp"
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.Upstream.URL == "" && cfg.Upstream.Command == nil {
		return nil, errors.New("mcp: an upstream URL or command is required")
	}
	if cfg.Upstream.URL != "" {
		if _, err := hostOf(cfg.Upstream.URL); err != nil {
			return nil, err
		}
	}
	if opts.ParamHeaders == nil {
		opts.ParamHeaders = NewParamHeaders()
	}
	// An SSE server speaks only the stateful era, and a server cannot be
	// stateful-only and stateless-only at once.
	if cfg.Upstream.Stateless && (cfg.Upstream.Stateful || cfg.Upstream.SSE) {
		return nil, errors.New("mcp: a stateless upstream is neither stateful nor a legacy SSE endpoint")
	}
	if cfg.Client == nil {
		// Keep as many idle connections to the one upstream as there are
		// concurrent sessions (the default of 2 churns connections under
		// load), and never follow a redirect off it. No gzip: the
		// transport would ask for it on every request and inflate each
		// answer, for an upstream that is usually next door.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost, tr.MaxIdleConns = 256, 256
		tr.DisableCompression = true
		cfg.Client = &http.Client{Transport: newOwnTransport(tr), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("mcp: listen address %q: %w", cfg.Listen, err)
	}
	loopback := isLoopback(host)
	if cfg.StaticIdentity != nil && !loopback {
		return nil, fmt.Errorf("mcp: a static identity serves one local agent: listen on loopback, not %q, or verify tokens (jwt)", cfg.Listen)
	}
	if cfg.StaticIdentity == nil && cfg.JWT == nil && !cfg.MTLS {
		return nil, errors.New("mcp: say who the caller is: a static agent (loopback only), jwt, or client certificates (tls.client_ca_file)")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, stop := context.WithCancel(context.Background())
	h := &HTTPHandler{cfg: cfg, opts: opts, hosts: map[string]bool{}, origins: map[string]bool{}, log: log.With("door", "mcp"), stop: stop, sessions: map[string]*httpSession{}, bridges: map[callerKey]*bridge{}}
	names := cfg.AllowedHosts
	if loopback {
		names = append(names, "localhost", "127.0.0.1", "[::1]", "::1")
	} else if host != "" && host != "0.0.0.0" && host != "::" {
		names = append(names, host)
	}
	for _, n := range names {
		h.hosts[strings.ToLower(n)] = true
	}
	for _, o := range cfg.AllowedOrigins {
		h.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	if cfg.JWT != nil {
		v, err := identity.NewVerifier(ctx, *cfg.JWT)
		if err != nil {
			stop()
			return nil, fmt.Errorf("mcp.jwt: %w", err)
		}
		h.verifier = v
	}
	go h.reap(ctx)
	return h, nil
}

// Close ends every session (stopping their upstreams).
func (h *HTTPHandler) Close() {
	h.stop()
	h.mu.Lock()
	all := h.sessions
	h.sessions = map[string]*httpSession{}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	wg.Wait()
	h.cfg.Client.CloseIdleConnections()
	if h.verifier != nil {
		_ = h.verifier.Close()
	}
}

// Sessions is how many sessions are open.
func (h *HTTPHandler) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

func (h *HTTPHandler) reap(ctx context.Context) {
	t := time.NewTicker(min(h.cfg.IdleTimeout/4, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		var idle []*httpSession
		for id, s := range h.sessions {
			if s.Idle() > h.cfg.IdleTimeout {
				idle = append(idle, s)
				delete(h.sessions, id)
			}
		}
		h.mu.Unlock()
		for _, s := range idle {
			h.log.Info("session idle; closed", "session", s.ID(), "idle_timeout", h.cfg.IdleTimeout)
			s.Close()
		}
	}
}

func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.hostAllowed(r.Host) {
		h.refuseHTTP(w, r, "builtin#invalid-host", fmt.Sprintf("Host %q is not this listener (DNS rebinding?)", r.Host), "Forbidden: invalid Host header")
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !h.originAllowed(o, r.Host) {
		h.refuseHTTP(w, r, "builtin#invalid-origin", fmt.Sprintf("Origin %q is not this listener", o), "Forbidden: invalid Origin header")
		return
	}
	if r.URL.Path == "/.well-known/oauth-protected-resource" || strings.HasPrefix(r.URL.Path, "/.well-known/oauth-protected-resource/") {
		h.protectedResource(w, r)
		return
	}
	legacy := ""
	switch r.URL.Path {
	case h.cfg.Path:
	case h.cfg.Path + "/sse", h.cfg.Path + "/messages":
		legacy = strings.TrimPrefix(r.URL.Path, h.cfg.Path+"/")
	default:
		http.NotFound(w, r)
		return
	}
	ident, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	switch {
	case legacy == "sse" && r.Method == http.MethodGet:
		h.sseStream(w, r, ident)
		return
	case legacy == "messages":
		h.sseMessage(w, r, ident)
		return
	case legacy != "":
		w.Header().Set("Allow", "GET")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.Method {
	case http.MethodPost:
		h.post(w, r, ident)
	case http.MethodGet:
		if r.Header.Get("Mcp-Session-Id") == "" {
			// No session, no stream to open: the stateless era (2026-07-28)
			// is POST only.
			w.Header().Set("Allow", "POST")
			http.Error(w, "Method Not Allowed: no session (2026-07-28 is POST only)", http.StatusMethodNotAllowed)
			return
		}
		h.getStream(w, r, ident)
	case http.MethodDelete:
		s := h.session(w, r, ident)
		if s == nil {
			return
		}
		h.mu.Lock()
		delete(h.sessions, s.ID())
		h.mu.Unlock()
		s.Close()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

// refuseHTTP answers 403 to a request refused before anyone is named,
// and logs it as a decision.
func (h *HTTPHandler) refuseHTTP(w http.ResponseWriter, r *http.Request, rule, msg, answer string) {
	in := doorInput(Identity{}, h.opts.Server, "", r.RemoteAddr)
	in.Action.Kind = "mcp.http"
	in.Action.HTTP = pdp.HTTP{Method: r.Method, Host: strings.ToLower(r.Host), Path: r.URL.Path}
	d := refuse(r.Context(), h.opts, h.log, in, rule, msg, "request refused")
	w.Header().Set("X-Agentpdp-Decision-Id", d.ID)
	http.Error(w, answer, http.StatusForbidden)
}

// hostAllowed: the Host names this listener (a browser lured to a page
// whose name resolves to loopback sends that name: DNS rebinding).
func (h *HTTPHandler) hostAllowed(hostport string) bool {
	name := hostport
	if n, _, err := net.SplitHostPort(hostport); err == nil {
		name = n
	}
	return h.hosts[strings.ToLower(strings.Trim(name, "[]"))] || h.hosts[strings.ToLower(name)]
}

// originAllowed: a browser's Origin is this listener itself (same name and
// port as the Host) or one the configuration names.
func (h *HTTPHandler) originAllowed(origin, hostport string) bool {
	o := strings.ToLower(strings.TrimSuffix(origin, "/"))
	if h.origins[o] {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	_, port, _ := net.SplitHostPort(hostport)
	return h.hostAllowed(u.Host) && u.Port() == port
}

// authenticate names the caller: a verified Bearer token, or the static
// identity of a loopback listener. A missing or bad token is a 401 that
// points at the protected-resource metadata (RFC 9728), as MCP's
// authorization spec has clients expect.
func (h *HTTPHandler) authenticate(w http.ResponseWriter, r *http.Request) (Identity, bool) {
	fail := func(status int, msg, class string) (Identity, bool) {
		in := doorInput(Identity{}, h.opts.Server, "", r.RemoteAddr)
		in.Action.Kind = "mcp.unauthenticated"
		d := refuse(r.Context(), h.opts, h.log, in, "builtin#unauthenticated", msg, "request not authenticated")
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error=%q, error_description=%q, resource_metadata=%q`, "invalid_token", class, h.metadataURL(r)))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": "invalid_token", "error_description": class, "decision_id": d.ID})
		return Identity{}, false
	}
	// The mTLS peer's SPIFFE ID names the agent when there is one.
	var mtls string
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id, err := identity.SPIFFEIDFromCert(r.TLS.PeerCertificates[0])
		if err != nil {
			return fail(http.StatusForbidden, "client certificate: "+err.Error(), "the client certificate names no SPIFFE ID")
		}
		mtls = id
	}
	authz := r.Header.Get("Authorization")
	if h.verifier == nil || authz == "" {
		switch {
		case mtls != "":
			id := Identity{Agent: pdp.Agent{ID: mtls, Authn: "mtls"}}
			if h.cfg.StaticIdentity != nil {
				id.User = h.cfg.StaticIdentity.User
			}
			return id, true
		case h.cfg.StaticIdentity != nil:
			return *h.cfg.StaticIdentity, true
		}
		return fail(http.StatusUnauthorized, "no Bearer token", "a Bearer token is required")
	}
	tok, ok := identity.BearerToken(authz)
	if !ok {
		return fail(http.StatusUnauthorized, "the Authorization header is not one Bearer token", "invalid_request")
	}
	claims, err := h.verifier.Verify(r.Context(), tok)
	if err != nil {
		return fail(http.StatusUnauthorized, err.Error(), identity.TokenClass(err))
	}
	agent, user, deleg, err := identity.FromClaims(claims, h.cfg.JWT.Claims)
	if err != nil {
		return fail(http.StatusUnauthorized, "token claims: "+err.Error(), "invalid_token")
	}
	if mtls != "" {
		if agent.ID != "" && agent.ID != mtls {
			return fail(http.StatusForbidden, fmt.Sprintf("the token was issued to agent %q but the connection is agent %q", agent.ID, mtls), "the token is for another agent")
		}
		agent.ID, agent.Authn = mtls, "mtls"
	}
	if agent.ID == "" {
		return fail(http.StatusUnauthorized, "the token names no agent", "invalid_token")
	}
	return Identity{Agent: agent, User: user, Delegation: deleg, token: tok}, true
}

func (h *HTTPHandler) metadataURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/.well-known/oauth-protected-resource" + h.cfg.Path
}

// protectedResource serves RFC 9728 metadata: what this resource is and
// which authorization server issues its tokens.
func (h *HTTPHandler) protectedResource(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	md := map[string]any{"resource": scheme + "://" + r.Host + h.cfg.Path, "bearer_methods_supported": []string{"header"}}
	if h.cfg.JWT != nil && h.cfg.JWT.Issuer != "" {
		md["authorization_servers"] = []string{h.cfg.JWT.Issuer}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(md)
}

// session finds the caller's session; one of another caller is as unknown
// as a made-up id (404), so ids cannot be probed.
func (h *HTTPHandler) session(w http.ResponseWriter, r *http.Request, ident Identity) *httpSession {
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		writeRPCError(w, http.StatusBadRequest, nil, -32000, "Bad Request: no Mcp-Session-Id; send initialize first")
		return nil
	}
	h.mu.Lock()
	s := h.sessions[id]
	h.mu.Unlock()
	if s == nil || !s.Identity().same(ident) {
		if s != nil {
			h.log.Warn("a caller used another caller's session id", "session", id, "agent", ident.Agent.ID, "user", ident.User.ID)
		}
		writeRPCError(w, http.StatusNotFound, nil, -32001, "Session not found")
		return nil
	}
	return s
}

func (h *HTTPHandler) post(w http.ResponseWriter, r *http.Request, ident Identity) {
	body, err := readBody(http.MaxBytesReader(w, r.Body, MaxMessageBytes), r.ContentLength, MaxMessageBytes)
	if err != nil {
		writeRPCError(w, http.StatusRequestEntityTooLarge, nil, mcpmsg.CodeInvalidRequest, fmt.Sprintf("the message is larger than %d bytes", MaxMessageBytes))
		return
	}
	// The message is read the one strict way before anything else.
	m, id, perr := parse(h.opts.Methods, body)
	stateless := r.Header.Get("Mcp-Session-Id") == "" && ((m != nil && statelessVersion(m) != "") || statelessHeader(r))
	if perr != nil {
		status := http.StatusBadRequest
		var named struct{ Method string }
		_ = json.Unmarshal(body, &named)
		switch {
		case stateless && removedMethods[named.Method]:
			// A method 2026-07-28 dropped is unknown there, whatever its
			// params say.
			perr = &mcpmsg.Error{Code: mcpmsg.CodeMethodNotFound, Msg: named.Method + " does not exist in 2026-07-28"}
			status = http.StatusNotFound
		case stateless && perr.Code == mcpmsg.CodeMethodNotFound:
			status = http.StatusNotFound // 2026-07-28: an unknown method is a 404
		}
		writeJSON(w, status, h.refuseMsg(r, ident, id, perr))
		return
	}
	var s *httpSession
	switch {
	case stateless:
		h.stateless(w, r, ident, m, body)
		return
	case m.Method == "initialize" && r.Header.Get("Mcp-Session-Id") == "":
		if s, err = h.open(ident, r.RemoteAddr); err != nil {
			h.log.Error("could not reach the upstream", "error", err)
			writeRPCError(w, http.StatusBadGateway, m.ID, -32000, "the upstream server could not be reached: "+err.Error())
			return
		}
	default:
		if s = h.session(w, r, ident); s == nil {
			return
		}
		s.refreshToken(ident.token)
	}
	if m.Class != mcpmsg.Request {
		s.Handle(r.Context(), m, body)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if m.Method == "initialize" {
		w.Header().Set("Mcp-Session-Id", s.ID())
	}
	s.respond(w, r, r.Context(), m, body)
}

// respond handles request m on s and writes its answer: JSON, or an SSE
// stream of what the server sends for it, ending with the answer.
func (s *httpSession) respond(w http.ResponseWriter, r *http.Request, ctx context.Context, m *mcpmsg.Message, body []byte) {
	s.respondAs(w, r, ctx, m, body, nil)
}

// respondAs is respond with every message rewritten on its way out
// (nil: as it is).
func (s *httpSession) respondAs(w http.ResponseWriter, r *http.Request, ctx context.Context, m *mcpmsg.Message, body []byte, rewrite func([]byte) []byte) {
	key := idKey(m.ID)
	ch := s.wait(key)
	defer s.unwait(key)
	// Drop the upstream's marks for key when they were not asked for (each
	// is read once; the JSON answer reads both).
	askedStreamed, askedStatus := false, false
	defer func() {
		if !askedStreamed {
			s.upstreamStreamed(key)
		}
		if !askedStatus {
			s.upstreamStatus(key)
		}
	}()
	s.noteProgress(m, key)
	s.Handle(ctx, m, body)
	// The answer alone goes back as JSON when the client takes JSON and the
	// server answered so too (or has no framing: stdio): no stream to frame
	// and flush. Anything the server sends first for this request
	// (progress, sampling, elicitation) turns the answer into an SSE
	// stream, when the client takes one.
	sse := false
	for {
		select {
		case cm := <-ch:
			msg, final := cm.msg, cm.final
			if rewrite != nil {
				msg = rewrite(msg)
			}
			if !sse && final && acceptsJSON(r) {
				askedStreamed = true
				if !s.upstreamStreamed(key) {
					askedStatus = true
					writeJSON(w, s.upstreamStatus(key), msg)
					return
				}
			}
			if !sse && !acceptsSSE(r) {
				s.toGet(msg) // JSON only: the rest goes to the GET stream
				continue
			}
			if !sse {
				sse = true
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Cache-Control", "no-cache")
				w.WriteHeader(http.StatusOK)
			}
			if final {
				writeLastEvent(w, msg)
				return
			}
			writeEvent(w, msg)
		case <-r.Context().Done():
			return
		case <-s.Done():
			end := errorResponse(m.ID, -32000, "the session ended", nil)
			if sse {
				writeEvent(w, end)
			} else {
				writeJSON(w, http.StatusOK, end)
			}
			return
		}
	}
}

// refuseMsg refuses a message read before any session.
func (h *HTTPHandler) refuseMsg(r *http.Request, ident Identity, id any, e *mcpmsg.Error) []byte {
	return refuseMsg(r.Context(), h.opts, h.log, doorInput(ident, h.opts.Server, r.Header.Get("Mcp-Session-Id"), r.RemoteAddr), id, e)
}

// open starts a session and its upstream for a client's initialize.
func (h *HTTPHandler) open(ident Identity, remote string) (*httpSession, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	hs := &httpSession{waiters: map[string]chan clientMsg{}, progress: map[string]string{}}
	hs.Session = newSession(hex.EncodeToString(b[:]), ident, remote, h.opts, hs.toClient)
	var up Upstream
	var err error
	switch {
	case h.cfg.Upstream.Command != nil:
		up, err = StartStdio(*h.cfg.Upstream.Command, hs.FromServer, hs.log)
	case h.cfg.Upstream.SSE:
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		up, err = DialSSE(ctx, h.cfg.Upstream.URL, h.cfg.Client, hs.FromServer, hs.log)
		cancel()
	case h.cfg.Upstream.Stateless:
		up = newStatelessUpstream(h.cfg.Upstream.URL, h.cfg.Client, hs.FromServer, hs.log, hs.credential)
	default:
		up = DialHTTP(h.cfg.Upstream.URL, h.cfg.Client, hs.FromServer, hs.log, hs.credential)
	}
	if err != nil {
		return nil, err
	}
	hs.Attach(up)
	h.mu.Lock()
	h.sessions[hs.ID()] = hs
	h.mu.Unlock()
	go func() {
		<-hs.Done()
		h.mu.Lock()
		if h.sessions[hs.ID()] == hs {
			delete(h.sessions, hs.ID())
		}
		h.mu.Unlock()
	}()
	h.log.Info("session opened", "session", hs.ID(), "agent", ident.Agent.ID, "user", ident.User.ID)
	return hs, nil
}

// statelessVersions are the stateless protocol revisions served.
var statelessVersions = map[string]bool{"2026-07-28": true}

// statefulVersions are the revisions that begin with initialize.
var statefulVersions = map[string]bool{"2024-11-05": true, "2025-03-26": true, "2025-06-18": true, "2025-11-25": true}

// removedMethods are the stateful era's methods 2026-07-28 dropped: a
// stateless request for one is a 404, as from a 2026-07-28 server.
var removedMethods = map[string]bool{"initialize": true, "ping": true, "logging/setLevel": true,
	"resources/subscribe": true, "resources/unsubscribe": true, "notifications/initialized": true}

// statelessHeader: a sessionless request whose MCP-Protocol-Version header
// names no stateful revision speaks the stateless era, even when its body
// forgot the _meta that says so.
func statelessHeader(r *http.Request) bool {
	v := strings.TrimSpace(r.Header.Get("Mcp-Protocol-Version"))
	return v != "" && !statefulVersions[v]
}

// stateless serves one 2026-07-28 request: no session; its MCP routing
// headers must say what the body says (checked before anything is
// decided); the upstream gets the request with the headers rebuilt from
// the body, and the answer (an InputRequiredResult and its requestState
// included) as it comes. An upstream that only speaks the stateful era
// (stdio, legacy SSE, or configured stateful) is reached through the
// caller's bridge (bridge.go).
func (h *HTTPHandler) stateless(w http.ResponseWriter, r *http.Request, ident Identity, m *mcpmsg.Message, body []byte) {
	version := statelessVersion(m)
	fail := func(status, code int, rule, msg string) {
		in := doorInput(ident, h.opts.Server, "", r.RemoteAddr)
		m.Action(&in.Action)
		in.Action.Server = h.opts.Server
		d := refuse(r.Context(), h.opts, h.log, in, rule, msg, "stateless request refused")
		data := map[string]any{"decision_id": d.ID}
		if code == -32022 {
			data["supported"], data["requested"] = []string{"2026-07-28"}, version
		}
		writeJSON(w, status, errorResponse(m.ID, code, msg, data))
	}
	meta, _ := m.Params["_meta"].(map[string]any)
	if m.Class == mcpmsg.Request && version == "" {
		fail(http.StatusBadRequest, mcpmsg.CodeInvalidParams, "builtin#bad-request", "params._meta io.modelcontextprotocol/protocolVersion is required (2026-07-28)")
		return
	}
	// The headers route; the body is what is decided: they must agree.
	hdr := func(k string) (string, bool) {
		v, ok := r.Header[http.CanonicalHeaderKey(k)]
		if !ok || len(v) == 0 {
			return "", false
		}
		return strings.TrimSpace(v[0]), true
	}
	if v, _ := hdr("Mcp-Protocol-Version"); v != version {
		fail(http.StatusBadRequest, mcpmsg.CodeHeaderMismatch, "builtin#header-mismatch",
			fmt.Sprintf("MCP-Protocol-Version header %s does not match the body's %s", strconv.Quote(v), strconv.Quote(version)))
		return
	}
	if _, ok := hdr("Mcp-Method"); !ok && m.Class == mcpmsg.Request {
		fail(http.StatusBadRequest, mcpmsg.CodeHeaderMismatch, "builtin#header-mismatch", "the Mcp-Method header is missing")
		return
	}
	if _, ok := hdr("Mcp-Name"); !ok && m.Name() != "" {
		fail(http.StatusBadRequest, mcpmsg.CodeHeaderMismatch, "builtin#header-mismatch", "the Mcp-Name header is missing")
		return
	}
	if err := m.CheckHeaders(hdr); err != nil {
		fail(http.StatusBadRequest, mcpmsg.CodeHeaderMismatch, "builtin#header-mismatch", err.Error())
		return
	}
	// Mcp-Param-* mirror a tool's x-mcp-header arguments: held against
	// the body too, and forwarded only as rebuilt from it.
	var params map[string]string
	if m.Class == mcpmsg.Request {
		args, _ := m.Params["arguments"].(map[string]any)
		tool := ""
		if m.Method == "tools/call" {
			tool = m.Name()
		}
		var err error
		params, err = h.opts.ParamHeaders.check(h.opts.Server, tool, args, r.Header)
		var unlisted *unlistedError
		if errors.As(err, &unlisted) && h.statelessUpstream() && h.opts.ParamHeaders.mayLearn(h.opts.Server, time.Now()) {
			// Not listed through this agentpdp (since a restart, or on
			// another replica): list as the caller, then check again.
			if lerr := h.learnTools(r.Context(), ident, r.RemoteAddr, version, meta); lerr != nil {
				h.log.Warn("listing the upstream's tools to check Mcp-Param headers failed", "error", lerr)
			}
			params, err = h.opts.ParamHeaders.check(h.opts.Server, tool, args, r.Header)
		}
		if err != nil {
			fail(http.StatusBadRequest, mcpmsg.CodeHeaderMismatch, "builtin#header-mismatch", err.Error())
			return
		}
	}
	if !statelessVersions[version] {
		fail(http.StatusBadRequest, -32022, "builtin#unsupported-version", "unsupported protocol version: "+version)
		return
	}
	if m.Class == mcpmsg.Request {
		if _, ok := meta["io.modelcontextprotocol/clientCapabilities"].(map[string]any); !ok {
			fail(http.StatusBadRequest, mcpmsg.CodeInvalidParams, "builtin#bad-request", "params._meta io.modelcontextprotocol/clientCapabilities must be an object")
			return
		}
	}
	if removedMethods[m.Method] {
		fail(http.StatusNotFound, mcpmsg.CodeMethodNotFound, "builtin#bad-request", m.Method+" does not exist in 2026-07-28")
		return
	}
	ctx := r.Context()
	if st, ok := m.Params["requestState"].(string); ok && isStateHandle(st) {
		// agentpdp's own: verified, then taken off; the rest is decided.
		hd, err := openState(h.opts.StateKey, st, time.Now())
		if err != nil {
			fail(http.StatusOK, codeDenied, "builtin#bad-request-state", err.Error())
			return
		}
		if err := stripHandle(m.Params, hd); err != nil {
			fail(http.StatusOK, codeDenied, "builtin#bad-request-state", "requestState: "+err.Error())
			return
		}
		if body, err = jcs.Append(nil, m.Object); err == nil {
			m, err = h.opts.Methods.Parse(body)
		}
		if err != nil {
			fail(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, "builtin#bad-request", "the request without agentpdp's requestState: "+err.Error())
			return
		}
		ctx = withHandle(ctx, hd)
		r = r.WithContext(ctx)
	}
	if h.cfg.Upstream.URL == "" || h.cfg.Upstream.SSE || h.cfg.Upstream.Stateful {
		h.bridged(w, r, ident, m)
		return
	}
	s := h.statelessSession(ident, r.RemoteAddr)
	defer s.Close()
	ctx = withRouting(ctx, routing{version: version, method: m.Method, name: m.Name(), params: params})
	if m.Class != mcpmsg.Request {
		s.Handle(ctx, m, body)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	s.respond(w, r, ctx, m, body)
}

// statelessSession is a session for one request to the stateless
// upstream.
func (h *HTTPHandler) statelessSession(ident Identity, remote string) *httpSession {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := &httpSession{waiters: map[string]chan clientMsg{}, progress: map[string]string{}}
	s.Session = newSession("stateless-"+hex.EncodeToString(b[:8]), ident, remote, h.opts, s.toClient)
	s.Attach(DialHTTP(h.cfg.Upstream.URL, h.cfg.Client, s.FromServer, s.log, s.credential))
	return s
}

// statelessUpstream says whether the upstream serves 2026-07-28 requests
// directly (not through the bridge).
func (h *HTTPHandler) statelessUpstream() bool {
	return h.cfg.Upstream.URL != "" && !h.cfg.Upstream.SSE && !h.cfg.Upstream.Stateful
}

// learnTools lists the stateless upstream's tools as the caller would
// (decided like the caller's own tools/list, and filtered item by item),
// so that the x-mcp-header declarations of the tools it may see are known.
func (h *HTTPHandler) learnTools(ctx context.Context, ident Identity, remote, version string, meta map[string]any) error {
	s := h.statelessSession(ident, remote)
	defer s.Close()
	ctx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
	defer cancel()
	ctx = withRouting(ctx, routing{version: version, method: "tools/list"})
	listMeta := map[string]any{}
	for _, k := range []string{"io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities", "io.modelcontextprotocol/clientInfo"} {
		if v, ok := meta[k]; ok {
			listMeta[k] = v
		}
	}
	cursor := ""
	for page := range 16 { // a bound: an upstream's cursors cannot keep agentpdp listing
		params := map[string]any{"_meta": listMeta}
		if cursor != "" {
			params["cursor"] = cursor
		}
		// The message as built is the one its encoding decodes to: read as
		// it is, not parsed again from the bytes that go upstream.
		msg := map[string]any{"jsonrpc": "2.0", "id": "agentpdp-tools-list-" + strconv.Itoa(page), "method": "tools/list", "params": params}
		body, err := jcs.Append(nil, msg)
		if err != nil {
			return err
		}
		m, err := h.opts.Methods.FromValue(msg)
		if err != nil {
			return err
		}
		key := idKey(m.ID)
		ch := s.wait(key)
		s.Handle(ctx, m, body) // answered: Session records the declarations of what it lets through
		var answer []byte
		for answer == nil {
			select {
			case cm := <-ch:
				if cm.final {
					answer = cm.msg
				}
			case <-ctx.Done():
				s.unwait(key)
				return ctx.Err()
			}
		}
		s.unwait(key)
		s.upstreamStreamed(key)
		s.upstreamStatus(key)
		var res struct {
			Error  json.RawMessage `json:"error"`
			Result struct {
				NextCursor string `json:"nextCursor"`
			} `json:"result"`
		}
		if err := json.Unmarshal(answer, &res); err != nil {
			return err
		}
		if len(res.Error) > 0 {
			return fmt.Errorf("tools/list: %s", res.Error)
		}
		if cursor = res.Result.NextCursor; cursor == "" {
			return nil
		}
	}
	return errors.New("tools/list: more than 16 pages")
}

// statelessVersion is the protocol version a 2026-07-28 request carries in
// params._meta, or "".
func statelessVersion(m *mcpmsg.Message) string {
	meta, _ := m.Params["_meta"].(map[string]any)
	v, _ := meta["io.modelcontextprotocol/protocolVersion"].(string)
	return v
}

func (h *HTTPHandler) getStream(w http.ResponseWriter, r *http.Request, ident Identity) {
	if !acceptsSSE(r) {
		http.Error(w, "Not Acceptable: the GET stream is text/event-stream", http.StatusNotAcceptable)
		return
	}
	s := h.session(w, r, ident)
	if s == nil {
		return
	}
	ch, backlog, ok := s.openGet()
	if !ok {
		writeRPCError(w, http.StatusConflict, nil, -32000, "Conflict: this session's GET stream is already open")
		return
	}
	defer s.closeGet(ch)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for _, msg := range backlog {
		writeEvent(w, msg)
	}
	flush(w)
	s.pump(w, r, ch)
}

// pump writes ch's messages as SSE events until the client or the session
// goes.
func (s *httpSession) pump(w http.ResponseWriter, r *http.Request, ch <-chan []byte) {
	for {
		select {
		case msg := <-ch:
			writeEvent(w, msg)
		case <-r.Context().Done():
			return
		case <-s.Done():
			return
		}
	}
}

// toClient routes a message to the client stream it belongs on: the POST
// stream of the request it answers or reports on, else the GET stream.
func (s *httpSession) toClient(msg []byte, stream string, final bool) {
	s.mu.Lock()
	if stream == "" {
		stream = s.progressStream(msg)
	}
	if ch, ok := s.waiters[stream]; ok && stream != "" {
		s.mu.Unlock()
		select {
		case ch <- clientMsg{msg, final}:
		case <-s.Done():
		}
		return
	}
	s.mu.Unlock()
	s.toGet(msg)
}

// toGet queues msg for the GET stream (a bounded backlog until it opens).
func (s *httpSession) toGet(msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.get != nil {
		select {
		case s.get <- msg:
			return
		default:
		}
	}
	if len(s.backlog) >= 256 {
		s.log.Warn("dropped a server message: the client has no open stream for it")
		return
	}
	s.backlog = append(s.backlog, msg)
}

func (s *httpSession) openGet() (chan []byte, [][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.get != nil {
		return nil, nil, false
	}
	s.get = make(chan []byte, 256)
	b := s.backlog
	s.backlog = nil
	return s.get, b, true
}

func (s *httpSession) closeGet(ch chan []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.get == ch {
		s.get = nil
	}
}

func (s *httpSession) wait(key string) chan clientMsg {
	ch := make(chan clientMsg, 16)
	s.mu.Lock()
	s.waiters[key] = ch
	s.mu.Unlock()
	return ch
}

func (s *httpSession) unwait(key string) {
	s.mu.Lock()
	delete(s.waiters, key)
	for tok, k := range s.progress {
		if k == key {
			delete(s.progress, tok)
		}
	}
	s.mu.Unlock()
}

// noteProgress remembers a request's progress token, so a stdio server's
// progress notifications reach the stream of the request they report on.
func (s *httpSession) noteProgress(m *mcpmsg.Message, key string) {
	meta, _ := m.Params["_meta"].(map[string]any)
	if tok, ok := meta["progressToken"]; ok {
		s.mu.Lock()
		s.progress[idKey(tok)] = key
		s.mu.Unlock()
	}
}

// progressStream is the request a progress notification reports on (s.mu
// held).
func (s *httpSession) progressStream(msg []byte) string {
	if len(s.progress) == 0 || !bytes.Contains(msg, []byte("notifications/progress")) {
		return ""
	}
	var n struct {
		Params struct {
			Token json.RawMessage `json:"progressToken"`
		} `json:"params"`
	}
	if json.Unmarshal(msg, &n) != nil {
		return ""
	}
	return s.progress[canonicalRawID(n.Params.Token)]
}

// acceptsJSON: an Accept that names application/json (or says nothing,
// or */*).
func acceptsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return a == "" || strings.Contains(a, "application/json") || strings.Contains(a, "*/*")
}

func acceptsSSE(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, status int, msg []byte) {
	w.Header()["Content-Type"] = hdrJSON
	w.WriteHeader(status)
	_, _ = w.Write(msg)
}

func writeRPCError(w http.ResponseWriter, status int, id any, code int, msg string) {
	writeJSON(w, status, errorResponse(id, code, msg, nil))
}

// ListenAndServe serves h on addr until ctx ends.
func ListenAndServe(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mcp: %w", err)
	}
	log.Info("serving", "door", "mcp", "transport", "streamable-http", "addr", lis.Addr().String())
	return Serve(ctx, lis, h)
}

// Serve serves h on lis until ctx ends, then drains it as ServeAndDrain
// does. A drain cut short is no error here: a GET stream never turns idle,
// so one still open at shutdown is closed as a matter of course.
func Serve(ctx context.Context, lis net.Listener, h http.Handler) error {
	err := ServeAndDrain(ctx, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, lis)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ServeAndDrain serves hs on lis until ctx ends, then shuts it down:
// requests in flight have at most 5 s, and what is still open after that
// (a stream that never turns idle) is closed rather than left served once
// ServeAndDrain returns. The error is hs.Serve's when it stops first, else
// the shutdown's (context.DeadlineExceeded when something had to be
// closed).
func ServeAndDrain(ctx context.Context, hs *http.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if err != nil {
		_ = hs.Close()
	}
	<-errc // http.ErrServerClosed, once Shutdown has begun
	return err
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func hostOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("mcp: upstream %q is not an http(s) URL", raw)
	}
	return u.Hostname(), nil
}
