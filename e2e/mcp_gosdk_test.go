package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// TestMCPGoClient: mcp-go's Streamable HTTP client through agentpdp to
// server-everything. mcp-go probes the stateless 2026-07-28 era first
// (server/discover); the proxy decides and forwards the probe, the
// stateful-only server refuses it as it would directly, and the client
// falls back to initialize on its own.
func TestMCPGoClient(t *testing.T) {
	upstream := startEverything(t)
	pol := allowAllBut(t, noEnv)
	url, p, logFile := startMCPHTTP(t, pol, upstream)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.NewStreamableHttpClient(url)
	must(t, err)
	defer c.Close()
	must(t, c.Start(ctx))
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "agentpdp-e2e-mcp-go", Version: "1"}
	res, err := c.Initialize(ctx, init)
	if err != nil {
		t.Fatalf("initialize through the proxy: %v\n%s", err, p.log())
	}
	if res.ProtocolVersion != "2025-11-25" || res.ServerInfo.Name != "mcp-servers/everything" {
		t.Errorf("initialize result %+v", res)
	}
	tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	must(t, err)
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "echo") || strings.Contains(","+strings.Join(names, ",")+",", ",get-env,") {
		t.Errorf("tools %v: echo listed, get-env filtered out", names)
	}
	call := mcp.CallToolRequest{}
	call.Params.Name = "echo"
	call.Params.Arguments = map[string]any{"message": "from mcp-go"}
	out, err := c.CallTool(ctx, call)
	must(t, err)
	if out.IsError || len(out.Content) != 1 || out.Content[0].(mcp.TextContent).Text != "Echo: from mcp-go" {
		t.Errorf("echo result %+v", out)
	}
	call.Params.Name, call.Params.Arguments = "get-env", map[string]any{}
	out, err = c.CallTool(ctx, call)
	must(t, err)
	if !out.IsError || !strings.Contains(out.Content[0].(mcp.TextContent).Text, "the environment holds credentials") {
		t.Errorf("denied call %+v", out)
	}
	// The probe of the stateless era was decided and logged like any request.
	var probed bool
	for _, r := range decisions(t, logFile) {
		probed = probed || r["input"].(map[string]any)["action"].(map[string]any)["kind"] == "mcp.server/discover"
	}
	if !probed {
		t.Error("the server/discover probe is not in the decision log")
	}
	verifyLog(t, logFile)
}
