package jcs

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// IsCanonical reports whether b is a JSON text already in canonical form,
// that is whether Transform(b) would return b unchanged. It does not
// allocate for ordinary input, so writers can check bytes handed to them
// and only fall back to Transform when needed.
func IsCanonical(b []byte) bool {
	c := checker{s: b}
	return c.value(0) && c.i == len(c.s)
}

type checker struct {
	s []byte
	i int
}

func (c *checker) value(depth int) bool {
	if depth > maxDepth || c.i >= len(c.s) {
		return false
	}
	switch b := c.s[c.i]; {
	case b == '{':
		return c.object(depth)
	case b == '[':
		c.i++
		if c.i < len(c.s) && c.s[c.i] == ']' {
			c.i++
			return true
		}
		for {
			if !c.value(depth + 1) {
				return false
			}
			if c.i >= len(c.s) {
				return false
			}
			switch c.s[c.i] {
			case ',':
				c.i++
			case ']':
				c.i++
				return true
			default:
				return false
			}
		}
	case b == '"':
		_, ok := c.str()
		return ok
	case b == '-' || (b >= '0' && b <= '9'):
		start := c.i
		for c.i < len(c.s) && isNumberByte(c.s[c.i]) {
			c.i++
		}
		lit := c.s[start:c.i]
		var buf [32]byte
		out, ok := appendNumber(buf[:0], string(lit))
		return ok && bytes.Equal(out, lit)
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if bytes.HasPrefix(c.s[c.i:], []byte(lit)) {
				c.i += len(lit)
				return true
			}
		}
		return false
	}
}

func (c *checker) object(depth int) bool {
	c.i++ // {
	if c.i < len(c.s) && c.s[c.i] == '}' {
		c.i++
		return true
	}
	var prev []byte
	prevEscaped := false
	for {
		if c.i >= len(c.s) || c.s[c.i] != '"' {
			return false
		}
		start := c.i
		escaped, ok := c.str()
		if !ok {
			return false
		}
		key := c.s[start+1 : c.i-1]
		if prev != nil {
			var cmp int
			if escaped || prevEscaped {
				cmp = compareDecoded(prev, key, prevEscaped, escaped) // rare
			} else {
				cmp = compareBytes(prev, key)
			}
			if cmp >= 0 {
				return false
			}
		}
		prev, prevEscaped = key, escaped
		if c.i >= len(c.s) || c.s[c.i] != ':' {
			return false
		}
		c.i++
		if !c.value(depth + 1) {
			return false
		}
		if c.i >= len(c.s) {
			return false
		}
		switch c.s[c.i] {
		case ',':
			c.i++
		case '}':
			c.i++
			return true
		default:
			return false
		}
	}
}

// compareDecoded compares two canonical string bodies that may hold escapes.
func compareDecoded(a, b []byte, aEsc, bEsc bool) int {
	da, db := string(a), string(b)
	if aEsc {
		s, err := decodeCanonical(quote(a))
		if err != nil {
			return 0
		}
		da = s
	}
	if bEsc {
		s, err := decodeCanonical(quote(b))
		if err != nil {
			return 0
		}
		db = s
	}
	return Compare(da, db)
}

func quote(b []byte) []byte {
	q := make([]byte, 0, len(b)+2)
	q = append(q, '"')
	q = append(q, b...)
	return append(q, '"')
}

// str checks the canonical string at c.i, reporting whether it has escapes.
func (c *checker) str() (escaped, ok bool) {
	s, i := c.s, c.i+1 // locals: the loop stays in registers
	defer func() { c.i = i }()
	for {
		// A run of plain ASCII: 8 bytes at a time, then byte by byte.
		for i+8 <= len(s) && plain8(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
		}
		for i < len(s) && s[i] < utf8.RuneSelf && safe[s[i]] {
			i++
		}
		if i >= len(s) {
			return escaped, false
		}
		switch b := s[i]; {
		case b >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				return escaped, false
			}
			i += size
		case b == '"':
			i++
			return escaped, true
		case b == '\\':
			if i+1 >= len(s) {
				return escaped, false
			}
			escaped = true
			switch s[i+1] {
			case '"', '\\', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				// Only control characters without a short form, lowercase hex.
				h := s[i+2:]
				if len(h) < 4 || h[0] != '0' || h[1] != '0' || !isLowerHex(h[2]) || !isLowerHex(h[3]) {
					return escaped, false
				}
				r, _ := hex4(h)
				if r >= 0x20 || r == '\b' || r == '\f' || r == '\n' || r == '\r' || r == '\t' {
					return escaped, false
				}
				i += 6
			default:
				return escaped, false
			}
		default: // raw control character
			return escaped, false
		}
	}
}

func isLowerHex(b byte) bool { return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') }

// compareBytes is Compare for byte slices.
func compareBytes(a, b []byte) int { return compareUTF16(a, b) }
