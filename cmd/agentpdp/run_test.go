package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/agentpdp/agentpdp/pdp"
)

func TestAdminPprofIsOptIn(t *testing.T) {
	p := pdp.New(nil, pdp.Options{})
	for _, on := range []bool{false, true} {
		h := adminHandler(prometheus.NewRegistry(), p, on)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("pprof=%v: /debug/pprof/ answered %d, want %d", on, rec.Code, want)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("/readyz with no policy answered %d, want 503", rec.Code)
		}
	}
}

// syncBuffer is a log sink the test reads while components still write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewJSONHandler(buf, nil)), buf
}

// runAsync runs comps and hands back runComponents' result.
func runAsync(ctx context.Context, logger *slog.Logger, comps ...component) <-chan error {
	done := make(chan error, 1)
	go func() { done <- runComponents(ctx, logger, comps...) }()
	return done
}

// failing is a component that fails with err once ready returns,
// closing failed as it does.
func failing(name string, err error, ready func(ctx context.Context) error, failed chan<- struct{}) component {
	return component{name, func(ctx context.Context) error {
		if ready != nil {
			if rerr := ready(ctx); rerr != nil {
				return rerr
			}
		}
		close(failed)
		return err
	}}
}

// awaitStop waits at most a second past failed for runComponents to return.
func awaitStop(t *testing.T, failed <-chan struct{}, done <-chan error, log *syncBuffer) error {
	t.Helper()
	select {
	case <-failed:
	case err := <-done:
		select {
		case <-failed: // both were ready
			return err
		default:
			t.Fatalf("returned %v before the failure\n%s", err, log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the failing component never failed\n%s", log)
	}
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		t.Fatalf("still running a second after a component failed\n%s", log)
		return nil
	}
}

// awaitHTTP polls url until it answers 200: the server is serving.
func awaitHTTP(ctx context.Context, url string) error {
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never answered: %v", url, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func adminOn(t *testing.T) (component, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	hs := &http.Server{Handler: adminHandler(prometheus.NewRegistry(), pdp.New(nil, pdp.Options{}), false)}
	return httpComponent("admin", hs, lis), lis.Addr().String()
}

func assertClosed(t *testing.T, what, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s at %s still accepts connections after the group stopped", what, addr)
	}
}

// A component failing while the admin server serves stops the admin
// server too, and the failure comes back named.
func TestRunComponentsOneFailureStopsAll(t *testing.T) {
	logger, log := testLogger()
	admin, addr := adminOn(t)
	boom := errors.New("boom")
	failed := make(chan struct{})
	ready := func(ctx context.Context) error { return awaitHTTP(ctx, "http://"+addr+"/healthz") }
	done := runAsync(t.Context(), logger, admin, failing("door", boom, ready, failed))
	err := awaitStop(t, failed, done, log)
	if !errors.Is(err, boom) || err.Error() != "door: boom" {
		t.Errorf("runComponents = %v, want door: boom", err)
	}
	assertClosed(t, "admin", addr)
	if strings.Contains(log.String(), "shutting down") {
		t.Errorf("a failure logged as a clean shutdown:\n%s", log)
	}
	if !strings.Contains(log.String(), `"msg":"stopping","error":"door: boom"`) {
		t.Errorf("the failure is not logged:\n%s", log)
	}
}

// A component returning nil while nobody asked it to stop is a failure
// too: the process must not stay up with a door gone.
func TestRunComponentsEarlyReturnIsAFailure(t *testing.T) {
	logger, log := testLogger()
	failed := make(chan struct{})
	blocker := component{"blocker", func(ctx context.Context) error { <-ctx.Done(); return nil }}
	done := runAsync(t.Context(), logger, blocker, failing("door", nil, nil, failed))
	err := awaitStop(t, failed, done, log)
	if !errors.Is(err, errStoppedEarly) || !strings.HasPrefix(err.Error(), "door: ") {
		t.Errorf("runComponents = %v, want door: %v", err, errStoppedEarly)
	}
}

// When ctx ends, every component drains and the group returns nil,
// whatever the drains said, after logging "shutting down".
func TestRunComponentsCleanShutdown(t *testing.T) {
	logger, log := testLogger()
	admin, addr := adminOn(t)
	var returned atomic.Int32
	canceled := component{"canceled", func(ctx context.Context) error {
		defer returned.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}}
	drainErr := component{"slow", func(ctx context.Context) error {
		defer returned.Add(1)
		<-ctx.Done()
		return errors.New("drain timed out")
	}}
	adminDone := component{"admin", func(ctx context.Context) error {
		defer returned.Add(1)
		return admin.serve(ctx)
	}}
	ctx, cancel := context.WithCancel(t.Context())
	done := runAsync(ctx, logger, canceled, drainErr, adminDone)
	if err := awaitHTTP(t.Context(), "http://"+addr+"/healthz"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runComponents after ctx ended = %v, want nil", err)
		}
	case <-time.After(time.Second):
		t.Fatalf("still running a second after ctx ended\n%s", log)
	}
	if n := returned.Load(); n != 3 {
		t.Errorf("runComponents returned with %d of 3 components returned", n)
	}
	assertClosed(t, "admin", addr)
	if !strings.Contains(log.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutting down line:\n%s", log)
	}
	if !strings.Contains(log.String(), `"component":"slow","error":"drain timed out"`) {
		t.Errorf("the drain error is not logged:\n%s", log)
	}
}

// serve's own components (the Envoy door and the admin server) stop when
// another one fails after they started serving.
func TestServeComponentsStopWhenOneFails(t *testing.T) {
	logger, log := testLogger()
	cfg := testConfig(t)
	cfg.DecisionLog.File = "off"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Envoy.Addr = "127.0.0.1:0"
	if err := cfg.finish(); err != nil {
		t.Fatal(err)
	}
	comps, closeAll, err := setup(t.Context(), cfg, logger)
	defer closeAll()
	if err != nil {
		t.Fatal(err)
	}
	addrs := servingAddrs(t, log.String())
	envoyAddr, adminAddr := addrs["envoy"], addrs["admin"]
	if envoyAddr == "" || adminAddr == "" {
		t.Fatalf("want envoy and admin serving lines:\n%s", log)
	}
	cc, err := grpc.NewClient(envoyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ready := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
			return fmt.Errorf("envoy door never answered: %w", err)
		}
		return awaitHTTP(ctx, "http://"+adminAddr+"/healthz")
	}
	boom := errors.New("boom")
	failed := make(chan struct{})
	done := runAsync(t.Context(), logger, append(comps, failing("mcp", boom, ready, failed))...)
	err = awaitStop(t, failed, done, log)
	if !errors.Is(err, boom) || err.Error() != "mcp: boom" {
		t.Errorf("runComponents = %v, want mcp: boom", err)
	}
	assertClosed(t, "the Envoy door", envoyAddr)
	assertClosed(t, "admin", adminAddr)
}

// A setup failure (a taken admin port) names the component and, once
// closed, leaves no Envoy door socket file behind.
func TestSetupFailureNamesComponent(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	sock := filepath.Join(t.TempDir(), "envoy.sock")
	logger, log := testLogger()
	cfg := testConfig(t)
	cfg.DecisionLog.File = "off"
	cfg.Admin.Addr = taken.Addr().String()
	cfg.Envoy.Addr = "unix://" + sock
	if err := cfg.finish(); err != nil {
		t.Fatal(err)
	}
	_, closeAll, err := setup(t.Context(), cfg, logger)
	if err == nil || !strings.HasPrefix(err.Error(), "admin: ") {
		t.Errorf("setup with a taken admin port = %v, want admin: ...", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the Envoy door did not listen before admin failed: %v\n%s", err, log)
	}
	closeAll()
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the Envoy door's socket outlived a failed setup: %v", err)
	}
}

// servingAddrs maps the door or listener of each "serving" line to its addr.
func servingAddrs(t *testing.T, log string) map[string]string {
	t.Helper()
	addrs := map[string]string{}
	for line := range strings.Lines(log) {
		var l struct{ Msg, Door, Listener, Addr string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if l.Msg == "serving" {
			addrs[l.Door+l.Listener] = l.Addr
		}
	}
	return addrs
}

// testConfig is the default config with its files in a temporary
// directory and the approvals API on a free port.
func testConfig(t *testing.T) Config {
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Approvals.Addr = "127.0.0.1:0"
	return cfg
}
