package mcpproxy

import (
	"bytes"
	"encoding/json"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// envelope is a JSON-RPC message's id and method, as FromServer reads
// every message from the upstream.
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
}

// readEnvelope is json.Unmarshal(msg, &env), in one pass over the usual
// message (json.Unmarshal validates it and then decodes it with a second
// scan). Anything the quick reading is not sure to read exactly as
// json.Unmarshal does (escaped or case-folded keys, a repeated id or
// method, a method that is not a plain ASCII string) is read by
// json.Unmarshal after all.
func readEnvelope(msg []byte) (env envelope, err error) {
	if id, method, ok := quickEnvelope(msg); ok {
		return envelope{ID: id, Method: method}, nil
	}
	err = json.Unmarshal(msg, &env)
	return env, err
}

func quickEnvelope(msg []byte) (id json.RawMessage, method string, ok bool) {
	if !json.Valid(msg) {
		return nil, "", false
	}
	// Valid: every string is closed and every bracket matched, so the
	// reading below only has to find where members begin and end.
	i := skipWS(msg, 0)
	if i >= len(msg) || msg[i] != '{' {
		return nil, "", false
	}
	i = skipWS(msg, i+1)
	seenID, seenMethod := false, false
	for i < len(msg) && msg[i] == '"' {
		end := jcs.SkipString(msg, i)
		if end < 0 {
			return nil, "", false
		}
		key := msg[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return nil, "", false
		}
		i = skipWS(msg, end)
		i = skipWS(msg, i+1) // the colon
		vend := jcs.SkipValue(msg, i)
		if vend < 0 {
			return nil, "", false
		}
		val := msg[i:vend]
		switch {
		case string(key) == "id":
			if seenID {
				return nil, "", false
			}
			seenID, id = true, val
		case string(key) == "method":
			if seenMethod || val[0] != '"' {
				return nil, "", false
			}
			for _, c := range val[1 : len(val)-1] {
				if c == '\\' || c >= 0x80 {
					return nil, "", false
				}
			}
			seenMethod, method = true, string(val[1:len(val)-1])
		case bytes.EqualFold(key, []byte("id")) || bytes.EqualFold(key, []byte("method")):
			return nil, "", false
		}
		i = skipWS(msg, vend)
		if i < len(msg) && msg[i] == ',' {
			i = skipWS(msg, i+1)
		}
	}
	return id, method, true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
