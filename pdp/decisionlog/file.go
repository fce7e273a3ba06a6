package decisionlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// FileSink appends lines to a file opened O_APPEND (each line is one
// write(2)), rotating by size: path -> path.1 -> path.2 … (path.1 is the
// newest backup). It is the default sink and the one the chain resumes from.
type FileSink struct {
	path       string
	maxBytes   int64
	maxBackups int

	mu     sync.Mutex
	f      *os.File
	closed bool
	size   int64
	// torn is set when the file does not end with a newline (a write cut
	// short by a crash or an error); the next write starts a fresh line so
	// the damage stays confined to one line that Verify will name.
	torn bool
	// onRotate hears the seq and hash ending each file rotated away (the
	// Log's checkpoints record them: a log may start right after one).
	onRotate func(seq uint64, hash string)
}

var _ Resumer = (*FileSink)(nil)

// NewFileSink opens (creating directories 0700 and the file 0600) path for
// appending. maxBytes > 0 rotates before a line would take the file past
// it; maxBackups > 0 keeps that many rotated files and deletes older ones,
// 0 keeps them all (the default for audit evidence).
func NewFileSink(path string, maxBytes int64, maxBackups int) (*FileSink, error) {
	if path == "" {
		return nil, errors.New("decision log file: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("decision log file: %w", err)
	}
	s := &FileSink{path: path, maxBytes: maxBytes, maxBackups: maxBackups}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("decision log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("decision log file: %w", err)
	}
	s.f, s.size, s.torn = f, st.Size(), false
	if s.size > 0 {
		last, err := lastByte(s.path, s.size)
		if err != nil {
			f.Close()
			s.f = nil
			return fmt.Errorf("decision log file: %w", err)
		}
		s.torn = last != '\n'
	}
	return nil
}

func lastByte(path string, size int64) (byte, error) {
	r, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var b [1]byte
	if _, err := r.ReadAt(b[:], size-1); err != nil {
		return 0, err
	}
	return b[0], nil
}

func (s *FileSink) setOnRotate(f func(seq uint64, hash string)) {
	s.mu.Lock()
	s.onRotate = f
	s.mu.Unlock()
}

// firstRecord is the seq and prev_hash of the oldest record in the log's
// files (0 when they hold none).
func (s *FileSink) firstRecord() (seq uint64, prevHash string, err error) {
	for _, p := range Files(s.path) {
		f, err := os.Open(p)
		if err != nil {
			return 0, "", err
		}
		seq, prevHash, err := readFirstRecord(f)
		f.Close()
		switch {
		case errors.Is(err, errNotRecord):
			return 0, "", fmt.Errorf("%s: first line is not a decision record; check it with `agentpdp audit verify`", p)
		case err != nil:
			return 0, "", err
		case seq > 0:
			return seq, prevHash, nil
		}
	}
	return 0, "", nil
}

var errNotRecord = errors.New("not a decision record")

// readFirstRecord reads the seq and prev_hash of the first record in a log
// file, past any checkpoint lines (a capture of the stdout sink holds
// them): seq 0 when there is none, errNotRecord when the first line that
// is not a checkpoint is not a record either.
func readFirstRecord(f io.Reader) (seq uint64, prevHash string, err error) {
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return 0, "", err
		}
		if len(line) == 0 {
			return 0, "", nil
		}
		var rec struct {
			Seq      uint64 `json:"seq"`
			PrevHash string `json:"prev_hash"`
			Type     string `json:"type"`
		}
		if json.Unmarshal(line, &rec) != nil {
			return 0, "", errNotRecord
		}
		if rec.Type != "checkpoint" {
			if rec.Seq == 0 {
				return 0, "", errNotRecord
			}
			return rec.Seq, rec.PrevHash, nil
		}
	}
}

// Path is the file being written.
func (s *FileSink) Path() string { return s.path }

// Write appends whole lines, rotating between lines so that no file grows
// past maxBytes (unless a single line is larger).
func (s *FileSink) Write(lines []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("decision log file %s: %w", s.path, os.ErrClosed)
	}
	if s.f == nil {
		// A failed rotation left no file open: try again.
		if err := s.open(); err != nil {
			return err
		}
	}
	for len(lines) > 0 {
		chunk := lines
		if s.maxBytes > 0 && s.size+int64(len(chunk)) > s.maxBytes {
			fit := fitLines(chunk, s.maxBytes-s.size)
			if fit == 0 && s.size > 0 {
				if err := s.rotate(); err != nil {
					return fmt.Errorf("decision log file: rotating %s: %w", s.path, err)
				}
				continue
			}
			if fit == 0 { // one line larger than maxBytes: alone in its file
				fit = bytes.IndexByte(chunk, '\n') + 1
				if fit == 0 {
					fit = len(chunk)
				}
			}
			chunk = chunk[:fit]
		}
		if err := s.write(chunk); err != nil {
			return err
		}
		lines = lines[len(chunk):]
	}
	return nil
}

// fitLines is the length of the longest prefix of whole lines within room.
func fitLines(lines []byte, room int64) int {
	if room <= 0 {
		return 0
	}
	if int64(len(lines)) <= room {
		return len(lines)
	}
	return bytes.LastIndexByte(lines[:room], '\n') + 1
}

func (s *FileSink) write(chunk []byte) error {
	if s.torn {
		n, err := s.f.Write([]byte{'\n'})
		s.size += int64(n)
		if err != nil {
			return fmt.Errorf("decision log file: %w", err)
		}
		s.torn = false
	}
	n, err := s.f.Write(chunk)
	s.size += int64(n)
	if err != nil {
		s.torn = n > 0 && n < len(chunk) && chunk[n-1] != '\n'
		return fmt.Errorf("decision log file: %w", err)
	}
	return nil
}

// rotate syncs and closes the current file, shifts the backups and opens a
// fresh file. Called with s.mu held.
func (s *FileSink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	s.f = nil
	if s.onRotate != nil {
		// The file is synced and closed: its last line is final.
		if seq, h, err := LastState(s.path); err == nil && seq > 0 {
			s.onRotate(seq, h)
		}
	}
	top := s.maxBackups
	if top <= 0 {
		top = len(backups(s.path)) + 1 // keep all: shift every backup up
	} else if err := os.Remove(backupName(s.path, top)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for i := top - 1; i >= 1; i-- {
		if err := os.Rename(backupName(s.path, i), backupName(s.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(s.path, backupName(s.path, 1)); err != nil {
		return err
	}
	if err := s.open(); err != nil {
		return err
	}
	syncDir(filepath.Dir(s.path)) // make the renames durable; best effort
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func backupName(path string, i int) string { return path + "." + strconv.Itoa(i) }

// backups lists path.1, path.2, … that exist, newest first.
func backups(path string) []string {
	var out []string
	for i := 1; ; i++ {
		name := backupName(path, i)
		if _, err := os.Stat(name); err != nil {
			return out
		}
		out = append(out, name)
	}
}

// Files lists the log's files in chain order, oldest first (path.N … path.1,
// path), for Verify.
func Files(path string) []string {
	b := backups(path)
	out := make([]string, 0, len(b)+1)
	for i := len(b) - 1; i >= 0; i-- {
		out = append(out, b[i])
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out
}

// Sync fsyncs the current file. It does not hold the write lock during the
// fsync, so appends go on meanwhile; a file rotated away in between was
// synced by the rotation.
func (s *FileSink) Sync() error {
	s.mu.Lock()
	f := s.f
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("decision log file: %w", err)
	}
	return nil
}

// Close syncs and closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.f.Sync(), s.f.Close())
	s.f = nil
	return err
}

// LastState is the chain state held in the newest file, or in path.1 when
// the current file is still empty after a rotation.
func (s *FileSink) LastState() (uint64, string, error) {
	for _, p := range []string{s.path, backupName(s.path, 1)} {
		seq, h, err := LastState(p)
		if err != nil || seq > 0 {
			return seq, h, err
		}
	}
	return 0, "", nil
}

// LastState reads the seq and hash of the last complete line of the log
// file at path, so a new Log continues the chain. A missing or empty file
// gives 0, "". A final line without its newline (a write torn by a crash)
// is skipped; the line before it is used, and Verify will report the torn
// one.
func LastState(path string) (seq uint64, hash string, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	line, err := lastLine(f, st.Size())
	if err != nil || line == nil {
		return 0, "", err
	}
	var rec struct {
		Seq  *uint64 `json:"seq"`
		Hash *string `json:"hash"`
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		return 0, "", fmt.Errorf("%s: last line is not a decision record (%v); check it with `agentpdp audit verify` and move the file aside", path, err)
	}
	if rec.Seq == nil || rec.Hash == nil || *rec.Seq == 0 || *rec.Hash == "" {
		return 0, "", fmt.Errorf("%s: last line has no seq or hash; check it with `agentpdp audit verify` and move the file aside", path)
	}
	return *rec.Seq, *rec.Hash, nil
}

// lastLine returns the last newline-terminated line (without the newline),
// reading backwards in chunks; nil when there is none.
func lastLine(r io.ReaderAt, size int64) ([]byte, error) {
	const chunk = 64 << 10
	var tail []byte
	pos := size
	end := -1 // index in tail of the newline ending the last complete line
	for pos > 0 {
		n := min(int64(chunk), pos)
		pos -= n
		buf := make([]byte, n, int(n)+len(tail))
		if _, err := r.ReadAt(buf, pos); err != nil {
			return nil, err
		}
		if end >= 0 {
			end += int(n)
		}
		tail = append(buf, tail...)
		if end < 0 {
			end = bytes.LastIndexByte(tail, '\n')
			if end < 0 {
				continue
			}
		}
		if start := bytes.LastIndexByte(tail[:end], '\n'); start >= 0 {
			return tail[start+1 : end], nil
		}
	}
	if end < 0 {
		return nil, nil
	}
	return tail[:end], nil
}
