package approvals

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
)

// Webhook events: the Service's OnEvent kinds.
var (
	WebhookEvents        = []string{"requested", "reviewed", "approved", "denied", "expired", "consumed"}
	DefaultWebhookEvents = []string{"requested", "approved", "denied", "expired"}
)

// Webhook defaults.
const (
	DefaultWebhookTimeout     = 5 * time.Second
	DefaultWebhookMaxAttempts = 8
	DefaultWebhookQueue       = 1024
	webhookBackoffBase        = 500 * time.Millisecond
	webhookBackoffCap         = time.Minute
	webhookDrain              = 5 * time.Second
)

// Signature headers.
const (
	HeaderSignature = "X-Agentpdp-Signature"
	HeaderEvent     = "X-Agentpdp-Event"
	HeaderDelivery  = "X-Agentpdp-Delivery"
)

// WebhookOptions configure one outgoing webhook.
type WebhookOptions struct {
	URL string
	// Secret signs every body (HMAC-SHA256); required.
	Secret []byte
	// Format is json (default) or slack (an incoming-webhook body).
	Format string
	// Events are the kinds sent (default DefaultWebhookEvents).
	Events []string
	// Timeout bounds one attempt (default 5 s); MaxAttempts bounds the
	// retries of one delivery (default 8).
	Timeout     time.Duration
	MaxAttempts int
	// QueueSize bounds the deliveries waiting (default 1024); when full
	// the oldest is dropped, since OnEvent may not wait.
	QueueSize int
	Client    *http.Client
	// Logger nil means slog.Default() at the time of logging, so a
	// webhook made before the process logger still logs through it.
	Logger *slog.Logger
	// Sleep, Jitter and Now are the clock, injectable so tests need not
	// wait: Sleep waits d or until ctx ends; Jitter returns [0, n).
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(n int64) int64
	Now    func() time.Time
}

// Webhook sends approval events to one URL from a bounded queue: Notify
// never blocks, Run delivers (one at a time, so a receiver sees events in
// order) with retries.
type Webhook struct {
	o          WebhookOptions
	events     map[string]bool
	q          chan delivery
	statusBase atomic.Pointer[string]
	dropped    atomic.Uint64
	drain      time.Duration // how long Run delivers after ctx ends
}

type delivery struct {
	id, event string
	a         Approval
}

// NewWebhook checks o and makes the webhook; it sends nothing until Run.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q is not an http(s) URL", o.URL)
	}
	if len(o.Secret) == 0 {
		return nil, errors.New("needs a secret (secret_file)")
	}
	switch o.Format {
	case "":
		o.Format = "json"
	case "json", "slack":
	default:
		return nil, fmt.Errorf("format %q is not json or slack", o.Format)
	}
	if o.Timeout < 0 || o.MaxAttempts < 0 || o.QueueSize < 0 {
		return nil, errors.New("timeout, max_attempts and the queue size may not be negative")
	}
	o.Timeout = cmpOr(o.Timeout, DefaultWebhookTimeout)
	o.MaxAttempts = cmp.Or(o.MaxAttempts, DefaultWebhookMaxAttempts) // negatives refused above
	o.QueueSize = cmp.Or(o.QueueSize, DefaultWebhookQueue)
	if len(o.Events) == 0 {
		o.Events = DefaultWebhookEvents
	}
	w := &Webhook{events: map[string]bool{}, drain: webhookDrain}
	for _, e := range o.Events {
		if !slices.Contains(WebhookEvents, e) {
			return nil, fmt.Errorf("event %q is not one of %s", e, strings.Join(WebhookEvents, ", "))
		}
		w.events[e] = true
	}
	if o.Client == nil {
		// A redirected POST would become a GET without the body: a
		// redirect is an answer, not a place to follow.
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.Jitter == nil {
		o.Jitter = rand.Int64N
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w.o, w.q = o, make(chan delivery, o.QueueSize)
	return w, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Webhook) logger() *slog.Logger {
	if w.o.Logger != nil {
		return w.o.Logger
	}
	return slog.Default()
}

// SetStatusURL sets the approvals API's public base URL, for status_url
// (known only once its listener is open).
func (w *Webhook) SetStatusURL(base string) { w.statusBase.Store(&base) }

// Dropped counts deliveries dropped because the queue was full.
func (w *Webhook) Dropped() uint64 { return w.dropped.Load() }

// Notify queues event kind about a, if this webhook sends it. It fits
// Options.OnEvent: it never blocks, dropping the oldest queued delivery
// when the queue is full.
func (w *Webhook) Notify(kind string, a *Approval) {
	if !w.events[kind] {
		return
	}
	// A copy: the sender reads it later, on its own goroutine.
	d := delivery{id: pdp.NewDecisionID(), event: kind, a: *a}
	for {
		select {
		case w.q <- d:
			return
		default:
		}
		select {
		case old := <-w.q:
			w.dropped.Add(1)
			w.logger().Error("approvals webhook: queue full, delivery dropped", "url", w.o.URL,
				"delivery_id", old.id, "event", old.event, "approval_id", old.a.ID)
		default:
		}
	}
}

// Run delivers queued events until ctx ends, then for at most 5 s more
// delivers what is still queued (best effort), and returns nil.
func (w *Webhook) Run(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.drain, cancel)
		context.AfterFunc(wctx, func() { t.Stop() })
	})
	defer stop()
	for {
		select {
		case d := <-w.q:
			w.deliver(wctx, d)
		case <-ctx.Done():
			for {
				select {
				case d := <-w.q:
					w.deliver(wctx, d) // logs it undelivered once wctx ends
				default:
					return nil
				}
			}
		}
	}
}

// deliver sends d, retrying what may succeed later, and logs a final
// failure with its delivery id.
func (w *Webhook) deliver(ctx context.Context, d delivery) {
	for attempt := 1; ; attempt++ {
		err := ctx.Err()
		retry, after := false, time.Duration(0)
		if err == nil {
			retry, after, err = w.attempt(ctx, d)
			if err == nil {
				return
			}
		}
		if !retry || attempt >= w.o.MaxAttempts || ctx.Err() != nil {
			w.logger().Error("approvals webhook: delivery failed", "url", w.o.URL, "delivery_id", d.id,
				"event", d.event, "approval_id", d.a.ID, "attempts", attempt, "error", err)
			return
		}
		// Full jitter (a random wait up to the exponential step) spreads
		// retries of many senders; Retry-After is a floor, within the cap.
		step := min(webhookBackoffCap, webhookBackoffBase<<min(attempt-1, 20))
		wait := max(time.Duration(w.o.Jitter(int64(step)+1)), min(after, webhookBackoffCap))
		if err := w.o.Sleep(ctx, wait); err != nil {
			w.logger().Error("approvals webhook: delivery failed", "url", w.o.URL, "delivery_id", d.id,
				"event", d.event, "approval_id", d.a.ID, "attempts", attempt, "error", fmt.Errorf("while waiting to retry: %w", err))
			return
		}
	}
}

// attempt posts d once: nil on 2xx; else whether to retry, and the
// receiver's Retry-After.
func (w *Webhook) attempt(ctx context.Context, d delivery) (retry bool, after time.Duration, err error) {
	now := w.o.Now()
	body, err := w.body(d, now)
	if err != nil {
		return false, 0, err
	}
	actx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentpdp-webhook")
	req.Header.Set(HeaderEvent, d.event)
	req.Header.Set(HeaderDelivery, d.id)
	req.Header.Set(HeaderSignature, Sign(w.o.Secret, now, body))
	resp, err := w.o.Client.Do(req)
	if err != nil {
		return true, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, 0, nil
	}
	err = fmt.Errorf("receiver answered %s", resp.Status)
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return true, retryAfter(resp.Header.Get("Retry-After"), now), err
	}
	return false, 0, err
}

// retryAfter reads seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(min(s, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// Sign is the X-Agentpdp-Signature value of body sent at t:
// t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>. Receivers
// recompute it and reject an old t, so a captured delivery cannot be
// replayed later.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks header against body and secret, and that its
// time is within tolerance of now: what a receiver does.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("malformed signature header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("signature timestamp outside the tolerance")
	}
	want := Sign(secret, time.Unix(sec, 0), body)
	want = want[strings.Index(want, "v1=")+3:]
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("signature does not match")
}

// WebhookPayload is the json format's body.
type WebhookPayload struct {
	Event      string          `json:"event"`
	Approval   WebhookApproval `json:"approval"`
	StatusURL  string          `json:"status_url,omitempty"`
	SentAt     time.Time       `json:"sent_at"`
	DeliveryID string          `json:"delivery_id"`
}

// WebhookApproval is what a webhook tells of an approval: no digest, no
// grant details.
type WebhookApproval struct {
	ID          string         `json:"id"`
	State       State          `json:"state"`
	Agent       string         `json:"agent"`
	User        string         `json:"user"`
	Action      map[string]any `json:"action"`
	Reasons     []Reason       `json:"reasons"`
	Approvers   []string       `json:"approvers"`
	Min         int            `json:"min"`
	Reviews     []Review       `json:"reviews"`
	RequestedAt time.Time      `json:"requested_at"`
	ExpiresAt   time.Time      `json:"expires_at"`
}

func (w *Webhook) statusURL(id string) string {
	if b := w.statusBase.Load(); b != nil {
		return StatusURL(*b, id)
	}
	return ""
}

func (w *Webhook) body(d delivery, now time.Time) ([]byte, error) {
	a := &d.a
	if w.o.Format == "slack" {
		return json.Marshal(slackBody(d.event, a, w.statusURL(a.ID)))
	}
	return json.Marshal(WebhookPayload{
		Event: d.event, StatusURL: w.statusURL(a.ID), SentAt: now.UTC(), DeliveryID: d.id,
		Approval: WebhookApproval{
			ID: a.ID, State: a.State, Agent: a.Agent, User: a.User, Action: a.Action,
			Reasons: nonNil(a.Reasons), Approvers: nonNil(a.Approvers), Min: a.Min, Reviews: nonNil(a.Reviews),
			RequestedAt: a.RequestedAt, ExpiresAt: a.ExpiresAt,
		},
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// slackBody is a Slack incoming-webhook message: who, what, why, and
// where to look.
func slackBody(event string, a *Approval, statusURL string) map[string]any {
	what := actionLine(a.Action)
	var headline string
	switch event {
	case "requested":
		headline = fmt.Sprintf(":hourglass: Approval requested: %s wants %s for %s", a.Agent, what, a.User)
	case "reviewed":
		last := Review{}
		if n := len(a.Reviews); n > 0 {
			last = a.Reviews[n-1]
		}
		headline = fmt.Sprintf(":memo: %s gave %s on %s by %s", last.By, last.Verdict, what, a.Agent)
	case "approved":
		headline = fmt.Sprintf(":white_check_mark: Approved by %s: %s by %s for %s", strings.Join(reviewers(a, VerdictApprove), ", "), what, a.Agent, a.User)
	case "denied":
		headline = fmt.Sprintf(":no_entry: Denied by %s: %s by %s for %s", strings.Join(reviewers(a, VerdictDeny), ", "), what, a.Agent, a.User)
	case "expired":
		headline = fmt.Sprintf(":alarm_clock: Expired, nobody reviewed it: %s by %s for %s", what, a.Agent, a.User)
	case "consumed":
		headline = fmt.Sprintf(":arrow_forward: Approved call made: %s by %s for %s", what, a.Agent, a.User)
	default:
		headline = fmt.Sprintf("%s: %s by %s for %s", event, what, a.Agent, a.User)
	}
	var why []string
	for _, r := range a.Reasons {
		why = append(why, "• "+slackEscape(cmp.Or(r.Message, r.Rule)))
	}
	for _, r := range a.Reviews {
		if r.Comment != "" {
			why = append(why, fmt.Sprintf("• %s (%s): %s", slackEscape(r.By), r.Verdict, slackEscape(r.Comment)))
		}
	}
	detail := fmt.Sprintf("*Agent:* %s\n*For:* %s\n*Action:* %s\n*Approvers:* %d of %s",
		slackEscape(a.Agent), slackEscape(a.User), slackEscape(what), a.Min, slackEscape(strings.Join(a.Approvers, ", ")))
	if len(why) > 0 {
		detail += "\n*Why:*\n" + strings.Join(why, "\n")
	}
	ctxLine := "Approval `" + slackEscape(a.ID) + "` is " + string(a.State)
	if statusURL != "" {
		ctxLine += " · <" + statusURL + "|status>"
	}
	return map[string]any{
		"text": slackEscape(headline + " (approval " + a.ID + ")"),
		"blocks": []any{
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": slackEscape(headline)}},
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": detail}},
			map[string]any{"type": "context", "elements": []any{map[string]any{"type": "mrkdwn", "text": ctxLine}}},
		},
	}
}

// actionLine is the action in a few words: server/tool, or method host path.
func actionLine(act map[string]any) string {
	s := func(k string) string { v, _ := act[k].(string); return v }
	switch {
	case s("tool") != "" && s("server") != "":
		return s("server") + "/" + s("tool")
	case s("tool") != "":
		return s("tool")
	case s("method") != "":
		return strings.TrimSpace(s("method") + " " + s("host") + s("path"))
	case s("resource") != "":
		return s("kind") + " " + s("resource")
	}
	return cmp.Or(s("kind"), "a call")
}

// slackEscape escapes what Slack's mrkdwn treats as markup, so an
// agent-chosen string cannot make a link or a mention.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace
