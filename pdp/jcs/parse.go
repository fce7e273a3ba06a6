package jcs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// Transform returns the canonical form of the JSON text b. It rejects what
// RFC 8785 (through I-JSON) rejects and encoding/json would let through:
// invalid UTF-8, escaped lone surrogates, duplicate member names, and
// numbers outside the double range.
func Transform(b []byte) ([]byte, error) {
	return appendTransform(make([]byte, 0, len(b)), b)
}

// AppendTransform appends the canonical form of the JSON text b to dst.
func AppendTransform(dst, b []byte) ([]byte, error) {
	n := len(dst)
	out, err := appendTransform(dst, b)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func appendTransform(dst, b []byte) ([]byte, error) {
	p := parser{s: b}
	dst, err := p.value(dst, 0)
	if err != nil {
		return dst, err
	}
	p.skipWS()
	if p.i != len(p.s) {
		return dst, p.errorf("data after the JSON value")
	}
	return dst, nil
}

type parser struct {
	s []byte
	i int
}

// SyntaxError is a JSON text that cannot be canonicalized, with the byte
// offset where the problem was found.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("jcs: offset %d: %s", e.Offset, e.Msg)
}

func (p *parser) errorf(format string, a ...any) error {
	return &SyntaxError{Offset: p.i, Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) skipWS() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(dst []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, p.errorf("nesting too deep")
	}
	p.skipWS()
	if p.i >= len(p.s) {
		return dst, p.errorf("unexpected end of input")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(dst, depth)
	case c == '[':
		p.i++
		dst = append(dst, '[')
		p.skipWS()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return append(dst, ']'), nil
		}
		for {
			var err error
			if dst, err = p.value(dst, depth+1); err != nil {
				return dst, err
			}
			p.skipWS()
			if p.i >= len(p.s) {
				return dst, p.errorf("unterminated array")
			}
			switch p.s[p.i] {
			case ',':
				p.i++
				dst = append(dst, ',')
			case ']':
				p.i++
				return append(dst, ']'), nil
			default:
				return dst, p.errorf("expected , or ] in array")
			}
		}
	case c == '"':
		return p.str(dst)
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		for p.i < len(p.s) && isNumberByte(p.s[p.i]) {
			p.i++
		}
		out, ok := appendNumber(dst, string(p.s[start:p.i]))
		if !ok {
			_, err := AppendNumber(nil, string(p.s[start:p.i]))
			p.i = start
			return dst, p.errorf("%v", err)
		}
		return out, nil
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if bytes.HasPrefix(p.s[p.i:], []byte(lit)) {
				p.i += len(lit)
				return append(dst, lit...), nil
			}
		}
		return dst, p.errorf("unexpected character %q", c)
	}
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

type member struct {
	key      string
	from, to int // the canonical "key":value in the object's scratch area
}

func (p *parser) object(dst []byte, depth int) ([]byte, error) {
	p.i++ // {
	dst = append(dst, '{')
	start := len(dst)
	p.skipWS()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return append(dst, '}'), nil
	}
	var members []member
	sorted := true
	for {
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return dst, p.errorf("expected a member name")
		}
		from := len(dst)
		var err error
		if dst, err = p.str(dst); err != nil {
			return dst, err
		}
		key, err := decodeCanonical(dst[from:])
		if err != nil {
			return dst, err
		}
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return dst, p.errorf("expected : after member name")
		}
		p.i++
		dst = append(dst, ':')
		if dst, err = p.value(dst, depth+1); err != nil {
			return dst, err
		}
		if n := len(members); n > 0 && Compare(members[n-1].key, key) >= 0 {
			sorted = false
		}
		members = append(members, member{key: key, from: from, to: len(dst)})
		p.skipWS()
		if p.i >= len(p.s) {
			return dst, p.errorf("unterminated object")
		}
		if p.s[p.i] == '}' {
			p.i++
			break
		}
		if p.s[p.i] != ',' {
			return dst, p.errorf("expected , or } in object")
		}
		p.i++
		// Members are written back to back here; commas go in when the
		// object is laid out in order below.
	}
	if sorted {
		return insertCommas(dst, members), nil
	}
	slices.SortStableFunc(members, func(a, b member) int { return Compare(a.key, b.key) })
	for i := 1; i < len(members); i++ {
		if members[i-1].key == members[i].key {
			return dst, p.errorf("duplicate member name %q", members[i].key)
		}
	}
	scratch := slices.Clone(dst[start:])
	dst = dst[:start]
	for i, m := range members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, scratch[m.from-start:m.to-start]...)
	}
	return append(dst, '}'), nil
}

// insertCommas lays out back-to-back members (already in order) with commas
// between them, working from the end so nothing is overwritten early.
func insertCommas(dst []byte, members []member) []byte {
	end := len(dst)
	n := len(members)
	dst = slices.Grow(dst, n) // n-1 commas and the closing brace
	dst = dst[:end+n]
	dst[end+n-1] = '}'
	w := end + n - 1 // next write position is below w
	for i := n - 1; i >= 0; i-- {
		m := members[i]
		w -= m.to - m.from
		copy(dst[w:], dst[m.from:m.to])
		if i > 0 {
			w--
			dst[w] = ','
		}
	}
	return dst
}

// str reads a JSON string at p.i and appends it in canonical form.
func (p *parser) str(dst []byte) ([]byte, error) {
	p.i++ // opening quote
	dst = append(dst, '"')
	for {
		start := p.i
		for p.i < len(p.s) {
			for p.i+8 <= len(p.s) && plain8(binary.LittleEndian.Uint64(p.s[p.i:])) {
				p.i += 8
			}
			if p.i >= len(p.s) {
				break
			}
			c := p.s[p.i]
			if c < utf8.RuneSelf {
				if !safe[c] {
					break
				}
				p.i++
				continue
			}
			r, size := utf8.DecodeRune(p.s[p.i:])
			if r == utf8.RuneError && size == 1 {
				return dst, &SyntaxError{Offset: p.i, Msg: ErrInvalidUTF8.Error()}
			}
			p.i += size
		}
		dst = append(dst, p.s[start:p.i]...)
		if p.i >= len(p.s) {
			return dst, p.errorf("unterminated string")
		}
		switch c := p.s[p.i]; c {
		case '"':
			p.i++
			return append(dst, '"'), nil
		case '\\':
			r, err := p.escape()
			if err != nil {
				return dst, err
			}
			if r < 0x20 || r == '"' || r == '\\' {
				dst = appendEscape(dst, byte(r))
			} else {
				dst = utf8.AppendRune(dst, r)
			}
		default: // a raw control character
			return dst, p.errorf("control character %#x in string", c)
		}
	}
}

// escape decodes the escape sequence at p.i (at the backslash), joining
// surrogate pairs; a lone surrogate is an error.
func (p *parser) escape() (rune, error) {
	if p.i+1 >= len(p.s) {
		return 0, p.errorf("unterminated escape")
	}
	c := p.s[p.i+1]
	switch c {
	case '"', '\\', '/':
		p.i += 2
		return rune(c), nil
	case 'b':
		p.i += 2
		return '\b', nil
	case 'f':
		p.i += 2
		return '\f', nil
	case 'n':
		p.i += 2
		return '\n', nil
	case 'r':
		p.i += 2
		return '\r', nil
	case 't':
		p.i += 2
		return '\t', nil
	case 'u':
		r, ok := hex4(p.s[p.i+2:])
		if !ok {
			return 0, p.errorf("invalid \\u escape")
		}
		if utf16.IsSurrogate(r) {
			if r >= 0xDC00 {
				return 0, p.errorf("lone low surrogate \\u%04x", r)
			}
			rest := p.s[p.i+6:]
			if len(rest) < 2 || rest[0] != '\\' || rest[1] != 'u' {
				return 0, p.errorf("lone high surrogate \\u%04x", r)
			}
			lo, ok := hex4(rest[2:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return 0, p.errorf("lone high surrogate \\u%04x", r)
			}
			p.i += 12
			return utf16.DecodeRune(r, lo), nil
		}
		p.i += 6
		return r, nil
	}
	return 0, p.errorf("invalid escape \\%c", c)
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// decodeCanonical returns the value of a canonical JSON string literal
// (quotes included), which only has the escapes AppendString writes.
func decodeCanonical(lit []byte) (string, error) {
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body), nil
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch body[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(body[i+1:])
			if !ok || r >= 0x20 {
				return "", errors.New("jcs: internal: non-canonical escape")
			}
			out = append(out, byte(r))
			i += 4
		default: // '"' or '\\'
			out = append(out, body[i])
		}
	}
	return string(out), nil
}
