package mcpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The legacy HTTP+SSE transport (2024-11-05): the client GETs an event
// stream whose first event names the URL to POST its messages to; every
// answer and server message comes on that stream.

// sseUpstream is a session with a legacy SSE server.
type sseUpstream struct {
	client   *http.Client
	fn       ServerMessage
	ctx      context.Context
	cancel   context.CancelFunc
	endpoint string
	done     chan struct{}
	once     sync.Once
}

// DialSSE opens the event stream at sseURL and waits for the endpoint.
func DialSSE(ctx context.Context, sseURL string, client *http.Client, fn ServerMessage, log *slog.Logger) (Upstream, error) {
	sctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, sseURL, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || mediaType(resp.Header.Get("Content-Type")) != "text/event-stream" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("the SSE endpoint answered HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	u := &sseUpstream{client: client, fn: fn, ctx: sctx, cancel: cancel, done: make(chan struct{})}
	base, _ := url.Parse(sseURL)
	endpoint := make(chan string, 1)
	go func() {
		defer close(u.done)
		defer resp.Body.Close()
		err := readSSE(resp.Body, func(ev sseEvent) {
			switch ev.event {
			case "endpoint":
				ref, err := url.Parse(strings.TrimSpace(string(ev.data)))
				if err != nil {
					return
				}
				// Only on the same server: an endpoint elsewhere would send
				// the client's messages to a host nobody configured.
				abs := base.ResolveReference(ref)
				if abs.Host != base.Host || abs.Scheme != base.Scheme {
					log.Warn("the SSE server named an endpoint on another host; ignored", "endpoint", abs.String())
					return
				}
				select {
				case endpoint <- abs.String():
				default:
				}
			case "", "message":
				if data := bytes.TrimSpace(ev.data); len(data) > 0 {
					fn(data, "", nil)
				}
			}
		})
		if sctx.Err() == nil {
			if err == nil {
				err = errors.New("the SSE stream ended")
			}
			fn(nil, "", err)
		}
	}()
	select {
	case u.endpoint = <-endpoint:
		return u, nil
	case <-u.done:
		return nil, errors.New("the SSE stream ended before naming its endpoint")
	case <-ctx.Done():
		u.Close()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		u.Close()
		return nil, errors.New("the SSE server named no endpoint within 10s")
	}
}

func (u *sseUpstream) Send(_ context.Context, msg []byte, _ string) error {
	req, err := http.NewRequestWithContext(u.ctx, http.MethodPost, u.endpoint, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the SSE server answered HTTP %d", resp.StatusCode)
	}
	return nil
}

func (u *sseUpstream) Close() error {
	u.once.Do(func() {
		u.cancel()
		<-u.done
	})
	return nil
}

// legacy SSE, client side: GET path opens a session and its stream; the
// first event names path+"/messages?sessionId=…" to POST to.

func (h *HTTPHandler) sseStream(w http.ResponseWriter, r *http.Request, ident Identity) {
	if !acceptsSSE(r) {
		http.Error(w, "Not Acceptable: the SSE stream is text/event-stream", http.StatusNotAcceptable)
		return
	}
	s, err := h.open(ident, r.RemoteAddr)
	if err != nil {
		h.log.Error("could not reach the upstream", "error", err)
		http.Error(w, "the upstream server could not be reached", http.StatusBadGateway)
		return
	}
	// On this transport every message goes down this one stream.
	ch, _, _ := s.openGet()
	defer func() {
		h.mu.Lock()
		delete(h.sessions, s.ID())
		h.mu.Unlock()
		s.Close()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "event: endpoint\ndata: %s/messages?sessionId=%s\n\n", h.cfg.Path, s.ID())
	flush(w)
	s.pump(w, r, ch)
}

func (h *HTTPHandler) sseMessage(w http.ResponseWriter, r *http.Request, ident Identity) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	h.mu.Lock()
	s := h.sessions[r.URL.Query().Get("sessionId")]
	h.mu.Unlock()
	if s == nil || !s.Identity().same(ident) {
		http.Error(w, "Session not found", http.StatusNotFound)
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, MaxMessageBytes), r.ContentLength, MaxMessageBytes)
	if err != nil {
		http.Error(w, fmt.Sprintf("the message is larger than %d bytes", MaxMessageBytes), http.StatusRequestEntityTooLarge)
		return
	}
	m, id, perr := parse(h.opts.Methods, body)
	if perr != nil {
		s.toGet(s.refuseMsg(r.Context(), id, perr))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// Accepted now; the answer goes down the stream.
	w.WriteHeader(http.StatusAccepted)
	go s.Handle(context.WithoutCancel(r.Context()), m, body)
}
