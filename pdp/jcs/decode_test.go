package jcs

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{}`, `[]`, `null`, `true`, `false`, `0`, `-1.5e3`, `"x"`, `"\u00e9\ud83d\ude00\n"`,
		` {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":[1,2,{"b":null}],"c":"d"}}} `,
		`{"a":{"a":{"a":1}},"A1":2,"b":[{"x":1},{"x":2}]}`,
		`{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10}`,
	} {
		got, err := Decode([]byte(in))
		if err != nil {
			t.Errorf("Decode(%s): %v", in, err)
			continue
		}
		var want any
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Decode(%s) = %#v, encoding/json %#v", in, got, want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":1,"a":2}`, "duplicate member name"},
		{`{"x":{"name":"a","name":"b"}}`, "duplicate member name"},
		{`{"name":"a","Name":"b"}`, "differ only in case"},
		{`[{"Method":"x","method":"y"}]`, "differ only in case"},
		// The Kelvin sign folds to k: Go's encoding/json matches them.
		{`{"k":1,"\u212a":2}`, "differ only in case"},
		// Past eight names the check switches to folded keys.
		{`{"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"ID":1,"id":2}`, "differ only in case"},
		{`{"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"id":1,"id":2}`, "duplicate member name"},
		{`"\ud800"`, "lone high surrogate"},
		{`"\udc00x"`, "lone low surrogate"},
		{"\"\xff\"", "UTF-8"},
		{`1e400`, "double range"},
		{`01`, "invalid number"},
		{`{"a":1,}`, "expected a member name"},
		{`[1,]`, "unexpected character"},
		{`{"a":1} {}`, "data after"},
		{`{"a" 1}`, "expected :"},
		{"\"a\tb\"", "control character"},
		{`tru`, "unexpected character"},
		{``, "unexpected end"},
		{strings.Repeat("[", maxDepth+2), "nesting too deep"},
	} {
		_, err := Decode([]byte(tc.in))
		var se *SyntaxError
		if err == nil || !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%.40q) = %v, want a SyntaxError with %q", tc.in, err, tc.want)
		}
	}
	// The offset points at the second of the clashing names.
	_, err := Decode([]byte(`{"name":1, "NAME":2}`))
	if se := (*SyntaxError)(nil); !errors.As(err, &se) || se.Offset != 11 {
		t.Errorf("offset of a case clash: %v", err)
	}
}

func TestFoldName(t *testing.T) {
	pairs := [][2]string{{"name", "NAME"}, {"k", "\u212a"}, {"s", "\u017f"}, {"ß", "ẞ"}, {"σ", "ς"}, {"Σ", "σ"}, {"tools/call", "Tools/Call"}}
	for _, p := range pairs {
		if FoldName(p[0]) != FoldName(p[1]) {
			t.Errorf("FoldName(%q)=%q, FoldName(%q)=%q", p[0], FoldName(p[0]), p[1], FoldName(p[1]))
		}
	}
	if FoldName("jsonrpc") != "jsonrpc" || FoldName("Ab") != "ab" {
		t.Errorf("FoldName: lower-case ASCII is its own fold")
	}
	if FoldName("a") == FoldName("b") {
		t.Error("different names fold alike")
	}
}

func FuzzFoldName(f *testing.F) {
	f.Add("k", "\u212a")
	f.Add("name", "Name")
	f.Add("ß", "SS")
	f.Fuzz(func(t *testing.T, a, b string) {
		if (FoldName(a) == FoldName(b)) != strings.EqualFold(a, b) {
			t.Errorf("FoldName(%q)=%q FoldName(%q)=%q, EqualFold %v", a, FoldName(a), b, FoldName(b), strings.EqualFold(a, b))
		}
	})
}

// FuzzDecode: what Decode accepts, encoding/json reads the same way.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",null,true]}`, `{"a":1,"A":2}`, `"\ud83d\ude00"`, `[1e5,-0,0.1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		if err != nil {
			return
		}
		var want any
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("Decode accepted %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) = %#v, encoding/json %#v", b, got, want)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	in := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_issue","arguments":{"repo":"a/b","title":"flaky test","labels":["ci","bug"]}}}`)
	b.Run("jcs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v any
			if err := json.Unmarshal(in, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// OtherCase finds the member that is a listed name in another case
// (Unicode folding included), not the name itself nor other members.
func TestOtherCase(t *testing.T) {
	names := Names("result", "resourceTemplates", "kind")
	for _, c := range []struct {
		obj  map[string]any
		want string
	}{
		{map[string]any{"result": 1, "resourceTemplates": 2, "other": 3}, ""},
		{map[string]any{"Result": 1}, "Result"},
		{map[string]any{"resourcetemplates": 1}, "resourcetemplates"},
		{map[string]any{"\u212aind": 1}, "\u212aind"}, // Kelvin sign folds to k
		{map[string]any{"results": 1, "kinds": 2}, ""},
	} {
		if got := OtherCase(c.obj, names); got != c.want {
			t.Errorf("OtherCase(%v) = %q, want %q", c.obj, got, c.want)
		}
	}
}
