package jcs

import (
	"bytes"
	"errors"
)

// errRedact is returned for input Redact cannot walk: it only walks what
// this package's writers produce.
var errRedact = errors.New("jcs: redact: not canonical JSON")

// Redact appends to dst a copy of the canonical JSON src in which the value
// at each path (object keys from the root; "*" matches every key) is
// replaced by repl, which must be canonical JSON itself (a quoted string,
// say). Only objects are descended. Keys and their order are unchanged, so
// the copy is canonical too. When no path matches, dst is returned as it
// was and changed is false: src needs no copy.
//
// It works on the bytes rather than on the document so that a decision's
// input is encoded once, both for its hash and for the log.
func Redact(dst, src []byte, paths [][]string, repl []byte) (_ []byte, changed bool, err error) {
	if len(paths) == 0 || len(src) == 0 || src[0] != '{' {
		return dst, false, nil
	}
	r := redactor{src: src, dst: dst, repl: repl}
	if _, err := r.object(paths); err != nil {
		return dst, false, err
	}
	if !r.changed {
		return dst, false, nil
	}
	return append(r.dst, src[r.last:]...), true, nil
}

type redactor struct {
	src, dst, repl []byte
	pos, last      int // read position; src[:last] is already in dst
	changed        bool
}

// object walks the object at r.pos, whose members may match paths. Keys
// are sorted, so once every path's name sorts before the key at hand the
// rest of the object cannot match: it returns early with passed true,
// r.pos inside the object, and the caller decides whether the rest of the
// document still needs walking.
func (r *redactor) object(paths [][]string) (passed bool, err error) {
	r.pos++ // '{'
	if r.pos < len(r.src) && r.src[r.pos] == '}' {
		r.pos++
		return false, nil
	}
	var sub [8][]string // paths continuing below one member, usually few
	for {
		if r.pos >= len(r.src) || r.src[r.pos] != '"' {
			return false, errRedact
		}
		kStart := r.pos
		if err := r.skipString(); err != nil {
			return false, err
		}
		key := r.src[kStart:r.pos] // quotes included
		if after(paths, key, false) {
			r.pos = kStart
			return true, nil
		}
		if r.pos >= len(r.src) || r.src[r.pos] != ':' {
			return false, errRedact
		}
		r.pos++
		end, next := false, sub[:0]
		for _, p := range paths {
			if p[0] != "*" && !keyIs(key, p[0]) {
				continue
			}
			if len(p) == 1 {
				end = true
				break
			}
			next = append(next, p[1:])
		}
		switch {
		case end:
			vStart := r.pos
			if err := r.skipValue(); err != nil {
				return false, err
			}
			r.dst = append(r.dst, r.src[r.last:vStart]...)
			r.dst = append(r.dst, r.repl...)
			r.last, r.changed = r.pos, true
		case len(next) > 0 && r.pos < len(r.src) && r.src[r.pos] == '{':
			passed, err := r.object(next)
			if err != nil {
				return false, err
			}
			if passed {
				if after(paths, key, true) {
					return true, nil // nothing later here can match either
				}
				if err := r.skipRest(); err != nil {
					return false, err
				}
			}
		default:
			if err := r.skipValue(); err != nil {
				return false, err
			}
		}
		if r.pos >= len(r.src) {
			return false, errRedact
		}
		switch r.src[r.pos] {
		case ',':
			r.pos++
		case '}':
			r.pos++
			return false, nil
		default:
			return false, errRedact
		}
	}
}

// after reports whether no path can match key (quoted) or, with orEqual,
// any key after it: every name is a literal sorting before it.
func after(paths [][]string, key []byte, orEqual bool) bool {
	if bytes.IndexByte(key, '\\') >= 0 {
		return false // rare: just walk on
	}
	k := key[1 : len(key)-1]
	for _, p := range paths {
		if p[0] == "*" {
			return false
		}
		if c := compareUTF16(p[0], string(k)); c > 0 || (c == 0 && !orEqual) {
			return false
		}
	}
	return true
}

// skipRest moves past the end of the object r.pos is inside of, at a
// member's start.
func (r *redactor) skipRest() error {
	for {
		if err := r.skipString(); err != nil { // key
			return err
		}
		if r.pos >= len(r.src) || r.src[r.pos] != ':' {
			return errRedact
		}
		r.pos++
		if err := r.skipValue(); err != nil {
			return err
		}
		if r.pos >= len(r.src) {
			return errRedact
		}
		r.pos++
		if r.src[r.pos-1] == '}' {
			return nil
		}
		if r.src[r.pos-1] != ',' {
			return errRedact
		}
	}
}

// keyIs compares a quoted, possibly escaped, key with a path element.
func keyIs(raw []byte, name string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1:len(raw)-1]) == name
	}
	k, err := decodeCanonical(raw)
	return err == nil && k == name
}

// skipString moves past the string starting at r.pos.
func (r *redactor) skipString() error { return r.skipTo(SkipString(r.src, r.pos)) }

// skipValue moves past the value starting at r.pos.
func (r *redactor) skipValue() error { return r.skipTo(SkipValue(r.src, r.pos)) }

func (r *redactor) skipTo(end int) error {
	if end < 0 {
		return errRedact
	}
	r.pos = end
	return nil
}
