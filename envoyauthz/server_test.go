package envoyauthz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/agentpdp/agentpdp/pdp"
)

func TestAllowResponse(t *testing.T) {
	fd := &fakeDecider{}
	s := newServer(t, Config{}, fd)
	resp, _ := s.Check(context.Background(), checkReq("GET", "/", principal("spiffe://x/a")))
	set, remove := okHeaders(t, resp)
	if set[HeaderDecisionID] != "dec-1" || len(set) != 1 || len(remove) != 0 {
		t.Errorf("headers %v remove %v: only the decision id without trusted_headers", set, remove)
	}
	md := resp.GetDynamicMetadata().AsMap()
	if md["decision_id"] != "dec-1" || md["effect"] != "allow" || md["policy_revision"] != "sha256:rev" || md["agent"] != "spiffe://x/a" {
		t.Errorf("dynamic metadata = %v", md)
	}
}

func TestAllowTrustedHeaders(t *testing.T) {
	fd := &fakeDecider{fn: func(_ context.Context, in *pdp.Input) pdp.Decision {
		if in.Action.HTTP.Path == "/with-user" {
			in.User.ID = "alice@example.com"
		}
		return pdp.Decision{ID: "d", Effect: pdp.Allow}
	}}
	s := newServer(t, Config{TrustedHeaders: true}, fd)
	resp, _ := s.Check(context.Background(), checkReq("GET", "/with-user", principal("spiffe://x/a"), hdr(HeaderAgent, "spiffe://forged")))
	set, remove := okHeaders(t, resp)
	if set[HeaderAgent] != "spiffe://x/a" || set[HeaderUser] != "alice@example.com" || len(remove) != 0 {
		t.Errorf("set %v remove %v", set, remove)
	}
	// No identity: client-sent copies must be stripped, not passed on.
	resp, _ = s.Check(context.Background(), checkReq("GET", "/", hdr(HeaderUser, "forged")))
	set, remove = okHeaders(t, resp)
	if _, ok := set[HeaderAgent]; ok || !slices.Contains(remove, HeaderAgent) || !slices.Contains(remove, HeaderUser) {
		t.Errorf("set %v remove %v", set, remove)
	}
}

func TestAllowSetsPolicyHeaders(t *testing.T) {
	fd := &fakeDecider{fn: func(context.Context, *pdp.Input) pdp.Decision {
		return pdp.Decision{ID: "d", Effect: pdp.Allow, Headers: map[string]string{"x-tenant": "acme", "x-owner-team": "platform"}}
	}}
	s := newServer(t, Config{TrustedHeaders: true}, fd)
	resp, _ := s.Check(context.Background(), checkReq("GET", "/", principal("spiffe://x/a")))
	set, _ := okHeaders(t, resp)
	if set["x-tenant"] != "acme" || set["x-owner-team"] != "platform" || set[HeaderDecisionID] != "d" || set[HeaderAgent] != "spiffe://x/a" {
		t.Fatalf("set %v", set)
	}
	var names []string
	for _, h := range resp.GetOkResponse().GetHeaders() {
		names = append(names, h.GetHeader().GetKey())
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s: append action %v, want overwrite", h.GetHeader().GetKey(), h.GetAppendAction())
		}
	}
	if want := []string{"x-owner-team", "x-tenant", HeaderDecisionID, HeaderAgent}; !slices.Equal(names, want) {
		t.Errorf("header order %v, want %v", names, want)
	}
}

func TestDenyResponse(t *testing.T) {
	fd := &fakeDecider{fn: func(context.Context, *pdp.Input) pdp.Decision {
		return pdp.Decision{ID: "d-9", Effect: pdp.Deny, Reasons: []pdp.Reason{
			{Rule: "a.rego#allow", Effect: pdp.Allow, Message: "overridden"},
			{Rule: "b.cel#no-prod", Effect: pdp.Deny, Message: "not in prod"},
			{Rule: "c.cel#trial", Effect: pdp.Deny, Message: "shadow", Shadow: true},
		}}
	}}
	s := newServer(t, Config{DenyStatus: 404}, fd)
	resp, _ := s.Check(context.Background(), checkReq("GET", "/"))
	d := denied(t, resp)
	want := []bodyReason{{Rule: "b.cel#no-prod", Message: "not in prod"}}
	if d.httpStatus != 404 || d.body.DecisionID != "d-9" || d.body.Effect != pdp.Deny || !slices.Equal(d.body.Reasons, want) {
		t.Errorf("got %d %+v", d.httpStatus, d.body)
	}
	if !strings.Contains(resp.GetStatus().GetMessage(), "b.cel#no-prod") || d.meta["effect"] != "deny" {
		t.Errorf("status %v metadata %v", resp.GetStatus(), d.meta)
	}
}

func TestDenyUsesThePolicyStatus(t *testing.T) {
	status := 429
	fd := &fakeDecider{fn: func(context.Context, *pdp.Input) pdp.Decision {
		return pdp.Decision{ID: "d-1", Effect: pdp.Deny, Status: status,
			Reasons: []pdp.Reason{{Rule: "r.cel#busy", Effect: pdp.Deny, Message: "slow down"}}}
	}}
	s := newServer(t, Config{DenyStatus: 404}, fd)
	for _, c := range []struct{ policy, want int }{
		{429, 429},
		{401, 401},
		{0, 404},   // none asked: deny_status
		{451, 404}, // within 400–599 but not in Envoy's StatusCode enum
	} {
		status = c.policy
		resp, _ := s.Check(context.Background(), checkReq("GET", "/"))
		if d := denied(t, resp); d.httpStatus != c.want || d.body.DecisionID != "d-1" {
			t.Errorf("policy status %d: answered %d %+v, want %d", c.policy, d.httpStatus, d.body, c.want)
		}
	}
}

func TestApproveResponse(t *testing.T) {
	fd := &fakeDecider{fn: func(context.Context, *pdp.Input) pdp.Decision {
		return pdp.Decision{ID: "d-7", Effect: pdp.Approve,
			Approval: &pdp.ApprovalRequest{Approvers: []string{"group:finance"}, Min: 2, ID: "appr-9", State: "pending"},
			Reasons:  []pdp.Reason{{Rule: "p.cel#big", Effect: pdp.Approve, Message: "big transfer"}}}
	}}
	s := newServer(t, Config{ApproveStatus: 409, RetryAfter: 90 * time.Second, ApprovalsURL: "http://127.0.0.1:9494/"}, fd)
	resp, _ := s.Check(context.Background(), checkReq("POST", "/mcp", jsonBody(toolsCall)))
	d := denied(t, resp)
	b := d.body
	if d.httpStatus != 409 || b.Effect != pdp.Approve || b.Status != "approval_pending" || b.Min != 2 ||
		!slices.Equal(b.Approvers, []string{"group:finance"}) || len(b.Reasons) != 1 {
		t.Errorf("got %d %+v", d.httpStatus, b)
	}
	if b.ApprovalID != "appr-9" || b.StatusURL != "http://127.0.0.1:9494/v1/approvals/appr-9/status" || b.RetryAfter != 90 || b.Type == "" {
		t.Errorf("problem body %+v", b)
	}
	if d.headers["retry-after"] != "90" || d.meta["effect"] != "approve" || d.meta["approval_id"] != "appr-9" {
		t.Errorf("headers %v metadata %v", d.headers, d.meta)
	}
}

func TestUnknownEffectDenies(t *testing.T) {
	fd := &fakeDecider{effect: "maybe"}
	s := newServer(t, Config{}, fd)
	resp, _ := s.Check(context.Background(), checkReq("GET", "/"))
	if d := denied(t, resp); d.httpStatus != 403 || d.body.Effect != pdp.Deny {
		t.Errorf("got %d %+v", d.httpStatus, d.body)
	}
}

func TestPanickingDeciderDenies(t *testing.T) {
	s := newServer(t, Config{}, &fakeDecider{fn: func(context.Context, *pdp.Input) pdp.Decision { panic("boom") }})
	resp, err := s.Check(context.Background(), checkReq("GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	if d := denied(t, resp); d.body.Reasons[0].Rule != ruleInternal {
		t.Errorf("got %+v", d.body)
	}
}

func TestDeadline(t *testing.T) {
	fd := &fakeDecider{}
	s := newServer(t, Config{}, fd)
	start := time.Now()
	s.Check(context.Background(), checkReq("GET", "/"))
	end := time.Now()
	if !fd.hasDL || fd.deadline.Before(start.Add(DefaultTimeout)) || fd.deadline.After(end.Add(DefaultTimeout)) {
		t.Errorf("deadline %v after start, want %v", fd.deadline.Sub(start), DefaultTimeout)
	}
	// Envoy's own, earlier deadline wins.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	s.Check(ctx, checkReq("GET", "/"))
	if want, _ := ctx.Deadline(); !fd.deadline.Equal(want) {
		t.Errorf("deadline %v, want Envoy's %v", fd.deadline, want)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	fd := &fakeDecider{}
	s, err := New(Config{}, fd, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	s.Check(ctx, checkReq("GET", "/"))
	s.Check(ctx, checkReq("GET", "/"))
	fd.effect = pdp.Deny
	s.Check(ctx, checkReq("GET", "/"))
	s.Check(ctx, &authv3.CheckRequest{})
	got := gatherValues(t, reg)
	for k, want := range map[string]float64{
		`agentpdp_envoy_checks_total{effect="allow"}`:   2,
		`agentpdp_envoy_checks_total{effect="deny"}`:    2,
		`agentpdp_envoy_checks_total{effect="approve"}`: 0,
		`agentpdp_envoy_mapping_errors_total`:           1,
		`agentpdp_envoy_check_duration_seconds_count`:   4,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

// gatherValues flattens counters and histogram counts to name{labels}.
func gatherValues(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
				}
				name += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		s, err := New(Config{}, &fakeDecider{}, reg, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		s.Check(context.Background(), checkReq("GET", "/"))
		s.Close()
	}
	if n := gatherValues(t, reg)[`agentpdp_envoy_checks_total{effect="allow"}`]; n != 2 {
		t.Errorf("allow checks = %v, want both servers counted", n)
	}
}

func TestConfig(t *testing.T) {
	var c Config
	d := yaml.NewDecoder(strings.NewReader("addr: unix:///tmp/a.sock\ntimeout: 80ms\nretry_after: 1m\ndeny_status: 401\ntrusted_headers: true\n"))
	d.KnownFields(true)
	if err := d.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if c.Timeout != 80*time.Millisecond || c.RetryAfter != time.Minute || c.DenyStatus != 401 || c.ApproveStatus != 403 ||
		c.JWTFrom != JWTFromEither || c.MetadataNamespace != DefaultMetadataNamespace || c.MaxBodyBytes != DefaultMaxBodyBytes || !c.TrustedHeaders {
		t.Errorf("config = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	d = yaml.NewDecoder(strings.NewReader("adr: x\n"))
	d.KnownFields(true)
	if err := d.Decode(&c); err == nil {
		t.Error("unknown key accepted")
	}
	for name, bad := range map[string]Config{
		"jwt_from":       {JWTFrom: "cookie"},
		"header w/o jwt": {JWTFrom: JWTFromHeader},
		"deny_status":    {DenyStatus: 200},
		"approve_status": {ApproveStatus: 999},
		"tls half":       {TLS: TLSConfig{CertFile: "a"}},
		"ca w/o cert":    {TLS: TLSConfig{ClientCAFile: "a"}},
		"negative":       {Timeout: -1},
	} {
		bad.Defaults()
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
		if _, err := New(bad, &fakeDecider{}, nil, nil); err == nil {
			t.Errorf("%s: New accepted an invalid config", name)
		}
	}
	if _, err := New(Config{}, nil, nil, nil); err == nil {
		t.Error("nil decider accepted")
	}
}

// serve runs s on lis until the test ends and returns a connected client.
func serve(t *testing.T, s *Server, lis net.Listener, target string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestGRPC(t *testing.T) {
	fd := &fakeDecider{}
	s := newServer(t, Config{}, fd)
	lis, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := serve(t, s, lis, lis.Addr().String(), nil)
	ctx := context.Background()

	resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, checkReq("POST", "/mcp", jsonBody(toolsCall), principal("spiffe://x/a")))
	if err != nil {
		t.Fatal(err)
	}
	okHeaders(t, resp)
	if fd.last(t).Action.Tool != "create_issue" {
		t.Errorf("input = %+v", fd.last(t).Action)
	}

	hc := healthpb.NewHealthClient(cc)
	for _, svc := range []string{"", ServiceName} {
		hr, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v", svc, hr, err)
		}
	}
	s.SetServing(false)
	if hr, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after SetServing(false) = %v, %v", hr, err)
	}

	rc, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range rr.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	if !slices.Contains(names, ServiceName) || !slices.Contains(names, "grpc.health.v1.Health") {
		t.Errorf("reflection lists %v", names)
	}
	rc.CloseSend()
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "authz.sock")
	// A stale socket from a crashed run must not block the next start.
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	lis, err := Listen("unix://" + path)
	if err != nil {
		t.Fatalf("stale socket not cleared: %v", err)
	}
	if got := ListenerAddr(lis); got != "unix://"+path {
		t.Errorf("addr = %q", got)
	}
	// A live one must not be stolen.
	if _, err := Listen("unix://" + path); err == nil {
		t.Error("a second listener took over a live socket")
	}
	s := newServer(t, Config{}, &fakeDecider{})
	cc := serve(t, s, lis, "unix://"+path, nil)
	resp, err := authv3.NewAuthorizationClient(cc).Check(context.Background(), checkReq("GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	okHeaders(t, resp)
	if _, err := Listen("unix://"); err == nil {
		t.Error("empty socket path accepted")
	}
}

// writeCert writes a fresh certificate (signed by ca, or self-signed) and
// its key to dir; it returns the certificate and key for signing others.
func writeCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: isCA, BasicConstraintsValid: true,
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil, true)
	writeCert(t, dir, "server", ca, caKey, false)
	writeCert(t, dir, "envoy", ca, caKey, false)
	s := newServer(t, Config{TLS: TLSConfig{
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: filepath.Join(dir, "ca.crt"),
	}}, &fakeDecider{})
	lis, err := Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client, err := tls.LoadX509KeyPair(filepath.Join(dir, "envoy.crt"), filepath.Join(dir, "envoy.key"))
	if err != nil {
		t.Fatal(err)
	}
	cc := serve(t, s, lis, lis.Addr().String(), credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client}}))
	resp, err := authv3.NewAuthorizationClient(cc).Check(context.Background(), checkReq("GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	okHeaders(t, resp)

	// Without a client certificate the handshake fails.
	anon, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := authv3.NewAuthorizationClient(anon).Check(context.Background(), checkReq("GET", "/")); err == nil {
		t.Error("a client without a certificate was served")
	}

	if _, err := New(Config{TLS: TLSConfig{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: filepath.Join(dir, "nope.key")}}, &fakeDecider{}, nil, nil); err == nil {
		t.Error("missing certificate files accepted")
	}
}

// refusingDecider also records the door's own denials (Refuser).
type refusingDecider struct {
	fakeDecider
	refused []pdp.Reason
	partial *pdp.Input
}

func (r *refusingDecider) Refuse(_ context.Context, in *pdp.Input, reason pdp.Reason) pdp.Decision {
	r.refused = append(r.refused, reason)
	r.partial = in
	return pdp.Decision{ID: "logged-1", Effect: pdp.Deny, Reasons: []pdp.Reason{reason}}
}

func TestRejectionsAreRecordedByARefuser(t *testing.T) {
	rd := &refusingDecider{}
	s := newServer(t, Config{}, rd)
	resp, _ := s.Check(context.Background(), checkReq("POST", "/mcp?x=1", jsonBody("{nope"), principal("spiffe://x/a")))
	d := denied(t, resp)
	if d.body.DecisionID != "logged-1" || len(rd.refused) != 1 || rd.refused[0].Rule != ruleBadRequest || rd.refused[0].Effect != pdp.Deny {
		t.Errorf("body %+v refused %+v", d.body, rd.refused)
	}
	if p := rd.partial; p == nil || p.Context.Door != "envoy" || p.Action.HTTP.Path != "/mcp" || p.Action.HTTP.Query["x"][0] != "1" || p.Action.Kind != "http" {
		t.Errorf("partial input = %+v", p)
	}
	if rd.calls() != 0 {
		t.Error("policy was evaluated for an unmappable request")
	}
}
