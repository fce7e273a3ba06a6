package jcs

import "bytes"

// SkipString returns the index just past the JSON string whose opening
// quote is at b[i], or -1 when the string is not closed. Escapes are
// stepped over, not checked.
func SkipString(b []byte, i int) int {
	start := i
	for i++; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		i += j
		// The quote is escaped when an odd number of backslashes precede it.
		k := i - 1
		for k > start && b[k] == '\\' {
			k--
		}
		if (i-1-k)%2 == 0 {
			return i + 1
		}
	}
	return -1
}

// SkipValue returns the index just past the JSON value that starts at b[i],
// or -1 when none starts there or it is cut short (a string, object or
// array not closed). It finds where a value ends in text already known to
// be JSON (json.Valid, or canonical) and checks no more than it must to
// fail on cut text: brackets are counted, not matched, and a number or
// literal is whatever runs up to the next comma, closing bracket,
// whitespace or the end of b.
func SkipValue(b []byte, i int) int {
	if i < 0 || i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return SkipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = SkipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	start := i
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			if i == start {
				return -1
			}
			return i
		}
	}
	return i
}
