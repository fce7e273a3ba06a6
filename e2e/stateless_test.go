package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startServerV2 runs e2e/peers/server-v2.mjs: a stateless (2026-07-28)
// server on the v2 TypeScript SDK.
func startServerV2(t *testing.T) string {
	t.Helper()
	return startServerV2Legacy(t, "reject")
}

// startServerV2Legacy starts it with LEGACY=legacy: "reject" (2026-07-28
// only) or "stateless" (2025-era traffic served statelessly too).
func startServerV2Legacy(t *testing.T, legacy string) string {
	t.Helper()
	return startV2Script(t, "server-v2.mjs", legacy)
}

// startV2Script runs a v2 SDK server script of e2e/peers with LEGACY set
// and waits until it listens.
func startV2Script(t *testing.T, script, legacy string) string {
	t.Helper()
	port := startNodeServer(t, "the v2 server "+script, []string{"LEGACY=" + legacy}, script)
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
}

// runClientV2 runs the v2 SDK client pinned to 2026-07-28.
func runClientV2(t *testing.T, url string, steps []clientStep) []map[string]any {
	t.Helper()
	res, _, _ := runNodeClient(t, "client-v2.mjs", map[string]any{"url": url, "steps": steps}, time.Minute)
	return res
}

// TestMCPStatelessThroughTheProxy: a 2026-07-28 client (v2 SDK, pinned)
// through agentpdp to a stateless server (v2 SDK): no session, every
// request decided; an InputRequiredResult round trip (elicitation, then
// the retry with the server's requestState untouched), each try decided
// with the same action and digest; refused tools filtered from lists.
func TestMCPStatelessThroughTheProxy(t *testing.T) {
	upstream := startServerV2(t)
	pol := allowAllBut(t, noShouting)
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
			a := postMCP(t, url, call, tc.hdr)
			if a.status != tc.status || !strings.Contains(a.body, tc.want) {
				t.Errorf("%d %s, want %d with %q", a.status, a.body, tc.status, tc.want)
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

// TestMCPBridgeToStatefulServers: a 2026-07-28 client (v2 SDK, pinned, no
// fallback) reaches stateful-only servers through agentpdp's bridge:
// server-everything over HTTP and server-filesystem over stdio. agentpdp
// runs initialize once per caller and answers server/discover from it;
// lists are filtered, denials explained, and a stateful client uses the
// same upstreams side by side.
func TestMCPBridgeToStatefulServers(t *testing.T) {
	dir := peersDir(t)
	upstream := startEverything(t)
	sandbox := t.TempDir()
	must(t, os.WriteFile(filepath.Join(sandbox, "a.txt"), []byte("bridged file\n"), 0o644))
	pol := allowAllBut(t, noEnv)
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	p := startMCPDoor(t, pol, t.TempDir(), logFile, fmt.Sprintf(`  identity: {agent: tester}
  upstreams:
    - {name: everything, url: %s, stateful: true}
    - {name: fs, command: [node, %s, %s]}
`, upstream, peerServer(dir, "server-filesystem"), sandbox))
	base := "http://" + p.doorAddr(t, "mcp")

	for range 2 { // the second run reuses the caller's bridge
		res := runClientV2(t, base+"/mcp/everything", []clientStep{
			{"op": "listTools"},
			{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "bridged"}},
			{"op": "callTool", "name": "get-env"},
		})
		if res[len(res)-1]["version"] != "2026-07-28" {
			t.Fatalf("negotiated %v: %v", res[len(res)-1], res)
		}
		var names []string
		for _, tl := range res[0]["result"].(map[string]any)["tools"].([]any) {
			names = append(names, tl.(map[string]any)["name"].(string))
		}
		if !strings.Contains(strings.Join(names, ","), "echo") || strings.Contains(","+strings.Join(names, ",")+",", ",get-env,") {
			t.Errorf("tools through the bridge %v: echo listed, get-env filtered", names)
		}
		if text(res[1]) != "Echo: bridged" || !isError(res[2]) || !strings.Contains(text(res[2]), "the environment holds credentials") {
			t.Errorf("through the bridge: %v / %v", res[1], res[2])
		}
	}
	fs := runClientV2(t, base+"/mcp/fs", []clientStep{{"op": "callTool", "name": "read_text_file", "arguments": map[string]any{"path": filepath.Join(sandbox, "a.txt")}}})
	if text(fs[0]) != "bridged file\n" {
		t.Errorf("stdio server through the bridge: %v", fs[0])
	}
	// A stateful client beside them.
	if v1 := runClient(t, map[string]any{"transport": "http", "url": base + "/mcp/everything",
		"steps": []clientStep{{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "stateful"}}}}); text(v1[0]) != "Echo: stateful" {
		t.Errorf("stateful client: %v", v1[0])
	}
	inits := map[string]int{}
	for _, r := range decisions(t, logFile) {
		act := r["input"].(map[string]any)["action"].(map[string]any)
		if act["kind"] == "mcp.initialize" {
			inits[act["server"].(string)]++
		}
	}
	// One bridge per caller and upstream, plus the stateful client's own.
	if inits["everything"] != 2 || inits["fs"] != 1 {
		t.Errorf("initialize decided %v times, want everything 2 (bridge once, stateful client once), fs 1", inits)
	}
	verifyLog(t, logFile)
}

// TestMCPBridgeToStatelessServer: a stateful client (v1 SDK, 2025-11-25)
// reaches a server that speaks only 2026-07-28 (v2 SDK, legacy traffic
// rejected) through agentpdp: initialize answered from server/discover,
// each call sent stateless, the server's InputRequiredResult put to the
// client as an elicitation on its session and the call retried with the
// answer; denials explained as usual.
func TestMCPBridgeToStatelessServer(t *testing.T) {
	upstream := startServerV2(t) // LEGACY=reject: 2026-07-28 only
	pol := allowAllBut(t, noShouting)
	url, _, logFile := startMCPHTTP(t, pol, upstream, "--upstream-stateless")
	res := runClient(t, map[string]any{"transport": "http", "url": url, "elicit": map[string]any{"confirm": true},
		"steps": []clientStep{
			{"op": "listTools"},
			{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "to a stateless server"}},
			{"op": "callTool", "name": "confirm", "arguments": map[string]any{"action": "deploy"}},
			{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "hey!!"}},
			{"op": "ping"},
		}})
	done := res[len(res)-1]
	if done["protocolVersion"] != "2025-11-25" || done["serverVersion"].(map[string]any)["name"] != "agentpdp-e2e-v2" {
		t.Errorf("initialize through the bridge: %v", done)
	}
	if text(res[1]) != "echo: to a stateless server" || text(res[2]) != "confirmed deploy" {
		t.Errorf("calls through the bridge: %v / %v", res[1], res[2])
	}
	if !isError(res[3]) || !strings.Contains(text(res[3]), "no shouting") || res[4]["ok"] != true {
		t.Errorf("denied call and ping: %v / %v", res[3], res[4])
	}
	verifyLog(t, logFile)
}
