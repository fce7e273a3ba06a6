// Package envoyauthz is the Envoy door: an ext_authz v3 gRPC server that
// maps each CheckRequest to a pdp.Input, asks a pdp.Decider, and answers
// Envoy with the decision. It writes nothing itself (the PDP logs
// decisions) and fails closed: anything it cannot map is denied.
package envoyauthz

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/identity"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// tokenVerifier is *identity.Verifier (an interface so tests can fail it).
type tokenVerifier interface {
	Verify(ctx context.Context, token string) (map[string]any, error)
	Close() error
}

// ServiceName is the gRPC service Envoy calls; the health service reports
// it alongside the server-wide "" entry.
const ServiceName = "envoy.service.auth.v3.Authorization"

// Server answers Envoy's ext_authz Check calls.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	cfg        Config
	decider    pdp.Decider
	verifier   tokenVerifier
	log        *slog.Logger
	m          *metrics
	health     *health.Server
	tls        *tls.Config
	retryAfter string // Retry-After's value: retryAfterSecs
	// retryAfterSecs is cfg.RetryAfter in whole seconds.
	retryAfterSecs int
	stop           context.CancelFunc
	// methods are the JSON-RPC methods accepted in a body.
	methods *mcpmsg.Methods
	// redactParams are the credential parameters of queries and forms.
	redactParams []string
	// revision caches the dynamic_metadata value of the policy revision.
	revision atomic.Pointer[structpb.Value]
}

// New makes a Server deciding with d. cfg is defaulted and validated; reg
// (may be nil) gets the door's metrics; log may be nil (slog.Default).
func New(cfg Config, d pdp.Decider, reg prometheus.Registerer, log *slog.Logger) (*Server, error) {
	if d == nil {
		return nil, errors.New("envoyauthz: nil Decider")
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	tlsCfg, err := cfg.TLS.Config("envoy.tls")
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("envoyauthz: metrics: %w", err)
	}
	// The verifier may refresh JWKS in the background until Close.
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, decider: d, log: log.With("door", "envoy"), m: m, health: health.NewServer(),
		tls: tlsCfg, retryAfterSecs: int(cfg.RetryAfter.Round(time.Second) / time.Second), stop: stop,
		methods: mcpmsg.NewMethods(cfg.ExtraMCPMethods), redactParams: append([]string{"access_token"}, cfg.RedactParams...),
	}
	s.retryAfter = strconv.Itoa(s.retryAfterSecs)
	if cfg.JWTFrom != JWTFromMetadata && cfg.JWT.Configured() {
		v, err := identity.NewVerifier(ctx, cfg.JWT)
		if err != nil {
			stop()
			return nil, fmt.Errorf("envoy.jwt: %w", err)
		}
		s.verifier = v
	}
	s.SetServing(true)
	return s, nil
}

// Close stops background work (JWKS refresh) and marks the health service
// NOT_SERVING for good.
func (s *Server) Close() {
	s.health.Shutdown()
	s.stop()
	if s.verifier != nil {
		if err := s.verifier.Close(); err != nil {
			s.log.Warn("closing the JWT verifier", "error", err)
		}
	}
}

// SetServing flips the health status Envoy's health checks and Kubernetes
// probes read, e.g. NOT_SERVING until a policy set is loaded.
func (s *Server) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(ServiceName, st)
}

// Config is the defaulted configuration in use.
func (s *Server) Config() Config { return s.cfg }

// Register adds the Authorization v3 service, the standard gRPC health
// service and server reflection to gs.
func (s *Server) Register(gs *grpc.Server) {
	gs.RegisterService(&serviceDesc, s)
	healthpb.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
}

// serviceDesc is authv3's service with a Check handler that sees decoding
// errors: the generated handler decodes before any interceptor runs, so
// requests gRPC refuses would otherwise pass unseen.
var serviceDesc = func() grpc.ServiceDesc {
	d := authv3.Authorization_ServiceDesc
	d.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: checkHandler}}
	return d
}()

func checkHandler(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Server)
	in := new(authv3.CheckRequest)
	if err := dec(in); err != nil {
		s.transportRefused(ctx, err)
		return nil, err
	}
	return s.Check(ctx, in)
}

// ServerOptions are the grpc.Server options Serve uses: TLS when
// configured, a receive limit that fits max_body_bytes, and keepalive
// enforcement lenient enough for Envoy's connection pool.
func (s *Server) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(max(4<<20, s.cfg.MaxBodyBytes+s.cfg.MaxHeaderBytes+64<<10)),
		// Reuse handler goroutines: policy evaluation grows the stack, and
		// a fresh goroutine per Check pays for growing it every time.
		grpc.NumStreamWorkers(uint32(max(16, 4*runtime.GOMAXPROCS(0)))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	return opts
}

// Serve serves on lis until ctx ends, then drains in-flight checks
// (at most 5 s) and returns nil.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	gs := grpc.NewServer(s.ServerOptions()...)
	s.Register(gs)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.SetServing(false)
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// ListenerAddr renders lis's address the way Config.Addr takes it
// (host:port or unix:///path), for the "serving" log line.
func ListenerAddr(lis net.Listener) string {
	a := lis.Addr()
	if a.Network() == "unix" {
		return "unix://" + a.String()
	}
	return a.String()
}

// Listen opens addr: host:port (optionally tcp://) or unix:///path. A
// stale Unix socket left by a crashed process is removed first.
func Listen(addr string) (net.Listener, error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		p = strings.TrimPrefix(p, "//")
		if p == "" {
			return nil, fmt.Errorf("envoy.addr %q: empty socket path", addr)
		}
		removeStaleSocket(p)
		return net.Listen("unix", p)
	}
	return net.Listen("tcp", strings.TrimPrefix(addr, "tcp://"))
}

// removeStaleSocket deletes p only if it is a socket nobody answers on, so
// a second instance cannot steal a live one's socket.
func removeStaleSocket(p string) {
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	c, err := net.DialTimeout("unix", p, 100*time.Millisecond)
	if err == nil {
		c.Close()
		return
	}
	os.Remove(p)
}

// Check implements envoy.service.auth.v3.Authorization. It never returns an
// error: every failure is an explicit deny, so Envoy's failure_mode_allow
// setting never comes into play.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	start := time.Now()
	// WithTimeout keeps Envoy's own deadline when it is earlier.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	effect := pdp.Deny
	defer func() {
		if r := recover(); r != nil {
			id := pdp.NewDecisionID()
			s.log.Error("check panicked; denying", "decision_id", id, "panic", r)
			resp, effect = s.rejected(id, &rejection{rule: ruleInternal, msg: "internal error"}), pdp.Deny
		}
		s.m.observe(effect, time.Since(start))
	}()
	in, rej := s.mapRequest(ctx, req, start)
	if rej != nil {
		s.m.mappingErrors.Inc()
		id := s.refuse(ctx, in, rej)
		s.log.Warn("check denied: request not mappable", "decision_id", id, "rule", rej.rule,
			"error", rej.msg, "request_id", requestID(req))
		return s.rejected(id, rej), nil
	}
	d := s.decider.Decide(ctx, in)
	if d.ID == "" {
		d.ID = pdp.NewDecisionID()
	}
	effect = d.Effect
	switch d.Effect {
	case pdp.Allow:
		return s.allowed(in, &d), nil
	case pdp.Approve:
		return s.held(in, &d), nil
	case pdp.Deny:
	default:
		s.log.Error("decider returned an unknown effect; denying", "decision_id", d.ID, "effect", d.Effect)
		effect = pdp.Deny
		d.Effect = pdp.Deny
	}
	return s.denied(in, &d), nil
}

// refuse logs a rejection through the decider when it can, and returns the
// decision id to answer with.
func (s *Server) refuse(ctx context.Context, in *pdp.Input, rej *rejection) string {
	return pdp.Refuse(ctx, s.decider, in, pdp.Reason{Rule: rej.rule, Message: rej.msg}).ID
}

func requestID(req *authv3.CheckRequest) string {
	hr := req.GetAttributes().GetRequest().GetHttp()
	if id := hr.GetId(); id != "" {
		return id
	}
	return hr.GetHeaders()["x-request-id"]
}
