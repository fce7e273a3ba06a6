package approvals

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/approvals/pgtest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/decisionlog"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backends runs a test against each store. open makes one more handle on
// the same database (a second replica, for PostgreSQL; the same file
// reopened for SQLite).
func backends(t *testing.T, test func(t *testing.T, open func() *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "approvals.db")
		var shared *Store
		test(t, func() *Store {
			if shared != nil {
				return shared // one process owns an SQLite store
			}
			s, err := OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			shared = s
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.DSN(t)
		test(t, func() *Store {
			s, err := OpenPostgres(context.Background(), dsn, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

// records keeps what the service logged.
type records struct {
	mu   sync.Mutex
	recs []decisionlog.Record
	fail error
}

func (r *records) Append(rec *decisionlog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.recs = append(r.recs, *rec)
	return nil
}

func (r *records) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		out = append(out, rec.Event)
	}
	return out
}

func (r *records) last() decisionlog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recs[len(r.recs)-1]
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newService(store *Store, log *records, clk *clock) *Service {
	return New(Options{Store: store, Log: log, Now: clk.now, Redact: []string{"action.arguments.token"}})
}

// call is a held decision for one call: the PDP's approve, before Hold.
func call(args map[string]any) (*pdp.Input, *pdp.Decision) {
	in := &pdp.Input{
		Agent:  pdp.Agent{ID: "spiffe://example.org/agent/writer", OwnerTeam: "platform"},
		User:   pdp.User{ID: "carol"},
		Action: pdp.Action{Kind: "mcp.tools/call", Server: "fs", Tool: "write_file", Arguments: args},
	}
	in.Action.Digest = pdp.Digest(in)
	d := &pdp.Decision{ID: pdp.NewDecisionID(), Effect: pdp.Approve,
		Approval: &pdp.ApprovalRequest{Approvers: []string{"alice", "group:security"}, Min: 2},
		Reasons:  []pdp.Reason{{Rule: "policies/fs.cel#secrets", Effect: pdp.Approve, Message: "writes a secret file"}}}
	return in, d
}

func hold(t *testing.T, s *Service, args map[string]any) *pdp.Decision {
	t.Helper()
	in, d := call(args)
	if err := s.Hold(context.Background(), in, d); err != nil {
		t.Fatal(err)
	}
	return d
}

var (
	alice = Reviewer{ID: "alice"}
	bob   = Reviewer{ID: "bob", Groups: []string{"security"}}
	dave  = Reviewer{ID: "dave", Groups: []string{"security", "platform"}}
)

func review(s *Service, id string, r Reviewer, verdict string) (*Approval, error) {
	return s.Review(context.Background(), id, r, ReviewRequest{Verdict: verdict, Comment: "looked at it"})
}

func TestLifecycle(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		log, clk := &records{}, &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
		s := newService(open(), log, clk)
		args := map[string]any{"path": "/sandbox/.env", "content": "A=1", "token": "s3cret"}

		d := hold(t, s, args)
		if d.Effect != pdp.Approve || d.Approval.ID == "" || d.Approval.State != "pending" {
			t.Fatalf("first call: %+v %+v", d, d.Approval)
		}
		id := d.Approval.ID
		if d2 := hold(t, s, args); d2.Approval.ID != id {
			t.Fatalf("the identical call opened %s, want it to join %s", d2.Approval.ID, id)
		}
		if d3 := hold(t, s, map[string]any{"path": "/sandbox/.env", "content": "B=2"}); d3.Approval.ID == id {
			t.Fatal("a different call joined the first one's approval")
		}
		a, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Action["arguments"].(map[string]any)["token"] != pdp.Redacted || a.Action["tool"] != "write_file" || a.User != "carol" {
			t.Fatalf("stored summary: %+v", a)
		}
		if a.ExpiresAt.Sub(a.RequestedAt) != DefaultPendingTTL || len(a.Reasons) != 1 {
			t.Fatalf("approval: %+v", a)
		}

		if a, err = review(s, id, alice, VerdictApprove); err != nil || a.State != Pending {
			t.Fatalf("one of two approvals: %v %+v", err, a)
		}
		if a, err = review(s, id, bob, VerdictApprove); err != nil || a.State != Approved {
			t.Fatalf("second approval: %v %+v", err, a)
		}
		if got := a.GrantExpiresAt.Sub(clk.now()); got != DefaultGrantTTL {
			t.Fatalf("grant lasts %s", got)
		}

		d = hold(t, s, args)
		if d.Effect != pdp.Allow || d.Approval.ID != id || d.Approval.State != "consumed" {
			t.Fatalf("retry after approval: %+v %+v", d, d.Approval)
		}
		if r := d.Reasons[len(d.Reasons)-1]; r.Rule != "builtin#approved" || !strings.Contains(r.Message, "alice, bob") {
			t.Fatalf("reason %+v", r)
		}
		d = hold(t, s, args)
		if d.Effect != pdp.Approve || d.Approval.ID == id {
			t.Fatalf("replay after the grant was used: %+v %+v", d, d.Approval)
		}
		want := "approval.requested approval.requested approval.reviewed approval.reviewed approval.approved approval.consumed approval.requested"
		if got := strings.Join(log.events(), " "); got != want {
			t.Fatalf("events:\n got %s\nwant %s", got, want)
		}
		for _, rec := range log.recs {
			if rec.ApprovalID == "" || rec.Agent == "" || rec.User != "carol" || rec.DecisionID == "" {
				t.Fatalf("event record lacks who or which: %+v", rec)
			}
			if strings.Contains(string(rec.Result), "s3cret") {
				t.Fatal("a redacted argument reached the log")
			}
		}
	})
}

func TestDenyEndsIt(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		log, clk := &records{}, &clock{t: time.Now()}
		s := newService(open(), log, clk)
		id := hold(t, s, map[string]any{"path": "/x"}).Approval.ID
		if a, err := review(s, id, alice, VerdictApprove); err != nil || a.State != Pending {
			t.Fatal(err, a.State)
		}
		if a, err := review(s, id, bob, VerdictDeny); err != nil || a.State != Denied {
			t.Fatal(err, a.State)
		}
		if _, err := review(s, id, Reviewer{ID: "erin", Groups: []string{"security"}}, VerdictApprove); !errors.Is(err, ErrRefused) {
			t.Fatalf("approving a denied call: %v", err)
		}
		if d := hold(t, s, map[string]any{"path": "/x"}); d.Effect != pdp.Approve || d.Approval.ID == id {
			t.Fatalf("a denied approval was used or joined: %+v", d.Approval)
		}
	})
}

func TestReviewAbuseRefusedAndLogged(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		log, clk := &records{}, &clock{t: time.Now()}
		s := newService(open(), log, clk)
		d := hold(t, s, map[string]any{"path": "/y"})
		id := d.Approval.ID
		a, _ := s.Get(context.Background(), id)
		cases := []struct {
			name   string
			r      Reviewer
			req    ReviewRequest
			reason string
		}{
			{"unauthenticated", Reviewer{}, ReviewRequest{Verdict: VerdictApprove}, "not authenticated"},
			{"self-approval", Reviewer{ID: "carol", Groups: []string{"security"}}, ReviewRequest{Verdict: VerdictApprove}, "for themselves"},
			{"the agent", Reviewer{ID: a.Agent}, ReviewRequest{Verdict: VerdictApprove}, "own call"},
			{"owner team", dave, ReviewRequest{Verdict: VerdictApprove}, "owns agent"},
			{"outside the set", Reviewer{ID: "mallory", Groups: []string{"finance"}}, ReviewRequest{Verdict: VerdictApprove}, "not among the approvers"},
			{"other digest", alice, ReviewRequest{Verdict: VerdictApprove, Digest: "sha256:" + strings.Repeat("0", 64)}, "digest does not match"},
			{"bad verdict", alice, ReviewRequest{Verdict: "maybe"}, "not approve or deny"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				_, err := s.Review(context.Background(), id, c.r, c.req)
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.reason) {
					t.Fatalf("got %v, want a refusal naming %q", err, c.reason)
				}
				rec := log.last()
				if rec.Event != "approval.review_refused" || rec.ApprovalID != id || rec.Effect != "deny" || !strings.Contains(string(rec.Result), c.reason) {
					t.Fatalf("refusal not logged: %+v %s", rec, rec.Result)
				}
			})
		}
		if _, err := review(s, id, alice, VerdictApprove); err != nil {
			t.Fatal(err)
		}
		if _, err := review(s, id, alice, VerdictApprove); !errors.Is(err, ErrRefused) {
			t.Fatalf("one reviewer approving twice counted: %v", err)
		}
		if a, _ := s.Get(context.Background(), id); a.State != Pending || len(a.Reviews) != 1 {
			t.Fatalf("refused reviews changed it: %+v", a)
		}
		if _, err := review(s, "no-such-id", alice, VerdictApprove); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
	})
}

func TestExpiry(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		log, clk := &records{}, &clock{t: time.Now()}
		s := newService(open(), log, clk)
		in, d := call(map[string]any{"path": "/z"})
		d.Approval.TTL, d.Approval.GrantTTL, d.Approval.Min = "10m", "1m", 1
		if err := s.Hold(context.Background(), in, d); err != nil {
			t.Fatal(err)
		}
		pending := d.Approval.ID
		clk.add(10 * time.Minute)
		if _, err := review(s, pending, alice, VerdictApprove); !errors.Is(err, ErrRefused) {
			t.Fatalf("approving past the ttl: %v", err)
		}
		s.Sweep(context.Background())
		if a, _ := s.Get(context.Background(), pending); a.State != Expired {
			t.Fatalf("pending past its ttl is %s", a.State)
		}
		if got := log.last(); got.Event != "approval.expired" || got.ApprovalID != pending {
			t.Fatalf("expiry not logged: %+v", got)
		}

		// A grant unused past its grant_ttl is expired too.
		in, d = call(map[string]any{"path": "/z"})
		d.Approval.GrantTTL, d.Approval.Min = "1m", 1
		if err := s.Hold(context.Background(), in, d); err != nil {
			t.Fatal(err)
		}
		granted := d.Approval.ID
		if granted == pending {
			t.Fatal("joined an expired approval")
		}
		if a, err := review(s, granted, alice, VerdictApprove); err != nil || a.State != Approved {
			t.Fatal(err)
		}
		clk.add(time.Minute)
		in, d = call(map[string]any{"path": "/z"})
		d.Approval.Min = 1
		if err := s.Hold(context.Background(), in, d); err != nil {
			t.Fatal(err)
		}
		if d.Effect != pdp.Approve || d.Approval.ID == granted {
			t.Fatalf("an expired grant was used: %+v", d.Approval)
		}
		s.Sweep(context.Background())
		if a, _ := s.Get(context.Background(), granted); a.State != Expired {
			t.Fatalf("grant past its ttl is %s", a.State)
		}
	})
}

func TestApprovers(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		store, clk := open(), &clock{t: time.Now()}
		s := New(Options{Store: store, Now: clk.now})
		in, d := call(nil)
		d.Approval.Approvers = nil
		if err := s.Hold(context.Background(), in, d); err != nil {
			t.Fatal(err)
		}
		if d.Effect != pdp.Deny || d.Approval != nil || d.Reasons[len(d.Reasons)-1].Rule != "builtin#no-approvers" {
			t.Fatalf("no approvers anywhere: %+v", d)
		}
		s = New(Options{Store: store, Now: clk.now, DefaultApprovers: []string{"group:sec-oncall"}})
		in, d = call(nil)
		d.Approval.Approvers, d.Approval.Min = nil, 1
		if err := s.Hold(context.Background(), in, d); err != nil {
			t.Fatal(err)
		}
		if d.Effect != pdp.Approve || len(d.Approval.Approvers) != 1 || d.Approval.Approvers[0] != "group:sec-oncall" {
			t.Fatalf("default approvers: %+v", d.Approval)
		}
		if _, err := review(s, d.Approval.ID, alice, VerdictApprove); !errors.Is(err, ErrRefused) {
			t.Fatal("alice is not on call")
		}
		if a, err := review(s, d.Approval.ID, Reviewer{ID: "frank", Groups: []string{"sec-oncall"}}, VerdictApprove); err != nil || a.State != Approved {
			t.Fatalf("group member: %v", err)
		}
	})
}

// A transition whose log record cannot be written does not happen.
func TestUnloggedReviewRollsBack(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		log, clk := &records{}, &clock{t: time.Now()}
		s := newService(open(), log, clk)
		d := hold(t, s, map[string]any{"p": 1})
		log.mu.Lock()
		log.fail = errors.New("disk full")
		log.mu.Unlock()
		if _, err := review(s, d.Approval.ID, alice, VerdictApprove); err == nil {
			t.Fatal("review succeeded without its log record")
		}
		if a, _ := s.Get(context.Background(), d.Approval.ID); len(a.Reviews) != 0 {
			t.Fatalf("unlogged review stored: %+v", a.Reviews)
		}
		in, d2 := call(map[string]any{"p": 2})
		if err := s.Hold(context.Background(), in, d2); err == nil {
			t.Fatal("a hold whose request could not be logged succeeded")
		}
	})
}

// atOnce runs fn(0) … fn(n-1) on n goroutines released together, and
// waits for them.
func atOnce(n int, fn func(g int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range n {
		wg.Go(func() {
			<-start
			fn(g)
		})
	}
	close(start)
	wg.Wait()
}

// Exactly one of many concurrent users of one grant gets it, on either
// store, and across two replicas of a PostgreSQL one.
func TestConsumeExactlyOnce(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		replicas := []*Store{open(), open()}
		clk := &clock{t: time.Now()}
		s := New(Options{Store: replicas[0], Now: clk.now})
		for round := range 5 {
			args := map[string]any{"round": round}
			in, d := call(args)
			d.Approval.Min = 1
			if err := s.Hold(context.Background(), in, d); err != nil {
				t.Fatal(err)
			}
			if _, err := review(s, d.Approval.ID, alice, VerdictApprove); err != nil {
				t.Fatal(err)
			}
			var wins atomic.Int32
			atOnce(16, func(g int) {
				a, err := replicas[g%2].Consume(context.Background(), in.Action.Digest, clk.now())
				switch {
				case err == nil:
					wins.Add(1)
					if a.ID != d.Approval.ID || a.State != Consumed || a.UsesLeft != 0 {
						t.Errorf("used %s: %s, %d uses left", a.ID, a.State, a.UsesLeft)
					}
				case !errors.Is(err, ErrNotFound):
					t.Error(err)
				}
			})
			if n := wins.Load(); n != 1 {
				t.Fatalf("round %d: %d callers used one grant", round, n)
			}
		}
	})
}

// Each approval past its time is expired, and returned expired, by exactly
// one of many concurrent sweeps, on either store and across two replicas
// of a PostgreSQL one.
func TestExpireExactlyOnce(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		replicas := []*Store{open(), open()}
		clk := &clock{t: time.Now()}
		s := New(Options{Store: replicas[0], Now: clk.now})
		due := map[string]int{}
		for i := range 6 {
			in, d := call(map[string]any{"expire": i})
			d.Approval.TTL, d.Approval.GrantTTL, d.Approval.Min = "1m", "1m", 1
			if err := s.Hold(context.Background(), in, d); err != nil {
				t.Fatal(err)
			}
			if i%2 == 1 { // a grant left unused
				if _, err := review(s, d.Approval.ID, alice, VerdictApprove); err != nil {
					t.Fatal(err)
				}
			}
			due[d.Approval.ID] = 1
		}
		clk.add(time.Minute)
		var mu sync.Mutex
		got := map[string]int{}
		atOnce(8, func(g int) {
			gone, err := replicas[g%2].Expire(context.Background(), clk.now())
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, a := range gone {
				got[a.ID]++
				if a.State != Expired || !a.UpdatedAt.Equal(clk.now()) {
					t.Errorf("expired %s: %s, updated %v", a.ID, a.State, a.UpdatedAt)
				}
			}
		})
		if !maps.Equal(got, due) {
			t.Fatalf("expired (times each): %v, want each of %v once", got, due)
		}
	})
}

// A waiting call is woken by the review, not by polling: Wait's backstop
// poll is 5 s, longer than the deadline here. With PostgreSQL the review
// is made through another replica.
func TestWaitWokenByReview(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		clk := &clock{t: time.Now()}
		a := New(Options{Store: open(), Now: clk.now})
		b := New(Options{Store: open(), Now: clk.now})
		in, d := call(nil)
		d.Approval.Min = 1
		if err := a.Hold(context.Background(), in, d); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		got := make(chan State, 1)
		waiting := make(chan struct{})
		go func() {
			close(waiting)
			ap, err := a.Wait(ctx, d.Approval.ID)
			if err != nil {
				t.Error(err)
			}
			got <- ap.State
		}()
		<-waiting
		if _, err := review(b, d.Approval.ID, alice, VerdictApprove); err != nil {
			t.Fatal(err)
		}
		if st := <-got; st != Approved {
			t.Fatalf("Wait returned %s", st)
		}
	})
}

func TestSQLiteReopenKeepsPendingAndRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	ctx := context.Background()
	st, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Store: st})
	id := hold(t, s, nil).Approval.ID
	st.Close()
	st, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := st.Get(ctx, id); err != nil || a.State != Pending {
		t.Fatalf("after restart: %v %+v", err, a)
	}
	if _, err := st.db.Exec(`INSERT INTO agentpdp_schema_migrations (version, applied_at) VALUES (?, 0)`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := OpenSQLite(ctx, path); err == nil || !strings.Contains(err.Error(), "newer than this agentpdp") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestListFilters(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		s := New(Options{Store: open()})
		for i := range 3 {
			hold(t, s, map[string]any{"i": i})
		}
		in, d := call(nil)
		in.User.ID = "zed"
		in.Action.Digest = pdp.Digest(in)
		if err := s.Hold(context.Background(), in, d); err != nil {
			t.Fatal(err)
		}
		all, err := s.List(context.Background(), Filter{State: Pending})
		if err != nil || len(all) != 4 {
			t.Fatalf("pending: %d %v", len(all), err)
		}
		zed, _ := s.List(context.Background(), Filter{User: "zed"})
		if len(zed) != 1 || zed[0].User != "zed" {
			t.Fatalf("by user: %+v", zed)
		}
		none, _ := s.List(context.Background(), Filter{State: Approved})
		if len(none) != 0 {
			t.Fatalf("approved: %d", len(none))
		}
	})
}

func TestOnEventHearsEveryTransition(t *testing.T) {
	st, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	var heard []string
	clk := &clock{t: time.Now()}
	s := New(Options{Store: st, Now: clk.now, OnEvent: func(kind string, a *Approval) {
		mu.Lock()
		heard = append(heard, kind+":"+string(a.State))
		mu.Unlock()
	}})
	in, d := call(map[string]any{"n": 1})
	d.Approval.Min = 1
	if err := s.Hold(context.Background(), in, d); err != nil {
		t.Fatal(err)
	}
	if _, err := review(s, d.Approval.ID, alice, VerdictApprove); err != nil {
		t.Fatal(err)
	}
	if _, err := review(s, d.Approval.ID, bob, VerdictApprove); err == nil {
		t.Fatal("reviewing an approved approval")
	}
	in, d = call(map[string]any{"n": 1})
	if err := s.Hold(context.Background(), in, d); err != nil || d.Effect != pdp.Allow {
		t.Fatal(err, d.Effect)
	}
	in, d = call(map[string]any{"n": 2})
	if err := s.Hold(context.Background(), in, d); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Hour)
	s.Sweep(context.Background())
	want := "requested:pending reviewed:approved approved:approved consumed:consumed requested:pending expired:expired"
	if got := strings.Join(heard, " "); got != want {
		t.Fatalf("heard %s\nwant  %s", got, want)
	}
}

// Ended approvals leave the store after the retention; pending and
// approved ones never do.
func TestPurgeEndedApprovals(t *testing.T) {
	backends(t, func(t *testing.T, open func() *Store) {
		clk := &clock{t: time.Now()}
		s := New(Options{Store: open(), Now: clk.now, Retention: 48 * time.Hour})
		ids := map[string]string{}
		for _, name := range []string{"denied", "consumed", "approved", "pending"} {
			in, d := call(map[string]any{"n": name})
			d.Approval.Min, d.Approval.TTL, d.Approval.GrantTTL = 1, "1000h", "1000h"
			if err := s.Hold(context.Background(), in, d); err != nil {
				t.Fatal(err)
			}
			ids[name] = d.Approval.ID
			switch name {
			case "denied":
				_, _ = review(s, d.Approval.ID, alice, VerdictDeny)
			case "consumed", "approved":
				_, _ = review(s, d.Approval.ID, alice, VerdictApprove)
			}
			if name == "consumed" {
				in, d := call(map[string]any{"n": name})
				if err := s.Hold(context.Background(), in, d); err != nil || d.Effect != pdp.Allow {
					t.Fatal(err, d.Effect)
				}
			}
		}
		clk.add(47 * time.Hour)
		s.Purge(context.Background())
		for name, id := range ids {
			if _, err := s.Get(context.Background(), id); err != nil {
				t.Fatalf("%s purged before its time: %v", name, err)
			}
		}
		clk.add(2 * time.Hour)
		s.Purge(context.Background())
		for name, id := range ids {
			_, err := s.Get(context.Background(), id)
			if gone := errors.Is(err, ErrNotFound); gone != (name == "denied" || name == "consumed") {
				t.Errorf("%s after the retention: %v", name, err)
			}
		}
	})
}

// The person a call is made for cannot review it under another name (an
// OIDC subject, when the door knew them by email).
func TestSelfReviewUnderAnotherName(t *testing.T) {
	st, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Options{Store: st})
	id := hold(t, s, map[string]any{"x": 1}).Approval.ID // made for "carol"
	carolBySub := Reviewer{ID: "00u-carol", Groups: []string{"security"}, Aliases: []string{"carol"}}
	if _, err := review(s, id, carolBySub, VerdictApprove); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "for themselves") {
		t.Fatalf("carol under her subject: %v", err)
	}
	aliceBySub := Reviewer{ID: "00u-alice", Aliases: []string{"alice"}}
	if a, err := review(s, id, aliceBySub, VerdictApprove); err != nil || len(a.Reviews) != 1 {
		t.Fatalf("alice, an approver by her other name: %v", err)
	}
}
