package mcpproxy

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// The lazy session logger writes what log.With would have, and formats
// nothing for a line that is not enabled.
func TestSessionLoggerAsWith(t *testing.T) {
	var a, b bytes.Buffer
	eager := slog.New(slog.NewJSONHandler(&a, nil)).With("door", "mcp", "session", "s1", "server", "srv")
	lazy := sessionLogger(slog.New(slog.NewJSONHandler(&b, nil)), "s1", "srv")
	for _, l := range []*slog.Logger{eager, lazy} {
		l.Debug("not enabled")
		l.Warn("w", "k", 1)
		l.With("mode", "x").Info("i")
		l.WithGroup("g").Info("grouped", "k", 2)
	}
	strip := func(s string) string { // the time differs
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
			_, rest, _ := strings.Cut(line, `","level"`)
			out = append(out, rest)
		}
		return strings.Join(out, "\n")
	}
	if strip(a.String()) != strip(b.String()) || strings.Contains(b.String(), "not enabled") {
		t.Errorf("lazy:\n%s\neager:\n%s", b.String(), a.String())
	}
}

func TestMediaType(t *testing.T) {
	for _, v := range []string{"application/json", "text/event-stream", "application/json; charset=utf-8", "Application/JSON", "text/event-stream;x", "", "bad type/"} {
		want, _, _ := mime.ParseMediaType(v)
		if got := mediaType(v); got != want {
			t.Errorf("mediaType(%q) = %q, want %q", v, got, want)
		}
	}
}

// readBody reads what io.ReadAll over a LimitReader of limit+1 would,
// whatever the declared length says.
func TestReadBody(t *testing.T) {
	for _, tc := range []struct {
		body     string
		declared int64
	}{{"", 0}, {"", -1}, {"abc", 3}, {"abc", -1}, {"abcdef", 6}, {"abcdefgh", 8}, {"abcdefgh", -1}, {"abc", 10}, {"abcdefghij", 4}} {
		const limit = 6
		want, _ := io.ReadAll(io.LimitReader(strings.NewReader(tc.body), limit+1))
		for _, r := range []io.Reader{strings.NewReader(tc.body), iotest.OneByteReader(strings.NewReader(tc.body))} {
			got, err := readBody(r, tc.declared, limit)
			if err != nil || string(got) != string(want) {
				t.Errorf("%q (declared %d): %q %v, want %q", tc.body, tc.declared, got, err, want)
			}
		}
	}
	if _, err := readBody(iotest.ErrReader(errors.New("x")), 3, 6); err == nil {
		t.Error("a read error was dropped")
	}
}

func TestWriteEvent(t *testing.T) {
	w := httptest.NewRecorder()
	writeEvent(w, []byte(`{"a":1}`))
	if got := w.Body.String(); got != "event: message\ndata: {\"a\":1}\n\n" || !w.Flushed {
		t.Errorf("%q flushed=%v", got, w.Flushed)
	}
}

// BenchmarkWriteEvent is one SSE event to a client (a streamed answer,
// the GET stream).
func BenchmarkWriteEvent(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"Echo: hello"}]}}`)
	w := discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		writeEvent(w, msg)
	}
}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
func (d discardWriter) Flush()                      {}

// The door's own client, taken past Client.Do, answers as Client.Do
// would: a redirect is returned, not followed, and an error reads the same.
func TestDoAsClientDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	h, err := NewHTTPHandler(HTTPConfig{Listen: "127.0.0.1:0", Upstream: UpstreamConfig{URL: srv.URL},
		StaticIdentity: &Identity{}}, &Options{Server: "srv", Decider: allowDecider{}, Methods: mcpmsg.Spec})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c := h.cfg.Client
	if _, ok := c.Transport.(*ownTransport); !ok {
		t.Fatalf("transport %T", c.Transport)
	}
	for _, u := range []string{srv.URL + "/mcp", "http://127.0.0.1:1/mcp"} {
		r1, _ := http.NewRequest(http.MethodPost, u, strings.NewReader("{}"))
		r2, _ := http.NewRequest(http.MethodPost, u, strings.NewReader("{}"))
		a, aerr := do(c, r1)
		b, berr := c.Do(r2)
		if (aerr == nil) != (berr == nil) || aerr != nil && aerr.Error() != berr.Error() {
			t.Errorf("%s: do %v, Client.Do %v", u, aerr, berr)
		}
		if a != nil && (a.StatusCode != http.StatusTemporaryRedirect || b.StatusCode != a.StatusCode) {
			t.Errorf("%s: do %d, Client.Do %d", u, a.StatusCode, b.StatusCode)
		}
		for _, r := range []*http.Response{a, b} {
			if r != nil {
				r.Body.Close()
			}
		}
	}
}
