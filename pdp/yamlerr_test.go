package pdp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"go.yaml.in/yaml/v3"
)

// yaml.v3 reports the start of the enclosing construct for a syntax error,
// often lines before the problem: each case names the line it reported
// (0: none) and the line the user must edit.
func TestYAMLSyntaxErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name, file, src string
		yamlSays        int // what yaml.v3 itself reports (0: no line; -1: not a syntax error)
		line, col       int
		msg             string
	}{
		{"tab on line 6", "r.yaml",
			"rules:\n  - id: a\n    effect: deny\n    match: x\n    message: m\n\tfoo: bar\n",
			5, 6, 1, "found a tab character that violates indentation"},
		{"bad indent on line 14", "r.yaml",
			"# rules\nrules:\n  - id: a\n    effect: deny\n  - id: b\n    effect: allow\n    match: \"true\"\n    headers:\n      x-a: \"1\"\n      x-b: \"2\"\n    header_expressions:\n      x-team: agent.owner_team\n      x-env: agent.environment\n     message: m\n",
			4, 14, 0, "did not find expected key"},
		{"tab on line 1", "inventory.yaml",
			"\tagents: []\n",
			0, 1, 1, "found character that cannot start any token"},
		{"tab after spaces", "inventory.yaml",
			"agents:\n  - id: a\n    type: t\n  \t owner_team: x\n",
			3, 4, 3, "found a tab character that violates indentation"},
		{"missing colon", "inventory.yaml",
			"agents:\n  - id: a\n    type\n    owner_team: x\n",
			3, 3, 0, "could not find expected ':'"},
		{"sequence item under-indented", "x_test.yaml",
			"tests:\n  - name: a\n    input: {}\n  effect: allow\n",
			1, 4, 0, "did not find expected '-' indicator"},
		{"key under-indented", "r.yaml",
			"rules:\n  - id: a\n    effect: deny\n    headers:\n      x-a: b\n     match: x\n",
			1, 6, 0, "did not find expected key"},
		{"mapping value in a scalar", "r.yaml",
			"rules:\n  - id: a\n    match: a: b\n",
			3, 3, 0, "mapping values are not allowed in this context"},
		{"unclosed quote", "r.yaml",
			"rules:\n  - id: a\n    effect: deny\n    match: \"action.tool\n    message: m\n",
			4, 4, 0, "found unexpected end of stream"},
		{"unclosed flow mapping", "r.yaml",
			"rules:\n  - {id: a,\n     effect: deny\n",
			1, 3, 0, "did not find expected ',' or '}'"}, // where the parser gave up

		{"unknown key (a type error: yaml.v3's line is right)", "r.yaml",
			"rules:\n  - id: a\n    efect: deny\n",
			-1, 3, 0, "field efect not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.yamlSays >= 0 {
				var n yaml.Node
				err := yaml.Unmarshal([]byte(tc.src), &n)
				says := ""
				if tc.yamlSays > 0 {
					says = strconv.Itoa(tc.yamlSays)
				}
				if m := yamlSyntaxRe.FindStringSubmatch(fmt.Sprint(err)); m == nil || m[1] != says {
					t.Errorf("yaml.v3 says %v; the table says line %d", err, tc.yamlSays)
				}
			}
			_, err := LoadFS(context.Background(), fstest.MapFS{tc.file: {Data: []byte(tc.src)}}, "set")
			var ses SourceErrors
			if !errors.As(err, &ses) || len(ses) != 1 {
				t.Fatalf("error %v, want one SourceError", err)
			}
			se := ses[0]
			if se.File != "set/"+tc.file || se.Line != tc.line || se.Col != tc.col || !strings.HasPrefix(se.Msg, tc.msg) {
				t.Errorf("got %s\nwant set/%s:%d:%d: %s", se, tc.file, tc.line, tc.col, tc.msg)
			}
		})
	}
}

func TestYAMLErrorFallbacks(t *testing.T) {
	// When no prefix of the file fails as the whole did, the line yaml.v3
	// gave is only a hint, and the message says so.
	err := LocateYAMLError("f.yaml", []byte("a: 1\n"), errors.New("yaml: line 7: did not find expected key"))
	if err.Error() != "f.yaml: near line 7: did not find expected key" {
		t.Errorf("got %q", err)
	}
	// A reported line past the problem (not seen from yaml.v3 3.0.6) is
	// searched back from too.
	err = LocateYAMLError("f.yaml", []byte("a: 1\n\tb: 2\nc: 3\nd: 4\n"), errors.New("yaml: line 4: found a tab character that violates indentation"))
	if err.Error() != "f.yaml:2:1: found a tab character that violates indentation" {
		t.Errorf("got %q", err)
	}
}
