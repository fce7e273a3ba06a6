package mcpproxy

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// listFilter says where a list result keeps its items and what names one.
type listFilter struct {
	field string // result member holding the items
	name  string // item member that names it
	// resource: the name is a URI (action.resource), not a tool or prompt
	// name (action.tool).
	resource bool
}

var listFilters = map[string]listFilter{
	"tools/list":               {field: "tools", name: "name"},
	"prompts/list":             {field: "prompts", name: "name"},
	"resources/list":           {field: "resources", name: "uri", resource: true},
	"resources/templates/list": {field: "resourceTemplates", name: "uriTemplate", resource: true},
}

// filterList asks the PDP about every item of a list result and keeps the
// ones it does not deny (a held item stays visible: calling it is what
// waits for a person). Each item is a logged decision with the list's
// kind and the item's name. What cannot be read is not passed on.
//
// It returns the message to pass on and that message decoded (its list
// holding only the items kept), so that what else reads the list on its
// way (observeTools) need not decode it again; nil where the door answers
// in the upstream's stead.
func (s *Session) filterList(method string, f listFilter, id json.RawMessage, msg []byte) ([]byte, map[string]any) {
	v, err := jcs.Decode(msg)
	if err != nil {
		return s.refuseList(method, id, "the upstream's "+method+" result cannot be read: "+err.Error()), nil
	}
	obj, _ := v.(map[string]any)
	res, _ := obj["result"].(map[string]any)
	// A reader that matches names case-insensitively (Go's encoding/json,
	// .NET) takes "Result" or "Tools" for the members filtered here: such
	// a list would reach it unfiltered. Refused, as the door refuses other
	// spellings of a client's JSON-RPC members.
	other := jcs.OtherCase(obj, resultName)
	if other == "" && res != nil {
		other = jcs.OtherCase(res, jcs.Names(f.field))
	}
	if other != "" {
		return s.refuseList(method, id, "the upstream's "+method+" result has a member "+strconv.Quote(other)+" a client may read as another"), nil
	}
	if res == nil {
		return msg, obj // an error response: nothing to filter
	}
	items, ok := res[f.field].([]any)
	if !ok {
		return msg, obj
	}
	kept := make([]any, 0, len(items))
	ctx := context.Background()
	for _, it := range items {
		m, _ := it.(map[string]any)
		name, _ := m[f.name].(string)
		in := doorInput(s.ident, s.opts.Server, s.id, s.source)
		in.Action.Kind = "mcp." + method
		if f.resource {
			in.Action.Resource = name
		} else {
			in.Action.Tool = name
		}
		if name == "" {
			refuse(ctx, s.opts, s.log, in, "builtin#bad-request", method+" item without "+f.name, "list item refused")
			continue
		}
		if d := s.opts.Decider.Decide(ctx, in); d.Effect == pdp.Allow || d.Effect == pdp.Approve {
			kept = append(kept, it)
		}
	}
	if len(kept) == len(items) {
		return msg, obj // the bytes as the server sent them
	}
	res[f.field] = kept
	out, err := json.Marshal(obj)
	if err != nil {
		return errorResponse(obj["id"], -32000, "the filtered "+method+" result cannot be encoded", nil), nil
	}
	return out, obj
}

// refuseList answers a list result the door will not pass on, as a
// logged decision, under the request's id (as the envelope read it) so
// the client's request ends here rather than waiting on.
func (s *Session) refuseList(method string, id json.RawMessage, why string) []byte {
	in := doorInput(s.ident, s.opts.Server, s.id, s.source)
	in.Action.Kind = "mcp." + method
	d := refuse(context.Background(), s.opts, s.log.With("method", method), in, "builtin#bad-upstream-answer", why, "list result refused")
	return errorResponse(id, -32000, why+" (decision "+d.ID+")", nil)
}

var resultName = jcs.Names("result")

// observeTools hands the tools of a tools/list result on its way to the
// client (msg: as filterList decoded it) to the Mcp-Param declarations and
// the pins, which read them as encoding/json would read the message
// (listedTools, member).
func (s *Session) observeTools(msg map[string]any) {
	tools, ok := listedTools(msg)
	if !ok || len(tools) == 0 {
		return
	}
	if s.opts.ParamHeaders != nil {
		s.opts.ParamHeaders.observe(s.opts.Server, tools)
	}
	if s.opts.Pins != nil {
		// Not fatal to the list: the pins hold in memory, but a restart
		// would pin the definitions again as first seen.
		if err := s.opts.Pins.observe(s.opts.Server, tools); err != nil {
			s.log.Error("tool definition pins not saved", "error", err)
		}
	}
}

// listedTools are a tools/list response's result.tools, read as
// encoding/json reads {"result":{"tools":[…]}} into a struct, which is how
// the pins and the Mcp-Param declarations were first read: names matched
// as member matches them, null as absent; ok is false where that reading
// fails (a result that is not an object, tools that are not an array).
func listedTools(msg map[string]any) (tools []any, ok bool) {
	res, ok := optional[map[string]any](msg, "result")
	if !ok {
		return nil, false
	}
	return optional[[]any](res, "tools")
}

// member is the member of m that encoding/json would unmarshal into a
// struct field named name: name itself, else the one name equal to it
// under case folding (jcs.Decode refuses an object with two such names).
func member(m map[string]any, name string) (any, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	if k := jcs.OtherCase(m, jcs.Names(name)); k != "" {
		return m[k], true
	}
	return nil, false
}

// optional reads member name of m as encoding/json reads it into a field
// of type T: the zero T when it is absent or null, ok false when it is of
// another type.
func optional[T any](m map[string]any, name string) (v T, ok bool) {
	x, _ := member(m, name)
	if x == nil {
		return v, true
	}
	v, ok = x.(T)
	return v, ok
}
