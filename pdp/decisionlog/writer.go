package decisionlog

import (
	"fmt"
	"io"
)

// NewWriterSink writes lines to w (stdout, typically). It neither syncs nor
// closes w, and keeps no chain state: a log with only writer sinks starts
// a new chain (seq 1) each time.
func NewWriterSink(w io.Writer) Sink { return writerSink{w} }

type writerSink struct{ w io.Writer }

func (s writerSink) Write(line []byte) error {
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("decision log writer: %w", err)
	}
	return nil
}

func (writerSink) Sync() error  { return nil }
func (writerSink) Close() error { return nil }
