package approvals

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAPI(t *testing.T) {
	st, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := &clock{t: time.Now()}
	svc := New(Options{Store: st, Now: clk.now})
	api := &API{Service: svc, Auth: AnyOf{StaticTokens{
		{ID: "alice", TokenSHA256: HashToken("alice-token")},
		{ID: "bob", Groups: []string{"security"}, TokenSHA256: HashToken("bob-token")},
		{ID: "carol", TokenSHA256: HashToken("carol-token")},
		{ID: "dave", TokenSHA256: HashToken("dave's pass: phrase!")}, // hash-token takes any token
	}}}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	do := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	id := hold(t, svc, map[string]any{"path": "/etc/x"}).Approval.ID

	for _, c := range []struct{ method, path, token string }{
		{"GET", "/v1/approvals", ""},
		{"GET", "/v1/approvals", "wrong-token"},
		{"GET", "/v1/approvals/" + id, "Basic alice-token"},
		{"POST", "/v1/approvals/" + id + "/approve", ""},
	} {
		if code, body := do(c.method, c.path, c.token, ""); code != 401 || !strings.Contains(body, "sign in") {
			t.Errorf("%s %s with %q: %d %s", c.method, c.path, c.token, code, body)
		}
	}
	code, body := do("GET", "/v1/approvals?state=pending", "alice-token", "")
	var list struct{ Approvals []Approval }
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.Approvals) != 1 || list.Approvals[0].ID != id {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := do("GET", "/v1/approvals?state=maybe", "alice-token", ""); code != 400 {
		t.Errorf("bad state filter: %d %s", code, body)
	}
	if code, body := do("GET", "/v1/approvals/"+id, "dave's pass: phrase!", ""); code != 200 {
		t.Errorf("a token outside RFC 6750's b64token: %d %s", code, body)
	}
	if code, _ := do("GET", "/v1/approvals/nope", "alice-token", ""); code != 404 {
		t.Errorf("unknown id: %d", code)
	}
	if code, body := do("GET", "/v1/approvals/"+id+"/status", "", ""); code != 200 || !strings.Contains(body, `"state": "pending"`) || strings.Contains(body, "/etc/x") {
		t.Errorf("status (no sign-in, no details): %d %s", code, body)
	}
	if code, body := do("POST", "/v1/approvals/"+id+"/approve", "carol-token", `{}`); code != 403 || !strings.Contains(body, "for themselves") {
		t.Errorf("self-approval: %d %s", code, body)
	}
	if code, body := do("POST", "/v1/approvals/"+id+"/approve", "alice-token", `{"comment":"ok","extra":1}`); code != 400 {
		t.Errorf("unknown body field: %d %s", code, body)
	}
	if code, body := do("POST", "/v1/approvals/"+id+"/approve", "alice-token", `{"comment":"ok"}`); code != 200 || !strings.Contains(body, `"state": "pending"`) {
		t.Errorf("first of two approvals: %d %s", code, body)
	}
	if code, body := do("POST", "/v1/approvals/"+id+"/deny", "bob-token", ``); code != 200 || !strings.Contains(body, `"state": "denied"`) {
		t.Errorf("deny: %d %s", code, body)
	}
	if code, body := do("POST", "/v1/approvals/"+id+"/approve", "bob-token", `{}`); code != 409 || !strings.Contains(body, "no longer pending") {
		t.Errorf("approving a denied approval: %d %s", code, body)
	}
}
