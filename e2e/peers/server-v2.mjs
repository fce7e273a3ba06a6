// A stateless (2026-07-28) MCP server on the v2 TypeScript SDK, for the
// e2e tests: PORT=... node server-v2.mjs   (127.0.0.1 only, path /mcp)
// Tools: echo, and confirm, which asks for input with an
// InputRequiredResult (an elicitation) and finishes on the retry.
import http from "node:http";
import { z } from "zod";
import { McpServer, createMcpHandler, inputRequired, acceptedContent } from "@modelcontextprotocol/server";
import { toNodeHandler } from "@modelcontextprotocol/node";

function server() {
  const s = new McpServer({ name: "agentpdp-e2e-v2", version: "1.0.0" });
  s.registerTool("echo", { description: "echoes", inputSchema: { message: z.string() } },
    async ({ message }) => ({ content: [{ type: "text", text: `echo: ${message}` }] }));
  s.registerTool("confirm", { description: "asks first", inputSchema: { action: z.string() } }, async ({ action }, ctx) => {
    const schema = z.object({ confirm: z.boolean() });
    const got = acceptedContent(ctx.mcpReq.inputResponses, "confirm", schema);
    if (got === undefined) {
      return inputRequired({
        inputRequests: { confirm: inputRequired.elicit({ message: `Really ${action}?`, requestedSchema: schema }) },
        requestState: `upstream-state:${action}`,
      });
    }
    return { content: [{ type: "text", text: got.confirm ? `confirmed ${action}` : `declined ${action}` }] };
  });
  return s;
}

const node = toNodeHandler(createMcpHandler(server, { legacy: process.env.LEGACY ?? "reject" }));
const PORT = Number(process.env.PORT ?? 3000);
http.createServer((req, res) => {
  if (new URL(req.url, "http://x").pathname !== "/mcp") { res.writeHead(404).end(); return; }
  node(req, res);
}).listen(PORT, "127.0.0.1", () => console.log(`v2 server listening on 127.0.0.1:${PORT}`));
