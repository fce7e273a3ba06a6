// What the fixture servers share: the tools, resources and prompts of the
// @modelcontextprotocol/conformance suite's tools-call-*, resources-* and
// prompts-get-* scenarios, which fixture-server.mjs (v1 SDK) and
// fixture-server-v2.mjs (v2 SDK) both serve, and the small pieces the v2
// fixtures (fixture-server-v2.mjs, fixture-tasks-v2.mjs) have in common.
// It imports no SDK: each server passes in what differs between the SDKs.
import { z } from "zod";

export const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
export const WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

// A tool result of one text.
export const text = (t) => ({ content: [{ type: "text", text: t }] });

// The form an elicitation asking for a name shows (the suite's scenarios
// spell it so).
export const nameForm = (message = "What is your name?") => ({
  message, requestedSchema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
});

// basics registers the suite's basic tools, resources and prompts on s, an
// McpServer of either SDK. sdk is what differs between the two:
//   ResourceTemplate                        the SDK's class
//   notifyingTool(s, name, description, run) registers a tool without
//       arguments whose run(notify, _meta) sends notifications while it runs
//   promptArgs(shape)                       a prompt's argsSchema from a zod shape
//   completable(schema, complete)           (optional) the SDK's completable
// Those that need a server-to-client request on a 2025-era connection
// (test_sampling, test_elicitation*) are not here: a stateless server
// cannot make one.
export function basics(s, sdk) {
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
  sdk.notifyingTool(s, "test_tool_with_logging", "logs while it runs", async (notify) => {
    for (const data of ["Tool execution started", "Tool processing data", "Tool execution completed"]) {
      await notify({ method: "notifications/message", params: { level: "info", data } });
    }
    return text("Tool with logging executed successfully");
  });
  sdk.notifyingTool(s, "test_tool_with_progress", "reports progress", async (notify, _meta) => {
    const progressToken = _meta?.progressToken ?? 0;
    for (const progress of [0, 50, 100]) {
      await notify({ method: "notifications/progress", params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` } });
    }
    return text(String(progressToken));
  });
  s.registerTool("test_error_handling", { description: "fails" }, async () => {
    throw new Error("This tool intentionally returns an error for testing");
  });

  s.registerResource("static-text", "test://static-text", { mimeType: "text/plain", description: "static text" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "This is the content of the static text resource." }] }));
  s.registerResource("static-binary", "test://static-binary", { mimeType: "image/png", description: "static binary" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "image/png", blob: PNG }] }));
  s.registerResource("template", new sdk.ResourceTemplate("test://template/{id}/data", { list: undefined }), { mimeType: "application/json", description: "a template" },
    async (uri, { id }) => ({ contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] }));

  const say = (...parts) => ({ messages: parts.map((content) => ({ role: "user", content })) });
  s.registerPrompt("test_simple_prompt", { description: "no arguments" },
    async () => say({ type: "text", text: "This is a simple prompt for testing." }));
  // completion-complete completes arg1, where the SDK can.
  const words = ["paris", "park", "party", "test", "testing"];
  const arg1 = sdk.completable ? sdk.completable(z.string(), (value) => words.filter((v) => v.startsWith(value))) : z.string();
  s.registerPrompt("test_prompt_with_arguments", { description: "two arguments", argsSchema: sdk.promptArgs({ arg1, arg2: z.string() }) },
    async ({ arg1, arg2 }) => say({ type: "text", text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` }));
  s.registerPrompt("test_prompt_with_embedded_resource", { description: "a resource", argsSchema: sdk.promptArgs({ resourceUri: z.string() }) },
    async ({ resourceUri }) => say(
      { type: "resource", resource: { uri: resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." } },
      { type: "text", text: "Please process the embedded resource above." }));
  s.registerPrompt("test_prompt_with_image", { description: "an image" },
    async () => say({ type: "image", data: PNG, mimeType: "image/png" }, { type: "text", text: "Please analyze the image above." }));
}
