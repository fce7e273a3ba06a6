package mcpproxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// The token an agent presents to agentpdp is issued for agentpdp: passing
// it on would let the upstream, or whoever compromises it, replay it
// elsewhere (MCP's security guidance forbids it). An upstream that needs
// credentials gets its own, from the configuration.

// Credential modes.
const (
	CredNone              = "none"
	CredStatic            = "static"
	CredClientCredentials = "client_credentials"
	CredTokenExchange     = "token_exchange"
	CredPassthrough       = "passthrough"
)

// CredentialsConfig says how agentpdp authenticates to one upstream.
type CredentialsConfig struct {
	// Mode is none (default), static, client_credentials, token_exchange
	// or passthrough (the client's own token, for legacy upstreams only:
	// a warning at start).
	Mode string `yaml:"mode"`
	// Header carries the credential (default Authorization).
	Header string `yaml:"header"`
	// static: the header's value from a file or an environment variable,
	// never inline (it would end up in backups and diffs).
	ValueFile string `yaml:"value_file"`
	ValueEnv  string `yaml:"value_env"`
	// client_credentials and token_exchange: the token endpoint and
	// agentpdp's client credentials there.
	TokenURL         string   `yaml:"token_url"`
	ClientID         string   `yaml:"client_id"`
	ClientSecretFile string   `yaml:"client_secret_file"`
	ClientSecretEnv  string   `yaml:"client_secret_env"`
	Scopes           []string `yaml:"scopes"`
	// Audience and Resource name the upstream to the token endpoint.
	Audience string `yaml:"audience"`
	Resource string `yaml:"resource"`
	// token_exchange: a token naming the agent, sent as actor_token
	// (RFC 8693 §2.1) beside the user's subject token; optional.
	ActorTokenFile string `yaml:"actor_token_file"`
}

// CredentialInfo is what the decision log records of a credential: never
// the token.
type CredentialInfo struct {
	Mode     string
	JTI      string
	Subject  string
	Audience string
}

// Credentials gets an upstream's credential for a caller.
type Credentials struct {
	cfg    CredentialsConfig
	client *http.Client
	log    *slog.Logger
	static string
	secret string
	actor  string

	mu    sync.Mutex
	cache map[callerKey]cachedToken // by caller (token exchange)
}

type cachedToken struct {
	value string
	info  CredentialInfo
	until time.Time // refresh before this
}

// NewCredentials checks cfg and reads its secrets.
func NewCredentials(cfg CredentialsConfig, client *http.Client, log *slog.Logger) (*Credentials, error) {
	if cfg.Mode == "" {
		cfg.Mode = CredNone
	}
	if cfg.Header == "" {
		cfg.Header = "Authorization"
	}
	c := &Credentials{cfg: cfg, client: client, log: log, cache: map[callerKey]cachedToken{}}
	secret := func(file, env, what string) (string, error) {
		switch {
		case file != "" && env != "":
			return "", fmt.Errorf("%s: a file or an environment variable, not both", what)
		case file != "":
			b, err := os.ReadFile(file)
			if err != nil {
				return "", fmt.Errorf("%s: %w", what, err)
			}
			return strings.TrimSpace(string(b)), nil
		case env != "":
			v := os.Getenv(env)
			if v == "" {
				return "", fmt.Errorf("%s: $%s is empty", what, env)
			}
			return v, nil
		}
		return "", fmt.Errorf("%s: name a file or an environment variable", what)
	}
	var err error
	switch cfg.Mode {
	case CredNone, CredPassthrough:
	case CredStatic:
		if c.static, err = secret(cfg.ValueFile, cfg.ValueEnv, "credentials.value"); err != nil {
			return nil, err
		}
	case CredClientCredentials, CredTokenExchange:
		if u, err := url.Parse(cfg.TokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("credentials.token_url %q is not an http(s) URL", cfg.TokenURL)
		}
		if cfg.ClientID == "" {
			return nil, errors.New("credentials.client_id is required")
		}
		if c.secret, err = secret(cfg.ClientSecretFile, cfg.ClientSecretEnv, "credentials.client_secret"); err != nil {
			return nil, err
		}
		if cfg.ActorTokenFile != "" {
			b, err := os.ReadFile(cfg.ActorTokenFile)
			if err != nil {
				return nil, fmt.Errorf("credentials.actor_token_file: %w", err)
			}
			c.actor = strings.TrimSpace(string(b))
		}
	default:
		return nil, fmt.Errorf("credentials.mode %q is not none, static, client_credentials, token_exchange or passthrough", cfg.Mode)
	}
	return c, nil
}

// Mode is the configured mode.
func (c *Credentials) Mode() string { return c.cfg.Mode }

// Get returns the header and value to send upstream for this caller
// (value "" for none), and what to log of it. The caller's own token (for
// passthrough and as the subject of an exchange) is ident's.
func (c *Credentials) Get(ctx context.Context, ident Identity) (header, value string, info CredentialInfo, err error) {
	info.Mode = c.cfg.Mode
	switch c.cfg.Mode {
	case CredNone:
		return "", "", info, nil
	case CredStatic:
		return c.cfg.Header, c.static, info, nil
	case CredPassthrough:
		if ident.token == "" {
			return "", "", info, errors.New("passthrough: the caller presented no token")
		}
		return c.cfg.Header, "Bearer " + ident.token, info, nil
	}
	var key callerKey // client_credentials: one token for every caller
	if c.cfg.Mode == CredTokenExchange {
		if ident.token == "" {
			return "", "", info, errors.New("token exchange needs the caller's token (the user's subject token); this caller presented none")
		}
		key = ident.key()
	}
	c.mu.Lock()
	t, ok := c.cache[key]
	c.mu.Unlock()
	if ok && time.Now().Before(t.until) {
		return c.cfg.Header, "Bearer " + t.value, t.info, nil
	}
	t, err = c.fetch(ctx, ident)
	if err != nil {
		return "", "", info, err
	}
	c.mu.Lock()
	c.cache[key] = t
	c.mu.Unlock()
	return c.cfg.Header, "Bearer " + t.value, t.info, nil
}

// fetch asks the token endpoint: client credentials (RFC 6749 §4.4) or a
// token exchange (RFC 8693) of the user's token, the agent as actor.
func (c *Credentials) fetch(ctx context.Context, ident Identity) (cachedToken, error) {
	form := url.Values{}
	if c.cfg.Mode == CredClientCredentials {
		form.Set("grant_type", "client_credentials")
	} else {
		form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
		form.Set("subject_token", ident.token)
		form.Set("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
		form.Set("requested_token_type", "urn:ietf:params:oauth:token-type:access_token")
		if c.actor != "" {
			form.Set("actor_token", c.actor)
			form.Set("actor_token_type", "urn:ietf:params:oauth:token-type:jwt")
		}
	}
	if len(c.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	if c.cfg.Audience != "" {
		form.Set("audience", c.cfg.Audience)
	}
	if c.cfg.Resource != "" {
		form.Set("resource", c.cfg.Resource)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return cachedToken{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(c.secret))
	resp, err := c.client.Do(req)
	if err != nil {
		return cachedToken{}, fmt.Errorf("token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return cachedToken{}, fmt.Errorf("token endpoint answered HTTP %d %s %s", resp.StatusCode, tr.Error, tr.Description)
	}
	t := cachedToken{value: tr.AccessToken, info: CredentialInfo{Mode: c.cfg.Mode}}
	claims := jwtClaims(tr.AccessToken)
	t.info.JTI, _ = claims["jti"].(string)
	t.info.Subject, _ = claims["sub"].(string)
	switch a := claims["aud"].(type) {
	case string:
		t.info.Audience = a
	case []any:
		var s []string
		for _, x := range a {
			if v, ok := x.(string); ok {
				s = append(s, v)
			}
		}
		t.info.Audience = strings.Join(s, " ")
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	if exp, ok := claims["exp"].(float64); ok && life == 0 {
		life = time.Until(time.Unix(int64(exp), 0))
	}
	if life <= 0 {
		life = time.Minute
	}
	// Refreshed before it expires: a tenth of its life, at most a minute.
	t.until = time.Now().Add(life - min(life/10, time.Minute))
	return t, nil
}

// jwtClaims reads a JWT's payload for the log (jti, sub, aud); the token
// was just issued to agentpdp by the endpoint it trusts, and nothing is
// decided on these values.
func jwtClaims(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}
