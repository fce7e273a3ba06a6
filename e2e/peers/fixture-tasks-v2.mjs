// The tasks extension (SEP-2663, io.modelcontextprotocol/tasks) for
// fixture-server-v2.mjs: the fixtures the 0.2 suite's tasks-* scenarios
// call by name, and tasks/get, tasks/update and tasks/cancel over one
// in-process task store (every request gets a fresh McpServer; the tasks
// outlive it).
//
// The server decides which calls become tasks: a task-supporting tool
// called by a request whose client declared the extension (in its
// _meta clientCapabilities) answers a CreateTaskResult; without the
// declaration an optional-task tool runs synchronously and a
// required-task tool is refused with -32021. tasks/* are refused with
// -32021 too when the request's client did not declare the extension.
import { randomUUID } from "node:crypto";
import { z } from "zod";
import {
  CLIENT_CAPABILITIES_META_KEY, MissingRequiredClientCapabilityError, ProtocolError, ProtocolErrorCode, acceptedContent, inputRequired,
} from "@modelcontextprotocol/server";
import { nameForm, text } from "./fixture-basics.mjs";

export const TASKS = "io.modelcontextprotocol/tasks";
const TTL_MS = 5 * 60 * 1000;
const POLL_MS = 200;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const declares = (ctx) => (ctx.mcpReq.envelope?.[CLIENT_CAPABILITIES_META_KEY] ?? {}).extensions?.[TASKS] !== undefined;
const missing = () => new MissingRequiredClientCapabilityError({ requiredCapabilities: { extensions: { [TASKS]: {} } } });
const now = () => new Date().toISOString();

// taskId → task. A terminal task is dropped ttlMs after it was created.
const store = new Map();

class Cancelled extends Error {}

// A task's work gets ask(inputRequests) → the answers, once every request
// has one (tasks/update may answer them a few at a time), and a signal
// that aborts on tasks/cancel.
function createTask(work) {
  const task = {
    taskId: randomUUID(), status: "working", createdAt: now(), lastUpdatedAt: now(), ttlMs: TTL_MS, pollIntervalMs: POLL_MS,
    abort: new AbortController(), pending: undefined,
  };
  store.set(task.taskId, task);
  setTimeout(() => store.delete(task.taskId), TTL_MS).unref();
  const settle = (fields) => {
    if (TERMINAL.has(task.status)) return;
    Object.assign(task, fields, { lastUpdatedAt: now(), pending: undefined });
  };
  const ask = (requests) => new Promise((resolve, reject) => {
    task.pending = { requests: { ...requests }, answers: {}, resolve };
    task.status = "input_required";
    task.lastUpdatedAt = now();
    task.abort.signal.addEventListener("abort", () => reject(new Cancelled()), { once: true });
  });
  Promise.resolve()
    .then(() => work({ ask, signal: task.abort.signal }))
    .then((result) => settle({ status: "completed", result }))
    .catch((err) => {
      if (err instanceof Cancelled) return;
      settle({ status: "failed", error: { code: err instanceof ProtocolError ? err.code : ProtocolErrorCode.InternalError, message: String(err?.message ?? err) } });
    });
  return task;
}

// The flat CreateTaskResult (Result & Task).
const created = (t) => ({
  resultType: "task", taskId: t.taskId, status: t.status, createdAt: t.createdAt, lastUpdatedAt: t.lastUpdatedAt, ttlMs: t.ttlMs, pollIntervalMs: t.pollIntervalMs,
});

// tasks/get's DetailedTask: the result or error inlined once terminal,
// the still-unanswered input requests while input_required.
function detailed(t) {
  const d = { taskId: t.taskId, status: t.status, createdAt: t.createdAt, lastUpdatedAt: t.lastUpdatedAt, ttlMs: t.ttlMs, pollIntervalMs: t.pollIntervalMs };
  if (t.status === "completed") d.result = t.result;
  if (t.status === "failed") d.error = t.error;
  if (t.status === "input_required" && t.pending) d.inputRequests = t.pending.requests;
  return d;
}

const known = (taskId) => {
  const t = store.get(taskId);
  if (!t) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown taskId: ${taskId}`);
  return t;
};

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  if (signal?.aborted) { reject(new Cancelled()); return; }
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); reject(new Cancelled()); }, { once: true });
});

const askName = (message) => inputRequired.elicit(nameForm(message));
const askConfirm = (message) => inputRequired.elicit({
  message, requestedSchema: { type: "object", properties: { confirm: { type: "boolean" } }, required: ["confirm"] },
});
const accepted = (answer) => answer && typeof answer === "object" && answer.action === "accept" ? answer.content ?? {} : undefined;

// Registers the fixtures and the tasks/* methods on s; call after every
// other tool is registered (it wraps the SDK's tools/call handler).
export function tasks(s) {
  // taskSupport per tool: "optional" runs synchronously for a client
  // without the extension, "required" refuses it.
  const support = {};
  const tool = (name, config, taskSupport, work, sync) => {
    support[name] = taskSupport;
    const t = s.registerTool(name, config, async (args, ctx) => {
      if (!declares(ctx)) return sync(args, ctx);
      return created(createTask((io) => work(args, io)));
    });
    t.execution = { taskSupport };
  };

  s.registerTool("greet", { description: "sync only: says hello", inputSchema: z.object({ name: z.string() }) },
    async ({ name }) => text(`Hello, ${name}!`));

  const compute = async ({ seconds, label }, { signal } = {}) => {
    await sleep(seconds * 1000, signal);
    return text(`computed ${label ?? "result"} after ${seconds}s`);
  };
  tool("slow_compute", { description: "sleeps `seconds` seconds, then answers", inputSchema: z.object({ seconds: z.number().min(0).max(600), label: z.string().optional() }) },
    "optional", compute, (args) => compute(args));

  const failing = async (_args, { signal } = {}) => {
    await sleep(1000, signal);
    return { ...text("failing_job failed, as it always does"), isError: true };
  };
  const none = z.object({});
  tool("failing_job", { description: "a task that ends in a tool error after ~1s", inputSchema: none }, "required", failing, () => { throw missing(); });

  const broken = async (_args, { signal } = {}) => {
    await sleep(200, signal);
    throw new ProtocolError(ProtocolErrorCode.InternalError, "protocol_error_job broke down");
  };
  tool("protocol_error_job", { description: "a task that ends in a protocol error", inputSchema: none }, "required", broken, () => { throw missing(); });

  tool("confirm_delete", { description: "asks before deleting a file", inputSchema: z.object({ filename: z.string() }) }, "required",
    async ({ filename }, { ask }) => {
      const answers = await ask({ confirm: askConfirm(`Delete ${filename}?`) });
      return text(accepted(answers.confirm)?.confirm === true ? `Deleted ${filename}` : `Kept ${filename}`);
    }, () => { throw missing(); });

  tool("multi_input", { description: "asks two things at once", inputSchema: none }, "required",
    async (_args, { ask }) => {
      const answers = await ask({ name: askName(), confirm: askConfirm("Proceed?") });
      return text(`name=${accepted(answers.name)?.name ?? "?"} confirm=${accepted(answers.confirm)?.confirm ?? "?"}`);
    }, () => { throw missing(); });

  // MRTR, then a task: round 1 asks for a name in-band, round 2 (with
  // the answer) creates the task that greets it.
  support.test_tool_with_task = "required";
  s.registerTool("test_tool_with_task", { description: "asks a name, then greets it as a task" }, async (ctx) => {
    const name = acceptedContent(ctx.mcpReq.inputResponses, "user_name", z.object({ name: z.string() }))?.name;
    if (name === undefined) return inputRequired({ inputRequests: { user_name: askName() } });
    return created(createTask(async ({ signal }) => { await sleep(200, signal); return text(`Hello, ${name}!`); }));
  }).execution = { taskSupport: "required" };

  // A required-task tool from a client without the extension is a
  // JSON-RPC error (-32021), which a tool handler cannot answer (the SDK
  // turns a throw into a tool error): gate in front of the SDK's
  // tools/call handler. Not through setRequestHandler, which would wrap
  // the (already wrapped) handler again and seal requestState twice.
  const handlers = s.server._requestHandlers;
  const sdkCall = handlers.get("tools/call");
  handlers.set("tools/call", async (request, ctx) => {
    if (support[request.params?.name] === "required" && !declares(ctx)) throw missing();
    return sdkCall(request, ctx);
  });

  const byId = z.object({ taskId: z.string() }).passthrough();
  const gated = (handler) => async (params, ctx) => {
    if (!declares(ctx)) throw missing();
    return handler(params, ctx);
  };
  s.server.setRequestHandler("tasks/get", { params: byId }, gated(async ({ taskId }) => detailed(known(taskId))));
  // The SDK lifts inputResponses out of params into ctx.mcpReq (the
  // well-formed ones; it drops the rest).
  s.server.setRequestHandler("tasks/update", { params: byId },
    gated(async ({ taskId }, ctx) => {
      const inputResponses = ctx.mcpReq.inputResponses ?? {};
      const t = known(taskId), p = t.pending;
      if (t.status === "input_required" && p) {
        // Answers to requests the task is not waiting on are ignored.
        for (const [key, answer] of Object.entries(inputResponses)) {
          if (key in p.requests) { p.answers[key] = answer; delete p.requests[key]; }
        }
        t.lastUpdatedAt = now();
        if (Object.keys(p.requests).length === 0) {
          t.pending = undefined;
          t.status = "working";
          p.resolve(p.answers);
        }
      }
      return {};
    }));
  s.server.setRequestHandler("tasks/cancel", { params: byId }, gated(async ({ taskId }) => {
    const t = known(taskId);
    if (!TERMINAL.has(t.status)) {
      Object.assign(t, { status: "cancelled", lastUpdatedAt: now(), pending: undefined });
      t.abort.abort();
    }
    return {};
  }));
}
