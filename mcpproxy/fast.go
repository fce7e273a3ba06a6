package mcpproxy

import (
	"context"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// sessionLogger is log with a session's attributes, formatted on first
// use: a stateless request makes a session of its own, which seldom logs,
// and slog's JSON handler formats attributes as soon as they are added.
func sessionLogger(log *slog.Logger, id, server string) *slog.Logger {
	return slog.New(&lazyAttrs{base: log.Handler(), attrs: []slog.Attr{
		slog.String("door", "mcp"), slog.String("session", id), slog.String("server", server)}})
}

// lazyAttrs is base.WithAttrs(attrs), made when first needed.
type lazyAttrs struct {
	base  slog.Handler
	attrs []slog.Attr
	once  sync.Once
	h     slog.Handler
}

func (l *lazyAttrs) handler() slog.Handler {
	l.once.Do(func() { l.h = l.base.WithAttrs(l.attrs) })
	return l.h
}

// Enabled asks base: attributes do not change what is enabled, and a
// disabled debug line then formats nothing.
func (l *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.base.Enabled(ctx, level)
}

func (l *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	return l.handler().Handle(ctx, r)
}

func (l *lazyAttrs) WithAttrs(as []slog.Attr) slog.Handler { return l.handler().WithAttrs(as) }
func (l *lazyAttrs) WithGroup(name string) slog.Handler    { return l.handler().WithGroup(name) }

// mediaType is mime.ParseMediaType's media type, without its parse (and
// its map) for the two bare types an MCP server answers with.
func mediaType(v string) string {
	switch v {
	case "application/json", "text/event-stream":
		return v
	}
	mt, _, _ := mime.ParseMediaType(v)
	return mt
}

// readBody reads r whole up to limit+1 bytes (so that more than limit can
// be told), in one allocation when the length is known (n >= 0) rather
// than io.ReadAll's growing copies.
func readBody(r io.Reader, n, limit int64) ([]byte, error) {
	if n < 0 || n > limit {
		return io.ReadAll(io.LimitReader(r, limit+1))
	}
	// One byte over the declared length to see EOF without a second
	// buffer; a body longer than declared is net/http's error.
	buf := make([]byte, 0, n+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if int64(len(buf)) > limit {
			return buf[:limit+1], nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// eventHead and eventTail frame an SSE message event.
var (
	eventHead = []byte("event: message\ndata: ")
	eventTail = []byte("\n\n")
)

// writeEvent writes msg as one SSE message event and flushes it.
func writeEvent(w http.ResponseWriter, msg []byte) {
	writeLastEvent(w, msg)
	flush(w)
}

// writeLastEvent writes the event that ends a response, unflushed: when
// the handler returns, net/http sends what is left in one write, and a
// stream that is a lone answer goes with its length instead of as chunks
// (one write(2) less per call; on a VM a loopback write costs ~30 µs).
func writeLastEvent(w http.ResponseWriter, msg []byte) {
	// Three writes into the response's buffer: no fmt, no copy of msg.
	_, _ = w.Write(eventHead)
	_, _ = w.Write(msg)
	_, _ = w.Write(eventTail)
}

// do is client.Do(req). For the door's own client it goes to the
// transport directly: Client.Do would copy the headers (for redirects it
// does not follow) and set up what it does not use. Basic auth from the
// URL stays Client.Do's, and errors read as Client.Do's do.
func do(client *http.Client, req *http.Request) (*http.Response, error) {
	t, ok := client.Transport.(*ownTransport)
	if !ok || client.Jar != nil || client.Timeout != 0 || req.URL.User != nil {
		return client.Do(req)
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return nil, &url.Error{Op: req.Method[:1] + strings.ToLower(req.Method[1:]), URL: req.URL.String(), Err: err}
	}
	return resp, nil
}

// Header values the door sets on every request or answer, shared: a
// header's values are replaced (Header.Set), never changed in place, and
// the server copies a handler's header when it is written.
var (
	hdrJSON       = []string{"application/json"}
	hdrAcceptBoth = []string{"application/json, text/event-stream"}
)
