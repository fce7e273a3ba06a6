package jcs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	repl := []byte(`"[REDACTED]"`)
	cases := []struct {
		name, src string
		paths     []string
		want      string // "" = unchanged
	}{
		{"header", `{"action":{"http":{"headers":{"authorization":"Bearer x","host":"a"},"path":"/"}},"user":{"id":"u"}}`,
			[]string{"action.http.headers.authorization"},
			`{"action":{"http":{"headers":{"authorization":"[REDACTED]","host":"a"},"path":"/"}},"user":{"id":"u"}}`},
		{"absent", `{"action":{"http":{"headers":{"host":"a"}}}}`, []string{"action.http.headers.authorization"}, ""},
		{"wildcard", `{"user":{"claims":{"a":1,"b":{"c":[1,2]},"d":"x\"y"},"id":"u"}}`, []string{"user.claims.*"},
			`{"user":{"claims":{"a":"[REDACTED]","b":"[REDACTED]","d":"[REDACTED]"},"id":"u"}}`},
		{"whole object", `{"a":{"b":{"c":1}},"z":true}`, []string{"a.b"}, `{"a":{"b":"[REDACTED]"},"z":true}`},
		{"no descent into arrays", `{"a":[{"b":1}]}`, []string{"a.b"}, ""},
		{"no descent into strings", `{"a":"{\"b\":1}"}`, []string{"a.b"}, ""},
		{"escaped key", `{"a\"b":{"c":"\\"}}`, []string{`a"b.c`}, `{"a\"b":{"c":"[REDACTED]"}}`},
		{"several", `{"a":{"x":1,"y":2},"b":{"x":3}}`, []string{"a.y", "b.x", "*.x"},
			`{"a":{"x":"[REDACTED]","y":"[REDACTED]"},"b":{"x":"[REDACTED]"}}`},
		{"empty objects", `{"a":{},"b":{"c":{}}}`, []string{"b.c"}, `{"a":{},"b":{"c":"[REDACTED]"}}`},
		{"last member number", `{"a":{"n":-1.5e+30}}`, []string{"a.n"}, `{"a":{"n":"[REDACTED]"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var paths [][]string
			for _, p := range c.paths {
				paths = append(paths, strings.Split(p, "."))
			}
			got, changed, err := Redact(nil, []byte(c.src), paths, repl)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				if changed || got != nil {
					t.Fatalf("changed %s", got)
				}
				return
			}
			if !changed || string(got) != c.want {
				t.Fatalf("got %s (changed %v)\nwant %s", got, changed, c.want)
			}
			if !IsCanonical(got) {
				t.Fatalf("not canonical: %s", got)
			}
		})
	}
}

func TestRedactRejectsBrokenInput(t *testing.T) {
	// With "z", a walk that passes a.b's place goes on past the rest of a
	// (and, cut after a comma there, once panicked).
	for _, src := range []string{`{"a":`, `{"a":{"b":"x}}`, `{"a":{"b":1`, `{"a"1}`, `{"a":{"b":1}x`, `{"a":{"c":1,`, `{"a":{"c":1,"d`} {
		if _, _, err := Redact(nil, []byte(src), [][]string{{"a", "b"}, {"z"}}, []byte(`"r"`)); err == nil {
			t.Errorf("%s: no error", src)
		}
	}
}

// FuzzRedact holds Redact to a reference: decode, replace in the maps,
// re-encode.
func FuzzRedact(f *testing.F) {
	f.Add(`{"a":{"b":1,"c":{"d":"x"}},"e":[1,{"b":2}]}`, "a.b", "*.c.d")
	f.Add(`{"k\"":{"\\":null}}`, "k\".\\", "*")
	f.Fuzz(func(t *testing.T, doc, p1, p2 string) {
		src, err := Transform([]byte(doc))
		if err != nil || len(src) == 0 || src[0] != '{' {
			return
		}
		paths := [][]string{strings.Split(p1, "."), strings.Split(p2, ".")}
		got, changed, err := Redact(nil, src, paths, []byte(`"R"`))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		var m map[string]any
		if err := json.Unmarshal(src, &m); err != nil {
			t.Fatal(err)
		}
		refChanged := false
		for _, p := range paths {
			refChanged = redactRef(m, p) || refChanged
		}
		want, err := Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if !changed {
			got = src
		}
		if changed != refChanged || string(got) != string(want) {
			t.Fatalf("src %s paths %q\ngot  %s (%v)\nwant %s (%v)", src, paths, got, changed, want, refChanged)
		}
	})
}

func redactRef(m map[string]any, path []string) bool {
	changed := false
	for k, v := range m {
		if path[0] != "*" && path[0] != k {
			continue
		}
		if len(path) == 1 {
			m[k], changed = "R", true
		} else if sub, ok := v.(map[string]any); ok {
			changed = redactRef(sub, path[1:]) || changed
		}
	}
	return changed
}

// BenchmarkRedact: the decision log's redaction of a logged input behind
// Envoy (credential headers), on its canonical bytes.
func BenchmarkRedact(b *testing.B) {
	src := []byte(`{"action":{"arguments":{"body":"The login test fails 1 in 20 runs.","repo":"acme/web","title":"Flaky test in CI"},"http":{"body":{"id":7,"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"body":"The login test fails 1 in 20 runs.","repo":"acme/web","title":"Flaky test in CI"},"name":"create_issue"}},"headers":{":authority":"mcp.internal","accept":"application/json, text/event-stream","authorization":"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig","content-type":"application/json","host":"mcp.internal","user-agent":"agent/1.0","x-request-id":"4f6c1d2a-bench"},"host":"mcp.internal","method":"POST","path":"/mcp"},"kind":"mcp.tools/call","server":"github","tool":"create_issue"},"agent":{"allowed_actions":["github.read_file","github.search"],"authn":"mtls","environment":"prod","id":"spiffe://example.org/agent/code-reviewer","owner_team":"platform","registered":true},"context":{"door":"envoy","request_id":"bench-1","time":"2026-11-25T09:45:39.6818973Z"},"user":{"id":"alice@example.com"}}`)
	if !IsCanonical(src) {
		b.Fatal("fixture not canonical")
	}
	var paths [][]string
	for _, h := range []string{"authorization", "proxy-authorization", "cookie", "x-forwarded-client-cert"} {
		paths = append(paths, []string{"action", "http", "headers", h})
	}
	repl := []byte(`"[REDACTED]"`)
	dst := make([]byte, 0, len(src))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		out, changed, err := Redact(dst[:0], src, paths, repl)
		if err != nil || !changed {
			b.Fatal(changed, err)
		}
		dst = out
	}
}
