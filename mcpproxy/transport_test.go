package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections it
// accepts.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func newTestTransport() *ownTransport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return newOwnTransport(tr)
}

func roundTrip(t *testing.T, tr http.RoundTripper, ctx context.Context, method, url, body string) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// Answered requests reuse one connection; the answer, status and headers
// are the server's.
func TestTransportReusesConnections(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/accepted" {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("X-Got", r.Header.Get("X-Sent"))
		w.WriteHeader(http.StatusCreated)
		w.Write(append([]byte("echo:"), b...))
	})
	tr := newTestTransport()
	defer tr.CloseIdleConnections()
	// An empty answer (202 to a notification) frees the connection even
	// when its body is closed unread.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/accepted", strings.NewReader("n"))
	resp, err := tr.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatal(resp, err)
	}
	resp.Body.Close()
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader("hi"))
		req.Header.Set("X-Sent", "v")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || string(b) != "echo:hi" || resp.Header.Get("X-Got") != "v" {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, b, resp.Header)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 6 sequential requests, want 1", n)
	}
}

// A connection the server closed while idle is noticed before reuse: the
// next request goes out on a fresh one instead of failing.
func TestTransportServerClosedIdle(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTestTransport()
	defer tr.CloseIdleConnections()
	if _, b, err := roundTrip(t, tr, context.Background(), "POST", srv.URL, "x"); err != nil || b != "ok" {
		t.Fatal(b, err)
	}
	srv.CloseClientConnections()
	// Wait until the server's close has reached our side of the socket.
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr.mu.Lock()
		pc := tr.idle[srv.Listener.Addr().String()][0]
		tr.mu.Unlock()
		if !stillOpen(pc.Conn) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's close never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	if _, b, err := roundTrip(t, tr, context.Background(), "POST", srv.URL, "x"); err != nil || b != "ok" {
		t.Fatalf("after the server closed the idle connection: %q %v", b, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// A body closed before its end, and an answer that says Connection:
// close, each end their connection.
func TestTransportDoesNotReuseUnfinished(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, strings.Repeat("x", 100<<10))
	})
	tr := newTestTransport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", srv.URL+"/partial", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Error("a closed body still reads")
	}
	if _, _, err := roundTrip(t, tr, context.Background(), "GET", srv.URL+"/close", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := roundTrip(t, tr, context.Background(), "GET", srv.URL+"/again", ""); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (none reused)", n)
	}
	tr.mu.Lock()
	idle := len(tr.idle[srv.Listener.Addr().String()])
	tr.mu.Unlock()
	if idle != 1 {
		t.Errorf("%d idle connections, want 1", idle)
	}
}

// Cancelling the request ends a wait for the answer, and a stream being
// read, at once; neither connection is reused.
func TestTransportCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	tr := newTestTransport()
	defer tr.CloseIdleConnections()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := roundTrip(t, tr, ctx, "POST", srv.URL+"/hang", "x")
		errc <- err
	}()
	waitFor(t, func() bool { return conns.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("hung request: %v, want context.Canceled", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/stream", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if line != "data: first\n" {
		t.Fatalf("stream: %q %v", line, err)
	}
	go cancel()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("a cancelled stream ended cleanly")
	}
	resp.Body.Close()
	tr.mu.Lock()
	idle := len(tr.idle)
	tr.mu.Unlock()
	if idle != 0 {
		t.Errorf("%d hosts with idle connections after cancelled requests", idle)
	}
}

// A header value with a line break (built from a message body) is refused
// before anything is written, as http.Transport refuses it.
func TestTransportRefusesBadHeaders(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTestTransport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("x"))
	req.Header.Set("Mcp-Name", "a\r\nX-Injected: 1")
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid header field value") {
		t.Errorf("err %v", err)
	}
	if conns.Load() != 0 {
		t.Error("a connection was made for a refused request")
	}
}

// Informational answers are skipped; HTTPS goes to the standard transport.
func TestTransportInformationalAndTLS(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</x>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	})
	tr := newTestTransport()
	defer tr.CloseIdleConnections()
	if resp, b, err := roundTrip(t, tr, context.Background(), "GET", srv.URL, ""); err != nil || resp.StatusCode != 200 || b != "final" {
		t.Fatalf("%v %q %v", resp, b, err)
	}
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls") }))
	defer tls.Close()
	tr.std = tls.Client().Transport.(*http.Transport)
	if _, b, err := roundTrip(t, tr, context.Background(), "GET", tls.URL, ""); err != nil || b != "tls" {
		t.Fatalf("https: %q %v", b, err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if _, ok := tr.idle[tls.Listener.Addr().String()]; ok {
		t.Error("an https connection is in the plain pool")
	}
}

// Idle connections past idleConnTimeout are closed by prune.
func TestTransportPrune(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTestTransport()
	defer tr.CloseIdleConnections()
	if _, _, err := roundTrip(t, tr, context.Background(), "GET", srv.URL, ""); err != nil {
		t.Fatal(err)
	}
	addr := srv.Listener.Addr().String()
	tr.mu.Lock()
	pc := tr.idle[addr][0]
	pc.idleAt = time.Now().Add(-2 * idleConnTimeout)
	tr.mu.Unlock()
	tr.prune()
	tr.mu.Lock()
	n, timer := len(tr.idle), tr.janitor
	tr.mu.Unlock()
	if n != 0 || timer != nil {
		t.Errorf("after prune: %d hosts idle, janitor %v", n, timer)
	}
	if _, err := pc.Write([]byte("x")); err == nil {
		t.Error("the pruned connection is still open")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// Concurrent callers each get their own answer; the pool never holds more
// connections than there were callers at once, and CloseIdleConnections
// empties it without retiring the transport.
func TestTransportConcurrent(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	tr := newTestTransport()
	defer tr.CloseIdleConnections()
	const callers, each = 16, 40
	errc := make(chan error, callers)
	for g := range callers {
		go func() {
			for i := range each {
				want := strings.Repeat("x", g) + "/" + strings.Repeat("y", i)
				req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(want))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					errc <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != want {
					errc <- errors.New("caller " + want + " got " + string(b))
					return
				}
			}
			errc <- nil
		}()
	}
	for range callers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n < 1 || n > callers {
		t.Errorf("%d connections for %d callers", n, callers)
	}
	tr.CloseIdleConnections()
	tr.mu.Lock()
	idle := len(tr.idle)
	tr.mu.Unlock()
	if idle != 0 {
		t.Errorf("%d hosts still idle after CloseIdleConnections", idle)
	}
	if _, b, err := roundTrip(t, tr, context.Background(), "POST", srv.URL, "again"); err != nil || b != "again" {
		t.Errorf("after CloseIdleConnections: %q %v", b, err)
	}
}

// BenchmarkUpstreamRoundTrip is one POST and its JSON answer to an
// in-process server, through the door's upstream transport and through
// http.Transport (what it replaces for plain HTTP).
func BenchmarkUpstreamRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"Echo: hi"}]}}`)
	}))
	defer srv.Close()
	body := []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`)
	std := http.DefaultTransport.(*http.Transport).Clone()
	std.DisableCompression = true
	for name, tr := range map[string]http.RoundTripper{"own": newOwnTransport(std.Clone()), "std": std} {
		b.Run("transport="+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
				req.Header["Content-Type"] = hdrJSON
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := readBody(resp.Body, resp.ContentLength, MaxMessageBytes); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}
