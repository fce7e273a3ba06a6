package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

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
