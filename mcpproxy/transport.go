package mcpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// ownTransport is the transport of the client NewHTTPHandler makes. A
// plain-HTTP request to an upstream reached without a proxy (a server next
// door, the usual case) is written and its answer read on the caller's
// goroutine, over a pooled keep-alive connection: http.Transport hands
// each request to two goroutines of its own per connection, and on a
// 2-core host those hand-offs cost a do-nothing proxy 40 µs of its added
// latency at c=1 and a tenth of its throughput at c=16 (see
// mcpproxy/bench). The wire format is still net/http's (Request.Write,
// ReadResponse). Everything else (HTTPS, a proxy) goes to std.
type ownTransport struct {
	std *http.Transport

	mu      sync.Mutex
	idle    map[string][]*pooledConn // host:port → idle connections, oldest first
	direct  map[string]bool          // host:port → reached without a proxy
	janitor *time.Timer
}

const (
	maxIdlePerHost  = 256
	idleConnTimeout = 90 * time.Second
)

type pooledConn struct {
	net.Conn
	addr   string
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

// NewUpstreamTransport is the door's upstream transport over std (which
// serves what it does not: HTTPS, proxies). mcpproxy/bench/floor measures
// it in a proxy that does nothing else.
func NewUpstreamTransport(std *http.Transport) http.RoundTripper { return newOwnTransport(std) }

func newOwnTransport(std *http.Transport) *ownTransport {
	return &ownTransport{std: std, idle: map[string][]*pooledConn{}, direct: map[string]bool{}}
}

// RoundTrip implements http.RoundTripper.
func (t *ownTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	addr, ok := t.plain(req)
	if !ok {
		return t.std.RoundTrip(req)
	}
	if err := validHeader(req.Header); err != nil {
		closeBody(req)
		return nil, err
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	pc, err := t.get(ctx, addr)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	// Cancelling the request unblocks the reads and writes below (and a
	// streamed body's); such a connection is not reused.
	stop := context.AfterFunc(ctx, func() { _ = pc.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(pc.br, req)
	// 1xx answers (103 Early Hints, a stray 100) come before the real one.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(pc.br, req)
	}
	if err != nil {
		return fail(err)
	}
	reuse := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody {
		// Nothing to read (202 to a notification, 204): the connection is
		// free now, whether or not the caller reads the empty body.
		t.release(pc, stop, reuse)
		return resp, nil
	}
	resp.Body = &pooledBody{rc: resp.Body, t: t, pc: pc, stop: stop, reuse: reuse}
	return resp, nil
}

// aLongTimeAgo is a deadline in the past: set on a connection, it fails
// whatever blocks on it at once.
var aLongTimeAgo = time.Unix(1, 0)

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// plain reports the host:port of a plain-HTTP request that needs no proxy.
func (t *ownTransport) plain(req *http.Request) (string, bool) {
	if req.URL.Scheme != "http" || req.URL.Host == "" {
		return "", false
	}
	port := req.URL.Port()
	if port == "" {
		port = "80"
	}
	addr := net.JoinHostPort(req.URL.Hostname(), port)
	t.mu.Lock()
	direct, seen := t.direct[addr]
	t.mu.Unlock()
	if !seen {
		// The proxy settings are read once per process (the environment);
		// their answer for a host does not change.
		direct = true
		if t.std.Proxy != nil {
			u, err := t.std.Proxy(req)
			direct = err == nil && u == nil
		}
		t.mu.Lock()
		t.direct[addr] = direct
		t.mu.Unlock()
	}
	return addr, direct
}

// validHeader refuses what http.Transport refuses: a header that would
// not survive the wire (a newline in a value built from a message body).
func validHeader(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

// get takes the most recently used idle connection to addr that is still
// open, or dials one.
func (t *ownTransport) get(ctx context.Context, addr string) (*pooledConn, error) {
	for {
		t.mu.Lock()
		l := t.idle[addr]
		if len(l) == 0 {
			t.mu.Unlock()
			break
		}
		pc := l[len(l)-1]
		l[len(l)-1] = nil
		t.idle[addr] = l[:len(l)-1]
		t.mu.Unlock()
		// The server may have closed it meanwhile (Node does after 5 s
		// idle; any server may right after an answer), and a POST written
		// to a closed connection cannot be retried safely: one peek (a
		// syscall that does not block) first.
		if stillOpen(pc.Conn) {
			return pc, nil
		}
		pc.Close()
	}
	dial := t.std.DialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &pooledConn{Conn: c, addr: addr, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 16<<10)}, nil
}

// put returns an answered connection to the pool.
func (t *ownTransport) put(pc *pooledConn) {
	if pc.br.Buffered() > 0 { // bytes past the answer: out of step
		pc.Close()
		return
	}
	pc.idleAt = time.Now()
	t.mu.Lock()
	if len(t.idle[pc.addr]) >= maxIdlePerHost {
		t.mu.Unlock()
		pc.Close()
		return
	}
	t.idle[pc.addr] = append(t.idle[pc.addr], pc)
	if t.janitor == nil {
		t.janitor = time.AfterFunc(idleConnTimeout, t.prune)
	}
	t.mu.Unlock()
}

// prune closes the connections idle longer than idleConnTimeout.
func (t *ownTransport) prune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := time.Now().Add(-idleConnTimeout)
	for addr, l := range t.idle {
		n := 0
		for n < len(l) && l[n].idleAt.Before(cutoff) {
			l[n].Close()
			n++
		}
		if n == len(l) {
			delete(t.idle, addr)
		} else if n > 0 {
			t.idle[addr] = append([]*pooledConn(nil), l[n:]...)
		}
	}
	if len(t.idle) > 0 {
		t.janitor.Reset(idleConnTimeout)
	} else {
		t.janitor = nil
	}
}

// CloseIdleConnections closes the idle connections (http.Client calls it
// too); the transport stays usable, as net/http's does.
func (t *ownTransport) CloseIdleConnections() {
	t.mu.Lock()
	for _, l := range t.idle {
		for _, pc := range l {
			pc.Close()
		}
	}
	t.idle = map[string][]*pooledConn{}
	if t.janitor != nil {
		t.janitor.Stop()
		t.janitor = nil
	}
	t.mu.Unlock()
	t.std.CloseIdleConnections()
}

// pooledBody is an answer's body: read to its end, its connection goes
// back to the pool; closed before that, the connection is closed (as
// http.Transport does: draining an unknown rest could take long).
type pooledBody struct {
	rc    io.ReadCloser
	t     *ownTransport
	pc    *pooledConn
	stop  func() bool
	reuse bool
	done  bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("http: read on closed response body")
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.release(true)
	} else if err != nil {
		b.release(false)
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if !b.done {
		b.release(false)
	}
	return nil
}

func (b *pooledBody) release(complete bool) {
	b.done = true
	b.t.release(b.pc, b.stop, complete && b.reuse)
}

// release ends a request on pc: back to the pool when reusable, else
// closed. stop is false once the request's context fired: the
// connection's deadline is spoiled.
func (t *ownTransport) release(pc *pooledConn, stop func() bool, reusable bool) {
	if stop() && reusable {
		t.put(pc)
		return
	}
	pc.Close()
}
