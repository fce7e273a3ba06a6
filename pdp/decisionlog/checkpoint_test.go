package decisionlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func testPub() ed25519.PublicKey { return testKey.Public().(ed25519.PublicKey) }

// lockedBuffer is a stdout sink the test reads while the log runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// openCkLog opens a log with checkpoints into path+".checkpoints".
func openCkLog(t *testing.T, path string, maxBytes int64, maxBackups int, ck CheckpointOptions, extra ...Sink) *Log {
	t.Helper()
	fs, err := NewFileSink(path, maxBytes, maxBackups)
	if err != nil {
		t.Fatal(err)
	}
	if ck.File == "" {
		ck.File = path + ".checkpoints"
	}
	opts := quiet()
	opts.Checkpoints = &ck
	l, err := New(opts, append([]Sink{fs}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func checkpointSeqs(t *testing.T, path string) []uint64 {
	t.Helper()
	cps, err := ReadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, c := range cps {
		seqs = append(seqs, c.Seq)
	}
	return seqs
}

// awaitCheckpoint waits until the checkpoint file's last line names seq.
func awaitCheckpoint(t *testing.T, path string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _, err := LastState(path)
		if err != nil {
			t.Fatal(err)
		}
		if got == seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint at seq %d within 10s (last: %d)", seq, got)
		}
		time.Sleep(time.Millisecond)
	}
}

// hashes maps seq to hash for every record in the log's files.
func hashes(t *testing.T, files ...string) map[uint64]string {
	t.Helper()
	out := map[uint64]string{}
	for _, f := range files {
		for _, line := range readLines(t, f) {
			var rec struct {
				Seq  uint64 `json:"seq"`
				Hash string `json:"hash"`
				Type string `json:"type"`
			}
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Type == "" {
				out[rec.Seq] = rec.Hash
			}
		}
	}
	return out
}

func TestCheckpointsEveryNAndAtClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	cpPath := path + ".checkpoints"
	var stdout lockedBuffer
	l := openCkLog(t, path, 0, 0, CheckpointOptions{Every: 3, Key: testKey}, NewWriterSink(&stdout))
	appendN(t, l, 0, 2)
	appendN(t, l, 2, 1)
	awaitCheckpoint(t, cpPath, 3)
	appendN(t, l, 3, 3)
	awaitCheckpoint(t, cpPath, 6)
	appendN(t, l, 6, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Two by count (none before the third record), one at Close.
	if got := checkpointSeqs(t, cpPath); !slices.Equal(got, []uint64{3, 6, 7}) {
		t.Fatalf("checkpoints at %v, want [3 6 7]", got)
	}
	cps, err := ReadCheckpoints(cpPath)
	if err != nil {
		t.Fatal(err)
	}
	want := hashes(t, path)
	for _, c := range cps {
		if err := c.VerifySignature(testPub()); err != nil {
			t.Errorf("%s: %v", c.Where(), err)
		}
		if c.Hash != want[c.Seq] || c.KeyID != KeyID(testPub()) || c.Rotated {
			t.Errorf("%s: %+v; the record's hash is %s", c.Where(), c, want[c.Seq])
		}
	}
	// The chained file holds records only; the stdout copy holds the
	// records and the same checkpoint lines, and verifies as a chain.
	for _, line := range readLines(t, path) {
		if bytes.Contains(line, []byte(`"type":"checkpoint"`)) {
			t.Fatalf("a checkpoint in the chained file: %s", line)
		}
	}
	cpFile, _ := os.ReadFile(cpPath)
	var copies []byte
	for _, line := range bytes.SplitAfter(stdout.Bytes(), []byte("\n")) {
		if bytes.Contains(line, []byte(`"type":"checkpoint"`)) {
			copies = append(copies, line...)
		}
	}
	if !bytes.Equal(copies, cpFile) {
		t.Errorf("stdout copies differ from the checkpoint file:\n%s\n%s", copies, cpFile)
	}
	capture := filepath.Join(dir, "stdout.jsonl")
	if err := os.WriteFile(capture, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, []string{capture}, 7)
	fromCapture, err := ReadCheckpoints(capture)
	if err != nil || len(fromCapture) != 3 {
		t.Fatalf("checkpoints from the capture: %d, %v", len(fromCapture), err)
	}
	res := verifyCk(t, []string{path}, VerifyOptions{Checkpoints: fromCapture, PublicKey: testPub()})
	if !res.OK() || res.Checkpoints != 3 {
		t.Fatalf("verify with the capture's checkpoints: %+v", res)
	}

	// A restart with nothing new adds no checkpoint; one with records
	// adds one at Close.
	l = openCkLog(t, path, 0, 0, CheckpointOptions{Every: 3, Key: testKey})
	l.Close()
	l = openCkLog(t, path, 0, 0, CheckpointOptions{Every: 3, Key: testKey})
	appendN(t, l, 7, 1)
	l.Close()
	if got := checkpointSeqs(t, cpPath); !slices.Equal(got, []uint64{3, 6, 7, 8}) {
		t.Fatalf("after restarts: checkpoints at %v, want [3 6 7 8]", got)
	}
}

func TestCheckpointInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	l := openCkLog(t, path, 0, 0, CheckpointOptions{Interval: 5 * time.Millisecond})
	defer l.Close()
	appendN(t, l, 0, 2)
	awaitCheckpoint(t, path+".checkpoints", 2)
	cps, err := ReadCheckpoints(path + ".checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	if c := cps[len(cps)-1]; c.KeyID != "" || len(c.Sig) != 0 {
		t.Errorf("no key, yet signed: %+v", c)
	}
}

func verifyCk(t *testing.T, paths []string, opts VerifyOptions) Result {
	t.Helper()
	var out bytes.Buffer
	res, err := VerifyWith(paths, &out, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verify:\n%s", out.String())
	return res
}

func wantProblem(t *testing.T, res Result, want ...string) {
	t.Helper()
	if res.FirstBad != nil {
		t.Fatalf("chain broken: %v", res.FirstBad)
	}
	for _, p := range res.Problems {
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(p, w)
		}
		if ok {
			return
		}
	}
	t.Fatalf("problems %q; want one with %q", res.Problems, want)
}

// tenWithCheckpoints writes 10 records with a signed checkpoint after each
// even one (and at Close), and returns the log's lines and checkpoints.
func tenWithCheckpoints(t *testing.T) (path string, lines [][]byte, cps []Checkpoint) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "decisions.log")
	l := openCkLog(t, path, 0, 0, CheckpointOptions{Key: testKey})
	for i := range 10 {
		appendN(t, l, i, 1)
		if i%2 == 1 {
			if err := l.checkpoint(false); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cps, err := ReadCheckpoints(path + ".checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	if got := checkpointSeqs(t, path+".checkpoints"); !slices.Equal(got, []uint64{2, 4, 6, 8, 10}) {
		t.Fatalf("checkpoints at %v", got)
	}
	return path, readLines(t, path), cps
}

func TestTruncationWithAndWithoutCheckpoints(t *testing.T) {
	path, lines, cps := tenWithCheckpoints(t)
	opts := VerifyOptions{Checkpoints: cps, PublicKey: testPub()}
	if res := verifyCk(t, []string{path}, opts); !res.OK() || res.Checkpoints != 5 || res.LastSeq != 10 {
		t.Fatalf("intact log: %+v", res)
	}
	head, err := ParseHead("10:" + cps[len(cps)-1].Hash)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		lines [][]byte
		want  []string
	}{
		{"tail cut by 1", lines[:9], []string{path + ".checkpoints:5: the log ends at seq 9 (", ":9), but this checkpoint says seq 10: 1 record missing at the tail (seq 10)"}},
		{"tail cut by 4", lines[:6], []string{"the log ends at seq 6", "4 records missing at the tail (seq 7..10)"}},
		{"everything cut", nil, []string{"the log has no records, but this checkpoint says seq 10: 10 records missing"}},
		{"head cut by 3", lines[3:], []string{":1: the chain starts at seq 4, but no rotated file ended at seq 3", "3 records missing at the head (seq 1..3)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cut := writeTemp(t, tc.lines)
			wantProblem(t, verifyCk(t, cut, opts), tc.want...)
			if strings.Contains(tc.name, "tail") {
				// A head noted elsewhere (from /metrics, a checkpoint) does too.
				wantProblem(t, verifyCk(t, cut, VerifyOptions{Checkpoints: []Checkpoint{head}}), "--head 10:", "missing at the tail")
				bare, _ := ParseHead("10")
				wantProblem(t, verifyCk(t, cut, VerifyOptions{Checkpoints: []Checkpoint{bare}}), "--head 10: the log ends", "missing at the tail")
			}
			// Without checkpoints a cut end is invisible: the README says so.
			var out bytes.Buffer
			res, err := Verify(cut, &out)
			if err != nil || !res.OK() {
				t.Fatalf("without checkpoints: %+v %v", res, err)
			}
			if strings.Contains(tc.name, "head") && !strings.Contains(out.String(), "chain starts at seq 4") {
				t.Errorf("the head gap is not noted: %s", out.String())
			}
		})
	}
}

// TestCheckpointNotOnTheChain: a forger who rewrites the log from some
// record on, re-chaining every hash, keeps the chain valid, but not the
// checkpoints after that record.
func TestCheckpointNotOnTheChain(t *testing.T) {
	path, lines, cps := tenWithCheckpoints(t)
	var rec Record
	if err := json.Unmarshal(lines[4], &rec); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	forger, err := New(quiet(), NewWriterSink(&out))
	if err != nil {
		t.Fatal(err)
	}
	forger.seq, forger.prev = rec.Seq-1, []byte(rec.PrevHash)
	for i := 4; i < 10; i++ {
		r := sampleRecord(t, i)
		r.Effect = "deny"
		if err := forger.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	forged := append(cloneLines(lines[:4]), bytes.SplitAfter(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n"))...)
	for i := range forged {
		if !bytes.HasSuffix(forged[i], []byte("\n")) {
			forged[i] = append(forged[i], '\n')
		}
	}
	paths := writeTemp(t, forged)
	if res, _ := Verify(paths, io.Discard); !res.OK() {
		t.Fatalf("the forged chain should hold: %+v", res.FirstBad)
	}
	res := verifyCk(t, paths, VerifyOptions{Checkpoints: cps, PublicKey: testPub()})
	wantProblem(t, res, ".checkpoints:3: checkpoint seq 6 has hash "+cps[2].Hash, paths[0]+":6) has sha256:", "rewritten after the checkpoint")
	if len(res.Problems) != 3 { // seqs 6, 8 and 10
		t.Errorf("problems: %q", res.Problems)
	}
	// A --head that is not on the chain is caught the same way.
	head, err := ParseHead(fmt.Sprintf("6:%s", cps[1].Hash))
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, verifyCk(t, []string{path}, VerifyOptions{Checkpoints: []Checkpoint{head}}), "--head 6:"+cps[1].Hash+": checkpoint seq 6 has hash", path+":6)")
}

func TestCheckpointSignatures(t *testing.T) {
	path, _, cps := tenWithCheckpoints(t)
	edit := func(f func(c *Checkpoint)) []Checkpoint {
		out := slices.Clone(cps)
		f(&out[len(out)-1])
		return out
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	for _, tc := range []struct {
		name string
		cps  []Checkpoint
		want string
	}{
		// Claiming fewer records (to hide a cut tail) breaks the signature.
		{"seq lowered", edit(func(c *Checkpoint) { c.Seq = 9; c.Hash = cps[3].Hash }), "checkpoint seq 9: signature does not verify"},
		{"time changed", edit(func(c *Checkpoint) { c.Time = "2030-01-01T00:00:00Z" }), "signature does not verify"},
		{"unsigned", edit(func(c *Checkpoint) { c.Sig, c.KeyID = nil, "" }), "unsigned"},
		{"another key", edit(func(c *Checkpoint) { c.sign(other) }), "signed by key " + KeyID(other.Public().(ed25519.PublicKey))},
		{"another key, key_id kept", edit(func(c *Checkpoint) { id := c.KeyID; c.sign(other); c.KeyID = id }), "signature does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := verifyCk(t, []string{path}, VerifyOptions{Checkpoints: tc.cps, PublicKey: testPub()})
			wantProblem(t, res, ".checkpoints:5: ", tc.want)
			if len(res.Problems) != 1 { // a checkpoint that fails its signature is not used
				t.Errorf("problems: %q", res.Problems)
			}
			var out bytes.Buffer
			if res, err := VerifyWith([]string{path}, &out, VerifyOptions{Checkpoints: tc.cps}); err != nil || !strings.Contains(out.String(), "signatures not checked") {
				t.Errorf("without a key: %+v %v\n%s", res, err, out.String())
			}
		})
	}
	// Through the file: a line edited by hand.
	src, _ := os.ReadFile(path + ".checkpoints")
	forged := filepath.Join(t.TempDir(), "forged.checkpoints")
	os.WriteFile(forged, bytes.Replace(src, []byte(`"seq":10`), []byte(`"seq":9`), 1), 0o600)
	fromFile, err := ReadCheckpoints(forged)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, verifyCk(t, []string{path}, VerifyOptions{Checkpoints: fromFile, PublicKey: testPub()}), forged+":5: checkpoint seq 9: signature does not verify")
}

func TestRotationWithCheckpoints(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	lineLen := int64(len(readLinesOf(t, sampleRecord(t, 0))))
	maxBytes := 3*lineLen + lineLen/2 // three records per file
	l := openCkLog(t, path, maxBytes, 2, CheckpointOptions{Key: testKey})
	appendN(t, l, 0, 20)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := Files(path)
	if len(files) != 3 {
		t.Fatalf("files = %v", files)
	}
	cps, err := ReadCheckpoints(path + ".checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	var rotated []uint64
	for _, c := range cps {
		if c.Rotated {
			rotated = append(rotated, c.Seq)
		}
	}
	if !slices.Equal(rotated, []uint64{3, 6, 9, 12, 15, 18}) {
		t.Fatalf("rotations checkpointed at %v", rotated)
	}
	opts := VerifyOptions{Checkpoints: cps, PublicKey: testPub()}

	// The oldest files went by max_backups: what is left starts right
	// after a rotation, which the checkpoints prove. Any order will do.
	var out bytes.Buffer
	reversed := slices.Clone(files)
	slices.Reverse(reversed)
	res, err := VerifyWith(reversed, &out, opts)
	if err != nil || !res.OK() || res.FirstSeq != 13 || res.LastSeq != 20 || !strings.Contains(out.String(), "right after a rotated file ended") {
		t.Fatalf("%+v %v\n%s", res, err, out.String())
	}
	// The current file alone starts after a rotation too, and reaches the end.
	if res := verifyCk(t, []string{path}, opts); !res.OK() {
		t.Fatalf("current file alone: %+v", res)
	}
	// The oldest file left loses its first record: seq 14 is not a rotation.
	lines := readLines(t, files[0])
	writeLines(t, files[0], lines[1:])
	wantProblem(t, verifyCk(t, files, opts), files[0]+":1: the chain starts at seq 14", "1 record missing at the head (seq 13)")
	// A middle file removed is a gap naming its records.
	res = verifyCk(t, []string{files[0], files[2]}, opts)
	if res.FirstBad == nil || !strings.Contains(res.FirstBad.Problem, "ends at seq 15: 3 records missing (seq 16..18)") {
		t.Fatalf("middle file missing: %+v", res.FirstBad)
	}
}

// tenRotatedOneKept writes ten records, without checkpoints, to a log
// rotated every three records that keeps one backup: seq 7..9 in its
// backup, 10 in the current file. It returns the log's path.
func tenRotatedOneKept(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "decisions.log")
	lineLen := int64(len(readLinesOf(t, sampleRecord(t, 0))))
	l := openLog(t, path, 3*lineLen+lineLen/2, 1)
	appendN(t, l, 0, 10)
	l.Close()
	return path
}

// TestCheckpointsAdoptAnExistingLog: turned on for a log whose old files
// are gone, checkpoints record where it starts, then guard it.
func TestCheckpointsAdoptAnExistingLog(t *testing.T) {
	path := tenRotatedOneKept(t)
	l := openCkLog(t, path, 0, 0, CheckpointOptions{Key: testKey})
	appendN(t, l, 10, 1)
	l.Close()
	cps, err := ReadCheckpoints(path + ".checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 3 || !cps[0].Rotated || cps[0].Seq != 6 || cps[1].Seq != 10 || cps[2].Seq != 11 {
		t.Fatalf("checkpoints: %+v", cps)
	}
	if res := verifyCk(t, Files(path), VerifyOptions{Checkpoints: cps, PublicKey: testPub()}); !res.OK() || res.FirstSeq != 7 {
		t.Fatalf("%+v", res)
	}
}

// TestCheckpointsRefuseALogNotStartingWithARecord: turned on for a log
// whose oldest file starts with something else, checkpoints cannot record
// where the log starts, and say so.
func TestCheckpointsRefuseALogNotStartingWithARecord(t *testing.T) {
	path := tenRotatedOneKept(t)
	oldest := Files(path)[0]
	for _, first := range []string{`{"note":"not a record"}`, "{"} {
		writeLines(t, oldest, append([][]byte{[]byte(first)}, readLines(t, oldest)[1:]...))
		fs, err := NewFileSink(path, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		opts := quiet()
		opts.Checkpoints = &CheckpointOptions{Key: testKey, File: path + ".checkpoints"}
		if _, err := New(opts, fs); err == nil || !strings.Contains(err.Error(), oldest+": first line is not a decision record") {
			t.Fatalf("%s: New = %v", first, err)
		}
		fs.Close()
	}
}

func TestStartRefusesALogBehindItsCheckpoint(t *testing.T) {
	path, lines, _ := tenWithCheckpoints(t)
	writeLines(t, path, lines[:8])
	fs, err := NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	opts := quiet()
	opts.Checkpoints = &CheckpointOptions{File: path + ".checkpoints"}
	if _, err := New(opts, fs); err == nil || !strings.Contains(err.Error(), "the log ends at seq 8 but its last checkpoint") || !strings.Contains(err.Error(), "2 record(s) missing at the tail") {
		t.Fatalf("New = %v", err)
	}
	// The last record replaced by another with the same seq.
	forged := cloneLines(lines)
	forged[9] = rehash(t, bytes.Replace(forged[9], []byte(`"effect":"allow"`), []byte(`"effect":"deny"`), 1))
	writeLines(t, path, forged)
	if _, err := New(opts, fs); err == nil || !strings.Contains(err.Error(), "not the one its last checkpoint") {
		t.Fatalf("New = %v", err)
	}
	fs.Close()
	// Checkpoints need the file they vouch for.
	opts.Checkpoints.File = filepath.Join(t.TempDir(), "cp")
	if _, err := New(opts, NewWriterSink(io.Discard)); err == nil || !strings.Contains(err.Error(), "need a file sink") {
		t.Fatalf("New = %v", err)
	}
}

func TestCheckpointCopiesGoToHTTP(t *testing.T) {
	c := newCollector(t)
	path := filepath.Join(t.TempDir(), "decisions.log")
	hs := NewHTTPSink(c.srv.URL+"/logs", HTTPOptions{Headers: map[string]string{"Authorization": "Bearer t0ken"}, Logger: discardLogger()})
	l := openCkLog(t, path, 0, 0, CheckpointOptions{Key: testKey}, hs)
	appendN(t, l, 0, 2)
	if err := l.Close(); err != nil { // delivers what is queued
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var found bool
	for _, ev := range c.events {
		if cp, err := ParseCheckpoint(ev); err == nil {
			found = cp.Seq == 2 && cp.VerifySignature(testPub()) == nil
		}
	}
	if !found {
		t.Fatalf("no signed checkpoint at seq 2 among %d uploaded events", len(c.events))
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	priv, pub, err := MarshalKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, f := range []string{write("k.pem", priv), write("seed", testKey.Seed()), write("full", testKey)} {
		k, err := LoadPrivateKey(f)
		if err != nil || !k.Equal(testKey) {
			t.Errorf("%s: %v", f, err)
		}
	}
	bad := bytes.Clone(testKey)
	bad[40] ^= 1
	for name, b := range map[string][]byte{"pub-as-priv": pub, "short": []byte("abc"), "badhalf": bad} {
		if _, err := LoadPrivateKey(write(name, b)); err == nil {
			t.Errorf("%s: loaded as a private key", name)
		}
	}
	for _, f := range []string{write("k.pub", pub), write("raw.pub", testPub())} {
		k, err := LoadPublicKey(f)
		if err != nil || !k.Equal(testPub()) {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := LoadPublicKey(write("priv-as-pub", priv)); err == nil {
		t.Error("a private key loaded as a public key")
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestReadCheckpointsErrors(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"":                            "no checkpoints",
		`{"seq":1,"hash":"x"}` + "\n": "no checkpoints", // a record-like line is skipped
		`{"type":"checkpoint","seq":0,"hash":"sha256:` + strings.Repeat("a", 64) + `","time":"2026-01-01T00:00:00Z"}` + "\n":            ":1: checkpoint: \"seq\"",
		"\n" + `{"type":"checkpoint","seq":1,"hash":"sha256:x","time":"2026-01-01T00:00:00Z"}` + "\n":                                   ":2: checkpoint: \"hash\"",
		`{"type":"checkpoint","seq":1,"hash":"sha256:` + strings.Repeat("a", 64) + `","time":"2026-01-01T00:00:00Z","sig":"%%"}` + "\n": "\"sig\" is not base64",
	} {
		p := filepath.Join(dir, "cp")
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := ReadCheckpoints(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", content, err, want)
		}
	}
	for _, s := range []string{"", "-1", "x:sha256:" + strings.Repeat("a", 64), "0:" + strings.Repeat("a", 64), "3:sha256:abc"} {
		if _, err := ParseHead(s); err == nil {
			t.Errorf("ParseHead(%q) succeeded", s)
		}
	}
	if c, err := ParseHead("3:" + strings.Repeat("a", 64)); err != nil || c.Hash != "sha256:"+strings.Repeat("a", 64) || !c.Given {
		t.Errorf("ParseHead: %+v %v", c, err)
	}
	if c, err := ParseHead("10"); err != nil || c.Seq != 10 || c.Hash != "" {
		t.Errorf("ParseHead(10): %+v %v", c, err)
	}
}

// recordingSink notes the order of writes (records or checkpoints) and syncs.
type recordingSink struct {
	mu     sync.Mutex
	events []string
}

func (r *recordingSink) Write(lines []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range bytes.SplitAfter(bytes.TrimSuffix(lines, []byte("\n")), []byte("\n")) {
		var v struct {
			Seq  uint64
			Type string
		}
		json.Unmarshal(l, &v)
		r.events = append(r.events, fmt.Sprintf("%s%d", v.Type, v.Seq))
	}
	return nil
}

func (r *recordingSink) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "sync")
	return nil
}

func (r *recordingSink) Close() error { return nil }

// TestCheckpointNamesOnlyDurableRecords: a checkpoint names the last record
// the sinks have, synced first, never one still waiting to be written: a
// crash must not leave the log behind its own checkpoint.
func TestCheckpointNamesOnlyDurableRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	fs, err := NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingSink{}
	opts := quiet()
	opts.FsyncInterval = time.Hour // no background syncs to blur the order
	opts.Checkpoints = &CheckpointOptions{File: path + ".checkpoints"}
	l, err := New(opts, fs, rec)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 2)
	// Seq 3 chained, as an Append does, but not yet written.
	l.mu.Lock()
	r := sampleRecord(t, 2)
	r.Seq, r.PrevHash, r.Timestamp = l.seq+1, string(l.prev), "2026-11-24T10:00:00Z"
	if err := l.chain(r); err != nil {
		t.Fatal(err)
	}
	l.mu.Unlock()
	if err := l.checkpoint(false); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil { // writes seq 3, then its checkpoint
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"0", "0", "sync", "checkpoint2", "0", "sync", "checkpoint3", "sync"}
	got := slices.Clone(rec.events)
	for i, e := range got {
		if e != "sync" && !strings.HasPrefix(e, "checkpoint") {
			got[i] = "0" // a record
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", rec.events, want)
	}
}
