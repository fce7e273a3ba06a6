package mcpproxy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestStateHandle(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	up := "upstream-state:deploy"
	h := stateHandle{Approval: "ap-1", Digest: "sha256:ab", Agent: "a", User: "u", Expires: time.Now().Add(time.Minute).Unix(),
		UpstreamState: &up, UpstreamResponses: json.RawMessage(`{"confirm":{"action":"accept","content":{"confirm":true}}}`)}
	s, err := sealState(key, h)
	if err != nil || !isStateHandle(s) {
		t.Fatal(s, err)
	}
	got, err := openState(key, s, time.Now())
	if err != nil || got.Approval != "ap-1" || got.Digest != "sha256:ab" || *got.UpstreamState != up {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for name, c := range map[string]struct {
		key  []byte
		s    string
		now  time.Time
		want string
	}{
		"other key":  {[]byte(strings.Repeat("x", 32)), s, time.Now(), "does not verify"},
		"tampered":   {key, strings.Replace(s, "."+strings.Split(s, ".")[2], "."+strings.Split(s, ".")[2][:4]+"AAAA", 1), time.Now(), "does not verify"},
		"expired":    {key, s, time.Now().Add(2 * time.Minute), "expired"},
		"not ours":   {key, "upstream-state", time.Now(), "not one of agentpdp's"},
		"no sig":     {key, stateHandlePrefix + "abc", time.Now(), "not one of agentpdp's"},
		"no key set": {nil, s, time.Now(), "not one of agentpdp's"},
	} {
		if _, err := openState(c.key, c.s, c.now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}

	// Stripping puts the upstream's state and responses back, exactly.
	params := map[string]any{"name": "confirm", "requestState": s,
		"inputResponses": map[string]any{approvalInputKey: map[string]any{"action": "accept"}}}
	if err := stripHandle(params, got); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(params)
	if string(b) != `{"inputResponses":{"confirm":{"action":"accept","content":{"confirm":true}}},"name":"confirm","requestState":"upstream-state:deploy"}` {
		t.Fatalf("stripped: %s", b)
	}
	params = map[string]any{"name": "x", "requestState": s, "inputResponses": map[string]any{approvalInputKey: map[string]any{"action": "accept"}}}
	if err := stripHandle(params, stateHandle{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(params); string(b) != `{"name":"x"}` {
		t.Fatalf("stripped without upstream parts: %s", b)
	}
}
