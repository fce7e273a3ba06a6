package approvals

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/agentpdp/agentpdp/pdp/identity"
)

// OIDCConfig is approvals.oidc: reviewers sign in to the web page with an
// OpenID Connect provider, and its JWTs authenticate the REST API and CLI.
type OIDCConfig struct {
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret ("" for a public client).
	ClientSecretFile string `yaml:"client_secret_file"`
	// RedirectURL is registered at the provider; default
	// <public_url>/auth/callback.
	RedirectURL string `yaml:"redirect_url"`
	// Scopes asked for besides openid (default email, profile).
	Scopes []string `yaml:"scopes"`
	// GroupsClaim names the claim listing the reviewer's groups (groups).
	GroupsClaim string `yaml:"groups_claim"`
	// UserClaim names the claim that is the reviewer's id: sub (default)
	// or email (then a false email_verified is refused).
	UserClaim string `yaml:"user_claim"`
	// APIAudience is the aud the API accepts in bearer JWTs (client_id).
	APIAudience string `yaml:"api_audience"`
}

// Validate checks the config and fills its defaults.
func (c *OIDCConfig) Validate() error {
	if c.Issuer == "" || c.ClientID == "" {
		return errors.New("approvals.oidc needs issuer and client_id")
	}
	if !strings.HasPrefix(c.Issuer, "https://") && !strings.HasPrefix(c.Issuer, "http://") {
		return fmt.Errorf("approvals.oidc.issuer %q is not an http(s) URL", c.Issuer)
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	switch c.UserClaim {
	case "":
		c.UserClaim = "sub"
	case "sub", "email":
	default:
		return fmt.Errorf("approvals.oidc.user_claim %q is not sub or email", c.UserClaim)
	}
	if c.Scopes == nil {
		c.Scopes = []string{"email", "profile"}
	}
	if c.APIAudience == "" {
		c.APIAudience = c.ClientID
	}
	return nil
}

// oidcClient finds the provider on first use (and again after a failure),
// so agentpdp starts while the provider is down; until it is found,
// sign-in and bearer JWTs are refused.
type oidcClient struct {
	cfg    OIDCConfig
	secret string
	hc     *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
}

func (o *oidcClient) get(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.hc), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("OIDC discovery at %s: %w", o.cfg.Issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *oidcClient) oauth2(p *oidc.Provider, redirect string) *oauth2.Config {
	ep := p.Endpoint()
	// The client authentication the provider names, not oauth2's probing:
	// a probe's failed first try may spend the single-use code.
	var meta struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	_ = p.Claims(&meta)
	ep.AuthStyle = oauth2.AuthStyleInHeader // the default of OIDC Discovery §3
	if len(meta.Methods) > 0 && !slices.Contains(meta.Methods, "client_secret_basic") && slices.Contains(meta.Methods, "client_secret_post") {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.secret, Endpoint: ep,
		RedirectURL: redirect, Scopes: append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...)}
}

// reviewer reads who a verified token names.
func (o *oidcClient) reviewer(tok *oidc.IDToken) (Reviewer, error) {
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Reviewer{}, err
	}
	id := tok.Subject
	if o.cfg.UserClaim == "email" {
		id, _ = claims["email"].(string)
		if v, ok := claims["email_verified"].(bool); ok && !v {
			return Reviewer{}, errors.New("the token's email is not verified")
		}
	}
	if id == "" {
		return Reviewer{}, fmt.Errorf("the token has no %s", o.cfg.UserClaim)
	}
	var groups []string
	switch g := claims[o.cfg.GroupsClaim].(type) {
	case nil:
	case string:
		groups = []string{g}
	case []any:
		for _, x := range g {
			s, ok := x.(string)
			if !ok {
				return Reviewer{}, fmt.Errorf("claim %s holds a non-string", o.cfg.GroupsClaim)
			}
			groups = append(groups, s)
		}
	default:
		return Reviewer{}, fmt.Errorf("claim %s is not a list of strings", o.cfg.GroupsClaim)
	}
	// The person's other name, so that the self-review check sees them
	// under either (the doors may know users by sub or by email).
	var aliases []string
	for _, n := range []string{tok.Subject, verifiedEmail(claims)} {
		if n != "" && n != id && !slices.Contains(aliases, n) {
			aliases = append(aliases, n)
		}
	}
	return Reviewer{ID: id, Groups: groups, Aliases: aliases}, nil
}

// verifiedEmail is the token's email unless the token says it is not
// verified.
func verifiedEmail(claims map[string]any) string {
	email, _ := claims["email"].(string)
	if v, ok := claims["email_verified"].(bool); ok && !v {
		return ""
	}
	return email
}

// OIDCBearer authenticates the API's bearer JWTs (ID or access tokens)
// from the configured issuer, with aud = api_audience.
type OIDCBearer struct{ o *oidcClient }

// Reviewer implements Authenticator.
func (b OIDCBearer) Reviewer(r *http.Request) (Reviewer, error) {
	tok, ok := identity.BearerCredentials(r.Header.Get("Authorization"))
	if !ok {
		return Reviewer{}, errNoCredentials
	}
	if strings.Count(tok, ".") != 2 {
		return Reviewer{}, errors.New("unknown token") // not a JWT: a wrong static token
	}
	p, err := b.o.get(r.Context())
	if err != nil {
		return Reviewer{}, err
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: b.o.cfg.APIAudience}).Verify(r.Context(), tok)
	if err != nil {
		return Reviewer{}, fmt.Errorf("bearer JWT: %w", err)
	}
	return b.o.reviewer(idt)
}

// sealer signs small JSON values for cookies with an HMAC key, so that
// replicas sharing the key share sessions and no server state is needed.
type sealer struct{ key []byte }

func (s sealer) mac(purpose, payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose + "\x00" + payload)) // a sign-in flow is never a session
	return m.Sum(nil)
}

func (s sealer) seal(purpose string, v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	p := base64.RawURLEncoding.EncodeToString(raw)
	return p + "." + base64.RawURLEncoding.EncodeToString(s.mac(purpose, p)), nil
}

// open verifies and decodes a sealed value that must not be past exp.
func (s sealer) open(purpose, sealed string, v interface{ expiry() int64 }, now time.Time) error {
	p, sig, ok := strings.Cut(sealed, ".")
	if !ok {
		return errors.New("malformed")
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(purpose, p)) {
		return errors.New("bad signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return err
	}
	if now.Unix() >= v.expiry() {
		return errors.New("expired")
	}
	return nil
}

// session is a signed-in reviewer, in a cookie.
type session struct {
	Reviewer Reviewer `json:"r"`
	Exp      int64    `json:"exp"`
	// CSRF is this session's token: every POST must carry it.
	CSRF string `json:"csrf"`
}

func (s *session) expiry() int64 { return s.Exp }

// signin is one sign-in in progress, in a cookie that only the callback
// reads: state against CSRF on the callback, nonce against ID token
// replay, the PKCE verifier against code interception.
type signin struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Exp      int64  `json:"exp"`
}

func (s *signin) expiry() int64 { return s.Exp }

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
