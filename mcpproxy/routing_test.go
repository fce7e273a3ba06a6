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

// headerServer is a 2026-07-28 upstream that records each request's MCP
// routing headers by method and answers every request with an empty
// result.
type headerServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]http.Header
}

func newHeaderServer(t *testing.T) *headerServer {
	hs := &headerServer{seen: map[string]http.Header{}}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(body, &m)
		hs.mu.Lock()
		hs.seen[m.Method] = r.Header.Clone()
		hs.mu.Unlock()
		if len(m.ID) == 0 {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resultType":"complete"}}`, m.ID)
	}))
	t.Cleanup(hs.Close)
	return hs
}

func (hs *headerServer) headers(method string) (http.Header, bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h, ok := hs.seen[method]
	return h, ok
}

// A stateless request's routing headers are rebuilt from the decided body
// for the upstream: a tasks/get or tasks/cancel (SEP-2663) carries its
// taskId as Mcp-Name, as a 2026-07-28 server requires (without it the v2
// SDK answers -32020); a request whose Mcp-Name is missing or names
// another task is refused before it reaches the upstream.
func TestStatelessTaskRoutingHeaders(t *testing.T) {
	up := newHeaderServer(t)
	url, _ := newProxy(t, up.URL, allowDecider{})
	for _, method := range []string{"tasks/get", "tasks/cancel"} {
		resp, body := postStateless(t, url, method, `"taskId":"task-7",`, map[string]string{"Mcp-Name": "task-7"})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"resultType":"complete"`) {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, body)
		}
		h, ok := up.headers(method)
		if !ok {
			t.Fatalf("%s did not reach the upstream", method)
		}
		if h.Get("Mcp-Name") != "task-7" || h.Get("Mcp-Method") != method || h.Get("Mcp-Protocol-Version") != "2026-07-28" {
			t.Errorf("%s reached the upstream with Mcp-Name %q, Mcp-Method %q, MCP-Protocol-Version %q", method,
				h.Get("Mcp-Name"), h.Get("Mcp-Method"), h.Get("Mcp-Protocol-Version"))
		}
	}
	// Refused at the door: nothing reaches the upstream.
	for name, hdr := range map[string]map[string]string{"missing": nil, "another task's": {"Mcp-Name": "task-8"}} {
		resp, body := postStateless(t, url, "tasks/get", `"taskId":"task-9",`, hdr)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "-32020") {
			t.Errorf("%s Mcp-Name: %d %s, want 400 and -32020", name, resp.StatusCode, body)
		}
	}
	if h, _ := up.headers("tasks/get"); h.Get("Mcp-Name") != "task-7" {
		t.Errorf("a refused tasks/get reached the upstream (Mcp-Name %q)", h.Get("Mcp-Name"))
	}
}

// postStateless sends a 2026-07-28 request for method, with params (each
// member followed by a comma) before the _meta envelope, and the routing
// headers MCP-Protocol-Version and Mcp-Method plus hdr.
func postStateless(t *testing.T, url, method, params string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%q,"params":{%s"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, method, params)
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", method)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
