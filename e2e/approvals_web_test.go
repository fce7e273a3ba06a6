package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/agentpdp/agentpdp/approvals/oidctest"
)

// TestApprovalPageInChromium: an agent acting for alice writes .env through
// agentpdp mcp in front of server-filesystem and is held. sam, a security
// reviewer, signs in to the reviewers' page in headless Chromium with the
// OIDC provider (a real one, on loopback, in this process), sees the held
// call appear without reloading, is refused with the reason when the page
// posts another call's digest, and approves it with a comment; the held
// call then completes, once, and the log tells the story.
func TestApprovalPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (make deps installs it: e2e/debian-deps.sh)")
	}
	dir := peersDir(t)
	sandbox := t.TempDir()
	envFile := filepath.Join(sandbox, ".env")
	must(t, os.WriteFile(envFile, []byte("API_KEY=old\n"), 0o600))
	data := t.TempDir()
	logFile := filepath.Join(data, "decisions.log")
	apiAddr := freeAddr(t)
	public := "http://" + apiAddr

	idp := oidctest.Start(t, oidctest.User{Sub: "sam", Email: "sam@example.com", Name: "Sam", Groups: []string{"security"}},
		oidctest.Client{ID: "agentpdp", Secret: "e2e-client-secret", RedirectURIs: []string{public + "/auth/callback"}})
	must(t, os.WriteFile(filepath.Join(data, "client-secret"), []byte("e2e-client-secret\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(data, "session-key"), []byte(strings.Repeat("0123456789abcdef", 4)), 0o600))
	cfgFile := filepath.Join(data, "agentpdp.yaml")
	must(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`approvals:
  session_key_file: session-key
  oidc:
    issuer: %s
    client_id: agentpdp
    client_secret_file: client-secret
`, idp.Issuer)), 0o600))

	// The agent waits for the go-ahead file, so that the page is open
	// before the call is held: it must appear live.
	goAhead := filepath.Join(data, "go")
	policies := fsPolicy(t, sandbox)
	plan := map[string]any{
		"transport": "stdio", "command": agentpdpBin,
		"env":  map[string]string{"AGENTPDP_APPROVALS_ADDR": apiAddr},
		"args": fsApprovalArgs(dir, cfgFile, policies, sandbox, data, logFile, "50s"),
		"steps": []clientStep{{"op": "waitFile", "path": goAhead},
			{"op": "callTool", "name": "write_file", "progress": true, "arguments": map[string]any{"path": envFile, "content": "API_KEY=new\n"}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := startNodeClient(t, "client-v1.mjs", plan, 2*time.Minute)
	// The page is up once the client has started agentpdp.
	for {
		resp, err := http.Get(public + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case r := <-done:
			t.Fatalf("the client ended before agentpdp served the page: %v\n%s", r.err, r.out)
		case <-ctx.Done():
			t.Fatal("agentpdp never served the approvals listener")
		case <-time.After(20 * time.Millisecond):
		}
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 1000))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	// Script errors and CSP violations fail the test: the page must work
	// under its own policy.
	var (
		mu       sync.Mutex
		problems []string
	)
	must(t, chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if ex := e.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
			problems = append(problems, "exception: "+msg)
		case *log.EventEntryAdded:
			if strings.Contains(e.Entry.Text, "Content Security Policy") || strings.Contains(e.Entry.Text, "Refused to") {
				problems = append(problems, "log: "+e.Entry.Text)
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == "error" {
				problems = append(problems, "console.error")
			}
		}
	}))
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	str := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(bctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	// textOf reads an element's text in one evaluation: the page
	// re-renders its list on live updates, which would invalidate a node
	// found by one call and read by the next.
	textOf := func(what, sel string) string {
		t.Helper()
		return str(what, chromedp.Evaluate[string](`(document.querySelector(`+strconv.Quote(sel)+`) || {innerText: ""}).innerText`))
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		saveArtifact(t, name, b)
	}

	// Signing in goes through the provider and back to the page.
	do("sign in", chromedp.Navigate(public+"/"), chromedp.WaitVisible(chromedp.CSS(`#me`)),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="live"]`)), chromedp.WaitVisible(chromedp.CSS(`#none-pending`)))
	if me, url := str("who", chromedp.Text(chromedp.CSS(`#me`))), str("where", chromedp.Location()); me != "sam" || url != public+"/" {
		t.Fatalf("signed in as %q at %s", me, url)
	}
	str("mark the page", chromedp.Evaluate[string](`window.loadedOnce = "yes"`))

	// Now the agent writes .env, and is held.
	must(t, os.WriteFile(goAhead, nil, 0o600))
	card := `article[data-state="pending"]`
	do("the held call appears", chromedp.WaitVisible(chromedp.CSS(card)))
	if m := str("no reload", chromedp.Evaluate[string](`window.loadedOnce`)); m != "yes" {
		t.Error("the page reloaded to show the held call")
	}
	cardText := textOf("the card", card)
	for _, want := range []string{"write_file", envFile, "API_KEY=new", "spiffe://example.org/agent/desk", "alice@example.com",
		"fs.yaml#secrets", "the path names a secret", "0 of 1 from group:security", "Expires"} {
		if !strings.Contains(cardText, want) {
			t.Errorf("the card does not show %q:\n%s", want, cardText)
		}
	}
	if b, _ := os.ReadFile(envFile); string(b) != "API_KEY=old\n" {
		t.Fatalf("the held write happened before approval: %q", b)
	}
	// The provider's JWT is a reviewer token for the CLI too.
	samToken := idp.Sign(idp.Claims(oidctest.User{Sub: "sam", Groups: []string{"security"}}, "agentpdp", time.Minute))
	if out, err := approvalsCLI(ctx, public, samToken, "list"); err != nil || !strings.Contains(out, "write_file") {
		t.Errorf("agentpdp approvals list with an OIDC token: %v\n%s", err, out)
	}

	do("comment", chromedp.SendKeys(chromedp.CSS(card+` textarea[name="comment"]`), "rotating the leaked key"))
	shot("approval-page.png")

	// A refusal reaches the reviewer with the Service's reason: the page
	// posts the digest it shows, so a changed one is refused.
	digest := str("digest", chromedp.Evaluate[string](`document.querySelector('`+card+` input[name="digest"]').value`))
	str("change the digest", chromedp.Evaluate[string](`document.querySelector('`+card+` input[name="digest"]').value = "sha256:`+strings.Repeat("0", 64)+`"`))
	do("approve another digest", chromedp.Click(chromedp.CSS(card+` button.approve`)), chromedp.WaitVisible(chromedp.CSS(card+` .note.refusal`)))
	if note := textOf("refusal", card+` .note`); note != "Refused: the digest does not match this approval's call" {
		t.Errorf("the refusal shown: %q", note)
	}
	str("restore the digest", chromedp.Evaluate[string](`document.querySelector('`+card+` input[name="digest"]').value = "`+digest+`"`))

	used := `article[data-state="consumed"]`
	do("approve", chromedp.Click(chromedp.CSS(card+` button.approve`)), chromedp.WaitVisible(chromedp.CSS(used+` .note.ok`)),
		chromedp.WaitVisible(chromedp.CSS(`#none-pending`)))
	note, reviews := textOf("note", used+` .note`), textOf("reviews", used+` .reviews`)
	shot("approval-page-approved.png")
	if !strings.Contains(note, "You approved: 1 of 1 approvals") || !strings.Contains(reviews, "sam approved") || !strings.Contains(reviews, "rotating the leaked key") {
		t.Errorf("after approving: note %q, reviews %q", note, reviews)
	}

	r := <-done
	if r.err != nil || len(r.res) != 3 || r.res[2]["op"] != "done" {
		t.Fatalf("client: %v\n%s", r.err, r.out)
	}
	if w := r.res[1]; isError(w) || w["ok"] != true {
		t.Fatalf("the approved write: %v", w)
	}
	if b, _ := os.ReadFile(envFile); string(b) != "API_KEY=new\n" {
		t.Fatalf(".env after the approved write: %q", b)
	}
	mu.Lock()
	if len(problems) > 0 {
		t.Errorf("the page's script or CSP failed:\n%s", strings.Join(problems, "\n"))
	}
	mu.Unlock()

	// Written once: one allowed write_file in the log, through the grant
	// sam gave with his comment.
	verifyLog(t, logFile)
	allowed := 0
	for _, rec := range decisions(t, logFile) {
		if in, _ := rec["input"].(map[string]any); rec["effect"] == "allow" {
			if act, _ := in["action"].(map[string]any); act["tool"] == "write_file" {
				allowed++
			}
		}
	}
	story, recs := approvalStory(t, logFile, "", "spiffe://example.org/agent/desk", "alice@example.com")
	want := "approval.requested decision:approve approval.review_refused:sam approval.reviewed:sam approval.approved approval.consumed decision:allow"
	if story != want {
		t.Errorf("the log's story:\n got %s\nwant %s", story, want)
	}
	for _, rec := range recs {
		if res, _ := rec["result"].(map[string]any); rec["event"] == "approval.reviewed" && res["comment"] != "rotating the leaked key" {
			t.Errorf("the review's comment in the log: %v", res["comment"])
		}
	}
	if allowed != 1 {
		t.Errorf("%d allowed write_file calls in the log, want 1", allowed)
	}

	// The agent replays the identical write: the grant is used up, so it
	// is held again (and, with nobody approving, answered pending).
	must(t, os.WriteFile(envFile, []byte("API_KEY=rotated-by-hand\n"), 0o600))
	replay := map[string]any{"transport": "stdio", "command": agentpdpBin, "env": plan["env"],
		"args":  fsApprovalArgs(dir, cfgFile, policies, sandbox, data, logFile, "1s"), // held 1 s this time
		"steps": []clientStep{{"op": "callTool", "name": "write_file", "arguments": map[string]any{"path": envFile, "content": "API_KEY=new\n"}}}}
	res := runClient(t, replay)
	if !isError(res[0]) || !strings.Contains(text(res[0]), "waiting for a person") {
		t.Errorf("the replayed write: %v", res[0])
	}
	if b, _ := os.ReadFile(envFile); string(b) != "API_KEY=rotated-by-hand\n" {
		t.Errorf("the replay wrote .env: %q", b)
	}
	verifyLog(t, logFile)
}

// saveArtifact writes a test artifact under $AGENTPDP_ARTIFACTS, or the
// system temp dir, and says where.
func saveArtifact(t *testing.T, name string, b []byte) {
	t.Helper()
	dir := os.Getenv("AGENTPDP_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "agentpdp-artifacts")
	}
	must(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, b, 0o644))
	t.Logf("artifact: %s", p)
}
