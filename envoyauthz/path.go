package envoyauthz

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// canonicalPath returns the path policies decide on: the one spelling of
// raw (the path of an origin-form request target, query and fragment
// already cut off) that the upstream server resolves to the same resource.
// Policies compare strings, so every alternative spelling left here is a way
// around a rule written for the canonical one.
//
// It decodes percent-encoded unreserved characters (%41 → A, %2e → .),
// upper-cases the hex digits of every other escape (%c3%a9 → %C3%A9),
// percent-encodes raw bytes that RFC 3986 does not allow in a path (space,
// non-ASCII UTF-8, ...), merges runs of "/" as Envoy's merge_slashes and
// nginx do, and then removes "." and ".." segments as in RFC 3986 §5.2.4
// (never above the root; "/a/b/.." → "/a/"). "" becomes "/" and "*" (the
// OPTIONS target) is returned unchanged.
//
// It refuses, with an error naming the problem, what cannot be made
// canonical safely because upstream servers disagree on its meaning: a path
// not starting with "/", invalid UTF-8, invalid percent-encoding, an encoded
// "/" (%2F) or "\" (%5C), a raw "\", a control byte raw or encoded, a raw
// "?" or "#", and a dot segment with parameters ("..;", ".;x"), which
// Tomcat-style servers treat as "..". "%25" is kept, never decoded, so the
// result is never decoded twice.
//
// A path that is already canonical is returned as is without allocating.
func canonicalPath(raw string) (string, error) {
	switch {
	case raw == "":
		return "/", nil
	case raw == "*":
		return raw, nil
	case raw[0] != '/':
		return "", errors.New(`path does not start with "/"`)
	}
	if pathIsCanonical(raw) {
		return raw, nil
	}
	return canonicalizePath(raw)
}

// Byte classes of pathClass.
const (
	// pathKeep: a byte a canonical path segment may hold raw, RFC 3986
	// pchar without '%' (which starts an escape).
	pathKeep = 1 << iota
	// pathUnreserved: RFC 3986 unreserved; percent-encoding it changes
	// nothing (§2.3), so its escapes are decoded.
	pathUnreserved
)

var pathClass = func() (t [256]uint8) {
	const (
		alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		unreserved = alnum + "-._~"
		subDelims  = "!$&'()*+,;="
	)
	for _, c := range []byte(unreserved) {
		t[c] |= pathKeep | pathUnreserved
	}
	for _, c := range []byte(subDelims + ":@") {
		t[c] |= pathKeep
	}
	return t
}()

// pathIsCanonical reports whether p, which starts with '/', is certainly
// its own canonical form: only pchar bytes without '%', no empty segment
// but a trailing one, no dot segment. It must not allocate: it runs on
// every request. A false answer only means "take the slow path".
func pathIsCanonical(p string) bool {
	seg := 1 // start of the current segment
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if pathClass[p[i]]&pathKeep == 0 {
				return false
			}
			continue
		}
		switch s := p[seg:i]; {
		case s == "":
			if i < len(p) { // "//"; a trailing "/" is fine
				return false
			}
		case s[0] == '.':
			// ".", "..", and their forms with parameters (".;x", "..;x").
			if len(s) == 1 || s[1] == ';' || s[1] == '.' && (len(s) == 2 || s[2] == ';') {
				return false
			}
		}
		seg = i + 1
	}
	return true
}

// canonicalizePath is the slow path of canonicalPath for a raw starting
// with '/'. It builds the result one segment at a time: decode, then drop or
// pop dot segments. Decoding never yields '/' (%2F is refused), so segment
// boundaries in raw are the final ones, and since empty segments are
// skipped the last '/' in out always starts the last kept segment.
func canonicalizePath(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", errors.New("invalid UTF-8 in the path")
	}
	out := make([]byte, 0, len(raw)+8)
	trailingSlash := false
	for i := 0; i < len(raw); {
		for i < len(raw) && raw[i] == '/' { // merge slashes
			i++
		}
		if i == len(raw) {
			trailingSlash = true
			break
		}
		start := len(out)
		out = append(out, '/')
		for ; i < len(raw) && raw[i] != '/'; i++ {
			c := raw[i]
			switch {
			case pathClass[c]&pathKeep != 0:
				out = append(out, c)
			case c == '%':
				if i+2 >= len(raw) || pathUnhex(raw[i+1]) < 0 || pathUnhex(raw[i+2]) < 0 {
					return "", fmt.Errorf("invalid percent-encoding %q in the path", raw[i:min(i+3, len(raw))])
				}
				b := byte(pathUnhex(raw[i+1])<<4 | pathUnhex(raw[i+2]))
				switch {
				case b == '/':
					return "", errors.New(`encoded "/" (%2F) in the path`)
				case b == '\\':
					return "", errors.New(`encoded "\" (%5C) in the path`)
				case b < 0x20 || b == 0x7f:
					return "", fmt.Errorf("encoded control byte %s in the path", raw[i:i+3])
				case pathClass[b]&pathUnreserved != 0:
					out = append(out, b)
				default:
					out = pathEscape(out, b)
				}
				i += 2
			case c == '\\':
				// Windows servers and some proxies read it as '/'.
				return "", errors.New(`backslash "\" in the path`)
			case c < 0x20 || c == 0x7f:
				return "", fmt.Errorf("control byte 0x%02X in the path", c)
			case c == '?' || c == '#':
				// The caller cuts the query and fragment off; if one is
				// still here the split went wrong, so guess nothing.
				return "", fmt.Errorf("raw %q in the path", c)
			default:
				// Not allowed raw in a URI (space, '"', non-ASCII, ...);
				// the upstream decodes both forms alike, keep the encoded one.
				out = pathEscape(out, c)
			}
		}
		switch seg := out[start+1:]; {
		case len(seg) == 1 && seg[0] == '.':
			out = out[:start]
			trailingSlash = true
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			out = out[:start]
			if n := bytes.LastIndexByte(out, '/'); n >= 0 {
				out = out[:n]
			}
			trailingSlash = true
		case pathDotParams(seg):
			return "", errors.New(`dot segment with parameters (".;" or "..;") in the path`)
		default:
			trailingSlash = false
		}
	}
	if trailingSlash || len(out) == 0 {
		out = append(out, '/')
	}
	return string(out), nil
}

// pathDotParams reports whether a decoded segment is "." or ".." followed by
// parameters. A ';' kept encoded (%3B) counts too: servers that split
// parameters after decoding would see "..;" as well.
func pathDotParams(seg []byte) bool {
	rest := bytes.TrimPrefix(seg, []byte("."))
	rest = bytes.TrimPrefix(rest, []byte("."))
	if len(rest) == len(seg) {
		return false
	}
	return bytes.HasPrefix(rest, []byte(";")) || bytes.HasPrefix(rest, []byte("%3B"))
}

func pathEscape(out []byte, b byte) []byte {
	const hex = "0123456789ABCDEF"
	return append(out, '%', hex[b>>4], hex[b&0xf])
}

func pathUnhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
