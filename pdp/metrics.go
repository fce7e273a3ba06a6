package pdp

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the PDP's Prometheus series. Label values are resolved once
// so the hot path does no label lookups.
type Metrics struct {
	decisions    map[Effect]prometheus.Counter
	latency      prometheus.Observer
	revision     *prometheus.GaugeVec
	reloads      prometheus.Counter
	reloadErrors prometheus.Counter
}

// NewMetrics registers the PDP's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	dec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentpdp_decisions_total", Help: "Decisions by effect.",
	}, []string{"effect"})
	var lat prometheus.Histogram = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "agentpdp_decision_duration_seconds",
		Help:    "Time to decide, including the decision log write.",
		Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1},
	})
	rev := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentpdp_policy_revision_info", Help: "1 for the serving policy revision.",
	}, []string{"revision"})
	reloads := prometheus.NewCounter(prometheus.CounterOpts{Name: "agentpdp_policy_reloads_total", Help: "Successful policy reloads."})
	reloadErrs := prometheus.NewCounter(prometheus.CounterOpts{Name: "agentpdp_policy_reload_errors_total", Help: "Policy reloads that failed; the last good revision kept serving."})
	dec = mustRegister(reg, dec)
	lat = mustRegister(reg, lat)
	rev = mustRegister(reg, rev)
	reloads = mustRegister(reg, reloads)
	reloadErrs = mustRegister(reg, reloadErrs)
	m := &Metrics{decisions: map[Effect]prometheus.Counter{}, latency: lat, revision: rev, reloads: reloads, reloadErrors: reloadErrs}
	for _, e := range []Effect{Allow, Deny, Approve} {
		m.decisions[e] = dec.WithLabelValues(string(e))
	}
	return m
}

func (m *Metrics) observe(e Effect, d time.Duration) {
	m.decisions[e].Inc()
	m.latency.Observe(d.Seconds())
}

func (m *Metrics) setRevision(rev string) {
	m.revision.Reset()
	m.revision.WithLabelValues(rev).Set(1)
}

// RegisterCollector registers c on reg, or returns the identical collector
// already registered there: every part of agentpdp registers its series
// this one way, so two doors (or a restart within one process, or a test)
// can share a registry.
func RegisterCollector[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// mustRegister is RegisterCollector for the PDP's own fixed series, which
// can only clash through a programming error.
func mustRegister[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	c, err := RegisterCollector(reg, c)
	if err != nil {
		panic(err)
	}
	return c
}
