// Command agentpdp is the policy decision point for AI agents' tool calls.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/policies"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `agentpdp decides, for every tool call an AI agent makes, whether it runs,
is refused, or waits for a human.

Usage:
  agentpdp run     [--config FILE] [--policies DIR] [--data-dir DIR]
                                                      serve the doors (built-in examples if no DIR)
  agentpdp mcp     [flags] -- COMMAND [ARGS...]       the MCP proxy in front of one stdio server
  agentpdp mcp     [flags] --listen ADDR --upstream URL   ... or one Streamable HTTP server
  agentpdp eval    [--policies DIR] [--explain] [FILE|-]   decide one input document
  agentpdp eval    --envoy [--config FILE] [--policies DIR] [--explain] [FILE|-]
                                                      decide one Envoy CheckRequest (proto JSON)
                                                      as the ext_authz door would
  agentpdp eval    --envoy --addr HOST:PORT [--explain] [FILE|-]
                                                      send it to a running agentpdp's door instead
  agentpdp test    [-v] [DIR]                          run a policy set's tests
  agentpdp check   [DIR]                               validate a policy set
  agentpdp audit verify [--log PATH | FILE...] [--checkpoints FILE] [--public-key FILE]
                                                      verify a decision log's hash chain (files in any
                                                      order) and that it reaches its checkpoints
                                                      (audit keygen --out FILE: a key to sign them)
  agentpdp approvals list|show|approve|deny [ID] [--comment TEXT]
                                                      review held calls (token: $AGENTPDP_REVIEWER_TOKEN)
  agentpdp approvals hash-token [--new | TOKEN]       token_sha256 for approvals.reviewers
  agentpdp version

With no DIR, eval, test and check use the built-in example policies.
agentpdp CMD -h shows CMD's flags.
`

func main() {
	os.Exit(runMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// errUsage marks errors that come with the usage text.
var errUsage = errors.New("usage")

// runMain is main without the process: tests call it directly.
func runMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if fwd, ok := commandHelp(args); ok {
		args = fwd
	}
	var err error
	code := 0
	switch args[0] {
	case "run", "serve":
		err = cmdRun(ctx, args[1:], stderr)
	case "mcp":
		err = cmdMCP(ctx, args[1:], stdin, stdout, stderr)
	case "eval":
		err = cmdEval(ctx, args[1:], stdin, stdout)
	case "test":
		code, err = cmdTest(ctx, args[1:], stdout)
	case "check":
		err = cmdCheck(ctx, args[1:], stdout)
	case "audit":
		err = cmdAudit(args[1:], stdout)
	case "approvals":
		err = cmdApprovals(ctx, args[1:], stdin, stdout)
	case "version", "--version", "-v":
		if len(args) > 1 && isHelpArg(args[1]) {
			printHelp(stdout, newFlags("version"))
			return 0
		}
		fmt.Fprintln(stdout, "agentpdp", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	switch {
	case err == nil:
		return code
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "agentpdp: %v\n\n%s", err, usage)
		return 2
	case errors.Is(err, flag.ErrHelp):
		if fs, ok := asHelp(err); ok {
			printHelp(stdout, fs)
		}
		return 0
	}
	fmt.Fprintf(stderr, "agentpdp: %v\n", err)
	return 1
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpRequest{fs}
		}
		return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
	}
	return nil
}

// loadPolicies loads dir, or the built-in examples when dir is empty.
func loadPolicies(ctx context.Context, dir string) (*pdp.PolicySet, error) {
	if dir == "" {
		return pdp.LoadFS(ctx, policies.FS, "builtin:policies")
	}
	return pdp.LoadDir(ctx, dir)
}

func cmdEval(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlags("eval")
	dir := fs.String("policies", "", "policy directory (default: built-in examples)")
	explain := fs.Bool("explain", false, "print which rules fired and why the effect won")
	timeout := fs.Duration("timeout", time.Second, "evaluation timeout (with --addr: the whole call)")
	envoy := fs.Bool("envoy", false, "the input is an Envoy CheckRequest in proto JSON: map it as the ext_authz door does")
	cfgPath := fs.String("config", "", "with --envoy: take the envoy section (JWT, limits) and policies from this config")
	addr := fs.String("addr", "", "with --envoy: send the CheckRequest to the ext_authz door of a running agentpdp (host:port or unix:///path, plaintext) and print its answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath != "" && !*envoy {
		return fmt.Errorf("%w: eval --config goes with --envoy", errUsage)
	}
	if *addr != "" && (!*envoy || *cfgPath != "" || *dir != "") {
		return fmt.Errorf("%w: eval --addr goes with --envoy, and the running server's config and policies decide", errUsage)
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("%w: eval takes one input file", errUsage)
	}
	name := "-"
	if fs.NArg() == 1 {
		name = fs.Arg(0)
	}
	var src []byte
	var err error
	if name == "-" {
		src, err = io.ReadAll(stdin)
	} else {
		src, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}
	if *addr != "" {
		return askEnvoy(ctx, src, name, *addr, *timeout, *explain, stdout)
	}
	if *envoy {
		cfg, err := loadConfig(*cfgPath, func(string) string { return "" })
		if err != nil {
			return err
		}
		if *dir == "" {
			*dir = cfg.Policies
		}
		set, err := loadPolicies(ctx, *dir)
		if err != nil {
			return err
		}
		p := pdp.New(set, pdp.Options{Timeout: *timeout})
		return evalEnvoy(ctx, src, name, p, cfg.Envoy.Config, *explain, stdout)
	}
	in, err := pdp.DecodeInput(src)
	if err != nil {
		var se pdp.SourceError
		if errors.As(err, &se) {
			se.File = name
			return se
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	set, err := loadPolicies(ctx, *dir)
	if err != nil {
		return err
	}
	d := pdp.New(set, pdp.Options{Timeout: *timeout}).Decide(ctx, in)
	if *explain {
		_, err = io.WriteString(stdout, pdp.Explain(d))
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

func cmdTest(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("test")
	verbose := fs.Bool("v", false, "list every test, not just failures")
	if err := parseFlags(fs, args); err != nil {
		return 1, err
	}
	if fs.NArg() > 1 {
		return 1, fmt.Errorf("%w: test takes one directory", errUsage)
	}
	set, err := loadPolicies(ctx, fs.Arg(0))
	if err != nil {
		return 1, err
	}
	res, err := pdp.RunTests(ctx, set)
	if err != nil {
		return 1, err
	}
	passed, failed := 0, 0
	for _, r := range res {
		if r.Pass {
			passed++
			if *verbose {
				fmt.Fprintf(stdout, "PASS %s (%s)\n", r.Name, r.Duration.Round(time.Microsecond))
			}
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL %s\n", r.Name)
		for _, l := range strings.Split(strings.TrimRight(r.Detail, "\n"), "\n") {
			fmt.Fprintf(stdout, "     %s\n", l)
		}
	}
	if len(res) == 0 {
		fmt.Fprintln(stdout, "no tests found")
		return 1, nil
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1, nil
	}
	return 0, nil
}

func cmdCheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("check")
	cfgPath := fs.String("config", "", "config file (agentpdp.yaml), for approvals.default_approvers")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("%w: check takes one directory", errUsage)
	}
	var defaults []string
	if *cfgPath != "" {
		cfg, err := loadConfig(*cfgPath, os.Getenv)
		if err != nil {
			return err
		}
		defaults = cfg.Approvals.DefaultApprovers
	}
	set, err := loadPolicies(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if len(set.Files) == 0 {
		// Valid but denies everything: most likely the wrong directory.
		return fmt.Errorf("no policy files in %s", fs.Arg(0))
	}
	fmt.Fprintf(stdout, "ok: %d files, %d tests, revision %s\n", len(set.Files), len(set.Tests), set.Revision)
	if len(defaults) == 0 {
		for _, r := range set.ApproveRulesWithoutApprovers() {
			fmt.Fprintf(stdout, "warning: %s holds calls but names no approvers, and approvals.default_approvers is empty: those calls are denied (builtin#no-approvers)\n", r)
		}
	}
	return nil
}

func cmdAudit(args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "keygen" {
		return cmdAuditKeygen(args[1:], stdout)
	}
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: audit verify [--log PATH | FILE...] | audit keygen --out FILE", errUsage)
	}
	return cmdAuditVerify(args[1:], stdout)
}
