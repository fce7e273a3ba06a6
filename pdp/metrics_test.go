package pdp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gathered returns each series of reg as "name{label=value} value".
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

// One registry may take the PDP's series twice (two PDPs, a restart in
// one process): the second registration reuses the first's collectors.
func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewMetrics(reg)
	b := NewMetrics(reg)
	a.observe(Allow, time.Millisecond)
	b.observe(Allow, time.Millisecond)
	if got := gathered(t, reg)["agentpdp_decisions_total{effect=allow}"]; got != 2 {
		t.Errorf("decisions{allow} = %v, want 2 (shared)", got)
	}
	// A different collector under a taken name is an error, not a reuse.
	if _, err := RegisterCollector(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentpdp_decisions_total", Help: "x"})); err == nil {
		t.Error("a clashing collector was accepted")
	}
}

// The PDP counts what it decides, by effect, and the serving revision.
func TestMetricsCountDecisions(t *testing.T) {
	reg := prometheus.NewRegistry()
	set := loadBasic(t)
	p := New(set, Options{Timeout: time.Second, Metrics: NewMetrics(reg)})
	ctx := context.Background()
	want := map[Effect]int{}
	for _, in := range []*Input{
		call(reviewer, "alice@example.com", "github.create_issue", nil),
		call("spiffe://example.org/agent/nobody", "", "x", nil),
		{Action: Action{Kind: "http"}},
	} {
		want[p.Decide(ctx, in).Effect]++
	}
	p.Refuse(ctx, &Input{Action: Action{Kind: "http"}}, Reason{Rule: "builtin#bad-request", Message: "x"})
	want[Deny]++
	got := gathered(t, reg)
	for _, e := range []Effect{Allow, Deny, Approve} {
		if v := got["agentpdp_decisions_total{effect="+string(e)+"}"]; v != float64(want[e]) {
			t.Errorf("agentpdp_decisions_total{effect=%q} = %v, want %d", e, v, want[e])
		}
	}
	if got["agentpdp_policy_revision_info{revision="+set.Revision+"}"] != 1 {
		t.Errorf("revision series: %v", got)
	}
}
