// Package oidctest is a small but real OpenID Connect provider for tests:
// it serves discovery, a JWKS with an RS256 key, /authorize (which signs in
// the configured user at once: there is no login form to fill) and /token
// (the authorization code grant with PKCE S256 and client authentication),
// over HTTP on loopback. Codes are single-use and short-lived, redirect URIs
// must be registered exactly, and ID tokens carry the user's groups.
package oidctest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// User is who /authorize signs in.
type User struct {
	Sub    string
	Email  string
	Name   string
	Groups []string
}

// Client is a registered relying party.
type Client struct {
	ID           string
	Secret       string // "" for a public client
	RedirectURIs []string
}

// Provider is a running provider.
type Provider struct {
	// Issuer is the provider's URL (http://127.0.0.1:PORT).
	Issuer string
	// AccessTokenAudience is the aud of the access tokens it issues
	// (default: the client id).
	AccessTokenAudience string

	key     *rsa.PrivateKey
	kid     string
	srv     *http.Server
	clients map[string]Client

	mu    sync.Mutex
	user  User
	codes map[string]*grant
}

type grant struct {
	client, redirect, challenge, nonce string
	user                               User
	expires                            time.Time
	used                               bool
}

// Start runs a provider on a loopback port until the test ends.
func Start(t testing.TB, user User, clients ...Client) *Provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Issuer: "http://" + lis.Addr().String(), key: key, kid: randString(8),
		clients: map[string]Client{}, user: user, codes: map[string]*grant{}}
	for _, c := range clients {
		p.clients[c.ID] = c
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(lis) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// SetUser changes who the next /authorize signs in.
func (p *Provider) SetUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = u
}

// CurrentUser is who the next /authorize signs in.
func (p *Provider) CurrentUser() User {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.user
}

// Sign returns a JWT with claims, signed with the provider's key (a token
// as the provider would issue it, for API tests).
func (p *Provider) Sign(claims map[string]any) string {
	return SignWith(p.key, p.kid, claims)
}

// SignWith signs claims with any RSA key (a stranger's token, in tests).
func SignWith(key *rsa.PrivateKey, kid string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	c, _ := json.Marshal(claims)
	in := b64(h) + "." + b64(c)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return in + "." + b64(sig)
}

// Claims are the standard claims of a token for u, valid for ttl.
func (p *Provider) Claims(u User, aud string, ttl time.Duration) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": p.Issuer, "sub": u.Sub, "aud": aud, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if u.Email != "" {
		c["email"], c["email_verified"] = u.Email, true
	}
	if u.Name != "" {
		c["name"] = u.Name
	}
	if u.Groups != nil {
		c["groups"] = u.Groups
	}
	return c
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer": p.Issuer, "authorization_endpoint": p.Issuer + "/authorize", "token_endpoint": p.Issuer + "/token",
		"jwks_uri": p.Issuer + "/jwks", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"}, "code_challenge_methods_supported": []string{"S256"},
		"grant_types_supported":                 []string{"authorization_code"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"scopes_supported":                      []string{"openid", "email", "profile", "groups"},
		"claims_supported":                      []string{"sub", "email", "name", "groups", "nonce"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	pub := p.key.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": p.kid,
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// authorize signs the configured user in and sends the browser back with
// a code. What cannot be sent back safely (an unknown client or an
// unregistered redirect URI) is a 400 here, as a real provider does.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c, ok := p.clients[q.Get("client_id")]
	if !ok || !slices.Contains(c.RedirectURIs, q.Get("redirect_uri")) {
		http.Error(w, "unknown client or unregistered redirect_uri", http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(q.Get("redirect_uri"))
	reply := func(v url.Values) {
		if s := q.Get("state"); s != "" {
			v.Set("state", s)
		}
		v.Set("iss", p.Issuer)
		back.RawQuery = v.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		reply(url.Values{"error": {"unsupported_response_type"}})
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		reply(url.Values{"error": {"invalid_scope"}, "error_description": {"openid is required"}})
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		reply(url.Values{"error": {"invalid_request"}, "error_description": {"PKCE with S256 is required"}})
		return
	}
	p.mu.Lock()
	code := randString(24)
	p.codes[code] = &grant{client: c.ID, redirect: q.Get("redirect_uri"), challenge: q.Get("code_challenge"),
		nonce: q.Get("nonce"), user: p.user, expires: time.Now().Add(time.Minute)}
	p.mu.Unlock()
	reply(url.Values{"code": {code}})
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: the credentials are form-encoded first.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c, ok := p.clients[id]
	if !ok || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	p.mu.Lock()
	g := p.codes[r.PostForm.Get("code")]
	var why string
	switch {
	case g == nil:
		why = "unknown code"
	case g.used:
		why = "the code was already used"
	case time.Now().After(g.expires):
		why = "the code expired"
	case g.client != c.ID:
		why = "the code was issued to another client"
	case g.redirect != r.PostForm.Get("redirect_uri"):
		why = "redirect_uri differs from the authorization request's"
	case !pkceOK(g.challenge, r.PostForm.Get("code_verifier")):
		why = "the PKCE code_verifier does not match the code_challenge"
	}
	if g != nil {
		g.used = true // any attempt spends the code
	}
	p.mu.Unlock()
	if why != "" {
		oauthError(w, http.StatusBadRequest, "invalid_grant", why)
		return
	}
	idc := p.Claims(g.user, c.ID, 5*time.Minute)
	idc["auth_time"] = time.Now().Unix()
	if g.nonce != "" {
		idc["nonce"] = g.nonce
	}
	atc := p.Claims(g.user, cmpOr(p.AccessTokenAudience, c.ID), 5*time.Minute)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": p.Sign(atc), "token_type": "Bearer", "expires_in": 300, "id_token": p.Sign(idc)})
}

func pkceOK(challenge, verifier string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(b64(sum[:])), []byte(challenge)) == 1
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b64(b)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
