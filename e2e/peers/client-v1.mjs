// A real MCP client (the v1 TypeScript SDK) driven by the Go e2e tests:
//   node client-v1.mjs '<plan JSON>'
// plan: {"transport": "stdio", "command": "...", "args": [...]}
//    or {"transport": "http" | "sse", "url": "...", "headers": {...}}
//   "elicit": {...}   content to accept an elicitation with (else decline)
//   "steps": [{"op": "listTools"} | {"op": "callTool", "name", "arguments", "progress": true}
//             | {"op": "listResources"} | {"op": "readResource", "uri"} | {"op": "listPrompts"}
//             | {"op": "getPrompt", "name", "arguments"} | {"op": "ping"}
//             | {"op": "waitFile", "path"}]   (go on once the test creates path)
// Prints one JSON line per step: {"op", "ok", "result" | "error", "progress"}, then
// {"op": "done", "serverVersion", "protocolVersion"}.
import fs from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const plan = JSON.parse(process.argv[2]);
const client = new Client(
  { name: "agentpdp-e2e-v1", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
);
client.setRequestHandler(CreateMessageRequestSchema, async () => ({
  model: "e2e-model", role: "assistant", content: { type: "text", text: "sampled by the e2e client" },
}));
client.setRequestHandler(ElicitRequestSchema, async () =>
  plan.elicit ? { action: "accept", content: plan.elicit } : { action: "decline" });
client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: "file:///e2e-root", name: "e2e" }] }));

const transport = plan.transport === "stdio"
  ? new StdioClientTransport({ command: plan.command, args: plan.args ?? [], env: { ...process.env, ...(plan.env ?? {}) }, stderr: "inherit" })
  : plan.transport === "sse"
    ? new SSEClientTransport(new URL(plan.url), { requestInit: { headers: plan.headers ?? {} } })
    : new StreamableHTTPClientTransport(new URL(plan.url), { requestInit: { headers: plan.headers ?? {} } });

// waitFile resolves once path exists: the test says when to go on (a
// browser ready to watch, say) without the client sleeping.
const waitFile = (path) => new Promise((resolve) => {
  const check = () => (fs.existsSync(path) ? resolve({ path }) : setTimeout(check, 20));
  check();
});

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
try {
  await client.connect(transport);
} catch (e) {
  out({ op: "connect", ok: false, error: String(e?.message ?? e) });
  process.exit(1);
}
for (const step of plan.steps ?? []) {
  const progress = [];
  const opts = step.progress ? { onprogress: (p) => progress.push(p) } : undefined;
  try {
    let result;
    switch (step.op) {
      case "listTools": result = await client.listTools(); break;
      case "callTool": result = await client.callTool({ name: step.name, arguments: step.arguments ?? {} }, undefined, opts); break;
      case "listResources": result = await client.listResources(); break;
      case "readResource": result = await client.readResource({ uri: step.uri }); break;
      case "listPrompts": result = await client.listPrompts(); break;
      case "getPrompt": result = await client.getPrompt({ name: step.name, arguments: step.arguments ?? {} }); break;
      case "ping": result = await client.ping(); break;
      case "waitFile": result = await waitFile(step.path); break;
      default: throw new Error("unknown op " + step.op);
    }
    out({ op: step.op, ok: true, result, progress });
  } catch (e) {
    out({ op: step.op, ok: false, error: String(e?.message ?? e), code: e?.code, data: e?.data, progress });
  }
}
out({ op: "done", serverVersion: client.getServerVersion(), protocolVersion: transport.protocolVersion ?? null });
await client.close();
