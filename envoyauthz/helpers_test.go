package envoyauthz

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/agentpdp/agentpdp/pdp"
)

// fakeDecider records what it was asked and answers with effect (allow by
// default) or fn.
type fakeDecider struct {
	mu       sync.Mutex
	inputs   []*pdp.Input
	deadline time.Time
	hasDL    bool
	effect   pdp.Effect
	fn       func(ctx context.Context, in *pdp.Input) pdp.Decision
}

func (f *fakeDecider) Decide(ctx context.Context, in *pdp.Input) pdp.Decision {
	f.mu.Lock()
	f.inputs = append(f.inputs, in)
	f.deadline, f.hasDL = ctx.Deadline()
	f.mu.Unlock()
	if f.fn != nil {
		return f.fn(ctx, in)
	}
	e := f.effect
	if e == "" {
		e = pdp.Allow
	}
	return pdp.Decision{ID: "dec-1", Effect: e, PolicyRevision: "sha256:rev",
		Reasons: []pdp.Reason{{Rule: "p.rego#" + string(e), Effect: e, Message: "because " + string(e)}}}
}

func (f *fakeDecider) last(t *testing.T) *pdp.Input {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.inputs) == 0 {
		t.Fatal("the decider was not called")
	}
	return f.inputs[len(f.inputs)-1]
}

func (f *fakeDecider) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.inputs)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newServer(t testing.TB, cfg Config, d pdp.Decider) *Server {
	t.Helper()
	s, err := New(cfg, d, prometheus.NewRegistry(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// reqOpt edits a CheckRequest under construction.
type reqOpt func(*authv3.CheckRequest)

// checkReq is a request as Envoy sends it for method+path with headers.
func checkReq(method, path string, opts ...reqOpt) *authv3.CheckRequest {
	r := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-1", Method: method, Path: path, Host: "api.example.com", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{":method": method, ":path": path, ":authority": "api.example.com", "user-agent": "test"},
		}},
	}}
	for _, o := range opts {
		o(r)
	}
	return r
}

func hdr(k, v string) reqOpt {
	return func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Headers[k] = v }
}

func principal(p string) reqOpt {
	return func(r *authv3.CheckRequest) { r.Attributes.Source.Principal = p }
}

// jsonBody sends b as raw_body (pack_as_bytes) with a JSON content type.
func jsonBody(b string) reqOpt {
	return func(r *authv3.CheckRequest) {
		h := r.Attributes.Request.Http
		h.RawBody = []byte(b)
		h.Size = int64(len(b))
		h.Headers["content-type"] = "application/json"
	}
}

func rawBody(ct string, b []byte) reqOpt {
	return func(r *authv3.CheckRequest) {
		h := r.Attributes.Request.Http
		h.RawBody = b
		h.Size = int64(len(b))
		if ct != "" {
			h.Headers["content-type"] = ct
		}
	}
}

func ext(k, v string) reqOpt {
	return func(r *authv3.CheckRequest) {
		if r.Attributes.ContextExtensions == nil {
			r.Attributes.ContextExtensions = map[string]string{}
		}
		r.Attributes.ContextExtensions[k] = v
	}
}

const toolsCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_issue","arguments":{"repo":"a/b","title":"hi"}}}`

// denial decodes a denied CheckResponse.
type denial struct {
	httpStatus int
	rpcCode    code.Code
	headers    map[string]string
	body       body
	meta       map[string]any
}

func denied(t *testing.T, resp *authv3.CheckResponse) denial {
	t.Helper()
	dr := resp.GetDeniedResponse()
	if dr == nil {
		t.Fatalf("want a denied response, got %v", resp)
	}
	d := denial{httpStatus: int(dr.GetStatus().GetCode()), rpcCode: code.Code(resp.GetStatus().GetCode()),
		headers: map[string]string{}, meta: resp.GetDynamicMetadata().AsMap()}
	for _, h := range dr.GetHeaders() {
		d.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if err := json.Unmarshal([]byte(dr.GetBody()), &d.body); err != nil {
		t.Fatalf("deny body %q: %v", dr.GetBody(), err)
	}
	if want := map[bool]string{false: "application/json", true: "application/problem+json"}[d.body.Effect == pdp.Approve]; d.headers["content-type"] != want {
		t.Errorf("deny content-type = %q", d.headers["content-type"])
	}
	if d.body.DecisionID == "" || d.headers[HeaderDecisionID] != d.body.DecisionID || d.meta["decision_id"] != d.body.DecisionID {
		t.Errorf("decision id: body %q header %q metadata %v", d.body.DecisionID, d.headers[HeaderDecisionID], d.meta["decision_id"])
	}
	if d.rpcCode != code.Code_PERMISSION_DENIED {
		t.Errorf("gRPC status = %v, want PERMISSION_DENIED", d.rpcCode)
	}
	return d
}

// okHeaders returns the upstream headers of an allowed response.
func okHeaders(t *testing.T, resp *authv3.CheckResponse) (set map[string]string, remove []string) {
	t.Helper()
	ok := resp.GetOkResponse()
	if ok == nil || resp.GetStatus().GetCode() != int32(code.Code_OK) {
		t.Fatalf("want an OK response, got %v", resp)
	}
	set = map[string]string{}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s would be appended, not overwritten", h.GetHeader().GetKey())
		}
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return set, ok.GetHeadersToRemove()
}
