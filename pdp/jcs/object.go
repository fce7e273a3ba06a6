package jcs

import "time"

// Object appends one JSON object's members in canonical form. Callers add
// members in sorted key order; keys must be plain ASCII names that need no
// escaping (the fixed field names of the caller's types). The first error
// sticks in Err and later writes do nothing.
type Object struct {
	B   []byte
	Err error
	n   int
}

// AppendObject writes {…} with fn's members to dst.
func AppendObject(dst []byte, fn func(*Object)) ([]byte, error) {
	o := Object{B: append(dst, '{')}
	fn(&o)
	if o.Err != nil {
		return dst, o.Err
	}
	return append(o.B, '}'), nil
}

// Key starts a member.
func (o *Object) Key(k string) {
	if o.n > 0 {
		o.B = append(o.B, ',')
	}
	o.n++
	o.B = append(o.B, '"')
	o.B = append(o.B, k...)
	o.B = append(o.B, '"', ':')
}

// Pair writes a member whose name may need escaping (a map key) and whose
// value is a string.
func (o *Object) Pair(k, v string) {
	if o.Err != nil {
		return
	}
	if o.n > 0 {
		o.B = append(o.B, ',')
	}
	o.n++
	if o.B, o.Err = AppendString(o.B, k); o.Err != nil {
		return
	}
	o.B = append(o.B, ':')
	o.B, o.Err = AppendString(o.B, v)
}

// Str writes a string member, omitted when empty.
func (o *Object) Str(k, v string) {
	if v != "" {
		o.StrAlways(k, v)
	}
}

// StrAlways writes a string member, even when empty.
func (o *Object) StrAlways(k, v string) {
	if o.Err != nil {
		return
	}
	o.Key(k)
	o.B, o.Err = AppendString(o.B, v)
}

// Bool writes a true member; false is omitted.
func (o *Object) Bool(k string, v bool) {
	if v {
		o.Key(k)
		o.B = append(o.B, "true"...)
	}
}

// Int writes an integer member, omitted when zero unless always.
func (o *Object) Int(k string, v int64, always bool) {
	if v != 0 || always {
		o.Key(k)
		o.B = AppendInt(o.B, v)
	}
}

// Time writes an RFC 3339 timestamp member (as encoding/json does),
// omitted when zero.
func (o *Object) Time(k string, t time.Time) {
	if t.IsZero() {
		return
	}
	o.Key(k)
	o.B = append(o.B, '"')
	o.B = t.AppendFormat(o.B, time.RFC3339Nano)
	o.B = append(o.B, '"')
}

// Strings writes a string array member, omitted when empty.
func (o *Object) Strings(k string, vs []string) {
	if len(vs) == 0 || o.Err != nil {
		return
	}
	o.Key(k)
	o.B, o.Err = appendStrings(o.B, vs)
}

// Value writes any JSON value through Append when present.
func (o *Object) Value(k string, v any, present bool) {
	if !present || o.Err != nil {
		return
	}
	o.Key(k)
	o.B, o.Err = Append(o.B, v)
}

// Raw writes a member whose value is already canonical JSON, when present.
func (o *Object) Raw(k string, v []byte) {
	if len(v) > 0 {
		o.Key(k)
		o.B = append(o.B, v...)
	}
}

// Object writes a nested object member, omitted when fn writes nothing
// unless keepEmpty.
func (o *Object) Object(k string, fn func(*Object), keepEmpty bool) {
	m := o.Open(k)
	// fn writes into o itself, its member count reset: a separate inner
	// Object would escape to the heap through fn on every call.
	fn(o)
	o.Close(m, keepEmpty)
}

// Mark is where a nested object began, for Close.
type Mark struct{ pos, n int }

// Open starts a nested object member; its members follow, then Close.
func (o *Object) Open(k string) Mark {
	m := Mark{len(o.B), o.n}
	if o.Err != nil {
		return m
	}
	o.Key(k)
	o.B = append(o.B, '{')
	o.n = 0
	return m
}

// Close ends the object Open began, dropping it when it has no members
// unless keepEmpty.
func (o *Object) Close(m Mark, keepEmpty bool) {
	if o.Err != nil {
		return
	}
	members := o.n
	o.n = m.n + 1
	if members == 0 && !keepEmpty {
		o.B, o.n = o.B[:m.pos], m.n
		return
	}
	o.B = append(o.B, '}')
}
