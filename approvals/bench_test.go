package approvals

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/approvals/pgtest"
)

// benchStores gives a benchmark two handles on one store: the same one
// for SQLite (one process), two replicas' for PostgreSQL.
func benchStores(b *testing.B, fn func(b *testing.B, waiter, reviewer *Store)) {
	b.Run("sqlite", func(b *testing.B) {
		st, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "a.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		fn(b, st, st)
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := pgtest.DSN(b)
		var sts []*Store
		for range 2 {
			st, err := OpenPostgres(context.Background(), dsn, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			sts = append(sts, st)
		}
		fn(b, sts[0], sts[1])
	})
}

// BenchmarkResumeAfterApproval: how long after the approving review a
// held call's Wait returns (the MCP door then decides and forwards it).
// The goal is p99 <= 100 ms; reported as resume-p50-ms and resume-p99-ms.
// With PostgreSQL the call waits on one replica and is approved on the
// other (LISTEN/NOTIFY).
func BenchmarkResumeAfterApproval(b *testing.B) {
	benchStores(b, func(b *testing.B, waiter, reviewer *Store) {
		w, r := New(Options{Store: waiter}), New(Options{Store: reviewer})
		var lat []time.Duration
		for i := 0; b.Loop(); i++ {
			in, d := call(map[string]any{"i": i, "bench": b.Name()})
			d.Approval.Min = 1
			if err := w.Hold(context.Background(), in, d); err != nil {
				b.Fatal(err)
			}
			resumed := make(chan time.Time, 1)
			waiting := make(chan struct{})
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				// Registered before the review, as a held call's is.
				stop := w.Store().Watch(func(string) {})
				close(waiting)
				a, err := w.Wait(ctx, d.Approval.ID)
				stop()
				if err != nil || a.State != Approved {
					b.Error(err, a)
				}
				resumed <- time.Now()
			}()
			<-waiting
			time.Sleep(time.Millisecond) // let Wait block on the signal
			start := time.Now()
			if _, err := r.Review(context.Background(), d.Approval.ID, alice, ReviewRequest{Verdict: VerdictApprove}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, (<-resumed).Sub(start))
		}
		slices.Sort(lat)
		b.ReportMetric(ms(lat[len(lat)/2]), "resume-p50-ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "resume-p99-ms")
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkConsumeContended: 16 goroutines race for one grant per
// iteration (across both replicas for PostgreSQL); exactly one wins.
func BenchmarkConsumeContended(b *testing.B) {
	benchStores(b, func(b *testing.B, s1, s2 *Store) {
		svc := New(Options{Store: s1})
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			in, d := call(map[string]any{"i": i, "bench": b.Name()})
			d.Approval.Min = 1
			if err := svc.Hold(context.Background(), in, d); err != nil {
				b.Fatal(err)
			}
			if _, err := svc.Review(context.Background(), d.Approval.ID, alice, ReviewRequest{Verdict: VerdictApprove}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			for g := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st := []*Store{s1, s2}[g%2]
					_, err := st.Consume(context.Background(), in.Action.Digest, time.Now())
					switch {
					case err == nil:
						mu.Lock()
						wins++
						mu.Unlock()
					case !errors.Is(err, ErrNotFound):
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			if wins != 1 {
				b.Fatalf("%d winners", wins)
			}
		}
	})
}

// BenchmarkHold: the approve path's own cost (create-or-join), which no
// allow or deny decision pays (pdp calls the Holder on approve only).
func BenchmarkHold(b *testing.B) {
	benchStores(b, func(b *testing.B, st, _ *Store) {
		svc := New(Options{Store: st})
		for i := 0; b.Loop(); i++ {
			in, d := call(map[string]any{"i": i % 64, "bench": b.Name()})
			if err := svc.Hold(context.Background(), in, d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
