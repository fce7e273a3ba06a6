package envoyauthz

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// canonicalPathCases: want is the result, or err a part of the error
// message when the path must be refused.
var canonicalPathCases = []struct {
	name, in, want, err string
}{
	// Already canonical: returned unchanged (most take the fast path).
	{name: "root", in: "/", want: "/"},
	{name: "typical", in: "/v1/things/42", want: "/v1/things/42"},
	{name: "trailing slash kept", in: "/a/b/", want: "/a/b/"},
	{name: "dot-dot prefix of a name", in: "/a/..b/c", want: "/a/..b/c"},
	{name: "dot-dot suffix of a name", in: "/a/b..", want: "/a/b.."},
	{name: "dot prefix of a name", in: "/a/.well-known/x", want: "/a/.well-known/x"},
	{name: "three dots", in: "/a/.../b", want: "/a/.../b"},
	{name: "three dots with params", in: "/a/...;x/b", want: "/a/...;x/b"},
	{name: "dot after name with params", in: "/a/b.;x", want: "/a/b.;x"},
	{name: "params", in: "/a;jsessionid=1/b", want: "/a;jsessionid=1/b"},
	{name: "lone semicolon segment", in: "/a/;/b", want: "/a/;/b"},
	{name: "all pchar", in: "/az09-._~!$&'()*+,;=:@", want: "/az09-._~!$&'()*+,;=:@"},
	{name: "encoded space kept", in: "/a%20b", want: "/a%20b"},
	{name: "encoded percent kept", in: "/%25", want: "/%25"},
	{name: "no double decoding of slash", in: "/a%252Fb", want: "/a%252Fb"},
	{name: "no double decoding of letter", in: "/%2541", want: "/%2541"},
	{name: "no double decoding of dots", in: "/a/%252e%252e/b", want: "/a/%252e%252e/b"},
	{name: "encoded question mark kept", in: "/a%3Fb", want: "/a%3Fb"},
	{name: "encoded hash kept", in: "/a%23b", want: "/a%23b"},
	{name: "encoded high byte kept", in: "/%FF", want: "/%FF"},

	// Empty and asterisk-form.
	{name: "empty", in: "", want: "/"},
	{name: "asterisk", in: "*", want: "*"},

	// Unreserved escapes decoded, others upper-cased.
	{name: "encoded letter", in: "/%41", want: "/A"},
	{name: "encoded tilde lower", in: "/%7e", want: "/~"},
	{name: "encoded tilde upper", in: "/%7E", want: "/~"},
	{name: "encoded digit", in: "/v%31", want: "/v1"},
	{name: "encoded punctuation", in: "/%2D%5f%2Ex", want: "/-_.x"},
	{name: "encoded word", in: "/%61%64%6D%69%6E", want: "/admin"},
	{name: "lower hex upper-cased", in: "/%c3%a9", want: "/%C3%A9"},
	{name: "mixed hex upper-cased", in: "/%C3%a9", want: "/%C3%A9"},
	{name: "encoded semicolon upper-cased", in: "/a%3bb", want: "/a%3Bb"},
	{name: "encoded percent upper-cased digits", in: "/%2541%2a", want: "/%2541%2A"},
	{name: "three encoded dots", in: "/a/%2e%2e%2e/b", want: "/a/.../b"},

	// Raw bytes not allowed in a URI are encoded.
	{name: "raw space", in: "/a b", want: "/a%20b"},
	{name: "raw non-ASCII", in: "/café", want: "/caf%C3%A9"},
	{name: "raw quote", in: `/a"b`, want: "/a%22b"},
	{name: "raw braces and pipe", in: "/{x}|y", want: "/%7Bx%7D%7Cy"},
	{name: "raw brackets", in: "/[::1]", want: "/%5B::1%5D"},
	{name: "raw caret and backquote", in: "/^`", want: "/%5E%60"},

	// Slash merging.
	{name: "merge slashes", in: "//a///b", want: "/a/b"},
	{name: "only slashes", in: "///", want: "/"},
	{name: "double trailing slash", in: "/a//", want: "/a/"},
	{name: "merge before dot-dot", in: "/a//..//b", want: "/b"},

	// Dot segments.
	{name: "dot-dot", in: "/api/read/../admin", want: "/api/admin"},
	{name: "encoded dot-dot lower", in: "/api/read/%2e%2e/admin", want: "/api/admin"},
	{name: "encoded dot-dot upper", in: "/api/read/%2E%2E/admin", want: "/api/admin"},
	{name: "half encoded dot-dot", in: "/api/read/.%2e/admin", want: "/api/admin"},
	{name: "half encoded dot-dot other half", in: "/api/read/%2e./admin", want: "/api/admin"},
	{name: "dot", in: "/a/./b", want: "/a/b"},
	{name: "encoded dot", in: "/a/%2e/b", want: "/a/b"},
	{name: "leading dot", in: "/./a", want: "/a"},
	{name: "root dot-dot", in: "/..", want: "/"},
	{name: "root dot", in: "/.", want: "/"},
	{name: "dot-dot above root", in: "/../../a", want: "/a"},
	{name: "trailing dot-dot keeps slash", in: "/a/b/..", want: "/a/"},
	{name: "trailing dot keeps slash", in: "/a/.", want: "/a/"},
	{name: "trailing dot-dot slash", in: "/a/b/%2e%2e/", want: "/a/"},
	{name: "dot-dot to root", in: "/a/..", want: "/"},
	{name: "dot-dot past root", in: "/a/b/../../../c", want: "/c"},
	{name: "dot-dot then name", in: "/a/b/../c/./d/..", want: "/a/c/"},

	// Refused.
	{name: "relative", in: "a/b", err: `does not start with "/"`},
	{name: "relative dot", in: "./a", err: `does not start with "/"`},
	{name: "absolute-form", in: "http://x/a", err: `does not start with "/"`},
	{name: "double asterisk", in: "**", err: `does not start with "/"`},
	{name: "lone percent", in: "/%", err: `invalid percent-encoding "%"`},
	{name: "short escape", in: "/a%2", err: `invalid percent-encoding "%2"`},
	{name: "non-hex escape", in: "/%zz", err: `invalid percent-encoding "%zz"`},
	{name: "half hex escape", in: "/%g0", err: "invalid percent-encoding"},
	{name: "escape cut by slash", in: "/%2/", err: "invalid percent-encoding"},
	{name: "encoded slash lower", in: "/a%2fb", err: `encoded "/" (%2F)`},
	{name: "encoded slash upper", in: "/a%2Fb", err: `encoded "/" (%2F)`},
	{name: "encoded slash after dot-dot", in: "/api/read/..%2fadmin", err: `encoded "/" (%2F)`},
	{name: "encoded backslash lower", in: "/a%5cb", err: `encoded "\" (%5C)`},
	{name: "encoded backslash upper", in: "/a%5Cb", err: `encoded "\" (%5C)`},
	{name: "backslash", in: `/a\b`, err: "backslash"},
	{name: "backslash dot-dot", in: `/a/..\b`, err: "backslash"},
	{name: "encoded NUL", in: "/a%00", err: "encoded control byte %00"},
	{name: "encoded newline", in: "/a%0a", err: "encoded control byte %0a"},
	{name: "encoded unit separator", in: "/a%1F", err: "encoded control byte"},
	{name: "encoded DEL", in: "/a%7f", err: "encoded control byte"},
	{name: "NUL", in: "/a\x00", err: "control byte 0x00"},
	{name: "SOH", in: "/a\x01", err: "control byte 0x01"},
	{name: "newline", in: "/a\nb", err: "control byte 0x0A"},
	{name: "DEL", in: "/a\x7f", err: "control byte 0x7F"},
	{name: "invalid UTF-8", in: "/a\xffb", err: "invalid UTF-8"},
	{name: "truncated UTF-8", in: "/caf\xc3", err: "invalid UTF-8"},
	{name: "raw question mark", in: "/a?b", err: `raw '?'`},
	{name: "raw hash", in: "/a#b", err: `raw '#'`},
	{name: "dot-dot with params", in: "/a/..;/b", err: "dot segment with parameters"},
	{name: "dot with params", in: "/a/.;x/b", err: "dot segment with parameters"},
	{name: "trailing dot-dot with params", in: "/a/..;x", err: "dot segment with parameters"},
	{name: "trailing dot with empty params", in: "/a/.;", err: "dot segment with parameters"},
	{name: "encoded dot-dot with params", in: "/a/%2e%2e;/b", err: "dot segment with parameters"},
	{name: "dot-dot with encoded semicolon", in: "/a/..%3b/b", err: "dot segment with parameters"},
	{name: "encoded dot with params", in: "/a/%2E;/b", err: "dot segment with parameters"},
}

func TestCanonicalPath(t *testing.T) {
	for _, c := range canonicalPathCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := canonicalPath(c.in)
			if c.err != "" {
				if err == nil {
					t.Fatalf("canonicalPath(%q) = %q, want an error containing %q", c.in, got, c.err)
				}
				if !strings.Contains(err.Error(), c.err) {
					t.Fatalf("canonicalPath(%q) error %q, want it to contain %q", c.in, err, c.err)
				}
				if got != "" {
					t.Errorf("canonicalPath(%q) returned %q with its error", c.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("canonicalPath(%q): %v", c.in, err)
			}
			if got != c.want {
				t.Fatalf("canonicalPath(%q) = %q, want %q", c.in, got, c.want)
			}
			checkCanonicalPath(t, c.in, got)
		})
	}
}

// TestCanonicalPathFastPathNoAlloc: the fast path runs on every request.
func TestCanonicalPathFastPathNoAlloc(t *testing.T) {
	for _, p := range []string{"/", "/v1/things/42", "/a/b/", "/a/.well-known/x", "/a/..b/c", "/a;p=1/b..", "*", ""} {
		var got string
		allocs := testing.AllocsPerRun(100, func() { got, _ = canonicalPath(p) })
		if allocs != 0 {
			t.Errorf("canonicalPath(%q): %v allocations, want 0", p, allocs)
		}
		if p != "" && got != p {
			t.Errorf("canonicalPath(%q) = %q, want it unchanged", p, got)
		}
	}
}

// TestCanonicalPathProperties checks the invariants on paths assembled
// from pieces that interact: slashes, dots, escapes, parameters.
func TestCanonicalPathProperties(t *testing.T) {
	pieces := []string{
		"/", "/", "/", ".", ".", "..", "%2e", "%2E", "%2e%2e", "a", "b", "..b", ";", ";x",
		"%41", "%7e", "%20", "%25", "%2f", "%3b", "%c3%a9", "é", " ", "~", "%", "%2", "\\",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ok int
	for range 20000 {
		var b strings.Builder
		b.WriteByte('/')
		for n := rng.IntN(10); n > 0; n-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		raw := b.String()
		got, err := canonicalPath(raw)
		if err != nil {
			continue
		}
		ok++
		checkCanonicalPath(t, raw, got)
	}
	for _, c := range canonicalPathCases {
		if got, err := canonicalPath(c.in); err == nil {
			checkCanonicalPath(t, c.in, got)
		}
	}
	if ok < 1000 {
		t.Fatalf("only %d generated paths were accepted; the generator is too hostile to test anything", ok)
	}
}

func FuzzCanonicalPath(f *testing.F) {
	for _, c := range canonicalPathCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := canonicalPath(raw)
		if err != nil {
			if got != "" {
				t.Fatalf("canonicalPath(%q) returned %q with error %v", raw, got, err)
			}
			return
		}
		checkCanonicalPath(t, raw, got)
	})
}

// checkCanonicalPath asserts the invariants of an accepted path: out is
// safe to match on, a fixed point, and the fast path agrees with the slow one.
func checkCanonicalPath(t *testing.T, raw, out string) {
	t.Helper()
	if out == "*" {
		if raw != "*" {
			t.Fatalf("canonicalPath(%q) = %q", raw, out)
		}
		return
	}
	if !strings.HasPrefix(out, "/") {
		t.Fatalf("canonicalPath(%q) = %q: does not start with /", raw, out)
	}
	if !utf8.ValidString(out) {
		t.Fatalf("canonicalPath(%q) = %q: invalid UTF-8", raw, out)
	}
	for i := 0; i < len(out); i++ {
		if c := out[i]; c < 0x20 || c == 0x7f || c == '\\' {
			t.Fatalf("canonicalPath(%q) = %q: byte %#x", raw, out, c)
		}
	}
	if up := strings.ToUpper(out); strings.Contains(up, "%2F") || strings.Contains(up, "%5C") {
		t.Fatalf("canonicalPath(%q) = %q: encoded slash or backslash", raw, out)
	}
	if strings.Contains(out, "//") {
		t.Fatalf("canonicalPath(%q) = %q: empty segment", raw, out)
	}
	for seg := range strings.SplitSeq(out[1:], "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("canonicalPath(%q) = %q: dot segment", raw, out)
		}
	}
	again, err := canonicalPath(out)
	if err != nil || again != out {
		t.Fatalf("canonicalPath(%q) = %q, but canonicalPath(%q) = %q, %v: not idempotent", raw, out, out, again, err)
	}
	if raw != "" {
		if slow, err := canonicalizePath(raw); err != nil || slow != out {
			t.Fatalf("canonicalPath(%q) = %q, but the slow path gives %q, %v", raw, out, slow, err)
		}
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"clean", "/v1/things/42"},
		{"dirty", "//v1/things/%2e/%7Euser/../%c3%a9t%C3%A9/42"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := canonicalPath(bc.path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
