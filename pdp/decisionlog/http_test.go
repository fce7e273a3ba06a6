package decisionlog

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// collector is an OPA-style decision-log endpoint on loopback.
type collector struct {
	srv      *httptest.Server
	fail     atomic.Int32 // answer 503 to this many more requests
	mu       sync.Mutex
	events   []json.RawMessage
	requests int
	got      chan struct{}
	errs     chan error
}

func newCollector(t *testing.T) *collector {
	c := &collector{got: make(chan struct{}, 1000), errs: make(chan error, 100)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.requests++
		c.mu.Unlock()
		if c.fail.Add(-1) >= 0 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "gzip" ||
			r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Authorization") != "Bearer t0ken" {
			c.errs <- errors.New("bad request: " + r.Method + " " + r.Header.Get("Content-Encoding") + " " + r.Header.Get("Authorization"))
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			c.errs <- err
			return
		}
		var batch []json.RawMessage
		if err := json.NewDecoder(zr).Decode(&batch); err != nil {
			c.errs <- err
			return
		}
		c.mu.Lock()
		c.events = append(c.events, batch...)
		c.mu.Unlock()
		for range batch {
			c.got <- struct{}{}
		}
	}))
	t.Cleanup(c.srv.Close)
	if !strings.HasPrefix(c.srv.URL, "http://127.0.0.1:") {
		t.Fatalf("collector not on loopback: %s", c.srv.URL)
	}
	return c
}

func (c *collector) await(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.got:
		case err := <-c.errs:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("records not delivered")
		}
	}
}

func TestHTTPSinkUploadsGzipBatches(t *testing.T) {
	c := newCollector(t)
	c.fail.Store(2) // the first uploads fail and are retried
	path := filepath.Join(t.TempDir(), "decisions.log")
	fs, err := NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPSink(c.srv.URL+"/logs", HTTPOptions{
		Headers: map[string]string{"Authorization": "Bearer t0ken"}, FlushInterval: time.Hour, // batches go when full, the rest on the log's fsync tick
		MaxBatchBytes: 8 << 10, MinRetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond, Logger: discardLogger(),
	})
	l, err := New(quiet(), fs, hs)
	if err != nil {
		t.Fatal(err)
	}
	const n = 25
	appendN(t, l, 0, n)
	c.await(t, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.events) != n {
		t.Fatalf("collector got %d events, want %d", len(c.events), n)
	}
	for i, ev := range c.events {
		if !bytes.Equal(ev, bytes.TrimSuffix(lines[i], []byte("\n"))) {
			t.Errorf("event %d differs from the file line:\n%s\n%s", i, ev, lines[i])
		}
	}
	// 8 KiB batches of ~1.4 KiB records: five a time, not one per record
	// (the two refused uploads count too).
	if c.requests < 2+n/6 || c.requests > 2+n/3 {
		t.Errorf("%d requests for %d records", c.requests, n)
	}
}

func TestHTTPSinkFailsClosedWhenBufferFull(t *testing.T) {
	c := newCollector(t)
	c.fail.Store(1 << 30) // endpoint down
	line := readLinesOf(t, sampleRecord(t, 0))
	hs := NewHTTPSink(c.srv.URL, HTTPOptions{
		MaxBufferBytes: 3*len(line) + 2*71 + 10, // two of them carry a prev_hash FlushInterval: time.Millisecond,
		MinRetryDelay:  time.Millisecond, MaxRetryDelay: 2 * time.Millisecond,
		CloseTimeout: 20 * time.Millisecond, Logger: discardLogger(),
	})
	l, err := New(quiet(), hs)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 3)
	err = l.Append(sampleRecord(t, 3))
	if !errors.Is(err, ErrBufferFull) {
		t.Fatalf("Append with a full upload buffer = %v, want ErrBufferFull", err)
	}
	if seq, _ := l.Head(); seq != 3 {
		t.Errorf("chain at %d, want 3: the refused record must not count", seq)
	}
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), "not delivered") {
		t.Errorf("Close = %v, want undelivered records reported", err)
	}
	if err := hs.Write([]byte("{}\n")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestBatchEnd(t *testing.T) {
	q := []byte("aaaa\nbb\ncccccc\n")
	for max, want := range map[int]int{100: 15, 15: 15, 14: 8, 8: 8, 7: 5, 2: 5} {
		if got := batchEnd(q, max); got != want {
			t.Errorf("batchEnd(max %d) = %d, want %d", max, got, want)
		}
	}
	var buf bytes.Buffer
	if err := writeArray(&buf, q); err != nil || buf.String() != "[aaaa,bb,cccccc]" {
		t.Errorf("writeArray = %q, %v", buf.String(), err)
	}
}
