package decisionlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// HTTPOptions tune the HTTP sink. The zero value is usable.
type HTTPOptions struct {
	// Client sends the uploads (default: a client with a 10s timeout).
	Client *http.Client
	// Headers are added to every upload (Authorization, …).
	Headers map[string]string
	// FlushInterval is the longest a record waits before upload (default 1s).
	FlushInterval time.Duration
	// MaxBatchBytes caps one upload's uncompressed size (default 1 MiB);
	// a single larger record is sent alone.
	MaxBatchBytes int
	// MaxBufferBytes bounds the records held while the endpoint is slow or
	// down (default 32 MiB). When full, Write fails, so decisions are
	// denied rather than left unlogged.
	MaxBufferBytes int
	// MinRetryDelay and MaxRetryDelay bound the exponential backoff
	// between failed uploads (defaults 100ms and 30s).
	MinRetryDelay, MaxRetryDelay time.Duration
	// CloseTimeout bounds the final upload attempts on Close (default 5s).
	CloseTimeout time.Duration
	Logger       *slog.Logger
}

// ErrBufferFull is returned by the HTTP sink's Write when records cannot be
// delivered fast enough.
var ErrBufferFull = errors.New("decision log upload buffer is full")

// HTTPSink uploads records the way OPA's decision-log plugin does: a POST
// of a gzip-compressed JSON array of events (Content-Encoding: gzip), in
// batches, retried with backoff until the endpoint takes them.
type HTTPSink struct {
	url  string
	opts HTTPOptions

	mu sync.Mutex
	// queue holds newline-terminated lines not yet delivered; the uploader
	// only ever removes a prefix of it, writers only append.
	queue []byte
	err   error // the last upload error, for Close

	kick chan struct{}
	done chan struct{}
	// stop cancels background uploads when Close starts the final ones.
	stop      context.CancelFunc
	bg        context.Context
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewHTTPSink starts a sink uploading to url, the full endpoint (for an OPA
// compatible collector, its "/logs" URL).
func NewHTTPSink(url string, opts HTTPOptions) Sink {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 1 << 20
	}
	if opts.MaxBufferBytes <= 0 {
		opts.MaxBufferBytes = 32 << 20
	}
	if opts.MinRetryDelay <= 0 {
		opts.MinRetryDelay = 100 * time.Millisecond
	}
	if opts.MaxRetryDelay < opts.MinRetryDelay {
		opts.MaxRetryDelay = max(30*time.Second, opts.MinRetryDelay)
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &HTTPSink{url: url, opts: opts, kick: make(chan struct{}, 1), done: make(chan struct{})}
	s.bg, s.stop = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	return s
}

// Write queues line for upload; it only copies, never waits on the network.
func (s *HTTPSink) Write(line []byte) error {
	select {
	case <-s.done:
		return errors.New("decision log upload: sink is closed")
	default:
	}
	s.mu.Lock()
	if len(s.queue)+len(line) > s.opts.MaxBufferBytes {
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%w (%d bytes pending; last upload error: %v)", ErrBufferFull, s.opts.MaxBufferBytes, err)
		}
		return ErrBufferFull
	}
	s.queue = append(s.queue, line...)
	full := len(s.queue) >= s.opts.MaxBatchBytes
	s.mu.Unlock()
	if full {
		s.poke()
	}
	return nil
}

func (s *HTTPSink) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Sync starts an upload without waiting for it: durability is the
// collector's business.
func (s *HTTPSink) Sync() error {
	s.poke()
	return nil
}

// Close tries to deliver what is queued, for up to CloseTimeout.
func (s *HTTPSink) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.stop()
		s.wg.Wait()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.queue); n > 0 {
		return fmt.Errorf("decision log upload: %d bytes of records not delivered: %v", n, s.err)
	}
	return nil
}

func (s *HTTPSink) run() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	var w uploader
	for {
		select {
		case <-s.done:
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.CloseTimeout)
			s.drain(ctx, &w)
			cancel()
			return
		case <-t.C:
		case <-s.kick:
		}
		s.drain(s.bg, &w)
	}
}

// drain uploads batches until the queue is empty, backing off on failure,
// until ctx ends (Close cancels the background one, then makes a last
// attempt bounded by CloseTimeout).
func (s *HTTPSink) drain(ctx context.Context, w *uploader) {
	delay := s.opts.MinRetryDelay
	for {
		s.mu.Lock()
		n := batchEnd(s.queue, s.opts.MaxBatchBytes)
		batch := append(w.batch[:0], s.queue[:n]...)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		w.batch = batch
		err := s.post(ctx, w)
		s.mu.Lock()
		s.err = err
		if err == nil {
			// Writers only appended meanwhile: drop the delivered prefix.
			s.queue = s.queue[:copy(s.queue, s.queue[n:])]
		}
		s.mu.Unlock()
		if err == nil {
			delay = s.opts.MinRetryDelay
			continue
		}
		s.opts.Logger.Warn("decision log upload failed; retrying", "url", s.url, "error", err, "retry_in", delay)
		// Jitter keeps replicas from retrying in lockstep.
		wait := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return
		}
		delay = min(2*delay, s.opts.MaxRetryDelay)
	}
}

// batchEnd is the length of the longest prefix of whole lines within max
// bytes (at least one line).
func batchEnd(q []byte, max int) int {
	if len(q) <= max {
		return len(q)
	}
	if i := bytes.LastIndexByte(q[:max], '\n'); i >= 0 {
		return i + 1
	}
	return bytes.IndexByte(q, '\n') + 1
}

// uploader holds the buffers reused from one upload to the next.
type uploader struct {
	batch []byte // newline-separated lines
	body  bytes.Buffer
	gz    *gzip.Writer
}

func (s *HTTPSink) post(ctx context.Context, w *uploader) error {
	w.body.Reset()
	if w.gz == nil {
		w.gz = gzip.NewWriter(&w.body)
	} else {
		w.gz.Reset(&w.body)
	}
	// The lines are JSON objects: the array is them, comma-separated.
	if err := writeArray(w.gz, w.batch); err != nil {
		return err
	}
	if err := w.gz.Close(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(w.body.Bytes()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	for k, v := range s.opts.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: HTTP %s", s.url, resp.Status)
	}
	return nil
}

func writeArray(w io.Writer, lines []byte) error {
	if _, err := w.Write([]byte{'['}); err != nil {
		return err
	}
	first := true
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n')
		if i < 0 {
			i = len(lines)
		}
		if !first {
			if _, err := w.Write([]byte{','}); err != nil {
				return err
			}
		}
		first = false
		if _, err := w.Write(lines[:i]); err != nil {
			return err
		}
		lines = lines[min(i+1, len(lines)):]
	}
	_, err := w.Write([]byte{']'})
	return err
}
