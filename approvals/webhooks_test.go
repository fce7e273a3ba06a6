package approvals

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var hookSecret = []byte("s3cret")

// receivedHook is one request a test receiver got.
type receivedHook struct {
	hdr  http.Header
	body []byte
}

// hookReceiver is a loopback HTTP receiver; answer picks the response to
// the n-th request (1-based).
func hookReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) (string, chan receivedHook) {
	t.Helper()
	got := make(chan receivedHook, 100)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		got <- receivedHook{r.Header.Clone(), body}
		answer(i, w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

// logRecords is a slog handler that hands every record to the test.
type logRecords chan slog.Record

func (c logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (c logRecords) Handle(_ context.Context, r slog.Record) error {
	c <- r.Clone()
	return nil
}
func (c logRecords) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c logRecords) WithGroup(string) slog.Handler      { return c }

func attrs(r slog.Record) map[string]string {
	m := map[string]string{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	return m
}

// fakeClock records the backoff waits instead of waiting.
type fakeClock struct {
	mu     sync.Mutex
	sleeps []time.Duration
	jitter []int64 // the n each Jitter call got
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	return ctx.Err()
}

func (c *fakeClock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

var hookNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// startHook makes a webhook with a fake clock (Jitter picks the largest
// wait unless jit says otherwise) and runs it for the test.
func startHook(t *testing.T, o WebhookOptions, jit func(n int64) int64) (*Webhook, *fakeClock, logRecords) {
	t.Helper()
	clk := &fakeClock{}
	logs := make(logRecords, 100)
	o.Secret = hookSecret
	o.Sleep = clk.sleep
	o.Now = func() time.Time { return hookNow }
	o.Logger = slog.New(logs)
	o.Jitter = func(n int64) int64 {
		clk.mu.Lock()
		clk.jitter = append(clk.jitter, n)
		clk.mu.Unlock()
		if jit != nil {
			return jit(n)
		}
		return n - 1
	}
	w, err := NewWebhook(o)
	if err != nil {
		t.Fatal(err)
	}
	w.SetStatusURL("https://approvals.example/")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w, clk, logs
}

func sampleApproval(id string) *Approval {
	return &Approval{
		ID: id, State: Pending, Digest: "sha256:abc", Agent: "spiffe://example.org/agent/code-reviewer", User: "alice@example.com",
		Action:    map[string]any{"kind": "tools/call", "server": "github", "tool": "merge_pull_request", "arguments": map[string]any{"token": "[REDACTED]"}},
		Reasons:   []Reason{{Rule: "prod.rego#approve:merge", Effect: "approve", Message: "merges need security"}},
		Approvers: []string{"group:security"}, Min: 1, Reviews: []Review{},
		RequestedAt: hookNow, ExpiresAt: hookNow.Add(time.Hour),
	}
}

func next(t *testing.T, got chan receivedHook) receivedHook {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
		return receivedHook{}
	}
}

func nextLog(t *testing.T, logs logRecords, msg string) map[string]string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-logs:
			if r.Message == msg {
				return attrs(r)
			}
		case <-deadline:
			t.Fatalf("no log %q", msg)
		}
	}
}

func TestWebhookSignedJSON(t *testing.T) {
	url, got := hookReceiver(t, func(int, http.ResponseWriter, *http.Request) {})
	w, _, _ := startHook(t, WebhookOptions{URL: url}, nil)
	w.Notify("requested", sampleApproval("ap-1"))
	r := next(t, got)

	sig := r.hdr.Get(HeaderSignature)
	if err := VerifySignature(hookSecret, sig, r.body, hookNow.Add(time.Minute), 5*time.Minute); err != nil {
		t.Errorf("signature with the secret: %v (%s)", err, sig)
	}
	if err := VerifySignature([]byte("another"), sig, r.body, hookNow, 5*time.Minute); err == nil {
		t.Error("signature verified with another secret")
	}
	if err := VerifySignature(hookSecret, sig, r.body, hookNow.Add(time.Hour), 5*time.Minute); err == nil {
		t.Error("an hour-old signature verified (a replay)")
	}
	if err := VerifySignature(hookSecret, sig, append(r.body, ' '), hookNow, 5*time.Minute); err == nil {
		t.Error("signature verified a changed body")
	}
	var p WebhookPayload
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Event != "requested" || r.hdr.Get(HeaderEvent) != "requested" || p.DeliveryID == "" || r.hdr.Get(HeaderDelivery) != p.DeliveryID ||
		p.Approval.ID != "ap-1" || p.Approval.State != Pending || p.Approval.Agent == "" || p.Approval.User != "alice@example.com" ||
		p.Approval.Min != 1 || len(p.Approval.Reasons) != 1 || p.Approval.Approvers[0] != "group:security" || !p.SentAt.Equal(hookNow) ||
		p.StatusURL != "https://approvals.example/v1/approvals/ap-1/status" || !p.Approval.ExpiresAt.Equal(hookNow.Add(time.Hour)) {
		t.Errorf("payload %s headers %v", r.body, r.hdr)
	}
	if strings.Contains(string(r.body), "sha256:abc") || !strings.Contains(string(r.body), `"token":"[REDACTED]"`) {
		t.Errorf("payload shows the digest or lost the redacted action: %s", r.body)
	}
}

func TestWebhookEventsFilter(t *testing.T) {
	url, got := hookReceiver(t, func(int, http.ResponseWriter, *http.Request) {})
	w, _, _ := startHook(t, WebhookOptions{URL: url, Events: []string{"approved", "consumed"}}, nil)
	for _, k := range []string{"requested", "reviewed", "approved", "expired", "consumed"} {
		w.Notify(k, sampleApproval("ap-"+k))
	}
	// One sender delivers in order: had requested or reviewed been
	// queued, it would arrive first.
	for _, want := range []string{"approved", "consumed"} {
		if r := next(t, got); r.hdr.Get(HeaderEvent) != want {
			t.Fatalf("got %s, want %s", r.hdr.Get(HeaderEvent), want)
		}
	}

	dflt, err := NewWebhook(WebhookOptions{URL: url, Secret: hookSecret})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"requested": true, "approved": true, "denied": true, "expired": true, "reviewed": false, "consumed": false} {
		if dflt.events[k] != want {
			t.Errorf("default events: %s is %v", k, dflt.events[k])
		}
	}
}

func TestWebhookRetriesThenSucceeds(t *testing.T) {
	url, got := hookReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 1, 2:
			w.WriteHeader(500)
		case 3:
			w.WriteHeader(http.StatusRequestTimeout)
		}
	})
	w, clk, _ := startHook(t, WebhookOptions{URL: url}, nil)
	w.Notify("denied", sampleApproval("ap-2"))
	var ids []string
	for range 4 {
		r := next(t, got)
		if err := VerifySignature(hookSecret, r.hdr.Get(HeaderSignature), r.body, hookNow, time.Minute); err != nil {
			t.Error(err)
		}
		ids = append(ids, r.hdr.Get(HeaderDelivery))
	}
	if ids[0] == "" || ids[1] != ids[0] || ids[2] != ids[0] || ids[3] != ids[0] {
		t.Errorf("delivery ids across retries: %v", ids)
	}
	// Full jitter up to 500 ms, 1 s, 2 s (Jitter picks the top).
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}
	if got := clk.waits(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", got, want)
	}
}

func TestWebhookBackoffCappedAndJittered(t *testing.T) {
	url, got := hookReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) })
	w, clk, logs := startHook(t, WebhookOptions{URL: url, MaxAttempts: 10}, func(n int64) int64 { return n / 2 })
	w.Notify("requested", sampleApproval("ap-3"))
	l := nextLog(t, logs, "approvals webhook: delivery failed")
	if l["attempts"] != "10" || l["delivery_id"] == "" || l["approval_id"] != "ap-3" || !strings.Contains(l["error"], "503") {
		t.Errorf("final failure log %v", l)
	}
	if len(got) != 10 {
		t.Errorf("%d attempts, want 10", len(got))
	}
	clk.mu.Lock()
	defer clk.mu.Unlock()
	if len(clk.sleeps) != 9 {
		t.Fatalf("waits %v", clk.sleeps)
	}
	for i, n := range clk.jitter {
		step := min(time.Minute, 500*time.Millisecond<<i)
		if time.Duration(n) != step+1 || clk.sleeps[i] != time.Duration(n/2) {
			t.Errorf("retry %d: jitter over [0,%v], waited %v; want [0,%v]", i+1, time.Duration(n), clk.sleeps[i], step)
		}
	}
}

func TestWebhookRetryAfterHonoured(t *testing.T) {
	url, got := hookReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.Header().Set("Retry-After", hookNow.Add(30*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	w, clk, _ := startHook(t, WebhookOptions{URL: url}, func(int64) int64 { return 0 })
	w.Notify("requested", sampleApproval("ap-4"))
	for range 4 {
		next(t, got)
	}
	// The receiver's wait wins over the jitter's 0; an hour is held to
	// the cap, since one sender serves the queue in order.
	want := []time.Duration{7 * time.Second, 30 * time.Second, time.Minute}
	if got := clk.waits(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", got, want)
	}
}

func TestWebhookNoRetryOn400(t *testing.T) {
	url, got := hookReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(400) })
	w, clk, logs := startHook(t, WebhookOptions{URL: url}, nil)
	w.Notify("requested", sampleApproval("ap-5"))
	l := nextLog(t, logs, "approvals webhook: delivery failed")
	r := next(t, got)
	if l["attempts"] != "1" || l["delivery_id"] != r.hdr.Get(HeaderDelivery) || !strings.Contains(l["error"], "400") {
		t.Errorf("log %v", l)
	}
	if len(got) != 0 || len(clk.waits()) != 0 {
		t.Errorf("a 400 was retried: %d more requests, waits %v", len(got), clk.waits())
	}
}

func TestWebhookNetworkErrorRetried(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens: connection refused
	w, clk, logs := startHook(t, WebhookOptions{URL: "http://" + addr + "/hook", MaxAttempts: 3}, nil)
	w.Notify("expired", sampleApproval("ap-6"))
	l := nextLog(t, logs, "approvals webhook: delivery failed")
	if l["attempts"] != "3" || len(clk.waits()) != 2 {
		t.Errorf("log %v waits %v", l, clk.waits())
	}
}

func TestWebhookSlowReceiverDoesNotBlockNotify(t *testing.T) {
	release := make(chan struct{})
	url, got := hookReceiver(t, func(n int, _ http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			<-release
		}
	})
	w, _, logs := startHook(t, WebhookOptions{URL: url, QueueSize: 2}, nil)
	w.Notify("requested", sampleApproval("ap-0"))
	next(t, got) // the sender is now stuck on the slow receiver
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 5; i++ {
			w.Notify("requested", sampleApproval(fmt.Sprint("ap-", i)))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify blocked on a slow receiver")
	}
	if w.Dropped() != 3 {
		t.Errorf("dropped %d, want 3", w.Dropped())
	}
	if l := nextLog(t, logs, "approvals webhook: queue full, delivery dropped"); l["approval_id"] != "ap-1" || l["delivery_id"] == "" {
		t.Errorf("first drop %v, want the oldest, ap-1", l)
	}
	close(release)
	for _, want := range []string{"ap-4", "ap-5"} {
		var p WebhookPayload
		if err := json.Unmarshal(next(t, got).body, &p); err != nil || p.Approval.ID != want {
			t.Errorf("after the drops got %s (%v), want %s", p.Approval.ID, err, want)
		}
	}
}

func TestWebhookSlackBody(t *testing.T) {
	url, got := hookReceiver(t, func(int, http.ResponseWriter, *http.Request) {})
	w, _, _ := startHook(t, WebhookOptions{URL: url, Format: "slack"}, nil)
	a := sampleApproval("ap-7")
	a.State = Denied
	a.Reviews = []Review{{By: "sam", Verdict: VerdictDeny, At: hookNow, Comment: "not during the freeze <!channel>"}}
	w.Notify("denied", a)
	r := next(t, got)
	if err := VerifySignature(hookSecret, r.hdr.Get(HeaderSignature), r.body, hookNow, time.Minute); err != nil {
		t.Errorf("slack body unsigned: %v", err)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text struct {
				Type, Text string
			} `json:"text"`
			Elements []struct{ Type, Text string } `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(r.body, &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "Denied by sam") || !strings.Contains(msg.Text, "ap-7") || !strings.Contains(msg.Text, "github/merge_pull_request") {
		t.Errorf("text %q", msg.Text)
	}
	if len(msg.Blocks) != 3 || msg.Blocks[0].Type != "section" || msg.Blocks[1].Type != "section" || msg.Blocks[2].Type != "context" {
		t.Fatalf("blocks %s", r.body)
	}
	detail := msg.Blocks[1].Text.Text
	for _, want := range []string{"alice@example.com", "spiffe://example.org/agent/code-reviewer", "merges need security", "group:security", "&lt;!channel&gt;"} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail lacks %q: %s", want, detail)
		}
	}
	if strings.Contains(string(r.body), "<!channel>") {
		t.Error("a reviewer's comment can mention the channel")
	}
	if ctx := msg.Blocks[2].Elements[0].Text; !strings.Contains(ctx, "ap-7") || !strings.Contains(ctx, "<https://approvals.example/v1/approvals/ap-7/status|status>") {
		t.Errorf("context %q", ctx)
	}
}

func TestWebhookDrainBounded(t *testing.T) {
	url, got := hookReceiver(t, func(n int, _ http.ResponseWriter, r *http.Request) {
		if n > 1 {
			<-r.Context().Done()
		}
	})
	logs := make(logRecords, 100)
	w, err := NewWebhook(WebhookOptions{URL: url, Secret: hookSecret, Logger: slog.New(logs), Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.drain = 100 * time.Millisecond
	// Queued before Run, which starts already stopped: the first is
	// delivered while draining, the second hangs until the drain ends.
	w.Notify("requested", sampleApproval("ap-8"))
	w.Notify("requested", sampleApproval("ap-9"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if r := next(t, got); !strings.Contains(string(r.body), "ap-8") {
		t.Errorf("first drained %s", r.body)
	}
	if l := nextLog(t, logs, "approvals webhook: delivery failed"); l["approval_id"] != "ap-9" {
		t.Errorf("undelivered at shutdown: %v", l)
	}
}

func TestNewWebhookRejects(t *testing.T) {
	for _, c := range []struct {
		o    WebhookOptions
		want string
	}{
		{WebhookOptions{URL: "ftp://example.com/x", Secret: hookSecret}, "not an http(s) URL"},
		{WebhookOptions{URL: "example.com/x", Secret: hookSecret}, "not an http(s) URL"},
		{WebhookOptions{URL: "https://example.com/x"}, "secret"},
		{WebhookOptions{URL: "https://example.com/x", Secret: hookSecret, Format: "teams"}, "format"},
		{WebhookOptions{URL: "https://example.com/x", Secret: hookSecret, Events: []string{"approve"}}, `event "approve"`},
		{WebhookOptions{URL: "https://example.com/x", Secret: hookSecret, MaxAttempts: -1}, "negative"},
	} {
		if _, err := NewWebhook(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
}

// BenchmarkWebhookNotify is the cost OnEvent adds to a decision: the
// filter, a copy and a channel send (a consumer keeps the queue from
// filling).
func BenchmarkWebhookNotify(b *testing.B) {
	w, err := NewWebhook(WebhookOptions{URL: "http://127.0.0.1:1/", Secret: hookSecret, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-w.q:
			case <-stop:
				return
			}
		}
	}()
	defer close(stop)
	a := sampleApproval("ap-bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Notify("requested", a)
		}
	})
}
