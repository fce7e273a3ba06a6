package decisionlog

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

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
	// Checkpoints is how many checkpoints matched the record they name.
	Checkpoints int
	// Problems are what the checkpoints show beyond the chain: records
	// missing at the tail or head, a checkpoint whose hash is not on the
	// chain, a bad signature. Each names a file:line.
	Problems []string
}

// OK is true when the chain holds and the checkpoints agree with it.
func (r *Result) OK() bool { return r.FirstBad == nil && len(r.Problems) == 0 }

// BadLine names an edited, dropped, reordered, inserted or torn line.
type BadLine struct {
	File    string
	Line    int // 1-based
	Problem string
}

func (b *BadLine) Error() string { return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Problem) }

// VerifyOptions add what a hash chain cannot show alone: where it should
// end, and where it may start.
type VerifyOptions struct {
	// Checkpoints (ReadCheckpoints, ParseHead) are checked against the
	// chain: each one's hash must be the record's at its seq, and the log
	// must reach the last one. When some come from a checkpoint file,
	// which also records rotations, a log starting past seq 1 must start
	// right after a rotated file ended.
	Checkpoints []Checkpoint
	// PublicKey, when set, must have signed every checkpoint read from a
	// file; when nil, signatures are not checked (the summary says so).
	PublicKey ed25519.PublicKey
}

// Verify is VerifyWith without checkpoints: it sees edits, drops, inserts
// and reorders inside the chain, but not records cut from its ends.
func Verify(paths []string, w io.Writer) (Result, error) {
	return VerifyWith(paths, w, VerifyOptions{})
}

// VerifyWith checks the hash chain across paths, in any order: they are
// taken by the seq of their first record (a rotated log's files, then the
// current one). Each line must be canonical JSON whose hash matches its
// content and prev_hash, whose prev_hash is the previous line's hash and
// whose seq is one more than the previous line's. Checkpoint lines (a
// capture of the stdout sink holds them) are skipped. It stops at the first
// bad line and reports it in Result.FirstBad; then opts.Checkpoints are
// checked (see VerifyOptions) into Result.Problems. The error is for I/O
// failures. A summary is written to w.
func VerifyWith(paths []string, w io.Writer, opts VerifyOptions) (Result, error) {
	var res Result
	if len(paths) == 0 {
		return res, errors.New("verify: no files given")
	}
	sorted, err := sortBySeq(paths)
	if err != nil {
		return res, err
	}
	if !slices.Equal(sorted, paths) {
		fmt.Fprintf(w, "note: files taken in seq order: %s\n", strings.Join(sorted, " "))
	}
	v := verifier{w: w, res: &res}
	v.useCheckpoints(opts)
	for _, p := range sorted {
		if err := v.file(p); err != nil {
			return res, err
		}
		if res.FirstBad != nil {
			v.report()
			fmt.Fprintf(w, "%d records verified before the first bad line\n", res.Lines)
			return res, nil
		}
	}
	v.ends()
	v.report()
	if len(res.Problems) > 0 {
		span := "no records"
		if res.Lines > 0 {
			span = fmt.Sprintf("%d records, seq %d..%d,", res.Lines, res.FirstSeq, res.LastSeq)
		}
		fmt.Fprintf(w, "%s in %d file(s): %d problem(s)\n", span, res.Files, len(res.Problems))
		return res, nil
	}
	if res.Lines == 0 {
		fmt.Fprintf(w, "ok: no records in %d file(s)\n", res.Files)
		return res, nil
	}
	reach := ""
	if v.maxCp != nil {
		reach = fmt.Sprintf("; %d checkpoint(s) on the chain, the last at seq %d (%s)", res.Checkpoints, v.maxCp.Seq, v.maxCp.Where())
		if v.maxCp.Seq < res.LastSeq {
			fmt.Fprintf(w, "note: no checkpoint covers seq %s yet: records cut from there would not show\n", span(v.maxCp.Seq+1, res.LastSeq))
		}
	} else {
		fmt.Fprintln(w, "note: no checkpoints given: records cut from the end of the log would not show")
	}
	fmt.Fprintf(w, "ok: %d records in %d file(s), seq %d..%d, last hash %s%s\n",
		res.Lines, res.Files, res.FirstSeq, res.LastSeq, res.LastHash, reach)
	return res, nil
}

// sortBySeq orders paths by the seq of their first record, so rotated
// files verify whatever order they were given in. A file whose first
// line cannot be read as a record sorts first, where Verify names it.
func sortBySeq(paths []string) ([]string, error) {
	type file struct {
		path string
		seq  uint64
	}
	files := make([]file, len(paths))
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		seq, _, _ := readFirstRecord(f)
		f.Close()
		files[i] = file{p, seq}
	}
	slices.SortStableFunc(files, func(a, b file) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.path
	}
	return out, nil
}

type verifier struct {
	w        io.Writer
	res      *Result
	prevHash []byte
	prevSeq  uint64
	started  bool
	canon    []byte
	// Where the chain starts and ends, for messages.
	firstFile, lastFile string
	firstLine, lastLine int
	skipped             int // checkpoint lines among the records

	cps      map[uint64][]*Checkpoint // the usable checkpoints by seq
	maxCp    *Checkpoint              // the one with the highest seq
	fromFile bool                     // some come from a file, which records rotations
	rotation *Checkpoint              // the rotation the chain starts right after
	notes    []string
}

// useCheckpoints checks signatures and indexes the checkpoints that pass.
func (v *verifier) useCheckpoints(opts VerifyOptions) {
	if len(opts.Checkpoints) == 0 {
		return
	}
	v.cps = make(map[uint64][]*Checkpoint)
	signed := 0
	for i := range opts.Checkpoints {
		c := &opts.Checkpoints[i]
		if !c.Given {
			if opts.PublicKey != nil {
				if err := c.VerifySignature(opts.PublicKey); err != nil {
					v.problem("%s: checkpoint seq %d: %v", c.Where(), c.Seq, err)
					continue
				}
				signed++
			}
			v.fromFile = true
		}
		v.cps[c.Seq] = append(v.cps[c.Seq], c)
		if v.maxCp == nil || c.Seq > v.maxCp.Seq {
			v.maxCp = c
		}
	}
	switch {
	case opts.PublicKey != nil:
		fmt.Fprintf(v.w, "%d checkpoint signature(s) verified with %s\n", signed, KeyID(opts.PublicKey))
	case v.fromFile:
		fmt.Fprintln(v.w, "note: checkpoint signatures not checked: no public key given")
	}
}

func (v *verifier) problem(format string, a ...any) {
	v.res.Problems = append(v.res.Problems, fmt.Sprintf(format, a...))
}

// checkAt compares the checkpoints at seq with the hash the chain has
// there: a record's hash, or (start) the first record's prev_hash.
func (v *verifier) checkAt(seq uint64, hash []byte, start bool, path string, n int) {
	what := "the record"
	if start {
		what = "the first record's prev_hash"
	}
	for _, c := range v.cps[seq] {
		if c.Hash == "" { // a bare --head SEQ: nothing to compare
			continue
		}
		if c.Hash != string(hash) {
			v.problem("%s: checkpoint seq %d has hash %s, but %s (%s:%d) has %s: the log was rewritten after the checkpoint",
				c.Where(), seq, c.Hash, what, path, n, hash)
			continue
		}
		v.res.Checkpoints++
		if c.Rotated && start {
			v.rotation = c
		}
	}
}

// ends checks where the chain starts and ends against the checkpoints.
func (v *verifier) ends() {
	res := v.res
	if res.Lines > 0 && res.FirstSeq > 1 {
		k := res.FirstSeq
		switch {
		case v.rotation != nil:
			v.notes = append(v.notes, fmt.Sprintf("note: %s:%d: the chain starts at seq %d, right after a rotated file ended (checkpoint %s); older files were not given, or deleted by max_backups",
				v.firstFile, v.firstLine, k, v.rotation.Where()))
		case v.fromFile:
			var b uint64 // the last rotation before the start: the log may legitimately start after it
			for seq, cs := range v.cps {
				for _, c := range cs {
					if c.Rotated && seq < k && seq > b {
						b = seq
					}
				}
			}
			v.problem("%s:%d: the chain starts at seq %d, but no rotated file ended at seq %d (per the checkpoints given): %s missing at the head (seq %s)",
				v.firstFile, v.firstLine, k, k-1, records(k-1-b), span(b+1, k-1))
		default:
			v.notes = append(v.notes, fmt.Sprintf("note: %s:%d: the chain starts at seq %d; earlier records are not in the files given (not checked without a checkpoint file)",
				v.firstFile, v.firstLine, k))
		}
	}
	if c := v.maxCp; c != nil && c.Seq > res.LastSeq {
		if res.Lines == 0 {
			v.problem("%s: the log has no records, but this checkpoint says seq %d: %s missing", c.Where(), c.Seq, records(c.Seq))
		} else {
			v.problem("%s: the log ends at seq %d (%s:%d), but this checkpoint says seq %d: %s missing at the tail (seq %s)",
				c.Where(), res.LastSeq, v.lastFile, v.lastLine, c.Seq, records(c.Seq-res.LastSeq), span(res.LastSeq+1, c.Seq))
		}
	}
	before := 0
	for seq, cs := range v.cps {
		if res.Lines > 0 && seq+1 < res.FirstSeq {
			before += len(cs)
		}
	}
	if before > 0 {
		v.notes = append(v.notes, fmt.Sprintf("note: %d checkpoint(s) name records before the first one given: not checked", before))
	}
	if v.skipped > 0 {
		v.notes = append(v.notes, fmt.Sprintf("note: %d checkpoint line(s) among the records skipped (give the file to --checkpoints to use them)", v.skipped))
	}
}

func (v *verifier) report() {
	for _, n := range v.notes {
		fmt.Fprintln(v.w, n)
	}
	for _, p := range v.res.Problems {
		fmt.Fprintf(v.w, "error: %s\n", p)
	}
}

func records(n uint64) string {
	if n == 1 {
		return "1 record"
	}
	return strconv.FormatUint(n, 10) + " records"
}

func span(from, to uint64) string {
	if from == to {
		return strconv.FormatUint(from, 10)
	}
	return fmt.Sprintf("%d..%d", from, to)
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
	if t, ok := m["type"]; ok && string(line[t.val:t.end]) == `"checkpoint"` {
		v.skipped++ // not chained: a copy of a checkpoint in a stdout capture
		return ""
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
	case v.started && seq == v.prevSeq+1 && !bytes.Equal(prev, v.prevHash):
		return "prev_hash is not the previous line's hash: a line was replaced or inserted here"
	case v.started && seq > v.prevSeq+1 && path != v.lastFile:
		return fmt.Sprintf("this file starts at seq %d, but the one before (%s) ends at seq %d: %s missing (seq %s): a file between them not given, or records dropped",
			seq, v.lastFile, v.prevSeq, records(seq-v.prevSeq-1), span(v.prevSeq+1, seq-1))
	case v.started && seq > v.prevSeq+1:
		return fmt.Sprintf("seq %d follows seq %d: %d record(s) dropped before this line, or lines reordered", seq, v.prevSeq, seq-v.prevSeq-1)
	case v.started && seq <= v.prevSeq:
		return fmt.Sprintf("seq %d follows seq %d: lines reordered, duplicated or inserted", seq, v.prevSeq)
	}
	if !v.started {
		v.res.FirstSeq = seq
		v.firstFile, v.firstLine = path, n
		v.checkAt(seq-1, prev, true, path, n)
	}
	v.checkAt(seq, hash, false, path, n)
	v.lastFile, v.lastLine = path, n
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

var errNotObject = errors.New("not a JSON object")

// topMembers indexes the top-level members of a canonical JSON object (so
// already valid, sorted and unique); nested members are skipped, so an
// input field named "hash" is not mistaken for the record's.
func topMembers(line []byte) (map[string]member, error) {
	if line[0] != '{' {
		return nil, errNotObject
	}
	m := make(map[string]member, 24)
	i := 1
	for i < len(line)-1 {
		start := i
		if i = jcs.SkipString(line, i); i < 0 {
			return nil, errNotObject
		}
		name := string(line[start+1 : i-1])
		i++ // ':'
		val := i
		if i = jcs.SkipValue(line, i); i < 0 {
			return nil, errNotObject
		}
		m[name] = member{start: start, val: val, end: i}
		if line[i] == ',' {
			i++
		}
	}
	return m, nil
}
