package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type hookDelivery struct {
	hdr  http.Header
	body []byte
}

// verifyHook checks X-Agentpdp-Signature as the README tells a receiver
// to: HMAC-SHA256 of "<t>.<body>", and t recent.
func verifyHook(t *testing.T, secret string, d hookDelivery) {
	t.Helper()
	var ts, sig string
	for part := range strings.SplitSeq(d.hdr.Get("X-Agentpdp-Signature"), ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(d.body)))
	got, _ := hex.DecodeString(sig)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		t.Errorf("signature %q does not verify (%v)", d.hdr.Get("X-Agentpdp-Signature"), err)
	}
}

// TestApprovalWebhooks: the real binary tells a receiver in this process
// of a held Envoy Check (requested) and of its approval with the CLI
// (approved), signed with the configured secret.
func TestApprovalWebhooks(t *testing.T) {
	got := make(chan hookDelivery, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- hookDelivery{r.Header.Clone(), body}
	}))
	defer recv.Close()
	dir := t.TempDir()
	const secret = "webhook-secret"
	must(t, os.WriteFile(filepath.Join(dir, "hook.secret"), []byte(secret+"\n"), 0o600))
	p := startAgentpdp(t, fmt.Sprintf("data_dir: %s\nadmin:\n  addr: \"off\"\nenvoy:\n  addr: 127.0.0.1:0\n%s  webhooks:\n    - {url: %s/hook, secret_file: %s}\n",
		dir, reviewersYAML(), recv.URL, filepath.Join(dir, "hook.secret")))
	apiAddr := p.listenerAddr(t, "approvals")

	client := envoyClient(t, p.doorAddr(t, "envoy"))
	req := exampleCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	held := checkHeld(ctx, t, client, req, apiAddr)

	next := func(want string) map[string]any {
		t.Helper()
		select {
		case d := <-got:
			verifyHook(t, secret, d)
			var p map[string]any
			must(t, json.Unmarshal(d.body, &p))
			a, _ := p["approval"].(map[string]any)
			act, _ := a["action"].(map[string]any)
			if p["event"] != want || d.hdr.Get("X-Agentpdp-Event") != want || d.hdr.Get("X-Agentpdp-Delivery") != p["delivery_id"] ||
				a["id"] != held.ApprovalID || a["user"] != "alice@example.com" || act["tool"] != "merge_pull_request" ||
				p["status_url"] != "http://"+apiAddr+"/v1/approvals/"+held.ApprovalID+"/status" {
				t.Errorf("want %s for %s, got %s %s", want, held.ApprovalID, d.hdr, d.body)
			}
			return a
		case <-ctx.Done():
			t.Fatalf("no %s delivery\n%s", want, p.log())
			return nil
		}
	}
	if a := next("requested"); a["state"] != "pending" {
		t.Errorf("requested: state %v", a["state"])
	}

	if out, err := approvalsCLI(ctx, "http://"+apiAddr, "sam-token", "approve", held.ApprovalID); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	// reviewed is not a default event: approved comes next.
	a := next("approved")
	if rv, _ := a["reviews"].([]any); a["state"] != "approved" || len(rv) != 1 || rv[0].(map[string]any)["by"] != "sam" {
		t.Errorf("approved: %v", a)
	}
	p.stop(t)
}
