package jcs

import (
	"bytes"
	"encoding/json"
	"testing"
)

var skipCases = []struct {
	in   string
	want int // the index SkipValue returns from 0
}{
	{`"a",`, 3}, {`"a\"b"}`, 6}, {`"a\\"]`, 5}, {`"\\\"\\"`, 8}, {`""`, 2},
	{`{"a":[1,{"b":"]}"}]},1`, 20}, {`[]]`, 2}, {`{}`, 2},
	{`1,`, 1}, {`-1.5e+30}`, 8}, {`true]`, 4}, {`null `, 4}, {"7\n", 1}, {`false`, 5},
	{`"a`, -1}, {`"a\"`, -1}, {`"\`, -1}, {`"`, -1}, {`{"a":1`, -1}, {`[[]`, -1}, {`["]`, -1},
	{`,`, -1}, {`}`, -1}, {` 1`, -1}, {``, -1},
}

func TestSkipValue(t *testing.T) {
	for _, c := range skipCases {
		if got := SkipValue([]byte(c.in), 0); got != c.want {
			t.Errorf("SkipValue(%#q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// FuzzSkipValue: on any input SkipValue stays in bounds; on a JSON value
// it finds the value's end, whatever follows; on one cut short it fails.
func FuzzSkipValue(f *testing.F) {
	for _, c := range skipCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := range b {
			if end := SkipValue(b, i); end != -1 && (end <= i || end > len(b)) {
				t.Fatalf("SkipValue(%q, %d) = %d", b, i, end)
			}
		}
		v := bytes.TrimRight(b, " \t\r\n")
		if len(v) == 0 || v[0] == ' ' || v[0] == '\t' || v[0] == '\r' || v[0] == '\n' || !json.Valid(v) {
			return
		}
		for _, after := range []string{"", ",", "}", "]", " ", ",\"x\":1}"} {
			if got := SkipValue(append(v[:len(v):len(v)], after...), 0); got != len(v) {
				t.Fatalf("SkipValue(%q + %q) = %d, want %d", v, after, got, len(v))
			}
		}
		if v[0] == '"' || v[0] == '{' || v[0] == '[' {
			for n := 1; n < len(v); n++ {
				if got := SkipValue(v[:n], 0); got != -1 {
					t.Fatalf("SkipValue(%q) = %d: a cut %c not seen", v[:n], got, v[0])
				}
			}
		}
	})
}
