package envoyauthz

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentpdp/agentpdp/pdp"
)

func TestMapPlainHTTP(t *testing.T) {
	fd := &fakeDecider{}
	s := newServer(t, Config{}, fd)
	before := time.Now()
	resp, _ := s.Check(context.Background(), checkReq("GET", "/v1/items?a=1&a=2&b=x%20y#frag",
		principal("spiffe://example.org/agent/reviewer"),
		hdr("authorization", "Basic dXNlcjpwdw=="), hdr("proxy-authorization", "secret"), hdr("x-request-id", "ignored"),
		ext("server", "inventory-api"), ext("team", "platform"),
		func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Host = "API.Example.com:443" }))
	okHeaders(t, resp)
	in := fd.last(t)
	h := in.Action.HTTP
	if in.Action.Kind != "http" || h.Method != "GET" || h.Host != "api.example.com:443" || h.Path != "/v1/items" {
		t.Errorf("action = %+v", in.Action)
	}
	if want := map[string][]string{"a": {"1", "2"}, "b": {"x y"}}; !reflect.DeepEqual(h.Query, want) {
		t.Errorf("query = %v, want %v", h.Query, want)
	}
	if h.Headers["authorization"] != pdp.Redacted || h.Headers["proxy-authorization"] != pdp.Redacted || h.Headers["user-agent"] != "test" {
		t.Errorf("headers = %v: credentials must be pdp.Redacted, others kept", h.Headers)
	}
	if h.Body != nil || h.BodyTruncated {
		t.Errorf("body = %v truncated %v for a GET", h.Body, h.BodyTruncated)
	}
	if in.Action.Server != "inventory-api" || in.Context.Extensions["team"] != "platform" {
		t.Errorf("server %q extensions %v", in.Action.Server, in.Context.Extensions)
	}
	c := in.Context
	if c.Door != "envoy" || c.RequestID != "req-1" || c.Time.Before(before) || c.Time.Location() != time.UTC {
		t.Errorf("context = %+v", c)
	}
	if c.Source.Address != "10.0.0.7:51234" || c.Source.Principal != "spiffe://example.org/agent/reviewer" {
		t.Errorf("source = %+v", c.Source)
	}
	if in.Agent.ID != "spiffe://example.org/agent/reviewer" || in.Agent.Authn != "mtls" {
		t.Errorf("agent = %+v", in.Agent)
	}
	if in.User.ID != "" {
		t.Errorf("user = %+v from a Basic credential", in.User)
	}
}

func TestMapRequestIDFromHeader(t *testing.T) {
	fd := &fakeDecider{}
	s := newServer(t, Config{}, fd)
	s.Check(context.Background(), checkReq("GET", "/", hdr("x-request-id", "abc"), func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Id = "" }))
	if got := fd.last(t).Context.RequestID; got != "abc" {
		t.Errorf("request id = %q", got)
	}
}

func TestMapMCP(t *testing.T) {
	for _, tc := range []struct {
		name, body           string
		kind, tool, resource string
		args                 map[string]any
	}{
		{"tools/call", toolsCall, "mcp.tools/call", "create_issue", "", map[string]any{"repo": "a/b", "title": "hi"}},
		{"tools/call without arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping"}}`, "mcp.tools/call", "ping", "", nil},
		{"resources/read", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///repo/README.md"}}`, "mcp.resources/read", "", "file:///repo/README.md", nil},
		{"prompts/get", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"review","arguments":{"pr":"42"}}}`, "mcp.prompts/get", "review", "", map[string]any{"pr": "42"}},
		{"initialize", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`, "mcp.initialize", "", "", nil},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, "mcp.notifications/initialized", "", "", nil},
		{"response to the server", `{"jsonrpc":"2.0","id":3,"result":{}}`, "http", "", "", nil},
		{"plain JSON with a method member", `{"method":"card","amount":5}`, "http", "", "", nil},
		{"resources/subscribe", `{"jsonrpc":"2.0","id":"s1","method":"resources/subscribe","params":{"uri":"file:///a"}}`, "mcp.resources/subscribe", "", "file:///a", nil},
		{"a notification method with an id is a request", `{"jsonrpc":"2.0","id":9,"method":"notifications/cancelled","params":{"requestId":1}}`, "mcp.notifications/cancelled", "", "", nil},
		{"_meta passes", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1},"_meta":{"progressToken":1}}}`, "mcp.tools/call", "t", "", map[string]any{"a": 1.0}},
		{"plain array", `[1,2]`, "http", "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := &fakeDecider{}
			s := newServer(t, Config{}, fd)
			resp, _ := s.Check(context.Background(), checkReq("POST", "/mcp", jsonBody(tc.body), ext("server", "github")))
			okHeaders(t, resp)
			in := fd.last(t)
			a := in.Action
			if a.Kind != tc.kind || a.Tool != tc.tool || a.Resource != tc.resource || a.Server != "github" {
				t.Errorf("action = %+v", a)
			}
			if !reflect.DeepEqual(a.Arguments, tc.args) {
				t.Errorf("arguments = %#v, want %#v", a.Arguments, tc.args)
			}
			var want any
			json.Unmarshal([]byte(tc.body), &want)
			if !reflect.DeepEqual(a.HTTP.Body, want) || a.HTTP.Method != "POST" || a.HTTP.Path != "/mcp" {
				t.Errorf("http = %+v, want the parsed body too", a.HTTP)
			}
		})
	}
}

// A JSON-RPC call must not pass as plain HTTP by lying about its type.
func TestMapMCPWhateverTheContentType(t *testing.T) {
	for _, ct := range []string{"", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded", "multipart/form-data"} {
		for _, lead := range []string{"\n ", "\xef\xbb\xbf", "\xef\xbb\xbf\r\n\t"} {
			fd := &fakeDecider{}
			s := newServer(t, Config{}, fd)
			s.Check(context.Background(), checkReq("POST", "/any/path", rawBody(ct, []byte(lead+toolsCall))))
			if a := fd.last(t).Action; a.Kind != "mcp.tools/call" || a.Tool != "create_issue" {
				t.Errorf("content-type %q, lead %q: action = %+v", ct, lead, a)
			}
		}
	}
}

func TestMapBodyString(t *testing.T) {
	// Without pack_as_bytes Envoy sends the body as a string.
	fd := &fakeDecider{}
	s := newServer(t, Config{}, fd)
	s.Check(context.Background(), checkReq("POST", "/mcp", hdr("content-type", "application/json; charset=utf-8"),
		func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Body = toolsCall }))
	if a := fd.last(t).Action; a.Kind != "mcp.tools/call" || a.Arguments["repo"] != "a/b" {
		t.Errorf("action = %+v", a)
	}
}

func TestMapOtherBodies(t *testing.T) {
	for _, tc := range []struct {
		name, ct  string
		body      []byte
		want      any
		truncated bool
		opts      []reqOpt
	}{
		{"form", "application/x-www-form-urlencoded", []byte("a=1&b=2&b=3"), map[string]any{"a": []any{"1"}, "b": []any{"2", "3"}}, false, nil},
		{"text", "text/plain", []byte("hello"), "hello", false, nil},
		{"binary", "application/octet-stream", []byte{0xff, 0xfe, 0}, nil, false, nil},
		{"text that is not JSON-shaped", "text/plain", []byte("not json {"), "not json {", false, nil},
		{"truncated text", "text/plain", []byte("hel"), nil, true, []reqOpt{hdr("x-envoy-auth-partial-body", "true")}},
		{"body not sent", "application/json", nil, nil, true, []reqOpt{func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Size = 120 }}},
		{"JSON vendor type", "application/vnd.api+json", []byte(`{"a":1}`), map[string]any{"a": 1.0}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := &fakeDecider{}
			s := newServer(t, Config{}, fd)
			resp, _ := s.Check(context.Background(), checkReq("POST", "/x", append([]reqOpt{rawBody(tc.ct, tc.body)}, tc.opts...)...))
			okHeaders(t, resp)
			h := fd.last(t).Action.HTTP
			if !reflect.DeepEqual(h.Body, tc.want) || h.BodyTruncated != tc.truncated {
				t.Errorf("body = %#v truncated %v, want %#v %v", h.Body, h.BodyTruncated, tc.want, tc.truncated)
			}
		})
	}
}

func TestMapRawHeaderMap(t *testing.T) {
	// encode_raw_headers: repeated headers arrive separately, as bytes.
	fd := &fakeDecider{}
	s := newServer(t, Config{}, fd)
	s.Check(context.Background(), checkReq("GET", "/", func(r *authv3.CheckRequest) {
		h := r.Attributes.Request.Http
		h.Headers = nil
		h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "X-Tag", RawValue: []byte("a")}, {Key: "x-tag", RawValue: []byte("b")},
			{Key: "authorization", RawValue: []byte("Bearer t")},
		}}
	}))
	hs := fd.last(t).Action.HTTP.Headers
	if hs["x-tag"] != "a,b" || hs["authorization"] != pdp.Redacted {
		t.Errorf("headers = %v", hs)
	}
}

// Every request the door cannot map faithfully is denied without asking
// the PDP, with a reason a human can act on.
func TestMapRejections(t *testing.T) {
	huge := strings.Repeat("x", DefaultMaxHeaderBytes)
	bad := string([]byte{0xff, 'a'})
	for _, tc := range []struct {
		name   string
		req    *authv3.CheckRequest
		cfg    Config
		status int
		rule   string
		msg    string
	}{
		{name: "empty", req: &authv3.CheckRequest{}, status: 403, msg: "no attributes"},
		{name: "no request", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}, status: 403, msg: "no HTTP request"},
		{name: "no method", req: checkReq("", "/"), status: 403, msg: "no method"},
		{name: "bad UTF-8 path", req: checkReq("GET", "/"+bad), status: 400, msg: "path is not valid UTF-8"},
		{name: "bad UTF-8 header", req: checkReq("GET", "/", func(r *authv3.CheckRequest) {
			r.Attributes.Request.Http.Headers = nil
			r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x", RawValue: []byte(bad)}}}
		}), status: 400, msg: "not valid UTF-8"},
		{name: "bad UTF-8 extension", req: checkReq("GET", "/", ext("server", bad)), status: 403, msg: "not valid UTF-8"},
		{name: "huge headers", req: checkReq("GET", "/", hdr("x-big", huge)), status: 431, msg: "exceed"},
		{name: "malformed query", req: checkReq("GET", "/?a=%zz"), status: 400, msg: "query"},
		{name: "JSON that is not", req: checkReq("POST", "/", jsonBody(`{"a":`)), status: 400, msg: "cannot be read as one JSON document"},
		{name: "JSON-shaped text that is not JSON", req: checkReq("POST", "/", rawBody("text/plain", []byte("{not json"))), status: 400, msg: "byte 1"},
		{name: "duplicate key", req: checkReq("POST", "/x", jsonBody(`{"amount":1,"amount":1000000}`)), status: 400, msg: "duplicate member name"},
		{name: "keys differing in case", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","Name":"delete_repo"}}`)), status: 400, msg: "differ only in case"},
		{name: "duplicate key deep in arguments", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":{"path":"/tmp","path":"/etc"}}}}`)), status: 400, msg: "duplicate"},
		{name: "method in another case", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"t"}}`)), status: 400, msg: "not in the MCP specification"},
		{name: "MCP method without jsonrpc", req: checkReq("POST", "/mcp", jsonBody(`{"id":1,"method":"tools/call","params":{"name":"t"}}`)), status: 400, msg: `"jsonrpc"`},
		{name: "Method member", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"t"}}`)), status: 400, msg: "case-sensitive"},
		{name: "Params member", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"t"}}`)), status: 400, msg: "case-sensitive"},
		{name: "Arguments member", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","Arguments":{"a":1}}}`)), status: 400, msg: "case-sensitive"},
		{name: "JSONRPC member", req: checkReq("POST", "/mcp", jsonBody(`{"JSONRPC":"2.0","id":1,"method":"ping"}`)), status: 400, msg: "case-sensitive"},
		{name: "unknown method", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"admin/shutdown"}`)), status: 400, msg: "not in the MCP specification"},
		{name: "server-only method from a client", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}`)), status: 400, msg: "sent by servers"},
		{name: "tools/call without an id", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"t"}}`)), status: 400, msg: "needs an"},
		{name: "null id", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"t"}}`)), status: 400, msg: `"id"`},
		{name: "method and result", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`)), status: 400, msg: "result"},
		{name: "response without id", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","result":{}}`)), status: 400, msg: "needs"},
		{name: "null arguments", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":null}}`)), status: 400, msg: "arguments"},
		{name: "lone surrogate", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t\ud800"}}`)), status: 400, msg: "surrogate"},
		{name: "encoded text body", req: checkReq("POST", "/", rawBody("text/plain", []byte("\x1f\x8b\x08")), hdr("content-encoding", "gzip")), status: 415, msg: "gzip"},
		{name: "dot segments through an encoded slash", req: checkReq("GET", "/api/read/..%2fadmin"), status: 400, msg: "path"},
		{name: "backslash", req: checkReq("GET", "/api/read/..\\admin"), status: 400, msg: "path"},
		{name: "NUL in the path", req: checkReq("GET", "/api/read%00/x"), status: 400, msg: "path"},
		{name: "bad escape in the path", req: checkReq("GET", "/api/%zz"), status: 400, msg: "path"},
		{name: "JSON not UTF-8", req: checkReq("POST", "/", rawBody("application/json", []byte(`{"a":"`+bad+`"}`))), status: 400, msg: "not valid UTF-8"},
		{name: "JSON truncated by Envoy", req: checkReq("POST", "/", jsonBody(`{"a":1}`), hdr("x-envoy-auth-partial-body", "true")), status: 413, msg: "truncated"},
		{name: "JSON shorter than size", req: checkReq("POST", "/", jsonBody(`{"a":1}`), func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Size = 1 << 20 }), status: 413, msg: "truncated"},
		{name: "JSON over max_body_bytes", cfg: Config{MaxBodyBytes: 8}, req: checkReq("POST", "/", jsonBody(`{"a":"0123456789"}`)), status: 413, msg: "max_body_bytes"},
		{name: "compressed JSON", req: checkReq("POST", "/", jsonBody(`{}`), hdr("content-encoding", "gzip")), status: 415, msg: "gzip"},
		{name: "sniffed JSON truncated", req: checkReq("POST", "/", rawBody("text/plain", []byte(`{"jsonrpc":"2.0"`)), hdr("x-envoy-auth-partial-body", "true")), status: 413, msg: "truncated"},
		{name: "form truncated", req: checkReq("POST", "/", rawBody("application/x-www-form-urlencoded", []byte("amount=100")), hdr("x-envoy-auth-partial-body", "true")), status: 413, msg: "truncated"},
		{name: "form malformed", req: checkReq("POST", "/", rawBody("application/x-www-form-urlencoded", []byte("a=%zz"))), status: 400, msg: "form"},
		{name: "batch", req: checkReq("POST", "/mcp", jsonBody(`[`+toolsCall+`]`)), status: 400, msg: "batches"},
		{name: "jsonrpc 1.0", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"1.0","id":1,"method":"tools/call"}`)), status: 400, msg: `"2.0"`},
		{name: "method not a string", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":5}`)), status: 400, msg: "method"},
		{name: "params not an object", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}`)), status: 400, msg: "params"},
		{name: "tool without name", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`)), status: 400, msg: "params.name"},
		{name: "arguments not an object", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":"rm -rf"}}`)), status: 400, msg: "arguments"},
		{name: "resource without uri", req: checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":7}}`)), status: 400, msg: "uri"},
		{name: "Mcp-Method mismatch", req: checkReq("POST", "/mcp", jsonBody(toolsCall), hdr("mcp-method", "tools/list")), status: 400, rule: ruleHeaderMismatch, msg: "Mcp-Method"},
		{name: "Mcp-Name mismatch", req: checkReq("POST", "/mcp", jsonBody(toolsCall), hdr("mcp-name", "delete_repo")), status: 400, rule: ruleHeaderMismatch, msg: "Mcp-Name"},
		{name: "jwt_authn payload not an object", req: checkReq("GET", "/", func(r *authv3.CheckRequest) {
			r.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				DefaultMetadataNamespace: {Fields: map[string]*structpb.Value{"jwt_payload": structpb.NewStringValue("x")}},
			}}
		}), status: 403, msg: "not a JWT payload"},
		{name: "custom deny status", cfg: Config{DenyStatus: 404}, req: &authv3.CheckRequest{}, status: 404, msg: "no attributes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := &fakeDecider{}
			s := newServer(t, tc.cfg, fd)
			resp, err := s.Check(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("Check returned an error (Envoy would apply its failure mode): %v", err)
			}
			d := denied(t, resp)
			if fd.calls() != 0 {
				t.Error("the PDP was asked about an unmappable request")
			}
			rule := tc.rule
			if rule == "" {
				rule = ruleBadRequest
			}
			if d.httpStatus != tc.status || d.body.Effect != pdp.Deny || len(d.body.Reasons) != 1 ||
				d.body.Reasons[0].Rule != rule || !strings.Contains(d.body.Reasons[0].Message, tc.msg) {
				t.Errorf("got %d %+v, want %d %s mentioning %q", d.httpStatus, d.body, tc.status, rule, tc.msg)
			}
			if d.meta["effect"] != "deny" {
				t.Errorf("dynamic metadata = %v", d.meta)
			}
		})
	}
}

func TestMapPipeSource(t *testing.T) {
	fd := &fakeDecider{}
	s := newServer(t, Config{}, fd)
	s.Check(context.Background(), checkReq("GET", "/", func(r *authv3.CheckRequest) {
		r.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/app.sock"}}}
	}))
	if got := fd.last(t).Context.Source.Address; got != "/run/app.sock" {
		t.Errorf("source address = %q", got)
	}
	if got := joinHostPort("::1", 80); got != "[::1]:80" {
		t.Errorf("joinHostPort = %q", got)
	}
}

// Policies decide on the path the upstream serves; the sent one is kept.
func TestMapCanonicalPath(t *testing.T) {
	for _, tc := range []struct{ sent, path, raw string }{
		{"/api/read/../admin", "/api/admin", "/api/read/../admin"},
		{"/api/read/%2e%2e/admin", "/api/admin", "/api/read/%2e%2e/admin"},
		{"/api//read/./x?q=1", "/api/read/x", "/api//read/./x"},
		{"/%61pi/x", "/api/x", "/%61pi/x"},
		{"/v1/things", "/v1/things", ""}, // canonical already: no raw_path
	} {
		fd := &fakeDecider{}
		s := newServer(t, Config{}, fd)
		okHeaders(t, mustCheck(s, checkReq("GET", tc.sent)))
		h := fd.last(t).Action.HTTP
		if h.Path != tc.path || h.RawPath != tc.raw {
			t.Errorf("%s: path %q raw_path %q, want %q %q", tc.sent, h.Path, h.RawPath, tc.path, tc.raw)
		}
	}
}

// Credentials in the query (RFC 6750 §2.3) or a form body (§2.2) never
// reach the input, and so never the decision log.
func TestMapRedactsCredentialParams(t *testing.T) {
	fd := &fakeDecider{}
	s := newServer(t, Config{RedactParams: []string{"api_key"}}, fd)
	okHeaders(t, mustCheck(s, checkReq("GET", "/v1/x?access_token=s3cret&API_KEY=k3y&page=2",
		hdr("x-envoy-original-path", "/v1/x?access%5Ftoken=s3cret"))))
	in := fd.last(t)
	h := in.Action.HTTP
	if h.Query["access_token"][0] != pdp.Redacted || h.Query["API_KEY"][0] != pdp.Redacted || h.Query["page"][0] != "2" {
		t.Errorf("query = %v", h.Query)
	}
	if h.Headers[":path"] != "/v1/x?access_token=[REDACTED]&API_KEY=[REDACTED]&page=2" || strings.Contains(h.Headers["x-envoy-original-path"], "s3cret") {
		t.Errorf(":path %q, x-envoy-original-path %q", h.Headers[":path"], h.Headers["x-envoy-original-path"])
	}
	js, _ := json.Marshal(in)
	if strings.Contains(string(js), "s3cret") || strings.Contains(string(js), "k3y") {
		t.Errorf("a credential reached the input: %s", js)
	}
	okHeaders(t, mustCheck(s, checkReq("POST", "/token", rawBody("application/x-www-form-urlencoded", []byte("access_token=s3cret&scope=x")), hdr("cookie", "session=abc"))))
	h = fd.last(t).Action.HTTP
	if b := h.Body.(map[string]any); b["access_token"].([]any)[0] != pdp.Redacted || b["scope"].([]any)[0] != "x" || h.Headers["cookie"] != pdp.Redacted {
		t.Errorf("form body %v, cookie %q", h.Body, h.Headers["cookie"])
	}
}

// A server's own methods pass only when configured.
func TestMapExtraMCPMethods(t *testing.T) {
	fd := &fakeDecider{}
	s := newServer(t, Config{ExtraMCPMethods: []string{"acme/deploy"}}, fd)
	okHeaders(t, mustCheck(s, checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"acme/deploy","params":{"env":"prod"}}`))))
	if k := fd.last(t).Action.Kind; k != "mcp.acme/deploy" {
		t.Errorf("kind = %q", k)
	}
	d := denied(t, mustCheck(s, checkReq("POST", "/mcp", jsonBody(`{"jsonrpc":"2.0","id":1,"method":"Acme/Deploy"}`))))
	if d.httpStatus != 400 {
		t.Errorf("another case of a configured method: %d %+v", d.httpStatus, d.body)
	}
	// An unconfigured look-alike of a configured method is JSON-RPC too.
	d = denied(t, mustCheck(s, checkReq("POST", "/x", jsonBody(`{"method":"ACME/DEPLOY"}`))))
	if d.httpStatus != 400 {
		t.Errorf("a body resembling a configured method passed as plain JSON: %d", d.httpStatus)
	}
}

func mustCheck(s *Server, req *authv3.CheckRequest) *authv3.CheckResponse {
	resp, err := s.Check(context.Background(), req)
	if err != nil {
		panic(err)
	}
	return resp
}
