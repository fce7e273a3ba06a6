package pdp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

// Every DecodeInput error points at the byte to fix. at is the text that
// starts there (its first occurrence in src), or "$" for the end of the
// text.
func TestDecodeInputErrorsAreLocated(t *testing.T) {
	for _, tc := range []struct {
		name, src, at, msg string
	}{
		{"syntax", "{\n  \"action\": {\"kind\": \"http\",}\n}", "}\n}", "invalid character '}'"},
		{"wrong type", "{\n  \"action\": {\"kind\": 3}\n}", "3}", "cannot unmarshal number"},
		{"object for a string", `{"action": {"kind": {"a": [1]}}}`, `{"a"`, "cannot unmarshal object"},
		{"array for a map", `{"action": {"kind": "x", "arguments": [1, 2]}}`, "[1", "cannot unmarshal array"},
		{"unknown top-level field", "{\n  \"action\": {\"kind\": \"http\"},\n  \"agnt\": {}\n}", `"agnt"`, `unknown field "agnt"`},
		{"unknown nested field after a free-form map", `{"action": {"kind": "http", "arguments": {"tol": 1, "x": {"tol": 2}}, "tool": "t", "tol": 3}}`, `"tol": 3`, `unknown field "tol"`},
		{"unknown field, names matched ignoring case", `{"ACTION": {"Kind": "http"}, "context": {"Rate": {"agent_calls": 1}}}`, `"agent_calls"`, `unknown field "agent_calls"`},
		{"unknown field after a custom unmarshaler", `{"action": {"kind": "h"}, "context": {"time": "2026-01-01T00:00:00Z", "door": "x", "tyme": 1}}`, `"tyme"`, `unknown field "tyme"`},
		{"unknown field after arrays", `{"action": {"kind": "h"}, "user": {"groups": ["a", "b"], "claims": {"l": [{"x": 1}]}, "group": []}}`, `"group"`, `unknown field "group"`},
		{"cut short", "{\n  \"action\": {\"kind\": \"http\"},\n  \"user\": \n\n", "$", "unexpected EOF"},
		{"trailing data", `{"action": {"kind": "http"}} {}`, "{}", "trailing data"},
		{"trailing bracket", "{\"action\": {\"kind\": \"http\"}}\n ]\n", "]", "trailing data"},
		{"empty", "", "$", "no JSON document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off := len(strings.TrimRight(tc.src, " \n"))
			if tc.at != "$" {
				off = strings.Index(tc.src, tc.at)
			}
			want := sourceErrorAt([]byte(tc.src), int64(off), "")
			_, err := DecodeInput([]byte(tc.src))
			var se SourceError
			if !errors.As(err, &se) || se.Line != want.Line || se.Col != want.Col || !strings.Contains(se.Msg, tc.msg) {
				t.Errorf("got %v\nwant %d:%d: …%s…", err, want.Line, want.Col, tc.msg)
			}
		})
	}
	// Names that differ only in case are the same field to encoding/json.
	if _, err := DecodeInput([]byte(`{"Action": {"KIND": "http"}}`)); err != nil {
		t.Errorf("case-folded names: %v", err)
	}
}

// A test case's input is JSON made from its YAML: the error names the
// test and its line, not a place in that JSON.
func TestTestCaseInputErrorNamesTheTest(t *testing.T) {
	src := "tests:\n  - name: a\n    input: {action: {kind: http}, agnt: {}}\n    effect: deny\n"
	_, err := LoadFS(context.Background(), fstest.MapFS{"x_test.yaml": {Data: []byte(src)}}, "set")
	if err == nil || err.Error() != `set/x_test.yaml:2: test "a": json: unknown field "agnt"` {
		t.Fatalf("got %v", err)
	}
}
