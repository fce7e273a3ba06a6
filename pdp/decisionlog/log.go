// Package decisionlog is the tamper-evident decision log: one canonical JSON
// object (RFC 8785) per line, each carrying the SHA-256 of the previous line,
// so that editing, dropping, reordering or inserting a line breaks the chain
// where it happened (see Verify).
//
//	hash = "sha256:" + hex(SHA-256(prev_hash ‖ canonical record without "hash"))
//
// The genesis record has seq 1 and prev_hash "". The written line is the
// canonical record with "hash" in its sorted place, so every line is itself
// canonical JSON.
//
// Field names follow OPA's decision log where they exist (decision_id,
// timestamp, path, input, result, labels). This package must not import
// package pdp, which imports it.
package decisionlog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// Record is one line of the log. Fields are declared in JSON-name order;
// the encoder below writes them in that (canonical) order.
type Record struct {
	Agent           string   `json:"agent,omitempty"`
	ApprovalID      string   `json:"approval_id,omitempty"`
	DecisionID      string   `json:"decision_id"`
	DelegationChain []string `json:"delegation_chain,omitempty"`
	Effect          string   `json:"effect"`
	// Event is "" for a decision, else what happened: "list_filter",
	// "approval.requested", "approval.granted", …
	Event string `json:"event,omitempty"`
	// Input is canonical JSON, written verbatim (it is re-canonicalized
	// first if it is not).
	Input     json.RawMessage   `json:"input,omitempty"`
	InputHash string            `json:"input_hash,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	LatencyNS int64             `json:"latency_ns"`
	Path      string            `json:"path,omitempty"`
	// PolicyRevision is the policy set the decision was made with.
	PolicyRevision string `json:"policy_revision,omitempty"`
	// PrevHash is set by Append.
	PrevHash string `json:"prev_hash"`
	// Reasons are the ids of the rules that fired.
	Reasons []string `json:"reasons,omitempty"`
	// Result is the canonical JSON of the decision, written like Input.
	Result json.RawMessage `json:"result,omitempty"`
	// Seq is set by Append: 1 for the genesis record, then +1 per line.
	Seq    uint64 `json:"seq"`
	Shadow bool   `json:"shadow,omitempty"`
	// Timestamp is RFC 3339 with nanoseconds, UTC; Append sets it when empty.
	Timestamp string `json:"timestamp"`
	User      string `json:"user,omitempty"`
	// Canonical says Input and Result are already RFC 8785 (the caller's
	// encoder made them so): Append does not check them again.
	Canonical bool `json:"-"`
}

// Sink receives lines in chain order: each Write gets one or more whole
// lines, each ending with '\n' (several when appends were grouped into one
// write). Write must not keep the slice after it returns. Write and Sync
// may be called concurrently with each other, never Write with Write.
type Sink interface {
	Write(line []byte) error
	// Sync makes written lines durable (fsync); sinks without such a
	// notion return nil.
	Sync() error
	Close() error
}

// Resumer is a sink that keeps the chain across restarts: New continues
// from the state it reports (the last seq and hash it holds).
type Resumer interface {
	LastState() (seq uint64, hash string, err error)
}

// Options tune a Log. The zero value is usable.
type Options struct {
	// FsyncInterval bounds how long a written line may stay unsynced
	// (default 200ms).
	FsyncInterval time.Duration
	// FsyncEvery syncs early after this many records (default 1000).
	FsyncEvery int
	Logger     *slog.Logger
	// Clock stamps records (default time.Now).
	Clock func() time.Time
	// Checkpoints, when set, writes checkpoints (see Checkpoint).
	Checkpoints *CheckpointOptions
}

// Defaults for Options.
const (
	DefaultFsyncInterval = 200 * time.Millisecond
	DefaultFsyncEvery    = 1000
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("decision log is closed")

// Log appends records to its sinks, chaining their hashes. It is safe for
// concurrent use. Records are chained in the order Append takes the lock,
// and written by group commit: while one write(2) is in flight, records
// appended meanwhile are chained into the next batch, which one of their
// callers then writes in a single call. Every Append still returns only
// after its own line was written.
type Log struct {
	opts  Options
	sinks []Sink

	mu   sync.Mutex
	cond sync.Cond // signalled when a batch write finishes
	seq  uint64
	prev []byte // hash of the last record chained, "" at genesis
	buf  []byte // scratch: the record without hash
	h    hash.Hash
	sum  []byte
	// cur collects the lines chained but not yet handed to the sinks;
	// writing is true while a batch write is in flight (outside the lock).
	cur      *batch
	writing  bool
	free     []*batch // recycled batches, buffers included
	unsynced int
	syncErr  error // the last background fsync failed; cleared by a good one
	closed   bool

	syncNow chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup

	ck    *checkpointer // nil without checkpoints
	ckSeq uint64        // the head seq last checkpointed
}

// batch is lines written to the sinks in one call each.
type batch struct {
	buf  []byte
	n    int // lines
	refs int // Appends still waiting on it
	// The chain state before the batch, restored when no sink took it.
	startSeq  uint64
	startPrev []byte
	done      bool
	err       error
}

// New starts a log writing to sinks. When a sink is a Resumer (FileSink is)
// the chain continues from the state it holds, so a restart does not break
// verification. Fsync is batched in a background goroutine.
func New(opts Options, sinks ...Sink) (*Log, error) {
	if len(sinks) == 0 {
		return nil, errors.New("decision log: no sinks")
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = DefaultFsyncInterval
	}
	if opts.FsyncEvery <= 0 {
		opts.FsyncEvery = DefaultFsyncEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	l := &Log{
		opts: opts, sinks: sinks,
		buf: make([]byte, 0, 4096),
		h:   sha256.New(), sum: make([]byte, 0, sha256.Size),
		syncNow: make(chan struct{}, 1), done: make(chan struct{}),
	}
	l.cond.L = &l.mu
	resumed := false
	for _, s := range sinks {
		r, ok := s.(Resumer)
		if !ok {
			continue
		}
		seq, h, err := r.LastState()
		if err != nil {
			return nil, fmt.Errorf("decision log: resuming the hash chain: %w", err)
		}
		if resumed && (seq != l.seq || h != string(l.prev)) {
			return nil, fmt.Errorf("decision log: sinks disagree on the chain state (seq %d vs %d)", l.seq, seq)
		}
		l.seq, l.prev, resumed = seq, []byte(h), true
	}
	if resumed && l.seq > 0 {
		opts.Logger.Info("decision log resumes its hash chain", "seq", l.seq, "prev_hash", string(l.prev))
	}
	l.wg.Add(1)
	go l.syncLoop()
	if opts.Checkpoints != nil {
		if err := l.startCheckpoints(*opts.Checkpoints, sinks); err != nil {
			close(l.done)
			l.wg.Wait()
			return nil, err
		}
	}
	return l, nil
}

// Head is the seq and hash of the last record appended (0, "" before any).
func (l *Log) Head() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, string(l.prev)
}

// Append assigns rec its Seq, PrevHash and (if empty) Timestamp, and writes
// it to every sink before returning, so a decision reaches at least the OS
// before its call goes on. Any sink error is returned: callers deny.
//
// The chain advances when at least one sink took the line (the line then
// exists with that seq, and a sink that missed it shows a gap on
// verification). When none did, the chain is rolled back, and records
// chained after it in the meantime fail too.
func (l *Log) Append(rec *Record) error {
	// Canonicalize the embedded documents outside the lock: only the
	// chain fields need it.
	if !rec.Canonical {
		if err := canonical(&rec.Input, "input"); err != nil {
			return err
		}
		if err := canonical(&rec.Result, "result"); err != nil {
			return err
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.syncErr != nil {
		return fmt.Errorf("decision log: fsync failed: %w", l.syncErr)
	}
	if rec.Timestamp == "" {
		rec.Timestamp = l.opts.Clock().UTC().Format(time.RFC3339Nano)
	}
	rec.Seq = l.seq + 1
	rec.PrevHash = string(l.prev)
	if err := l.chain(rec); err != nil {
		return fmt.Errorf("decision log: encoding record %s: %w", rec.DecisionID, err)
	}
	b := l.cur
	b.refs++
	for !b.done {
		if l.writing {
			l.cond.Wait()
		} else {
			l.writeBatch() // ours, with whatever else was chained meanwhile
		}
	}
	err := b.err
	if b.refs--; b.refs == 0 && cap(b.buf) <= 1<<20 { // do not hoard a buffer grown by a burst
		l.free = append(l.free, b)
	}
	return err
}

// chain encodes rec, hashes it onto the chain and adds its line to the
// current batch. Called with l.mu held.
func (l *Log) chain(rec *Record) error {
	var hashAt int
	var err error
	l.buf, hashAt, err = appendRecord(l.buf[:0], rec)
	if err != nil {
		return err
	}
	l.h.Reset()
	l.h.Write(l.prev)
	l.h.Write(l.buf)
	l.sum = l.h.Sum(l.sum[:0])

	if l.cur == nil {
		var b *batch
		if n := len(l.free); n > 0 {
			b, l.free = l.free[n-1], l.free[:n-1]
			*b = batch{buf: b.buf[:0], startPrev: b.startPrev[:0]}
		} else {
			b = &batch{buf: make([]byte, 0, 4096)}
		}
		b.startSeq, b.startPrev = l.seq, append(b.startPrev, l.prev...)
		l.cur = b
	}
	line := append(l.cur.buf, l.buf[:hashAt]...)
	line = append(line, `,"hash":"sha256:`...)
	hashStart := len(line) - len("sha256:")
	line = hex.AppendEncode(line, l.sum)
	hashEnd := len(line)
	line = append(line, '"')
	line = append(line, l.buf[hashAt:]...)
	line = append(line, '\n')
	l.cur.buf = line
	l.cur.n++
	l.seq = rec.Seq
	l.prev = append(l.prev[:0], line[hashStart:hashEnd]...)
	return nil
}

// writeBatch hands the current batch to every sink, releasing the lock for
// the write so that other records can be chained meanwhile. Called with
// l.mu held and no write in flight.
func (l *Log) writeBatch() {
	b := l.cur
	l.cur = nil
	l.writing = true
	l.mu.Unlock()
	var errs []error
	wrote := false
	for _, s := range l.sinks {
		if err := s.Write(b.buf); err != nil {
			errs = append(errs, err)
			continue
		}
		wrote = true
	}
	l.mu.Lock()
	l.writing = false
	if len(errs) > 0 {
		b.err = fmt.Errorf("decision log: %w", errors.Join(errs...))
	}
	if wrote {
		if c := l.ck; c != nil && c.opts.Every > 0 {
			if end := b.startSeq + uint64(b.n); end > l.ckSeq && end-l.ckSeq >= uint64(c.opts.Every) {
				c.poke()
			}
		}
		l.unsynced += b.n
		if l.unsynced >= l.opts.FsyncEvery {
			select {
			case l.syncNow <- struct{}{}:
			default:
			}
		}
	} else {
		// Nothing holds these lines: take the chain back to before them.
		// Records chained meanwhile hang off them, so they fail as well.
		l.seq, l.prev = b.startSeq, append(l.prev[:0], b.startPrev...)
		if c := l.cur; c != nil {
			c.err = fmt.Errorf("decision log: an earlier record could not be written: %w", b.err)
			c.done = true
			l.cur = nil
		}
	}
	b.done = true
	l.cond.Broadcast()
}

// canonical makes *raw canonical JSON, transforming it only when it is not
// already (the common case costs one allocation-free scan).
func canonical(raw *json.RawMessage, what string) error {
	if len(*raw) == 0 || jcs.IsCanonical(*raw) {
		return nil
	}
	c, err := jcs.Transform(*raw)
	if err != nil {
		return fmt.Errorf("decision log: %s is not valid JSON: %w", what, err)
	}
	*raw = c
	return nil
}

// syncLoop fsyncs the sinks every FsyncInterval when something was written,
// or sooner after FsyncEvery records; never once per record.
func (l *Log) syncLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.FsyncInterval)
	defer t.Stop()
	for {
		early := false
		select {
		case <-l.done:
			return
		case <-t.C:
		case <-l.syncNow:
			early = true
		}
		l.mu.Lock()
		dirty := l.unsynced > 0 || l.syncErr != nil
		// A signal sent while the previous sync was starting is stale: the
		// lines that raised it were synced by it. The ticker still bounds
		// how long the few written since stay unsynced.
		if early && l.unsynced < l.opts.FsyncEvery && l.syncErr == nil {
			dirty = false
		}
		if dirty {
			l.unsynced = 0
		}
		l.mu.Unlock()
		if !dirty {
			continue
		}
		err := l.syncSinks()
		if err != nil {
			l.opts.Logger.Error("decision log fsync failed; denying until it succeeds", "error", err)
		}
		l.mu.Lock()
		l.syncErr = err
		l.mu.Unlock()
	}
}

func (l *Log) syncSinks() error {
	var errs []error
	for _, s := range l.sinks {
		if err := s.Sync(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close writes what is already chained, then syncs and closes every sink.
// Appends after Close fail.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	// Records already chained are written (their callers are waiting)
	// before the sinks close.
	for l.writing || l.cur != nil {
		if l.writing {
			l.cond.Wait()
		} else {
			l.writeBatch()
		}
	}
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()
	var errs []error
	if l.ck != nil {
		// The last checkpoint goes out while the other sinks still take it.
		errs = append(errs, l.checkpoint(false))
	}
	errs = append(errs, l.syncSinks())
	for _, s := range l.sinks {
		errs = append(errs, s.Close())
	}
	if l.ck != nil {
		errs = append(errs, l.ck.file.Close())
	}
	return errors.Join(errs...)
}
