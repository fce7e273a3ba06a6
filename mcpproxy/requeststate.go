package mcpproxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A 2026-07-28 client that declared URL-mode elicitation is answered
// "still pending" with an InputRequiredResult: a URL elicitation to the
// approval page and agentpdp's own requestState. The client retries the
// identical call with that state; agentpdp checks it, takes it (and its
// own input response) off the message, and decides the rest as any call.
//
// The state is signed, expiring and bound to the call's digest and both
// principals, so a forged, stale or borrowed one is refused. An upstream's
// own requestState and input responses of the same call, when agentpdp
// held a retry that carried them, ride inside it and are put back exactly
// as they were.

// stateHandlePrefix marks agentpdp's own requestState; anything else is
// an upstream's and passes untouched.
const stateHandlePrefix = "agentpdp.v1."

// approvalInputKey is agentpdp's key in inputRequests / inputResponses.
const approvalInputKey = "io.agentpdp/approval"

// stateHandleTTL bounds how long a handle may be retried with.
var stateHandleTTL = 15 * time.Minute

type stateHandle struct {
	Approval string `json:"a"`
	Digest   string `json:"d"`
	Agent    string `json:"g"`
	User     string `json:"u,omitempty"`
	Expires  int64  `json:"e"`
	// The upstream's, from the retry agentpdp held, restored verbatim.
	UpstreamState     *string         `json:"s,omitempty"`
	UpstreamResponses json.RawMessage `json:"r,omitempty"`
}

func isStateHandle(s string) bool { return strings.HasPrefix(s, stateHandlePrefix) }

func sealState(key []byte, h stateHandle) (string, error) {
	body, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(stateHandlePrefix + payload))
	return stateHandlePrefix + payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

var errBadState = errors.New("requestState")

func openState(key []byte, s string, now time.Time) (stateHandle, error) {
	var h stateHandle
	rest, ok := strings.CutPrefix(s, stateHandlePrefix)
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || len(key) == 0 {
		return h, fmt.Errorf("%w: not one of agentpdp's", errBadState)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(stateHandlePrefix + payload))
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return h, fmt.Errorf("%w: signature does not verify (forged, or from another agentpdp)", errBadState)
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(body, &h) != nil {
		return h, fmt.Errorf("%w: unreadable", errBadState)
	}
	if now.Unix() >= h.Expires {
		return h, fmt.Errorf("%w: expired at %s", errBadState, time.Unix(h.Expires, 0).UTC().Format(time.RFC3339))
	}
	return h, nil
}

type handleKey struct{}

// withHandle carries a verified handle to the session, which checks that
// it belongs to this call and these principals.
func withHandle(ctx context.Context, h stateHandle) context.Context {
	return context.WithValue(ctx, handleKey{}, h)
}

func handleFrom(ctx context.Context) (stateHandle, bool) {
	h, ok := ctx.Value(handleKey{}).(stateHandle)
	return h, ok
}

// stripHandle takes agentpdp's requestState and input response off a
// request's params, restoring the upstream's from h.
func stripHandle(params map[string]any, h stateHandle) error {
	delete(params, "requestState")
	if h.UpstreamState != nil {
		params["requestState"] = *h.UpstreamState
	}
	resp, _ := params["inputResponses"].(map[string]any)
	delete(resp, approvalInputKey)
	if len(h.UpstreamResponses) > 0 {
		var up map[string]any
		if err := json.Unmarshal(h.UpstreamResponses, &up); err != nil {
			return err
		}
		if resp == nil {
			resp = map[string]any{}
		}
		for k, v := range up {
			resp[k] = v
		}
	}
	if len(resp) == 0 {
		delete(params, "inputResponses")
	} else {
		params["inputResponses"] = resp
	}
	return nil
}

// urlElicitation says whether a 2026-07-28 request's client declared
// URL-mode elicitation.
func urlElicitation(params map[string]any) bool {
	meta, _ := params["_meta"].(map[string]any)
	caps, _ := meta["io.modelcontextprotocol/clientCapabilities"].(map[string]any)
	el, _ := caps["elicitation"].(map[string]any)
	_, ok := el["url"].(map[string]any)
	return ok
}
