package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// synopses are what `agentpdp CMD -h` prints above CMD's flags, keyed by
// the FlagSet's name. A command missing here still gets its flags.
var synopses = map[string]string{
	"run": `agentpdp run [--config FILE] [--policies DIR] [--data-dir DIR] [--envoy-addr ADDR] [--admin-addr ADDR] [--decision-log FILE]

Serve the doors until SIGINT or SIGTERM: Envoy ext_authz on 127.0.0.1:9191,
/metrics /healthz /readyz on 127.0.0.1:9090, the reviewers' approvals API
and page on 127.0.0.1:9494, the decision log in DATA_DIR/decisions.log and
held calls in DATA_DIR/approvals.db (default ./agentpdp-data). Flags override the config
file and AGENTPDP_* variables. With no policy directory it serves the
built-in example policies.`,
	"eval": `agentpdp eval [--policies DIR] [--explain] [FILE|-]
       agentpdp eval --envoy [--config FILE] [--policies DIR] [--explain] [--addr ADDR] [FILE|-]

Decide one input document (JSON), or with --envoy one Envoy CheckRequest
(proto JSON) as the ext_authz door would. With --addr the CheckRequest is
sent to a running agentpdp's ext_authz door instead and its answer printed.
Nothing is logged locally.`,
	"mcp": `agentpdp mcp [flags] -- COMMAND [ARGS...]
       agentpdp mcp [flags] --listen HOST:PORT --upstream URL [--upstream-sse]

The MCP proxy on its own: in front of one stdio server (stdio on both
sides, as a desktop client runs a server), or in front of one HTTP server
(Streamable HTTP at /mcp, legacy SSE at /mcp/sse). Every request is
decided; refused tool calls are answered with the reason. Logs go to
stderr, decisions to DATA_DIR/decisions.log.`,
	"test": `agentpdp test [-v] [DIR]

Run a policy set's tests (*_test.rego, *_test.yaml): "N passed, N failed".`,
	"check": `agentpdp check [--config FILE] [DIR]

Validate a policy set; errors as file:line:col. Warns about approve rules
that name no approvers when the config's approvals.default_approvers is
empty (the calls they hold would be denied).`,
	"audit verify": `agentpdp audit verify [--log PATH | FILE...] [--checkpoints FILE] [--head SEQ:HASH] [--public-key FILE]

Verify a decision log's hash chain, its files in any order. With
checkpoints, also that no records are missing at either end.`,
	"audit keygen": `agentpdp audit keygen --out FILE

Create an Ed25519 key that signs decision log checkpoints (FILE, for
decision_log.checkpoint_key_file) and its public key (FILE.pub, for
audit verify --public-key).`,
	"approvals list": `agentpdp approvals list [--state S] [--agent A] [--user U] [--json]
       agentpdp approvals show|approve|deny ID [--comment TEXT]
       agentpdp approvals hash-token [--new | TOKEN]

Review held calls through the approvals API (--server,
$AGENTPDP_APPROVALS_URL, or http://127.0.0.1:9494) as the reviewer whose
token is in $AGENTPDP_REVIEWER_TOKEN or --token-file. list shows pending
approvals; approve and deny bind the verdict to the call shown (its
digest). hash-token prints the token_sha256 for approvals.reviewers.`,
	"version": `agentpdp version

Print the version.`,
}

// helpRequest is -h or --help on a subcommand: runMain prints fs's usage
// to stdout and exits 0.
type helpRequest struct{ fs *flag.FlagSet }

func (h helpRequest) Error() string { return "help requested" }

// Unwrap keeps errors.Is(err, flag.ErrHelp) true.
func (h helpRequest) Unwrap() error { return flag.ErrHelp }

func isHelpArg(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// printHelp writes the synopsis of fs's command and its flags.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	syn, ok := synopses[fs.Name()]
	if !ok {
		syn = "agentpdp " + fs.Name() + " [flags]"
	}
	fmt.Fprintf(w, "Usage: %s\n", syn)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprint(w, "\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// commandHelp answers the help forms flag parsing cannot see: `help CMD`,
// `audit -h` and `version -h`. ok is false when args ask for none.
func commandHelp(args []string) (forward []string, ok bool) {
	switch {
	case len(args) == 2 && args[0] == "help":
		switch args[1] {
		case "audit":
			return []string{"audit", "verify", "-h"}, true
		case "approvals":
			return []string{"approvals", "list", "-h"}, true
		}
		return []string{args[1], "-h"}, true
	case len(args) >= 2 && args[0] == "audit" && isHelpArg(args[1]):
		return []string{"audit", "verify", "-h"}, true
	case len(args) >= 2 && args[0] == "approvals" && isHelpArg(args[1]):
		return []string{"approvals", "list", "-h"}, true
	}
	return nil, false
}

// asHelp reports the FlagSet whose help err asks for.
func asHelp(err error) (*flag.FlagSet, bool) {
	var h helpRequest
	if errors.As(err, &h) {
		return h.fs, true
	}
	return nil, false
}
