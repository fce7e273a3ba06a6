// Package mcpmsg reads MCP's JSON-RPC messages the one way both doors
// decide on them: strictly decoded (no duplicate or case-colliding member
// names), validated against JSON-RPC 2.0 and the MCP method list, and
// mapped to the pdp action (`mcp.<method>`, tool, arguments, resource), so
// the same message gets the same action, digest and decision through the
// MCP proxy and through Envoy. pdp itself knows nothing of MCP.
package mcpmsg

import (
	"fmt"
	"math"
	"strconv"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// JSON-RPC error codes a door answers with.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	// CodeHeaderMismatch: an MCP routing header disagrees with the body
	// (2026-07-28).
	CodeHeaderMismatch = -32020
)

// Error is a message a door refuses, with the JSON-RPC code to answer.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Rule is the built-in rule a door's refusal of the message is logged
// under: the same through either door.
func (e *Error) Rule() string {
	if e.Code == CodeHeaderMismatch {
		return "builtin#header-mismatch"
	}
	return "builtin#bad-request"
}

func errorf(code int, format string, a ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}

// Class says what a message is.
type Class uint8

const (
	Request Class = iota + 1
	Notification
	Response
)

// Message is one validated JSON-RPC message.
type Message struct {
	Class Class
	// ID is a string or an integral float64; nil for notifications.
	ID     any
	Method string
	// Params is nil when the message has none.
	Params map[string]any
	// Object is the whole decoded message.
	Object map[string]any
}

// envelope are JSON-RPC's member names: any other spelling of them is
// refused, since a case-insensitive reader would take it for them.
var envelope = jcs.Names("jsonrpc", "id", "method", "params", "result", "error")

// Parse strictly decodes b as one JSON-RPC message a client sent.
func (ms *Methods) Parse(b []byte) (*Message, error) {
	v, err := jcs.Decode(b)
	if err != nil {
		return nil, errorf(CodeParseError, "%v", err)
	}
	return ms.FromValue(v)
}

// FromValue validates v, decoded by jcs.Decode, as one JSON-RPC message a
// client sent. Batches are not messages: a door decides them element by
// element or refuses them.
func (ms *Methods) FromValue(v any) (*Message, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		if _, ok := v.([]any); ok {
			return nil, errorf(CodeInvalidRequest, "a JSON-RPC batch is not one message")
		}
		return nil, errorf(CodeInvalidRequest, "a JSON-RPC message is an object")
	}
	if err := exactNames(obj, envelope, "JSON-RPC"); err != nil {
		return nil, err
	}
	if obj["jsonrpc"] != "2.0" {
		return nil, errorf(CodeInvalidRequest, `"jsonrpc" must be "2.0"`)
	}
	m := &Message{Object: obj}
	idv, hasID := obj["id"]
	if hasID {
		switch id := idv.(type) {
		case string:
		case float64:
			if id != math.Trunc(id) || math.Abs(id) > 1<<53 {
				return nil, errorf(CodeInvalidRequest, `"id" must be a string or an integer`)
			}
		default:
			return nil, errorf(CodeInvalidRequest, `"id" must be a string or an integer`)
		}
		m.ID = idv
	}
	mv, hasMethod := obj["method"]
	_, hasResult := obj["result"]
	_, hasError := obj["error"]
	if !hasMethod {
		// A response to a server's request (sampling, elicitation, roots).
		if !hasID || hasResult == hasError {
			return nil, errorf(CodeInvalidRequest, `a JSON-RPC message needs "method", or "id" and one of "result" and "error"`)
		}
		if _, ok := obj["params"]; ok {
			return nil, errorf(CodeInvalidRequest, `a response has no "params"`)
		}
		m.Class = Response
		return m, nil
	}
	if hasResult || hasError {
		return nil, errorf(CodeInvalidRequest, `a message with "method" has no "result" or "error"`)
	}
	method, ok := mv.(string)
	if !ok || method == "" {
		return nil, errorf(CodeInvalidRequest, `"method" must be a non-empty string`)
	}
	m.Method = method
	flags, spec := methods[method]
	switch {
	case ms.extra[method]:
	case !spec:
		return nil, errorf(CodeMethodNotFound, "method %s is not in the MCP specification (a server's own method must be named in the configuration)", strconv.Quote(method))
	case flags&fromClient == 0:
		return nil, errorf(CodeInvalidRequest, "method %s is sent by servers, not clients", method)
	}
	// A message with an id and a method is a request, whatever its method
	// claims; a request method without an id is not a notification.
	switch {
	case hasID:
		m.Class = Request
	case spec && flags&isNotification == 0:
		return nil, errorf(CodeInvalidRequest, "%s is a request and needs an \"id\"", method)
	default:
		m.Class = Notification
	}
	switch p := obj["params"].(type) {
	case nil:
		if _, ok := obj["params"]; ok {
			return nil, errorf(CodeInvalidParams, `"params" must be an object`)
		}
	case map[string]any:
		m.Params = p
	default:
		return nil, errorf(CodeInvalidParams, `"params" must be an object`)
	}
	if err := m.checkParams(); err != nil {
		return nil, err
	}
	return m, nil
}

// paramNames are the params members the mapping reads.
var paramNames = jcs.Names("name", "arguments", "uri", "_meta")

// checkParams validates the params the action is built from.
func (m *Message) checkParams() error {
	if err := exactNames(m.Params, paramNames, m.Method+" params"); err != nil {
		return err
	}
	switch m.Method {
	case "tools/call", "prompts/get":
		if n, ok := m.Params["name"].(string); !ok || n == "" {
			return errorf(CodeInvalidParams, "MCP %s: params.name must be a non-empty string", m.Method)
		}
		switch m.Params["arguments"].(type) {
		case nil:
			if _, ok := m.Params["arguments"]; ok {
				return errorf(CodeInvalidParams, "MCP %s: params.arguments must be an object", m.Method)
			}
		case map[string]any:
		default:
			return errorf(CodeInvalidParams, "MCP %s: params.arguments must be an object", m.Method)
		}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		if u, ok := m.Params["uri"].(string); !ok || u == "" {
			return errorf(CodeInvalidParams, "MCP %s: params.uri must be a non-empty string", m.Method)
		}
	}
	if mv, ok := m.Params["_meta"]; ok {
		if _, ok := mv.(map[string]any); !ok {
			return errorf(CodeInvalidParams, "MCP %s: params._meta must be an object", m.Method)
		}
	}
	return nil
}

// exactNames refuses a member that is one of names in another case. (Two
// members that differ only in case never reach here: jcs.Decode refuses
// them.)
func exactNames(obj map[string]any, names map[string]string, where string) error {
	if k := jcs.OtherCase(obj, names); k != "" {
		return errorf(CodeInvalidRequest, "%s member %s: names are case-sensitive", where, strconv.Quote(k))
	}
	return nil
}

// Name is what the MCP routing header Mcp-Name carries for m: the tool or
// prompt name, the resource URI, or the task's id; "" for other methods.
func (m *Message) Name() string { return RoutingName(m.Method, m.Params) }

// RoutingName is the Mcp-Name of a request for method with params: the
// params member SEP-2243 (tools/call, prompts/get: name; resources/*: uri)
// and the tasks extension, SEP-2663 (tasks/get, tasks/update,
// tasks/cancel: taskId) have it mirror; "" for other methods or when that
// member is not a string.
func RoutingName(method string, params map[string]any) string {
	var v any
	switch method {
	case "tools/call", "prompts/get":
		v = params["name"]
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		v = params["uri"]
	case "tasks/get", "tasks/update", "tasks/cancel":
		v = params["taskId"]
	}
	s, _ := v.(string)
	return s
}

// Action fills a's kind, tool, arguments and resource from a request or
// notification (a response is no action: a's fields are left alone).
func (m *Message) Action(a *pdp.Action) {
	if m.Class == Response {
		return
	}
	a.Kind = "mcp." + m.Method
	switch m.Method {
	case "tools/call", "prompts/get":
		a.Tool = m.Name()
		if args, ok := m.Params["arguments"].(map[string]any); ok && len(args) > 0 {
			a.Arguments = args
		}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		a.Resource = m.Name()
	}
}

// Resembles reports whether a lenient server could read v, a value
// jcs.Decode returned, as a JSON-RPC message: an object with a member
// named jsonrpc in any case, or a method member (any case) naming one of
// ms's methods in any case; for an array, any of its elements. A body
// that resembles one must be a valid message, or be refused: it must not
// pass as a plain HTTP body.
func (ms *Methods) Resembles(v any) bool {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if ms.Resembles(e) {
				return true
			}
		}
	case map[string]any:
		for k, mv := range x {
			switch jcs.FoldName(k) {
			case "jsonrpc":
				return true
			case "method":
				if s, ok := mv.(string); ok && ms.resembles(s) {
					return true
				}
			}
		}
	}
	return false
}

// CheckHeaders compares the MCP routing headers a client sent (2026-07-28:
// Mcp-Method, Mcp-Name; header returns "", false when absent) with the
// body: a header that disagrees is refused before any evaluation.
func (m *Message) CheckHeaders(header func(name string) (string, bool)) error {
	if m.Class == Response {
		return nil
	}
	if hm, ok := header("mcp-method"); ok && hm != m.Method {
		return errorf(CodeHeaderMismatch, "Mcp-Method header %s does not match the body's method %s", strconv.Quote(hm), strconv.Quote(m.Method))
	}
	if hn, ok := header("mcp-name"); ok {
		if name := m.Name(); name != "" && hn != name {
			return errorf(CodeHeaderMismatch, "Mcp-Name header %s does not match the body's %s", strconv.Quote(hn), strconv.Quote(name))
		}
	}
	return nil
}
