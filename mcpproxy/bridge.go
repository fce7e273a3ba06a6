package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// The bridge: a 2026-07-28 (stateless) client reaching a server that only
// speaks the stateful era (a stdio server, a legacy SSE server, or an HTTP
// server configured stateful). agentpdp runs initialize upstream itself,
// once per caller (agent and user), with the capabilities and client info
// the caller declares in _meta, answers server/discover from what the
// server said, and forwards every other request on that session under an
// id of its own, the answer mapped back and marked resultType "complete".
// What cannot cross (a server's sampling, elicitation or roots request,
// which a stateless client could only meet through InputRequiredResult)
// is refused to the server, logged.

// bridge is one caller's stateful session, agentpdp's own.
type bridge struct {
	s    *httpSession
	init map[string]any // the server's initialize result
	next atomic.Int64
}

// bridged serves one stateless request through the caller's bridge.
func (h *HTTPHandler) bridged(w http.ResponseWriter, r *http.Request, ident Identity, m *mcpmsg.Message) {
	b, err := h.bridgeFor(r.Context(), ident, m)
	if err != nil {
		h.log.Error("bridge to the stateful upstream failed", "error", err)
		writeRPCError(w, http.StatusBadGateway, m.ID, -32000, "the upstream server could not be reached: "+err.Error())
		return
	}
	b.s.refreshToken(ident.token)
	if m.Class != mcpmsg.Request {
		// Notifications are forwarded as they are (no id to map).
		raw, _ := json.Marshal(m.Object)
		b.s.Handle(r.Context(), m, raw)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if m.Method == "server/discover" {
		h.discover(w, r, b, m)
		return
	}
	// The request under the bridge's own id: callers' ids may collide.
	obj := make(map[string]any, len(m.Object))
	for k, v := range m.Object {
		obj[k] = v
	}
	obj["id"] = "agentpdp-bridge-" + strconv.FormatInt(b.next.Add(1), 10)
	raw, err := json.Marshal(obj)
	if err != nil {
		writeRPCError(w, http.StatusInternalServerError, m.ID, -32603, "the request cannot be re-encoded")
		return
	}
	// The same message under the bridge's id: read and checked already.
	m2 := *m
	m2.ID, m2.Object = obj["id"], obj
	b.s.respondAs(w, r, r.Context(), &m2, raw, func(msg []byte) []byte { return asStateless(msg, m.ID, m.Method) })
}

// discover answers server/discover from the server's initialize result,
// after asking the PDP like any request.
func (h *HTTPHandler) discover(w http.ResponseWriter, r *http.Request, b *bridge, m *mcpmsg.Message) {
	in := b.s.input(m)
	d := h.opts.Decider.Decide(r.Context(), in)
	if d.Effect != pdp.Allow {
		writeJSON(w, http.StatusOK, refusal(m, &d, d.Effect == pdp.Approve))
		return
	}
	res := map[string]any{"supportedVersions": []string{"2026-07-28"}, "capabilities": b.init["capabilities"], "resultType": "complete"}
	if ins, ok := b.init["instructions"]; ok {
		res["instructions"] = ins
	}
	if info, ok := b.init["serverInfo"]; ok {
		res["_meta"] = map[string]any{"io.modelcontextprotocol/serverInfo": info}
	}
	writeJSON(w, http.StatusOK, response(m.ID, res))
}

// asStateless maps a bridged answer back to the caller's id and marks a
// result complete, as 2026-07-28 results say what they are; a list result
// also gets the caching hints that revision requires (SEP-2549): not to be
// cached, since the stateful server gave none.
func asStateless(msg []byte, id any, method string) []byte {
	var obj map[string]any
	if json.Unmarshal(msg, &obj) != nil {
		return msg
	}
	if _, isAnswer := obj["method"]; isAnswer {
		return msg // a notification on the request's stream
	}
	obj["id"] = id
	if res, ok := obj["result"].(map[string]any); ok {
		if _, ok := res["resultType"]; !ok {
			res["resultType"] = "complete"
		}
		if _, isList := listFilters[method]; isList {
			if _, ok := res["ttlMs"]; !ok {
				res["ttlMs"] = 0
			}
			if _, ok := res["cacheScope"]; !ok {
				res["cacheScope"] = "private"
			}
		}
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return msg
	}
	return out
}

// bridgeFor finds or opens the caller's bridge: one stateful session per
// agent and user, initialized by agentpdp for them.
func (h *HTTPHandler) bridgeFor(ctx context.Context, ident Identity, m *mcpmsg.Message) (*bridge, error) {
	key := ident.key()
	h.bmu.Lock()
	defer h.bmu.Unlock()
	if b, ok := h.bridges[key]; ok {
		select {
		case <-b.s.Done():
			delete(h.bridges, key)
		default:
			return b, nil
		}
	}
	s, err := h.open(ident, "agentpdp-bridge")
	if err != nil {
		return nil, err
	}
	s.noServerReqs.Store(true)
	meta, _ := m.Params["_meta"].(map[string]any)
	caps, _ := meta["io.modelcontextprotocol/clientCapabilities"].(map[string]any)
	info, _ := meta["io.modelcontextprotocol/clientInfo"].(map[string]any)
	if info == nil {
		info = map[string]any{"name": "agentpdp-bridge", "version": "1"}
	}
	// A copy: the caller's message is decided and passed on as it came.
	caps = maps.Clone(caps)
	if caps == nil {
		caps = map[string]any{}
	}
	// Server requests cannot reach a stateless client: not declared.
	delete(caps, "sampling")
	delete(caps, "elicitation")
	delete(caps, "roots")
	// Read as built (what its encoding decodes to), not parsed again.
	initReq := map[string]any{"jsonrpc": "2.0", "id": "agentpdp-bridge-init", "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": caps, "clientInfo": info}}
	initMsg, _ := json.Marshal(initReq)
	im, err := h.opts.Methods.FromValue(initReq)
	if err != nil {
		s.Close()
		return nil, err
	}
	ch := s.wait(idKey(im.ID))
	defer s.unwait(idKey(im.ID))
	s.Handle(ctx, im, initMsg)
	var ans []byte
	select {
	case cm := <-ch:
		ans = cm.msg
	case <-s.Done():
		return nil, errors.New("the upstream session ended during initialize")
	case <-time.After(h.opts.CallTimeout):
		s.Close()
		return nil, fmt.Errorf("the upstream did not answer initialize within %s", h.opts.CallTimeout)
	}
	var resp struct {
		Result map[string]any `json:"result"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(ans, &resp); err != nil || resp.Result == nil {
		s.Close()
		if resp.Error != nil {
			return nil, fmt.Errorf("initialize: %s", resp.Error.Message)
		}
		return nil, errors.New("initialize: no result")
	}
	notif := []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if nm, _, perr := parse(h.opts.Methods, notif); perr == nil {
		s.Handle(ctx, nm, notif)
	}
	b := &bridge{s: s, init: resp.Result}
	h.bridges[key] = b
	h.log.Info("bridged a stateless caller to the stateful upstream", "session", s.ID(), "agent", ident.Agent.ID, "user", ident.User.ID,
		"protocol_version", resp.Result["protocolVersion"])
	return b, nil
}

// refuseServerRequest answers a server's request (id, method) on a
// bridged session: the stateless client behind it cannot take it.
func (s *Session) refuseServerRequest(id json.RawMessage, method string) {
	s.log.Warn("refused a server request on a bridged session: the client is stateless", "method", method)
	reply, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id,
		"error": map[string]any{"code": mcpmsg.CodeMethodNotFound, "message": method + " is not available: the client speaks 2026-07-28 through agentpdp's bridge"}})
	go s.send(context.Background(), reply, "")
}

// The other direction: a stateful client (2024-11-05 … 2025-11-25)
// reaching a server that speaks only 2026-07-28. agentpdp answers the
// client's initialize from the server's server/discover, and sends every
// later request as a stateless one: the client's capabilities and the
// protocol version in _meta, the routing headers rebuilt from the body.
// What the stateless era dropped (ping, logging/setLevel) is answered
// here; notifications the server has no use for (initialized) are not
// sent. An InputRequiredResult becomes what a stateful server would have
// done: the server's requests (elicitation, sampling, roots) are put to
// the client on its session, and the call is retried with its answers and
// the server's requestState, byte for byte.

// statelessUpstream is one stateful client's view of a stateless server.
type statelessUpstream struct {
	http *httpUpstream
	fn   ServerMessage
	mu   sync.Mutex
	caps map[string]any
	info map[string]any
	// sent are the requests in flight as sent, by stream, for retries;
	// asked are agentpdp's own requests to the client, by id.
	sent  map[string]map[string]any
	asked map[string]chan map[string]any
	next  atomic.Int64
}

func newStatelessUpstream(url string, client *http.Client, fn ServerMessage, log *slog.Logger, cred func(context.Context) (string, string, error)) *statelessUpstream {
	u := &statelessUpstream{fn: fn, sent: map[string]map[string]any{}, asked: map[string]chan map[string]any{}}
	u.http = DialHTTP(url, client, u.fromServer, log, cred).(*httpUpstream)
	return u
}

// fromServer passes the server's messages on, and works an
// InputRequiredResult through with the client.
func (u *statelessUpstream) fromServer(msg []byte, stream string, err error) {
	if err == nil && stream != "" && bytes.Contains(msg, []byte(`"input_required"`)) {
		var obj map[string]any
		if json.Unmarshal(msg, &obj) == nil {
			if res, ok := obj["result"].(map[string]any); ok && res["resultType"] == "input_required" {
				go u.fulfil(stream, obj["id"], res)
				return
			}
		}
	}
	if err == nil && stream != "" {
		u.mu.Lock()
		delete(u.sent, stream)
		u.mu.Unlock()
	}
	u.fn(msg, stream, err)
}

// fulfil asks the client what the server needs, then retries the call.
func (u *statelessUpstream) fulfil(stream string, id any, res map[string]any) {
	fail := func(msg string) {
		u.http.log.Warn("input-required bridge failed", "error", msg)
		u.fn(errorResponse(id, -32000, msg, nil), stream, nil)
	}
	reqs, _ := res["inputRequests"].(map[string]any)
	answers := map[string]any{}
	for key, r := range reqs {
		req, _ := r.(map[string]any)
		method, _ := req["method"].(string)
		if method == "" {
			fail("the server's input request " + strconv.Quote(key) + " names no method")
			return
		}
		askID := "agentpdp-input-" + strconv.FormatInt(u.next.Add(1), 10)
		ch := make(chan map[string]any, 1)
		u.mu.Lock()
		u.asked[idKey(askID)] = ch
		u.mu.Unlock()
		ask, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": askID, "method": method, "params": req["params"]})
		u.fn(ask, stream, nil)
		select {
		case ans := <-ch:
			if e, ok := ans["error"]; ok {
				fail(fmt.Sprintf("the client could not answer the server's %s: %v", method, e))
				return
			}
			answers[key] = ans["result"]
		case <-time.After(2 * time.Minute):
			fail("the client did not answer the server's " + method + " in time")
			return
		}
	}
	u.mu.Lock()
	orig := u.sent[stream]
	u.mu.Unlock()
	if orig == nil {
		fail("the call to retry is gone")
		return
	}
	retry := make(map[string]any, len(orig))
	for k, v := range orig {
		retry[k] = v
	}
	params := map[string]any{}
	for k, v := range orig["params"].(map[string]any) {
		params[k] = v
	}
	if len(answers) > 0 {
		params["inputResponses"] = answers
	}
	if rs, ok := res["requestState"]; ok {
		params["requestState"] = rs
	}
	retry["params"] = params
	if err := u.send(context.Background(), retry, stream); err != nil {
		fail("retrying the call: " + err.Error())
	}
}

func (u *statelessUpstream) Send(ctx context.Context, raw []byte, stream string) error {
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return err
	}
	method, _ := obj["method"].(string)
	id, hasID := obj["id"]
	params, _ := obj["params"].(map[string]any)
	switch {
	case method == "":
		// The client's answer to one of agentpdp's input requests (the
		// stateless server itself never asks).
		u.mu.Lock()
		ch := u.asked[idKey(id)]
		delete(u.asked, idKey(id))
		u.mu.Unlock()
		if ch != nil {
			ch <- obj
		}
		return nil
	case method == "initialize":
		return u.initialize(ctx, id, params, stream)
	case !hasID:
		return nil // notifications/initialized and the like: nothing to tell
	case method == "ping" || method == "logging/setLevel":
		u.fn(response(id, map[string]any{}), stream, nil)
		return nil
	}
	u.mu.Lock()
	caps, info := u.caps, u.info
	u.mu.Unlock()
	if params == nil {
		params = map[string]any{}
	}
	meta, _ := params["_meta"].(map[string]any)
	m := map[string]any{}
	for k, v := range meta {
		m[k] = v
	}
	m["io.modelcontextprotocol/protocolVersion"] = "2026-07-28"
	m["io.modelcontextprotocol/clientCapabilities"] = caps
	if info != nil {
		m["io.modelcontextprotocol/clientInfo"] = info
	}
	params["_meta"] = m
	obj["params"] = params
	return u.send(ctx, obj, stream)
}

// send posts a stateless request, kept for a retry.
func (u *statelessUpstream) send(ctx context.Context, obj map[string]any, stream string) error {
	out, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.sent[stream] = obj
	u.mu.Unlock()
	method, _ := obj["method"].(string)
	params, _ := obj["params"].(map[string]any)
	name := mcpmsg.RoutingName(method, params)
	return u.http.Send(withRouting(ctx, routing{version: "2026-07-28", method: method, name: name}), out, stream)
}

// initialize answers the client from the server's server/discover.
func (u *statelessUpstream) initialize(ctx context.Context, id any, params map[string]any, stream string) error {
	caps, _ := params["capabilities"].(map[string]any)
	if caps == nil {
		caps = map[string]any{}
	}
	info, _ := params["clientInfo"].(map[string]any)
	u.mu.Lock()
	u.caps, u.info = caps, info
	u.mu.Unlock()
	disc, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "agentpdp-discover", "method": "server/discover",
		"params": map[string]any{"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28",
			"io.modelcontextprotocol/clientCapabilities": caps, "io.modelcontextprotocol/clientInfo": info}}})
	answer := make(chan []byte, 1)
	probe := DialHTTP(u.http.url, u.http.client, func(msg []byte, _ string, err error) {
		if err == nil {
			select {
			case answer <- msg:
			default:
			}
		}
	}, u.http.log, u.http.cred).(*httpUpstream)
	defer probe.Close()
	if err := probe.Send(withRouting(ctx, routing{version: "2026-07-28", method: "server/discover"}), disc, `"agentpdp-discover"`); err != nil {
		return err
	}
	var msg []byte
	select {
	case msg = <-answer:
	case <-time.After(30 * time.Second):
		return errors.New("the stateless server did not answer server/discover")
	}
	var d struct {
		Result map[string]any `json:"result"`
		Error  map[string]any `json:"error"`
	}
	if err := json.Unmarshal(msg, &d); err != nil || d.Result == nil {
		u.fn(errorResponse(id, -32000, fmt.Sprintf("the stateless server refused server/discover: %v", d.Error), nil), stream, nil)
		return nil
	}
	version, _ := params["protocolVersion"].(string)
	if !statefulVersions[version] {
		version = "2025-11-25"
	}
	res := map[string]any{"protocolVersion": version, "capabilities": d.Result["capabilities"],
		"serverInfo": map[string]any{"name": "stateless-upstream", "version": "unknown"}}
	if meta, ok := d.Result["_meta"].(map[string]any); ok {
		if si, ok := meta["io.modelcontextprotocol/serverInfo"]; ok {
			res["serverInfo"] = si
		}
	}
	if ins, ok := d.Result["instructions"]; ok {
		res["instructions"] = ins
	}
	u.fn(response(id, res), stream, nil)
	return nil
}

func (u *statelessUpstream) Close() error { return u.http.Close() }
