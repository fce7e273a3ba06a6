package envoyauthz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/identity"
)

const (
	testSecret = "0123456789abcdef0123456789abcdef-test"
	agentA     = "spiffe://example.org/agent/a"
	agentB     = "spiffe://example.org/agent/b"
)

func jwtCfg(t *testing.T) identity.JWTConfig {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return identity.JWTConfig{Issuer: "https://idp.test", Audiences: []string{"agentpdp"}, HMACSecretFile: f}
}

// token is an RFC 8693 delegation token: sub the user, act.sub the agent.
func token(t *testing.T, user, agent string, exp time.Time) string {
	t.Helper()
	b := jwt.NewBuilder().Issuer("https://idp.test").Audience([]string{"agentpdp"}).Subject(user).
		Claim("groups", []string{"eng"}).IssuedAt(time.Now().Add(-time.Minute)).Expiration(exp)
	if agent != "" {
		b = b.Claim("act", map[string]any{"sub": agent})
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), []byte(testSecret)))
	if err != nil {
		t.Fatal(err)
	}
	return string(s)
}

func bearer(tok string) reqOpt { return hdr("authorization", "Bearer "+tok) }

// jwtAuthn puts claims where Envoy's jwt_authn filter (payload_in_metadata:
// jwt_payload) puts a verified payload.
func jwtAuthn(claims map[string]any) reqOpt {
	return func(r *authv3.CheckRequest) {
		st, err := structpb.NewStruct(claims)
		if err != nil {
			panic(err)
		}
		r.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			DefaultMetadataNamespace: {Fields: map[string]*structpb.Value{DefaultMetadataKey: structpb.NewStructValue(st)}},
		}}
	}
}

func peerCert(t *testing.T, spiffeID string, escape func(string) string) reqOpt {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(spiffeID)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agent"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	// Envoy URL-encodes the PEM.
	enc := escape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return func(r *authv3.CheckRequest) { r.Attributes.Source.Certificate = enc }
}

// envoyEscape percent-encodes like Envoy: spaces and newlines as %20, %0A.
func envoyEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

func TestIdentity(t *testing.T) {
	hour := time.Now().Add(time.Hour)
	type want struct {
		agent, authn, user string
		chain              []string
		status             int    // non-zero: rejected with this HTTP status
		rule               string // of the rejection
		public             string // the whole message the caller gets, if set
	}
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		opts []reqOpt
		want want
	}{
		{name: "mTLS principal", opts: []reqOpt{principal(agentA)}, want: want{agent: agentA, authn: "mtls"}},
		{name: "peer certificate without principal", opts: []reqOpt{peerCert(t, agentA, envoyEscape)}, want: want{agent: agentA, authn: "mtls"}},
		{name: "peer certificate, form-encoded", opts: []reqOpt{peerCert(t, agentA, url.QueryEscape)}, want: want{agent: agentA, authn: "mtls"}},
		{name: "principal wins over certificate", opts: []reqOpt{principal(agentA), peerCert(t, agentB, envoyEscape)}, want: want{agent: agentA, authn: "mtls"}},
		{name: "garbage certificate", opts: []reqOpt{func(r *authv3.CheckRequest) { r.Attributes.Source.Certificate = "%zz" }}, want: want{status: 403, rule: ruleBadRequest}},
		// A client can send XFCC: it names nobody unless configured.
		{name: "XFCC ignored by default", opts: []reqOpt{hdr("x-forwarded-client-cert", `By=spiffe://example.org/gw;Hash=abc;URI=`+agentB)}, want: want{}},
		{name: "XFCC from a trusted proxy", cfg: trustXFCC("spiffe://example.org/gw"), opts: []reqOpt{hdr("x-forwarded-client-cert", `By=spiffe://example.org/gw;Hash=abc;URI=`+agentB)}, want: want{agent: agentB, authn: "mtls"}},
		{name: "XFCC: the last element is the nearest proxy's", cfg: trustXFCC("spiffe://example.org/gw"),
			opts: []reqOpt{hdr("x-forwarded-client-cert", `By=spiffe://example.org/gw;URI=`+agentA+`,By=spiffe://example.org/gw;URI=`+agentB)}, want: want{agent: agentB, authn: "mtls"}},
		{name: "XFCC set by a proxy not in by", cfg: trustXFCC("spiffe://example.org/gw"), opts: []reqOpt{hdr("x-forwarded-client-cert", `By=spiffe://example.org/other;URI=`+agentB)},
			want: want{status: 403, rule: ruleUnauthenticated, public: "the client certificate header is not vouched for"}},
		{name: "XFCC with no By", cfg: trustXFCC("spiffe://example.org/gw"), opts: []reqOpt{hdr("x-forwarded-client-cert", `URI=`+agentB)},
			want: want{status: 403, rule: ruleUnauthenticated}},
		{name: "XFCC by any proxy", cfg: trustXFCC("*"), opts: []reqOpt{hdr("x-forwarded-client-cert", `URI=`+agentB)}, want: want{agent: agentB, authn: "mtls"}},
		{name: "XFCC trusted, no SPIFFE ID", cfg: trustXFCC("*"), opts: []reqOpt{hdr("x-forwarded-client-cert", `URI=https://x.example`)}, want: want{status: 403, rule: ruleUnauthenticated}},
		{name: "principal wins over XFCC", cfg: trustXFCC("*"), opts: []reqOpt{principal(agentA), hdr("x-forwarded-client-cert", `URI=`+agentB)}, want: want{agent: agentA, authn: "mtls"}},
		{name: "verified bearer: user and agent", opts: []reqOpt{bearer(token(t, "alice@example.com", agentA, hour))},
			want: want{agent: agentA, authn: "jwt", user: "alice@example.com", chain: []string{"alice@example.com", agentA}}},
		{name: "bearer user, mTLS agent", opts: []reqOpt{principal(agentA), bearer(token(t, "alice@example.com", "", hour))},
			want: want{agent: agentA, authn: "mtls", user: "alice@example.com"}},
		{name: "bearer and mTLS agree", opts: []reqOpt{principal(agentA), bearer(token(t, "alice@example.com", agentA, hour))},
			want: want{agent: agentA, authn: "mtls", user: "alice@example.com", chain: []string{"alice@example.com", agentA}}},
		{name: "token issued to another agent", opts: []reqOpt{principal(agentB), bearer(token(t, "alice@example.com", agentA, hour))},
			want: want{status: 403, rule: ruleAgentMismatch}},
		{name: "forged signature", opts: []reqOpt{principal(agentA), bearer(token(t, "alice@example.com", "", hour) + "x")},
			want: want{status: 401, rule: ruleUnauthenticated, public: "invalid_token"}},
		{name: "expired token", opts: []reqOpt{bearer(token(t, "alice@example.com", agentA, time.Now().Add(-time.Hour)))},
			want: want{status: 401, rule: ruleUnauthenticated, public: "expired"}},
		// With verification configured the header must be one Bearer token.
		{name: "Basic credentials", opts: []reqOpt{principal(agentA), hdr("authorization", "Basic YTpi")},
			want: want{status: 401, rule: ruleUnauthenticated, public: "invalid_request"}},
		{name: "two Bearer values", opts: []reqOpt{principal(agentA), hdr("authorization", "Bearer "+token(t, "alice@example.com", agentA, hour)+",Bearer x.y.z")},
			want: want{status: 401, rule: ruleUnauthenticated}},
		{name: "junk authorization", opts: []reqOpt{principal(agentA), hdr("authorization", "letmein")},
			want: want{status: 401, rule: ruleUnauthenticated, public: "invalid_request"}},
		{name: "Basic without verification is the upstream's", cfg: func(c *Config) { c.JWT = identity.JWTConfig{} }, opts: []reqOpt{principal(agentA), hdr("authorization", "Basic YTpi")},
			want: want{agent: agentA, authn: "mtls"}},
		{name: "jwt_authn metadata", opts: []reqOpt{principal(agentA), jwtAuthn(map[string]any{"sub": "bob@example.com", "groups": []any{"eng"}})},
			want: want{agent: agentA, authn: "mtls", user: "bob@example.com"}},
		{name: "metadata preferred over the header", opts: []reqOpt{jwtAuthn(map[string]any{"sub": "bob@example.com", "act": map[string]any{"sub": agentB}}), bearer("not-even-a-jwt")},
			want: want{agent: agentB, authn: "jwt", user: "bob@example.com", chain: []string{"bob@example.com", agentB}}},
		{name: "jwt_from header ignores metadata", cfg: func(c *Config) { c.JWTFrom = JWTFromHeader },
			opts: []reqOpt{jwtAuthn(map[string]any{"sub": "mallory@example.com"}), bearer(token(t, "alice@example.com", agentA, hour))},
			want: want{agent: agentA, authn: "jwt", user: "alice@example.com", chain: []string{"alice@example.com", agentA}}},
		{name: "jwt_from metadata ignores the header", cfg: func(c *Config) { c.JWTFrom = JWTFromMetadata },
			opts: []reqOpt{principal(agentA), bearer(token(t, "alice@example.com", agentA, hour))}, want: want{agent: agentA, authn: "mtls"}},
		{name: "malformed claims", opts: []reqOpt{jwtAuthn(map[string]any{"sub": "bob@example.com", "act": "agent-b"})},
			want: want{status: 401, rule: ruleUnauthenticated}},
		{name: "metadata agent differs from mTLS", opts: []reqOpt{principal(agentA), jwtAuthn(map[string]any{"sub": "bob@example.com", "act": map[string]any{"sub": agentB}})},
			want: want{status: 403, rule: ruleAgentMismatch}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{JWT: jwtCfg(t)}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			fd := &fakeDecider{}
			s := newServer(t, cfg, fd)
			resp, _ := s.Check(context.Background(), checkReq("GET", "/", tc.opts...))
			if tc.want.status != 0 {
				d := denied(t, resp)
				if d.httpStatus != tc.want.status || d.body.Reasons[0].Rule != tc.want.rule {
					t.Fatalf("got %d %+v, want %d %s", d.httpStatus, d.body, tc.want.status, tc.want.rule)
				}
				if tc.want.status == 401 && !strings.HasPrefix(d.headers["www-authenticate"], `Bearer error="`) {
					t.Errorf("401 with WWW-Authenticate %q", d.headers["www-authenticate"])
				}
				if tc.want.public != "" && d.body.Reasons[0].Message != tc.want.public {
					t.Errorf("the caller is told %q, want %q", d.body.Reasons[0].Message, tc.want.public)
				}
				// Answers name the class; the verifier's error chain stays in the log.
				if strings.Contains(d.body.Reasons[0].Message, "identity:") || strings.Contains(resp.GetStatus().GetMessage(), "identity:") {
					t.Errorf("the answer leaks the verifier's error: %q / %q", d.body.Reasons[0].Message, resp.GetStatus().GetMessage())
				}
				return
			}
			okHeaders(t, resp)
			in := fd.last(t)
			if in.Agent.ID != tc.want.agent || in.Agent.Authn != tc.want.authn || in.User.ID != tc.want.user || !slices.Equal(in.Delegation.Chain, tc.want.chain) {
				t.Errorf("agent %q/%q user %q chain %v, want %+v", in.Agent.ID, in.Agent.Authn, in.User.ID, in.Delegation.Chain, tc.want)
			}
			if tc.want.user != "" && !slices.Equal(in.User.Groups, []string{"eng"}) && tc.name != "metadata preferred over the header" {
				t.Errorf("groups = %v", in.User.Groups)
			}
			if v, ok := in.Action.HTTP.Headers["authorization"]; ok && v != pdp.Redacted {
				t.Errorf("authorization reached the input: %q", v)
			}
		})
	}
}

func trustXFCC(by ...string) func(*Config) {
	return func(c *Config) { c.XFCC = XFCCConfig{Trust: true, By: by} }
}

func TestJWTConfigErrors(t *testing.T) {
	// A half-configured verifier is a startup error, not a silent no-op.
	if _, err := New(Config{JWT: identity.JWTConfig{Issuer: "https://idp.test"}}, &fakeDecider{}, nil, quietLog()); err == nil {
		t.Error("issuer without audiences or keys accepted")
	}
	// A claims mapping alone is for jwt_authn payloads and needs no keys.
	fd := &fakeDecider{}
	s := newServer(t, Config{JWT: identity.JWTConfig{Claims: identity.ClaimMapping{UserClaim: "email"}}}, fd)
	s.Check(context.Background(), checkReq("GET", "/", principal(agentA), jwtAuthn(map[string]any{"sub": "123", "email": "carol@example.com"})))
	if got := fd.last(t).User.ID; got != "carol@example.com" {
		t.Errorf("user = %q, want the mapped email claim", got)
	}
	var _ pdp.Decider = fd
}

// failingVerifier fails every token with err.
type failingVerifier struct{ err error }

func (f failingVerifier) Verify(context.Context, string) (map[string]any, error) { return nil, f.err }
func (failingVerifier) Close() error                                             { return nil }

func TestVerifierErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		retry  string
	}{
		// No keys yet (JWKS not fetched): not the caller's fault.
		{fmt.Errorf("%w: jwks not fetched yet", identity.ErrKeysUnavailable), 503, "30"},
		{fmt.Errorf("%w: bad signature", identity.ErrToken), 401, ""},
		{errors.New("something else"), 403, ""},
	} {
		fd := &fakeDecider{}
		s := newServer(t, Config{}, fd)
		s.verifier = failingVerifier{tc.err}
		resp, _ := s.Check(context.Background(), checkReq("GET", "/", principal(agentA), bearer("a.b.c")))
		d := denied(t, resp)
		if d.httpStatus != tc.status || d.body.Reasons[0].Rule != ruleUnauthenticated || d.headers["retry-after"] != tc.retry || fd.calls() != 0 {
			t.Errorf("%v: got %d %+v headers %v", tc.err, d.httpStatus, d.body, d.headers)
		}
	}
}
