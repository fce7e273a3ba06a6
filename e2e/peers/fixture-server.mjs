// An MCP server (v1 TypeScript SDK, Streamable HTTP, stateful) with the
// fixture tools, resources and prompts the @modelcontextprotocol/conformance
// suite calls by name, so conformance parity (direct vs through agentpdp)
// compares checks that actually exercise the protocol.
//   PORT=... node fixture-server.mjs      (listens on 127.0.0.1 only)
import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest, ElicitResultSchema, CreateMessageResultSchema } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fixtures() {
  const s = new McpServer(
    { name: "agentpdp-conformance-fixture", version: "1.0.0" },
    { capabilities: { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true }, prompts: { listChanged: true }, logging: {}, completions: {} } },
  );
  const text = (t) => ({ content: [{ type: "text", text: t }] });
  s.registerTool("test_simple_text", { description: "a text result" }, async () => text("This is a simple text response for testing."));
  s.registerTool("test_image_content", { description: "an image result" }, async () => ({ content: [{ type: "image", data: PNG, mimeType: "image/png" }] }));
  s.registerTool("test_audio_content", { description: "an audio result" }, async () => ({ content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] }));
  s.registerTool("test_embedded_resource", { description: "an embedded resource" }, async () => ({
    content: [{ type: "resource", resource: { uri: "test://embedded-resource", mimeType: "text/plain", text: "This is an embedded resource content." } }],
  }));
  s.registerTool("test_multiple_content_types", { description: "text, image and a resource" }, async () => ({
    content: [
      { type: "text", text: "Multiple content types test:" },
      { type: "image", data: PNG, mimeType: "image/png" },
      { type: "resource", resource: { uri: "test://mixed-content-resource", mimeType: "application/json", text: '{"test":"data","value":123}' } },
    ],
  }));
  s.registerTool("test_tool_with_logging", { description: "logs while it runs", inputSchema: {} }, async (_a, { sendNotification }) => {
    for (const data of ["Tool execution started", "Tool processing data", "Tool execution completed"]) {
      await sendNotification({ method: "notifications/message", params: { level: "info", data } });
      await sleep(20);
    }
    return text("Tool with logging executed successfully");
  });
  s.registerTool("test_tool_with_progress", { description: "reports progress", inputSchema: {} }, async (_a, { sendNotification, _meta }) => {
    const progressToken = _meta?.progressToken ?? 0;
    for (const progress of [0, 50, 100]) {
      await sendNotification({ method: "notifications/progress", params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` } });
      await sleep(20);
    }
    return text(String(progressToken));
  });
  s.registerTool("test_error_handling", { description: "fails" }, async () => {
    throw new Error("This tool intentionally returns an error for testing");
  });
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

  s.registerResource("static-text", "test://static-text", { mimeType: "text/plain", description: "static text" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "This is the content of the static text resource." }] }));
  s.registerResource("static-binary", "test://static-binary", { mimeType: "image/png", description: "static binary" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "image/png", blob: PNG }] }));
  s.registerResource("template", new ResourceTemplate("test://template/{id}/data", { list: undefined }), { mimeType: "application/json", description: "a template" },
    async (uri, { id }) => ({ contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] }));
  s.registerResource("watched-resource", "test://watched-resource", { mimeType: "text/plain", description: "subscribable" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "Watched resource content" }] }));

  s.registerPrompt("test_simple_prompt", { description: "no arguments" },
    () => ({ messages: [{ role: "user", content: { type: "text", text: "This is a simple prompt for testing." } }] }));
  s.registerPrompt("test_prompt_with_arguments", { description: "two arguments", argsSchema: { arg1: z.string(), arg2: z.string() } },
    ({ arg1, arg2 }) => ({ messages: [{ role: "user", content: { type: "text", text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }] }));
  s.registerPrompt("test_prompt_with_embedded_resource", { description: "a resource", argsSchema: { resourceUri: z.string() } },
    ({ resourceUri }) => ({ messages: [
      { role: "user", content: { type: "resource", resource: { uri: resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." } } },
      { role: "user", content: { type: "text", text: "Please process the embedded resource above." } },
    ] }));
  s.registerPrompt("test_prompt_with_image", { description: "an image" },
    () => ({ messages: [
      { role: "user", content: { type: "image", data: PNG, mimeType: "image/png" } },
      { role: "user", content: { type: "text", text: "Please analyze the image above." } },
    ] }));
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
