package cninetwork

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation names, the metrics' operation_type label values. The first three are dockershim's.
const (
	opSetUp     = "set_up_pod"
	opTearDown  = "tear_down_pod"
	opPodStatus = "get_pod_network_status"
	opCheck     = "check"
	opStatus    = "status" // one CNI STATUS probe of the default network by the poller
	opGC        = "gc"
)

// metrics are the Plugin's Prometheus metrics, modelled on the kubelet's network plugin
// metrics.
type metrics struct {
	duration *prometheus.HistogramVec
	total    *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

// newMetrics creates the metrics and registers them with reg, unless reg is nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "cnishim", "network_plugin"
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub,
			Name:    "operations_duration_seconds",
			Help:    "Latency in seconds of network plugin operations, by operation type.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"operation_type"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub,
			Name: "operations_total",
			Help: "Number of network plugin operations, by operation type.",
		}, []string{"operation_type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub,
			Name: "operations_errors_total",
			Help: "Number of failed network plugin operations, by operation type.",
		}, []string{"operation_type"}),
	}
	// Create every series up front, so a scrape shows zeros rather than nothing.
	for _, op := range []string{opSetUp, opTearDown, opPodStatus, opCheck, opStatus, opGC} {
		m.duration.WithLabelValues(op)
		m.total.WithLabelValues(op)
		m.errors.WithLabelValues(op)
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register network plugin metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.duration, m.total, m.errors}
}

// unregister removes m's collectors, all registered with reg by newMetrics.
func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

// observe records one operation that started at start; failed says whether it failed.
func (m *metrics) observe(op string, start time.Time, failed bool) {
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	m.total.WithLabelValues(op).Inc()
	if failed {
		m.errors.WithLabelValues(op).Inc()
	}
}
