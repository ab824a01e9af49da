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
	// byOp holds every operation's series, resolved once so that recording one does not
	// hash label values on every call.
	byOp map[string]opSeries
}

// opSeries are one operation's series of the metrics.
type opSeries struct {
	duration prometheus.Observer
	total    prometheus.Counter
	errors   prometheus.Counter
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
	ops := []string{opSetUp, opTearDown, opPodStatus, opCheck, opStatus, opGC}
	m.byOp = make(map[string]opSeries, len(ops))
	for _, op := range ops {
		m.byOp[op] = opSeries{
			duration: m.duration.WithLabelValues(op),
			total:    m.total.WithLabelValues(op),
			errors:   m.errors.WithLabelValues(op),
		}
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
	series, ok := m.byOp[op]
	if !ok {
		series = opSeries{m.duration.WithLabelValues(op), m.total.WithLabelValues(op), m.errors.WithLabelValues(op)}
	}
	series.duration.Observe(time.Since(start).Seconds())
	series.total.Inc()
	if failed {
		series.errors.Inc()
	}
}
