// Package jcs encodes JSON in the RFC 8785 canonical form (JSON
// Canonicalization Scheme): object members sorted by the UTF-16 code units
// of their names, numbers in ECMAScript (ES6) form, strings with only the
// escapes ES6 JSON.stringify uses, and no whitespace.
//
// It is hand-written rather than layered on encoding/json because it sits on
// the hot path (action digests, the decision log) and because encoding/json
// silently repairs what RFC 8785 requires to be rejected: invalid UTF-8,
// lone surrogate escapes and duplicate member names.
package jcs

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Errors returned for values that have no canonical form.
var (
	ErrInvalidUTF8 = errors.New("jcs: string is not valid UTF-8")
	ErrNonFinite   = errors.New("jcs: NaN and Infinity have no JSON form")
)

// Append appends the canonical JSON form of v to dst. v is a decoded JSON
// value (map[string]any, []any, string, float64, json.Number, bool, nil) or
// one of int, int32, int64, uint, uint32, uint64, float32, []string,
// map[string]string, map[string][]string, json.RawMessage (re-canonicalized);
// any other type goes through encoding/json first.
// On error dst is returned unchanged in length (its spare capacity may have
// been written).
func Append(dst []byte, v any) ([]byte, error) {
	n := len(dst)
	out, err := appendValue(dst, v, 0)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 10000

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, errors.New("jcs: nesting too deep")
	}
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return AppendString(dst, x)
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case float64:
		return AppendFloat(dst, x)
	case json.Number:
		return AppendNumber(dst, string(x))
	case int:
		return AppendInt(dst, int64(x)), nil
	case int64:
		return AppendInt(dst, x), nil
	case int32:
		return AppendInt(dst, int64(x)), nil
	case uint:
		return appendUint(dst, uint64(x)), nil
	case uint32:
		return appendUint(dst, uint64(x)), nil
	case uint64:
		return appendUint(dst, x), nil
	case float32:
		// ES6 has only doubles; the float32's exact value is what counts.
		return AppendFloat(dst, float64(x))
	case map[string]any:
		return appendMap(dst, x, depth)
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case []string:
		return appendStrings(dst, x)
	case map[string]string:
		return appendStringMap(dst, x)
	case map[string][]string:
		return appendStringsMap(dst, x)
	case json.RawMessage:
		return appendTransform(dst, x)
	default:
		// Anything else encoding/json can encode (structs, typed slices and
		// maps) goes through it and is then canonicalized: slower, but any
		// value a door builds has a canonical form.
		b, err := json.Marshal(v)
		if err != nil {
			return dst, fmt.Errorf("jcs: %T: %w", v, err)
		}
		return appendTransform(dst, b)
	}
}

// sortedKeys returns m's keys in canonical order, in buf when it is large
// enough (callers pass a stack array so small objects do not allocate).
func sortedKeys[V any](m map[string]V, buf []string) []string {
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, Compare)
	return keys
}

func appendMap(dst []byte, m map[string]any, depth int) ([]byte, error) {
	return appendSortedMap(dst, m, func(dst []byte, v any) ([]byte, error) { return appendValue(dst, v, depth+1) })
}

func appendStringMap(dst []byte, m map[string]string) ([]byte, error) {
	return appendSortedMap(dst, m, AppendString)
}

func appendStringsMap(dst []byte, m map[string][]string) ([]byte, error) {
	return appendSortedMap(dst, m, appendStrings)
}

// appendSortedMap writes a map with members in canonical order.
func appendSortedMap[V any](dst []byte, m map[string]V, enc func([]byte, V) ([]byte, error)) ([]byte, error) {
	var buf [16]string
	keys := sortedKeys(m, buf[:])
	dst = append(dst, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = AppendString(dst, k); err != nil {
			return dst, err
		}
		dst = append(dst, ':')
		if dst, err = enc(dst, m[k]); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendStrings(dst []byte, a []string) ([]byte, error) {
	dst = append(dst, '[')
	for i, e := range a {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = AppendString(dst, e); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

// Compare orders member names as RFC 8785 requires: by UTF-16 code units.
// That is byte order of UTF-8 except that characters above U+FFFF (surrogate
// pairs, 0xD800…) sort before U+E000…U+FFFF. It returns -1, 0 or +1.
// Both strings are assumed valid UTF-8 (encoding rejects anything else).
func Compare(a, b string) int { return compareUTF16(a, b) }

func compareUTF16[T ~string | ~[]byte](a, b T) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if i == n {
		switch {
		case len(a) < len(b):
			return -1
		case len(a) > len(b):
			return 1
		}
		return 0
	}
	// Back up to the start of the character that differs.
	for i > 0 && !utf8.RuneStart(a[i]) {
		i--
	}
	// The conversions do not allocate: the strings do not escape.
	ra, _ := utf8.DecodeRuneInString(string(a[i:]))
	rb, _ := utf8.DecodeRuneInString(string(b[i:]))
	ua, ub := utf16Unit(ra), utf16Unit(rb)
	switch {
	case ua < ub:
		return -1
	case ua > ub:
		return 1
	}
	// Same high surrogate: the low surrogates differ in the code point order.
	if ra < rb {
		return -1
	}
	return 1
}

// Less reports whether a sorts before b in canonical member order.
func Less(a, b string) bool { return Compare(a, b) < 0 }

func utf16Unit(r rune) rune {
	if r >= 0x10000 {
		return 0xD800 + (r-0x10000)>>10
	}
	return r
}

const hexDigits = "0123456789abcdef"

// safe[c] is true for ASCII bytes written as themselves inside a string.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Word-at-a-time scanning for the common case: runs of printable ASCII
// that need no escaping.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plain8 reports whether none of the 8 bytes in x is a control character,
// '"', '\\' or non-ASCII (the classic "has zero byte / has less than" bit
// tricks, which detect existence exactly).
func plain8(x uint64) bool {
	q := x ^ (lsb * '"')
	bs := x ^ (lsb * '\\')
	return (x|(x-lsb*0x20)&^x|(q-lsb)&^q|(bs-lsb)&^bs)&msb == 0
}

// load64 reads 8 bytes of s at i, little-endian (the compiler fuses this
// into one load).
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// AppendString appends s as a canonical JSON string. Only '"', '\\' and
// control characters are escaped (\b \f \n \r \t, else \u00xx); everything
// else, U+2028/U+2029 and DEL included, is written raw. Invalid UTF-8 is an
// error.
func AppendString(dst []byte, s string) ([]byte, error) {
	dst = append(dst, '"')
	start := 0
	i := 0
	for {
		// A run of plain ASCII: 8 bytes at a time, then byte by byte.
		for i+8 <= len(s) && plain8(load64(s, i)) {
			i += 8
		}
		for i < len(s) && s[i] < utf8.RuneSelf && safe[s[i]] {
			i++
		}
		if i >= len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			dst = appendEscape(dst, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return dst, ErrInvalidUTF8
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), nil
}

func appendEscape(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}

// maxExactInt is 2^53: integers up to it in magnitude are exact doubles and
// print as plain digits in ES6.
const maxExactInt = 1 << 53

// AppendInt appends v as ES6 would print the double nearest to it.
func AppendInt(dst []byte, v int64) []byte {
	if v >= -maxExactInt && v <= maxExactInt {
		return strconv.AppendInt(dst, v, 10)
	}
	dst, _ = AppendFloat(dst, float64(v)) // finite: cannot fail
	return dst
}

func appendUint(dst []byte, v uint64) []byte {
	if v <= maxExactInt {
		return strconv.AppendUint(dst, v, 10)
	}
	dst, _ = AppendFloat(dst, float64(v))
	return dst
}

// AppendFloat appends f in ES6 Number.prototype.toString form: shortest
// round-trip digits, plain notation for 1e-7 < |f| < 1e21, otherwise
// d.ddde±x; -0 is "0". NaN and ±Inf are errors.
func AppendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, ErrNonFinite
	}
	if f == 0 {
		return append(dst, '0'), nil
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.AppendInt(dst, int64(f), 10), nil // common, and exact
	}
	// Same thresholds and clean-up as encoding/json, which follows ES6.
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Go writes e-07 where ES6 writes e-7.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// AppendNumber appends the canonical form of a JSON number literal (as in a
// json.Number). Literals out of double range are errors.
func AppendNumber(dst []byte, lit string) ([]byte, error) {
	out, ok := appendNumber(dst, lit)
	if !ok {
		if !validNumber(lit) {
			return dst, fmt.Errorf("jcs: invalid number %q", lit)
		}
		return dst, fmt.Errorf("jcs: number %q is out of range", lit)
	}
	return out, nil
}

// appendNumber is AppendNumber without error values, so that lit does not
// escape and checking a number costs no allocation.
func appendNumber(dst []byte, lit string) ([]byte, bool) {
	if isCanonicalInt(lit) {
		return append(dst, lit...), true
	}
	if !validNumber(lit) {
		return dst, false
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return dst, false
	}
	out, err := AppendFloat(dst, f)
	return out, err == nil
}

// isCanonicalInt reports whether lit is an integer that is already in
// canonical form: no sign on zero, no leading zeros, at most 15 digits
// (below 2^53, so exact).
func isCanonicalInt(lit string) bool {
	s := lit
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
		if s == "0" {
			return false
		}
	}
	if len(s) == 0 || len(s) > 15 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validNumber checks the JSON number grammar (strconv also accepts hex,
// underscores, "inf" and such).
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i >= len(s) {
		return false
	}
	switch {
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		d := i + 1
		if i = skipDigits(s, d); i == d {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		if i = skipDigits(s, d); i == d {
			return false
		}
	}
	return i == len(s)
}

// skipDigits returns the index after the run of digits at s[i:].
func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
