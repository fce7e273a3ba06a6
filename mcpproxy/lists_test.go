package mcpproxy

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// The pins and the Mcp-Param declarations of a tools/list answer are what
// they were when each decoded the message passed on with encoding/json:
// the reference readers below are those decoders, and the door reads the
// list it decoded to filter it. Odd lists included: names matched
// case-insensitively, members of the wrong type, null, a result or tools
// member spelled in another case (refused: nothing observed).
func TestObservedToolsReadAsEncodingJSONDid(t *testing.T) {
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","description":"d <&> \u00e9","inputSchema":{"type":"object","properties":{"n":{"type":"number","x-mcp-header":"N","default":1.0,"maximum":1e21,"minimum":-0,"multipleOf":0.1},"s":{"type":"object","properties":{"t":{"x-mcp-header":"T"}}}}}},{"name":"b"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","Description":"D","InputSchema":{"properties":{"x":{"x-mcp-header":"X"}}}},{"name":"b","deſcription":"s","inputſchema":{"type":"object"}}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","description":7,"inputSchema":{"properties":{"x":{"x-mcp-header":"X"}}}},{"name":"b"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","inputSchema":"not a schema"},{"name":"b","inputSchema":{"properties":{"x":{"x-mcp-header":"X"}}}}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","description":null,"inputSchema":null},{"name":"b","inputSchema":[]}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[null,3,{"NAME":"n"},{"name":""},{"name":4},{"name":"ok","inputSchema":{}}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","inputSchema":{"properties":{"x":{"x-mcp-header":"X"}}}},{"name":"a","description":"again"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret_a","inputSchema":{"properties":{"x":{"x-mcp-header":"X"}}}},{"name":"b","description":"kept","inputSchema":{"required":["z","y"],"type":"object"}}]}}`,
		`{"jsonrpc":"2.0","id":1,"Result":{"tools":[null,{"Name":"u","inputSchema":{"properties":{"x":{"x-mcp-header":"X"}}}},{"name":"secret_v"}]}}`,
		`{"jsonrpc":"2.0","id":1,"Result":{"tools":[3,{"name":"u"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"Tools":[{"name":"u","description":"d"},{"name":"w","inputSchema":true}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"u"}}}`,
		`{"jsonrpc":"2.0","id":1,"result":"tools"}`,
		`{"jsonrpc":"2.0","id":1,"result":null}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}`,
	} {
		s, _, _, _ := newTestSession(t, nil, time.Second)
		out, list := s.filterList("tools/list", listFilters["tools/list"], json.RawMessage("1"), []byte(msg))
		wantParams, wantPins := refParamHeaders(out), refPins(out)
		params, pins := NewParamHeaders(), &Pins{pinned: map[string]map[string]string{}, current: map[string]map[string]string{}}
		if tools, ok := listedTools(list); ok {
			params.observe("srv", tools)
			if err := pins.observe("srv", tools); err != nil {
				t.Fatal(err)
			}
		}
		if got := params.tools["srv"]; len(got)+len(wantParams) > 0 && !reflect.DeepEqual(got, wantParams) {
			t.Errorf("%s\nparam headers %v, want %v", msg, got, wantParams)
		}
		if got := pins.current["srv"]; len(got)+len(wantPins) > 0 && !reflect.DeepEqual(got, wantPins) {
			t.Errorf("%s\npins %v, want %v", msg, got, wantPins)
		}
	}
}

// A list whose result or items member is spelled in another case is
// refused: a client that matches names case-insensitively would read it
// as the list, unfiltered.
func TestListOtherSpellingRefused(t *testing.T) {
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":1,"Result":{"tools":[{"name":"secret_v"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"Tools":[{"name":"secret_v"}]}}`,
		`{"jsonrpc":"2.0","id":1,"RESULT":null,"error":{"code":1,"message":"x"}}`,
	} {
		s, _, _, _ := newTestSession(t, nil, time.Second)
		out, list := s.filterList("tools/list", listFilters["tools/list"], json.RawMessage("7"), []byte(msg))
		var got struct {
			ID    int `json:"id"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(out, &got); err != nil || got.ID != 7 || got.Error == nil || got.Result != nil || list != nil {
			t.Errorf("%s\n→ %s (list %v)", msg, out, list)
		}
	}
	s, _, _, _ := newTestSession(t, nil, time.Second)
	ok := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}],"nextCursor":"c"}}`
	if out, _ := s.filterList("tools/list", listFilters["tools/list"], json.RawMessage("1"), []byte(ok)); string(out) != ok {
		t.Errorf("a plain list changed: %s", out)
	}
}

// refParamHeaders is how ParamHeaders read a tools/list answer: tool →
// declarations, nil where it recorded nothing.
func refParamHeaders(msg []byte) map[string][]paramHeader {
	var r struct {
		Result struct {
			Tools []struct {
				Name        string         `json:"name"`
				InputSchema map[string]any `json:"inputSchema"`
			} `json:"tools"`
		} `json:"result"`
	}
	if json.Unmarshal(msg, &r) != nil {
		return nil
	}
	out := map[string][]paramHeader{}
	for _, t := range r.Result.Tools {
		if t.Name != "" {
			var decls []paramHeader
			collectParamHeaders(t.InputSchema, nil, &decls)
			out[t.Name] = decls
		}
	}
	return out
}

// refPins is how Pins read a tools/list answer: tool → definition hash.
func refPins(msg []byte) map[string]string {
	var r struct {
		Result struct {
			Tools []json.RawMessage `json:"tools"`
		} `json:"result"`
	}
	if json.Unmarshal(msg, &r) != nil {
		return nil
	}
	out := map[string]string{}
	for _, raw := range r.Result.Tools {
		var t struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"inputSchema"`
		}
		if json.Unmarshal(raw, &t) != nil || t.Name == "" {
			continue
		}
		var canon []byte
		if len(t.InputSchema) > 0 {
			if canon, _ = jcs.Transform(t.InputSchema); canon == nil {
				canon = t.InputSchema
			}
		}
		out[t.Name] = definitionHash(t.Name, t.Description, canon)
	}
	return out
}
