package decisionlog

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// Checkpoint states that the log held records up to Seq, the last with hash
// Hash, at Time. A hash chain shows every edit inside the log but not a cut
// at either end; checkpoints, kept outside the chained file (a checkpoint
// file, copies in the stdout and HTTP sinks) and signed with a key the
// log's writer does not hold, let Verify show those too.
//
// One line of canonical JSON:
//
//	{"hash":"sha256:…","key_id":"ed25519:…","seq":N,"sig":"…","time":"…","type":"checkpoint"}
//
// sig is Ed25519 over the same object without key_id and sig.
type Checkpoint struct {
	Seq  uint64
	Hash string
	Time string
	// Rotated marks the last record of a file that rotated: max_backups
	// may delete that file later, so a log may start right after it.
	Rotated bool
	KeyID   string
	Sig     []byte
	// File and Line are where it was read, for messages.
	File string
	Line int
	// Given is a head stated by whoever verifies (--head): nothing to
	// check its signature against, and no rotations with it.
	Given bool
}

// Where names the checkpoint's origin: file:line, or the flag.
func (c *Checkpoint) Where() string {
	if c.Line == 0 {
		return c.File
	}
	return c.File + ":" + strconv.Itoa(c.Line)
}

// signed is what the signature covers. "type" keeps a checkpoint signature
// from ever passing for a signature over something else.
func (c *Checkpoint) signed() []byte {
	b, _ := jcs.AppendObject(nil, func(o *jcs.Object) {
		o.StrAlways("hash", c.Hash)
		o.Bool("rotated", c.Rotated)
		o.Key("seq")
		o.B = strconv.AppendUint(o.B, c.Seq, 10)
		o.StrAlways("time", c.Time)
		o.StrAlways("type", "checkpoint")
	})
	return b
}

func (c *Checkpoint) appendLine(b []byte) []byte {
	b, _ = jcs.AppendObject(b, func(o *jcs.Object) {
		o.StrAlways("hash", c.Hash)
		o.Str("key_id", c.KeyID)
		o.Bool("rotated", c.Rotated)
		o.Key("seq")
		o.B = strconv.AppendUint(o.B, c.Seq, 10)
		if len(c.Sig) > 0 {
			o.StrAlways("sig", base64.StdEncoding.EncodeToString(c.Sig))
		}
		o.StrAlways("time", c.Time)
		o.StrAlways("type", "checkpoint")
	})
	return append(b, '\n')
}

func (c *Checkpoint) sign(key ed25519.PrivateKey) {
	if key == nil {
		return
	}
	c.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	c.Sig = ed25519.Sign(key, c.signed())
}

// VerifySignature checks the checkpoint was signed by pub.
func (c *Checkpoint) VerifySignature(pub ed25519.PublicKey) error {
	if len(c.Sig) == 0 {
		return errors.New("unsigned, but a public key was given: anyone could have written it")
	}
	if id := KeyID(pub); c.KeyID != "" && c.KeyID != id {
		return fmt.Errorf("signed by key %s, not by the public key given (%s)", c.KeyID, id)
	}
	if !ed25519.Verify(pub, c.signed(), c.Sig) {
		return errors.New("signature does not verify: checkpoint forged or altered")
	}
	return nil
}

// KeyID names a public key: "ed25519:" and the first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// ParseCheckpoint reads one checkpoint line. It need not be canonical (a
// collector may have re-encoded it): the signature is over the fields.
func ParseCheckpoint(line []byte) (Checkpoint, error) {
	var raw struct {
		Type    string  `json:"type"`
		Seq     *uint64 `json:"seq"`
		Hash    string  `json:"hash"`
		Time    string  `json:"time"`
		Rotated bool    `json:"rotated"`
		KeyID   string  `json:"key_id"`
		Sig     string  `json:"sig"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return Checkpoint{}, fmt.Errorf("not a checkpoint: %v", err)
	}
	if raw.Type != "checkpoint" {
		return Checkpoint{}, errors.New(`not a checkpoint: "type" is not "checkpoint"`)
	}
	if raw.Seq == nil || *raw.Seq == 0 {
		return Checkpoint{}, errors.New(`checkpoint: "seq" is not a positive integer`)
	}
	if !validHash(raw.Hash) {
		return Checkpoint{}, errors.New(`checkpoint: "hash" is not a sha256 hash`)
	}
	if _, err := time.Parse(time.RFC3339Nano, raw.Time); err != nil {
		return Checkpoint{}, fmt.Errorf(`checkpoint: "time": %v`, err)
	}
	sig, err := base64.StdEncoding.DecodeString(raw.Sig)
	if err != nil {
		return Checkpoint{}, fmt.Errorf(`checkpoint: "sig" is not base64: %v`, err)
	}
	return Checkpoint{Seq: *raw.Seq, Hash: raw.Hash, Time: raw.Time, Rotated: raw.Rotated, KeyID: raw.KeyID, Sig: sig}, nil
}

func validHash(s string) bool {
	_, ok := hashValue([]byte(`"` + s + `"`))
	return ok
}

// ReadCheckpoints reads the checkpoints in path: a checkpoint file, or a
// capture of the stdout sink or of HTTP uploads (one event per line), whose
// decision records are skipped. A damaged checkpoint line is an error
// naming it; a file without any checkpoint is one too.
func ReadCheckpoints(path string) ([]Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Checkpoint
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		line = bytes.TrimSpace(line)
		if !bytes.Contains(line, []byte("checkpoint")) {
			continue // cheap: most lines of a capture are records
		}
		var probe struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(line, &probe) == nil && probe.Type != "checkpoint" {
			continue // a record that mentions the word
		}
		c, err := ParseCheckpoint(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		c.File, c.Line = path, n
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no checkpoints in the file", path)
	}
	return out, nil
}

// ParseHead reads "SEQ:HASH" (HASH with or without "sha256:"), a head noted
// elsewhere, as a checkpoint the log must reach. A bare SEQ (from the
// head_seq metric's history) checks the log's length only.
func ParseHead(s string) (Checkpoint, error) {
	seqStr, hash, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil || seq == 0 {
		return Checkpoint{}, fmt.Errorf("head %q is not SEQ:HASH or SEQ", s)
	}
	if !ok {
		return Checkpoint{Seq: seq, File: "--head " + s, Given: true}, nil
	}
	if !strings.HasPrefix(hash, "sha256:") {
		hash = "sha256:" + hash
	}
	if !validHash(hash) {
		return Checkpoint{}, fmt.Errorf("head %q: the hash is not sha256:<64 lowercase hex>", s)
	}
	return Checkpoint{Seq: seq, Hash: hash, File: "--head " + s, Given: true}, nil
}

// LoadPrivateKey reads an Ed25519 private key: PEM "PRIVATE KEY" (PKCS #8,
// as `agentpdp audit keygen` and `openssl genpkey -algorithm ed25519`
// write), or the raw 32-byte seed or 64-byte key.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("%s: PEM block %q, want \"PRIVATE KEY\" (PKCS #8 Ed25519)", path, blk.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
		}
		return ek, nil
	}
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		k := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
		if !bytes.Equal(k, b) { // the second half must be the seed's public key
			return nil, fmt.Errorf("%s: not an Ed25519 private key (its public half does not match its seed)", path)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%s: not an Ed25519 private key (PEM PKCS #8, or a raw 32-byte seed or 64-byte key)", path)
}

// LoadPublicKey reads an Ed25519 public key: PEM "PUBLIC KEY" (PKIX) or the
// raw 32 bytes.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%s: PEM block %q, want \"PUBLIC KEY\"", path, blk.Type)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
		}
		return ek, nil
	}
	if len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	return nil, fmt.Errorf("%s: not an Ed25519 public key (PEM, or the raw 32 bytes)", path)
}

// MarshalKey encodes key as PEM PKCS #8 and its public key as PEM PKIX.
func MarshalKey(key ed25519.PrivateKey) (private, public []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// CheckpointOptions turn checkpoints on (see Checkpoint). They need a file
// sink: it is what they vouch for.
type CheckpointOptions struct {
	// File receives the checkpoints, one per line, fsynced.
	File string
	// Every writes one once this many records follow the last (0: not by
	// count).
	Every int
	// Interval writes one this often while records arrive (0: not by time).
	Interval time.Duration
	// Key signs them; nil writes them unsigned.
	Key ed25519.PrivateKey
}

// checkpointer is a Log's checkpoint state. Checkpoints are written one at
// a time (mu); pending and lastSeq are shared with the write path.
type checkpointer struct {
	opts   CheckpointOptions
	file   *FileSink
	copies []Sink // the log's sinks that are not the chained file
	now    chan struct{}

	mu sync.Mutex // held while a checkpoint is being written

	pmu     sync.Mutex
	pending []Checkpoint // rotation boundaries not yet written
}

// rotated is the file sink's hook: the file ending at seq was rotated.
func (c *checkpointer) rotated(seq uint64, hash string) {
	c.pmu.Lock()
	c.pending = append(c.pending, Checkpoint{Seq: seq, Hash: hash, Rotated: true})
	c.pmu.Unlock()
	c.poke()
}

func (c *checkpointer) poke() {
	select {
	case c.now <- struct{}{}:
	default:
	}
}

// startCheckpoints opens the checkpoint file and checks it against the
// log's resumed head: a log that ends before its last checkpoint lost
// records (cut, or restored from an old copy), and continuing would fork
// the chain, so New fails instead. Called from New, before any Append.
func (l *Log) startCheckpoints(opts CheckpointOptions, sinks []Sink) error {
	var files []*FileSink
	var copies []Sink
	for _, s := range sinks {
		if fs, ok := s.(*FileSink); ok {
			files = append(files, fs)
		} else {
			copies = append(copies, s)
		}
	}
	if len(files) == 0 {
		return errors.New("decision log: checkpoints need a file sink: they vouch for its records")
	}
	seq, hash, err := LastState(opts.File)
	if err != nil {
		return fmt.Errorf("decision log checkpoints: %w", err)
	}
	switch {
	case seq > l.seq:
		return fmt.Errorf("decision log: the log ends at seq %d but its last checkpoint (%s) is at seq %d: %d record(s) missing at the tail; "+
			"check with `agentpdp audit verify --log %s --checkpoints %s`, and move the damaged log aside (or, if the log was removed on purpose, the checkpoint file too)",
			l.seq, opts.File, seq, seq-l.seq, files[0].Path(), opts.File)
	case seq == l.seq && seq > 0 && hash != string(l.prev):
		return fmt.Errorf("decision log: the log's last record (seq %d) is not the one its last checkpoint (%s) names: rewritten; check with `agentpdp audit verify --log %s --checkpoints %s`",
			seq, opts.File, files[0].Path(), opts.File)
	}
	fsink, err := NewFileSink(opts.File, 0, 0)
	if err != nil {
		return fmt.Errorf("decision log checkpoints: %w", err)
	}
	c := &checkpointer{opts: opts, file: fsink, copies: copies, now: make(chan struct{}, 1)}
	l.ck, l.ckSeq = c, seq
	if seq == 0 && l.seq > 0 {
		// Checkpoints start on a log that already has records. If its
		// files start past seq 1, say so now, signed: from here on, a log
		// starting later than that was cut.
		first, prev, err := files[0].firstRecord()
		if err != nil {
			fsink.Close()
			return fmt.Errorf("decision log checkpoints: %w", err)
		}
		if first > 1 {
			c.pending = append(c.pending, Checkpoint{Seq: first - 1, Hash: prev, Rotated: true})
		}
		l.opts.Logger.Warn("decision log checkpoints start on a log that already holds records; records cut before now would not show",
			"checkpoint_file", opts.File, "seq", l.seq)
	}
	for _, fs := range files {
		fs.setOnRotate(c.rotated)
	}
	// One now covers the records written before checkpoints (or before a
	// crash that skipped the last one).
	if err := l.checkpoint(false); err != nil {
		fsink.Close()
		return err
	}
	l.wg.Add(1)
	go l.checkpointLoop()
	return nil
}

// checkpointLoop writes checkpoints every Interval while records arrive,
// and when the write path says one is due (Every records, a rotation).
func (l *Log) checkpointLoop() {
	defer l.wg.Done()
	var tick <-chan time.Time
	if l.ck.opts.Interval > 0 {
		t := time.NewTicker(l.ck.opts.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		onlyIfDue := false
		select {
		case <-l.done:
			return
		case <-tick:
		case <-l.ck.now:
			onlyIfDue = true
		}
		if err := l.checkpoint(onlyIfDue); err != nil {
			l.opts.Logger.Error("decision log checkpoint failed", "error", err)
		}
	}
}

// checkpoint writes pending rotation boundaries and the head written so far
// to the checkpoint file, then copies them to the other sinks. Nothing is
// written when no record followed the last checkpoint, or with onlyIfDue
// (a poke, perhaps stale) when neither Every records nor a rotation are
// waiting.
func (l *Log) checkpoint(onlyIfDue bool) error {
	c := l.ck
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pmu.Lock()
	bounds := append([]Checkpoint(nil), c.pending...)
	c.pmu.Unlock()

	l.mu.Lock()
	for l.writing {
		l.cond.Wait()
	}
	// The head the sinks have: records chained into l.cur are not written yet.
	seq, hash := l.seq, string(l.prev)
	if b := l.cur; b != nil {
		seq, hash = b.startSeq, string(b.startPrev)
	}
	last := l.ckSeq
	l.mu.Unlock()
	due := len(bounds) > 0 || (c.opts.Every > 0 && seq-last >= uint64(c.opts.Every))
	if seq == 0 || (seq == last && len(bounds) == 0) || (onlyIfDue && !due) {
		return nil
	}

	// A checkpoint never names a record that is not durable: a crash then
	// cannot leave the log behind its own checkpoint.
	if err := l.syncSinks(); err != nil {
		return fmt.Errorf("decision log checkpoint: not written, the records it names are not synced: %w", err)
	}
	now := l.opts.Clock().UTC().Format(time.RFC3339Nano)
	var lines []byte
	for _, b := range bounds {
		b.Time = now
		b.sign(c.opts.Key)
		lines = b.appendLine(lines)
	}
	// The head comes last even when unchanged, so the file's last line is
	// always the newest head (what New checks against).
	head := Checkpoint{Seq: seq, Hash: hash, Time: now}
	head.sign(c.opts.Key)
	lines = head.appendLine(lines)
	if err := c.file.Write(lines); err != nil {
		return fmt.Errorf("decision log checkpoint: %w", err)
	}
	if err := c.file.Sync(); err != nil {
		return fmt.Errorf("decision log checkpoint: %w", err)
	}
	c.pmu.Lock()
	c.pending = c.pending[len(bounds):]
	c.pmu.Unlock()

	// The copies go out between record batches: sinks take one Write at a
	// time.
	l.mu.Lock()
	l.ckSeq = seq
	for l.writing {
		l.cond.Wait()
	}
	l.writing = true
	l.mu.Unlock()
	var errs []error
	for _, s := range c.copies {
		if err := s.Write(lines); err != nil {
			errs = append(errs, err)
		}
	}
	l.mu.Lock()
	l.writing = false
	l.cond.Broadcast()
	l.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("decision log checkpoint: written to %s, but a copy failed: %w", c.opts.File, errors.Join(errs...))
	}
	return nil
}
