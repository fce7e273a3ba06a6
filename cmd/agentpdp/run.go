package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/agentpdp/agentpdp/envoyauthz"
	"github.com/agentpdp/agentpdp/mcpproxy"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/decisionlog"
)

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("run")
	cfgPath := fs.String("config", "", "config file (agentpdp.yaml)")
	dir := fs.String("policies", "", "policy directory (default: built-in examples)")
	envoyAddr := fs.String("envoy-addr", "", "ext_authz gRPC listen address (host:port or unix:///path)")
	adminAddr := fs.String("admin-addr", "", "admin listen address for /metrics, /healthz, /readyz")
	logFile := fs.String("decision-log", "", `decision log file ("off" to disable)`)
	dataDir := fs.String("data-dir", "", "data directory: the decision log is DIR/decisions.log unless set on its own (default ./agentpdp-data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: run takes no arguments", errUsage)
	}
	cfg, logger, err := startProcess(*cfgPath, func(c *Config) {
		for dst, v := range map[*string]string{&c.Policies: *dir, &c.Envoy.Addr: *envoyAddr, &c.Admin.Addr: *adminAddr, &c.DecisionLog.File: *logFile, &c.DataDir: *dataDir} {
			if v != "" {
				*dst = v
			}
		}
	}, stderr)
	if err != nil {
		return err
	}
	defer logger.stop()

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, logger.Logger)
}

// procLogger is the process's logger, and what stops its runtime settings.
type procLogger struct {
	*slog.Logger
	stop func()
}

// startProcess loads the config (file, AGENTPDP_* variables, then the
// flags, which flags applies), makes the JSON logger on
// stderr (never stdout: it may be a protocol channel), and applies the
// process's runtime settings: max_procs and the GC heap floor (an
// operator's GOMAXPROCS and GOGC win).
func startProcess(cfgPath string, flags func(*Config), stderr io.Writer) (Config, procLogger, error) {
	if cfgPath == "" {
		cfgPath = os.Getenv("AGENTPDP_CONFIG")
	}
	cfg, err := loadConfig(cfgPath, os.Getenv)
	if err != nil {
		return cfg, procLogger{}, err
	}
	flags(&cfg)
	if err := cfg.finish(); err != nil {
		return cfg, procLogger{}, err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	procs, from := setProcs(cfg.MaxProcs, os.Getenv)
	logger.Info("scheduler", "gomaxprocs", procs, "from", from, "cpus", runtime.NumCPU())
	stop := func() {}
	if cfg.GCHeapFloorMB > 0 && os.Getenv("GOGC") == "" {
		stop = startHeapFloor(uint64(cfg.GCHeapFloorMB) << 20)
	}
	return cfg, procLogger{logger, stop}, nil
}

// serve runs until ctx ends or one of its components stops. Everything
// that can fail before serving (policy, decision log, listeners) fails
// first, naming what it was setting up.
func serve(ctx context.Context, cfg Config, logger *slog.Logger) error {
	comps, closeAll, err := setup(ctx, cfg, logger)
	defer closeAll()
	if err != nil {
		return err
	}
	return runComponents(ctx, logger, comps...)
}

// setup loads policy, opens the decision log and the listeners of the
// admin server and every configured door, and returns what serve runs.
// closeAll, never nil, releases what setup opened, newest first; serve
// calls it once every component has returned.
func setup(ctx context.Context, cfg Config, logger *slog.Logger) (comps []component, closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p, appr, closePDP, err := newPDP(ctx, cfg, logger, reg)
	if err != nil {
		return nil, closeAll, err
	}
	closers = append(closers, closePDP)
	apprComps, closeAPI, err := approvalsComponents(&cfg, appr, logger) // before the Envoy door: it sets its status URL base
	closers = append(closers, closeAPI)
	if err != nil {
		return nil, closeAll, err
	}
	comps = append(comps, apprComps...)

	// Serve closes its listener; closing it here too covers a later setup
	// failure, which must not leave a door's Unix socket file behind.
	if cfg.envoyEnabled() {
		srv, err := envoyauthz.New(cfg.Envoy.Config, p, reg, logger)
		if err != nil {
			return nil, closeAll, fmt.Errorf("envoy: %w", err)
		}
		closers = append(closers, srv.Close) // stops the JWKS refresher
		lis, err := envoyauthz.Listen(cfg.Envoy.Addr)
		if err != nil {
			return nil, closeAll, fmt.Errorf("envoy: %w", err)
		}
		closers = append(closers, func() { _ = lis.Close() })
		logger.Info("serving", "door", "envoy", "addr", envoyauthz.ListenerAddr(lis))
		comps = append(comps, component{"envoy", func(ctx context.Context) error { return srv.Serve(ctx, lis) }})
	}

	if len(cfg.MCP.Upstreams) > 0 {
		door, err := newMCPDoor(&cfg, p, appr, logger)
		if err != nil {
			return nil, closeAll, err
		}
		closers = append(closers, door.close) // ends sessions, stops stdio servers
		logger.Info("serving", "door", "mcp", "addr", door.lis.Addr().String(), "upstreams", len(cfg.MCP.Upstreams))
		comps = append(comps, component{"mcp", door.serve})
	}

	if cfg.Admin.Addr != "" && cfg.Admin.Addr != "off" {
		lis, err := net.Listen("tcp", cfg.Admin.Addr)
		if err != nil {
			return nil, closeAll, fmt.Errorf("admin: %w", err)
		}
		closers = append(closers, func() { _ = lis.Close() })
		hs := &http.Server{Handler: adminHandler(reg, p, cfg.Admin.Pprof), ReadHeaderTimeout: 5 * time.Second}
		logger.Info("serving", "listener", "admin", "addr", lis.Addr().String())
		comps = append(comps, httpComponent("admin", hs, lis))
	}
	return comps, closeAll, nil
}

// component is one part of the running process: a door, the admin server.
// serve runs until ctx ends, then drains and returns nil (or what went
// wrong draining). Returning while ctx is live, even with nil, stops the
// whole process: a half-up PDP would look healthy to whoever probes the
// parts still running.
type component struct {
	name  string
	serve func(ctx context.Context) error
}

var errStoppedEarly = errors.New("stopped unexpectedly")

// runComponents runs comps until ctx ends or one of them stops, which
// cancels the others. It returns once all have returned: nil if ctx ended
// first, else the first one's error prefixed with its name.
func runComponents(ctx context.Context, logger *slog.Logger, comps ...component) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range comps {
		g.Go(func() error {
			err := c.serve(gctx)
			if gctx.Err() == nil { // it stopped on its own
				if err == nil {
					err = errStoppedEarly
				}
				err = fmt.Errorf("%s: %w", c.name, err)
				logger.Error("stopping", "error", err)
				return err
			}
			// Told to stop, by ctx or by another component's failure (the
			// one reported): a drain error is only worth a line.
			if err != nil && !errors.Is(err, context.Canceled) {
				logger.Warn("draining", "component", c.name, "error", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil {
			logger.Info("shutting down")
		}
		return nil
	})
	return g.Wait()
}

// httpComponent serves hs on lis under name (the admin server, the
// approvals API). When ctx ends it shuts hs down, letting requests in
// flight finish for at most 5 s (mcpproxy.ServeAndDrain); a drain cut
// short is reported.
func httpComponent(name string, hs *http.Server, lis net.Listener) component {
	return component{name, func(ctx context.Context) error { return mcpproxy.ServeAndDrain(ctx, hs, lis) }}
}

func openDecisionLog(c LogConfig, logger *slog.Logger) (*decisionlog.Log, error) {
	var sinks []decisionlog.Sink
	if c.File != "" && c.File != "off" {
		fsink, err := decisionlog.NewFileSink(c.File, c.MaxSizeMB<<20, c.MaxBackups)
		if err != nil {
			return nil, fmt.Errorf("decision log: %w", err)
		}
		sinks = append(sinks, fsink)
	}
	if c.Stdout {
		sinks = append(sinks, decisionlog.NewWriterSink(os.Stdout))
	}
	if c.HTTPURL != "" {
		sinks = append(sinks, decisionlog.NewHTTPSink(c.HTTPURL, decisionlog.HTTPOptions{}))
	}
	if len(sinks) == 0 {
		logger.Warn("decision log is off: decisions are not recorded")
		return nil, nil
	}
	ck, err := checkpointOptions(c, logger)
	if err != nil {
		return nil, err
	}
	return decisionlog.New(decisionlog.Options{FsyncInterval: c.FsyncInterval, Logger: logger, Checkpoints: ck}, sinks...)
}

// adminHandler serves /metrics, /healthz (the process is up) and /readyz
// (a policy revision is loaded; doors listen before the admin port opens).
func adminHandler(reg *prometheus.Registry, p *pdp.PDP, profiling bool) http.Handler {
	mux := http.NewServeMux()
	if profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		set := p.PolicySet()
		if set == nil {
			http.Error(w, "no policy loaded", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok %s\n", set.Revision)
	})
	return mux
}
