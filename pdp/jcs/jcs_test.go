package jcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
var appendixB = []struct {
	bits uint64
	want string // "" = must be rejected
}{
	{0x0000000000000000, "0"},
	{0x8000000000000000, "0"}, // -0
	{0x0000000000000001, "5e-324"},
	{0x8000000000000001, "-5e-324"},
	{0x7fefffffffffffff, "1.7976931348623157e+308"},
	{0xffefffffffffffff, "-1.7976931348623157e+308"},
	{0x4340000000000000, "9007199254740992"},
	{0xc340000000000000, "-9007199254740992"},
	{0x4430000000000000, "295147905179352830000"},
	{0x7fffffffffffffff, ""}, // NaN
	{0x7ff0000000000000, ""}, // Infinity
	{0x44b52d02c7e14af5, "9.999999999999997e+22"},
	{0x44b52d02c7e14af6, "1e+23"},
	{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
	{0x444b1ae4d6e2ef4e, "999999999999999700000"},
	{0x444b1ae4d6e2ef4f, "999999999999999900000"},
	{0x444b1ae4d6e2ef50, "1e+21"},
	{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
	{0x3eb0c6f7a0b5ed8d, "0.000001"},
	{0x41b3de4355555553, "333333333.3333332"},
	{0x41b3de4355555554, "333333333.33333325"},
	{0x41b3de4355555555, "333333333.3333333"},
	{0x41b3de4355555556, "333333333.3333334"},
	{0x41b3de4355555557, "333333333.33333343"},
	{0xbecbf647612f3696, "-0.0000033333333333333333"},
	{0x43143ff3c1cb0959, "1424953923781206.2"},
}

func TestAppendixBNumbers(t *testing.T) {
	for _, tc := range appendixB {
		f := math.Float64frombits(tc.bits)
		got, err := AppendFloat(nil, f)
		if tc.want == "" {
			if !errors.Is(err, ErrNonFinite) {
				t.Errorf("%016x: got %q, %v; want ErrNonFinite", tc.bits, got, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%016x: got %q, %v; want %q", tc.bits, got, err, tc.want)
			continue
		}
		// The canonical text must also be a fixed point of Transform.
		if tr, err := Transform(got); err != nil || string(tr) != tc.want {
			t.Errorf("Transform(%q) = %q, %v", got, tr, err)
		}
	}
}

func TestNumberLiterals(t *testing.T) {
	for lit, want := range map[string]string{
		"1e21":                          "1e+21",
		"1E21":                          "1e+21",
		"1e-7":                          "1e-7",
		"1e-6":                          "0.000001",
		"-0":                            "0",
		"-0.0e5":                        "0",
		"4.50":                          "4.5",
		"2e-3":                          "0.002",
		"1E30":                          "1e+30",
		"0.000000000000000000000000001": "1e-27",
		"333333333.33333329":            "333333333.3333333",
		"9007199254740993":              "9007199254740992", // nearest double
		"100":                           "100",
		"123456789012345678":            "123456789012345680",
		"5e-324":                        "5e-324",
		"1e400":                         "",
		"-1e400":                        "",
		"01":                            "",
		"1.":                            "",
		".5":                            "",
		"+1":                            "",
		"0x10":                          "",
		"1_000":                         "",
		"Inf":                           "",
	} {
		got, err := Transform([]byte(lit))
		if want == "" {
			if err == nil {
				t.Errorf("Transform(%q) = %q, want an error", lit, got)
			}
			continue
		}
		if err != nil || string(got) != want {
			t.Errorf("Transform(%q) = %q, %v; want %q", lit, got, err, want)
		}
		if got, err := Append(nil, json.Number(lit)); err != nil || string(got) != want {
			t.Errorf("Append(json.Number(%q)) = %q, %v; want %q", lit, got, err, want)
		}
	}
}

func TestIntegers(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{0, "0"}, {-1, "-1"}, {int64(1 << 53), "9007199254740992"},
		{int64(1<<53 + 1), "9007199254740992"}, // what ES6 would print
		{int64(math.MaxInt64), "9223372036854776000"},
		{uint64(math.MaxUint64), "18446744073709552000"},
		{int32(-7), "-7"}, {uint(7), "7"}, {float32(0.5), "0.5"},
		{-123.0, "-123"}, {1e15 - 1, "999999999999999"}, {1e15, "1000000000000000"},
		{1e20, "100000000000000000000"}, {-4503599627370497.0, "-4503599627370497"},
	} {
		got, err := Append(nil, tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("Append(%T %v) = %q, %v; want %q", tc.v, tc.v, got, err, tc.want)
		}
	}
}

// RFC 8785 §3.2.2.3: the sample input and its canonical form.
func TestRFCSample(t *testing.T) {
	in := `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`
	want := `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`
	got, err := Transform([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("Transform = %s, %v\nwant        %s", got, err, want)
	}
	if !IsCanonical(got) || IsCanonical([]byte(in)) {
		t.Errorf("IsCanonical wrong for sample")
	}
}

// RFC 8785 §3.2.3: member names sort by UTF-16 code units, so the emoji
// (a surrogate pair) comes before U+FB33 although its code point is higher.
func TestRFCSorting(t *testing.T) {
	in := `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`
	want := "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\"," +
		"\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"
	got, err := Transform([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("Transform = %s, %v\nwant        %s", got, err, want)
	}
	if !IsCanonical(got) {
		t.Errorf("IsCanonical(%s) = false", got)
	}
	// The same object as a Go map.
	var m map[string]any
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	if got, err := Append(nil, m); err != nil || string(got) != want {
		t.Errorf("Append(map) = %s, %v", got, err)
	}
	if Compare("😀", "\ufb33") >= 0 || Compare("\ufb33", "😀") <= 0 || !Less("a", "b") || Compare("ab", "ab") != 0 || !Less("a", "ab") {
		t.Error("Compare disagrees with UTF-16 order")
	}
	if Compare("😀", "😁") >= 0 || Compare("\U00010400", "\U00020000") >= 0 {
		t.Error("Compare orders surrogate pairs wrongly")
	}
}

func TestStrings(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        `"plain"`,
		"q\"b\\s/":     `"q\"b\\s/"`,
		"\b\f\n\r\t":   `"\b\f\n\r\t"`,
		"\x00\x01\x1f": `"\u0000\u0001\u001f"`,
		"\x7f":         "\"\x7f\"",
		"\u2028\u2029": "\"\u2028\u2029\"", // raw, unlike encoding/json
		"<>&":          `"<>&"`,
		"é😀\ufffd":     "\"é😀\ufffd\"",
	} {
		got, err := AppendString(nil, in)
		if err != nil || string(got) != want {
			t.Errorf("AppendString(%q) = %s, %v; want %s", in, got, err, want)
		}
		if !IsCanonical(got) {
			t.Errorf("IsCanonical(%s) = false", got)
		}
		if tr, err := Transform(got); err != nil || !bytes.Equal(tr, got) {
			t.Errorf("Transform(%s) = %s, %v", got, tr, err)
		}
	}
	for _, bad := range []string{"\xff", "a\xc3", "\xed\xa0\x80" /* UTF-8 encoded surrogate */} {
		if _, err := AppendString(nil, bad); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("AppendString(%q) error = %v, want ErrInvalidUTF8", bad, err)
		}
		if _, err := Transform([]byte(`"` + bad + `"`)); err == nil {
			t.Errorf("Transform accepted invalid UTF-8 %q", bad)
		}
	}
}

func TestTransformRejects(t *testing.T) {
	for _, in := range []string{
		``, ` `, `{`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `"abc`, `"\x"`, `"\u12"`,
		"\"a\tb\"", `tru`, `nul`, `1 2`, `{"a":1}x`, `{"a":1,"a":2}`, `{"b":1,"a":2,"b":3}`,
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud800x"`, `[NaN]`, `[Infinity]`, "\ufeff1",
	} {
		if got, err := Transform([]byte(in)); err == nil {
			t.Errorf("Transform(%q) = %q, want an error", in, got)
		}
	}
}

func TestTransformReorders(t *testing.T) {
	in := " { \"b\" : [ 1.0 , { \"z\":null, \"y\" : \"\\u00e9\\/\" } ] ,\n\"a\":{}, \"c\":[], \"\\u0022\":true } "
	want := `{"\"":true,"a":{},"b":[1,{"y":"é/","z":null}],"c":[]}`
	got, err := Transform([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("Transform = %s, %v; want %s", got, err, want)
	}
	if IsCanonical([]byte(in)) || !IsCanonical(got) {
		t.Error("IsCanonical wrong")
	}
}

func TestIsCanonicalRejects(t *testing.T) {
	for _, in := range []string{
		`{"b":1,"a":2}`, `{"a":1,"a":1}`, `{ "a":1}`, `[1, 2]`, `1.0`, `-0`, `1E3`, `"\u00E9"`, `"\u0041"`,
		`"\/"`, `"\u000a"`, `"\u000A"`, `{"\u0022":1,"!":2}`, "\"\xff\"", `01`, `[1]]`, ``, `{"a":}`,
	} {
		if IsCanonical([]byte(in)) {
			t.Errorf("IsCanonical(%q) = true", in)
		}
	}
	// Escaped names compare by their decoded value: U+001F < '!' < '"'.
	if IsCanonical([]byte(`{"!":2,"\"":1,"\u001f":3}`)) {
		t.Error("escaped member names compared by their escaped form")
	}
	if !IsCanonical([]byte(`{"\u001f":3,"!":2,"\"":1}`)) {
		t.Error(`{"\u001f":3,"!":2,"\"":1} is canonical`)
	}
}

func TestAppendGoValues(t *testing.T) {
	v := map[string]any{
		"s":   []string{"x", "y"},
		"m":   map[string]string{"k2": "v", "k1": "w"},
		"q":   map[string][]string{"b": {"2"}, "a": {"1", "3"}},
		"n":   json.Number("1.50"),
		"i":   42,
		"nil": nil,
		"raw": json.RawMessage(`{"b" : 1, "a" : [true]}`),
		"arr": []any{1.5, false, "z", map[string]any{}},
		"st":  struct{ B, A int }{B: 1, A: 2},
		"ml":  []map[string]any{{"y": 1, "x": 2.50}},
	}
	want := `{"arr":[1.5,false,"z",{}],"i":42,"m":{"k1":"w","k2":"v"},"ml":[{"x":2.5,"y":1}],"n":1.5,"nil":null,"q":{"a":["1","3"],"b":["2"]},"raw":{"a":[true],"b":1},"s":["x","y"],"st":{"A":2,"B":1}}`
	got, err := Append([]byte("prefix:"), v)
	if err != nil || string(got) != "prefix:"+want {
		t.Fatalf("Append = %s, %v\nwant %s", got, err, want)
	}
	for _, bad := range []any{math.NaN(), math.Inf(-1), make(chan int), []float64{math.NaN()}, map[string]any{"a": []any{"\xff"}}, map[string]any{"\xff": 1}, json.Number("1e999")} {
		dst := []byte("keep")
		got, err := Append(dst, bad)
		if err == nil || string(got) != "keep" {
			t.Errorf("Append(%#v) = %q, %v; want an error and dst unchanged", bad, got, err)
		}
	}
}

func TestDeepNesting(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2)
	if _, err := Transform([]byte(deep)); err == nil {
		t.Error("Transform accepted nesting beyond maxDepth")
	}
	if IsCanonical([]byte(deep)) {
		t.Error("IsCanonical accepted nesting beyond maxDepth")
	}
	ok := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	if got, err := Transform([]byte(ok)); err != nil || string(got) != ok {
		t.Errorf("Transform(100 deep) = %v", err)
	}
}

func FuzzTransform(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[1.0,2e3,-0,"\u00e9\ud83d\ude00"]}`, `"\u2028\t"`, `[null,true,false,{}]`,
		`{"\ufb33":1,"\ud83d\ude00":2,"\u20ac":3}`, `1e21`, `5e-324`, `{"a":{"b":{"c":[]}}}`, `"\xff"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Transform(in)
		if err != nil {
			if IsCanonical(in) {
				t.Fatalf("IsCanonical(%q) but Transform failed: %v", in, err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("Transform accepted invalid JSON %q", in)
		}
		again, err := Transform(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		if !IsCanonical(out) {
			t.Fatalf("IsCanonical(Transform(%q) = %q) = false", in, out)
		}
		if IsCanonical(in) != bytes.Equal(in, out) {
			t.Fatalf("IsCanonical(%q) = %v but Transform gives %q", in, IsCanonical(in), out)
		}
		// Same value as encoding/json sees it, and Append over the decoded
		// value agrees with Transform.
		var a, b any
		if json.Unmarshal(in, &a) != nil || json.Unmarshal(out, &b) != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("value changed: %q -> %q", in, out)
		}
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.UseNumber()
		var n any
		if err := dec.Decode(&n); err != nil {
			t.Fatal(err)
		}
		viaAppend, err := Append(nil, n)
		if err != nil || !bytes.Equal(viaAppend, out) {
			t.Fatalf("Append(decoded %q) = %q, %v; Transform = %q", in, viaAppend, err, out)
		}
	})
}

var sink []byte

func BenchmarkAppendMap(b *testing.B) {
	v := map[string]any{
		"repo": "agentpdp/agentpdp", "title": "Fix the flaky test in pdp/decisionlog", "labels": []any{"bug", "ci"},
		"body": "The test waits on a sleep; use a condition.\nSee #42.", "assignees": []any{"alice"}, "milestone": 3.0,
		"draft": false, "meta": map[string]any{"source": "agent", "priority": 2.0, "é": "ü"},
	}
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if sink, err = Append(sink[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIsCanonical(b *testing.B) {
	in, _ := Append(nil, map[string]any{
		"repo": "agentpdp/agentpdp", "title": "Fix the flaky test", "labels": []any{"bug", "ci"},
		"n": 1.5, "meta": map[string]any{"source": "agent", "priority": 2.0, "é": "ü"},
	})
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if !IsCanonical(in) {
			b.Fatal("not canonical")
		}
	}
}

func BenchmarkTransform(b *testing.B) {
	in := []byte(`{"title":"Fix the flaky test","repo":"agentpdp/agentpdp","labels":["bug","ci"],"n":1.50,"meta":{"source":"agent","priority":2,"é":"ü"}}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if sink, err = AppendTransform(sink[:0], in); err != nil {
			b.Fatal(err)
		}
	}
}
