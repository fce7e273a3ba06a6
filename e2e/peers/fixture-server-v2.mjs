// A stateless (2026-07-28) MCP server on the v2 TypeScript SDK with the
// fixtures the 0.2 conformance suite calls by name for multi-round-trip
// requests (SEP-2322, the input-required-result-* scenarios) and for
// server-stateless (SEP-2575), so conformance parity compares checks that
// exercise InputRequiredResult/requestState through agentpdp.
//   PORT=... [LEGACY=stateless|reject] node fixture-server-v2.mjs
// (127.0.0.1 only, path /mcp). Also has server-v2.mjs's echo tool and the
// suite's basic tools, resources and prompts (fixture-basics.mjs).
//
// Every requestState this server mints is HMAC-signed with a per-process
// key (the SDK's createRequestStateCodec) and verified before a handler
// runs: a tampered or foreign state is refused with -32602.
import http from "node:http";
import { randomBytes } from "node:crypto";
import { z } from "zod";
import {
  McpServer, ResourceTemplate, createMcpHandler, createRequestStateCodec, inputRequired, acceptedContent, completable, fromJsonSchema,
  CLIENT_CAPABILITIES_META_KEY,
} from "@modelcontextprotocol/server";
import { toNodeHandler, localhostHostValidation } from "@modelcontextprotocol/node";
import { tasks, TASKS } from "./fixture-tasks-v2.mjs";
import { basics, nameForm, text } from "./fixture-basics.mjs";

const codec = createRequestStateCodec({ key: randomBytes(32), bind: (ctx) => ctx.mcpReq.method });

// What the v2 SDK's registrations look like where fixture-basics.mjs
// needs them.
const v2 = {
  ResourceTemplate,
  notifyingTool: (s, name, description, run) => s.registerTool(name, { description }, async (ctx) => run((n) => ctx.mcpReq.notify(n), ctx.mcpReq._meta)),
  promptArgs: (shape) => z.object(shape),
  completable,
};

// The embedded requests, as the suite's scenario descriptions spell them.
const askName = (message) => inputRequired.elicit(nameForm(message));
const askOk = (message) => inputRequired.elicit({
  message, requestedSchema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
});
const ask = (text, maxTokens) => inputRequired.createMessage({
  messages: [{ role: "user", content: { type: "text", text } }], maxTokens,
});
const nameOf = (responses, key) => acceptedContent(responses, key, z.object({ name: z.string() }))?.name;
// A sampling answer (CreateMessageResult) or a roots answer (ListRootsResult).
const sampled = (responses, key) => {
  const r = responses?.[key];
  return r && typeof r === "object" && r.content && typeof r.content === "object" ? String(r.content.text ?? "") : undefined;
};
const roots = (responses, key) => {
  const r = responses?.[key];
  return r && typeof r === "object" && Array.isArray(r.roots) ? r.roots : undefined;
};
// The payload of a verified state (the codec already checked its MAC).
const state = (ctx) => ctx.mcpReq.requestState();
const caps = (ctx) => ctx.mcpReq.envelope?.[CLIENT_CAPABILITIES_META_KEY] ?? {};
// A verified state minted for another tool (the codec binds it to the method only).
const foreign = () => ({ ...text("requestState was minted for another tool"), isError: true });

// A tool handler that asks for a name, then greets it.
const greet = async (ctx) => {
  const name = nameOf(ctx.mcpReq.inputResponses, "user_name");
  if (name === undefined) return inputRequired({ inputRequests: { user_name: askName() } });
  return text(`Hello, ${name}!`);
};
// A tool handler that asks for a confirmation under a requestState minted
// for tool, then answers done(the confirmation) if the state is tool's.
const confirmed = (tool, done) => async (ctx) => {
  const ok = acceptedContent(ctx.mcpReq.inputResponses, "confirm", z.object({ ok: z.boolean() }));
  const st = state(ctx);
  if (ok === undefined || st === undefined) {
    return inputRequired({
      inputRequests: { confirm: askOk("Please confirm") },
      requestState: await codec.mint({ tool }, ctx),
    });
  }
  if (st.tool !== tool) return foreign();
  return done(ok);
};

function server() {
  const s = new McpServer(
    { name: "agentpdp-e2e-v2-fixture", version: "1.0.0" },
    {
      capabilities: {
        tools: { listChanged: true }, prompts: { listChanged: true }, resources: {}, logging: {}, completions: {},
        extensions: { [TASKS]: {} },
      },
      requestState: { verify: codec.verify },
    },
  );
  s.registerTool("echo", { description: "echoes", inputSchema: z.object({ message: z.string() }) },
    async ({ message }) => text(`echo: ${message}`));
  basics(s, v2);

  // input-required-result-basic-elicitation, -missing-input-response,
  // -result-type, -ignore-extra-params, -validate-input.
  s.registerTool("test_input_required_result_elicitation", { description: "asks for a name (SEP-2322)" }, greet);
  s.registerTool("test_input_required_result_sampling", { description: "asks the client's model" }, async (ctx) => {
    const answer = sampled(ctx.mcpReq.inputResponses, "capital_question");
    if (answer === undefined) return inputRequired({ inputRequests: { capital_question: ask("What is the capital of France?", 100) } });
    return text(`Sampling said: ${answer}`);
  });
  s.registerTool("test_input_required_result_list_roots", { description: "asks for the client's roots" }, async (ctx) => {
    const got = roots(ctx.mcpReq.inputResponses, "client_roots");
    if (got === undefined) return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
    return text(`Roots: ${got.map((r) => r.uri).join(", ")}`);
  });
  s.registerTool("test_input_required_result_request_state", { description: "round-trips requestState" },
    confirmed("request_state", (ok) => text(`state-ok: confirmed=${ok.ok}`)));
  s.registerTool("test_input_required_result_multiple_inputs", { description: "asks three things at once" }, async (ctx) => {
    const rs = ctx.mcpReq.inputResponses;
    const name = nameOf(rs, "user_name"), greeting = sampled(rs, "greeting"), got = roots(rs, "client_roots");
    if (name === undefined || greeting === undefined || got === undefined || state(ctx)?.tool !== "multiple_inputs") {
      return inputRequired({
        inputRequests: { user_name: askName(), greeting: ask("Generate a greeting", 50), client_roots: inputRequired.listRoots() },
        requestState: await codec.mint({ tool: "multiple_inputs" }, ctx),
      });
    }
    return text(`${greeting} ${name} (${got.length} roots)`);
  });
  s.registerTool("test_input_required_result_multi_round", { description: "asks twice" }, async (ctx) => {
    const st = state(ctx), rs = ctx.mcpReq.inputResponses;
    if (st?.tool === "multi_round" && st.round === 2) {
      const color = acceptedContent(rs, "step2", z.object({ color: z.string() }))?.color;
      if (color !== undefined) return text(`${st.name} likes ${color}`);
    }
    if (st?.tool === "multi_round" && st.round === 1) {
      const name = nameOf(rs, "step1");
      if (name !== undefined) {
        return inputRequired({
          inputRequests: { step2: inputRequired.elicit({
            message: "Step 2: What is your favorite color?",
            requestedSchema: { type: "object", properties: { color: { type: "string" } }, required: ["color"] },
          }) },
          requestState: await codec.mint({ tool: "multi_round", round: 2, name }, ctx),
        });
      }
    }
    return inputRequired({
      inputRequests: { step1: askName("Step 1: What is your name?") },
      requestState: await codec.mint({ tool: "multi_round", round: 1 }, ctx),
    });
  });
  // The codec refuses a tampered state before this handler runs.
  s.registerTool("test_input_required_result_tampered_state", { description: "signs its requestState" },
    confirmed("tampered_state", () => text("integrity-ok")));
  // Asks only for the kinds of input the request's client declared.
  s.registerTool("test_input_required_result_capabilities", { description: "asks only what the client can answer" }, async (ctx) => {
    const rs = ctx.mcpReq.inputResponses;
    if (rs && Object.keys(rs).length > 0) return text(`capabilities-ok: ${Object.keys(rs).sort().join(",")}`);
    const c = caps(ctx), want = {};
    if (c.sampling) want.capital_question = ask("What is the capital of France?", 100);
    if (c.elicitation) want.user_name = askName();
    if (c.roots) want.client_roots = inputRequired.listRoots();
    if (Object.keys(want).length === 0) return text("capabilities-ok: the client declared none of sampling, elicitation, roots");
    return inputRequired({ inputRequests: want });
  });
  s.registerPrompt("test_input_required_result_prompt", { description: "asks for context first" }, async (ctx) => {
    const got = acceptedContent(ctx.mcpReq.inputResponses, "user_context", z.object({ context: z.string() }));
    if (got === undefined) {
      return inputRequired({ inputRequests: { user_context: inputRequired.elicit({
        message: "What context should the prompt use?",
        requestedSchema: { type: "object", properties: { context: { type: "string" } }, required: ["context"] },
      }) } });
    }
    return { messages: [{ role: "user", content: { type: "text", text: `Use this context: ${got.context}` } }] };
  });

  // server-stateless (SEP-2575). Asking for an input kind the request's
  // client did not declare makes the SDK answer -32021 (HTTP 400) with
  // data.requiredCapabilities naming it.
  s.registerTool("test_missing_capability", { description: "needs the sampling capability" }, async (ctx) => {
    const answer = sampled(ctx.mcpReq.inputResponses, "question");
    if (answer === undefined) return inputRequired({ inputRequests: { question: ask("Say something", 20) } });
    return text(`sampled: ${answer}`);
  });
  s.registerTool("test_streaming_elicitation", { description: "elicits on the request's own response" }, greet);
  // Logs only when the request asked for a log level (the SDK filters).
  s.registerTool("test_logging_tool", { description: "logs while it runs" }, async (ctx) => {
    for (const data of ["started", "working", "done"]) await ctx.mcpReq.log("info", data, "test_logging_tool");
    return text("logged");
  });

  // The client-side MRTR tools (the suite's own mock server has them for
  // client scenarios; here they keep the names meaning the same).
  s.registerTool("test_mrtr_echo_state", { description: "asks once, with requestState" }, async (ctx) => {
    if (ctx.mcpReq.inputResponses?.confirm !== undefined && state(ctx)?.tool === "mrtr_echo_state") return text("state echoed");
    return inputRequired({
      inputRequests: { confirm: inputRequired.elicit({ message: "Please confirm to continue", requestedSchema: { type: "object", properties: { confirmed: { type: "boolean" } } } }) },
      requestState: await codec.mint({ tool: "mrtr_echo_state" }, ctx),
    });
  });
  s.registerTool("test_mrtr_no_state", { description: "asks once, without requestState" }, async (ctx) => {
    if (ctx.mcpReq.inputResponses?.confirm !== undefined) return text("answered");
    return inputRequired({ inputRequests: { confirm: inputRequired.elicit({ message: "Please confirm", requestedSchema: { type: "object", properties: { confirmed: { type: "boolean" } } } }) } });
  });
  s.registerTool("test_mrtr_unrelated", { description: "a plain tool" }, async () => text("unrelated"));
  s.registerTool("test_mrtr_no_result_type", { description: "a plain result" }, async () => text("complete by default"));

  // http-custom-header-server-validation (SEP-2243): a parameter the
  // client mirrors into an Mcp-Param-Region header, which the SDK checks
  // against the body.
  s.registerTool("test_custom_header", {
    description: "a parameter mirrored into Mcp-Param-Region",
    inputSchema: fromJsonSchema({
      type: "object", properties: { region: { type: "string", "x-mcp-header": "Region" }, note: { type: "string" } }, required: ["region"],
    }),
  }, async ({ region }) => text(`region: ${region}`));
  // json-schema-2020-12 (SEP-1613, SEP-2106): listed as written.
  s.registerTool("json_schema_2020_12_tool", { description: "Tool with JSON Schema 2020-12 features", inputSchema: fromJsonSchema(SCHEMA_2020_12) },
    async (args) => text(`got ${JSON.stringify(args)}`));
  // server-stateless's subscriptions/listen checks: a call that changes
  // the tool (prompt) list, announced on the open listen streams.
  s.registerTool("test_trigger_tool_change", { description: "announces a tools/list change" }, async () => {
    handler.notify.toolsChanged();
    return text("tools changed");
  });
  s.registerTool("test_trigger_prompt_change", { description: "announces a prompts/list change" }, async () => {
    handler.notify.promptsChanged();
    return text("prompts changed");
  });
  tasks(s);
  return s;
}

const SCHEMA_2020_12 = {
  $schema: "https://json-schema.org/draft/2020-12/schema", type: "object",
  $defs: { address: { $anchor: "addressDef", type: "object", properties: { street: { type: "string" }, city: { type: "string" } } } },
  properties: {
    name: { type: "string" }, address: { $ref: "#/$defs/address" }, contactMethod: { type: "string", enum: ["phone", "email"] },
    phone: { type: "string" }, email: { type: "string" },
  },
  allOf: [{ anyOf: [{ required: ["phone"] }, { required: ["email"] }] }],
  if: { properties: { contactMethod: { const: "phone" } }, required: ["contactMethod"] }, then: { required: ["phone"] }, else: { required: ["email"] },
  additionalProperties: false,
};

const handler = createMcpHandler(server, { legacy: process.env.LEGACY ?? "stateless" });
const node = toNodeHandler(handler);
const hostOK = localhostHostValidation(); // DNS-rebinding protection: 403 for a foreign Host
const PORT = Number(process.env.PORT ?? 3000);
http.createServer((req, res) => {
  if (new URL(req.url, "http://x").pathname !== "/mcp") { res.writeHead(404).end(); return; }
  if (hostOK(req, res)) node(req, res);
}).listen(PORT, "127.0.0.1", () => console.log(`v2 fixture server listening on 127.0.0.1:${PORT}`));
