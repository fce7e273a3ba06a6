package decisionlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// sampleInput is a realistic ~700-byte canonical pdp input.
func sampleInput(tb testing.TB, i int) json.RawMessage {
	tb.Helper()
	in := map[string]any{
		"action": map[string]any{
			"arguments": map[string]any{
				"body":   "The test waits on a sleep; use a condition instead. See the CI logs for run " + fmt.Sprint(i),
				"labels": []any{"bug", "ci"}, "repo": "agentpdp/agentpdp", "title": "Fix the flaky test",
			},
			"kind": "mcp.tools/call", "server": "github", "tool": "create_issue",
		},
		"agent": map[string]any{
			"authn": "jwt", "environment": "prod", "id": "spiffe://example.org/agent/code-reviewer",
			"owner_team": "platform", "registered": true, "trust_level": "medium", "type": "coding-assistant",
		},
		"context": map[string]any{
			"door": "mcp", "rate": map[string]any{"agent_calls_last_minute": 12}, "request_id": fmt.Sprintf("req-%08d", i),
			"session_id": "3f0c2a6e-4b1d-4e8a-9c57-1d2e3f4a5b6c", "source": map[string]any{"address": "127.0.0.1:51234"},
			"time": "2026-11-24T10:00:00Z",
		},
		"delegation": map[string]any{"chain": []any{"alice@example.com", "spiffe://example.org/agent/code-reviewer"}, "purpose": "review PR 42"},
		"user":       map[string]any{"groups": []any{"eng", "platform"}, "id": "alice@example.com"},
	}
	b, err := jcs.Append(nil, in)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

const sampleResult = `{"decision_id":"0193a4f2-7c1e-7b3a-9f00-1234567890ab","effect":"allow","policy_revision":"sha256:1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988","reasons":[{"effect":"allow","rule":"policies/github.rego#allow"}],"shadow":false}`

func sampleRecord(tb testing.TB, i int) *Record {
	return &Record{
		Agent:           "spiffe://example.org/agent/code-reviewer",
		DecisionID:      fmt.Sprintf("0193a4f2-7c1e-7b3a-9f00-%012d", i),
		DelegationChain: []string{"alice@example.com", "spiffe://example.org/agent/code-reviewer"},
		Effect:          "allow",
		Input:           sampleInput(tb, i),
		InputHash:       "sha256:8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92",
		LatencyNS:       123456,
		Path:            "agentpdp/mcp.tools/call",
		PolicyRevision:  "sha256:1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988",
		Reasons:         []string{"policies/github.rego#allow"},
		Result:          json.RawMessage(sampleResult),
		User:            "alice@example.com",
	}
}

// fixedClock ticks one millisecond per call, so timestamps are stable.
func fixedClock() func() time.Time {
	var n atomic.Int64
	base := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	return func() time.Time { return base.Add(time.Duration(n.Add(1)) * time.Millisecond) }
}

func quiet() Options {
	return Options{Logger: discardLogger(), Clock: fixedClock()}
}

func openLog(t *testing.T, path string, maxBytes int64, maxBackups int) *Log {
	t.Helper()
	fs, err := NewFileSink(path, maxBytes, maxBackups)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(quiet(), fs)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.Append(sampleRecord(t, i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

func verifyOK(t *testing.T, paths []string, lines int) Result {
	t.Helper()
	var out bytes.Buffer
	res, err := Verify(paths, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstBad != nil {
		t.Fatalf("verify: %v\n%s", res.FirstBad, out.String())
	}
	if res.Lines != lines {
		t.Fatalf("verified %d lines, want %d", res.Lines, lines)
	}
	if !strings.HasPrefix(out.String(), "ok: ") && !strings.Contains(out.String(), "\nok: ") {
		t.Errorf("summary = %q", out.String())
	}
	return res
}

func TestAppendAndVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "decisions.log")
	l := openLog(t, path, 0, 0)
	rec := sampleRecord(t, 0)
	if err := l.Append(rec); err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 1 || rec.PrevHash != "" || rec.Timestamp != "2026-11-24T10:00:00.001Z" {
		t.Errorf("genesis record: seq %d prev %q time %q", rec.Seq, rec.PrevHash, rec.Timestamp)
	}
	_, h1 := l.Head()
	rec2 := sampleRecord(t, 1)
	rec2.Timestamp = "2020-01-01T00:00:00Z" // kept when given
	if err := l.Append(rec2); err != nil {
		t.Fatal(err)
	}
	if rec2.Seq != 2 || rec2.PrevHash != h1 || rec2.Timestamp != "2020-01-01T00:00:00Z" {
		t.Errorf("second record: seq %d prev %q (want %q) time %q", rec2.Seq, rec2.PrevHash, h1, rec2.Timestamp)
	}
	appendN(t, l, 2, 48)
	seq, head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(sampleRecord(t, 99)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	res := verifyOK(t, []string{path}, 50)
	if seq != 50 || res.LastSeq != 50 || res.FirstSeq != 1 || res.LastHash != head {
		t.Errorf("head %d %s, verify %+v", seq, head, res)
	}
	for _, p := range []string{path, filepath.Dir(path)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]os.FileMode{false: 0o600, true: 0o700}[st.IsDir()]; st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
	// The file's lines decode back to the records.
	lines := readLines(t, path)
	var got Record
	if err := json.Unmarshal(lines[1], &got); err != nil {
		t.Fatal(err)
	}
	if got.Seq != 2 || got.PrevHash != h1 || got.DecisionID != rec2.DecisionID || !bytes.Equal(got.Input, rec2.Input) || !bytes.Equal(got.Result, rec2.Result) {
		t.Errorf("decoded line 2 = %+v", got)
	}
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b[:len(b)-1], []byte("\n"))
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
		if !bytes.HasSuffix(l, []byte("\n")) {
			b = append(b, '\n')
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A written line is exactly the RFC 8785 form of itself, and without its
// hash member exactly the RFC 8785 form of the record that was hashed, even
// when the input handed in is not canonical and full of awkward strings.
func TestLinesAreCanonical(t *testing.T) {
	nasty := []string{
		`{ "z": 1.0, "a": [1e21, 1e-7, -0, 5e-324, 9007199254740993, 0.1, 100, 2E3],
		   "s": "quote \" backslash \\ slash \/ tab \t nl \n ctrl \u0001 \u001f del \u007f",
		   "u": "\u00e9\u20ac\ud83d\ude00 \u2028 \u2029 \ufeff",
		   "\ud83d\ude00": "astral key", "\ufb33": "bmp key after it", "": "empty key", "\u0000": null }`,
		`["plain", {"nested": {"hash": "sha256:not-the-record-hash", "seq": 7}}]`,
		`"just a string with \r\n"`,
		`-1.5e-10`,
	}
	var out bytes.Buffer
	l, err := New(quiet(), NewWriterSink(&out))
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range nasty {
		rec := sampleRecord(t, i)
		rec.Input = json.RawMessage(in)
		rec.Result = json.RawMessage(`{"effect" : "deny", "reasons":[{"message":"no \u2028 way","rule":"r#1"}]}`)
		rec.Agent = "agent \"quoted\" \\ \u2028 😀"
		rec.DelegationChain = []string{"\t", "é", "\x00"}
		rec.Labels = map[string]string{"😀": "a", "\ufb33": "b", "z": "\n", "a": ""}
		rec.Reasons = []string{"policies/x.cel#\u00e9"}
		rec.Event = "approval.requested"
		rec.ApprovalID = "ap-1"
		rec.Shadow = true
		rec.LatencyNS = -1
		if err := l.Append(rec); err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
	}
	for i, line := range bytes.SplitAfter(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if c, err := jcs.Transform(line); err != nil || !bytes.Equal(c, line) {
			t.Errorf("line %d is not canonical:\n got %s\nwant %s (%v)", i+1, line, c, err)
		}
		m, _ := topMembers(line)
		h := m["hash"]
		without := append(append([]byte{}, line[:h.start-1]...), line[h.end:]...)
		if c, err := jcs.Transform(without); err != nil || !bytes.Equal(c, without) {
			t.Errorf("line %d without hash is not canonical: %s", i+1, without)
		}
		// And it agrees with what encoding/json + jcs make of the record.
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		viaJSON, _ := json.Marshal(rec)
		if c, err := jcs.Transform(viaJSON); err != nil || !bytes.Equal(c, without) {
			t.Errorf("line %d: hand encoder and encoding/json+jcs disagree:\n%s\n%s", i+1, without, c)
		}
	}
	verifyBuffer(t, out.Bytes(), len(nasty))
}

func verifyBuffer(t *testing.T, b []byte, lines int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "buf.log")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, []string{path}, lines)
}

func TestAppendRejectsBadRecords(t *testing.T) {
	var out bytes.Buffer
	l, err := New(quiet(), NewWriterSink(&out))
	if err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]*Record{
		"invalid input JSON":   {DecisionID: "d", Effect: "deny", Input: json.RawMessage(`{"a":`)},
		"duplicate input keys": {DecisionID: "d", Effect: "deny", Input: json.RawMessage(`{"a":1,"a":2}`)},
		"invalid result":       {DecisionID: "d", Effect: "deny", Result: json.RawMessage(`nope`)},
		"invalid UTF-8":        {DecisionID: "d\xff", Effect: "deny"},
		"bad label":            {DecisionID: "d", Effect: "deny", Labels: map[string]string{"k": "\xc3"}},
	} {
		if err := l.Append(rec); err == nil {
			t.Errorf("%s: Append accepted it", name)
		}
	}
	if seq, _ := l.Head(); seq != 0 || out.Len() != 0 {
		t.Errorf("rejected records advanced the chain to %d or were written: %q", seq, out.String())
	}
}

// tamper runs Verify over the edited lines and checks where it stops.
func tamper(t *testing.T, lines [][]byte, wantLine int, wantProblem string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tampered.log")
	writeLines(t, path, lines)
	res, err := Verify([]string{path}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstBad == nil {
		t.Fatalf("tampering not detected")
	}
	if res.FirstBad.Line != wantLine || res.FirstBad.File != path || !strings.Contains(res.FirstBad.Problem, wantProblem) {
		t.Fatalf("FirstBad = %v; want line %d with %q", res.FirstBad, wantLine, wantProblem)
	}
	if res.Lines != wantLine-1 {
		t.Errorf("verified %d lines before the bad one, want %d", res.Lines, wantLine-1)
	}
}

func cloneLines(lines [][]byte) [][]byte {
	out := make([][]byte, len(lines))
	for i, l := range lines {
		out[i] = bytes.Clone(l)
	}
	return out
}

func TestVerifyFindsTampering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	l := openLog(t, path, 0, 0)
	appendN(t, l, 0, 10)
	l.Close()
	orig := readLines(t, path)
	verifyOK(t, []string{path}, 10)

	t.Run("edit a value", func(t *testing.T) {
		lines := cloneLines(orig)
		lines[4] = bytes.Replace(lines[4], []byte(`"effect":"allow"`), []byte(`"effect":"deny!"`), 1)
		tamper(t, lines, 5, "hash does not match")
	})
	t.Run("every single-byte edit of a line", func(t *testing.T) {
		// Lines 4 and 5 suffice: a chain may start past seq 1.
		all := bytes.Join(orig[3:5], nil)
		start := len(orig[3])
		for i := start; i < start+len(orig[4])-1; i++ {
			for _, x := range []byte{0x01, 0x80} {
				edited := bytes.Clone(all)
				edited[i] ^= x
				if edited[i] == '\n' {
					continue // splits the line: covered by the insert cases
				}
				res := Result{}
				v := verifier{w: io.Discard, res: &res}
				if err := v.read("mem", bytes.NewReader(edited)); err != nil {
					t.Fatal(err)
				}
				if res.FirstBad == nil || res.FirstBad.Line != 2 {
					t.Fatalf("byte %d ^ %#x: FirstBad = %v, want line 2", i-start, x, res.FirstBad)
				}
			}
		}
	})
	t.Run("drop a line", func(t *testing.T) {
		lines := append(cloneLines(orig[:4]), cloneLines(orig[5:])...)
		tamper(t, lines, 5, "1 record(s) dropped")
	})
	t.Run("drop the first line", func(t *testing.T) {
		// Allowed only as "earlier files not given": the chain from seq 2 is
		// intact. Dropping the second line is not.
		verifyOK(t, writeTemp(t, orig[1:]), 9)
		tamper(t, append(cloneLines(orig[:1]), cloneLines(orig[2:])...), 2, "dropped")
	})
	t.Run("swap two lines", func(t *testing.T) {
		lines := cloneLines(orig)
		lines[3], lines[4] = lines[4], lines[3]
		tamper(t, lines, 4, "seq 5 follows seq 3")
	})
	t.Run("duplicate a line", func(t *testing.T) {
		lines := append(cloneLines(orig[:5]), cloneLines(orig[4:])...)
		tamper(t, lines, 6, "seq 5 follows seq 5")
	})
	t.Run("insert a rehashed forgery", func(t *testing.T) {
		// A forger who recomputes the hash of an edited line still breaks
		// the link to the next line.
		lines := cloneLines(orig)
		lines[4] = rehash(t, bytes.Replace(lines[4], []byte(`"effect":"allow"`), []byte(`"effect":"deny"`), 1))
		tamper(t, lines, 6, "prev_hash is not the previous line's hash")
	})
	t.Run("truncated last line", func(t *testing.T) {
		lines := cloneLines(orig)
		lines[9] = lines[9][:len(lines[9])/2]
		p := filepath.Join(t.TempDir(), "torn.log")
		var b []byte
		for _, l := range lines {
			b = append(b, l...)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := Verify([]string{p}, io.Discard)
		if err != nil || res.FirstBad == nil || res.FirstBad.Line != 10 || !strings.Contains(res.FirstBad.Problem, "incomplete") {
			t.Fatalf("got %+v, %v", res.FirstBad, err)
		}
	})
	t.Run("reformatted line", func(t *testing.T) {
		lines := cloneLines(orig)
		lines[2] = bytes.Replace(lines[2], []byte(`,"effect"`), []byte(`, "effect"`), 1)
		tamper(t, lines, 3, "not in canonical JSON form")
	})
	t.Run("files in any order", func(t *testing.T) {
		// Taken by their first seq; a file missing between two is named
		// with the seqs it held.
		a, b, c := writeTemp(t, orig[:3]), writeTemp(t, orig[3:6]), writeTemp(t, orig[6:])
		verifyOK(t, append(append(c, b...), a...), 10)
		verifyOK(t, append(append(b, a...), c...), 10)
		res, err := Verify(append(c, a...), io.Discard)
		if err != nil || res.FirstBad == nil || res.FirstBad.File != c[0] || res.FirstBad.Line != 1 ||
			!strings.Contains(res.FirstBad.Problem, a[0]+") ends at seq 3: 3 records missing (seq 4..6)") {
			t.Fatalf("got %+v, %v", res.FirstBad, err)
		}
	})
}

func writeTemp(t *testing.T, lines [][]byte) []string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "part-*.log")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeLines(t, f.Name(), lines)
	return []string{f.Name()}
}

// rehash recomputes a line's own hash the way a forger would.
func rehash(t *testing.T, line []byte) []byte {
	t.Helper()
	line = bytes.TrimSuffix(line, []byte("\n"))
	var rec Record
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	l, err := New(quiet(), NewWriterSink(&out))
	if err != nil {
		t.Fatal(err)
	}
	l.seq, l.prev = rec.Seq-1, []byte(rec.PrevHash)
	if err := l.Append(&rec); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestRestartContinuesChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	l := openLog(t, path, 0, 0)
	appendN(t, l, 0, 5)
	_, head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if seq, h, err := LastState(path); err != nil || seq != 5 || h != head {
		t.Fatalf("LastState = %d %s %v, want 5 %s", seq, h, err, head)
	}
	l = openLog(t, path, 0, 0)
	rec := sampleRecord(t, 5)
	if err := l.Append(rec); err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 6 || rec.PrevHash != head {
		t.Errorf("after restart: seq %d prev %s", rec.Seq, rec.PrevHash)
	}
	appendN(t, l, 6, 4)
	l.Close()
	verifyOK(t, []string{path}, 10)
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	lineLen := int64(len(readLinesOf(t, sampleRecord(t, 0))))
	maxBytes := 3*lineLen + lineLen/2 // three records per file
	l := openLog(t, path, maxBytes, 0)
	appendN(t, l, 0, 10)
	l.Close()
	l = openLog(t, path, maxBytes, 0) // restart across rotated files
	appendN(t, l, 10, 10)
	l.Close()
	files := Files(path)
	if len(files) != 7 || files[0] != path+".6" || files[6] != path {
		t.Fatalf("files = %v", files)
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over %d", f, st.Size(), maxBytes)
		}
	}
	res := verifyOK(t, files, 20)
	if res.Files != 7 || res.FirstSeq != 1 || res.LastSeq != 20 {
		t.Errorf("verify = %+v", res)
	}

	// With a backup limit the oldest files go, and what is left still
	// verifies, starting past seq 1.
	path2 := filepath.Join(dir, "limited.log")
	l = openLog(t, path2, maxBytes, 2)
	appendN(t, l, 0, 20)
	l.Close()
	files = Files(path2)
	if len(files) != 3 {
		t.Fatalf("files = %v", files)
	}
	var out bytes.Buffer
	res, err := Verify(files, &out)
	if err != nil || res.FirstBad != nil || res.FirstSeq != 13 || res.LastSeq != 20 || !strings.Contains(out.String(), "chain starts at seq 13") {
		t.Fatalf("verify = %+v, %v\n%s", res, err, out.String())
	}
}

// readLinesOf is the line a record makes (for sizing files).
func readLinesOf(t testing.TB, rec *Record) []byte {
	var out bytes.Buffer
	l, err := New(quiet(), NewWriterSink(&out))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(rec); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestResumeFromBackupWhenCurrentIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	l := openLog(t, path, 0, 0)
	appendN(t, l, 0, 3)
	l.Close()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, path, 0, 0)
	appendN(t, l, 3, 2)
	l.Close()
	verifyOK(t, Files(path), 5)
}

func TestTornWriteIsConfinedAndReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	l := openLog(t, path, 0, 0)
	appendN(t, l, 0, 5)
	_, head := l.Head()
	l.Close()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"agent":"half a rec`) // a crash mid-write
	f.Close()
	if seq, h, err := LastState(path); err != nil || seq != 5 || h != head {
		t.Fatalf("LastState with torn tail = %d %s %v", seq, h, err)
	}
	l = openLog(t, path, 0, 0)
	appendN(t, l, 5, 2)
	l.Close()
	lines := readLines(t, path)
	if len(lines) != 8 || !bytes.HasPrefix(lines[6], []byte(`{"agent":"spiffe`)) {
		t.Fatalf("the record after the torn line is not on its own line:\n%s", lines[5:])
	}
	res, err := Verify([]string{path}, io.Discard)
	if err != nil || res.FirstBad == nil || res.FirstBad.Line != 6 || !strings.Contains(res.FirstBad.Problem, "not valid JSON") {
		t.Fatalf("verify = %+v, %v", res.FirstBad, err)
	}
	if seq, _, err := LastState(path); err != nil || seq != 7 {
		t.Fatalf("LastState = %d, %v", seq, err)
	}
}

func TestLastState(t *testing.T) {
	dir := t.TempDir()
	if seq, h, err := LastState(filepath.Join(dir, "missing")); seq != 0 || h != "" || err != nil {
		t.Errorf("missing file: %d %q %v", seq, h, err)
	}
	// A last line far longer than the read chunk.
	path := filepath.Join(dir, "big.log")
	l := openLog(t, path, 0, 0)
	appendN(t, l, 0, 2)
	big := sampleRecord(t, 2)
	big.Input = json.RawMessage(`{"blob":"` + strings.Repeat("x", 300<<10) + `"}`)
	if err := l.Append(big); err != nil {
		t.Fatal(err)
	}
	_, head := l.Head()
	l.Close()
	if seq, h, err := LastState(path); err != nil || seq != 3 || h != head {
		t.Errorf("big last line: %d %s %v", seq, h, err)
	}
	// A file that is not a decision log refuses to be continued.
	junk := filepath.Join(dir, "junk.log")
	os.WriteFile(junk, []byte("hello\nworld\n"), 0o600)
	if _, _, err := LastState(junk); err == nil {
		t.Error("LastState accepted a non-log file")
	}
	fs, err := NewFileSink(junk, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(quiet(), fs); err == nil || !strings.Contains(err.Error(), "move the file aside") {
		t.Errorf("New on a non-log file: %v", err)
	}
	fs.Close()
}

func TestConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	fs, err := NewFileSink(path, 64<<10, 0) // rotate while racing, too
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{Logger: discardLogger(), FsyncEvery: 50, FsyncInterval: time.Millisecond}, fs)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 100
	seen := make([]atomic.Bool, workers*each+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				rec := sampleRecord(t, w*each+i)
				if err := l.Append(rec); err != nil {
					t.Error(err)
					return
				}
				if seen[rec.Seq].Swap(true) {
					t.Errorf("seq %d assigned twice", rec.Seq)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := Files(path)
	if len(files) < 2 {
		t.Errorf("expected rotation, got %v", files)
	}
	verifyOK(t, files, workers*each)
}

// fakeSink records calls and can be told to fail.
type fakeSink struct {
	mu       sync.Mutex
	lines    [][]byte
	writeErr error
	syncErr  error
	syncs    chan struct{}
}

func newFakeSink() *fakeSink { return &fakeSink{syncs: make(chan struct{}, 1000)} }

func (s *fakeSink) Write(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	s.lines = append(s.lines, bytes.Clone(line))
	return nil
}

func (s *fakeSink) Sync() error {
	s.mu.Lock()
	err := s.syncErr
	s.mu.Unlock()
	s.syncs <- struct{}{}
	return err
}

func (s *fakeSink) Close() error { return nil }

func (s *fakeSink) setErrs(write, sync error) {
	s.mu.Lock()
	s.writeErr, s.syncErr = write, sync
	s.mu.Unlock()
}

func waitSync(t *testing.T, s *fakeSink) {
	t.Helper()
	select {
	case <-s.syncs:
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync happened")
	}
}

func TestSinkErrors(t *testing.T) {
	good, bad := newFakeSink(), newFakeSink()
	bad.setErrs(errors.New("disk full"), nil)
	l, err := New(quiet(), good, bad)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(sampleRecord(t, 0)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Append = %v, want the sink's error", err)
	}
	// The good sink has the line, so the chain moved on.
	if seq, _ := l.Head(); seq != 1 || len(good.lines) != 1 {
		t.Errorf("seq %d, good sink has %d lines", seq, len(good.lines))
	}

	only := newFakeSink()
	only.setErrs(errors.New("broken pipe"), nil)
	l2, err := New(quiet(), only)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if err := l2.Append(sampleRecord(t, 0)); err == nil {
		t.Fatal("Append succeeded with every sink failing")
	}
	if seq, _ := l2.Head(); seq != 0 {
		t.Errorf("chain advanced to %d though no sink took the line", seq)
	}
}

func TestFsyncIsBatched(t *testing.T) {
	s := newFakeSink()
	l, err := New(Options{Logger: discardLogger(), FsyncEvery: 10, FsyncInterval: time.Hour}, s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := l.Append(sampleRecord(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitSync(t, s) // FsyncEvery triggered at least one
	l.Close()      // and Close syncs once more
	if n := len(s.syncs) + 1; n > 11 {
		t.Errorf("%d fsyncs for 100 records with FsyncEvery 10", n)
	}

	// The interval alone syncs a lone record.
	s2 := newFakeSink()
	l2, err := New(Options{Logger: discardLogger(), FsyncEvery: 1 << 30, FsyncInterval: 5 * time.Millisecond}, s2)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if err := l2.Append(sampleRecord(t, 0)); err != nil {
		t.Fatal(err)
	}
	waitSync(t, s2)
}

func TestFsyncFailureFailsClosedUntilRecovered(t *testing.T) {
	s := newFakeSink()
	s.setErrs(nil, errors.New("EIO"))
	l, err := New(Options{Logger: discardLogger(), FsyncEvery: 1, FsyncInterval: 5 * time.Millisecond}, s)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(sampleRecord(t, 0)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Append(sampleRecord(t, 1)) == nil {
		if time.Now().After(deadline) {
			t.Fatal("appends still succeed after a failed fsync")
		}
		waitSync(t, s)
	}
	s.setErrs(nil, nil)
	// The next background fsync succeeds and clears the error; a Sync call
	// is seen slightly before the error is cleared, so poll for the effect.
	for err := l.Append(sampleRecord(t, 2)); err != nil; err = l.Append(sampleRecord(t, 2)) {
		if !strings.Contains(err.Error(), "EIO") || time.Now().After(deadline) {
			t.Fatalf("append after fsync recovered: %v", err)
		}
		select {
		case <-s.syncs:
		case <-time.After(time.Millisecond):
		}
	}
}

func TestVerifyErrors(t *testing.T) {
	if _, err := Verify(nil, io.Discard); err == nil {
		t.Error("Verify with no files succeeded")
	}
	if _, err := Verify([]string{filepath.Join(t.TempDir(), "missing")}, io.Discard); err == nil {
		t.Error("Verify of a missing file succeeded")
	}
	for content, problem := range map[string]string{
		"\n":                 "empty line",
		"[1,2]\n":            "not a JSON object",
		`{"a":1}` + "\n":     `no "hash"`,
		"{\"a\":1 }\n":       "not in canonical JSON form",
		"{\"a\":\"\xff\"}\n": "not valid JSON",
		`{"hash":"sha256:00","prev_hash":"","seq":1}` + "\n": `"hash" is not a sha256 hash`,
	} {
		p := filepath.Join(t.TempDir(), "x.log")
		os.WriteFile(p, []byte(content), 0o600)
		res, err := Verify([]string{p}, io.Discard)
		if err != nil || res.FirstBad == nil || !strings.Contains(res.FirstBad.Problem, problem) {
			t.Errorf("%q: got %+v, %v; want %q", content, res.FirstBad, err, problem)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	fs, err := NewFileSink(filepath.Join(b.TempDir(), "decisions.log"), 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	l, err := New(Options{Logger: discardLogger()}, fs)
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]*Record, 64)
	for i := range recs {
		recs[i] = sampleRecord(b, i)
	}
	b.SetBytes(int64(len(readLinesOf(b, sampleRecord(b, 0)))))
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		r := recs[i%len(recs)]
		r.Timestamp = ""
		if err := l.Append(r); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.StopTimer()
	l.Close()
}

func BenchmarkAppendParallel(b *testing.B) {
	fs, err := NewFileSink(filepath.Join(b.TempDir(), "decisions.log"), 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	l, err := New(Options{Logger: discardLogger()}, fs)
	if err != nil {
		b.Fatal(err)
	}
	input := sampleInput(b, 1)
	b.ReportAllocs()
	b.SetParallelism(8) // many requests in flight, as in a busy PDP
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := sampleRecordWith(input)
			if err := l.Append(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.StopTimer()
	l.Close()
}

func sampleRecordWith(input json.RawMessage) *Record {
	return &Record{
		Agent: "spiffe://example.org/agent/code-reviewer", DecisionID: "0193a4f2-7c1e-7b3a-9f00-1234567890ab",
		Effect: "allow", Input: input, LatencyNS: 123456, Path: "agentpdp/mcp.tools/call",
		Reasons: []string{"policies/github.rego#allow"}, Result: json.RawMessage(sampleResult), User: "alice@example.com",
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// BenchmarkAppendNoIO is Append without the write(2): the encoder, the
// canonical check and the hash chain alone.
func BenchmarkAppendNoIO(b *testing.B) {
	l, err := New(Options{Logger: discardLogger()}, NewWriterSink(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	r := sampleRecord(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		r.Timestamp = ""
		if err := l.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.StopTimer()
	l.Close()
}

// gateSink holds its first Write until released, so a test can line up
// appends behind a write in flight.
type gateSink struct {
	entered chan struct{}
	release chan error
	mu      sync.Mutex
	writes  [][]byte
	first   bool
}

func newGateSink() *gateSink {
	return &gateSink{entered: make(chan struct{}), release: make(chan error), first: true}
}

func (g *gateSink) Write(lines []byte) error {
	g.mu.Lock()
	first := g.first
	g.first = false
	g.mu.Unlock()
	if first {
		close(g.entered)
		if err := <-g.release; err != nil {
			return err
		}
	}
	g.mu.Lock()
	g.writes = append(g.writes, bytes.Clone(lines))
	g.mu.Unlock()
	return nil
}

func (g *gateSink) Sync() error  { return nil }
func (g *gateSink) Close() error { return nil }

// queued waits until n records are chained behind the write in flight.
func queued(t *testing.T, l *Log, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		got := 0
		if l.cur != nil {
			got = l.cur.n
		}
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// stallBehindWrite appends one record, holds its write in g, and queues n
// more behind it; each Append's result arrives on the returned channel.
func stallBehindWrite(t *testing.T, l *Log, g *gateSink, n int) <-chan error {
	t.Helper()
	errs := make(chan error, n+1)
	go func() { errs <- l.Append(sampleRecord(t, 0)) }()
	<-g.entered
	for i := 1; i <= n; i++ {
		go func() { errs <- l.Append(sampleRecord(t, i)) }()
	}
	queued(t, l, n)
	return errs
}

func TestGroupCommit(t *testing.T) {
	g := newGateSink()
	l, err := New(quiet(), g)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errs := stallBehindWrite(t, l, g, 5)
	g.release <- nil
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The five that waited went out in one write, chained after the first.
	if len(g.writes) != 2 || bytes.Count(g.writes[0], []byte("\n")) != 1 || bytes.Count(g.writes[1], []byte("\n")) != 5 {
		t.Fatalf("writes: %d, lines %q", len(g.writes), g.writes)
	}
	verifyBuffer(t, bytes.Join(g.writes, nil), 6)
}

func TestGroupCommitRollsBackUnwrittenRecords(t *testing.T) {
	g := newGateSink()
	l, err := New(quiet(), g)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errs := stallBehindWrite(t, l, g, 3)
	g.release <- errors.New("disk gone")
	for range 4 {
		if err := <-errs; err == nil || !strings.Contains(err.Error(), "disk gone") {
			t.Errorf("append = %v, want the write error", err)
		}
	}
	if seq, h := l.Head(); seq != 0 || h != "" {
		t.Fatalf("chain not rolled back: %d %s", seq, h)
	}
	rec := sampleRecord(t, 9)
	if err := l.Append(rec); err != nil || rec.Seq != 1 || rec.PrevHash != "" {
		t.Fatalf("append after rollback: %v seq %d prev %q", err, rec.Seq, rec.PrevHash)
	}
	verifyBuffer(t, bytes.Join(g.writes, nil), 1)
}

func TestFileSinkSplitsBatchesAtRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	var out bytes.Buffer
	l, err := New(quiet(), NewWriterSink(&out))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 7)
	lines := out.Bytes()
	lineLen := int64(len(lines) / 7)
	fs, err := NewFileSink(path, 2*lineLen+lineLen/2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Write(lines); err != nil { // one batch of seven lines
		t.Fatal(err)
	}
	fs.Close()
	files := Files(path)
	if len(files) != 4 {
		t.Fatalf("files = %v", files)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if int64(len(b)) > 2*lineLen+lineLen/2 || !bytes.HasSuffix(b, []byte("\n")) {
			t.Errorf("%s: %d bytes, whole lines: %v", f, len(b), bytes.HasSuffix(b, []byte("\n")))
		}
	}
	verifyOK(t, files, 7)
}

func TestCloseWritesQueuedRecords(t *testing.T) {
	g := newGateSink()
	l, err := New(quiet(), g)
	if err != nil {
		t.Fatal(err)
	}
	errs := stallBehindWrite(t, l, g, 3)
	closed := make(chan error)
	go func() { closed <- l.Close() }()
	g.release <- nil
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("append queued before Close: %v", err)
		}
	}
	verifyBuffer(t, bytes.Join(g.writes, nil), 4)

	fs, err := NewFileSink(filepath.Join(t.TempDir(), "x.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	fs.Close()
	if err := fs.Write([]byte("{}\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

// BenchmarkVerify is audit verify's reading of a log (the canonical check,
// the index of each record's members, the hash chain), without the file.
func BenchmarkVerify(b *testing.B) {
	var buf bytes.Buffer
	l, err := New(Options{Logger: discardLogger(), Clock: fixedClock()}, NewWriterSink(&buf))
	if err != nil {
		b.Fatal(err)
	}
	const n = 256
	for i := range n {
		if err := l.Append(sampleRecord(b, i)); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var res Result
		v := verifier{w: io.Discard, res: &res}
		if err := v.read("bench", bytes.NewReader(data)); err != nil || res.FirstBad != nil || res.Lines != n {
			b.Fatal(err, res.FirstBad, res.Lines)
		}
	}
}
