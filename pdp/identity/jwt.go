package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/httprc/v3/errsink"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// JWTConfig configures bearer-token verification. Issuer, Audiences and at
// least one key source are required; every other field has a default.
type JWTConfig struct {
	// Issuer must equal the token's iss.
	Issuer string `yaml:"issuer"`
	// Audiences: the token's aud must contain at least one of them.
	Audiences []string `yaml:"audiences"`
	// JWKSFile is a JWK set read once at start (asymmetric keys only).
	JWKSFile string `yaml:"jwks_file"`
	// JWKSURL is fetched at start and every RefreshInterval, and at most
	// every 30 s on demand when a token names a kid the set lacks (rotation).
	JWKSURL string `yaml:"jwks_url"`
	// HMACSecretFile holds a shared secret of at least 32 bytes for HS*
	// (trailing newlines are dropped).
	HMACSecretFile string `yaml:"hmac_secret_file"`
	// Algorithms allowed in the token header. Default: RS256/384/512,
	// PS256/384/512, ES256/384/512, EdDSA and Ed25519 when a JWKS is set,
	// plus HS256/384/512 when a secret is set. "none" is always refused.
	Algorithms []string `yaml:"algorithms"`
	// Leeway tolerates clock differences on exp and nbf. Default 30s.
	Leeway time.Duration `yaml:"leeway"`
	// ClockSkew is how far in the future iat may be. Default 30s.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// RefreshInterval is how often JWKSURL is fetched again. Default 15m.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// CacheSize bounds the verified-token cache. Default 4096; -1 disables.
	CacheSize int `yaml:"cache_size"`
	// CacheTTL bounds how long a verified token is trusted without
	// re-checking its signature, so a key removed from the JWKS stops
	// working within this time even for unexpired tokens. Default 5m.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// Claims maps claims to agent, user and delegation.
	Claims ClaimMapping `yaml:"claims"`
}

// Configured says whether c asks for Bearer tokens to be verified: a
// claims mapping alone only shapes payloads verified elsewhere (Envoy's
// jwt_authn).
func (c *JWTConfig) Configured() bool {
	return c.Issuer != "" || len(c.Audiences) > 0 || c.JWKSFile != "" || c.JWKSURL != "" || c.HMACSecretFile != ""
}

// MaxTokenBytes refuses absurd tokens before any parsing.
const MaxTokenBytes = 64 << 10

const (
	defaultLeeway          = 30 * time.Second
	defaultRefreshInterval = 15 * time.Minute
	defaultCacheSize       = 4096
	defaultCacheTTL        = 5 * time.Minute
	// minForcedRefresh rate-limits JWKS fetches triggered by unknown kids,
	// so tokens with made-up kids cannot hammer the issuer.
	minForcedRefresh = 30 * time.Second
)

// initialFetchWait bounds how long NewVerifier waits for the first JWKS
// (a variable so tests need not wait).
var initialFetchWait = 10 * time.Second

var (
	asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
	hmacAlgs       = []string{"HS256", "HS384", "HS512"}
)

// ErrToken is wrapped by every rejection of a token (as opposed to a
// configuration or JWKS availability problem, which are also refusals).
var ErrToken = errors.New("identity: invalid token")

// ErrKeysUnavailable means no key set could be had to check the token with
// (the JWKS URL has not answered yet). The token is refused, but it is not
// the caller's fault: doors may answer 503 rather than 401. It never wraps
// ErrToken.
var ErrKeysUnavailable = errors.New("identity: verification keys unavailable")

// Classes of ErrToken a door may name to the caller (the rest of the
// message stays in its log): errors.Is tells them apart.
var (
	ErrExpired       = errors.New("expired")
	ErrNotYetValid   = errors.New("not yet valid")
	ErrWrongIssuer   = errors.New("wrong issuer")
	ErrWrongAudience = errors.New("wrong audience")
)

// TokenClass names err's class for an answer to the caller: one of the
// Err* classes above, or "invalid_token".
func TokenClass(err error) string {
	for _, c := range [...]error{ErrExpired, ErrNotYetValid, ErrWrongIssuer, ErrWrongAudience} {
		if errors.Is(err, c) {
			return c.Error()
		}
	}
	return "invalid_token"
}

func classErr(class error, format string, args ...any) error {
	return fmt.Errorf("%w: %w %s", ErrToken, class, fmt.Sprintf(format, args...))
}

func tokenErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrToken, fmt.Sprintf(format, args...))
}

// Verifier checks bearer JWTs and returns their claims. It is safe for
// concurrent use.
type Verifier struct {
	cfg       JWTConfig
	algs      map[string]jwa.SignatureAlgorithm
	fileSet   jwk.Set
	secret    []byte
	cache     *jwk.Cache
	res       *httprc.ResourceBase[jwk.Set] // read lock-free on the hot path
	lastForce atomic.Int64                  // unix nanos of the last on-demand JWKS refresh
	tokens    *tokenCache
	now       func() time.Time
	log       *slog.Logger
	closeOnce sync.Once
}

// NewVerifier validates cfg, loads the key sources and starts the JWKS
// refresher, which lives until ctx is done or Close is called. An
// unreachable JWKS URL is not fatal: it is logged, and tokens are refused
// until the first fetch succeeds.
func NewVerifier(ctx context.Context, cfg JWTConfig) (*Verifier, error) {
	v := &Verifier{now: time.Now, log: slog.Default().With("component", "identity.jwt")}
	if cfg.Issuer == "" {
		return nil, errors.New("identity: jwt: issuer is required")
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("identity: jwt: audiences must name at least one non-empty audience")
	}
	if cfg.JWKSFile == "" && cfg.JWKSURL == "" && cfg.HMACSecretFile == "" {
		return nil, errors.New("identity: jwt: one of jwks_file, jwks_url, hmac_secret_file is required")
	}
	if cfg.JWKSFile != "" && cfg.JWKSURL != "" {
		return nil, errors.New("identity: jwt: jwks_file and jwks_url are exclusive")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"leeway", cfg.Leeway}, {"clock_skew", cfg.ClockSkew}, {"refresh_interval", cfg.RefreshInterval}, {"cache_ttl", cfg.CacheTTL}} {
		if d.v < 0 {
			return nil, fmt.Errorf("identity: jwt: %s must not be negative", d.name)
		}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = defaultLeeway
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = defaultLeeway
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = defaultRefreshInterval
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = defaultCacheTTL
	}
	switch {
	case cfg.CacheSize == 0:
		cfg.CacheSize = defaultCacheSize
	case cfg.CacheSize < -1:
		return nil, errors.New("identity: jwt: cache_size must be positive, or -1 to disable")
	}
	cfg.Claims = cfg.Claims.WithDefaults()
	hasJWKS := cfg.JWKSFile != "" || cfg.JWKSURL != ""
	hasSecret := cfg.HMACSecretFile != ""
	if len(cfg.Algorithms) == 0 {
		if hasJWKS {
			cfg.Algorithms = append(cfg.Algorithms, asymmetricAlgs...)
		}
		if hasSecret {
			cfg.Algorithms = append(cfg.Algorithms, hmacAlgs...)
		}
	}
	v.algs = map[string]jwa.SignatureAlgorithm{}
	for _, name := range cfg.Algorithms {
		alg, ok := jwa.LookupSignatureAlgorithm(name)
		if !ok || alg == jwa.NoSignature() {
			return nil, fmt.Errorf("identity: jwt: algorithm %q is not allowed", name)
		}
		if alg.IsSymmetric() && !hasSecret {
			return nil, fmt.Errorf("identity: jwt: algorithm %s needs hmac_secret_file", name)
		}
		if !alg.IsSymmetric() && !hasJWKS {
			return nil, fmt.Errorf("identity: jwt: algorithm %s needs jwks_file or jwks_url", name)
		}
		v.algs[name] = alg
	}
	v.cfg = cfg
	if cfg.CacheSize > 0 {
		v.tokens = newTokenCache(cfg.CacheSize)
	}

	if hasSecret {
		b, err := os.ReadFile(cfg.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("identity: jwt: hmac_secret_file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		// RFC 7518 §3.2: the key must be at least as long as the hash.
		if len(b) < 32 {
			return nil, fmt.Errorf("identity: jwt: hmac_secret_file %s holds %d bytes; at least 32 are required", cfg.HMACSecretFile, len(b))
		}
		v.secret = b
	}
	if cfg.JWKSFile != "" {
		b, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("identity: jwt: jwks_file: %w", err)
		}
		set, err := jwk.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("identity: jwt: jwks_file %s: %w", cfg.JWKSFile, err)
		}
		// Private keys in the file are reduced to their public halves;
		// symmetric keys belong in hmac_secret_file and are refused here.
		if set, err = jwk.PublicSetOf(set); err != nil {
			return nil, fmt.Errorf("identity: jwt: jwks_file %s: %w", cfg.JWKSFile, err)
		}
		if set.Len() == 0 {
			return nil, fmt.Errorf("identity: jwt: jwks_file %s holds no keys", cfg.JWKSFile)
		}
		v.fileSet = set
	}
	if cfg.JWKSURL != "" {
		cl := httprc.NewClient(httprc.WithErrorSink(errsink.NewFunc(func(_ context.Context, err error) {
			v.log.Warn("jwks fetch failed", "url", cfg.JWKSURL, "err", err)
		})))
		c, err := jwk.NewCache(ctx, cl)
		if err != nil {
			return nil, fmt.Errorf("identity: jwt: jwks cache: %w", err)
		}
		err = c.Register(ctx, cfg.JWKSURL,
			jwk.WithWaitReady(false),
			jwk.WithHttprcResourceOption(httprc.WithConstantInterval(cfg.RefreshInterval)),
			// A failed connection is retried after the minimum interval.
			jwk.WithHttprcResourceOption(httprc.WithMinInterval(minForcedRefresh)))
		if err != nil {
			_ = c.Shutdown(context.Background())
			return nil, fmt.Errorf("identity: jwt: jwks_url %s: %w", cfg.JWKSURL, err)
		}
		r, err := c.LookupResource(ctx, cfg.JWKSURL)
		if err != nil {
			_ = c.Shutdown(context.Background())
			return nil, fmt.Errorf("identity: jwt: jwks_url %s: %w", cfg.JWKSURL, err)
		}
		v.cache, v.res = c, r
		wctx, cancel := context.WithTimeout(ctx, initialFetchWait)
		defer cancel()
		if err := r.Ready(wctx); err != nil {
			v.log.Warn("jwks not fetched yet; tokens are refused until it is", "url", cfg.JWKSURL, "err", err)
		}
	}
	return v, nil
}

// Close stops the JWKS refresher. It is safe to call more than once.
func (v *Verifier) Close() error {
	var err error
	v.closeOnce.Do(func() {
		if v.cache != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = v.cache.Shutdown(ctx)
		}
	})
	return err
}

// Mapping returns the claim mapping from the config, with defaults applied.
func (v *Verifier) Mapping() ClaimMapping { return v.cfg.Claims }

// Authenticate verifies token and maps its claims with the configured
// ClaimMapping: Verify followed by FromClaims.
func (v *Verifier) Authenticate(ctx context.Context, token string) (pdp.Agent, pdp.User, pdp.Delegation, error) {
	claims, err := v.Verify(ctx, token)
	if err != nil {
		return pdp.Agent{}, pdp.User{}, pdp.Delegation{}, err
	}
	return FromClaims(claims, v.cfg.Claims)
}

// Verify checks a compact JWS token's signature, algorithm, exp (required),
// nbf, iat, iss and aud, and returns its claims as decoded JSON. The map is
// shared with the cache and other callers: do not modify it. A refused
// token's error wraps ErrToken; missing keys give ErrKeysUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (map[string]any, error) {
	if len(token) == 0 {
		return nil, tokenErr("empty")
	}
	if len(token) > MaxTokenBytes {
		return nil, tokenErr("%d bytes, more than %d", len(token), MaxTokenBytes)
	}
	now := v.now()
	var key [sha256.Size]byte
	if v.tokens != nil {
		// Hash the string's bytes in place: a copy would be the hot path's
		// only allocation, and Sum256 does not retain or modify its input.
		key = sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
		if c, ok := v.tokens.get(key, now); ok {
			return c, nil
		}
	}
	// Compact serialization only: three segments, no JSON form, no JWE.
	if strings.Count(token, ".") != 2 {
		return nil, tokenErr("not a compact JWS (want header.payload.signature)")
	}
	payload, err := jws.Verify([]byte(token),
		jws.WithCompact(),
		jws.WithCritValidation(true),
		jws.WithContext(ctx),
		jws.WithKeyProvider(jws.KeyProviderFunc(v.fetchKeys)))
	if err != nil {
		if errors.Is(err, ErrKeysUnavailable) {
			return nil, fmt.Errorf("%w: jwks from %s not fetched yet", ErrKeysUnavailable, v.cfg.JWKSURL)
		}
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, tokenErr("payload is not a JSON object")
	}
	exp, err := v.validate(claims, now)
	if err != nil {
		return nil, err
	}
	if v.tokens != nil {
		until := now.Add(v.cfg.CacheTTL)
		if exp.Before(until) {
			until = exp
		}
		v.tokens.put(key, claims, until, now)
	}
	return claims, nil
}

// fetchKeys picks the one key a signature may be checked with. The
// algorithm comes from the header but must be allowed by config and agree
// with the key's own alg, so neither "none" nor an RSA key used as an HMAC
// secret can get through.
func (v *Verifier) fetchKeys(ctx context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	h := sig.ProtectedHeaders()
	hAlg, ok := h.Algorithm()
	if !ok {
		return fmt.Errorf("header has no alg")
	}
	alg, ok := v.algs[hAlg.String()]
	if !ok {
		return fmt.Errorf("algorithm %q is not allowed", hAlg.String())
	}
	if alg.IsSymmetric() {
		sink.Key(alg, v.secret)
		return nil
	}
	kid, hasKid := h.KeyID()
	set, err := v.keySet()
	if err != nil && v.res != nil && v.forceRefresh(ctx) {
		set, err = v.keySet() // the first fetch failed; it may work now
	}
	if err != nil {
		return err
	}
	var k jwk.Key
	switch {
	case hasKid:
		if k, ok = set.LookupKeyID(kid); !ok && v.cache != nil && v.forceRefresh(ctx) {
			if set, err = v.keySet(); err != nil {
				return err
			}
			k, ok = set.LookupKeyID(kid)
		}
		if !ok {
			return fmt.Errorf("unknown kid %q", kid)
		}
	case set.Len() == 1:
		k, _ = set.Key(0)
	default:
		return fmt.Errorf("header has no kid and the key set holds %d keys", set.Len())
	}
	if u, ok := k.KeyUsage(); ok && u != "" && u != jwk.ForSignature.String() {
		return fmt.Errorf("key %q is for %q, not signatures", kid, u)
	}
	if ka, ok := k.Algorithm(); ok && ka.String() != alg.String() {
		return fmt.Errorf("key %q is for %s, token says %s", kid, ka.String(), alg.String())
	}
	if k.KeyType() == jwa.OctetSeq() {
		return fmt.Errorf("key %q is symmetric; use hmac_secret_file", kid)
	}
	sink.Key(alg, k)
	return nil
}

func (v *Verifier) keySet() (jwk.Set, error) {
	if v.fileSet != nil {
		return v.fileSet, nil
	}
	if v.res == nil {
		return nil, errors.New("no key set configured")
	}
	set := v.res.Resource()
	if set == nil {
		return nil, ErrKeysUnavailable
	}
	return set, nil
}

// forceRefresh fetches the JWKS now unless one was forced recently, and
// reports whether it did.
func (v *Verifier) forceRefresh(ctx context.Context) bool {
	now := time.Now().UnixNano()
	last := v.lastForce.Load()
	if last != 0 && now-last < int64(minForcedRefresh) {
		return false
	}
	if !v.lastForce.CompareAndSwap(last, now) {
		return false // another caller is refreshing
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := v.cache.Refresh(rctx, v.cfg.JWKSURL); err != nil {
		v.log.Warn("jwks refresh for unknown kid failed", "url", v.cfg.JWKSURL, "err", err)
		return false
	}
	return true
}

// validate checks the registered claims and returns the expiry (plus leeway).
func (v *Verifier) validate(c map[string]any, now time.Time) (time.Time, error) {
	exp, ok, err := numericDate(c, "exp")
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return time.Time{}, tokenErr("no exp")
	}
	expAt := exp.Add(v.cfg.Leeway)
	if !now.Before(expAt) {
		return time.Time{}, classErr(ErrExpired, "at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok, err := numericDate(c, "nbf"); err != nil {
		return time.Time{}, err
	} else if ok && now.Before(nbf.Add(-v.cfg.Leeway)) {
		return time.Time{}, classErr(ErrNotYetValid, "before %s", nbf.UTC().Format(time.RFC3339))
	}
	if iat, ok, err := numericDate(c, "iat"); err != nil {
		return time.Time{}, err
	} else if ok && iat.After(now.Add(v.cfg.ClockSkew)) {
		return time.Time{}, classErr(ErrNotYetValid, "(issued in the future, %s)", iat.UTC().Format(time.RFC3339))
	}
	if iss, _ := c["iss"].(string); iss != v.cfg.Issuer {
		return time.Time{}, classErr(ErrWrongIssuer, "%q, not %q", iss, v.cfg.Issuer)
	}
	if !v.audienceOK(c["aud"]) {
		return time.Time{}, classErr(ErrWrongAudience, "%v, not one of %v", c["aud"], v.cfg.Audiences)
	}
	return expAt, nil
}

func (v *Verifier) audienceOK(aud any) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(v.cfg.Audiences, a)
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok && slices.Contains(v.cfg.Audiences, s) {
				return true
			}
		}
	}
	return false
}

// numericDate reads an RFC 7519 NumericDate (seconds, possibly fractional).
func numericDate(c map[string]any, name string) (time.Time, bool, error) {
	raw, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	f, ok := raw.(float64)
	// Beyond ±2^53 seconds the value is no date anyone means.
	if !ok || math.IsNaN(f) || math.Abs(f) > 1<<53 {
		return time.Time{}, true, tokenErr("%s is not a NumericDate", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// BearerToken extracts the token from an Authorization header value
// ("Bearer <token>", scheme case-insensitive per RFC 7235). It reports false
// for any other scheme, an empty token, or characters outside RFC 6750's
// b64token.
func BearerToken(authorizationHeader string) (string, bool) {
	tok, ok := BearerCredentials(authorizationHeader)
	if !ok {
		return "", false
	}
	eq := false
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '=':
			eq = true // only trailing padding may follow
		case eq:
			return "", false
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return "", false
		}
	}
	return tok, true
}

// BearerCredentials is BearerToken without the b64token check: whatever
// follows the scheme, for tokens a person may have chosen (the approvals
// API's static reviewer tokens).
func BearerCredentials(authorizationHeader string) (string, bool) {
	const scheme = "bearer"
	h := strings.TrimSpace(authorizationHeader)
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) || (h[len(scheme)] != ' ' && h[len(scheme)] != '\t') {
		return "", false
	}
	tok := strings.TrimLeft(h[len(scheme):], " \t")
	return tok, tok != ""
}
