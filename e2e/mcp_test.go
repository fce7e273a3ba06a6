package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The MCP door with real peers from npm (e2e/peers): the v1 TypeScript SDK
// client, server-filesystem over stdio and server-everything over
// Streamable HTTP. `make test` installs them; so does the first test that
// needs them.

var peersOnce sync.Once
var peersErr error

// peersDir is e2e/peers with its node_modules installed.
func peersDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("peers")
	must(t, err)
	peersOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-filesystem")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			peersErr = fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
		}
	})
	if peersErr != nil {
		t.Fatal(peersErr)
	}
	return dir
}

// peerServer is the script of the MCP reference server name
// (server-filesystem, server-everything) among the peers in dir.
func peerServer(dir, name string) string {
	return filepath.Join(dir, "node_modules", "@modelcontextprotocol", name, "dist", "index.js")
}

type clientStep map[string]any

// runClient runs the v1 SDK client with plan and returns its step results.
func runClient(t *testing.T, plan map[string]any) []map[string]any {
	t.Helper()
	res, out, stderr := runNodeClient(t, "client-v1.mjs", plan, 2*time.Minute)
	if len(res) == 0 || res[len(res)-1]["op"] != "done" {
		t.Fatalf("the client did not finish: %s\nstderr %s", out, stderr)
	}
	return res
}

// runNodeClient runs a client script of e2e/peers with plan as its
// argument and returns the JSON lines it printed, and its raw output.
func runNodeClient(t *testing.T, script string, plan any, timeout time.Duration) (res []map[string]any, out []byte, stderr string) {
	t.Helper()
	res, out, stderr, err := runNodeClientNoFatal(peersDir(t), script, plan, timeout)
	if err != nil {
		t.Fatalf("%s: %v\nstdout %s\nstderr %s", script, err, out, stderr)
	}
	return res, out, stderr
}

// nodeRun is a client script's outcome: its JSON lines, its output and
// how it exited.
type nodeRun struct {
	res []map[string]any
	out string
	err error
}

// startNodeClient runs a client script in the background (the test acts
// meanwhile, say as the reviewer of the call it holds); the channel gets
// its outcome.
func startNodeClient(t *testing.T, script string, plan any, timeout time.Duration) <-chan nodeRun {
	t.Helper()
	dir := peersDir(t)
	done := make(chan nodeRun, 1)
	go func() {
		res, out, stderr, err := runNodeClientNoFatal(dir, script, plan, timeout)
		done <- nodeRun{res, string(out) + stderr, err}
	}()
	return done
}

// runNodeClientNoFatal is runNodeClient for a goroutine beside the
// test's own: it reports failure instead of ending the test.
func runNodeClientNoFatal(dir, script string, plan any, timeout time.Duration) (res []map[string]any, out []byte, stderr string, err error) {
	js, err := json.Marshal(plan)
	if err != nil {
		return nil, nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, script), string(js))
	cmd.Dir = dir
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err = cmd.Output()
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			res = append(res, m)
		}
	}
	return res, out, errBuf.String(), err
}

// jsonLines parses one JSON object per line (none in an empty b).
func jsonLines(t *testing.T, what string, b []byte) []map[string]any {
	t.Helper()
	var res []map[string]any
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s line %q: %v", what, line, err)
		}
		res = append(res, m)
	}
	return res
}

// text is the concatenated text content of a tool result.
func text(step map[string]any) string {
	res, _ := step["result"].(map[string]any)
	var b strings.Builder
	items, _ := res["content"].([]any)
	for _, c := range items {
		if m, _ := c.(map[string]any); m["type"] == "text" {
			b.WriteString(m["text"].(string))
		}
	}
	return b.String()
}

func isError(step map[string]any) bool {
	res, _ := step["result"].(map[string]any)
	return res["isError"] == true
}

// decisions reads the decision log.
// decisions are the decision log's records, without the approval
// events (which record what reviewers did, not a decision on a call).
func decisions(t *testing.T, file string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range logRecords(t, file) {
		if ev, _ := r["event"].(string); !strings.HasPrefix(ev, "approval.") {
			out = append(out, r)
		}
	}
	return out
}

// logRecords are all of the decision log's records.
func logRecords(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	must(t, err)
	return jsonLines(t, file, b)
}

// fsPolicy: the agent may read anything in the sandbox and write inside
// it; a write elsewhere is denied; a path naming .env or .ssh is held for
// a person; move_file is not allowed at all (so it is not even listed).
func fsPolicy(t *testing.T, sandbox string) string {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "inventory.yaml"), []byte("agents:\n  - id: spiffe://example.org/agent/desk\n    owner_team: platform\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "fs.yaml"), []byte(fmt.Sprintf(`rules:
  - id: session
    effect: allow
    match: action.kind in ["mcp.initialize", "mcp.ping", "mcp.tools/list", "mcp.resources/list", "mcp.prompts/list", "mcp.resources/templates/list"] && !has(action.tool)
    message: session plumbing
  - id: listed
    effect: allow
    match: action.kind == "mcp.tools/list" && has(action.tool) && action.tool != "move_file"
    message: the tool may be shown
  - id: read
    effect: allow
    match: action.kind == "mcp.tools/call" && action.tool in ["read_text_file", "read_file", "list_directory", "list_allowed_directories", "get_file_info"]
    message: reads are fine
  - id: write-in-sandbox
    effect: allow
    match: action.kind == "mcp.tools/call" && action.tool == "write_file" && "path" in action.arguments && string(action.arguments.path).startsWith(%[1]q)
    message: writes inside the sandbox
  - id: write-elsewhere
    effect: deny
    match: action.kind == "mcp.tools/call" && action.tool == "write_file" && !("path" in action.arguments && string(action.arguments.path).startsWith(%[1]q))
    message: writes outside the sandbox are refused
  - id: secrets
    effect: approve
    match: action.kind == "mcp.tools/call" && action.arguments.exists(k, v, type(v) == string && (v.contains(".env") || v.contains(".ssh")))
    message: the path names a secret
    approvers: ["group:security"]
`, sandbox+"/")), 0o644))
	return dir
}

// TestMCPStdioFilesystem: a desktop client's stdio config pointing at
// agentpdp mcp in front of server-filesystem: reads and sandboxed writes
// pass, a write elsewhere is denied and the model is told why, a .env read
// is held and never reaches the server, a tool the agent may not use is
// not even listed; every decision is logged with agent and user, the log
// verifies, and the server process is gone when the client is.
func TestMCPStdioFilesystem(t *testing.T) {
	dir := peersDir(t)
	sandbox := t.TempDir()
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(sandbox, "a.txt"), []byte("hello from the sandbox\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(sandbox, ".env"), []byte("TOKEN=do-not-leak\n"), 0o644))
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	fsServer := peerServer(dir, "server-filesystem")
	res := runClient(t, map[string]any{
		"transport": "stdio", "command": agentpdpBin,
		"args": []string{"mcp", "--policies", fsPolicy(t, sandbox), "--data-dir", t.TempDir(), "--decision-log", logFile, "--hold-timeout", "1s",
			"--agent", "spiffe://example.org/agent/desk", "--user", "alice@example.com", "--server", "fs",
			"--", "node", fsServer, sandbox, outside},
		"steps": []clientStep{
			{"op": "listTools"},
			{"op": "callTool", "name": "read_text_file", "arguments": map[string]any{"path": filepath.Join(sandbox, "a.txt")}},
			{"op": "callTool", "name": "write_file", "arguments": map[string]any{"path": filepath.Join(sandbox, "b.txt"), "content": "written"}},
			{"op": "callTool", "name": "write_file", "arguments": map[string]any{"path": filepath.Join(outside, "c.txt"), "content": "nope"}},
			{"op": "callTool", "name": "read_text_file", "arguments": map[string]any{"path": filepath.Join(sandbox, ".env")}},
			{"op": "callTool", "name": "move_file", "arguments": map[string]any{"source": filepath.Join(sandbox, "a.txt"), "destination": filepath.Join(sandbox, "z.txt")}},
		},
	})
	var tools []string
	for _, tl := range res[0]["result"].(map[string]any)["tools"].([]any) {
		tools = append(tools, tl.(map[string]any)["name"].(string))
	}
	if !strings.Contains(strings.Join(tools, ","), "read_text_file") || strings.Contains(strings.Join(tools, ","), "move_file") {
		t.Errorf("listed tools %v: read_text_file shown, move_file filtered out", tools)
	}
	if got := text(res[1]); isError(res[1]) || got != "hello from the sandbox\n" {
		t.Errorf("read: %v", res[1])
	}
	if b, err := os.ReadFile(filepath.Join(sandbox, "b.txt")); isError(res[2]) || err != nil || string(b) != "written" {
		t.Errorf("sandboxed write: %v (%v %q)", res[2], err, b)
	}
	if _, err := os.Stat(filepath.Join(outside, "c.txt")); !isError(res[3]) || !strings.Contains(text(res[3]), "writes outside the sandbox are refused") || err == nil {
		t.Errorf("write outside the sandbox: %v (file: %v)", res[3], err)
	}
	if got := text(res[4]); !isError(res[4]) || !strings.Contains(got, "waiting for a person") || strings.Contains(got, "do-not-leak") {
		t.Errorf(".env read: %v", res[4])
	}
	if !isError(res[5]) || !strings.Contains(text(res[5]), "agentpdp denied") {
		t.Errorf("move_file: %v", res[5])
	}
	if _, err := os.Stat(filepath.Join(sandbox, "a.txt")); err != nil {
		t.Errorf("the refused move happened: %v", err)
	}

	recs := decisions(t, logFile)
	effects := map[string]int{}
	for _, r := range recs {
		if r["agent"] != "spiffe://example.org/agent/desk" || r["user"] != "alice@example.com" {
			t.Errorf("decision without agent and user: %v", r)
		}
		in := r["input"].(map[string]any)
		act := in["action"].(map[string]any)
		if act["kind"] == "mcp.tools/call" {
			effects[act["tool"].(string)+":"+r["effect"].(string)]++
		}
	}
	for _, want := range []string{"read_text_file:allow", "write_file:allow", "write_file:deny", "read_text_file:approve", "move_file:deny"} {
		if effects[want] != 1 {
			t.Errorf("decision %s logged %d times (%v)", want, effects[want], effects)
		}
	}
	verifyLog(t, logFile)
	// The client is gone, so is agentpdp, so is the server it started.
	if out, _ := exec.Command("pgrep", "-f", fsServer+" "+sandbox).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("server-filesystem still running after the session: pids %s", out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEverything runs server-everything's Streamable HTTP server on
// loopback (its listen() binds every interface; loopback.cjs pins it).
func startEverything(t *testing.T) string {
	t.Helper()
	return startEverythingMode(t, "streamableHttp", "/mcp")
}

// startEverythingMode runs server-everything in mode ("streamableHttp",
// "sse") and returns the URL of path on it.
func startEverythingMode(t *testing.T, mode, path string) string {
	t.Helper()
	dir := peersDir(t)
	port := startNodeServer(t, "server-everything", nil, "-r", filepath.Join(dir, "loopback.cjs"),
		peerServer(dir, "server-everything"), mode)
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
}

// startNodeServer runs `node ARGS` (paths relative to e2e/peers) with
// PORT set to a free port and env, until the test ends (its whole process
// group), and returns the port once the server prints a line naming it.
// Its output is read to the end, so it never blocks on a full pipe.
func startNodeServer(t *testing.T, what string, env []string, args ...string) int {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command("node", args...)
	cmd.Dir = peersDir(t)
	cmd.Env = append(append(os.Environ(), "PORT="+strconv.Itoa(port)), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = cmd.Stdout
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), strconv.Itoa(port)) {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start", what)
	}
	return port
}

// allowAll is a policy set that allows every call by agent "tester".
func allowAll(t *testing.T) string {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "inventory.yaml"), []byte("agents:\n  - id: tester\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "all.yaml"), []byte("rules:\n  - id: all\n    effect: allow\n    match: \"true\"\n    message: everything\n"), 0o644))
	return dir
}

// allowAllBut is allowAll with denyRules, items of a rules: list.
func allowAllBut(t *testing.T, denyRules ...string) string {
	dir := allowAll(t)
	must(t, os.WriteFile(filepath.Join(dir, "deny.yaml"), []byte("rules:\n"+strings.Join(denyRules, "")), 0o644))
	return dir
}

// Deny rules for allowAllBut.
const (
	noEnv = `  - id: no-env
    effect: deny
    match: action.tool == "get-env"
    message: the environment holds credentials
`
	noShouting = `  - id: no-shouting
    effect: deny
    match: action.tool == "echo" && "message" in action.arguments && string(action.arguments.message).contains("!!")
    message: no shouting
`
)

// startMCPHTTP runs agentpdp mcp --listen in front of upstream.
func startMCPHTTP(t *testing.T, policies, upstream string, extra ...string) (url string, p *proc, logFile string) {
	t.Helper()
	logFile = filepath.Join(t.TempDir(), "decisions.log")
	url, p = startMCPHTTPIn(t, t.TempDir(), logFile, policies, upstream, extra...)
	return url, p, logFile
}

// startMCPHTTPIn is startMCPHTTP with the data directory and decision log
// given (a restart keeps them).
func startMCPHTTPIn(t *testing.T, data, logFile, policies, upstream string, extra ...string) (url string, p *proc) {
	t.Helper()
	args := append([]string{"mcp", "--policies", policies, "--data-dir", data, "--decision-log", logFile,
		"--agent", "tester", "--user", "bob@example.com", "--server", "everything", "--listen", "127.0.0.1:0", "--upstream", upstream}, extra...)
	p = startProc(t, args...)
	addr := p.doorAddr(t, "mcp")
	return "http://" + addr + "/mcp", p
}

// initializeMsg is a 2025-11-25 client's initialize request.
const initializeMsg = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// mcpAnswer is an MCP endpoint's answer to one POST, read to the end.
type mcpAnswer struct {
	status int
	header http.Header
	body   string
}

// postMCP posts one JSON-RPC message to the MCP endpoint at url as a
// Streamable HTTP client does (a JSON body; JSON or SSE accepted), with
// hdr's headers on top ("Host" sets the request's host), and reads the
// answer.
func postMCP(t *testing.T, url, body string, hdr map[string]string) mcpAnswer {
	t.Helper()
	return postMCPVia(t, http.DefaultClient, url, body, hdr)
}

// postMCPVia is postMCP through client.
func postMCPVia(t *testing.T, client *http.Client, url, body string, hdr map[string]string) mcpAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := client.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return mcpAnswer{resp.StatusCode, resp.Header, string(b)}
}

// TestMCPHTTPEverything: the v1 SDK client over Streamable HTTP through
// agentpdp to server-everything: tool calls, progress notifications on
// the request's stream, the server's sampling and elicitation requests
// answered by the client, resources and prompts.
func TestMCPHTTPEverything(t *testing.T) {
	upstream := startEverything(t)
	url, p, logFile := startMCPHTTP(t, allowAll(t), upstream)
	res := runClient(t, map[string]any{
		"transport": "http", "url": url, "elicit": map[string]any{"color": "blue"},
		"steps": []clientStep{
			{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "through the proxy"}},
			{"op": "callTool", "name": "trigger-long-running-operation", "arguments": map[string]any{"duration": 1, "steps": 3}, "progress": true},
			{"op": "callTool", "name": "trigger-sampling-request", "arguments": map[string]any{"prompt": "hi", "maxTokens": 5}},
			{"op": "callTool", "name": "trigger-elicitation-request", "arguments": map[string]any{}},
			{"op": "readResource", "uri": "demo://resource/static/document/architecture.md"},
			{"op": "getPrompt", "name": "simple-prompt"},
			{"op": "ping"},
		},
	})
	if text(res[0]) != "Echo: through the proxy" {
		t.Errorf("echo: %v", res[0])
	}
	if prog, _ := res[1]["progress"].([]any); len(prog) != 3 || !strings.Contains(text(res[1]), "completed") {
		t.Errorf("long-running operation: progress %v, %v", res[1]["progress"], res[1])
	}
	if !strings.Contains(text(res[2]), "sampled by the e2e client") {
		t.Errorf("sampling: %v", res[2])
	}
	if !strings.Contains(text(res[3]), "blue") {
		t.Errorf("elicitation: %v", res[3])
	}
	if res[4]["ok"] != true || res[5]["ok"] != true || res[6]["ok"] != true {
		t.Errorf("resource, prompt, ping: %v %v %v", res[4], res[5], res[6])
	}
	if v := res[len(res)-1]["protocolVersion"]; v != "2025-11-25" {
		t.Errorf("negotiated %v through the proxy, want the server's 2025-11-25", v)
	}
	if p.cmd.ProcessState != nil {
		t.Fatalf("agentpdp exited:\n%s", p.log())
	}
	verifyLog(t, logFile)
}

// TestMCPHTTPRefusals: what the HTTP listener refuses, each logged.
func TestMCPHTTPRefusals(t *testing.T) {
	upstream := startEverything(t)
	url, p, logFile := startMCPHTTP(t, allowAll(t), upstream)
	for _, tc := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		want   string
	}{
		{"DNS rebinding: another Host", initializeMsg, map[string]string{"Host": "attacker.example:80"}, 403, "Host"},
		{"another Origin", initializeMsg, map[string]string{"Origin": "http://attacker.example"}, 403, "Origin"},
		{"no session", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, nil, 400, "initialize first"},
		{"made-up session", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, map[string]string{"Mcp-Session-Id": "nope"}, 404, "Session not found"},
		{"stateless request without capabilities", `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}, 400, "clientCapabilities"},
		{"unknown stateless version", `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			map[string]string{"Mcp-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"}, 400, "-32022"},
		// A stateless request reaches a stateful-only upstream, which
		// answers as it would directly (HTTP 400, not initialized).
		{"stateless request to a stateful-only upstream", `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}, 400, "not initialized"},
		{"duplicate keys", `{"jsonrpc":"2.0","id":4,"method":"initialize","method":"ping"}`, nil, 400, "duplicate member name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := postMCP(t, url, tc.body, tc.hdr)
			if a.status != tc.status || !strings.Contains(a.body, tc.want) {
				t.Errorf("%d %s, want %d with %q", a.status, a.body, tc.status, tc.want)
			}
		})
	}
	recs := decisions(t, logFile)
	var rules []string
	for _, r := range recs {
		rules = append(rules, fmt.Sprint(r["reasons"]))
	}
	joined := strings.Join(rules, " ")
	for _, want := range []string{"builtin#unsupported-version", "builtin#invalid-host", "builtin#invalid-origin", "builtin#bad-request"} {
		if !strings.Contains(joined, want) {
			t.Errorf("refusal %s not logged: %v", want, rules)
		}
	}
	if p.cmd.ProcessState != nil {
		t.Fatalf("agentpdp exited:\n%s", p.log())
	}
	verifyLog(t, logFile)
}

// TestMCPLegacySSE: the 2024-11-05 HTTP+SSE transport on both sides: the
// v1 SDK's SSE client through agentpdp to server-everything's SSE server.
func TestMCPLegacySSE(t *testing.T) {
	upstream := startEverythingMode(t, "sse", "/sse")
	url, p, logFile := startMCPHTTP(t, allowAll(t), upstream, "--upstream-sse")
	res := runClient(t, map[string]any{
		"transport": "sse", "url": url + "/sse",
		"steps": []clientStep{
			{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "over SSE"}},
			{"op": "callTool", "name": "trigger-sampling-request", "arguments": map[string]any{"prompt": "hi", "maxTokens": 5}},
			{"op": "listTools"},
		},
	})
	if text(res[0]) != "Echo: over SSE" || !strings.Contains(text(res[1]), "sampled by the e2e client") || res[2]["ok"] != true {
		t.Errorf("over legacy SSE: %v", res)
	}
	if p.cmd.ProcessState != nil {
		t.Fatalf("agentpdp exited:\n%s", p.log())
	}
	var calls int
	for _, r := range decisions(t, logFile) {
		if r["input"].(map[string]any)["action"].(map[string]any)["kind"] == "mcp.tools/call" {
			calls++
		}
	}
	if calls != 2 {
		t.Errorf("%d tools/call decisions logged, want 2", calls)
	}
	verifyLog(t, logFile)
}

// TestRunServesMCPUpstreams: `agentpdp run` with an mcp: section serves
// several upstreams, each at /mcp/<name>, beside the Envoy door, in one
// process: a URL upstream and a command run per session.
func TestRunServesMCPUpstreams(t *testing.T) {
	dir := peersDir(t)
	upstream := startEverything(t)
	sandbox := t.TempDir()
	must(t, os.WriteFile(filepath.Join(sandbox, "a.txt"), []byte("via run\n"), 0o644))
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	fsServer := peerServer(dir, "server-filesystem")
	p := startAgentpdp(t, fmt.Sprintf(`
policies: %s
data_dir: %s
decision_log: {file: %s}
admin: {addr: 127.0.0.1:0}
envoy: {addr: 127.0.0.1:0}
mcp:
  addr: 127.0.0.1:0
  identity: {agent: tester, user: bob@example.com}
  upstreams:
    - name: everything
      url: %s
    - name: fs
      command: [node, %s, %s]
`, allowAll(t), t.TempDir(), logFile, upstream, fsServer, sandbox))
	p.waitLine(t, map[string]any{"msg": "serving", "door": "envoy"})
	base := "http://" + p.doorAddr(t, "mcp")
	ev := runClient(t, map[string]any{"transport": "http", "url": base + "/mcp/everything",
		"steps": []clientStep{{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "run"}}}})
	fs := runClient(t, map[string]any{"transport": "http", "url": base + "/mcp/fs",
		"steps": []clientStep{{"op": "callTool", "name": "read_text_file", "arguments": map[string]any{"path": filepath.Join(sandbox, "a.txt")}}}})
	if text(ev[0]) != "Echo: run" || text(fs[0]) != "via run\n" {
		t.Errorf("everything %v, fs %v", ev[0], fs[0])
	}
	servers := map[string]bool{}
	for _, r := range decisions(t, logFile) {
		if act := r["input"].(map[string]any)["action"].(map[string]any); act["kind"] == "mcp.tools/call" {
			servers[act["server"].(string)] = true
		}
	}
	if !servers["everything"] || !servers["fs"] {
		t.Errorf("calls logged for servers %v", servers)
	}
	p.stop(t)
	// Stopping agentpdp stopped the stdio server it ran for the session.
	if out, _ := exec.Command("pgrep", "-f", fsServer+" "+sandbox).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("server-filesystem still running after agentpdp stopped: pids %s", out)
	}
	verifyLog(t, logFile)
}

// TestMCPBearerTokens: an HTTP listener that verifies tokens: none or a
// bad one is a 401 pointing at the protected-resource metadata (RFC 9728)
// that agentpdp serves; a token for agent and user gets through, and the
// decisions name both.
func TestMCPBearerTokens(t *testing.T) {
	upstream := startEverything(t)
	dir, secret, pol, logFile := tokenSetup(t, "has(user.id)")
	p := startMCPDoor(t, pol, dir, logFile, fmt.Sprintf(`  jwt: {issuer: https://idp.test, audiences: [agentpdp], hmac_secret_file: %s}
  upstreams:
    - name: everything
      url: %s
`, secret, upstream))
	base := "http://" + p.doorAddr(t, "mcp")

	a := postMCP(t, base+"/mcp/everything", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	www := a.header.Get("WWW-Authenticate")
	if a.status != 401 || !strings.Contains(www, `resource_metadata="`+base+`/.well-known/oauth-protected-resource/mcp/everything"`) {
		t.Fatalf("no token: %d %q", a.status, www)
	}
	md := httpGet(t, base+"/.well-known/oauth-protected-resource/mcp/everything")
	if !strings.Contains(md, `"resource":"`+base+`/mcp/everything"`) || !strings.Contains(md, `"authorization_servers":["https://idp.test"]`) {
		t.Errorf("protected-resource metadata %s", md)
	}
	res := runClient(t, map[string]any{"transport": "http", "url": base + "/mcp/everything",
		"headers": map[string]string{"Authorization": "Bearer " + userToken(t, "alice@example.com", []string{"eng"}, reviewer)},
		"steps":   []clientStep{{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "with a token"}}}})
	if text(res[0]) != "Echo: with a token" {
		t.Errorf("with a token: %v", res[0])
	}
	var named bool
	for _, r := range decisions(t, logFile) {
		named = named || (r["agent"] == reviewer && r["user"] == "alice@example.com" && r["effect"] == "allow")
	}
	if !named {
		t.Error("no allowed decision names the token's agent and user")
	}
	verifyLog(t, logFile)
}

// TestMCPInspectorCLI: the MCP Inspector's CLI mode through agentpdp mcp:
// a call the policy allows is answered by the server, one it denies by
// agentpdp, which the Inspector shows as the tool's error result, and a
// tool the agent may not use is not even listed.
func TestMCPInspectorCLI(t *testing.T) {
	dir := peersDir(t)
	upstream := startEverything(t)
	pol := allowAllBut(t, noEnv, `  - id: no-passwords
    effect: deny
    match: action.tool == "echo" && "message" in action.arguments && string(action.arguments.message).contains("password")
    message: passwords do not go into tool arguments
`)
	url, _, logFile := startMCPHTTP(t, pol, upstream)
	// It exits non-zero when a tool answers isError: wantFail says so.
	inspector := func(wantFail bool, args ...string) string {
		t.Helper()
		store := t.TempDir()
		cmd := exec.Command("node", append([]string{filepath.Join(dir, "node_modules", ".bin", "mcp-inspector"), "--cli", url}, args...)...)
		cmd.Env = append(os.Environ(), "MCP_CATALOG_PATH="+filepath.Join(store, "mcp.json"), "MCP_STORAGE_DIR="+filepath.Join(store, "storage"))
		out, err := cmd.CombinedOutput()
		if (err != nil) != wantFail {
			t.Fatalf("inspector %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := inspector(false, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=from the inspector"); !strings.Contains(out, "Echo: from the inspector") {
		t.Errorf("allowed call: %s", out)
	}
	if out := inspector(true, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=my password is hunter2"); !strings.Contains(out, "passwords do not go into tool arguments") || !strings.Contains(out, `"isError": true`) {
		t.Errorf("denied call: %s", out)
	}
	if out := inspector(false, "--method", "tools/list"); strings.Contains(out, `"get-env"`) || !strings.Contains(out, `"echo"`) {
		t.Errorf("tools/list: get-env should be filtered out: %.400s", out)
	}
	verifyLog(t, logFile)
}

// TestMCPStdioEverything: server-everything over stdio behind agentpdp
// mcp, the client over stdio too: sampling and elicitation requests from
// the server are answered by the client, progress reaches it.
func TestMCPStdioEverything(t *testing.T) {
	dir := peersDir(t)
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	res := runClient(t, map[string]any{
		"transport": "stdio", "command": agentpdpBin, "elicit": map[string]any{"color": "green"},
		"args": []string{"mcp", "--policies", allowAll(t), "--data-dir", t.TempDir(), "--decision-log", logFile,
			"--agent", "tester", "--server", "everything",
			"--", "node", peerServer(dir, "server-everything"), "stdio"},
		"steps": []clientStep{
			{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "over stdio"}},
			{"op": "callTool", "name": "trigger-sampling-request", "arguments": map[string]any{"prompt": "hi", "maxTokens": 5}},
			{"op": "callTool", "name": "trigger-elicitation-request", "arguments": map[string]any{}},
			{"op": "callTool", "name": "trigger-long-running-operation", "arguments": map[string]any{"duration": 1, "steps": 3}, "progress": true},
		},
	})
	if text(res[0]) != "Echo: over stdio" || !strings.Contains(text(res[1]), "sampled by the e2e client") || !strings.Contains(text(res[2]), "green") {
		t.Errorf("over stdio: %v", res[:3])
	}
	if prog, _ := res[3]["progress"].([]any); len(prog) == 0 {
		t.Errorf("no progress reached the client: %v", res[3])
	}
	verifyLog(t, logFile)
}

// TestMCPMutualTLS: an HTTPS listener that requires client certificates:
// the certificate's SPIFFE ID is the agent, a token names the user, and a
// token issued to another agent than the certificate's is refused.
func TestMCPMutualTLS(t *testing.T) {
	upstream := startEverything(t)
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srvCert, srvKey := issue(t, ca, caKey, "", []net.IP{net.ParseIP("127.0.0.1")})
	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", srvCert)
	writePEM(t, filepath.Join(dir, "server.key"), "PRIVATE KEY", srvKey)
	clientCert, clientKey := issue(t, ca, caKey, reviewer, nil)
	_, secret, pol, logFile := tokenSetup(t, `agent.authn == "mtls"`)
	p := startMCPDoor(t, pol, dir, logFile, fmt.Sprintf(`  tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
  jwt: {issuer: https://idp.test, audiences: [agentpdp], hmac_secret_file: %s}
  upstreams:
    - name: everything
      url: %s
`, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.pem"), secret, upstream))
	base := "https://" + p.doorAddr(t, "mcp") + "/mcp/everything"
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.X509KeyPair(pemBytes("CERTIFICATE", clientCert), pemBytes("PRIVATE KEY", clientKey))
	must(t, err)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	call := func(token string) int {
		var hdr map[string]string
		if token != "" {
			hdr = map[string]string{"Authorization": "Bearer " + token}
		}
		return postMCPVia(t, client, base, initializeMsg, hdr).status
	}
	if st := call(""); st != 200 {
		t.Errorf("certificate alone: %d", st)
	}
	if st := call(userToken(t, "alice@example.com", nil, reviewer)); st != 200 {
		t.Errorf("certificate and a token for the same agent: %d", st)
	}
	if st := call(userToken(t, "alice@example.com", nil, "spiffe://example.org/agent/other")); st != 403 {
		t.Errorf("a token for another agent: %d, want 403", st)
	}
	// Without a client certificate the TLS handshake itself fails.
	bare := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if _, err := bare.Post(base, "application/json", strings.NewReader(initializeMsg)); err == nil {
		t.Error("a client without a certificate got through")
	}
	var certified, withUser bool
	for _, r := range decisions(t, logFile) {
		ag, _ := r["input"].(map[string]any)["agent"].(map[string]any)
		if ag["id"] == reviewer && ag["authn"] == "mtls" && r["effect"] == "allow" {
			certified = true
			withUser = withUser || r["user"] == "alice@example.com"
		}
	}
	if !certified || !withUser {
		t.Errorf("decisions: certified agent %v, with the token's user %v", certified, withUser)
	}
	verifyLog(t, logFile)
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	ca, err := x509.ParseCertificate(der)
	must(t, err)
	return ca, key
}

// issue makes a leaf certificate: a client's with a SPIFFE ID, or a
// server's for ips. It returns DER certificate and PKCS #8 key.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, spiffeID string, ips []net.IP) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if spiffeID != "" {
		u, err := neturl.Parse(spiffeID)
		must(t, err)
		tmpl.URIs = []*neturl.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	must(t, err)
	k, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	return der, k
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	must(t, os.WriteFile(file, pemBytes(typ, der), 0o600))
}

// tokenSetup writes the HMAC secret the test tokens are signed with and a
// policy set allowing the reviewer agent's calls that match; it returns
// the directory, the secret's file, the policy set and a decision log path.
func tokenSetup(t *testing.T, match string) (dir, secret, policies, logFile string) {
	t.Helper()
	dir = t.TempDir()
	secret = filepath.Join(dir, "hmac.secret")
	must(t, os.WriteFile(secret, []byte(hmacSecret), 0o600))
	policies = t.TempDir()
	must(t, os.WriteFile(filepath.Join(policies, "inventory.yaml"), []byte("agents:\n  - id: "+reviewer+"\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(policies, "rules.yaml"), []byte(fmt.Sprintf("rules:\n  - id: allowed\n    effect: allow\n    match: %s\n    message: allowed\n", strconv.Quote(match))), 0o644))
	return dir, secret, policies, filepath.Join(dir, "decisions.log")
}

// startMCPDoor runs agentpdp run with the MCP door alone on a free
// loopback port: policies, dataDir and logFile, and mcpYAML, the mcp:
// section's keys after addr (each line indented two spaces).
func startMCPDoor(t *testing.T, policies, dataDir, logFile, mcpYAML string) *proc {
	t.Helper()
	return startAgentpdp(t, fmt.Sprintf("policies: %s\ndata_dir: %s\ndecision_log: {file: %s}\nadmin: {addr: 127.0.0.1:0}\nenvoy: {enabled: false}\nmcp:\n  addr: 127.0.0.1:0\n%s",
		policies, dataDir, logFile, mcpYAML))
}
