package envoyauthz

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentpdp/agentpdp/pdp"
)

// Rules named in reasons of denials the door makes itself.
const (
	ruleBadRequest      = "builtin#bad-request"
	ruleUnauthenticated = "builtin#unauthenticated"
	ruleAgentMismatch   = "builtin#agent-mismatch"
	ruleHeaderMismatch  = "builtin#header-mismatch"
	ruleInternal        = "builtin#internal-error"
)

// redacted replaces credentials copied into the input, which is logged.
const redacted = "[REDACTED]"

// rejection is a request the door denies without asking the PDP, because it
// cannot be turned into a trustworthy input.
type rejection struct {
	rule   string
	status int // HTTP status for the client; 0 means deny_status
	msg    string
	// authenticate is set for 401s (WWW-Authenticate value).
	authenticate string
	// retry asks the client to come back later (Retry-After).
	retry bool
}

func (r *rejection) Error() string { return r.msg }

func reject(status int, format string, a ...any) *rejection {
	return &rejection{rule: ruleBadRequest, status: status, msg: fmt.Sprintf(format, a...)}
}

// mapRequest builds the PDP input for one Check. It never panics on any
// CheckRequest; every doubt is a rejection. On rejection the input holds
// what was mapped so far, for the decision log.
func (s *Server) mapRequest(ctx context.Context, req *authv3.CheckRequest, now time.Time) (*pdp.Input, *rejection) {
	in := &pdp.Input{}
	in.Action.Kind = "http"
	in.Context.Door = "envoy"
	in.Context.Time = now.UTC()
	attrs := req.GetAttributes()
	if attrs == nil {
		return in, reject(0, "the CheckRequest has no attributes")
	}
	hr := attrs.GetRequest().GetHttp()
	if hr == nil {
		return in, reject(0, "the CheckRequest has no HTTP request (is this the network ext_authz filter?)")
	}

	h := &in.Action.HTTP
	if hr.GetMethod() == "" {
		return in, reject(0, "the HTTP request has no method")
	}
	for _, f := range [...]struct{ name, v string }{{"method", hr.GetMethod()}, {"host", hr.GetHost()}, {"path", hr.GetPath()}} {
		if !utf8.ValidString(f.v) {
			return in, reject(400, "the request %s is not valid UTF-8", f.name)
		}
	}
	h.Method = hr.GetMethod()
	h.Host = strings.ToLower(hr.GetHost())
	path, query, _ := strings.Cut(hr.GetPath(), "?")
	query, _, _ = strings.Cut(query, "#")
	path, _, _ = strings.Cut(path, "#")
	h.Path = path
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return in, reject(400, "malformed query string: %v", err)
		}
		h.Query = q
	}

	authz, rej := s.mapHeaders(hr, h)
	if rej != nil {
		return in, rej
	}
	in.Context.RequestID = hr.GetId()
	if in.Context.RequestID == "" {
		in.Context.RequestID = h.Headers["x-request-id"]
	}
	if ext := attrs.GetContextExtensions(); len(ext) > 0 {
		for k, v := range ext {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return in, reject(0, "context extension %q is not valid UTF-8", k)
			}
		}
		in.Context.Extensions = ext
		in.Action.Server = ext["server"]
	}

	if rej := s.mapBody(hr, h); rej != nil {
		return in, rej
	}
	if rej := mapMCP(in); rej != nil {
		return in, rej
	}
	if rej := s.mapIdentity(ctx, attrs, in, authz); rej != nil {
		return in, rej
	}
	return in, nil
}

// mapHeaders fills h.Headers with lower-cased headers, redacting
// credentials, and returns the Authorization value for JWT verification.
// Envoy already sends lower-case keys, so its map is taken over and edited
// in place (mapRequest owns the request); other maps are copied.
func (s *Server) mapHeaders(hr *authv3.AttributeContext_HttpRequest, h *pdp.HTTP) (authz string, _ *rejection) {
	size := 0
	check := func(k, v string) *rejection {
		size += len(k) + len(v)
		if size > s.cfg.MaxHeaderBytes {
			return &rejection{rule: ruleBadRequest, status: 431, msg: fmt.Sprintf("request headers exceed %d bytes", s.cfg.MaxHeaderBytes)}
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return reject(400, "header %q is not valid UTF-8", strings.ToValidUTF8(k, "\uFFFD"))
		}
		return nil
	}
	if hdrs := hr.GetHeaders(); len(hdrs) > 0 {
		lower := true
		for k, v := range hdrs {
			if rej := check(k, v); rej != nil {
				return "", rej
			}
			lower = lower && !hasUpper(k)
		}
		if lower {
			h.Headers = hdrs
		} else {
			h.Headers = make(map[string]string, len(hdrs))
			for k, v := range hdrs {
				addHeader(h.Headers, strings.ToLower(k), v)
			}
		}
	} else if raw := hr.GetHeaderMap().GetHeaders(); len(raw) > 0 {
		// encode_raw_headers: values come as bytes, unchecked by Envoy, and
		// repeated headers separately.
		h.Headers = make(map[string]string, len(raw))
		for _, hv := range raw {
			v := headerValue(hv)
			if rej := check(hv.GetKey(), v); rej != nil {
				h.Headers = nil // may hold an unredacted credential
				return "", rej
			}
			addHeader(h.Headers, strings.ToLower(hv.GetKey()), v)
		}
	}
	for _, k := range [...]string{"authorization", "proxy-authorization"} {
		if v, ok := h.Headers[k]; ok {
			if k == "authorization" {
				authz = v
			}
			h.Headers[k] = redacted
		}
	}
	return authz, nil
}

// addHeader joins repeated headers with commas, as Envoy does.
func addHeader(m map[string]string, k, v string) {
	if old, ok := m[k]; ok {
		v = old + "," + v
	}
	m[k] = v
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func headerValue(hv *corev3.HeaderValue) string {
	if len(hv.GetRawValue()) > 0 {
		return string(hv.GetRawValue())
	}
	return hv.GetValue()
}

// mapBody parses the body Envoy sent (with_request_body) as JSON or form.
// A body that says it is JSON or a form and is not, or is cut short, is
// refused: policy would otherwise decide on something other than what the
// upstream receives.
func (s *Server) mapBody(hr *authv3.AttributeContext_HttpRequest, h *pdp.HTTP) *rejection {
	body := hr.GetRawBody()
	if len(body) == 0 && hr.GetBody() != "" {
		body = []byte(hr.GetBody())
	}
	// Envoy marks a body it cut at max_request_bytes with this header
	// (allow_partial_message); size is the full length when known.
	h.BodyTruncated = h.Headers["x-envoy-auth-partial-body"] == "true" || hr.GetSize() > int64(len(body))
	if len(body) == 0 {
		return nil
	}
	ct := h.Headers["content-type"]
	mt := mediaType(ct)
	isJSON := mt == "application/json" || strings.HasSuffix(mt, "+json")
	isForm := mt == "application/x-www-form-urlencoded"
	// Sniff JSON whatever the content type claims: an MCP server may not
	// check it, and a JSON-RPC call must not pass as plain HTTP.
	looksJSON := !isJSON && !isForm && startsLikeJSON(body)
	if !isJSON && !isForm && !looksJSON {
		if !h.BodyTruncated && len(body) <= s.cfg.MaxBodyBytes && utf8.Valid(body) {
			h.Body = string(body)
		}
		return nil
	}
	what := "JSON"
	if isForm {
		what = "form"
	}
	if isJSON || isForm {
		if enc := h.Headers["content-encoding"]; enc != "" && !strings.EqualFold(enc, "identity") {
			return reject(415, "a %s body with content-encoding %q cannot be evaluated", what, enc)
		}
		if h.BodyTruncated {
			return reject(413, "the %s body was truncated by Envoy (%d of %d bytes); raise with_request_body.max_request_bytes", what, len(body), hr.GetSize())
		}
		if len(body) > s.cfg.MaxBodyBytes {
			return reject(413, "the %s body of %d bytes exceeds max_body_bytes %d", what, len(body), s.cfg.MaxBodyBytes)
		}
		if !utf8.Valid(body) {
			return reject(400, "the %s body is not valid UTF-8", what)
		}
	}
	if isForm {
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return reject(400, "the form body is malformed: %v", err)
		}
		form := make(map[string]any, len(q))
		for k, vs := range q {
			l := make([]any, len(vs))
			for i, v := range vs {
				l[i] = v
			}
			form[k] = l
		}
		h.Body = form
		return nil
	}
	if looksJSON && (h.BodyTruncated || len(body) > s.cfg.MaxBodyBytes || !utf8.Valid(body)) {
		// Sniffed JSON we cannot read whole: refuse rather than let a
		// possible JSON-RPC call through as plain HTTP.
		return reject(413, "a JSON-looking body (content-type %q) is truncated, too large or not UTF-8", ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		if looksJSON {
			if utf8.Valid(body) {
				h.Body = string(body)
			}
			return nil
		}
		return reject(400, "the body is declared %s but is not valid JSON: %v", mt, err)
	}
	h.Body = v
	return nil
}

// mediaType is the lower-cased type/subtype of a Content-Type value,
// parameters dropped (mime.ParseMediaType costs a map per call).
func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	if hasUpper(mt) {
		mt = strings.ToLower(mt)
	}
	return mt
}

func startsLikeJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

// mapMCP turns a JSON-RPC MCP request body into an mcp.* action, so one
// policy covers the MCP proxy and Envoy. Keys are matched exactly (the body
// was decoded into maps, not case-insensitive structs) to read it the way
// MCP servers do.
func mapMCP(in *pdp.Input) *rejection {
	switch b := in.Action.HTTP.Body.(type) {
	case []any:
		for _, e := range b {
			if m, ok := e.(map[string]any); ok {
				if _, ok := m["jsonrpc"]; ok {
					return reject(400, "JSON-RPC batches are not supported: send one request per HTTP call")
				}
			}
		}
		return nil
	case map[string]any:
		v, ok := b["jsonrpc"]
		if !ok {
			return nil
		}
		if v != "2.0" {
			return reject(400, `JSON-RPC body: "jsonrpc" must be "2.0"`)
		}
		mv, ok := b["method"]
		if !ok {
			return nil // a response to the server: no action of its own
		}
		method, ok := mv.(string)
		if !ok || method == "" {
			return reject(400, `JSON-RPC body: "method" must be a non-empty string`)
		}
		in.Action.Kind = "mcp." + method
		var params map[string]any
		switch p := b["params"].(type) {
		case nil:
		case map[string]any:
			params = p
		default:
			return reject(400, `JSON-RPC body: "params" must be an object`)
		}
		name := ""
		switch method {
		case "tools/call", "prompts/get":
			n, ok := params["name"].(string)
			if !ok || n == "" {
				return reject(400, "MCP %s: params.name must be a non-empty string", method)
			}
			in.Action.Tool, name = n, n
			switch a := params["arguments"].(type) {
			case nil:
			case map[string]any:
				in.Action.Arguments = a
			default:
				return reject(400, "MCP %s: params.arguments must be an object", method)
			}
		case "resources/read":
			u, ok := params["uri"].(string)
			if !ok || u == "" {
				return reject(400, "MCP resources/read: params.uri must be a non-empty string")
			}
			in.Action.Resource, name = u, u
		}
		// Stateless MCP repeats method and name in headers for routing; a
		// header that disagrees with the body is refused before evaluation.
		hdr := in.Action.HTTP.Headers
		if hm, ok := hdr["mcp-method"]; ok && hm != method {
			return &rejection{rule: ruleHeaderMismatch, status: 400, msg: fmt.Sprintf("Mcp-Method header %q does not match the body's method %q", hm, method)}
		}
		if hn, ok := hdr["mcp-name"]; ok && name != "" && hn != name {
			return &rejection{rule: ruleHeaderMismatch, status: 400, msg: fmt.Sprintf("Mcp-Name header %s does not match the body's %s", strconv.Quote(hn), strconv.Quote(name))}
		}
	}
	return nil
}

// peerAddress renders an Envoy address as host:port or a pipe path.
func peerAddress(a *corev3.Address) string {
	if sa := a.GetSocketAddress(); sa != nil {
		if p, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue); ok {
			return joinHostPort(sa.GetAddress(), p.PortValue)
		}
		return sa.GetAddress()
	}
	if p := a.GetPipe(); p != nil {
		return p.GetPath()
	}
	return ""
}

func joinHostPort(host string, port uint32) string {
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]:" + strconv.FormatUint(uint64(port), 10)
	}
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}
