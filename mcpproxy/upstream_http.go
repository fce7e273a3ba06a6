package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// httpUpstream is one session with a Streamable HTTP server (2025-03-26 …
// 2025-11-25): every client message is a POST; the answer comes back as
// JSON or as an SSE stream carrying the request's notifications and server
// requests first; server-initiated messages come on a GET stream.
type httpUpstream struct {
	url    string
	client *http.Client
	// cred is the credential each request carries (nil: none); never the
	// client's own token.
	cred   func(context.Context) (header, value string, err error)
	fn     ServerMessage
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	sessionID string
	version   string
	getOnce   sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup
	// streamed are the requests the server answered with an SSE stream,
	// and status those it answered with an HTTP error status and a
	// JSON-RPC error, so the client is answered the same way.
	streamed sync.Map
	status   sync.Map
}

// Status reports (once) the HTTP error status the server answered the
// request whose canonical id is stream with, or 0.
func (u *httpUpstream) Status(stream string) int {
	if v, ok := u.status.LoadAndDelete(stream); ok {
		return v.(int)
	}
	return 0
}

// Streamed reports (once) whether the server answered the request whose
// canonical id is stream with an SSE stream.
func (u *httpUpstream) Streamed(stream string) bool {
	_, ok := u.streamed.LoadAndDelete(stream)
	return ok
}

// DialHTTP opens a session with the Streamable HTTP server at url; the
// session itself starts with the client's initialize.
func DialHTTP(url string, client *http.Client, fn ServerMessage, log *slog.Logger, cred func(context.Context) (string, string, error)) Upstream {
	ctx, cancel := context.WithCancel(context.Background())
	return &httpUpstream{url: url, client: client, fn: fn, log: log, ctx: ctx, cancel: cancel, cred: cred}
}

// routing are the 2026-07-28 request headers, rebuilt from the body the
// door decided (never copied from the client).
type routing struct {
	version, method, name string
	params                map[string]string // Mcp-Param-* → value
}

type routingKey struct{}

func withRouting(ctx context.Context, r routing) context.Context {
	return context.WithValue(ctx, routingKey{}, r)
}

// authorize adds the upstream credential to req.
func (u *httpUpstream) authorize(ctx context.Context, req *http.Request) error {
	if u.cred == nil {
		return nil
	}
	h, v, err := u.cred(ctx)
	if err != nil {
		return fmt.Errorf("upstream credentials: %w", err)
	}
	if v != "" {
		req.Header.Set(h, v)
	}
	return nil
}

// SetProtocolVersion is told the version initialize agreed on; later
// requests carry it in MCP-Protocol-Version, as the transport requires.
func (u *httpUpstream) SetProtocolVersion(v string) {
	u.mu.Lock()
	u.version = v
	u.mu.Unlock()
}

func (u *httpUpstream) headers(h http.Header) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sessionID != "" {
		h.Set("Mcp-Session-Id", u.sessionID)
	}
	if u.version != "" {
		h.Set("Mcp-Protocol-Version", u.version)
	}
}

func (u *httpUpstream) Send(ctx context.Context, msg []byte, stream string) error {
	// The request lives as long as the session, not the client's call: its
	// answer may be a long stream.
	req, err := http.NewRequestWithContext(u.ctx, http.MethodPost, u.url, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	// Shared values, never changed in place: no allocation per request.
	req.Header["Content-Type"] = hdrJSON
	req.Header["Accept"] = hdrAcceptBoth
	u.headers(req.Header)
	if rt, ok := ctx.Value(routingKey{}).(routing); ok {
		req.Header.Set("Mcp-Protocol-Version", rt.version)
		req.Header.Set("Mcp-Method", rt.method)
		if rt.name != "" {
			req.Header.Set("Mcp-Name", rt.name)
		}
		for k, v := range rt.params {
			req.Header.Set(k, v)
		}
	}
	if err := u.authorize(ctx, req); err != nil {
		return err
	}
	resp, err := do(u.client, req)
	if err != nil {
		return err
	}
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		u.mu.Lock()
		if u.sessionID == "" {
			u.sessionID = sid
		}
		u.mu.Unlock()
	}
	if resp.StatusCode == http.StatusNotFound && u.hasSession() {
		resp.Body.Close()
		err := errors.New("the upstream server ended the session (HTTP 404)")
		u.fn(nil, "", err)
		return err
	}
	ct := mediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusAccepted:
		resp.Body.Close()
		if bytes.Contains(msg, []byte(`"notifications/initialized"`)) {
			u.getOnce.Do(u.startGet)
		}
		return nil
	case ct == "text/event-stream" && resp.StatusCode == http.StatusOK:
		if stream != "" {
			u.streamed.Store(stream, struct{}{})
		}
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer resp.Body.Close()
			if err := readSSE(resp.Body, func(ev sseEvent) { u.deliver(ev, stream) }); err != nil && u.ctx.Err() == nil {
				u.log.Debug("upstream response stream ended", "error", err)
			}
		}()
		return nil
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body, resp.ContentLength, MaxMessageBytes)
	if err != nil {
		return err
	}
	if len(body) > MaxMessageBytes {
		return fmt.Errorf("the upstream's answer is larger than %d bytes", MaxMessageBytes)
	}
	// A JSON-RPC message is passed on even with an error status (servers
	// answer a bad request with 400 and a JSON-RPC error).
	if ct == "application/json" && bytes.Contains(body, []byte(`"jsonrpc"`)) {
		body = bytes.TrimSpace(body)
		if resp.StatusCode >= 400 && stream != "" {
			u.status.Store(stream, resp.StatusCode)
			body = answerTo(body, stream)
		}
		u.fn(body, stream, nil)
		return nil
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the upstream answered HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	return nil
}

func (u *httpUpstream) hasSession() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sessionID != ""
}

func (u *httpUpstream) deliver(ev sseEvent, stream string) {
	if ev.event != "" && ev.event != "message" {
		return
	}
	if data := bytes.TrimSpace(ev.data); len(data) > 0 {
		u.fn(data, stream, nil)
	}
}

// startGet opens the stream of server-initiated messages, and reopens it
// while the session lives; a server without one answers 405.
func (u *httpUpstream) startGet() {
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		backoff := 100 * time.Millisecond
		for u.ctx.Err() == nil {
			req, err := http.NewRequestWithContext(u.ctx, http.MethodGet, u.url, nil)
			if err != nil {
				return
			}
			req.Header.Set("Accept", "text/event-stream")
			u.headers(req.Header)
			if u.authorize(u.ctx, req) != nil {
				return
			}
			resp, err := u.client.Do(req)
			if err != nil {
				if u.ctx.Err() != nil {
					return
				}
			} else {
				if resp.StatusCode != http.StatusOK || mediaType(resp.Header.Get("Content-Type")) != "text/event-stream" {
					resp.Body.Close()
					return // no standalone stream: fine
				}
				backoff = 100 * time.Millisecond
				_ = readSSE(resp.Body, func(ev sseEvent) { u.deliver(ev, "") })
				resp.Body.Close()
			}
			select {
			case <-u.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
}

// Close ends the upstream session (DELETE, as the transport asks of a
// client that is done) and stops its streams.
func (u *httpUpstream) Close() error {
	u.closeOnce.Do(func() {
		if sid := func() string { u.mu.Lock(); defer u.mu.Unlock(); return u.sessionID }(); sid != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.url, nil)
			if err == nil && u.authorize(ctx, req) == nil {
				u.headers(req.Header)
				if resp, err := u.client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
			cancel()
		}
		u.cancel()
		u.wg.Wait()
	})
	return nil
}

type sseEvent struct {
	event string
	id    string
	data  []byte
}

// readSSE calls fn for each event of an SSE stream (WHATWG event stream
// format: field lines, a blank line ends an event).
func readSSE(r io.Reader, fn func(sseEvent)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var ev sseEvent
	var data []byte
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > MaxMessageBytes {
			return fmt.Errorf("an event is larger than %d bytes", MaxMessageBytes)
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if err == nil {
				if data != nil {
					ev.data = data
					fn(ev)
				}
				ev, data = sseEvent{}, nil
			}
		case line[0] == ':':
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "event":
				ev.event = string(value)
			case "id":
				ev.id = string(value)
			case "data":
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, value...)
				if data == nil {
					data = []byte{}
				}
			}
		}
		if err != nil {
			if data != nil {
				ev.data = data
				fn(ev)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// answerTo gives a server's error answer to a request the id of that
// request when the server left it null (it rejected the POST before
// reading the id): it answers that request, and must reach its caller.
func answerTo(body []byte, stream string) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m["error"] == nil {
		return body
	}
	if id, ok := m["id"]; ok && !bytes.Equal(bytes.TrimSpace(id), []byte("null")) {
		return body
	}
	m["id"] = json.RawMessage(stream)
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}
