package mcpproxy

import (
	"context"
	"encoding/json"

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
func (s *Session) filterList(method string, f listFilter, id json.RawMessage, msg []byte) []byte {
	v, err := jcs.Decode(msg)
	if err != nil {
		s.log.Warn("refused an unreadable list result from the upstream", "method", method, "error", err)
		// Answered under the request's id (as the envelope read it), so
		// the client's request ends here rather than waiting on.
		return errorResponse(id, -32000, "the upstream's "+method+" result cannot be read: "+err.Error(), nil)
	}
	obj, _ := v.(map[string]any)
	res, ok := obj["result"].(map[string]any)
	if !ok {
		return msg // an error response: nothing to filter
	}
	items, ok := res[f.field].([]any)
	if !ok {
		return msg
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
		return msg // the bytes as the server sent them
	}
	res[f.field] = kept
	out, err := json.Marshal(obj)
	if err != nil {
		return errorResponse(obj["id"], -32000, "the filtered "+method+" result cannot be encoded", nil)
	}
	return out
}
