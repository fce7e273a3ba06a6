package envoyauthz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/jcs"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// Rules named in reasons of denials the door makes itself.
const (
	ruleBadRequest      = "builtin#bad-request"
	ruleUnauthenticated = "builtin#unauthenticated"
	ruleAgentMismatch   = "builtin#agent-mismatch"
	ruleHeaderMismatch  = "builtin#header-mismatch"
	ruleInternal        = "builtin#internal-error"
)

// rejection is a request the door denies without asking the PDP, because it
// cannot be turned into a trustworthy input.
type rejection struct {
	rule   string
	status int // HTTP status for the client; 0 means deny_status
	// msg is the whole reason, for the decision log and slog.
	msg string
	// public, when set, is all the client is told (a class such as
	// "expired", not the verifier's error chain).
	public string
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
	raw, query, _ := strings.Cut(hr.GetPath(), "?")
	query, _, _ = strings.Cut(query, "#")
	raw, _, _ = strings.Cut(raw, "#")
	path, err := canonicalPath(raw)
	h.RawPath = raw
	if err != nil {
		return in, reject(400, "the path cannot be made canonical: %v", err)
	}
	h.Path = path
	if raw == path {
		h.RawPath = "" // absent unless it differs: most paths are canonical
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return in, reject(400, "malformed query string: %v", err)
		}
		s.redactValues(q)
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
	if rej := s.mapMCP(in); rej != nil {
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
	for _, k := range [...]string{"authorization", "proxy-authorization", "cookie"} {
		if v, ok := h.Headers[k]; ok {
			if k == "authorization" {
				authz = v
			}
			h.Headers[k] = pdp.Redacted
		}
	}
	// The request target again, query included: its credentials too.
	for _, k := range [...]string{":path", "x-envoy-original-path"} {
		if v, ok := h.Headers[k]; ok {
			if r, changed := s.redactTarget(v); changed {
				h.Headers[k] = r
			}
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

// mapBody parses the body Envoy sent (with_request_body). A body any
// common JSON parser would read as JSON (after a BOM or white space, under
// any content type) is decoded strictly (jcs.Decode: no duplicate or
// case-colliding names) or refused, and so is a body declared JSON or a
// form that is not one or was cut short: policy must decide on what the
// upstream reads, never on a guess.
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
	text := trimJSONStart(body)
	isJSON := mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		(len(text) > 0 && (text[0] == '{' || text[0] == '['))
	isForm := !isJSON && mt == "application/x-www-form-urlencoded"
	if enc := h.Headers["content-encoding"]; enc != "" && !strings.EqualFold(enc, "identity") {
		// The upstream decodes it; this door cannot see inside.
		return reject(415, "a body with content-encoding %q cannot be evaluated", enc)
	}
	if !isJSON && !isForm {
		if !h.BodyTruncated && len(body) <= s.cfg.MaxBodyBytes && utf8.Valid(body) {
			h.Body = string(body)
		}
		return nil
	}
	what := "JSON"
	if isForm {
		what = "form"
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
	if isForm {
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return reject(400, "the form body is malformed: %v", err)
		}
		s.redactValues(q)
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
	v, err := jcs.Decode(text)
	if err != nil {
		var se *jcs.SyntaxError
		if errors.As(err, &se) {
			return reject(400, "the body cannot be read as one JSON document (content-type %q): byte %d: %s", ct, se.Offset+len(body)-len(text), se.Msg)
		}
		return reject(400, "the body cannot be read as one JSON document (content-type %q): %v", ct, err)
	}
	h.Body = v
	return nil
}

// trimJSONStart drops what JSON parsers skip before a value: a UTF-8 byte
// order mark (RFC 8259 lets parsers ignore it) and white space.
func trimJSONStart(b []byte) []byte {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	return bytes.TrimLeft(b, " \t\r\n")
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

// mapMCP turns a JSON-RPC MCP request body into an mcp.* action through
// the mapping both doors share (pdp/mcpmsg), so one policy covers the MCP
// proxy and Envoy. A body a lenient server could read as JSON-RPC must be
// a valid MCP message from a client, or it is refused: it must not pass as
// a plain HTTP body that a path rule allows.
func (s *Server) mapMCP(in *pdp.Input) *rejection {
	body := in.Action.HTTP.Body
	if !s.methods.Resembles(body) {
		return nil
	}
	if _, batch := body.([]any); batch {
		return reject(400, "JSON-RPC batches are not supported: send one request per HTTP call")
	}
	m, err := s.methods.FromValue(body)
	if err == nil {
		m.Action(&in.Action)
		hdr := in.Action.HTTP.Headers
		err = m.CheckHeaders(func(k string) (string, bool) { v, ok := hdr[k]; return v, ok })
	}
	if err != nil {
		rule := ruleBadRequest
		var me *mcpmsg.Error
		if errors.As(err, &me) {
			rule = me.Rule()
		}
		return &rejection{rule: rule, status: 400, msg: "JSON-RPC body: " + err.Error()}
	}
	return nil
}

// redactValues replaces the values of credential-bearing parameters
// (access_token, RFC 6750 §2.2–2.3, and envoy.redact_params) in a parsed
// query or form: they would be logged in clear otherwise.
func (s *Server) redactValues(q url.Values) {
	for k, vs := range q {
		if s.credentialParam(k) {
			for i := range vs {
				vs[i] = pdp.Redacted
			}
		}
	}
}

func (s *Server) credentialParam(name string) bool {
	for _, p := range s.redactParams {
		if strings.EqualFold(name, p) {
			return true
		}
	}
	return false
}

// redactTarget redacts credential parameters in a request target's query
// (the :path header), keeping everything else as sent.
func (s *Server) redactTarget(target string) (string, bool) {
	path, query, ok := strings.Cut(target, "?")
	if !ok {
		return target, false
	}
	parts := strings.Split(query, "&")
	changed := false
	for i, kv := range parts {
		k, _, _ := strings.Cut(kv, "=")
		if name, err := url.QueryUnescape(k); (err == nil && s.credentialParam(name)) || (err != nil && s.credentialParam(k)) {
			parts[i] = k + "=" + pdp.Redacted
			changed = true
		}
	}
	if !changed {
		return target, false
	}
	return path + "?" + strings.Join(parts, "&"), true
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
