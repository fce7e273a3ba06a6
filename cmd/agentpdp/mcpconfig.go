package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/agentpdp/agentpdp/approvals"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/mcpproxy"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/identity"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// MCPConfig is the `mcp:` section: the MCP door served by `agentpdp run`,
// each upstream server at /mcp/<name> on one listener.
type MCPConfig struct {
	// Addr is the listener (default 127.0.0.1:9595; loopback unless you
	// mean it: a static identity is refused elsewhere).
	Addr string `yaml:"addr"`
	// Identity is the one local agent a loopback listener serves, for
	// clients that send no token.
	Identity *MCPIdentity `yaml:"identity"`
	// JWT verifies Bearer tokens, as envoy.jwt does.
	JWT identity.JWTConfig `yaml:"jwt"`
	// TLS serves HTTPS; with client_ca_file, clients must present a
	// certificate signed by it, whose SPIFFE ID is the agent.
	TLS            identity.ServerTLS `yaml:"tls"`
	AllowedHosts   []string           `yaml:"allowed_hosts"`
	AllowedOrigins []string           `yaml:"allowed_origins"`
	CallTimeout    time.Duration      `yaml:"call_timeout"`
	IdleTimeout    time.Duration      `yaml:"idle_timeout"`
	// ExtraMethods are JSON-RPC methods outside the MCP specification the
	// servers serve; other unknown methods are refused.
	ExtraMethods []string      `yaml:"extra_methods"`
	Upstreams    []MCPUpstream `yaml:"upstreams"`
}

// MCPIdentity is a static caller.
type MCPIdentity struct {
	Agent  string   `yaml:"agent"`
	User   string   `yaml:"user"`
	Groups []string `yaml:"groups"`
}

// MCPUpstream is one proxied server: a URL, or a command run per session.
type MCPUpstream struct {
	// Name is its path (/mcp/<name>) and action.server in policies.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// SSE: URL is a legacy HTTP+SSE endpoint (2024-11-05).
	SSE bool `yaml:"sse"`
	// Stateful: the URL's server speaks only the stateful era; 2026-07-28
	// clients are bridged to it (to a command or an SSE server they are
	// always).
	Stateful bool `yaml:"stateful"`
	// Stateless: the URL's server speaks only 2026-07-28; stateful
	// clients are bridged to it.
	Stateless bool     `yaml:"stateless"`
	Command   []string `yaml:"command"`
	// Env is the command's environment (not secrets: values are inline);
	// EnvFiles reads a variable's value from a file (secrets); InheritEnv
	// names variables of agentpdp's own environment it also gets. Nothing
	// else of agentpdp's environment reaches it.
	Env        map[string]string `yaml:"env"`
	EnvFiles   map[string]string `yaml:"env_files"`
	InheritEnv []string          `yaml:"inherit_env"`
	Dir        string            `yaml:"dir"`
	// Credentials are what a URL upstream gets (never the caller's token,
	// unless mode: passthrough says so).
	Credentials mcpproxy.CredentialsConfig `yaml:"credentials"`
}

const defaultMCPAddr = "127.0.0.1:9595"

var upstreamName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// validate reports the first problem of a defaulted MCPConfig.
func (c *MCPConfig) validate() error {
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		where := fmt.Sprintf("mcp.upstreams[%d]", i)
		if !upstreamName.MatchString(u.Name) {
			return fmt.Errorf("%s.name %q: lower-case letters, digits, - and _ (it is a URL path and action.server)", where, u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("%s.name %q is used twice", where, u.Name)
		}
		seen[u.Name] = true
		switch {
		case (u.URL == "") == (len(u.Command) == 0):
			return fmt.Errorf("%s (%s): give a url or a command, one of them", where, u.Name)
		case u.URL != "":
			if p, err := neturl.Parse(u.URL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
				return fmt.Errorf("%s.url %q is not an http(s) URL", where, u.URL)
			}
		case u.SSE || u.Stateless || u.Stateful:
			return fmt.Errorf("%s: sse, stateful and stateless are for a url, not a command", where)
		case u.Credentials.Mode != "" && u.Credentials.Mode != mcpproxy.CredNone:
			return fmt.Errorf("%s.credentials are for a url; a command gets its credentials as env_files", where)
		}
		if u.Stateless && (u.Stateful || u.SSE) {
			return fmt.Errorf("%s (%s): stateless is neither stateful nor sse", where, u.Name)
		}
		if u.URL != "" && (len(u.Env) > 0 || len(u.EnvFiles) > 0 || len(u.InheritEnv) > 0) {
			return fmt.Errorf("%s: env, env_files and inherit_env are for a command", where)
		}
	}
	if err := c.TLS.Validate("mcp.tls"); err != nil {
		return err
	}
	if c.Identity != nil && c.Identity.Agent == "" {
		return errors.New("mcp.identity.agent: name the agent (or drop mcp.identity)")
	}
	if len(c.Upstreams) > 0 && c.Identity == nil && !c.JWT.Configured() && c.TLS.ClientCAFile == "" {
		return errors.New("mcp: say who the callers are: mcp.identity (one local agent, loopback only), mcp.jwt, or client certificates (mcp.tls.client_ca_file)")
	}
	return nil
}

// mcpDoor is the MCP door's listener and handlers, ready to serve.
type mcpDoor struct {
	lis      net.Listener
	mux      *http.ServeMux
	handlers []*mcpproxy.HTTPHandler
	stop     chan struct{} // closed when serving ends: see Options.Stop
}

// newMCPDoor builds a handler per upstream and opens the listener.
func newMCPDoor(cfg *Config, d pdp.Decider, appr *approvals.Service, logger *slog.Logger) (*mcpDoor, error) {
	c := &cfg.MCP
	pins, err := mcpproxy.OpenPins(filepath.Join(cfg.DataDir, "mcp-pins.json"))
	if err != nil {
		return nil, err
	}
	var static *mcpproxy.Identity
	if c.Identity != nil {
		static = &mcpproxy.Identity{Agent: pdp.Agent{ID: c.Identity.Agent, Authn: "static"}}
		if c.Identity.User != "" {
			static.User = pdp.User{ID: c.Identity.User, Groups: c.Identity.Groups}
		}
	}
	var jwt *identity.JWTConfig
	if c.JWT.Configured() {
		jwt = &c.JWT
	}
	stateKey, pageURL, err := mcpApprovalOptions(cfg, logger)
	if err != nil {
		return nil, err
	}
	door := &mcpDoor{mux: http.NewServeMux(), stop: make(chan struct{})}
	methods := mcpmsg.NewMethods(c.ExtraMethods)
	for _, u := range c.Upstreams {
		up := mcpproxy.UpstreamConfig{URL: u.URL, SSE: u.SSE, Stateful: u.Stateful, Stateless: u.Stateless}
		if len(u.Command) > 0 {
			env := make([]string, 0, len(u.Env)+len(u.EnvFiles))
			for k, v := range u.Env {
				env = append(env, k+"="+v)
			}
			for k, f := range u.EnvFiles {
				b, err := os.ReadFile(f)
				if err != nil {
					door.close()
					return nil, fmt.Errorf("mcp upstream %s: env_files.%s: %w", u.Name, k, err)
				}
				env = append(env, k+"="+strings.TrimRight(string(b), "\r\n"))
			}
			up.Command = &mcpproxy.Command{Path: u.Command[0], Args: u.Command[1:], Env: env, Inherit: u.InheritEnv, Dir: u.Dir}
		}
		creds, err := mcpproxy.NewCredentials(u.Credentials, http.DefaultClient, logger)
		if err != nil {
			door.close()
			return nil, fmt.Errorf("mcp upstream %s: %w", u.Name, err)
		}
		if creds.Mode() == mcpproxy.CredPassthrough {
			logger.Warn("an upstream gets the callers' own tokens (credentials.mode: passthrough): it, or whoever compromises it, can replay them elsewhere", "upstream", u.Name)
		}
		opts := &mcpproxy.Options{Server: u.Name, Decider: d, Methods: methods, CallTimeout: c.CallTimeout, Pins: pins, Credentials: creds, Logger: logger,
			Approvals: appr, HoldTimeout: cfg.Approvals.HoldTimeout, StateKey: stateKey, ApprovalURL: pageURL, Stop: door.stop}
		path := "/mcp/" + u.Name
		h, err := mcpproxy.NewHTTPHandler(mcpproxy.HTTPConfig{
			Listen: c.Addr, Path: path, Upstream: up, StaticIdentity: static, JWT: jwt, MTLS: c.TLS.ClientCAFile != "",
			AllowedHosts: c.AllowedHosts, AllowedOrigins: c.AllowedOrigins, IdleTimeout: c.IdleTimeout,
		}, opts)
		if err != nil {
			door.close()
			return nil, fmt.Errorf("mcp upstream %s: %w", u.Name, err)
		}
		door.handlers = append(door.handlers, h)
		for _, p := range []string{path, path + "/sse", path + "/messages", "/.well-known/oauth-protected-resource" + path} {
			door.mux.Handle(p, h)
		}
	}
	tlsCfg, err := c.TLS.Config("mcp.tls")
	if err != nil {
		door.close()
		return nil, err
	}
	lis, err := net.Listen("tcp", c.Addr)
	if err != nil {
		door.close()
		return nil, fmt.Errorf("mcp: %w", err)
	}
	if tlsCfg != nil {
		lis = tls.NewListener(lis, tlsCfg)
	}
	door.lis = lis
	return door, nil
}

func (d *mcpDoor) serve(ctx context.Context) error {
	// Held calls answer pending as soon as shutdown begins, so the drain
	// does not wait out their hold_timeout.
	stop := context.AfterFunc(ctx, func() { close(d.stop) })
	defer stop()
	return mcpproxy.Serve(ctx, d.lis, d.mux)
}

// close ends every session (their upstream processes included).
func (d *mcpDoor) close() {
	for _, h := range d.handlers {
		h.Close()
	}
	if d.lis != nil {
		_ = d.lis.Close()
	}
}
