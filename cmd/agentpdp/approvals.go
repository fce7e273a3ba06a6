package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentpdp/agentpdp/approvals"
	"github.com/agentpdp/agentpdp/pdp"
)

// ApprovalsConfig is where held calls wait and who reviews them.
type ApprovalsConfig struct {
	// Store is sqlite (default: one process, in data_dir) or postgres
	// (replicas share it).
	Store      string `yaml:"store"`
	SQLitePath string `yaml:"sqlite_path"`
	// PostgresDSN is a URL or key=value string (AGENTPDP_APPROVALS_POSTGRES_DSN).
	PostgresDSN string `yaml:"postgres_dsn"`
	// PendingTTL and GrantTTL apply where the rule names none (1h, 15m).
	PendingTTL time.Duration `yaml:"pending_ttl"`
	GrantTTL   time.Duration `yaml:"grant_ttl"`
	// HoldTimeout is how long the MCP door holds a call before answering
	// it pending (50s).
	HoldTimeout time.Duration `yaml:"hold_timeout"`
	// Retention is how long an ended approval stays in the store (720h).
	Retention time.Duration `yaml:"retention"`
	// DefaultApprovers review what a rule names no approvers for; with
	// none, such calls are denied (builtin#no-approvers).
	DefaultApprovers []string `yaml:"default_approvers"`
	// Addr is the reviewers' API listener (127.0.0.1:9494; "off").
	Addr string `yaml:"addr"`
	// PublicURL is how clients reach Addr (status_url in held answers);
	// default http://<the address the listener got>.
	PublicURL string `yaml:"public_url"`
	// Reviewers are static reviewer tokens, stored as SHA-256 (agentpdp
	// approvals hash-token prints one).
	Reviewers []approvals.StaticReviewer `yaml:"reviewers"`
	// RequestStateKeyFile holds the key (32+ bytes) signing the
	// requestState agentpdp gives 2026-07-28 clients for held calls;
	// replicas must share it. Default: a random key per process.
	RequestStateKeyFile string `yaml:"request_state_key_file"`
	// OIDC signs reviewers in to the web page at the listener's /; the
	// provider's JWTs also authenticate the API and the CLI.
	OIDC *approvals.OIDCConfig `yaml:"oidc"`
	// SessionKeyFile holds the key (32 bytes or more) that signs the
	// page's session cookies, so replicas share sessions; default a
	// random key per process.
	SessionKeyFile string `yaml:"session_key_file"`
	// Webhooks are told of approvals' transitions.
	Webhooks []WebhookConfig `yaml:"webhooks"`

	// hooks are the webhooks' senders, made by finish (which reads their
	// secrets) and shared by the service's OnEvent and their components.
	hooks []*approvals.Webhook
}

// WebhookConfig is one outgoing webhook.
type WebhookConfig struct {
	URL string `yaml:"url"`
	// SecretFile holds the HMAC key that signs every body.
	SecretFile string `yaml:"secret_file"`
	// Format is json (default) or slack.
	Format string `yaml:"format"`
	// Events default to requested, approved, denied and expired.
	Events      []string      `yaml:"events"`
	Timeout     time.Duration `yaml:"timeout"`
	MaxAttempts int           `yaml:"max_attempts"`
}

// mcpApprovalOptions are what the MCP door needs to hold calls for the
// approvals service: the requestState key and the approval page's URL.
func mcpApprovalOptions(cfg *Config, logger *slog.Logger) (key []byte, pageURL func(string) string, err error) {
	c := &cfg.Approvals
	if c.RequestStateKeyFile != "" {
		if key, err = readKeyFile("approvals.request_state_key_file", c.RequestStateKeyFile); err != nil {
			return nil, nil, err
		}
	} else {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		if c.Store == "postgres" {
			logger.Warn("approvals: no request_state_key_file: each replica signs held calls' requestState with its own key, so a retry that reaches another replica is refused")
		}
	}
	if base := strings.TrimSuffix(c.PublicURL, "/"); base != "" {
		pageURL = func(id string) string { return base + "/approvals/" + id }
	}
	return key, pageURL, nil
}

const defaultApprovalsAddr = "127.0.0.1:9494"

func (c *ApprovalsConfig) finish(dataDir string) error {
	switch c.Store {
	case "", "sqlite":
		c.Store = "sqlite"
		if c.SQLitePath == "" {
			c.SQLitePath = filepath.Join(dataDir, "approvals.db")
		}
	case "postgres":
		if c.PostgresDSN == "" {
			return errors.New("approvals.store postgres needs approvals.postgres_dsn (or AGENTPDP_APPROVALS_POSTGRES_DSN)")
		}
	default:
		return fmt.Errorf("approvals.store %q is not sqlite or postgres", c.Store)
	}
	for name, d := range map[string]time.Duration{"pending_ttl": c.PendingTTL, "grant_ttl": c.GrantTTL, "hold_timeout": c.HoldTimeout, "retention": c.Retention} {
		if d < 0 {
			return fmt.Errorf("approvals.%s must be positive, not %s", name, d)
		}
	}
	if c.Addr == "" {
		c.Addr = defaultApprovalsAddr
	}
	if c.OIDC != nil {
		if err := c.OIDC.Validate(); err != nil {
			return err
		}
	}
	for i, r := range c.Reviewers {
		if r.ID == "" || len(r.TokenSHA256) != 64 || strings.Trim(strings.ToLower(r.TokenSHA256), "0123456789abcdef") != "" {
			return fmt.Errorf("approvals.reviewers[%d]: needs id and token_sha256 (64 hex digits; agentpdp approvals hash-token makes one)", i)
		}
	}
	c.hooks = nil
	for i, h := range c.Webhooks {
		if h.SecretFile == "" {
			return fmt.Errorf("approvals.webhooks[%d]: needs secret_file (receivers verify the signature it makes)", i)
		}
		secret, err := os.ReadFile(h.SecretFile)
		if err != nil {
			return fmt.Errorf("approvals.webhooks[%d].secret_file: %w", i, err)
		}
		w, err := approvals.NewWebhook(approvals.WebhookOptions{
			URL: h.URL, Secret: bytes.TrimSpace(secret), Format: h.Format, Events: h.Events, Timeout: h.Timeout, MaxAttempts: h.MaxAttempts,
		})
		if err != nil {
			return fmt.Errorf("approvals.webhooks[%d]: %w", i, err)
		}
		c.hooks = append(c.hooks, w)
	}
	return nil
}

// openApprovals opens the configured store and makes the service that
// holds approve decisions, logging to rec.
func openApprovals(ctx context.Context, cfg *Config, rec pdp.Recorder, logger *slog.Logger, reg prometheus.Registerer) (*approvals.Service, error) {
	c := &cfg.Approvals
	var (
		st  *approvals.Store
		err error
	)
	if c.Store == "postgres" {
		st, err = approvals.OpenPostgres(ctx, c.PostgresDSN, logger)
	} else {
		st, err = approvals.OpenSQLite(ctx, c.SQLitePath)
	}
	if err != nil {
		return nil, err
	}
	var events *prometheus.CounterVec
	if reg != nil {
		cv := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentpdp_approval_events_total",
			Help: "Approval transitions by event: requested, reviewed, approved, denied, expired, consumed.",
		}, []string{"event"})
		if events, err = pdp.RegisterCollector(reg, cv); err != nil {
			st.Close()
			return nil, err
		}
		pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agentpdp_approvals_pending",
			Help: "Held calls waiting for reviewers (in the store, so across replicas sharing it); -1 when the store cannot be read.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			n, err := st.Pending(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		})
		if _, err = pdp.RegisterCollector(reg, pending); err != nil {
			st.Close()
			return nil, err
		}
	}
	hooks := c.hooks
	onEvent := func(kind string, a *approvals.Approval) {
		if events != nil {
			events.WithLabelValues(kind).Inc()
		}
		for _, h := range hooks {
			h.Notify(kind, a)
		}
	}
	return approvals.New(approvals.Options{
		Store: st, Log: rec, PendingTTL: c.PendingTTL, GrantTTL: c.GrantTTL, DefaultApprovers: c.DefaultApprovers, Retention: c.Retention,
		Redact: cfg.DecisionLog.redactPaths(), Logger: logger, OnEvent: onEvent,
	}), nil
}

// approvalsComponents are the expiry sweeper, the webhooks' senders and,
// unless addr is off, the reviewers' API on its own listener, whose URL it
// sets as the Envoy door's and the webhooks' status_url base.
func approvalsComponents(cfg *Config, svc *approvals.Service, logger *slog.Logger) ([]component, func(), error) {
	comps := []component{{"approvals", svc.Run}}
	for _, h := range cfg.Approvals.hooks {
		comps = append(comps, component{"approvals webhook", h.Run})
	}
	defer func() {
		for _, h := range cfg.Approvals.hooks {
			h.SetStatusURL(cfg.Approvals.PublicURL)
		}
	}()
	if cfg.Approvals.Addr == "off" {
		cfg.Envoy.ApprovalsURL = cfg.Approvals.PublicURL
		return comps, func() {}, nil
	}
	lis, err := net.Listen("tcp", cfg.Approvals.Addr)
	if err != nil {
		return nil, func() {}, fmt.Errorf("approvals: %w", err)
	}
	if cfg.Approvals.PublicURL == "" {
		cfg.Approvals.PublicURL = "http://" + lis.Addr().String()
	}
	cfg.Envoy.ApprovalsURL = cfg.Approvals.PublicURL
	if len(cfg.Approvals.Reviewers) == 0 && cfg.Approvals.OIDC == nil {
		logger.Warn("approvals: no reviewers configured (approvals.reviewers or approvals.oidc): held calls can only expire")
	}
	api := &approvals.API{Service: svc, Auth: approvals.StaticTokens(cfg.Approvals.Reviewers), Logger: logger}
	var web *approvals.Web
	if cfg.Approvals.OIDC != nil {
		if web, err = approvalsWeb(cfg, svc, logger); err != nil {
			_ = lis.Close()
			return nil, func() {}, err
		}
		api.Auth = approvals.AnyOf{api.Auth, web.Bearer()}
		api.Page = web.Handler()
	}
	hs := approvals.NewServer(api.Handler())
	if web != nil {
		hs.RegisterOnShutdown(web.Shutdown) // its live streams would hold the shutdown up
	}
	logger.Info("serving", "listener", "approvals", "addr", lis.Addr().String())
	return append(comps, httpComponent("approvals", hs, lis)), func() { _ = lis.Close() }, nil
}

// approvalsWeb is the reviewers' page with OIDC sign-in.
func approvalsWeb(cfg *Config, svc *approvals.Service, logger *slog.Logger) (*approvals.Web, error) {
	c := &cfg.Approvals
	var secret string
	if c.OIDC.ClientSecretFile != "" {
		b, err := os.ReadFile(c.OIDC.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("approvals.oidc.client_secret_file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	var key []byte
	if c.SessionKeyFile != "" {
		var err error
		if key, err = readKeyFile("approvals.session_key_file", c.SessionKeyFile); err != nil {
			return nil, err
		}
	}
	web, err := approvals.NewWeb(approvals.WebOptions{Service: svc, OIDC: *c.OIDC, ClientSecret: secret, PublicURL: c.PublicURL, SessionKey: key, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("approvals: %w", err)
	}
	return web, nil
}

// readKeyFile reads an HMAC key of at least 32 bytes (surrounding white
// space trimmed) from the file the config field names.
func readKeyFile(field, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	key := bytes.TrimSpace(b)
	if len(key) < 32 {
		return nil, fmt.Errorf("%s: %d bytes, want at least 32 (head -c 32 /dev/urandom | base64 makes one)", field, len(key))
	}
	return key, nil
}

// apiURL is the approvals API as the CLI reaches it.
func apiURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "http://" + addr
}
