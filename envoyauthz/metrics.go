package envoyauthz

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/agentpdp/agentpdp/pdp"
)

// metrics are the door's own series; the PDP counts decisions separately.
// Label values are resolved once so Check does no label lookups.
type metrics struct {
	checks        map[pdp.Effect]prometheus.Counter
	duration      prometheus.Observer
	mappingErrors prometheus.Counter
	// transport counts Checks gRPC refused before the door saw them.
	transport *prometheus.CounterVec
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
	transport := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentpdp_envoy_transport_rejections_total",
		Help: "Check calls gRPC refused before the door saw them (garbage protobuf, invalid UTF-8 in a string field, over the size limit), by reason.",
	}, []string{"reason"})
	if reg != nil {
		var err error
		if transport, err = pdp.RegisterCollector(reg, transport); err != nil {
			return nil, err
		}
		if checks, err = pdp.RegisterCollector(reg, checks); err != nil {
			return nil, err
		}
		if dur, err = pdp.RegisterCollector(reg, dur); err != nil {
			return nil, err
		}
		if mapErrs, err = pdp.RegisterCollector(reg, mapErrs); err != nil {
			return nil, err
		}
	}
	m := &metrics{checks: map[pdp.Effect]prometheus.Counter{}, duration: dur, mappingErrors: mapErrs, transport: transport}
	for _, e := range []pdp.Effect{pdp.Allow, pdp.Deny, pdp.Approve} {
		m.checks[e] = checks.WithLabelValues(string(e))
	}
	return m, nil
}

func (m *metrics) observe(e pdp.Effect, d time.Duration) {
	c, ok := m.checks[e]
	if !ok {
		c = m.checks[pdp.Deny]
	}
	c.Inc()
	m.duration.Observe(d.Seconds())
}

// transportRefused counts and logs a Check gRPC could not decode (garbage
// protobuf, invalid UTF-8 in a string field, over the size limit): such a
// request never becomes a decision, so without this an operator would not
// see it.
func (s *Server) transportRefused(ctx context.Context, err error) {
	st := status.Convert(err)
	var reason string
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		return // the caller gave up: not a refusal
	case codes.ResourceExhausted:
		reason = "too_large"
	case codes.Internal:
		reason = "malformed"
	default:
		reason = "other"
	}
	s.m.transport.WithLabelValues(reason).Inc()
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	s.log.Warn("check refused by gRPC before the door", "reason", reason, "code", st.Code().String(), "error", st.Message(), "peer", addr)
}
