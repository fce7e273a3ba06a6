package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"go.yaml.in/yaml/v3"
)

const (
	testIssuer   = "https://idp.example.com"
	testAudience = "agentpdp"
)

// testNow is a fixed clock so expiry tests never depend on the wall clock.
var testNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// signer is a private key with the kid and alg it signs under.
type signer struct {
	alg jwa.SignatureAlgorithm
	kid string
	key any // raw private key or HMAC secret
	pub jwk.Key
}

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

func newSigner(t testing.TB, alg jwa.SignatureAlgorithm, kid string, priv any) signer {
	t.Helper()
	s := signer{alg: alg, kid: kid, key: priv}
	if alg.IsSymmetric() {
		return s
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: "sig"} {
		if err := pub.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	s.pub = pub
	return s
}

// sign signs claims (a map, or raw JSON bytes) with the signer's key.
func (s signer) sign(t testing.TB, claims any) string {
	t.Helper()
	payload, ok := claims.([]byte)
	if !ok {
		var err error
		if payload, err = json.Marshal(claims); err != nil {
			t.Fatal(err)
		}
	}
	hdr := jws.NewHeaders()
	if s.kid != "" {
		if err := hdr.Set(jws.KeyIDKey, s.kid); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(s.alg, s.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

func goodClaims() map[string]any {
	return map[string]any{
		"iss": testIssuer,
		"aud": testAudience,
		"sub": "alice@example.com",
		"iat": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
		"act": map[string]any{"sub": "spiffe://example.org/agent/code-reviewer"},
	}
}

func with(c map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

// jwksJSON is the JWK Set of keys, serialized.
func jwksJSON(t testing.TB, keys ...jwk.Key) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeJWKS(t testing.TB, keys ...jwk.Key) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, jwksJSON(t, keys...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const testSecret = "0123456789abcdef0123456789abcdef-test-secret"

func writeSecret(t testing.TB, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestVerifier(t testing.TB, cfg JWTConfig) *Verifier {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audiences == nil {
		cfg.Audiences = []string{"other", testAudience}
	}
	ctx, cancel := context.WithCancel(context.Background())
	v, err := NewVerifier(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("NewVerifier: %v", err)
	}
	v.now = func() time.Time { return testNow }
	t.Cleanup(func() {
		_ = v.Close()
		cancel()
	})
	return v
}

// unsigned builds a token with the given header and claims and a bogus
// signature segment, for alg=none and malformed-header cases.
func unsigned(header string, claims map[string]any, sig string) string {
	p, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc(p) + "." + sig
}

func TestVerify(t *testing.T) {
	testKeys(t)
	rs := newSigner(t, jwa.RS256(), "rsa1", rsaKey)
	ec := newSigner(t, jwa.ES256(), "ec1", ecKey)
	hs := newSigner(t, jwa.HS256(), "", []byte(testSecret))
	// Same kid as rs, different key: a forged signature.
	forgedRS := newSigner(t, jwa.RS256(), "rsa1", rsaKey2)
	unknownKid := newSigner(t, jwa.RS256(), "rsa-unknown", rsaKey)
	wrongSecret := newSigner(t, jwa.HS256(), "", []byte(strings.Repeat("x", 40)))
	// RS384 under a kid declared RS256 must not verify.
	algMismatch := newSigner(t, jwa.RS384(), "rsa1", rsaKey)

	v := newTestVerifier(t, JWTConfig{
		JWKSFile:       writeJWKS(t, rs.pub, ec.pub),
		HMACSecretFile: writeSecret(t, testSecret),
		CacheSize:      -1, // every case goes through the signature check
	})

	tests := []struct {
		name  string
		token string
		want  string // "" = valid; else a substring of the error
	}{
		{"rs256 good", rs.sign(t, goodClaims()), ""},
		{"es256 good", ec.sign(t, goodClaims()), ""},
		{"hs256 good", hs.sign(t, goodClaims()), ""},
		{"aud array with one match", rs.sign(t, with(goodClaims(), "aud", []string{"x", testAudience})), ""},
		{"fractional exp", rs.sign(t, with(goodClaims(), "exp", float64(testNow.Unix())+0.5)), ""},
		{"expired beyond leeway", rs.sign(t, with(goodClaims(), "exp", testNow.Add(-31*time.Second).Unix())), "expired"},
		{"expired within leeway", rs.sign(t, with(goodClaims(), "exp", testNow.Add(-29*time.Second).Unix())), ""},
		{"es256 expired", ec.sign(t, with(goodClaims(), "exp", testNow.Add(-time.Hour).Unix())), "expired"},
		{"hs256 expired", hs.sign(t, with(goodClaims(), "exp", testNow.Add(-time.Hour).Unix())), "expired"},
		{"no exp", rs.sign(t, with(goodClaims(), "exp", nil)), "no exp"},
		{"exp a string", rs.sign(t, with(goodClaims(), "exp", "tomorrow")), "exp is not a NumericDate"},
		{"nbf in the future", rs.sign(t, with(goodClaims(), "nbf", testNow.Add(time.Minute).Unix())), "not yet valid before"},
		{"nbf within leeway", rs.sign(t, with(goodClaims(), "nbf", testNow.Add(20*time.Second).Unix())), ""},
		{"iat in the future", rs.sign(t, with(goodClaims(), "iat", testNow.Add(time.Minute).Unix())), "issued in the future"},
		{"wrong issuer", rs.sign(t, with(goodClaims(), "iss", "https://evil.example.com")), "issuer"},
		{"no issuer", rs.sign(t, with(goodClaims(), "iss", nil)), "issuer"},
		{"es256 wrong issuer", ec.sign(t, with(goodClaims(), "iss", "x")), "issuer"},
		{"hs256 wrong issuer", hs.sign(t, with(goodClaims(), "iss", "x")), "issuer"},
		{"wrong audience", rs.sign(t, with(goodClaims(), "aud", "someone-else")), "audience"},
		{"no audience", rs.sign(t, with(goodClaims(), "aud", nil)), "audience"},
		{"es256 wrong audience", ec.sign(t, with(goodClaims(), "aud", []string{"a", "b"})), "audience"},
		{"hs256 wrong audience", hs.sign(t, with(goodClaims(), "aud", "x")), "audience"},
		{"rs256 bad signature", forgedRS.sign(t, goodClaims()), "rsa: verification error"},
		{"es256 bad signature", tamper(ec.sign(t, goodClaims())), "invalid ECDSA signature"},
		{"hs256 bad signature", wrongSecret.sign(t, goodClaims()), "invalid HMAC signature"},
		{"tampered payload", swapPayload(rs.sign(t, goodClaims()), with(goodClaims(), "sub", "mallory")), "rsa: verification error"},
		{"unknown kid", unknownKid.sign(t, goodClaims()), `unknown kid "rsa-unknown"`},
		{"alg mismatch with key", algMismatch.sign(t, goodClaims()), "is for RS256"},
		{"alg none", unsigned(`{"alg":"none"}`, goodClaims(), ""), `"none" is not allowed`},
		{"alg none with kid", unsigned(`{"alg":"none","kid":"rsa1"}`, goodClaims(), ""), `"none" is not allowed`},
		{"alg missing", unsigned(`{"kid":"rsa1"}`, goodClaims(), "AAAA"), "no alg"},
		{"crit unknown", unsigned(`{"alg":"RS256","kid":"rsa1","crit":["x"],"x":1}`, goodClaims(), "AAAA"), `"crit" header`},
		{"json serialization", `{"payload":"e30","signatures":[]}`, "compact"},
		{"jwe-shaped", "a.b.c.d.e", "compact"},
		{"two segments", "a.b", "compact"},
		{"empty", "", "empty"},
		{"garbage", "not.a.jwt", "parse"},
		{"payload not an object", rs.sign(t, []byte(`["x"]`)), "not a JSON object"},
		{"oversized", strings.Repeat("a", MaxTokenBytes+1), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims, err := v.Verify(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if claims["sub"] != "alice@example.com" {
					t.Fatalf("claims: %v", claims)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got claims %v", tt.want, claims)
			}
			if !errors.Is(err, ErrToken) {
				t.Errorf("error %v does not wrap ErrToken", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			// The class a door may tell the caller follows the cause.
			class := "invalid_token"
			for _, c := range []string{"expired", "not yet valid", "issuer", "audience"} {
				if strings.Contains(tt.want, c) || (c == "not yet valid" && strings.Contains(tt.want, "future")) {
					class = map[string]string{"issuer": "wrong issuer", "audience": "wrong audience"}[c]
					if class == "" {
						class = c
					}
				}
			}
			if got := TokenClass(err); got != class {
				t.Errorf("TokenClass(%v) = %q, want %q", err, got, class)
			}
		})
	}
}

// tamper changes one signature character well inside the segment (the
// last one may only carry padding bits that decoders ignore).
func tamper(tok string) string {
	b := []byte(tok)
	i := len(b) - 10
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func swapPayload(tok string, claims map[string]any) string {
	parts := strings.Split(tok, ".")
	p, _ := json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

func TestVerifyAlgorithmRestrictions(t *testing.T) {
	testKeys(t)
	rs := newSigner(t, jwa.RS256(), "rsa1", rsaKey)
	ec := newSigner(t, jwa.ES256(), "ec1", ecKey)
	jwks := writeJWKS(t, rs.pub, ec.pub)

	t.Run("algorithm not in the allowed list", func(t *testing.T) {
		v := newTestVerifier(t, JWTConfig{JWKSFile: jwks, Algorithms: []string{"RS256"}})
		if _, err := v.Verify(context.Background(), rs.sign(t, goodClaims())); err != nil {
			t.Fatalf("RS256: %v", err)
		}
		_, err := v.Verify(context.Background(), ec.sign(t, goodClaims()))
		if err == nil || !strings.Contains(err.Error(), `"ES256" is not allowed`) {
			t.Fatalf("ES256 with only RS256 allowed: %v", err)
		}
	})
	t.Run("hmac refused without a secret", func(t *testing.T) {
		// Classic confusion: HS256 keyed with the RSA public key's bytes.
		pubDER, err := json.Marshal(rs.pub)
		if err != nil {
			t.Fatal(err)
		}
		forged := newSigner(t, jwa.HS256(), "rsa1", pubDER).sign(t, goodClaims())
		v := newTestVerifier(t, JWTConfig{JWKSFile: jwks})
		if _, err := v.Verify(context.Background(), forged); err == nil || !strings.Contains(err.Error(), "not allowed") {
			t.Fatalf("HS256 against a JWKS-only verifier: %v", err)
		}
	})
	t.Run("no kid with one key", func(t *testing.T) {
		v := newTestVerifier(t, JWTConfig{JWKSFile: writeJWKS(t, rs.pub)})
		noKid := newSigner(t, jwa.RS256(), "", rsaKey)
		if _, err := v.Verify(context.Background(), noKid.sign(t, goodClaims())); err != nil {
			t.Fatalf("single key, no kid: %v", err)
		}
	})
	t.Run("no kid with several keys", func(t *testing.T) {
		v := newTestVerifier(t, JWTConfig{JWKSFile: jwks})
		noKid := newSigner(t, jwa.RS256(), "", rsaKey)
		if _, err := v.Verify(context.Background(), noKid.sign(t, goodClaims())); err == nil || !strings.Contains(err.Error(), "no kid") {
			t.Fatalf("several keys, no kid: %v", err)
		}
	})
}

func TestNewVerifierConfigErrors(t *testing.T) {
	testKeys(t)
	jwks := writeJWKS(t, newSigner(t, jwa.RS256(), "rsa1", rsaKey).pub)
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  JWTConfig
		want string
	}{
		{"no issuer", JWTConfig{Audiences: []string{"a"}, JWKSFile: jwks}, "issuer is required"},
		{"no audience", JWTConfig{Issuer: "i", JWKSFile: jwks}, "audiences"},
		{"empty audience", JWTConfig{Issuer: "i", Audiences: []string{""}, JWKSFile: jwks}, "audiences"},
		{"no key source", JWTConfig{Issuer: "i", Audiences: []string{"a"}}, "required"},
		{"file and url", JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSFile: jwks, JWKSURL: "http://127.0.0.1:1/"}, "exclusive"},
		{"alg none", JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSFile: jwks, Algorithms: []string{"none"}}, `"none" is not allowed`},
		{"unknown alg", JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSFile: jwks, Algorithms: []string{"RS1"}}, "not allowed"},
		{"hs without secret", JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSFile: jwks, Algorithms: []string{"HS256"}}, "needs hmac_secret_file"},
		{"rs without jwks", JWTConfig{Issuer: "i", Audiences: []string{"a"}, HMACSecretFile: writeSecret(t, testSecret), Algorithms: []string{"RS256"}}, "needs jwks"},
		{"short secret", JWTConfig{Issuer: "i", Audiences: []string{"a"}, HMACSecretFile: writeSecret(t, "short")}, "at least 32"},
		{"missing jwks file", JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSFile: "/nonexistent/jwks.json"}, "jwks_file"},
		{"negative leeway", JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSFile: jwks, Leeway: -time.Second}, "negative"},
		{"bad cache size", JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSFile: jwks, CacheSize: -2}, "cache_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(ctx, tt.cfg)
			if err == nil {
				_ = v.Close()
				t.Fatalf("want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestJWTConfigYAML(t *testing.T) {
	const doc = `
issuer: https://idp.example.com
audiences: [agentpdp]
jwks_url: https://idp.example.com/jwks
algorithms: [RS256, ES256]
leeway: 45s
clock_skew: 10s
refresh_interval: 5m
cache_size: 100
cache_ttl: 1m
claims:
  user_claim: email
  agent_claim: azp
  groups_claim: roles
`
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var cfg JWTConfig
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Leeway != 45*time.Second || cfg.ClockSkew != 10*time.Second || cfg.RefreshInterval != 5*time.Minute ||
		cfg.CacheTTL != time.Minute || cfg.CacheSize != 100 || cfg.Claims.UserClaim != "email" ||
		cfg.Claims.AgentClaim != "azp" || cfg.Claims.GroupsClaim != "roles" || len(cfg.Algorithms) != 2 {
		t.Fatalf("decoded %+v", cfg)
	}
	bad := yaml.NewDecoder(strings.NewReader("issuer: x\nleway: 1s\n"))
	bad.KnownFields(true)
	if err := bad.Decode(&JWTConfig{}); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestVerifyCache(t *testing.T) {
	testKeys(t)
	rs := newSigner(t, jwa.RS256(), "rsa1", rsaKey)
	v := newTestVerifier(t, JWTConfig{JWKSFile: writeJWKS(t, rs.pub), CacheTTL: 10 * time.Minute})
	now := testNow
	v.now = func() time.Time { return now }
	tok := rs.sign(t, with(goodClaims(), "exp", testNow.Add(time.Minute).Unix()))

	c1, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if v.tokens.size() != 1 {
		t.Fatalf("cache holds %d tokens, want 1", v.tokens.size())
	}
	c2, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	// A hit returns the very map the first call decoded.
	if reflect.ValueOf(c1).Pointer() != reflect.ValueOf(c2).Pointer() {
		t.Fatalf("cached claims differ: %v vs %v", c1, c2)
	}
	// Past exp+leeway the cached entry must not keep the token alive.
	now = testNow.Add(time.Minute + 31*time.Second)
	if _, err := v.Verify(context.Background(), tok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token served from cache: %v", err)
	}
	// Failures are not cached: a different, bad token is refused each time.
	for range 2 {
		if _, err := v.Verify(context.Background(), tamper(tok)); err == nil {
			t.Fatal("tampered token accepted")
		}
	}
}

func TestTokenCacheBoundsAndTTL(t *testing.T) {
	c := newTokenCache(4)
	for i := range 10 {
		var k [32]byte
		k[0] = byte(i)
		c.put(k, map[string]any{"i": i}, testNow.Add(time.Hour), testNow)
	}
	if c.size() != 4 {
		t.Fatalf("cache grew to %d entries, bound is 4", c.size())
	}
	var k [32]byte
	k[0] = 9
	if _, ok := c.get(k, testNow); !ok {
		t.Fatal("most recent entry evicted")
	}
	if _, ok := c.get(k, testNow.Add(time.Hour)); ok {
		t.Fatal("entry served at its expiry")
	}
	// Expired entries are evicted before live ones.
	c = newTokenCache(2)
	var a, b, d [32]byte
	a[0], b[0], d[0] = 1, 2, 3
	c.put(a, nil, testNow.Add(time.Second), testNow)
	c.put(b, nil, testNow.Add(time.Hour), testNow)
	c.put(d, nil, testNow.Add(time.Hour), testNow.Add(time.Minute))
	if _, ok := c.get(b, testNow.Add(time.Minute)); !ok {
		t.Fatal("live entry evicted while an expired one was present")
	}
}

// jwksServer serves a swappable JWK set on loopback and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	set     []byte
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...jwk.Key) *jwksServer {
	s := &jwksServer{status: http.StatusOK}
	s.setKeys(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		_, _ = w.Write(s.set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t *testing.T, keys ...jwk.Key) {
	t.Helper()
	b := jwksJSON(t, keys...)
	s.mu.Lock()
	s.set = b
	s.mu.Unlock()
}

func TestVerifyJWKSURL(t *testing.T) {
	testKeys(t)
	k1 := newSigner(t, jwa.RS256(), "k1", rsaKey)
	k2 := newSigner(t, jwa.ES256(), "k2", ecKey)
	k3 := newSigner(t, jwa.RS256(), "k3", rsaKey2)
	srv := newJWKSServer(t, k1.pub)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server not on loopback: %s", srv.URL)
	}
	v := newTestVerifier(t, JWTConfig{JWKSURL: srv.URL, CacheSize: -1})
	ctx := context.Background()

	if _, err := v.Verify(ctx, k1.sign(t, goodClaims())); err != nil {
		t.Fatalf("k1: %v", err)
	}
	// Rotation: the issuer publishes k2; a token under k2 triggers one
	// refresh and verifies.
	srv.setKeys(t, k1.pub, k2.pub)
	before := srv.fetches.Load()
	if _, err := v.Verify(ctx, k2.sign(t, goodClaims())); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	if got := srv.fetches.Load() - before; got != 1 {
		t.Fatalf("rotation caused %d fetches, want 1", got)
	}
	// Another unknown kid right away does not fetch again (rate limit).
	srv.setKeys(t, k1.pub, k2.pub, k3.pub)
	before = srv.fetches.Load()
	_, err := v.Verify(ctx, k3.sign(t, goodClaims()))
	if err == nil || !strings.Contains(err.Error(), `unknown kid "k3"`) {
		t.Fatalf("k3 within the refresh limit: %v", err)
	}
	if got := srv.fetches.Load() - before; got != 0 {
		t.Fatalf("unknown kid fetched %d times within the rate limit", got)
	}
}

func TestVerifyJWKSUnavailable(t *testing.T) {
	testKeys(t)
	k1 := newSigner(t, jwa.RS256(), "k1", rsaKey)
	srv := newJWKSServer(t, k1.pub)
	srv.mu.Lock()
	srv.status = http.StatusInternalServerError
	srv.mu.Unlock()
	old := initialFetchWait
	initialFetchWait = 100 * time.Millisecond
	t.Cleanup(func() { initialFetchWait = old })

	// Not fatal at start: the PDP serves (and refuses tokens) until the
	// issuer is back.
	v := newTestVerifier(t, JWTConfig{JWKSURL: srv.URL, CacheSize: -1})
	_, err := v.Verify(context.Background(), k1.sign(t, goodClaims()))
	if !errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrToken) {
		t.Fatalf("token without a JWKS: got %v, want ErrKeysUnavailable only", err)
	}
	// The issuer comes back: the next token after the refresh limit works.
	srv.mu.Lock()
	srv.status = http.StatusOK
	srv.mu.Unlock()
	v.lastForce.Store(0) // as if the 30 s limit had passed
	if _, err := v.Verify(context.Background(), k1.sign(t, goodClaims())); err != nil {
		t.Fatalf("after the JWKS recovered: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc==", "abc==", true},
		{"  Bearer a-b_c~d+e/f ", "a-b_c~d+e/f", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearerabc", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Bearer abc def", "", false},
		{"Bearer a=b", "", false},
		{"Bearer ab\"c", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := BearerToken(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	// BearerCredentials takes any characters after the scheme.
	for in, want := range map[string]string{"Bearer abc def": "abc def", "bearer \tp@ss:w0rd! ": "p@ss:w0rd!", "Bearer a=b": "a=b", "Bearer ": "", "Basic abc": "", "Bearerabc": ""} {
		if got, ok := BearerCredentials(in); got != want || ok != (want != "") {
			t.Errorf("BearerCredentials(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestVerifyConcurrent(t *testing.T) {
	testKeys(t)
	rs := newSigner(t, jwa.RS256(), "rsa1", rsaKey)
	v := newTestVerifier(t, JWTConfig{JWKSFile: writeJWKS(t, rs.pub), CacheSize: 2})
	toks := make([]string, 5)
	for i := range toks {
		toks[i] = rs.sign(t, with(goodClaims(), "jti", string(rune('a'+i))))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				tok := toks[(g+i)%len(toks)]
				c, err := v.Verify(context.Background(), tok)
				if err == nil && c["sub"] != "alice@example.com" {
					err = errors.New("wrong claims")
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := v.tokens.size(); n > 2 {
		t.Fatalf("cache holds %d tokens, bound is 2", n)
	}
}

func TestAuthenticate(t *testing.T) {
	testKeys(t)
	rs := newSigner(t, jwa.RS256(), "rsa1", rsaKey)
	v := newTestVerifier(t, JWTConfig{JWKSFile: writeJWKS(t, rs.pub), Claims: ClaimMapping{GroupsClaim: "roles"}})
	agent, user, del, err := v.Authenticate(context.Background(), rs.sign(t, with(goodClaims(), "roles", []string{"eng"})))
	if err != nil {
		t.Fatal(err)
	}
	if agent.ID != "spiffe://example.org/agent/code-reviewer" || agent.Authn != "jwt" || user.ID != "alice@example.com" ||
		len(user.Groups) != 1 || user.Groups[0] != "eng" || len(del.Chain) != 2 {
		t.Fatalf("agent %+v user %+v delegation %+v", agent, user, del)
	}
	if _, _, _, err := v.Authenticate(context.Background(), "x.y.z"); !errors.Is(err, ErrToken) {
		t.Fatalf("bad token: %v", err)
	}
	if _, _, _, err := v.Authenticate(context.Background(), rs.sign(t, with(goodClaims(), "act", "agent"))); !errors.Is(err, ErrClaims) {
		t.Fatalf("malformed act: %v", err)
	}
}
