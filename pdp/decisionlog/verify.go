package decisionlog

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// Result is what Verify found.
type Result struct {
	Files int
	// Lines is how many records verified good (all of them, or those
	// before FirstBad).
	Lines             int
	FirstSeq, LastSeq uint64
	LastHash          string
	// FirstBad is the first line that breaks the chain; nil when all is well.
	FirstBad *BadLine
}

// BadLine names an edited, dropped, reordered, inserted or torn line.
type BadLine struct {
	File    string
	Line    int // 1-based
	Problem string
}

func (b *BadLine) Error() string { return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Problem) }

// Verify checks the hash chain across paths, given in chain order (oldest
// first; Files lists a rotated log that way). Each line must be canonical
// JSON whose hash matches its content and prev_hash, whose prev_hash is the
// previous line's hash and whose seq is one more than the previous line's.
// Only the very first line may start past seq 1 (earlier files were not
// given, or rotated away); that is noted on w. It stops at the first bad
// line and reports it in Result.FirstBad; the error is for I/O failures.
// A summary is written to w.
func Verify(paths []string, w io.Writer) (Result, error) {
	var res Result
	if len(paths) == 0 {
		return res, errors.New("verify: no files given")
	}
	v := verifier{w: w, res: &res}
	for _, p := range paths {
		if err := v.file(p); err != nil {
			return res, err
		}
		if res.FirstBad != nil {
			fmt.Fprintf(w, "%d records verified before the first bad line\n", res.Lines)
			return res, nil
		}
	}
	if res.Lines == 0 {
		fmt.Fprintf(w, "ok: no records in %d file(s)\n", res.Files)
		return res, nil
	}
	fmt.Fprintf(w, "ok: %d records in %d file(s), seq %d..%d, last hash %s\n",
		res.Lines, res.Files, res.FirstSeq, res.LastSeq, res.LastHash)
	return res, nil
}

type verifier struct {
	w        io.Writer
	res      *Result
	prevHash []byte
	prevSeq  uint64
	started  bool
	canon    []byte
}

func (v *verifier) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	return v.read(path, f)
}

func (v *verifier) read(name string, f io.Reader) error {
	v.res.Files++
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			return nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("verify: %s: %w", name, err)
		}
		if problem := v.line(name, n, line); problem != "" {
			v.res.FirstBad = &BadLine{File: name, Line: n, Problem: problem}
			return nil
		}
	}
}

// line checks one line (with its newline) and returns what is wrong with it.
func (v *verifier) line(path string, n int, line []byte) string {
	if line[len(line)-1] != '\n' {
		return "line is incomplete (no newline): truncated or a torn write"
	}
	line = line[:len(line)-1]
	if len(line) == 0 {
		return "empty line"
	}
	if !jcs.IsCanonical(line) {
		if _, err := jcs.Transform(line); err != nil {
			return fmt.Sprintf("not valid JSON (%v): line edited or damaged", err)
		}
		return "not in canonical JSON form: line edited"
	}
	m, err := topMembers(line)
	if err != nil {
		return err.Error()
	}
	hashMember, ok := m["hash"]
	if !ok {
		return `no "hash": not a chained record`
	}
	hash, ok := hashValue(line[hashMember.val:hashMember.end])
	if !ok {
		return `"hash" is not a sha256 hash`
	}
	prevMember, ok := m["prev_hash"]
	if !ok {
		return `no "prev_hash": not a chained record`
	}
	prev, ok := hashValue(line[prevMember.val:prevMember.end])
	if !ok && prevMember.end-prevMember.val != 2 { // "" is the genesis value
		return `"prev_hash" is not a sha256 hash`
	}
	seqMember, ok := m["seq"]
	if !ok {
		return `no "seq": not a chained record`
	}
	seq, err := strconv.ParseUint(string(line[seqMember.val:seqMember.end]), 10, 64)
	if err != nil || seq == 0 {
		return `"seq" is not a positive integer`
	}

	// The record without its hash member, which is what was hashed.
	from, to := hashMember.start, hashMember.end
	if line[from-1] == ',' {
		from--
	} else if line[to] == ',' {
		to++
	}
	v.canon = append(append(v.canon[:0], line[:from]...), line[to:]...)
	h := sha256.New()
	h.Write(prev)
	h.Write(v.canon)
	var want [7 + 2*sha256.Size]byte
	copy(want[:], "sha256:")
	hex.Encode(want[7:], h.Sum(nil))
	if !bytes.Equal(hash, want[:]) {
		return "hash does not match the record: line edited"
	}

	switch {
	case !v.started && seq == 1 && len(prev) != 0:
		return "seq 1 with a non-empty prev_hash: not the start of a chain"
	case !v.started && seq > 1:
		fmt.Fprintf(v.w, "note: %s:%d: the chain starts at seq %d; earlier records are not in the files given\n", path, n, seq)
	case v.started && seq == v.prevSeq+1 && !bytes.Equal(prev, v.prevHash):
		return "prev_hash is not the previous line's hash: a line was replaced or inserted here"
	case v.started && seq > v.prevSeq+1:
		return fmt.Sprintf("seq %d follows seq %d: %d record(s) dropped before this line, or lines reordered", seq, v.prevSeq, seq-v.prevSeq-1)
	case v.started && seq <= v.prevSeq:
		return fmt.Sprintf("seq %d follows seq %d: lines reordered, duplicated or inserted", seq, v.prevSeq)
	}
	if !v.started {
		v.res.FirstSeq = seq
	}
	v.started = true
	v.prevSeq = seq
	v.prevHash = append(v.prevHash[:0], hash...)
	v.res.Lines++
	v.res.LastSeq = seq
	v.res.LastHash = string(hash)
	return ""
}

// hashValue returns the contents of a canonical JSON string literal holding
// "sha256:<64 lowercase hex>".
func hashValue(lit []byte) ([]byte, bool) {
	if len(lit) != 2+7+64 || lit[0] != '"' || lit[len(lit)-1] != '"' {
		return nil, false
	}
	s := lit[1 : len(lit)-1]
	if !bytes.HasPrefix(s, []byte("sha256:")) {
		return nil, false
	}
	for _, c := range s[7:] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, false
		}
	}
	return s, true
}

// member locates one top-level member of a line: start of its name, start
// and end of its value.
type member struct{ start, val, end int }

// topMembers indexes the top-level members of a canonical JSON object (so
// already valid, sorted and unique); nested members are skipped, so an
// input field named "hash" is not mistaken for the record's.
func topMembers(line []byte) (map[string]member, error) {
	if line[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	m := make(map[string]member, 24)
	i := 1
	for i < len(line)-1 {
		start := i
		i = skipString(line, i)
		name := string(line[start+1 : i-1])
		i++ // ':'
		val := i
		i = skipValue(line, i)
		m[name] = member{start: start, val: val, end: i}
		if line[i] == ',' {
			i++
		}
	}
	return m, nil
}

// skipString returns the index after the string literal starting at i.
func skipString(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// skipValue returns the index after the value starting at i.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}
