package pdp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// digestBufs recycles the canonical-JSON scratch buffer: Digest runs on
// every held call and on every retry that may consume a grant.
var digestBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Digest is action.digest: "sha256:<hex>" of the SHA-256 over the RFC 8785
// canonical JSON of
//
//	{"agent": agent.id, "arguments", "http": {"body","host","method","path","query"},
//	 "kind", "resource", "server", "tool", "user": user.id}
//
// with absent (empty) values left out. It binds an approval to one exact
// call: who, for whom, and what. The request id, time, session and headers
// are deliberately not part of it, so that retrying the identical call
// matches the grant.
//
// An action that has no canonical form (invalid UTF-8, NaN, a value
// encoding/json cannot encode) gets a random digest, which no grant can ever match:
// such a call can be denied but never approved. DigestErr reports the error.
func Digest(in *Input) string {
	d, err := DigestErr(in)
	if err != nil {
		var r [32]byte
		_, _ = rand.Read(r[:]) // never fails (crypto/rand panics instead)
		return formatDigest(r)
	}
	return d
}

// DigestErr is Digest returning the canonicalization error instead of a
// random digest.
func DigestErr(in *Input) (string, error) {
	bp := digestBufs.Get().(*[]byte)
	defer digestBufs.Put(bp)
	b, err := appendDigestDoc((*bp)[:0], in)
	*bp = b[:0]
	if err != nil {
		return "", fmt.Errorf("action digest: %w", err)
	}
	return formatDigest(sha256.Sum256(b)), nil
}

func formatDigest(sum [32]byte) string {
	var out [7 + 64]byte
	copy(out[:], "sha256:")
	hex.Encode(out[7:], sum[:])
	return string(out[:])
}

// appendDigestDoc writes the digest document with its members in canonical
// (sorted) order.
func appendDigestDoc(b []byte, in *Input) ([]byte, error) {
	a := &in.Action
	var err error
	o := objWriter{b: append(b, '{')}
	o.str("agent", in.Agent.ID)
	if len(a.Arguments) > 0 {
		o.key("arguments")
		if o.b, err = jcs.Append(o.b, a.Arguments); err != nil {
			return o.b, fmt.Errorf("arguments: %w", err)
		}
	}
	if h := &a.HTTP; h.Body != nil || h.Host != "" || h.Method != "" || h.Path != "" || len(h.Query) > 0 {
		o.key("http")
		inner := objWriter{b: append(o.b, '{')}
		if h.Body != nil {
			inner.key("body")
			if inner.b, err = jcs.Append(inner.b, h.Body); err != nil {
				return inner.b, fmt.Errorf("http body: %w", err)
			}
		}
		inner.str("host", h.Host)
		inner.str("method", h.Method)
		inner.str("path", h.Path)
		if len(h.Query) > 0 {
			inner.key("query")
			if inner.b, err = jcs.Append(inner.b, h.Query); err != nil {
				return inner.b, fmt.Errorf("http query: %w", err)
			}
		}
		if inner.err != nil {
			return inner.b, inner.err
		}
		o.b = append(inner.b, '}')
	}
	o.str("kind", a.Kind)
	o.str("resource", a.Resource)
	o.str("server", a.Server)
	o.str("tool", a.Tool)
	o.str("user", in.User.ID)
	if o.err != nil {
		return o.b, o.err
	}
	return append(o.b, '}'), nil
}

// objWriter appends members of one JSON object; callers add members in
// sorted key order. Keys are plain ASCII literals.
type objWriter struct {
	b   []byte
	n   int
	err error
}

func (o *objWriter) key(k string) {
	if o.n > 0 {
		o.b = append(o.b, ',')
	}
	o.n++
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

// str adds a string member unless v is empty (absent).
func (o *objWriter) str(k, v string) {
	if v == "" || o.err != nil {
		return
	}
	o.key(k)
	var err error
	if o.b, err = jcs.AppendString(o.b, v); err != nil {
		o.err = fmt.Errorf("%s: %w", k, err)
	}
}
