package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentpdp/agentpdp/envoyauthz"
	"github.com/agentpdp/agentpdp/pdp"
)

// Config is agentpdp.yaml. Every field has a default; AGENTPDP_* variables
// and flags override the file. Unknown keys are an error.
type Config struct {
	// Policies is the policy directory; empty serves the built-in examples.
	Policies string `yaml:"policies"`
	// DataDir holds the decision log, the approval store (SQLite) and
	// the tool-definition pins.
	DataDir            string        `yaml:"data_dir"`
	DecisionTimeout    time.Duration `yaml:"decision_timeout"`
	AllowUnknownAgents bool          `yaml:"allow_unknown_agents"`
	LogLevel           string        `yaml:"log_level"`
	// GCHeapFloorMB keeps the GC's heap goal at least this large (see
	// heapFloor); 0 leaves Go's default. Ignored when GOGC is set.
	GCHeapFloorMB int64 `yaml:"gc_heap_floor_mb"`
	// MaxProcs is GOMAXPROCS for run; 0 is half the CPUs (see autoProcs).
	// Ignored when GOMAXPROCS is set.
	MaxProcs    int         `yaml:"max_procs"`
	DecisionLog LogConfig   `yaml:"decision_log"`
	Admin       AdminConfig `yaml:"admin"`
	Envoy       EnvoyConfig `yaml:"envoy"`
	// MCP is the MCP door, served when it names upstreams.
	MCP MCPConfig `yaml:"mcp"`
	// Approvals hold calls that need a person's approval.
	Approvals ApprovalsConfig `yaml:"approvals"`
}

// LogConfig is the decision log.
type LogConfig struct {
	// File is the log's path; default <data_dir>/decisions.log. "off"
	// disables the file sink.
	File          string        `yaml:"file"`
	MaxSizeMB     int64         `yaml:"max_size_mb"`
	MaxBackups    int           `yaml:"max_backups"`
	Stdout        bool          `yaml:"stdout"`
	HTTPURL       string        `yaml:"http_url"`
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// Redact lists dotted input paths replaced by [REDACTED] when logged,
	// added to the built-in credential headers.
	Redact []string `yaml:"redact"`
	// Checkpoints of the file's head (see finishCheckpoints): every
	// CheckpointEvery records, every CheckpointInterval, and at shutdown.
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// CheckpointFile defaults to <file>.checkpoints; "off" disables them.
	CheckpointFile string `yaml:"checkpoint_file"`
	// CheckpointKeyFile is the Ed25519 key signing them, outside data_dir.
	CheckpointKeyFile string `yaml:"checkpoint_key_file"`
}

// redactPaths are what the log redacts, and the reviewers' summaries
// with it: the credential headers and the configured paths.
func (c *LogConfig) redactPaths() []string {
	return append(append([]string{}, pdp.DefaultRedact...), c.Redact...)
}

// AdminConfig is the listener for /metrics, /healthz and /readyz.
type AdminConfig struct {
	Addr string `yaml:"addr"`
	// Pprof mounts Go's /debug/pprof/ handlers: off by default, since
	// profiles reveal memory contents to whoever reaches the port.
	Pprof bool `yaml:"pprof"`
}

// EnvoyConfig turns the ext_authz door on or off around its own settings.
type EnvoyConfig struct {
	Enabled           *bool `yaml:"enabled"`
	envoyauthz.Config `yaml:",inline"`
}

func defaultConfig() Config {
	return Config{
		DataDir:         "agentpdp-data",
		DecisionTimeout: 100 * time.Millisecond,
		LogLevel:        "info",
		GCHeapFloorMB:   16,
		DecisionLog:     LogConfig{MaxSizeMB: 100, MaxBackups: 10, FsyncInterval: 200 * time.Millisecond, CheckpointEvery: 1000, CheckpointInterval: 10 * time.Second},
		Admin:           AdminConfig{Addr: "127.0.0.1:9090"},
		MCP:             MCPConfig{Addr: defaultMCPAddr, CallTimeout: 2 * time.Minute, IdleTimeout: 30 * time.Minute},
	}
}

// loadConfig reads path (if any) over the defaults, then the environment.
func loadConfig(path string, env func(string) string) (Config, error) {
	cfg := defaultConfig()
	if path != "" {
		src, err := os.ReadFile(path)
		if err != nil {
			return cfg, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(src))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, pdp.LocateYAMLError(path, src, err)
		}
		// Relative paths in the file are relative to the file.
		base := filepath.Dir(path)
		paths := []*string{&cfg.Policies, &cfg.DataDir, &cfg.DecisionLog.File,
			&cfg.Envoy.JWT.HMACSecretFile, &cfg.Envoy.JWT.JWKSFile,
			&cfg.Envoy.TLS.CertFile, &cfg.Envoy.TLS.KeyFile, &cfg.Envoy.TLS.ClientCAFile,
			&cfg.DecisionLog.CheckpointFile, &cfg.DecisionLog.CheckpointKeyFile, &cfg.Approvals.SQLitePath, &cfg.Approvals.RequestStateKeyFile,
			&cfg.Approvals.SessionKeyFile, oidcSecretFile(&cfg)}
		for i := range cfg.Approvals.Webhooks {
			paths = append(paths, &cfg.Approvals.Webhooks[i].SecretFile)
		}
		for _, p := range paths {
			if *p != "" && *p != "off" && !filepath.IsAbs(*p) {
				*p = filepath.Join(base, *p)
			}
		}
	}
	overrides := []struct {
		name string
		set  func(string) error
	}{
		{"AGENTPDP_POLICIES", func(v string) error { cfg.Policies = v; return nil }},
		{"AGENTPDP_DATA_DIR", func(v string) error { cfg.DataDir = v; return nil }},
		{"AGENTPDP_DECISION_LOG", func(v string) error { cfg.DecisionLog.File = v; return nil }},
		{"AGENTPDP_ADMIN_ADDR", func(v string) error { cfg.Admin.Addr = v; return nil }},
		{"AGENTPDP_ENVOY_ADDR", func(v string) error { cfg.Envoy.Addr = v; return nil }},
		{"AGENTPDP_MCP_ADDR", func(v string) error { cfg.MCP.Addr = v; return nil }},
		{"AGENTPDP_APPROVALS_ADDR", func(v string) error { cfg.Approvals.Addr = v; return nil }},
		{"AGENTPDP_APPROVALS_POSTGRES_DSN", func(v string) error { cfg.Approvals.PostgresDSN = v; return nil }},
		{"AGENTPDP_LOG_LEVEL", func(v string) error { cfg.LogLevel = v; return nil }},
		{"AGENTPDP_DECISION_TIMEOUT", func(v string) (err error) { cfg.DecisionTimeout, err = time.ParseDuration(v); return }},
		{"AGENTPDP_GC_HEAP_FLOOR_MB", func(v string) (err error) { cfg.GCHeapFloorMB, err = strconv.ParseInt(v, 10, 64); return }},
		{"AGENTPDP_MAX_PROCS", func(v string) (err error) { cfg.MaxProcs, err = strconv.Atoi(v); return }},
		{"AGENTPDP_ALLOW_UNKNOWN_AGENTS", func(v string) (err error) { cfg.AllowUnknownAgents, err = strconv.ParseBool(v); return }},
	}
	for _, o := range overrides {
		if v := env(o.name); v != "" {
			if err := o.set(v); err != nil {
				return cfg, fmt.Errorf("%s=%q: %w", o.name, v, err)
			}
		}
	}
	return cfg, nil
}

// oidcSecretFile is where approvals.oidc's secret file name is, if any.
func oidcSecretFile(cfg *Config) *string {
	if cfg.Approvals.OIDC == nil {
		return new(string)
	}
	return &cfg.Approvals.OIDC.ClientSecretFile
}

// finish fills derived defaults and checks the result.
func (c *Config) finish() error {
	if c.DecisionLog.File == "" {
		c.DecisionLog.File = filepath.Join(c.DataDir, "decisions.log")
	}
	if err := c.DecisionLog.finishCheckpoints(c.DataDir); err != nil {
		return err
	}
	if c.DecisionTimeout <= 0 {
		return fmt.Errorf("decision_timeout must be positive, not %s", c.DecisionTimeout)
	}
	if c.GCHeapFloorMB < 0 || c.GCHeapFloorMB > 1<<20 {
		return fmt.Errorf("gc_heap_floor_mb must be between 0 and %d, not %d", 1<<20, c.GCHeapFloorMB)
	}
	if c.MaxProcs < 0 || c.MaxProcs > 1024 {
		return fmt.Errorf("max_procs must be between 0 (half the CPUs) and 1024, not %d", c.MaxProcs)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q is not debug, info, warn or error", c.LogLevel)
	}
	c.Envoy.Defaults()
	if err := c.Approvals.finish(c.DataDir); err != nil {
		return err
	}
	if c.MCP.CallTimeout <= 0 || c.MCP.IdleTimeout <= 0 {
		return errors.New("mcp.call_timeout and mcp.idle_timeout must be positive")
	}
	return c.MCP.validate()
}

func (c *Config) envoyEnabled() bool { return c.Envoy.Enabled == nil || *c.Envoy.Enabled }
