// Package mcpproxy is the MCP door: a transparent proxy between an MCP
// client and an MCP server that asks the PDP about every request a client
// makes, forwards exactly the message it decided, answers refusals itself
// (a tools/call gets an isError result the model can read), and filters
// list results item by item. It passes JSON-RPC through rather than
// re-implementing MCP, so capabilities, notifications, progress, server
// requests (sampling, elicitation, roots) and whatever a newer revision
// adds reach the other side unchanged.
//
// A Session joins one client to one upstream session; transports on
// either side (stdio, Streamable HTTP, legacy SSE) only move messages.
package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentpdp/agentpdp/approvals"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/jcs"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// Upstream carries messages to one upstream MCP session. Messages from the
// server reach the Session through the ServerMessage callback it was
// dialled with.
type Upstream interface {
	// Send delivers one client message, exactly these bytes. stream names
	// the client request the message belongs to (its canonical id), so an
	// HTTP upstream can send the server's answer back on the right stream.
	Send(ctx context.Context, msg []byte, stream string) error
	// Close ends the upstream session (stdio: the child is stopped and
	// reaped; HTTP: DELETE).
	Close() error
}

// ServerMessage is how an Upstream hands over what the server sent.
// stream is the canonical id of the client request whose response stream
// carried it, or "" (a stdio server, an HTTP GET stream). An err ends the
// upstream: the session fails what is pending and closes.
type ServerMessage func(msg []byte, stream string, err error)

// Identity is who is calling: the agent, and the person it acts for.
type Identity struct {
	Agent      pdp.Agent
	User       pdp.User
	Delegation pdp.Delegation
	// token is the Bearer token the caller presented: never forwarded,
	// but the subject of a token exchange (or passed through where a
	// person configured exactly that).
	token string
}

// callerKey is a caller as a map key: the agent and the person it acts
// for. A struct, not a joined string, so that no id (a token claim may
// hold a NUL) can make two callers one.
type callerKey struct{ agent, user string }

// key says whether two identities are the same caller: a session belongs
// to the identity that opened it.
func (id Identity) key() callerKey { return callerKey{id.Agent.ID, id.User.ID} }

// same says other is the same caller as id.
func (id Identity) same(other Identity) bool { return id.key() == other.key() }

// Options configure a Session.
type Options struct {
	// Server names the upstream in the input (action.server).
	Server string
	// Decider decides; a pdp.Refuser also logs the door's own refusals.
	Decider pdp.Decider
	// Methods are the client methods accepted (mcpmsg.Spec plus extras).
	Methods *mcpmsg.Methods
	// CallTimeout bounds how long a forwarded request waits for its answer.
	CallTimeout time.Duration
	// Pins records tool definitions; nil: no pinning.
	Pins *Pins
	// ParamHeaders records the tools' x-mcp-header declarations, which
	// a 2026-07-28 call's Mcp-Param-* headers are held against; nil: no
	// tool is known to declare any (the HTTP door sets one).
	ParamHeaders *ParamHeaders
	// Credentials are what the upstream gets instead of the caller's
	// token; nil: none.
	Credentials *Credentials
	// Approvals, when set, hold a tools/call that needs approval for up
	// to HoldTimeout (default 50 s) before answering it pending.
	Approvals   *approvals.Service
	HoldTimeout time.Duration
	// StateKey signs agentpdp's own requestState, and ApprovalURL is the
	// approval page of an id: with both, a 2026-07-28 client that declared
	// URL-mode elicitation is answered pending with an InputRequiredResult.
	StateKey    []byte
	ApprovalURL func(id string) string
	// Stop, closed when agentpdp begins to shut down, ends every hold at
	// once with a pending answer (the approval stays in the store).
	Stop   <-chan struct{}
	Logger *slog.Logger
}

// Session is one client's conversation with one upstream session.
type Session struct {
	id     string
	ident  Identity
	opts   *Options
	up     Upstream
	toClnt toClientFunc
	source string
	log    *slog.Logger

	mu sync.Mutex
	// pending are client requests forwarded upstream, by canonical id.
	pending map[string]*pendingCall
	// serverReqs are server requests awaiting the client's answer.
	serverReqs map[string]bool
	closed     bool
	done       chan struct{}
	// lastActive is for idle reaping.
	lastActive time.Time
	// holds are calls waiting for approval: Close lets them answer
	// pending before it returns, so that stopping agentpdp never drops one.
	holds sync.WaitGroup
	// noServerReqs: the client cannot take the server's requests (a
	// stateless caller behind the bridge); they are refused here.
	noServerReqs atomic.Bool
}

// toClientFunc writes a message to the client. final says msg is the
// response to the request whose canonical id is stream, as FromServer
// already read it: the HTTP side need not parse the message again.
type toClientFunc func(msg []byte, stream string, final bool)

type pendingCall struct {
	method string
	timer  *time.Timer
}

// NewSession makes a session for ident; toClient writes a message to the
// client (stream: the client request it answers or belongs to, or "").
// Connect it to its upstream with Attach before use.
func NewSession(id string, ident Identity, source string, opts *Options, toClient func(msg []byte, stream string)) *Session {
	return newSession(id, ident, source, opts, func(msg []byte, stream string, _ bool) { toClient(msg, stream) })
}

// newSession is NewSession for a client side that uses final.
func newSession(id string, ident Identity, source string, opts *Options, toClient toClientFunc) *Session {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Session{
		id: id, ident: ident, opts: opts, toClnt: toClient, source: source,
		log:     sessionLogger(log, id, opts.Server),
		pending: map[string]*pendingCall{}, serverReqs: map[string]bool{},
		done: make(chan struct{}), lastActive: time.Now(),
	}
}

// Attach connects the session to its upstream.
func (s *Session) Attach(up Upstream) { s.up = up }

// ID is the session's id (the client's Mcp-Session-Id on HTTP).
func (s *Session) ID() string { return s.id }

// upstreamStreamed says whether the upstream answered the request with
// canonical id key as a stream (an HTTP server's SSE answer).
func (s *Session) upstreamStreamed(key string) bool {
	u, ok := s.up.(interface{ Streamed(string) bool })
	return ok && u.Streamed(key)
}

// upstreamStatus is the HTTP error status the upstream answered the
// request with canonical id key with (an HTTP server's 4xx), or 200.
func (s *Session) upstreamStatus(key string) int {
	if u, ok := s.up.(interface{ Status(string) int }); ok {
		if st := u.Status(key); st != 0 {
			return st
		}
	}
	return http.StatusOK
}

// Identity is who opened the session.
func (s *Session) Identity() Identity { return s.identity() }

func (s *Session) identity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident
}

// refreshToken keeps the caller's latest token (a client renews it within
// a session): an exchange uses the current one.
func (s *Session) refreshToken(tok string) {
	if tok == "" {
		return
	}
	s.mu.Lock()
	s.ident.token = tok
	s.mu.Unlock()
}

// credential is what an HTTP upstream adds to each message for this
// session's caller.
func (s *Session) credential(ctx context.Context) (header, value string, err error) {
	if s.opts.Credentials == nil {
		return "", "", nil
	}
	h, v, _, err := s.opts.Credentials.Get(ctx, s.identity())
	return h, v, err
}

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// Idle is how long the session has had no traffic.
func (s *Session) Idle() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.lastActive)
}

func (s *Session) touch() {
	s.mu.Lock()
	s.lastActive = time.Now()
	s.mu.Unlock()
}

// Close ends the session and its upstream.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, p := range s.pending {
		p.timer.Stop()
	}
	s.pending = map[string]*pendingCall{}
	close(s.done)
	s.mu.Unlock()
	s.holds.Wait() // each answers pending at once once done is closed
	if s.up != nil {
		return s.up.Close()
	}
	return nil
}

// FromClient handles one message from the client, raw as received: read
// the one strict way (mcpmsg), then handled. A batch is refused: each
// element would be a decision of its own, and no MCP revision since
// 2025-06-18 sends one.
func (s *Session) FromClient(ctx context.Context, raw []byte) {
	s.touch()
	m, id, e := parse(s.opts.Methods, raw)
	if e != nil {
		s.answerKey(idKey(id), s.refuseMsg(ctx, id, e))
		return
	}
	s.Handle(ctx, m, raw)
}

// parse reads raw the one strict way; what cannot be read is the error to
// answer with, and the id when one could be read.
func parse(ms *mcpmsg.Methods, raw []byte) (*mcpmsg.Message, any, *mcpmsg.Error) {
	v, err := jcs.Decode(raw)
	var m *mcpmsg.Message
	if err == nil {
		if m, err = ms.FromValue(v); err == nil {
			return m, m.ID, nil
		}
	}
	var me *mcpmsg.Error
	if !errors.As(err, &me) {
		me = &mcpmsg.Error{Code: mcpmsg.CodeParseError, Msg: err.Error()}
	}
	var id any
	if obj, ok := v.(map[string]any); ok {
		id = obj["id"]
	}
	return nil, id, me
}

// Handle handles a message already read by mcpmsg; raw are its bytes,
// which are what is forwarded.
func (s *Session) Handle(ctx context.Context, m *mcpmsg.Message, raw []byte) {
	s.touch()
	switch m.Class {
	case mcpmsg.Response:
		key := idKey(m.ID)
		s.mu.Lock()
		ok := s.serverReqs[key]
		delete(s.serverReqs, key)
		s.mu.Unlock()
		if !ok {
			s.log.Warn("dropped a client response to no server request", "id", key)
			return
		}
		s.send(ctx, raw, "")
	case mcpmsg.Notification:
		// Notifications are never calls (DESIGN §4): forwarded, not decided.
		s.send(ctx, raw, "")
	case mcpmsg.Request:
		s.request(ctx, m, raw)
	}
}

// request decides a client request and forwards it or answers it.
func (s *Session) request(ctx context.Context, m *mcpmsg.Message, raw []byte) {
	key := idKey(m.ID)
	in := s.inputKey(m, key)
	if c := s.opts.Credentials; c != nil && c.Mode() != CredNone {
		// Fetched (or taken from the cache) before deciding, so the
		// decision log says which credential the call went out with.
		_, _, info, err := c.Get(ctx, s.identity())
		if err != nil {
			d := refuse(ctx, s.opts, s.log.With("mode", c.Mode()), in, "builtin#upstream-credentials", "no credential for the upstream: "+err.Error(), "upstream credentials failed; call denied")
			s.answerKey(key, refusal(m, &d, false))
			return
		}
		in.Context.Extensions = map[string]string{"upstream_credentials": info.Mode}
		for k, v := range map[string]string{"upstream_token_jti": info.JTI, "upstream_token_sub": info.Subject, "upstream_token_aud": info.Audience} {
			if v != "" {
				in.Context.Extensions[k] = v
			}
		}
	}
	if h, ok := handleFrom(ctx); ok {
		// agentpdp's requestState came back: it must be this call's, for
		// these principals.
		if pdp.Digest(in) != h.Digest || in.Agent.ID != h.Agent || in.User.ID != h.User {
			d := refuse(ctx, s.opts, s.log, in, "builtin#foreign-request-state", "the requestState was issued for another call or caller", "requestState refused")
			s.answerKey(key, refusal(m, &d, false))
			return
		}
	}
	d := s.opts.Decider.Decide(ctx, in)
	switch d.Effect {
	case pdp.Allow:
	case pdp.Approve:
		if s.opts.Approvals != nil && d.ApprovalID() != "" && m.Method == "tools/call" {
			// Held off the reading goroutine: a stdio session reads its
			// next messages meanwhile. Counted under the lock Close takes
			// before it waits, so no hold starts once Close is waiting.
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				s.answerKey(key, refusal(m, &d, true))
				return
			}
			s.holds.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.holds.Done()
				s.hold(ctx, m, raw, key, in, d)
			}()
			return
		}
		s.answerKey(key, refusal(m, &d, true))
		return
	default:
		s.answerKey(key, refusal(m, &d, false))
		return
	}
	s.forward(ctx, m, raw, key)
}

// forward sends an allowed request upstream and tracks its answer.
func (s *Session) forward(ctx context.Context, m *mcpmsg.Message, raw []byte, key string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.answerKey(key, errorResponse(m.ID, -32000, "the upstream session has ended", nil))
		return
	}
	if _, dup := s.pending[key]; dup {
		s.mu.Unlock()
		s.answerKey(key, errorResponse(m.ID, mcpmsg.CodeInvalidRequest, "a request with this id is already in flight", nil))
		return
	}
	p := &pendingCall{method: m.Method}
	p.timer = time.AfterFunc(s.opts.CallTimeout, func() { s.timeout(m, key) })
	s.pending[key] = p
	s.mu.Unlock()
	if err := s.up.Send(ctx, raw, key); err != nil {
		if s.take(key) != nil {
			s.answerKey(key, errorResponse(m.ID, -32000, "the upstream server could not be reached: "+err.Error(), nil))
		}
	}
}

func (s *Session) timeout(m *mcpmsg.Message, key string) {
	if s.take(key) == nil {
		return
	}
	s.log.Warn("upstream did not answer in time", "method", m.Method, "id", key, "timeout", s.opts.CallTimeout)
	s.answerKey(key, errorResponse(m.ID, -32000, fmt.Sprintf("the upstream server did not answer %s within %s", m.Method, s.opts.CallTimeout), nil))
}

// take removes and returns the pending call for key.
func (s *Session) take(key string) *pendingCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[key]
	if p != nil {
		p.timer.Stop()
		delete(s.pending, key)
	}
	return p
}

func (s *Session) send(ctx context.Context, raw []byte, stream string) {
	if err := s.up.Send(ctx, raw, stream); err != nil {
		s.log.Warn("forwarding to the upstream failed", "error", err)
	}
}

// answerKey writes the door's own answer to the request key. Every such
// answer carries that request's own id, so it ends the request's stream;
// only an answer to a request whose id could not be read (key "") ends
// none.
func (s *Session) answerKey(key string, msg []byte) { s.toClnt(msg, key, key != "") }

// input is what the PDP sees for m.
func (s *Session) input(m *mcpmsg.Message) *pdp.Input { return s.inputKey(m, idKey(m.ID)) }

// inputKey is input for m whose canonical id key the caller has already.
func (s *Session) inputKey(m *mcpmsg.Message, key string) *pdp.Input {
	in := doorInput(s.ident, s.opts.Server, s.id, s.source)
	m.Action(&in.Action)
	in.Action.Server = s.opts.Server
	in.Context.RequestID = key
	if m.Method == "tools/call" && s.opts.Pins != nil {
		in.Context.ToolDefinition = s.opts.Pins.Definition(s.opts.Server, in.Action.Tool)
	}
	return in
}

// refuseMsg logs a message the door cannot take (a decision of its own)
// and returns the JSON-RPC error to answer it with.
func (s *Session) refuseMsg(ctx context.Context, id any, e *mcpmsg.Error) []byte {
	return refuseMsg(ctx, s.opts, s.log, doorInput(s.ident, s.opts.Server, s.id, s.source), id, e)
}

// refuseMsg records the refusal of a message that cannot be taken, for
// in's caller, and returns the JSON-RPC error to answer it with (id null
// when the message's id could not be read, as JSON-RPC says).
func refuseMsg(ctx context.Context, opts *Options, log *slog.Logger, in *pdp.Input, id any, e *mcpmsg.Error) []byte {
	in.Action.Kind = "mcp.invalid"
	d := refuse(ctx, opts, log, in, e.Rule(), e.Msg, "message refused")
	return errorResponse(id, e.Code, e.Msg, map[string]any{"decision_id": d.ID})
}

// doorInput is the input of the MCP door for a caller: who, on which
// upstream and session, from where; the action is the caller's to fill.
func doorInput(ident Identity, server, session, source string) *pdp.Input {
	return &pdp.Input{Agent: ident.Agent, User: ident.User, Delegation: ident.Delegation,
		Action:  pdp.Action{Server: server},
		Context: pdp.Context{Door: "mcp", SessionID: session, Source: pdp.Source{Address: source}}}
}

// refuse records a denial the door makes without asking the policies
// (pdp.Refuse: a decision id and a decision-log line), warns about it
// with what, and returns it.
func refuse(ctx context.Context, opts *Options, log *slog.Logger, in *pdp.Input, rule, msg, what string) pdp.Decision {
	d := pdp.Refuse(ctx, opts.Decider, in, pdp.Reason{Rule: rule, Message: msg})
	log.Warn(what, "decision_id", d.ID, "rule", rule, "error", msg)
	return d
}

// FromServer handles one message the upstream sent.
func (s *Session) FromServer(msg []byte, stream string, err error) {
	if err != nil {
		s.upstreamGone(err)
		return
	}
	s.touch()
	env, jerr := readEnvelope(msg)
	if jerr != nil {
		s.log.Warn("dropped an unreadable message from the upstream", "error", jerr)
		return
	}
	if env.Method != "" {
		if len(env.ID) > 0 && !bytes.Equal(env.ID, []byte("null")) {
			if s.noServerReqs.Load() {
				s.refuseServerRequest(env.ID, env.Method)
				return
			}
			// A server request (sampling, elicitation, roots): the client's
			// answer may pass once.
			key := canonicalRawID(env.ID)
			s.mu.Lock()
			s.serverReqs[key] = true
			s.mu.Unlock()
		}
		s.toClnt(msg, stream, false)
		return
	}
	key := canonicalRawID(env.ID)
	p := s.take(key)
	if p == nil {
		s.log.Warn("dropped an upstream response to no pending request", "id", key)
		return
	}
	if p.method == "initialize" {
		s.agreed(msg)
	}
	// The response to key, as read above; a filtered list, or the error
	// that replaces an unreadable one, answers the same id.
	if filter, ok := listFilters[p.method]; ok {
		var list map[string]any
		msg, list = s.filterList(p.method, filter, env.ID, msg)
		if p.method == "tools/list" {
			s.observeTools(list)
		}
	}
	s.toClnt(msg, key, true)
}

// agreed tells an HTTP upstream the version initialize agreed on.
func (s *Session) agreed(msg []byte) {
	var r struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
	}
	if json.Unmarshal(msg, &r) == nil && r.Result.ProtocolVersion != "" {
		if v, ok := s.up.(interface{ SetProtocolVersion(string) }); ok {
			v.SetProtocolVersion(r.Result.ProtocolVersion)
		}
	}
}

// upstreamGone fails every pending request and ends the session.
func (s *Session) upstreamGone(err error) {
	s.mu.Lock()
	pend := s.pending
	s.pending = map[string]*pendingCall{}
	s.mu.Unlock()
	s.log.Warn("upstream session ended", "error", err, "pending", len(pend))
	for key, p := range pend {
		p.timer.Stop()
		var id any
		_ = json.Unmarshal([]byte(key), &id)
		s.answerKey(key, errorResponse(id, -32000, "the upstream server went away: "+err.Error(), nil))
	}
	s.Close()
}

// refusal is the answer to a request policy did not allow (DESIGN §4): a
// tools/call gets an isError result whose text tells the model why, so it
// can adapt; other requests a JSON-RPC error with the decision id.
func refusal(m *mcpmsg.Message, d *pdp.Decision, held bool) []byte {
	var why []string
	var reasons []map[string]string
	for _, r := range d.Reasons {
		if r.Shadow || r.Effect != d.Effect {
			continue
		}
		reasons = append(reasons, map[string]string{"rule": r.Rule, "message": r.Message})
		if r.Message != "" {
			why = append(why, r.Message)
		} else {
			why = append(why, r.Rule)
		}
	}
	data := map[string]any{"decision_id": d.ID, "effect": d.Effect, "reasons": reasons}
	approval := ""
	if id := d.ApprovalID(); id != "" {
		data["approval_id"] = id
		approval = " Approval " + id + "."
	}
	if held {
		data["status"] = "approval_pending"
	}
	if m.Method == "tools/call" {
		var text string
		if held {
			text = fmt.Sprintf("This call is waiting for a person to approve it (%s). Do not work around it; retry the identical call later, and once approved it will run.%s Decision %s.", strings.Join(why, "; "), approval, d.ID)
		} else {
			text = fmt.Sprintf("agentpdp denied this call: %s. Decision %s.", strings.Join(why, "; "), d.ID)
		}
		res := map[string]any{
			"content": []any{map[string]any{"type": "text", "text": text}},
			"isError": true,
			"_meta":   map[string]any{"io.agentpdp/decision": data},
		}
		if statelessVersion(m) != "" {
			// 2026-07-28 results say what they are.
			res["resultType"] = "complete"
		}
		// No structuredContent: it would be checked against the tool's own
		// output schema, which a refusal does not follow.
		return response(m.ID, res)
	}
	msg := "denied by policy: " + strings.Join(why, "; ")
	if held {
		msg = "waiting for approval: " + strings.Join(why, "; ")
	}
	return errorResponse(m.ID, codeDenied, msg, data)
}

// codeDenied is the JSON-RPC error code of a request policy refused (in
// the implementation-defined server error range).
const codeDenied = -32003

func response(id any, result any) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
	return b
}

func errorResponse(id any, code int, msg string, data any) []byte {
	e := map[string]any{"code": code, "message": msg}
	if data != nil {
		e["data"] = data
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": e})
	return b
}

// idKey is the canonical JSON of a decoded id: the same request id in a
// client message and in the server's answer map to one key.
func idKey(id any) string {
	if id == nil {
		return ""
	}
	b, err := jcs.Append(nil, id)
	if err != nil {
		return fmt.Sprint(id)
	}
	return string(b)
}

func canonicalRawID(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	b, err := jcs.Transform(raw)
	if err != nil {
		return string(raw)
	}
	return string(b)
}
