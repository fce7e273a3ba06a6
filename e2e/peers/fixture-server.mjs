// An MCP server (v1 TypeScript SDK, Streamable HTTP, stateful) with the
// fixture tools, resources and prompts the @modelcontextprotocol/conformance
// suite calls by name, so conformance parity (direct vs through agentpdp)
// compares checks that actually exercise the protocol. The fixtures both
// eras share are in fixture-basics.mjs.
//   PORT=... node fixture-server.mjs      (listens on 127.0.0.1 only)
import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest, ElicitResultSchema, CreateMessageResultSchema } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { basics, text } from "./fixture-basics.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What the v1 SDK's registrations look like where fixture-basics.mjs needs
// them. A tool's notifications are a little apart, as a slow tool's are.
const v1 = {
  ResourceTemplate,
  notifyingTool: (s, name, description, run) => s.registerTool(name, { description, inputSchema: {} },
    async (_a, { sendNotification, _meta }) => run(async (n) => { await sendNotification(n); await sleep(20); }, _meta)),
  promptArgs: (shape) => shape,
};

function fixtures() {
  const s = new McpServer(
    { name: "agentpdp-conformance-fixture", version: "1.0.0" },
    { capabilities: { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true }, prompts: { listChanged: true }, logging: {}, completions: {} } },
  );
  basics(s, v1);
  s.registerTool("test_sampling", { description: "asks the client's model", inputSchema: { prompt: z.string() } }, async ({ prompt }) => {
    try {
      const r = await s.server.request({ method: "sampling/createMessage", params: { messages: [{ role: "user", content: { type: "text", text: prompt } }], maxTokens: 100 } }, CreateMessageResultSchema);
      return text(`LLM response: ${r.content?.text ?? "No response"}`);
    } catch (e) {
      return text(`Sampling not supported or error: ${e.message}`);
    }
  });
  s.registerTool("test_elicitation", { description: "asks the user", inputSchema: { message: z.string() } }, async ({ message }) => {
    try {
      const r = await s.server.request({ method: "elicitation/create", params: { mode: "form", message,
        requestedSchema: { type: "object", properties: { response: { type: "string", description: "User's response" } }, required: ["response"] } } }, ElicitResultSchema);
      return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
    } catch (e) {
      return text(`Elicitation not supported or error: ${e.message}`);
    }
  });
  s.registerResource("watched-resource", "test://watched-resource", { mimeType: "text/plain", description: "subscribable" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "Watched resource content" }] }));
  return s;
}

const sessions = {};
const server = http.createServer(async (req, res) => {
  if (!req.url.startsWith("/mcp")) { res.writeHead(404).end(); return; }
  let body;
  if (req.method === "POST") {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    try { body = JSON.parse(Buffer.concat(chunks).toString() || "null"); } catch { body = undefined; }
  }
  const sid = req.headers["mcp-session-id"];
  let transport = sid ? sessions[sid] : undefined;
  if (!transport) {
    if (req.method !== "POST" || sid || !isInitializeRequest(body)) {
      res.writeHead(sid ? 404 : 400, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: sid ? "Session not found" : "Bad Request: no session" }, id: null }));
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableDnsRebindingProtection: true,
      allowedHosts: [`127.0.0.1:${PORT}`, `localhost:${PORT}`],
      onsessioninitialized: (id) => { sessions[id] = transport; },
    });
    transport.onclose = () => { if (transport.sessionId) delete sessions[transport.sessionId]; };
    await fixtures().connect(transport);
  }
  await transport.handleRequest(req, res, body);
});
const PORT = Number(process.env.PORT ?? 3000);
server.listen(PORT, "127.0.0.1", () => console.log(`fixture server listening on 127.0.0.1:${PORT}`));
