package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startServerV2 runs e2e/peers/server-v2.mjs: a stateless (2026-07-28)
// server on the v2 TypeScript SDK.
func startServerV2(t *testing.T) string {
	t.Helper()
	dir := peersDir(t)
	port := freePort(t)
	cmd := exec.Command("node", filepath.Join(dir, "server-v2.mjs"))
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		b := make([]byte, 256)
		n, _ := io.ReadAtLeast(out, b, len("v2 server listening"))
		if strings.Contains(string(b[:n]), "listening") {
			close(ready)
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the v2 server did not start")
	}
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
}

// runClientV2 runs the v2 SDK client pinned to 2026-07-28.
func runClientV2(t *testing.T, url string, steps []clientStep) []map[string]any {
	t.Helper()
	dir := peersDir(t)
	js, err := json.Marshal(map[string]any{"url": url, "steps": steps})
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "client-v2.mjs"), string(js))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("v2 client: %v\n%s\n%s", err, out, stderr.String())
	}
	var res []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var m map[string]any
		must(t, json.Unmarshal(line, &m))
		res = append(res, m)
	}
	return res
}

// TestMCPStatelessThroughTheProxy: a 2026-07-28 client (v2 SDK, pinned)
// through agentpdp to a stateless server (v2 SDK): no session, every
// request decided; an InputRequiredResult round trip (elicitation, then
// the retry with the server's requestState untouched), each try decided
// with the same action and digest; refused tools filtered from lists.
func TestMCPStatelessThroughTheProxy(t *testing.T) {
	upstream := startServerV2(t)
	pol := allowAll(t)
	must(t, os.WriteFile(filepath.Join(pol, "deny.yaml"), []byte("rules:\n  - id: no-shouting\n    effect: deny\n    match: action.tool == \"echo\" && \"message\" in action.arguments && string(action.arguments.message).contains(\"!!\")\n    message: no shouting\n"), 0o644))
	url, _, logFile := startMCPHTTP(t, pol, upstream)
	res := runClientV2(t, url, []clientStep{
		{"op": "listTools"},
		{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "stateless"}},
		{"op": "callTool", "name": "confirm", "arguments": map[string]any{"action": "deploy"}},
		{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "hey!!"}},
	})
	if res[len(res)-1]["version"] != "2026-07-28" {
		t.Fatalf("negotiated %v through the proxy: %v", res[len(res)-1], res)
	}
	if text(res[1]) != "echo: stateless" {
		t.Errorf("echo: %v", res[1])
	}
	if text(res[2]) != "confirmed deploy" || fmt.Sprint(res[2]["elicited"]) != "[Really deploy?]" {
		t.Errorf("input-required round trip: %v", res[2])
	}
	if !isError(res[3]) || !strings.Contains(text(res[3]), "no shouting") {
		t.Errorf("denied call: %v", res[3])
	}
	// Both tries of confirm were decided, as the same action.
	var digests []string
	for _, r := range decisions(t, logFile) {
		in := r["input"].(map[string]any)
		act := in["action"].(map[string]any)
		if act["tool"] == "confirm" && act["kind"] == "mcp.tools/call" {
			h, _ := json.Marshal(map[string]any{"a": act["arguments"], "t": act["tool"], "s": act["server"]})
			digests = append(digests, string(h))
		}
	}
	if len(digests) != 2 || digests[0] != digests[1] {
		t.Errorf("confirm decided %d times as %v, want twice the same", len(digests), digests)
	}
	verifyLog(t, logFile)
}

// TestMCPStatelessHeaders: the MCP routing headers must say what the body
// says; a mismatch or a forgery is refused (HTTP 400, JSON-RPC -32020)
// before anything is decided, logged, never forwarded. GET is 405.
func TestMCPStatelessHeaders(t *testing.T) {
	upstream := startServerV2(t)
	url, _, logFile := startMCPHTTP(t, allowAll(t), upstream)
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
		want   string
	}{
		{"matching", map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "  echo "}, 200, "echo: x"},
		{"method mismatch", map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list", "Mcp-Name": "echo"}, 400, "-32020"},
		{"forged name", map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "delete_everything"}, 400, "-32020"},
		{"version mismatch", map[string]string{"Mcp-Protocol-Version": "2025-11-25", "Mcp-Method": "tools/call", "Mcp-Name": "echo"}, 400, "-32020"},
		{"no name header", map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"}, 400, "-32020"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(call))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Errorf("%d %s, want %d with %q", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	resp, err := http.Get(url)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	var mismatches, allowed int
	for _, r := range decisions(t, logFile) {
		if rs, _ := r["reasons"].([]any); len(rs) > 0 && rs[0] == "builtin#header-mismatch" {
			mismatches++
		}
		if r["effect"] == "allow" {
			allowed++
		}
	}
	if mismatches != 4 || allowed != 1 {
		t.Errorf("logged %d header mismatches and %d allowed calls, want 4 and 1 (only the matching call decided)", mismatches, allowed)
	}
	verifyLog(t, logFile)
}
