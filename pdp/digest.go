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
// (sorted) order; absent values are omitted.
func appendDigestDoc(b []byte, in *Input) ([]byte, error) {
	a := &in.Action
	return jcs.AppendObject(b, func(o *jcs.Object) {
		o.Str("agent", in.Agent.ID)
		o.Value("arguments", a.Arguments, len(a.Arguments) > 0)
		o.Object("http", func(h *jcs.Object) {
			h.Value("body", a.HTTP.Body, a.HTTP.Body != nil)
			h.Str("host", a.HTTP.Host)
			h.Str("method", a.HTTP.Method)
			h.Str("path", a.HTTP.Path)
			h.Value("query", a.HTTP.Query, len(a.HTTP.Query) > 0)
		}, false)
		o.Str("kind", a.Kind)
		o.Str("resource", a.Resource)
		o.Str("server", a.Server)
		o.Str("tool", a.Tool)
		o.Str("user", in.User.ID)
	})
}
