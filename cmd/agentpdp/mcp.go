package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	neturl "net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentpdp/agentpdp/approvals"
	"github.com/agentpdp/agentpdp/mcpproxy"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

const mcpUsage = `usage: agentpdp mcp [flags] -- COMMAND [ARGS...]    stdio on both sides
       agentpdp mcp [flags] --listen HOST:PORT --upstream URL
                                                    Streamable HTTP in front of an HTTP server
`

// cmdMCP runs the MCP door on its own: in front of one stdio server (a
// desktop client puts this line in its server config) or one HTTP server.
func cmdMCP(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("mcp")
	cfgPath := fs.String("config", "", "config file (agentpdp.yaml)")
	dir := fs.String("policies", "", "policy directory (default: built-in examples)")
	dataDir := fs.String("data-dir", "", "data directory (decision log, tool pins)")
	logFile := fs.String("decision-log", "", `decision log file ("off" to disable)`)
	agent := fs.String("agent", "", "the agent's identity (static: the one local agent this proxy serves)")
	user := fs.String("user", "", "the person the agent acts for")
	server := fs.String("server", "", "the upstream's name in policies (action.server; default: the command's or URL host's name)")
	listen := fs.String("listen", "", "serve Streamable HTTP on HOST:PORT (loopback unless you mean it)")
	upstream := fs.String("upstream", "", "the upstream server's Streamable HTTP URL (with --listen)")
	upstreamSSE := fs.Bool("upstream-sse", false, "the --upstream URL is a legacy HTTP+SSE endpoint (2024-11-05)")
	upstreamStateful := fs.Bool("upstream-stateful", false, "the --upstream server speaks only the stateful era: bridge 2026-07-28 clients to it")
	upstreamStateless := fs.Bool("upstream-stateless", false, "the --upstream server speaks only 2026-07-28: bridge stateful clients to it")
	callTimeout := fs.Duration("call-timeout", 2*time.Minute, "how long a forwarded request may wait for the upstream's answer")
	holdTimeout := fs.Duration("hold-timeout", 0, "how long a call that needs approval is held before it is answered pending (default approvals.hold_timeout, 50s)")
	var inherit []string
	fs.Func("env", "a variable of agentpdp's environment the stdio server also gets (repeatable; PATH, HOME, LANG … always)", func(v string) error {
		inherit = append(inherit, v)
		return nil
	})
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, errUsage) {
			return fmt.Errorf("%w\n%s", err, mcpUsage)
		}
		return err
	}
	command := fs.Args()
	httpMode := *listen != "" || *upstream != ""
	switch {
	case httpMode && (*listen == "" || *upstream == ""):
		return fmt.Errorf("%w: mcp: --listen and --upstream go together\n%s", errUsage, mcpUsage)
	case httpMode && len(command) > 0:
		return fmt.Errorf("%w: mcp: a COMMAND or --listen/--upstream, not both\n%s", errUsage, mcpUsage)
	case !httpMode && len(command) == 0:
		return fmt.Errorf("%w: mcp: name the server to run after --, or --listen and --upstream\n%s", errUsage, mcpUsage)
	}
	cfg, proc, err := startProcess(*cfgPath, func(c *Config) {
		for dst, v := range map[*string]string{&c.Policies: *dir, &c.DecisionLog.File: *logFile, &c.DataDir: *dataDir} {
			if v != "" {
				*dst = v
			}
		}
	}, stderr)
	if err != nil {
		return err
	}
	defer proc.stop()
	logger := proc.Logger
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, appr, closePDP, err := newPDP(ctx, cfg, logger, nil)
	if err != nil {
		return err
	}
	defer closePDP()
	// With reviewers configured (static tokens or OIDC sign-in), the
	// reviewers' API and page run beside the proxy (a desktop user's held
	// calls need somewhere to be approved); the sweeper runs either way.
	if len(cfg.Approvals.Reviewers) == 0 && cfg.Approvals.OIDC == nil {
		cfg.Approvals.Addr = "off"
	}
	comps, closeAPI, err := approvalsComponents(&cfg, appr, logger)
	defer closeAPI()
	if err != nil {
		return err
	}
	bgCtx, stopBg := context.WithCancel(ctx)
	bgDone := make(chan error, 1)
	go func() { bgDone <- runComponents(bgCtx, logger, comps...) }()
	defer func() { stopBg(); <-bgDone }()
	pins, err := mcpproxy.OpenPins(filepath.Join(cfg.DataDir, "mcp-pins.json"))
	if err != nil {
		return err
	}
	name := *server
	if name == "" {
		name = defaultServerName(command, *upstream)
	}
	stateKey, pageURL, err := mcpApprovalOptions(&cfg, logger)
	if err != nil {
		return err
	}
	opts := &mcpproxy.Options{Server: name, Decider: p, Methods: mcpmsg.Spec, CallTimeout: *callTimeout, Pins: pins, Logger: logger,
		Approvals: appr, HoldTimeout: cmp.Or(*holdTimeout, cfg.Approvals.HoldTimeout), StateKey: stateKey, ApprovalURL: pageURL, Stop: ctx.Done()}
	var ident mcpproxy.Identity
	if *agent != "" {
		ident.Agent = pdp.Agent{ID: *agent, Authn: "static"}
	}
	if *user != "" {
		ident.User = pdp.User{ID: *user}
	}

	if !httpMode {
		if *agent == "" {
			return fmt.Errorf("%w: mcp: --agent names the agent behind a stdio server (it has no other way to identify itself)", errUsage)
		}
		logger.Info("serving", "door", "mcp", "transport", "stdio", "server", name, "command", command[0])
		sess := mcpproxy.NewSession("stdio", ident, "stdio", opts, mcpproxy.LineWriter(stdout))
		return mcpproxy.ServeStdio(ctx, stdin, sess, func(fn mcpproxy.ServerMessage) (mcpproxy.Upstream, error) {
			return mcpproxy.StartStdio(mcpproxy.Command{Path: command[0], Args: command[1:], Inherit: inherit}, fn, logger)
		})
	}
	h, err := mcpproxy.NewHTTPHandler(mcpproxy.HTTPConfig{
		Listen: *listen, Upstream: mcpproxy.UpstreamConfig{URL: *upstream, SSE: *upstreamSSE, Stateful: *upstreamStateful, Stateless: *upstreamStateless},
		StaticIdentity: staticIdentity(ident),
	}, opts)
	if err != nil {
		return err
	}
	defer h.Close()
	return mcpproxy.ListenAndServe(ctx, *listen, h, logger)
}

func staticIdentity(id mcpproxy.Identity) *mcpproxy.Identity {
	if id.Agent.ID == "" {
		return nil
	}
	return &id
}

// defaultServerName is the upstream's name in policies when none is given:
// the command's base name, or the URL's host name.
func defaultServerName(command []string, url string) string {
	if len(command) > 0 {
		return filepath.Base(command[0])
	}
	if u, err := neturl.Parse(url); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "mcp"
}

// newPDP loads the policies, opens the decision log and makes the PDP,
// watching the policy directory; its metrics go to reg (nil: none).
// closeAll releases what it opened.
func newPDP(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*pdp.PDP, *approvals.Service, func(), error) {
	nothing := func() {}
	set, err := loadPolicies(ctx, cfg.Policies)
	if err != nil {
		return nil, nil, nothing, err
	}
	var metrics *pdp.Metrics
	if reg != nil {
		metrics = pdp.NewMetrics(reg)
	}
	dlog, err := openDecisionLog(cfg.DecisionLog, logger)
	if err != nil {
		return nil, nil, nothing, err
	}
	var rec pdp.Recorder
	closeAll := nothing
	if dlog != nil {
		rec = dlog
		closeAll = func() {
			if err := dlog.Close(); err != nil {
				logger.Error("closing decision log", "error", err)
			}
		}
		if reg != nil {
			if err := registerLogMetrics(reg, dlog); err != nil {
				closeAll()
				return nil, nil, nothing, fmt.Errorf("decision log: %w", err)
			}
		}
	}
	// The approvals service logs its transitions on the same chain and
	// holds every approve decision before it is logged.
	appr, err := openApprovals(ctx, &cfg, rec, logger, reg)
	if err != nil {
		closeAll()
		return nil, nil, nothing, err
	}
	closeLog := closeAll
	closeAll = func() {
		if err := appr.Store().Close(); err != nil {
			logger.Error("closing approvals store", "error", err)
		}
		closeLog()
	}
	p := pdp.New(set, pdp.Options{
		Holder:             appr,
		Timeout:            cfg.DecisionTimeout,
		Log:                rec,
		AllowUnknownAgents: cfg.AllowUnknownAgents,
		CountRate:          true,
		Redact:             cfg.DecisionLog.redactPaths(),
		Logger:             logger,
		Metrics:            metrics,
	})
	if cfg.Policies != "" {
		if err := p.Watch(ctx, cfg.Policies, nil); err != nil {
			closeAll()
			return nil, nil, nothing, fmt.Errorf("watching %s: %w", cfg.Policies, err)
		}
	}
	logger.Info("policy loaded", "source", cmp.Or(cfg.Policies, "builtin:policies"), "revision", set.Revision, "files", len(set.Files))
	if len(cfg.Approvals.DefaultApprovers) == 0 {
		for _, r := range set.ApproveRulesWithoutApprovers() {
			logger.Warn("an approve rule names no approvers and approvals.default_approvers is empty: the calls it holds are denied (builtin#no-approvers)", "rule", r)
		}
	}
	if len(set.Files) == 0 {
		// Served anyway: a set being deployed may arrive after the server.
		logger.Warn("no policy files: every call is denied (default deny) until some arrive", "dir", cfg.Policies)
	}
	return p, appr, closeAll, nil
}
