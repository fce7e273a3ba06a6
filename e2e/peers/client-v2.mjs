// A 2026-07-28 MCP client (the v2 TypeScript SDK), pinned to the stateless
// era, driven by the Go e2e tests:  node client-v2.mjs '<plan JSON>'
// plan: {"url": "...", "capabilities": {...}, "steps": [{"op": "listTools"} | {"op": "callTool", "name", "arguments"}]}
// Elicitations (InputRequiredResult) are answered {confirm: true}; a
// URL-mode one (capabilities {"elicitation": {"url": {}}}) is accepted,
// as a person who opened the page would, and recorded as "url:<url>".
// Prints one JSON line per step, then {"op": "done", "version"}.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const plan = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const elicited = [];
const client = new Client({ name: "agentpdp-e2e-v2", version: "1.0.0" },
  { capabilities: plan.capabilities ?? { elicitation: {} }, versionNegotiation: { mode: { pin: "2026-07-28" } } });
client.setRequestHandler("elicitation/create", async (req) => {
  if (req.params.mode === "url") {
    elicited.push(`url:${req.params.url}`);
    return { action: "accept" };
  }
  elicited.push(req.params.message);
  return { action: "accept", content: { confirm: true } };
});
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(plan.url)));
} catch (e) {
  out({ op: "connect", ok: false, error: String(e?.message ?? e) });
  process.exit(1);
}
for (const step of plan.steps ?? []) {
  try {
    const result = step.op === "listTools" ? await client.listTools()
      : await client.callTool({ name: step.name, arguments: step.arguments ?? {} });
    out({ op: step.op, ok: true, result, elicited: elicited.splice(0) });
  } catch (e) {
    out({ op: step.op, ok: false, error: String(e?.message ?? e), elicited: elicited.splice(0) });
  }
}
out({ op: "done", version: client.getNegotiatedProtocolVersion?.() ?? null });
await client.close();
