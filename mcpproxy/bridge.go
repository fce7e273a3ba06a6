package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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
	m2, _, perr := parse(h.opts.Methods, raw)
	if perr != nil {
		writeRPCError(w, http.StatusInternalServerError, m.ID, -32603, "the request cannot be re-encoded: "+perr.Msg)
		return
	}
	b.s.respondAs(w, r, r.Context(), m2, raw, func(msg []byte) []byte { return asStateless(msg, m.ID, m.Method) })
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
	s.bridged = true
	meta, _ := m.Params["_meta"].(map[string]any)
	caps, _ := meta["io.modelcontextprotocol/clientCapabilities"].(map[string]any)
	info, _ := meta["io.modelcontextprotocol/clientInfo"].(map[string]any)
	if info == nil {
		info = map[string]any{"name": "agentpdp-bridge", "version": "1"}
	}
	if caps == nil {
		caps = map[string]any{}
	}
	// Server requests cannot reach a stateless client: not declared.
	delete(caps, "sampling")
	delete(caps, "elicitation")
	delete(caps, "roots")
	initMsg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "agentpdp-bridge-init", "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": caps, "clientInfo": info}})
	im, _, perr := parse(h.opts.Methods, initMsg)
	if perr != nil {
		s.Close()
		return nil, errors.New(perr.Msg)
	}
	ch := s.wait(idKey(im.ID))
	defer s.unwait(idKey(im.ID))
	s.Handle(ctx, im, initMsg)
	var ans []byte
	select {
	case ans = <-ch:
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

// refuseServerRequest answers a server's request on a bridged session:
// the stateless client behind it cannot take it.
func (s *httpSession) refuseServerRequest(msg []byte) bool {
	var env struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if json.Unmarshal(msg, &env) != nil || env.Method == "" || len(env.ID) == 0 || string(env.ID) == "null" {
		return false
	}
	s.log.Warn("refused a server request on a bridged session: the client is stateless", "method", env.Method)
	reply, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(env.ID),
		"error": map[string]any{"code": mcpmsg.CodeMethodNotFound, "message": env.Method + " is not available: the client speaks 2026-07-28 through agentpdp's bridge"}})
	go s.FromClient(context.Background(), reply)
	return true
}
