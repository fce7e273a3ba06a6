package mcpproxy

import (
	"context"
	"io"
	"sync"
)

// ServeStdio joins a client on r/w (newline-delimited JSON-RPC, as a
// desktop client runs a stdio server) to s. It returns when the client
// closes r, the upstream ends, or ctx ends; the session is closed then.
func ServeStdio(ctx context.Context, r io.Reader, s *Session, dial func(ServerMessage) (Upstream, error)) error {
	up, err := dial(s.FromServer)
	if err != nil {
		return err
	}
	s.Attach(up)
	defer s.Close()
	errc := make(chan error, 1)
	go func() {
		errc <- readLines(r, func(line []byte) { s.FromClient(ctx, line) })
	}()
	select {
	case err := <-errc:
		return err
	case <-s.Done():
		return nil
	case <-ctx.Done():
		return nil
	}
}

// LineWriter writes one message per line to w, whole messages at a time.
func LineWriter(w io.Writer) func(msg []byte, stream string) {
	var mu sync.Mutex
	return func(msg []byte, _ string) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(append(msg, '\n'))
	}
}
