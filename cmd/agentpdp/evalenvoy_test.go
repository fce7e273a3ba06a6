package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A CheckRequest in proto JSON, as Envoy sends it: the planner (allowed to
// act alone by the examples) calls a GitHub tool over MCP.
const plannerCheck = `{"attributes": {
  "source": {"address": {"socketAddress": {"address": "10.0.0.7", "portValue": 44000}}, "principal": "spiffe://example.org/agent/planner"},
  "request": {"http": {"id": "r-1", "method": "POST", "path": "/mcp", "host": "mcp.internal",
    "headers": {"content-type": "application/json"},
    "body": "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"create_issue\",\"arguments\":{\"repo\":\"example/shop\",\"title\":\"t\"}}}"}},
  "contextExtensions": {"server": "github"}}}`

func TestEvalEnvoyCheckRequest(t *testing.T) {
	code, out, errs := run(t, plannerCheck, "eval", "--envoy", "--explain", "-")
	if code != 0 || !strings.HasPrefix(out, "effect: allow\n") || !strings.Contains(out, "envoy: forwards the request upstream\n  set    x-agentpdp-decision-id: ") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}

	// Plain HTTP is allowed by no example rule: Envoy answers 403 itself,
	// with the JSON body naming the rules.
	get := `{"attributes": {"source": {"principal": "spiffe://example.org/agent/planner"},
	  "request": {"http": {"method": "GET", "path": "/status?x=1", "host": "api.internal"}}}}`
	code, out, errs = run(t, get, "eval", "--envoy", "-")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	var res struct {
		Input struct {
			Action struct {
				Kind string
				HTTP struct {
					Path  string
					Query map[string][]string
				} `json:"http"`
			}
		}
		Decision struct{ Effect string }
		Answer   struct {
			DeniedResponse struct {
				Status struct{ Code string }
				Body   string
			}
		} `json:"envoy_answer"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Input.Action.Kind != "http" || res.Input.Action.HTTP.Path != "/status" || res.Input.Action.HTTP.Query["x"][0] != "1" ||
		res.Decision.Effect != "deny" || res.Answer.DeniedResponse.Status.Code != "Forbidden" || !strings.Contains(res.Answer.DeniedResponse.Body, `"effect":"deny"`) {
		t.Fatalf("unexpected: %+v\n%s", res, out)
	}
}

func TestEvalEnvoyErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"attributes": {"request": 7}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(t, "", "eval", "--envoy", bad); code != 1 || !strings.Contains(errs, bad+": not an Envoy CheckRequest") {
		t.Errorf("exit %d: %s", code, errs)
	}
	if code, _, errs := run(t, "", "eval", "--config", bad, "x.json"); code != 2 || !strings.Contains(errs, "eval --config goes with --envoy") {
		t.Errorf("exit %d: %s", code, errs)
	}
	// A request the door cannot map is refused, and eval shows the refusal.
	code, out, errs := run(t, `{"attributes": {"request": {"http": {"method": "GET", "path": "/", "headers": {"content-type": "application/json"}, "body": "{not json"}}}}`, "eval", "--envoy", "--explain", "-")
	if code != 0 || !strings.Contains(out, "effect: deny") || !strings.Contains(out, "envoy: answers 400 itself") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
}

// policies/examples/check.json, the README's CheckRequest, is decided by
// the built-in examples: held for the platform team.
func TestEvalEnvoyExampleCheck(t *testing.T) {
	file := filepath.Join("..", "..", "policies", "examples", "check.json")
	code, out, errs := run(t, "", "eval", "--envoy", "--explain", file)
	if code != 0 || !strings.HasPrefix(out, "effect: approve\n") ||
		!strings.Contains(out, "prod.rego#approve:inventory-requires-approval") ||
		!strings.Contains(out, "envoy: answers 403 itself\n") || !strings.Contains(out, `"status":"approval_pending"`) {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	// The door read the user from jwt_authn's metadata and the agent from
	// the peer, as Envoy hands them over.
	code, out, errs = run(t, "", "eval", "--envoy", file)
	var res struct {
		Input struct {
			Agent struct{ ID, Authn string }
			User  struct{ ID string }
		}
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil ||
		res.Input.Agent.ID != "spiffe://example.org/agent/code-reviewer" || res.Input.Agent.Authn != "mtls" || res.Input.User.ID != "alice@example.com" {
		t.Fatalf("exit %d, %v: %+v\n%s", code, err, res, errs)
	}
}

func TestEvalAddrErrors(t *testing.T) {
	file := filepath.Join("..", "..", "policies", "examples", "check.json")
	for _, args := range [][]string{
		{"eval", "--addr", "127.0.0.1:1", file},
		{"eval", "--envoy", "--addr", "127.0.0.1:1", "--policies", "x", file},
		{"eval", "--envoy", "--addr", "127.0.0.1:1", "--config", "x", file},
	} {
		if code, _, errs := run(t, "", args...); code != 2 || !strings.Contains(errs, "eval --addr goes with --envoy") {
			t.Errorf("%v: exit %d: %s", args, code, errs)
		}
	}
	// Nothing listens there: one line naming the address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, out, errs := run(t, "", "eval", "--envoy", "--addr", addr, "--timeout", "200ms", file)
	if code != 1 || out != "" || !strings.HasPrefix(errs, "agentpdp: asking "+addr+": ") || strings.Count(errs, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
