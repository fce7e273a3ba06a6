package mcpmsg

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		class      Class
		action     pdp.Action
	}{
		{"tools/call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"title":"x"}}}`, Request,
			pdp.Action{Kind: "mcp.tools/call", Tool: "create_issue", Arguments: map[string]any{"title": "x"}}},
		{"string id, no arguments", `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"ping"}}`, Request, pdp.Action{Kind: "mcp.tools/call", Tool: "ping"}},
		{"prompts/get", `{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"review","arguments":{"pr":"42"}}}`, Request,
			pdp.Action{Kind: "mcp.prompts/get", Tool: "review", Arguments: map[string]any{"pr": "42"}}},
		{"resources/read", `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a"}}`, Request, pdp.Action{Kind: "mcp.resources/read", Resource: "file:///a"}},
		{"resources/unsubscribe", `{"jsonrpc":"2.0","id":3,"method":"resources/unsubscribe","params":{"uri":"file:///a"}}`, Request, pdp.Action{Kind: "mcp.resources/unsubscribe", Resource: "file:///a"}},
		{"tools/list", `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`, Request, pdp.Action{Kind: "mcp.tools/list"}},
		{"server/discover", `{"jsonrpc":"2.0","id":4,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, Request, pdp.Action{Kind: "mcp.server/discover"}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, Notification, pdp.Action{Kind: "mcp.notifications/initialized"}},
		{"an id makes a request", `{"jsonrpc":"2.0","id":5,"method":"notifications/progress","params":{}}`, Request, pdp.Action{Kind: "mcp.notifications/progress"}},
		{"a client's answer", `{"jsonrpc":"2.0","id":6,"result":{"content":[]}}`, Response, pdp.Action{}},
		{"a client's error answer", `{"jsonrpc":"2.0","id":"s1","error":{"code":-1,"message":"no"}}`, Response, pdp.Action{}},
		{"an unknown member is ignored", `{"jsonrpc":"2.0","id":7,"method":"ping","x-trace":"1"}`, Request, pdp.Action{Kind: "mcp.ping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Spec.Parse([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var a pdp.Action
			m.Action(&a)
			if m.Class != tc.class || !reflect.DeepEqual(a, tc.action) {
				t.Errorf("class %d action %+v, want %d %+v", m.Class, a, tc.class, tc.action)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"not JSON", `{"jsonrpc":`, CodeParseError, "unexpected end"},
		{"duplicate member", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, CodeParseError, "duplicate"},
		{"case collision", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","NAME":"b"}}`, CodeParseError, "differ only in case"},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, CodeInvalidRequest, "batch"},
		{"not an object", `"ping"`, CodeInvalidRequest, "object"},
		{"no jsonrpc", `{"id":1,"method":"ping"}`, CodeInvalidRequest, `"2.0"`},
		{"jsonrpc a number", `{"jsonrpc":2.0,"id":1,"method":"ping"}`, CodeInvalidRequest, `"2.0"`},
		{"Method", `{"jsonrpc":"2.0","id":1,"Method":"ping"}`, CodeInvalidRequest, "case-sensitive"},
		{"ID", `{"jsonrpc":"2.0","ID":1,"method":"ping"}`, CodeInvalidRequest, "case-sensitive"},
		{"Name in params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"x"}}`, CodeInvalidRequest, "case-sensitive"},
		{"URI in params", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"URI":"file:///x"}}`, CodeInvalidRequest, "case-sensitive"},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"tools/execute"}`, CodeMethodNotFound, "not in the MCP specification"},
		{"method in another case", `{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"x"}}`, CodeMethodNotFound, "not in the MCP specification"},
		{"a server's method", `{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{}}`, CodeInvalidRequest, "sent by servers"},
		{"request without id", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}`, CodeInvalidRequest, "needs an"},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, CodeInvalidRequest, `"id"`},
		{"fractional id", `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, CodeInvalidRequest, `"id"`},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, CodeInvalidRequest, `"id"`},
		{"empty method", `{"jsonrpc":"2.0","id":1,"method":""}`, CodeInvalidRequest, "non-empty"},
		{"method and result", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, CodeInvalidRequest, "result"},
		{"result and error", `{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, CodeInvalidRequest, "one of"},
		{"response with params", `{"jsonrpc":"2.0","id":1,"result":{},"params":{}}`, CodeInvalidRequest, "params"},
		{"params an array", `{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}`, CodeInvalidParams, "params"},
		{"params null", `{"jsonrpc":"2.0","id":1,"method":"ping","params":null}`, CodeInvalidParams, "params"},
		{"tool without name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`, CodeInvalidParams, "params.name"},
		{"tool name a number", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`, CodeInvalidParams, "params.name"},
		{"arguments a string", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":"rm -rf /"}}`, CodeInvalidParams, "arguments"},
		{"arguments null", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x","arguments":null}}`, CodeInvalidParams, "arguments"},
		{"uri missing", `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{}}`, CodeInvalidParams, "params.uri"},
		{"_meta not an object", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":1}}`, CodeInvalidParams, "_meta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Spec.Parse([]byte(tc.body))
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("Parse = %v, want code %d mentioning %q", err, tc.code, tc.msg)
			}
		})
	}
}

func TestExtraMethods(t *testing.T) {
	ms := NewMethods([]string{"acme/deploy"})
	m, err := ms.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"acme/deploy","params":{"env":"prod"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var a pdp.Action
	m.Action(&a)
	if a.Kind != "mcp.acme/deploy" {
		t.Errorf("kind = %q", a.Kind)
	}
	// A server's own method without an id is its notification.
	if m, err := ms.Parse([]byte(`{"jsonrpc":"2.0","method":"acme/deploy"}`)); err != nil || m.Class != Notification {
		t.Errorf("an extra method without id: %v %v", m, err)
	}
	if _, err := Spec.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"acme/deploy"}`)); err == nil {
		t.Error("Spec accepted a method nobody configured")
	}
}

func TestResembles(t *testing.T) {
	ms := NewMethods([]string{"acme/deploy"})
	for body, want := range map[string]bool{
		`{"jsonrpc":"2.0"}`:                 true,
		`{"JsonRpc":"1.0"}`:                 true,
		`{"method":"tools/call"}`:           true,
		`{"METHOD":"TOOLS/CALL"}`:           true,
		`{"method":"Acme/Deploy"}`:          true,
		`[1,{"method":"ping"}]`:             true,
		`{"method":"card","amount":5}`:      false,
		`{"method":5}`:                      false,
		`{"params":{"jsonrpc":"2.0"}}`:      false, // only the top level is a message
		`[1,2,3]`:                           false,
		`"jsonrpc"`:                         false,
		`{"payment":{"method":"transfer"}}`: false,
	} {
		v, err := decode(body)
		if err != nil {
			t.Fatal(err)
		}
		if got := ms.Resembles(v); got != want {
			t.Errorf("Resembles(%s) = %v, want %v", body, got, want)
		}
	}
}

func TestCheckHeaders(t *testing.T) {
	m, err := Spec.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue"}}`))
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	if err := m.CheckHeaders(hdr("mcp-method", "tools/call", "mcp-name", "create_issue")); err != nil {
		t.Errorf("matching headers: %v", err)
	}
	if err := m.CheckHeaders(hdr()); err != nil {
		t.Errorf("no headers: %v", err)
	}
	for _, h := range [][]string{{"mcp-method", "tools/list"}, {"mcp-name", "delete_repo"}, {"mcp-method", "Tools/Call"}} {
		var e *Error
		if err := m.CheckHeaders(hdr(h...)); !errors.As(err, &e) || e.Code != CodeHeaderMismatch {
			t.Errorf("%v: %v, want HeaderMismatch", h, err)
		}
	}
}

// Mcp-Name mirrors the params member SEP-2243 and the tasks extension
// (SEP-2663) name, per method; a tasks/get's header must match its taskId.
func TestRoutingName(t *testing.T) {
	for _, c := range []struct {
		body, want string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue"}}`, "create_issue"},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}`, "p"},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}`, "file:///a"},
		{`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t-1"}}`, "t-1"},
		{`{"jsonrpc":"2.0","id":1,"method":"tasks/cancel","params":{"taskId":"t-2"}}`, "t-2"},
		{`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":7}}`, ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tasks/update","params":{"taskId":"t-4","inputResponses":{}}}`, "t-4"},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}`, ""},
	} {
		m, err := Spec.Parse([]byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Name(); got != c.want {
			t.Errorf("%s: Name() = %q, want %q", c.body, got, c.want)
		}
	}
	if got := RoutingName("tasks/update", map[string]any{"taskId": "t-3"}); got != "t-3" {
		t.Errorf("tasks/update: %q", got)
	}
	m, _ := Spec.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t-1"}}`))
	var e *Error
	if err := m.CheckHeaders(func(k string) (string, bool) { return "t-9", k == "mcp-name" }); !errors.As(err, &e) || e.Code != CodeHeaderMismatch {
		t.Errorf("tasks/get with another task's Mcp-Name: %v, want HeaderMismatch", err)
	}
}

// Every method is sent by someone, and notifications are named so.
func TestMethodTable(t *testing.T) {
	for name, f := range methods {
		if f&(fromClient|fromServer) == 0 {
			t.Errorf("%s: nobody sends it", name)
		}
		if (f&isNotification != 0) != strings.HasPrefix(name, "notifications/") {
			t.Errorf("%s: notification flag %v", name, f&isNotification != 0)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_issue","arguments":{"repo":"a/b","title":"flaky test"}}}`)
	b.ReportAllocs()
	for b.Loop() {
		m, err := Spec.Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		var a pdp.Action
		m.Action(&a)
	}
}

func decode(s string) (any, error) { return jcs.Decode([]byte(s)) }
