package pdp

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
)

// jsonError places an error from decoding b into a value of type t at its
// line and column. encoding/json gives offsets for syntax and type errors
// only (the byte after the bad one; the end of a mistyped scalar); an
// unknown field or a cut document is located here.
func jsonError(b []byte, t reflect.Type, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return sourceErrorAt(b, se.Offset-1, err.Error())
	case errors.As(err, &te):
		return sourceErrorAt(b, valueStart(b, te.Offset), err.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		// Where the text stops, not after trailing blank lines.
		return sourceErrorAt(b, int64(len(bytes.TrimRight(b, " \t\r\n"))), "unexpected EOF: the JSON document is cut short")
	case errors.Is(err, io.EOF):
		return sourceErrorAt(b, 0, "no JSON document (the input is empty)")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		if off := unknownFieldOffset(b, t); off >= 0 {
			return sourceErrorAt(b, off, err.Error())
		}
	}
	return err
}

// sourceErrorAt is msg at byte offset off of b, as line:col (1-based;
// the column counts bytes).
func sourceErrorAt(b []byte, off int64, msg string) SourceError {
	off = min(max(off, 0), int64(len(b)))
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(b[:off], '\n')
	return SourceError{Line: line, Col: col, Msg: msg}
}

func skipJSONSpace(b []byte, off int64) int64 {
	for off < int64(len(b)) && strings.IndexByte(" \t\r\n", b[off]) >= 0 {
		off++
	}
	return off
}

// tokenReader reads b's tokens with the offset each starts at.
type tokenReader struct {
	b   []byte
	dec *json.Decoder
}

func newTokenReader(b []byte) *tokenReader {
	return &tokenReader{b: b, dec: json.NewDecoder(bytes.NewReader(b))}
}

func (r *tokenReader) next() (tok json.Token, start int64, err error) {
	// Between tokens lie only white space and the ',' or ':' that Token
	// consumes with the next one.
	start = r.dec.InputOffset()
	for start < int64(len(r.b)) && strings.IndexByte(" \t\r\n,:", r.b[start]) >= 0 {
		start++
	}
	tok, err = r.dec.Token()
	return tok, start, err
}

// valueStart is where the value that a type error's offset points into
// begins: encoding/json gives the end of a scalar, or the byte after the
// '{' or '[' of an object or array.
func valueStart(b []byte, off int64) int64 {
	r := newTokenReader(b)
	for {
		_, start, err := r.next()
		switch end := r.dec.InputOffset(); {
		case err != nil || end > off:
			return off
		case end == off:
			return start
		}
	}
}

// unknownFieldOffset is the offset of the first object key in b that
// names no field of the struct it would decode into (what
// DisallowUnknownFields rejects, matching names as encoding/json does),
// or -1.
func unknownFieldOffset(b []byte, t reflect.Type) int64 {
	off, _ := newTokenReader(b).unknownKey(t)
	return off
}

// unknownKey reads one value that decodes into t (nil: anything may be
// there) and returns the offset of its first unknown key, or -1.
func (r *tokenReader) unknownKey(t reflect.Type) (int64, error) {
	tok, _, err := r.next()
	if err != nil {
		return -1, err
	}
	t = plain(t)
	switch tok {
	case json.Delim('{'):
		for r.dec.More() {
			key, start, err := r.next()
			if err != nil {
				return -1, err
			}
			var vt reflect.Type
			switch {
			case t == nil:
			case t.Kind() == reflect.Struct:
				name, _ := key.(string)
				ft, ok := jsonField(t, name)
				if !ok {
					return start, nil
				}
				vt = ft
			case t.Kind() == reflect.Map:
				vt = t.Elem()
			}
			if off, err := r.unknownKey(vt); off >= 0 || err != nil {
				return off, err
			}
		}
		_, _, err = r.next() // '}'
	case json.Delim('['):
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for r.dec.More() {
			if off, err := r.unknownKey(et); off >= 0 || err != nil {
				return off, err
			}
		}
		_, _, err = r.next() // ']'
	}
	return -1, err
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// plain is t without pointers, or nil for a type that reads its own JSON
// (its fields are not what the keys name). Interfaces, like every kind
// but struct, map and slice, are not walked into.
func plain(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || reflect.PointerTo(t).Implements(jsonUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	return t
}

// jsonField is the type of struct t's field named key in JSON, matched
// as encoding/json does: exactly, else ignoring case.
func jsonField(t reflect.Type, key string) (reflect.Type, bool) {
	var folded reflect.Type
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous && f.Type.Kind() == reflect.Struct {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f.Type, true
		}
		if folded == nil && strings.EqualFold(name, key) {
			folded = f.Type
		}
	}
	return folded, folded != nil
}
