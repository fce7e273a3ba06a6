package jcs

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Decode parses the JSON text b into the values encoding/json gives an
// `any` (map[string]any, []any, string, float64, bool, nil), refusing
// what different parsers would read differently, so that a policy decides
// on the document every reader sees:
//
//   - what I-JSON (RFC 7493) refuses: invalid UTF-8, escaped lone
//     surrogates, duplicate member names, numbers outside the double range;
//   - two member names of one object that are equal under Unicode case
//     folding (`{"name":…,"Name":…}`): Go's encoding/json, .NET and others
//     match names case-insensitively, so the last one wins there and the
//     first one here.
//
// Errors are *SyntaxError with the byte offset.
func Decode(b []byte) (any, error) {
	p := parser{s: b}
	v, err := p.decodeValue(0)
	if err != nil {
		return nil, err
	}
	p.skipWS()
	if p.i != len(p.s) {
		return nil, p.errorf("data after the JSON value")
	}
	return v, nil
}

func (p *parser) decodeValue(depth int) (any, error) {
	if depth > maxDepth {
		return nil, p.errorf("nesting too deep")
	}
	p.skipWS()
	if p.i >= len(p.s) {
		return nil, p.errorf("unexpected end of input")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.decodeObject(depth)
	case c == '[':
		p.i++
		out := []any{}
		p.skipWS()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return out, nil
		}
		for {
			v, err := p.decodeValue(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			p.skipWS()
			if p.i >= len(p.s) {
				return nil, p.errorf("unterminated array")
			}
			switch p.s[p.i] {
			case ',':
				p.i++
			case ']':
				p.i++
				return out, nil
			default:
				return nil, p.errorf("expected , or ] in array")
			}
		}
	case c == '"':
		return p.decodeString()
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		for p.i < len(p.s) && isNumberByte(p.s[p.i]) {
			p.i++
		}
		lit := string(p.s[start:p.i])
		if !validNumber(lit) {
			p.i = start
			return nil, p.errorf("invalid number %q", lit)
		}
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil { // out of the double range
			p.i = start
			return nil, p.errorf("number %s is outside the double range", lit)
		}
		return f, nil
	default:
		for _, lit := range [...]struct {
			s string
			v any
		}{{"true", true}, {"false", false}, {"null", nil}} {
			if bytes.HasPrefix(p.s[p.i:], []byte(lit.s)) {
				p.i += len(lit.s)
				return lit.v, nil
			}
		}
		return nil, p.errorf("unexpected character %q", c)
	}
}

// decodeString reads the string literal at p.i. The canonical writer
// already validates UTF-8, escapes and surrogates; reusing it keeps one
// definition of a valid string.
func (p *parser) decodeString() (string, error) {
	var buf [64]byte
	lit, err := p.str(buf[:0])
	if err != nil {
		return "", err
	}
	return decodeCanonical(lit)
}

func (p *parser) decodeObject(depth int) (map[string]any, error) {
	p.i++ // {
	out := map[string]any{}
	p.skipWS()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return out, nil
	}
	var folded map[string]string // folded name → name, once names need folding
	for {
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, p.errorf("expected a member name")
		}
		at := p.i
		key, err := p.decodeString()
		if err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			p.i = at
			return nil, p.errorf("duplicate member name %q", key)
		}
		if folded == nil && len(out) > 0 {
			// Most objects have a few lower-case ASCII names: compare
			// pairwise until that stops being cheap.
			for k := range out {
				if strings.EqualFold(k, key) {
					p.i = at
					return nil, p.errorf("member names %q and %q differ only in case", k, key)
				}
			}
			if len(out) >= 8 {
				folded = make(map[string]string, 2*len(out))
				for k := range out {
					folded[FoldName(k)] = k
				}
			}
		} else if folded != nil {
			f := FoldName(key)
			if k, ok := folded[f]; ok {
				p.i = at
				return nil, p.errorf("member names %q and %q differ only in case", k, key)
			}
			folded[f] = key
		}
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, p.errorf("expected : after member name")
		}
		p.i++
		v, err := p.decodeValue(depth + 1)
		if err != nil {
			return nil, err
		}
		out[key] = v
		p.skipWS()
		if p.i >= len(p.s) {
			return nil, p.errorf("unterminated object")
		}
		if p.s[p.i] == '}' {
			p.i++
			return out, nil
		}
		if p.s[p.i] != ',' {
			return nil, p.errorf("expected , or } in object")
		}
		p.i++
	}
}

// Names maps each of names by its FoldName, for OtherCase.
func Names(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[FoldName(n)] = n
	}
	return m
}

// OtherCase is a member name of obj that is one of names (as Names maps
// them) in another case, or "": a reader that matches names
// case-insensitively (Go's encoding/json, .NET) takes it for that name.
// Decode refuses two members equal under folding, so there is at most
// one per name.
func OtherCase(obj map[string]any, names map[string]string) string {
	for k := range obj {
		if n, ok := names[FoldName(k)]; ok && k != n {
			return k
		}
	}
	return ""
}

// FoldName maps s to a key that is equal for two names exactly when
// strings.EqualFold says they are: each rune becomes the lower case of the
// smallest rune of its Unicode simple case-folding orbit (so "K", "k" and
// the Kelvin sign all fold to "k", and lower-case ASCII is its own fold).
func FoldName(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(unicode.ToLower(m))
	}
	return b.String()
}
