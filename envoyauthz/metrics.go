package envoyauthz

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentpdp/agentpdp/pdp"
)

// metrics are the door's own series; the PDP counts decisions separately.
// Label values are resolved once so Check does no label lookups.
type metrics struct {
	checks        map[pdp.Effect]prometheus.Counter
	duration      prometheus.Observer
	mappingErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentpdp_envoy_checks_total",
		Help: "Envoy ext_authz checks answered, by effect.",
	}, []string{"effect"})
	dur := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "agentpdp_envoy_check_duration_seconds",
		Help: "Time to answer one Envoy Check, mapping and decision included.",
		// 50 µs … 51.2 ms: the door's overhead up to Envoy's timeout.
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 11),
	})
	mapErrs := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentpdp_envoy_mapping_errors_total",
		Help: "Checks denied because the request could not be mapped to an input.",
	})
	if reg != nil {
		var err error
		if checks, err = register(reg, checks); err != nil {
			return nil, err
		}
		if dur, err = register(reg, dur); err != nil {
			return nil, err
		}
		if mapErrs, err = register(reg, mapErrs); err != nil {
			return nil, err
		}
	}
	m := &metrics{checks: map[pdp.Effect]prometheus.Counter{}, duration: dur, mappingErrors: mapErrs}
	for _, e := range []pdp.Effect{pdp.Allow, pdp.Deny, pdp.Approve} {
		m.checks[e] = checks.WithLabelValues(string(e))
	}
	return m, nil
}

// register reuses an identical collector already registered, so two servers
// (or a restart within one process) can share a registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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

func (m *metrics) observe(e pdp.Effect, d time.Duration) {
	c, ok := m.checks[e]
	if !ok {
		c = m.checks[pdp.Deny]
	}
	c.Inc()
	m.duration.Observe(d.Seconds())
}
