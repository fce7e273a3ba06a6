package mcpproxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// A 2026-07-28 tools/call's Mcp-Param-* headers (SEP-2243) are held
// against the body before anything is decided, by the x-mcp-header
// declarations of the tool as listed through the door: a matching header
// (literal or =?base64?…?=) is forwarded, rebuilt from the body; a
// missing, extra, undecodable or disagreeing one is refused with 400 and
// -32020. A tool not yet listed through this agentpdp (a restart, another
// replica) is learned by listing the tools as the caller; one the caller
// cannot list has headers nobody can check, and is refused. A refused call
// never reaches the upstream.
func TestStatelessParamHeaders(t *testing.T) {
	var mu sync.Mutex
	var calls []http.Header
	lists := 0
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(body, &m)
		w.Header().Set("Content-Type", "application/json")
		if m.Method == "tools/list" {
			mu.Lock()
			lists++
			mu.Unlock()
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resultType":"complete","tools":[{"name":"regional","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"opts":{"type":"object","properties":{"tier":{"type":"integer","x-mcp-header":"Tier"}}},"note":{"type":"string"}}}}]}}`, m.ID)
			return
		}
		mu.Lock()
		calls = append(calls, r.Header.Clone())
		mu.Unlock()
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resultType":"complete","content":[]}}`, m.ID)
	}))
	t.Cleanup(up.Close)
	url, _ := newProxy(t, up.URL, allowDecider{})
	send := func(method, params string, hdr map[string]string) (int, string) {
		t.Helper()
		resp, body := postStateless(t, url, method, params, hdr)
		return resp.StatusCode, body
	}
	forwarded := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(calls)
	}
	listed := func() int {
		mu.Lock()
		defer mu.Unlock()
		return lists
	}
	call := func(args string, hdr map[string]string) (int, string) {
		h := map[string]string{"Mcp-Name": "regional"}
		for k, v := range hdr {
			h[k] = v
		}
		return send("tools/call", `"name":"regional","arguments":`+args+`,`, h)
	}

	// Never listed here: the door lists the tools as the caller, then
	// checks and forwards.
	if code, body := call(`{"region":"Hello"}`, map[string]string{"Mcp-Param-Region": "Hello"}); code != http.StatusOK || forwarded() != 1 || listed() != 1 {
		t.Fatalf("unlisted tool with Mcp-Param-Region: %d %s (forwarded %d, listed %d), want it learned and forwarded", code, body, forwarded(), listed())
	}
	// A tool the listing does not show: its header cannot be checked.
	// Asked again at once, the door does not list again (calls naming
	// tools that do not exist must not each cost a listing upstream).
	for range 3 {
		if code, body := send("tools/call", `"name":"hidden","arguments":{"region":"x"},`, map[string]string{"Mcp-Name": "hidden", "Mcp-Param-Region": "x"}); code != http.StatusBadRequest || !strings.Contains(body, "-32020") || forwarded() != 1 {
			t.Fatalf("unlistable tool with Mcp-Param-Region: %d %s, want 400 and -32020, not forwarded", code, body)
		}
	}
	if n := listed(); n != 1 {
		t.Errorf("the door listed %d times, want once within %s", n, learnEvery)
	}
	if code, body := send("tools/list", "", nil); code != http.StatusOK || !strings.Contains(body, "x-mcp-header") {
		t.Fatalf("tools/list: %d %s", code, body)
	}

	for _, c := range []struct {
		name, args string
		hdr        map[string]string
		want       map[string]string // forwarded Mcp-Param-* headers
	}{
		{"literal", `{"region":"Hello"}`, map[string]string{"Mcp-Param-Region": "Hello"}, map[string]string{"Mcp-Param-Region": "Hello"}},
		{"base64", `{"region":"Hello"}`, map[string]string{"mcp-param-region": " =?base64?SGVsbG8=?= "}, map[string]string{"Mcp-Param-Region": "Hello"}},
		{"non-ASCII, nested number", `{"region":"Zürich","opts":{"tier":3}}`,
			map[string]string{"Mcp-Param-Region": "=?base64?WsO8cmljaA==?=", "Mcp-Param-Tier": "3"},
			map[string]string{"Mcp-Param-Region": "=?base64?WsO8cmljaA==?=", "Mcp-Param-Tier": "3"}},
		{"a prefix without its suffix is literal", `{"region":"=?base64?SGVsbG8="}`, map[string]string{"Mcp-Param-Region": "=?base64?SGVsbG8="},
			map[string]string{"Mcp-Param-Region": "=?base64?PT9iYXNlNjQ/U0dWc2JHOD0=?="}},
		{"no declared argument, no header", `{"note":"x"}`, nil, map[string]string{"Mcp-Param-Region": ""}},
	} {
		before := forwarded()
		code, body := call(c.args, c.hdr)
		if code != http.StatusOK || forwarded() != before+1 {
			t.Errorf("%s: %d %s, want it forwarded", c.name, code, body)
			continue
		}
		mu.Lock()
		got := calls[len(calls)-1]
		mu.Unlock()
		for k, v := range c.want {
			if got.Get(k) != v {
				t.Errorf("%s: the upstream got %s %q, want %q", c.name, k, got.Get(k), v)
			}
		}
	}

	for _, c := range []struct {
		name, args string
		hdr        map[string]string
	}{
		{"missing header", `{"region":"Hello"}`, nil},
		{"disagreeing header", `{"region":"Hello"}`, map[string]string{"Mcp-Param-Region": "Goodbye"}},
		{"bad Base64 padding", `{"region":"Hello"}`, map[string]string{"Mcp-Param-Region": "=?base64?SGVsbG8?="}},
		{"bad Base64 alphabet", `{"region":"Hello"}`, map[string]string{"Mcp-Param-Region": "=?base64?SGVs*G8=?="}},
		{"header without argument", `{}`, map[string]string{"Mcp-Param-Region": "Hello"}},
		{"undeclared header", `{"region":"Hello"}`, map[string]string{"Mcp-Param-Region": "Hello", "Mcp-Param-Other": "x"}},
		{"wrong nested value", `{"region":"Hello","opts":{"tier":3}}`, map[string]string{"Mcp-Param-Region": "Hello", "Mcp-Param-Tier": "4"}},
	} {
		before := forwarded()
		code, body := call(c.args, c.hdr)
		if code != http.StatusBadRequest || !strings.Contains(body, "-32020") {
			t.Errorf("%s: %d %s, want 400 and -32020", c.name, code, body)
		}
		if forwarded() != before {
			t.Errorf("%s: the refused call reached the upstream", c.name)
		}
	}
	// Another method has no x-mcp-header arguments to mirror.
	if code, body := send("prompts/get", `"name":"p",`, map[string]string{"Mcp-Name": "p", "Mcp-Param-Region": "Hello"}); code != http.StatusBadRequest || !strings.Contains(body, "-32020") {
		t.Errorf("prompts/get with Mcp-Param-Region: %d %s, want 400 and -32020", code, body)
	}
}
